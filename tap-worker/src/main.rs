//! The tap-worker binary (one per node): captures live traffic on the given
//! interfaces (`--interface`, AF_PACKET) or of the given pods (`--pods`, on
//! their host veths, following the list and the hub's target pods as they
//! change), or replays a capture file (`--file`, optionally at the pace it
//! was recorded, which is how the hub's tests drive real worker processes),
//! and streams the entries to the hub. Wiring only: `tap_worker::driver`
//! does the work.

use anyhow::Context as _;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tap_worker::driver::{self, Driver, DriverConfig, LiveArgs, PipelineArgs, QueueArgs, Source};
use tap_worker::privileges;
use tap_worker::ship::{ShipConfig, ShipSink, Shipper};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tap-worker", version, about = "kubetap's node worker")]
struct Args {
    /// The hub's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:8898")]
    hub: String,
    /// Capture file (pcap or pcapng) to dissect and ship; '-' reads stdin.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["interfaces", "pods"],
        conflicts_with_all = ["interfaces", "pods"]
    )]
    file: Option<PathBuf>,
    /// Replay the file at the pace it was recorded (times SPEED, > 0).
    #[arg(long, value_name = "SPEED", value_parser = driver::parse_speed, requires = "file")]
    pace: Option<f64>,
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    live: LiveArgs,
    #[command(flatten)]
    queue: QueueArgs,
    /// Memory for raw packets kept for PCAP export (e.g. 64MiB; 0 keeps none).
    #[arg(long, default_value = "64MiB")]
    pcap_ring: bytesize::ByteSize,
    /// Seconds to wait at the end for the hub to acknowledge everything.
    #[arg(long, default_value_t = 30)]
    finish_timeout: u64,
    /// After the file is shipped, keep answering the hub's PCAP requests
    /// for this many seconds.
    #[arg(long, default_value_t = 0)]
    linger: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBETAP_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tap-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = match &args.file {
        Some(path) => Source::File {
            path: path.clone(),
            pace: args.pace,
        },
        None => args
            .live
            .source(Some(args.pipeline.node.clone()), || Ok(Vec::new()))?,
    };
    // Before any thread starts (threads copy the capabilities they start with).
    let kept = privileges::drop_for("tap-worker", &privileges::for_source(&source))
        .context("dropping the capabilities this mode does not need")?;
    if let Err(e) = tap_worker::capture::live::disable_transparent_huge_pages() {
        tracing::debug!(%e, "transparent huge pages stay as the kernel has them");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let queue = args.queue.queue();
    let ring = driver::packet_ring("--pcap-ring", args.pcap_ring.as_u64())?;
    let driver = Driver::start(
        source,
        DriverConfig {
            pipeline: args.pipeline.config(),
            queue: queue.clone(),
            ring: ring.clone(),
        },
    )?;
    let (mut sink, counters) = ShipSink::new();
    let config = ShipConfig {
        hub: args.hub.clone(),
        node: args.pipeline.node.clone(),
        linux_capabilities: kept.names().iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    };
    let shipper = runtime.block_on(async { Shipper::start(config, queue, counters, ring) });
    eprintln!(
        "tap-worker: capturing {}, shipping to {}",
        driver.describe(),
        args.hub
    );
    if let Some(why) = driver.tls_unavailable() {
        eprintln!("tap-worker: --tls: {why}; capturing packets without TLS plaintext");
    }
    let stop = driver::stop_on_signal(runtime.handle());
    let mut hub_config = shipper.config();
    let outcome = driver::run(
        driver,
        &mut sink,
        &stop,
        |line| eprintln!("tap-worker: {line}"),
        |driver| {
            if let Some(line) = driver.follow(&mut hub_config) {
                eprintln!("tap-worker: {line}");
            }
        },
    )?;
    outcome.print_problems("tap-worker");
    // A file's worker may stay to answer the hub's PCAP requests.
    std::thread::sleep(Duration::from_secs(args.linger));
    let c = shipper.counters();
    let finished = runtime.block_on(shipper.finish(Duration::from_secs(args.finish_timeout)));
    let s = &outcome.stats;
    eprintln!(
        "tap-worker: {} packets, {} entries, {} acknowledged by the hub, {} dropped at the queue, {} lost in flight, {} reconnects",
        s.packets,
        outcome.counters.entries,
        c.entries_acked.load(Ordering::Relaxed),
        outcome.counters.queue_drops,
        c.lost_in_flight.load(Ordering::Relaxed),
        c.reconnects.load(Ordering::Relaxed),
    );
    if let Some(tls) = &outcome.counters.tls {
        eprintln!("tap-worker: {}", tap_worker::tls::source::summary(tls));
    }
    finished?;
    Ok(if outcome.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
