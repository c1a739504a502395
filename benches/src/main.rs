//! `keel-bench`: see the library's documentation for the layout.

use clap::Parser;
use keel_bench::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => keel_bench::compare::run_against_endpoints(args).await,
        Command::Compare(args) => keel_bench::compare::compare(args).await,
        Command::Report(args) => keel_bench::compare::report_again(args),
        Command::Gateway(args) => keel_bench::gateway::run(args).await,
    }
}
