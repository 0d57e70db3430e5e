//! The tap-hub binary: parses its flags and runs the hub library's servers.

use anyhow::Context as _;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use tap_hub::store::{DiskConfig, StoreConfig};
use tap_hub::{Hub, HubConfig};

#[derive(Parser)]
#[command(
    name = "tap-hub",
    version,
    about = "kubetap's hub: gRPC ingest from workers, store, API on the UI port"
)]
struct Args {
    /// Address for the workers' gRPC streams (mutual TLS).
    #[arg(long, default_value = "127.0.0.1:8898")]
    grpc: String,
    /// The install's certificates: ca.pem, hub.pem, hub-key.pem (from
    /// `kubetap certs generate`). A directory without ca.pem gets a new set
    /// for local use (localhost, loopback, this host's name), which
    /// tap-worker finds in the same default directory.
    /// [default: $XDG_STATE_HOME/kubetap/certs or ~/.local/state/kubetap/certs]
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// Address for the HTTP API and the UI. Another address than loopback
    /// lets other hosts reach it (the token guards it; a warning says so).
    #[arg(long, default_value = "127.0.0.1:8899")]
    listen: String,
    /// Read the API's bearer token from FILE. Without it the token is
    /// KUBETAP_TOKEN's, or a new random one printed in the UI's URL.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Memory the stored entries may take (e.g. 256MiB, 2GiB).
    #[arg(long, default_value = "256MiB")]
    memory_budget: bytesize::ByteSize,
    /// Keep entries on disk in DIR too; a restart loses none of them.
    #[arg(long, value_name = "DIR")]
    disk: Option<PathBuf>,
    /// Bytes of disk the entries may take.
    #[arg(long, default_value = "1GiB")]
    disk_budget: bytesize::ByteSize,
    /// fsync every batch before acknowledging it (survives power loss, slower).
    #[arg(long)]
    fsync: bool,
    /// PCAP exports carry the packets as captured, with the values
    /// redaction hid in the entries (each such export is logged). Without
    /// it, redacted values are overwritten in every exported packet.
    #[arg(long)]
    raw_pcap: bool,
    /// Follow the cluster's pods with one watch and send each worker its
    /// node's (for `tap-worker --hub-pods`, which then needs no Kubernetes
    /// API access). In a pod the hub's service account is used (it needs
    /// get, list and watch on pods); elsewhere $KUBECONFIG or ~/.kube/config.
    #[arg(long)]
    watch_pods: bool,
    /// Largest gRPC message accepted from a worker.
    #[arg(long, default_value = "8MiB")]
    max_message: bytesize::ByteSize,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBETAP_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: not in a pod's log or a test's pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    // Transparent huge pages off (PR_SET_THP_DISABLE): entries are allocated
    // and freed at a high rate, the allocator returns memory and takes it
    // again, and with huge pages each fault clears 2 MiB. Measured in
    // `cargo xtask bench --only hub`: 211k -> 260k entries per hub CPU
    // second. An error only means the kernel's default stays.
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(%e, "transparent huge pages stay as the kernel has them");
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tap-hub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let (token, source) = tap_hub::access::token_from(args.token_file.as_deref())?;
    let config = HubConfig {
        store: StoreConfig {
            memory_budget: args.memory_budget.as_u64(),
            disk: args.disk.map(|dir| DiskConfig {
                fsync: args.fsync,
                ..DiskConfig::new(dir, args.disk_budget.as_u64())
            }),
        },
        max_message: usize::try_from(args.max_message.as_u64()).unwrap_or(usize::MAX),
        raw_pcap: args.raw_pcap,
        token: token.clone(),
        ..Default::default()
    };
    if args.raw_pcap {
        tracing::warn!("--raw-pcap: PCAP exports will carry redacted values as captured");
    }
    let certs = match args.certs {
        Some(dir) => dir,
        None => tap_certs::local_dir()?,
    };
    if tap_certs::ensure_local(&certs)
        .with_context(|| format!("cannot make certificates in {}", certs.display()))?
    {
        eprintln!(
            "tap-hub: generated certificates for local use in {} (hub valid for {})",
            certs.display(),
            tap_certs::local_hub_names().join(", ")
        );
    }
    let tls = tap_certs::HubCerts::load(&certs)
        .and_then(|c| c.server_config())
        .context("cannot set up TLS for the workers")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let hub = Hub::open(config).context("opening the entry store")?;
        if args.watch_pods {
            eprintln!("tap-hub: following the cluster's pods for the workers");
            tokio::spawn(tap_hub::pods::connect_and_follow(hub.clone()));
        }
        let grpc = tokio::net::TcpListener::bind(&args.grpc)
            .await
            .with_context(|| format!("cannot listen for workers on {}", args.grpc))?;
        let grpc = tap_hub::WorkerListener::new(grpc, tls);
        let http = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen for the API on {}", args.listen))?;
        let api = http.local_addr()?;
        eprintln!("tap-hub: workers' certificates in {}", certs.display());
        eprintln!(
            "tap-hub: workers connect to https://{}, API at http://{api}/",
            grpc.local_addr()?,
        );
        eprintln!(
            "tap-hub: the UI: {} (API clients send Authorization: Bearer <token>)",
            tap_hub::access::ui_banner(&format!("http://{api}"), &token, &source)
        );
        if let Some(warning) = tap_hub::access::exposure_warning(&api) {
            eprintln!("tap-hub: warning: {warning}");
        }
        tap_hub::serve(hub, Some(grpc), http, tap_hub::serve::shutdown_signal()).await?;
        Ok(())
    })
}
