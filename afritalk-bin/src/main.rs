//! `afritalk`: parse the command line, start telemetry, run the command.

use std::process::ExitCode;

use afritalk_bin::app::{Application, hangups, reload_tls_on_sighup, shutdown_signal};
use afritalk_bin::cli::{self, Cli, Command};
use afritalk_bin::config::Config;
use clap::Parser;

/// The server's allocator. Under load glibc's malloc took an eighth of the
/// machine (`_int_malloc`, `malloc_consolidate`, `unlink_chunk`: the many
/// short-lived buffers of events and frames); with mimalloc one node went from
/// collapsing at 5,000 messages/s to sustaining it (docs/benchmarks.md). It
/// costs idle sockets about 2.4 KiB each more.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Config::from_env() {
        Err(err) => Err(err.to_string()),
        Ok(config) => run(cli.command, config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("afritalk: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), String> {
    let print = |line: String| println!("{line}");
    match command {
        Command::Serve => {
            // Listened for before anything else starts: a SIGHUP's default
            // action would end the process.
            let hangups = match config.tls {
                Some(_) => Some(hangups().map_err(|e| format!("cannot listen for SIGHUP: {e}"))?),
                None => None,
            };
            let app = Application::build(config)
                .await
                .map_err(|e| e.to_string())?;
            if let (Some(tls), Some(hangups)) = (app.tls(), hangups) {
                tokio::spawn(reload_tls_on_sighup(tls.clone(), hangups));
            }
            app.run_until(shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
        Command::Migrate => cli::migrate(&config)
            .await
            .map(print)
            .map_err(|e| e.to_string()),
        Command::Token(args) => cli::token(&config, &args)
            .map(print)
            .map_err(|e| e.to_string()),
        Command::PublicKey => cli::public_key(&config)
            .map(print)
            .map_err(|e| e.to_string()),
        Command::User(cmd) => cli::user(&config, &cmd)
            .await
            .map(print)
            .map_err(|e| e.to_string()),
        Command::Audit(cmd) => cli::audit(&config, &cmd)
            .await
            .map(print)
            .map_err(|e| e.to_string()),
    }
}
