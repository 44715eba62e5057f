//! The wasmtime engine: pooled instance memory, epoch-driven deadlines, and components
//! compiled once per content hash — in memory, and precompiled on disk across restarts.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::{BoxError, Error};

/// How often the engine's epoch advances: the granularity of deadlines and of the yields
/// that keep a busy component from holding an executor thread.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

pub use wxnotify_tenants::{EngineOptions, default_cache_dir};

/// Where a component came from when it was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompiledFrom {
    /// Already compiled in this process.
    Memory,
    /// Loaded precompiled from the disk cache.
    DiskCache,
    /// Compiled now with Cranelift.
    Compiled,
}

/// A wasmtime engine with a cache of compiled components, keyed by content hash.
///
/// Cloning is cheap; share one engine per process so each component is compiled once.
#[derive(Clone)]
pub struct Engine {
    engine: wasmtime::Engine,
    compiled: Arc<Mutex<HashMap<[u8; 32], Component>>>,
    cache_dir: Option<PathBuf>,
    max_memory_bytes: usize,
}

impl Engine {
    /// An engine with [`EngineOptions::default`].
    pub fn new() -> Result<Engine, Error> {
        Engine::with_options(EngineOptions::default())
    }

    /// An engine with `options`.
    pub fn with_options(options: EngineOptions) -> Result<Engine, Error> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(options.max_instances)
            // A Rust component has a handful of core instances, each with one memory.
            .total_core_instances(options.max_instances.saturating_mul(4))
            .total_memories(options.max_instances.saturating_mul(2))
            .total_tables(options.max_instances.saturating_mul(4))
            .max_memory_size(options.max_memory_bytes)
            .linear_memory_keep_resident(options.keep_resident_bytes)
            .table_keep_resident(options.keep_resident_bytes)
            .async_stack_keep_resident(options.keep_resident_bytes)
            .pagemap_scan(if options.reset_touched_pages_only {
                wasmtime::Enabled::Auto
            } else {
                wasmtime::Enabled::No
            });
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = wasmtime::Engine::new(&config).map_err(|e| Error::Engine {
            what: "engine",
            source: e.into(),
        })?;
        start_epoch_ticker(&engine);
        Ok(Engine {
            engine,
            compiled: Arc::default(),
            cache_dir: options.cache_dir,
            max_memory_bytes: options.max_memory_bytes,
        })
    }

    /// The wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// The largest memory a tenant may be given.
    pub fn max_memory_bytes(&self) -> usize {
        self.max_memory_bytes
    }

    /// Compiles `bytes`, or returns the component compiled before from the same bytes (in
    /// this process, or by any earlier process sharing the cache directory).
    pub fn component(&self, bytes: &[u8]) -> Result<Component, BoxError> {
        self.load(bytes).map(|(component, _)| component)
    }

    /// Like [`Engine::component`], also saying where the component came from.
    pub fn load(&self, bytes: &[u8]) -> Result<(Component, CompiledFrom), BoxError> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(component) = self.memory().get(&hash) {
            return Ok((component.clone(), CompiledFrom::Memory));
        }
        let cached = self.cache_path(&hash);
        let (component, from) = match cached.as_deref().and_then(|path| self.read_cache(path)) {
            Some(component) => (component, CompiledFrom::DiskCache),
            None => {
                let serialized = self
                    .engine
                    .precompile_component(bytes)
                    .map_err(BoxError::from)?;
                if let Some(path) = &cached {
                    write_cache(path, &serialized);
                }
                let component = self.deserialize(&serialized).map_err(BoxError::from)?;
                (component, CompiledFrom::Compiled)
            }
        };
        self.memory().insert(hash, component.clone());
        Ok((component, from))
    }

    /// `{cache_dir}/{content hash}-{engine compatibility hash}.cwasm`: a cache entry is only
    /// used by an engine that compiles the same way.
    pub fn cache_path(&self, content_hash: &[u8; 32]) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let name = format!(
            "{}-{:016x}.cwasm",
            hex::encode(content_hash),
            engine_hash.finish()
        );
        self.cache_dir.as_ref().map(|dir| dir.join(name))
    }

    fn read_cache(&self, path: &Path) -> Option<Component> {
        let bytes = std::fs::read(path).ok()?;
        match self.deserialize(&bytes) {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), "ignoring unusable compile cache entry: {error:#}");
                None
            }
        }
    }

    #[allow(
        unsafe_code,
        reason = "loading precompiled machine code is unsafe by nature; see below"
    )]
    fn deserialize(&self, serialized: &[u8]) -> wasmtime::Result<Component> {
        // SAFETY: `serialized` was produced by `precompile_component` of an engine with the
        // same compatibility hash — now, or earlier into the cache directory, whose entries are
        // named by that hash. wasmtime still checks the header and rejects a mismatch. The
        // cache directory must be writable only by the user running wxnotify.
        unsafe { Component::deserialize(&self.engine, serialized) }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Component>> {
        // A panic while holding the lock cannot leave the map half-written.
        self.compiled.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes a cache entry atomically (a temporary file in the same folder, then a rename), so a
/// concurrent reader never sees half a file. Failing to cache is logged, not fatal.
fn write_cache(path: &Path, serialized: &[u8]) {
    let write = || -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut temporary = tempfile::NamedTempFile::new_in(dir)?;
        temporary.write_all(serialized)?;
        temporary.persist(path)?;
        Ok(())
    };
    if let Err(error) = write() {
        tracing::warn!(path = %path.display(), "cannot write the compile cache: {error}");
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the last clone of the engine is
/// dropped (the thread holds it only weakly).
fn start_epoch_ticker(engine: &wasmtime::Engine) {
    let engine = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("wxnotify-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        });
    if let Err(error) = spawned {
        tracing::error!(
            "cannot start the epoch ticker, deadlines will not interrupt guests: {error}"
        );
    }
}

/// A deadline as a store's epoch callback sees it.
pub(crate) fn yield_until(
    deadline: Instant,
) -> impl FnMut() -> wasmtime::Result<wasmtime::UpdateDeadline> {
    move || {
        if Instant::now() >= deadline {
            wasmtime::bail!("deadline exceeded: the component ran past its time limit");
        }
        // Yield back to the executor every tick: other tenants keep running, and the caller's
        // timeout can fire even while this component computes.
        Ok(wasmtime::UpdateDeadline::Yield(1))
    }
}
