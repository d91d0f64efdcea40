//! `afritalk-bench`: see the library docs and `--help`.

use std::process::ExitCode;

use afritalk_bench::cli::{Cli, Scenario};
use afritalk_bench::{idle, sys, traffic};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (before, after) = sys::raise_nofile();
    let show = |v: Option<u64>| v.map_or("unlimited".to_owned(), |n| n.to_string());
    eprintln!("open files limit: {} (was {})", show(after), show(before));
    let result = match cli.scenario {
        Scenario::Latency(args) => traffic::run(args, false).await,
        Scenario::Throughput(args) => traffic::run(args, true).await,
        Scenario::Idle(args) => idle::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("afritalk-bench: {err}");
            ExitCode::FAILURE
        }
    }
}
