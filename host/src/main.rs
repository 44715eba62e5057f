//! `wxnotify`: send WeChat notifications from the command line, run the local WeChat API
//! sandbox, or watch the whole flow in `wxnotify demo`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WXNOTIFY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // WASI's bindings trace every call with its arguments, request paths among them, and those
    // carry access tokens, AppSecrets and login codes: they never log below DEBUG, whatever
    // WXNOTIFY_LOG asks for.
    let filter = ["wasmtime_wasi=debug", "wasmtime_wasi_http=debug"]
        .into_iter()
        .fold(filter, |filter, directive| {
            filter.add_directive(directive.parse().expect("a valid directive"))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::EXIT_FAULT);
        }
    };
    let json = cli.json;
    match runtime.block_on(cli.execute()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = cli::exit_code(&error);
            if json {
                cli::print_line(format_args!(
                    "{}",
                    serde_json::json!({ "error": cli::error_json(&error) })
                ));
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(code)
        }
    }
}
