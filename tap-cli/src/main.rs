//! The `kubetap` command. Thin: parses arguments and calls into the libraries.
#![forbid(unsafe_code)]

mod read;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// kubetap: see the traffic of your services, request by request.
#[derive(Parser)]
#[command(name = "kubetap", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dissect a pcap or pcapng capture file ('-' for stdin) into request/response entries.
    Read(read::ReadArgs),
    /// Print kubetap's version.
    Version,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("KUBETAP_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Read(args) => read::run(&args),
        Command::Version => {
            println!("kubetap {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
