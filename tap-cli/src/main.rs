//! The `kubetap` command. Thin: parses arguments and calls into the libraries.
#![forbid(unsafe_code)]

mod certs;
mod local;
mod read;
mod tap;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Capture live traffic: `tap --local` on this host, with the hub and its API in the same process.
    Tap(tap::TapArgs),
    /// Certificates for mutual TLS between tap-hub and tap-worker.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Print kubetap's version.
    Version,
}

fn main() -> ExitCode {
    // Errors only by default, and the hub's refusals of API requests
    // (`tap_hub::access`: who was refused is worth seeing).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBETAP_LOG")
                .unwrap_or_else(|_| "error,tap_hub::access=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Read(args) => read::run(&args),
        Command::Tap(args) => tap::run(&args),
        Command::Certs(command) => certs::run(&command),
        Command::Version => {
            println!("kubetap {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
