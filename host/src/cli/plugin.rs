//! `wxnotify plugin`: look inside a component, and compile it ahead of time.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use wxnotify::{CompiledFrom, Engine, Runtime};
use wxnotify_store::MemoryBackend;

use super::UsageError;

/// Components: what they import and export, and ahead-of-time compilation.
#[derive(clap::Args)]
pub struct PluginCommand {
    #[command(subcommand)]
    action: PluginAction,
}

#[derive(clap::Subcommand)]
enum PluginAction {
    /// Show a component's imports and exports, and whether it can run as a tenant's plugin.
    ///
    /// Example: wxnotify plugin inspect plugins/wecom.wasm   (omit the file for the built-in one)
    Inspect {
        /// The component; the built-in one when omitted.
        file: Option<PathBuf>,
    },
    /// Compile a component into the cache, so the next start loads it in milliseconds.
    ///
    /// Example: wxnotify plugin compile plugins/wecom.wasm
    Compile {
        /// The component; the built-in one when omitted.
        file: Option<PathBuf>,
    },
}

impl PluginCommand {
    pub async fn execute(self, json: bool) -> anyhow::Result<()> {
        let engine = Engine::new()?;
        match self.action {
            PluginAction::Inspect { file } => inspect(&engine, file.as_ref(), json),
            PluginAction::Compile { file } => compile(&engine, file.as_ref(), json),
        }
    }
}

fn read(file: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(path) => std::fs::read(path)
            .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())).into()),
        None => Ok(wxnotify::BUILTIN_COMPONENT.to_vec()),
    }
}

fn name(file: Option<&PathBuf>) -> String {
    file.map_or_else(
        || "built-in component".to_owned(),
        |p| p.display().to_string(),
    )
}

fn inspect(engine: &Engine, file: Option<&PathBuf>, json: bool) -> anyhow::Result<()> {
    let bytes = read(file)?;
    let component = engine
        .component(&bytes)
        .map_err(|e| UsageError(format!("{} is not a valid component: {e}", name(file))))?;
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine.wasmtime())
        .map(|(name, _)| name.to_owned())
        .collect();
    let exports: Vec<String> = ty
        .exports(engine.wasmtime())
        .map(|(name, _)| name.to_owned())
        .collect();
    // The one real check: can this host link it and call the world's exports?
    let runtime = Runtime::new(engine, std::sync::Arc::new(MemoryBackend::new()))?;
    let verdict = runtime.check_component(&bytes);
    if json {
        out!(
            "{}",
            json!({
                "component": name(file),
                "size_bytes": bytes.len(),
                "imports": imports,
                "exports": exports,
                "runs_as_plugin": verdict.is_ok(),
                "problem": verdict.as_ref().err().map(ToString::to_string),
            })
        );
    } else {
        out!("{} ({} bytes)", name(file), bytes.len());
        out!("imports:\n  {}", imports.join("\n  "));
        out!("exports:\n  {}", exports.join("\n  "));
        match &verdict {
            Ok(()) => out!("world: wechat:notify/notify: yes, it can run as a tenant's plugin"),
            Err(problem) => out!("world: wechat:notify/notify: no: {problem}"),
        }
    }
    verdict.map_err(|problem| UsageError(problem.to_string()).into())
}

fn compile(engine: &Engine, file: Option<&PathBuf>, json: bool) -> anyhow::Result<()> {
    let bytes = read(file)?;
    let started = Instant::now();
    let (_, from) = engine
        .load(&bytes)
        .map_err(|e| UsageError(format!("{} is not a valid component: {e}", name(file))))?;
    let elapsed = started.elapsed();
    let hash: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&bytes).into();
    let cached = engine.cache_path(&hash);
    let how = match from {
        CompiledFrom::Compiled => "compiled",
        CompiledFrom::DiskCache => "already compiled; loaded from the cache",
        CompiledFrom::Memory => "already loaded",
    };
    if json {
        out!(
            "{}",
            json!({ "component": name(file), "result": how, "millis": elapsed.as_millis(), "cache_file": cached })
        );
    } else {
        out!("{}: {how} in {elapsed:.1?}", name(file));
        match cached {
            Some(path) => out!("cache: {}", path.display()),
            None => out!("cache: none (no cache directory: set WXNOTIFY_CACHE_DIR or HOME)"),
        }
    }
    Ok(())
}
