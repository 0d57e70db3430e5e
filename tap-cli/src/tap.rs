//! `kubetap tap --local`: live capture on this host with the hub in the same
//! process. One capture thread per interface (AF_PACKET ring) feeds one
//! pipeline (one flow table: a flow seen on two interfaces is one flow);
//! entries go through a bounded queue to the in-process hub without a gRPC
//! hop (which would itself be captured on `lo`), the worker's counters are
//! shown in the workers panel, and PCAP export reads the raw-packet ring.

use anyhow::{Context as _, bail};
use proto::v1::{Entry, PcapRequest, WorkerCounters};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tap_worker::capture::live::{LiveCapture, LiveConfig, LiveError, LiveStats};
use tap_worker::ring::PacketRing;
use tap_worker::{Pipeline, PipelineConfig, Stats};

#[derive(clap::Args)]
pub struct TapArgs {
    /// Capture on this host, hub and worker in one process (the only mode
    /// until the cluster commands arrive).
    #[arg(long)]
    pub local: bool,
    /// Interface to capture on (repeat for several); default: every
    /// interface that is up, except loopback (`-i lo` captures loopback).
    #[arg(long = "interface", short = 'i', value_name = "IF")]
    pub interfaces: Vec<String>,
    /// Port of the API (and later the UI), on 127.0.0.1.
    #[arg(long, default_value_t = 8899)]
    pub port: u16,
    /// Do not open a browser (kubetap never opens one yet; accepted for scripts).
    #[arg(long)]
    pub no_browser: bool,
    /// Memory the stored entries may take.
    #[arg(long, default_value = "256MiB")]
    pub memory_budget: bytesize::ByteSize,
    /// Memory for raw packets kept for PCAP export.
    #[arg(long, default_value = "64MiB")]
    pub pcap_ring: bytesize::ByteSize,
    /// Capture ring per interface: blocks of this size...
    #[arg(long, default_value = "1MiB")]
    pub block_size: bytesize::ByteSize,
    /// ...and this many of them.
    #[arg(long, default_value_t = 4)]
    pub blocks: usize,
    /// Body bytes kept per message.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_body: usize,
    /// Node name written into the entries.
    #[arg(long, default_value = "local")]
    pub node: String,
    /// Entries waiting for the store, at most; beyond it they are dropped and counted.
    #[arg(long, default_value_t = 64 * 1024)]
    pub queue: usize,
}

pub fn run(args: &TapArgs) -> ExitCode {
    match tap(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubetap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Interfaces that are up, from /sys/class/net (loopback left out).
fn default_interfaces() -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for d in std::fs::read_dir("/sys/class/net").context("listing network interfaces")? {
        let name = d?.file_name().to_string_lossy().into_owned();
        if name == "lo" {
            continue;
        }
        let flags =
            std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).unwrap_or_default();
        let up = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
            .is_ok_and(|f| f & 1 != 0);
        if up {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// What the capture threads share: the pipeline (one flow table, so a flow
/// seen on two interfaces is one flow) and the raw-packet ring.
struct Shared {
    pipeline: Pipeline,
    ring: Arc<Mutex<PacketRing>>,
    entries: Vec<Entry>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn tap(args: &TapArgs) -> anyhow::Result<ExitCode> {
    if !args.local {
        bail!(
            "only local mode exists yet: run `kubetap tap --local` (cluster mode arrives with the Kubernetes commands)"
        );
    }
    let interfaces = if args.interfaces.is_empty() {
        default_interfaces()?
    } else {
        args.interfaces.clone()
    };
    if interfaces.is_empty() {
        bail!("no network interface is up besides loopback; capture loopback with `-i lo`");
    }
    // Open every capture first: a missing privilege or interface is said
    // before anything starts.
    let mut captures = Vec::new();
    for name in &interfaces {
        let config = LiveConfig {
            block_size: usize::try_from(args.block_size.as_u64()).unwrap_or(usize::MAX),
            block_count: args.blocks,
            ..LiveConfig::new(name.clone())
        };
        captures.push(LiveCapture::open(config)?);
    }

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let hub = tap_hub::Hub::open(tap_hub::HubConfig {
        store: tap_hub::store::StoreConfig {
            memory_budget: args.memory_budget.as_u64(),
            disk: None,
        },
        ..Default::default()
    })
    .context("opening the entry store")?;
    let addr = format!("127.0.0.1:{}", args.port);
    let http = runtime
        .block_on(tokio::net::TcpListener::bind(&addr))
        .with_context(|| {
            format!(
                "cannot listen on {addr} (is another kubetap running? pick another with --port)"
            )
        })?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        runtime.spawn(tap_hub::serve(hub.clone(), None, http, async move {
            tap_hub::serve::shutdown_signal().await;
            stop.store(true, Ordering::Relaxed);
        }))
    };

    let mut config = PipelineConfig {
        node: args.node.clone(),
        ..Default::default()
    };
    config.dissect.max_body = args.max_body;
    let ring = Arc::new(Mutex::new(PacketRing::new(
        usize::try_from(args.pcap_ring.as_u64()).unwrap_or(usize::MAX),
    )));
    let answer = ring.clone();
    hub.set_source(
        &args.node,
        tap_hub::hub::PacketSource::Local(Arc::new(move |req: &PcapRequest| {
            vec![lock(&answer).answer(req)]
        })),
    );
    let shared = Arc::new(Mutex::new(Shared {
        pipeline: Pipeline::new(config),
        ring,
        entries: Vec::new(),
    }));
    let live_stats: Arc<Mutex<Vec<LiveStats>>> =
        Arc::new(Mutex::new(vec![LiveStats::default(); captures.len()]));
    let (queue, queued) = std::sync::mpsc::sync_channel::<Entry>(args.queue.max(1));
    let queue_drops = Arc::new(AtomicU64::new(0));
    let store = {
        let (hub, shared, live_stats, queue_drops, node) = (
            hub.clone(),
            shared.clone(),
            live_stats.clone(),
            queue_drops.clone(),
            args.node.clone(),
        );
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || store(&hub, &node, queued, &shared, &live_stats, &queue_drops))
            .context("starting the store thread")?
    };
    eprintln!(
        "kubetap: capturing on {}; the API (the UI arrives in a later step) at http://{addr}/ — Ctrl-C stops",
        interfaces.join(", ")
    );

    let threads: Vec<_> = captures
        .into_iter()
        .enumerate()
        .map(|(i, cap)| {
            let (shared, queue, stop, live_stats, drops) = (
                shared.clone(),
                queue.clone(),
                stop.clone(),
                live_stats.clone(),
                queue_drops.clone(),
            );
            std::thread::Builder::new()
                .name(format!("capture-{}", cap.interface()))
                .spawn(move || capture(cap, i, &shared, &queue, &drops, &stop, &live_stats))
        })
        .collect::<Result<_, _>>()
        .context("starting the capture threads")?;
    let mut failed = false;
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            eprintln!("kubetap: {e}");
            failed = true;
        }
    }
    // Every capture ended (Ctrl-C, or their interfaces went away): flush the
    // connections into the store, then stop.
    {
        let mut s = lock(&shared);
        let Shared {
            pipeline, entries, ..
        } = &mut *s;
        pipeline.finish(entries);
        for e in entries.drain(..) {
            offer(&queue, &queue_drops, e);
        }
    }
    drop(queue);
    let _ = store.join();
    stop.store(true, Ordering::Relaxed);
    server.abort();
    let s = lock(&shared).pipeline.stats();
    let kernel_drops: u64 = lock(&live_stats).iter().map(|l| l.kernel_drops).sum();
    eprintln!(
        "kubetap: {} packets, {} entries, {} dropped by the kernel (ring full), {} at the store's queue, {} at other bounds, {} parse errors",
        s.packets,
        s.entries,
        kernel_drops,
        queue_drops.load(Ordering::Relaxed),
        s.drops(),
        s.parse_errors
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Live capture never waits for the store: a full queue drops, counted.
fn offer(queue: &SyncSender<Entry>, drops: &AtomicU64, e: Entry) {
    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = queue.try_send(e) {
        drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// Moves queued entries into the hub in batches, and reports the worker's
/// counters to it every second, until every capture thread is done.
fn store(
    hub: &tap_hub::Hub,
    node: &str,
    queued: Receiver<Entry>,
    shared: &Mutex<Shared>,
    live_stats: &Mutex<Vec<LiveStats>>,
    queue_drops: &AtomicU64,
) {
    let mut batch = Vec::with_capacity(512);
    let mut stored = 0u64;
    // None: report at once, so the worker is listed from the start.
    let mut reported: Option<std::time::Instant> = None;
    loop {
        let done = match queued.recv_timeout(Duration::from_millis(50)) {
            Ok(e) => {
                batch.push(e);
                batch.extend(queued.try_iter().take(511));
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if !batch.is_empty() {
            stored += batch.len() as u64;
            if let Err(e) = hub.insert(node, std::mem::take(&mut batch)) {
                eprintln!("kubetap: {e}");
            }
        }
        if done || reported.is_none_or(|r| r.elapsed() >= Duration::from_secs(1)) {
            reported = Some(std::time::Instant::now());
            let s: Stats = lock(shared).pipeline.stats();
            let kernel_drops: u64 = lock(live_stats).iter().map(|l| l.kernel_drops).sum();
            let counters = WorkerCounters {
                packets: s.packets,
                bytes: s.bytes,
                entries: s.entries,
                parse_errors: s.parse_errors,
                drops: s.drops() + kernel_drops,
                queue_drops: queue_drops.load(Ordering::Relaxed),
                gap_bytes: s.gap_bytes(),
                entries_sent: stored,
                ..Default::default()
            };
            hub.report_local(node, counters, stored);
        }
        if done {
            return;
        }
    }
}

/// One interface's capture loop, until Ctrl-C or the interface goes away.
fn capture(
    mut cap: LiveCapture,
    index: usize,
    shared: &Mutex<Shared>,
    queue: &SyncSender<Entry>,
    queue_drops: &AtomicU64,
    stop: &AtomicBool,
    live_stats: &Mutex<Vec<LiveStats>>,
) -> Result<(), LiveError> {
    let mut n: u64 = 0;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        match cap.next_packet(Duration::from_millis(200)) {
            Ok(Some(pkt)) => {
                let mut s = lock(shared);
                let Shared {
                    pipeline,
                    ring,
                    entries,
                } = &mut *s;
                if let Some(flow) = pipeline.packet(&pkt, entries) {
                    lock(ring).push(&pkt, flow);
                }
                for e in entries.drain(..) {
                    offer(queue, queue_drops, e);
                }
            }
            Ok(None) => {}
            Err(LiveError::InterfaceGone { interface }) => {
                eprintln!("kubetap: interface {interface} went away; its capture ends");
                break Ok(());
            }
            Err(e) => break Err(e),
        }
        n += 1;
        if n.is_multiple_of(1024)
            && let Ok(st) = cap.stats()
        {
            lock(live_stats)[index] = st;
        }
    };
    if let Ok(st) = cap.stats() {
        lock(live_stats)[index] = st;
    }
    result
}
