//! The tap-worker binary (one per node): captures live traffic on the given
//! interfaces (`--interface`, AF_PACKET) or of the given pods (`--pods`, on
//! their host veths, following the list as it changes), or replays a capture file (`--file`,
//! optionally at the pace it was recorded, which is how the hub's tests drive
//! real worker processes), dissects it and streams the entries to the hub.

use anyhow::Context as _;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use proto::v1::{Entry, WorkerCounters};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tap_worker::capture::CaptureFile;
use tap_worker::capture::live::LiveConfig;
use tap_worker::ring::PacketRing;
use tap_worker::ship::{ShipConfig, Shipper};
use tap_worker::tap::{LiveTap, PodSource, PodWatch};
use tap_worker::{Pipeline, PipelineConfig, Stats};

#[derive(Parser)]
#[command(name = "tap-worker", version, about = "kubetap's node worker")]
struct Args {
    /// The hub's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:8898")]
    hub: String,
    /// Node name written into the entries and shown by the hub.
    #[arg(long, default_value = "local")]
    node: String,
    /// Capture file (pcap or pcapng) to dissect and ship; '-' reads stdin.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["interfaces", "pods"],
        conflicts_with_all = ["interfaces", "pods"]
    )]
    file: Option<PathBuf>,
    /// Capture live on this interface (repeat for several) until SIGTERM.
    #[arg(long = "interface", short = 'i', value_name = "IF")]
    interfaces: Vec<String>,
    /// Capture the pods listed in this JSON file (`[{"name", "namespace",
    /// "ips": [...], "node"}]`) on their host veths, following the file as
    /// it changes; pods of other nodes (`node` not this --node) are left alone.
    #[arg(long, value_name = "FILE")]
    pods: Option<PathBuf>,
    /// Live capture ring per interface: blocks of this size...
    #[arg(long, default_value = "1MiB")]
    block_size: bytesize::ByteSize,
    /// ...and this many of them.
    #[arg(long, default_value_t = 4)]
    blocks: usize,
    /// Sockets per interface, 1 to 64: with more than one, the interface's
    /// packets are spread over that many threads by a PACKET_FANOUT flow
    /// hash (both directions of a connection go to the same one), each
    /// with its own connection table. Up to the cores it may use.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    fanout: u16,
    /// Replay the file at the pace it was recorded (times SPEED, > 0).
    #[arg(long, value_name = "SPEED", value_parser = positive)]
    pace: Option<f64>,
    /// Entries waiting for the hub, at most; with --pace, entries beyond it are dropped and counted.
    #[arg(long, default_value_t = 64 * 1024)]
    queue: usize,
    /// Memory the entries waiting for the hub may take, at most (each counted
    /// as the heap it holds); beyond it, as beyond --queue.
    #[arg(long, default_value = "32MiB")]
    queue_memory: bytesize::ByteSize,
    /// Seconds to wait at the end for the hub to acknowledge everything.
    #[arg(long, default_value_t = 30)]
    finish_timeout: u64,
    /// Memory for raw packets kept for PCAP export (e.g. 64MiB; 0 keeps none).
    #[arg(long, default_value = "64MiB")]
    pcap_ring: bytesize::ByteSize,
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
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tap-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "{s:?} is not a speed: use a number above 0, e.g. 1 or 0.5"
        )),
    }
}

fn counters(s: &Stats) -> WorkerCounters {
    WorkerCounters {
        packets: s.packets,
        bytes: s.bytes,
        entries: s.entries,
        parse_errors: s.parse_errors,
        drops: s.drops(),
        gap_bytes: s.gap_bytes(),
        ..Default::default()
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Live capture until SIGTERM/Ctrl-C or until every interface is gone.
fn live(args: &Args) -> anyhow::Result<ExitCode> {
    if let Err(e) = tap_worker::capture::live::disable_transparent_huge_pages() {
        tracing::debug!(%e, "transparent huge pages stay as the kernel has them");
    }
    let runtime = runtime()?;
    let counters = Arc::new(Mutex::new(WorkerCounters::default()));
    let source = {
        let counters = counters.clone();
        Arc::new(move || *counters.lock().unwrap_or_else(|e| e.into_inner()))
    };
    let config = ShipConfig {
        hub: args.hub.clone(),
        node: args.node.clone(),
        queue: args.queue,
        queue_memory: usize::try_from(args.queue_memory.as_u64()).unwrap_or(usize::MAX),
        ..Default::default()
    };
    if let Some(e) = tap_worker::ring::budget_error(args.pcap_ring.as_u64()) {
        anyhow::bail!("--pcap-ring: {e}");
    }
    let ring = Arc::new(Mutex::new(PacketRing::new(
        usize::try_from(args.pcap_ring.as_u64()).unwrap_or(usize::MAX),
    )));
    let mut pipeline = PipelineConfig {
        node: args.node.clone(),
        ..Default::default()
    };
    pipeline.dissect.max_body = 1 << 20;
    let shipper =
        Arc::new(runtime.block_on(async { Shipper::start(config, source, Some(ring.clone())) }));
    let sink: tap_worker::tap::Sink = {
        let shipper = shipper.clone();
        Arc::new(move |e| {
            shipper.offer(e);
        })
    };
    let template = |name: &str| LiveConfig {
        block_size: usize::try_from(args.block_size.as_u64()).unwrap_or(usize::MAX),
        block_count: args.blocks,
        ..LiveConfig::new(name)
    };
    let mut tap = LiveTap::start(
        args.interfaces.iter().map(|name| template(name)).collect(),
        pipeline,
        args.fanout,
        ring,
        sink,
    )?;
    let mut watch = match &args.pods {
        Some(path) => Some(
            PodWatch::new(
                PodSource::File(path.clone()),
                Some(args.node.clone()),
                template(""),
            )
            .context("opening a netlink socket to find pod interfaces")?,
        ),
        None => None,
    };
    let what = match &args.pods {
        Some(p) => format!("the pods listed in {}", p.display()),
        None => format!("on {}", tap.interfaces().join(", ")),
    };
    eprintln!("tap-worker: capturing {what}, shipping to {}", args.hub);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        runtime.spawn(async move {
            shutdown().await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    let mut last_tick: Option<Instant> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Some(w) = watch.as_mut() {
            if last_tick.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_tick = Some(Instant::now());
                for line in w.tick(&mut tap) {
                    eprintln!("tap-worker: {line}");
                }
            }
        } else if tap.finished() {
            break;
        }
        *counters.lock().unwrap_or_else(|e| e.into_inner()) = tap.counters();
        std::thread::sleep(Duration::from_millis(250));
    }
    // The connections still open are flushed into the queue; the last
    // heartbeat counts them.
    let stopped = tap.stop();
    *counters.lock().unwrap_or_else(|e| e.into_inner()) = stopped.counters;
    let errors = stopped.errors;
    for e in &errors {
        eprintln!("tap-worker: {e}");
    }
    let shipper = Arc::try_unwrap(shipper)
        .map_err(|_| anyhow::anyhow!("the capture still holds the shipper"))?;
    let c = shipper.counters();
    let finished = runtime.block_on(shipper.finish(Duration::from_secs(args.finish_timeout)));
    eprintln!(
        "tap-worker: {} acknowledged by the hub, {} dropped at the queue, {} lost in flight",
        c.entries_acked.load(std::sync::atomic::Ordering::Relaxed),
        c.queue_drops.load(std::sync::atomic::Ordering::Relaxed),
        c.lost_in_flight.load(std::sync::atomic::Ordering::Relaxed),
    );
    finished?;
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Ctrl-C or SIGTERM (what Kubernetes sends a pod it stops).
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.interfaces.is_empty() || args.pods.is_some() {
        return live(&args);
    }
    let runtime = runtime()?;
    let stats = Arc::new(Mutex::new(Stats::default()));
    let source = {
        let stats = stats.clone();
        Arc::new(move || counters(&stats.lock().unwrap_or_else(|e| e.into_inner())))
    };
    let config = ShipConfig {
        hub: args.hub.clone(),
        node: args.node.clone(),
        queue: args.queue,
        queue_memory: usize::try_from(args.queue_memory.as_u64()).unwrap_or(usize::MAX),
        ..Default::default()
    };
    if let Some(e) = tap_worker::ring::budget_error(args.pcap_ring.as_u64()) {
        anyhow::bail!("--pcap-ring: {e}");
    }
    let ring = (args.pcap_ring.as_u64() > 0).then(|| {
        Arc::new(Mutex::new(PacketRing::new(
            usize::try_from(args.pcap_ring.as_u64()).unwrap_or(usize::MAX),
        )))
    });
    let shipper = runtime.block_on(async { Shipper::start(config, source, ring.clone()) });
    let path = args
        .file
        .as_deref()
        .context("give a capture file (--file) or interfaces to capture on (--interface)")?;
    let mut file = CaptureFile::open(path)?;
    let mut pipeline = Pipeline::new(PipelineConfig {
        node: args.node.clone(),
        ..Default::default()
    });
    let started = Instant::now();
    let mut first_ts = None;
    let mut out: Vec<Entry> = Vec::new();
    let mut failure = None;
    let mut n: u64 = 0;
    loop {
        match file.next_packet() {
            Ok(Some(pkt)) => {
                if let Some(speed) = args.pace {
                    let first = *first_ts.get_or_insert(pkt.ts_ns);
                    let due = Duration::from_nanos(pkt.ts_ns.saturating_sub(first)).div_f64(speed);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                if let (Some(flow), Some(ring)) = (pipeline.packet(&pkt, &mut out), &ring) {
                    ring.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(&pkt, flow);
                }
            }
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        n += 1;
        if n.is_multiple_of(256) {
            *stats.lock().unwrap_or_else(|e| e.into_inner()) = pipeline.stats();
        }
        ship(&shipper, &mut out, args.pace.is_some())?;
    }
    pipeline.finish(&mut out);
    ship(&shipper, &mut out, args.pace.is_some())?;
    *stats.lock().unwrap_or_else(|e| e.into_inner()) = pipeline.stats();
    let counters = shipper.counters();
    if args.linger > 0 {
        let linger = Duration::from_secs(args.linger);
        runtime.block_on(async { tokio::time::sleep(linger).await });
    }
    let finished = runtime.block_on(shipper.finish(Duration::from_secs(args.finish_timeout)));
    let s = pipeline.stats();
    eprintln!(
        "tap-worker: {} packets, {} entries, {} acknowledged by the hub, {} dropped at the queue, {} lost in flight, {} reconnects",
        s.packets,
        s.entries,
        counters
            .entries_acked
            .load(std::sync::atomic::Ordering::Relaxed),
        counters
            .queue_drops
            .load(std::sync::atomic::Ordering::Relaxed),
        counters
            .lost_in_flight
            .load(std::sync::atomic::Ordering::Relaxed),
        counters
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    if let Some(e) = failure {
        eprintln!("tap-worker: {e}");
        return Ok(ExitCode::FAILURE);
    }
    finished?;
    Ok(ExitCode::SUCCESS)
}

/// Hands the entries to the shipper: a paced replay behaves like live capture
/// (drops when the hub cannot keep up), a plain file read waits for room.
fn ship(shipper: &Shipper, out: &mut Vec<Entry>, live: bool) -> anyhow::Result<()> {
    for e in out.drain(..) {
        if live {
            shipper.offer(e);
        } else {
            shipper.blocking_send(e)?;
        }
    }
    Ok(())
}
