//! The `kubetap` command. Thin: parses arguments and calls into the libraries.
#![forbid(unsafe_code)]

mod certs;
mod kube;
mod local;
mod read;
mod tap;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory as _, Parser, Subcommand};
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
    /// Install kubetap in a cluster (hub, a worker per node, RBAC, secrets),
    /// or print what it would apply (--dry-run).
    Install(kube::InstallArgs),
    /// Open the UI of kubetap's hub in a cluster: a port-forward to the hub
    /// on a local port.
    #[command(visible_alias = "proxy")]
    View(kube::ViewArgs),
    /// Check what kubetap needs from a cluster: the API server, every right,
    /// the nodes' kernels; after install, the hub and each node's worker.
    Check(kube::CheckArgs),
    /// Write a zip for a bug report: the hub's and workers' logs, their pods,
    /// the namespace's events, the configuration (no secrets), `check`.
    Logs(kube::LogsArgs),
    /// Remove everything kubetap installed in a cluster.
    Clean(kube::CleanArgs),
    /// Print the default configuration (~/.kubetap/config.yaml), or write it (-r).
    Config(kube::ConfigArgs),
    /// Print a shell completion script: `source <(kubetap completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write a PCAP of the connections of the entries a filter takes, from
    /// kubetap's hub in a cluster.
    Export(kube::ExportArgs),
    /// Print kubetap's version, and its hub's and workers' in the cluster.
    Version(kube::VersionArgs),
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
        Command::Install(args) => kube::run_install(&args),
        Command::Clean(args) => kube::run_clean(&args),
        Command::View(args) => kube::run_view(&args),
        Command::Check(args) => kube::run_check(&args),
        Command::Logs(args) => kube::run_logs(&args),
        Command::Config(args) => kube::run_config(&args),
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kubetap", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not an error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            ExitCode::SUCCESS
        }
        Command::Export(args) => kube::run_export(&args),
        Command::Version(args) => kube::run_version(&args),
    }
}
