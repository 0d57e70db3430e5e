//! `kubetap tap --local`: live capture on this host with the hub in the same
//! process. The worker's live capture (`tap_worker::tap`) feeds a bounded
//! queue that this thread moves into the in-process hub, without a gRPC hop
//! (which would itself be captured on `lo`); the worker's counters are shown
//! in the workers panel, and PCAP export reads the raw-packet ring.

use anyhow::{Context as _, bail};
use proto::v1::{Entry, PcapRequest, WorkerCounters};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tap_worker::PipelineConfig;
use tap_worker::capture::live::LiveConfig;
use tap_worker::ring::PacketRing;
use tap_worker::tap::{LiveTap, PodSource, PodWatch, Sink};

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
    /// Capture the pods listed in this JSON file (`[{"name", "namespace",
    /// "ips": [...]}]`) on their host veths, following the file as it
    /// changes; entries name the pods.
    #[arg(long, value_name = "FILE", conflicts_with = "interfaces")]
    pub pods: Option<std::path::PathBuf>,
    /// Capture inside this network namespace (e.g. /run/netns/NODE: a node
    /// of veth pods, as `cargo xtask demo` makes); the API stays on this
    /// host's 127.0.0.1.
    #[arg(long, value_name = "PATH")]
    pub netns: Option<std::path::PathBuf>,
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
    /// Sockets per interface, 1 to 64: with more than one, the interface's
    /// packets are spread over that many threads by a PACKET_FANOUT flow
    /// hash (both directions of a connection go to the same one), each
    /// with its own connection table. Up to the cores it may use.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub fanout: u16,
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

/// Interfaces that are up, from /sys/class/net (loopback left out). Inside
/// another network namespace (`in_netns`) /sys still shows this host's, so
/// the thread's own list (/proc/thread-self/net/dev) is used, all of it.
fn default_interfaces(in_netns: bool) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    if in_netns {
        let dev = std::fs::read_to_string("/proc/thread-self/net/dev")
            .context("listing network interfaces")?;
        for line in dev.lines().skip(2) {
            if let Some((name, _)) = line.split_once(':') {
                let name = name.trim();
                if name != "lo" {
                    out.push(name.to_string());
                }
            }
        }
        out.sort();
        return Ok(out);
    }
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn tap(args: &TapArgs) -> anyhow::Result<ExitCode> {
    if !args.local {
        bail!(
            "only local mode exists yet: run `kubetap tap --local` (cluster mode arrives with the Kubernetes commands)"
        );
    }
    if let Err(e) = tap_worker::capture::live::disable_transparent_huge_pages() {
        tracing::debug!(%e, "transparent huge pages stay as the kernel has them");
    }
    let mut config = PipelineConfig {
        node: args.node.clone(),
        ..Default::default()
    };
    config.dissect.max_body = args.max_body;
    let (queue, queued) = std::sync::mpsc::sync_channel::<Entry>(args.queue.max(1));
    let queue_drops = Arc::new(AtomicU64::new(0));
    let sink: Sink = {
        let (queue, drops) = (Mutex::new(queue), queue_drops.clone());
        Arc::new(move |e| offer(&lock(&queue), &drops, e))
    };
    if let Some(e) = tap_worker::ring::budget_error(args.pcap_ring.as_u64()) {
        anyhow::bail!("--pcap-ring: {e}");
    }
    let ring = Arc::new(Mutex::new(PacketRing::new(
        usize::try_from(args.pcap_ring.as_u64()).unwrap_or(usize::MAX),
    )));
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (hub, http, addr) = crate::local::hub(&runtime, args.memory_budget.as_u64(), args.port)?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        runtime.spawn(tap_hub::serve(hub.clone(), None, http, async move {
            tap_hub::serve::shutdown_signal().await;
            stop.store(true, Ordering::Relaxed);
        }))
    };
    // Everything captured from here on is in --netns; the API socket above
    // stays on this host. Threads started below inherit the namespace.
    if let Some(ns) = &args.netns {
        tap_worker::capture::live::enter_netns(ns)
            .with_context(|| format!("entering the network namespace {}", ns.display()))?;
    }
    let template = |name: &str| LiveConfig {
        block_size: usize::try_from(args.block_size.as_u64()).unwrap_or(usize::MAX),
        block_count: args.blocks,
        ..LiveConfig::new(name)
    };
    let (mut live, mut watch, what) = match &args.pods {
        Some(path) => {
            // A wrong path or a bad list is an error at once; later changes
            // to the file are followed (and a bad one reported, not fatal).
            tap_worker::pods::load(path)?;
            let watch = PodWatch::new(PodSource::File(path.clone()), None, template(""))
                .context("opening a netlink socket to find pod interfaces")?;
            let what = format!("the pods listed in {}", path.display());
            (
                LiveTap::idle(config, args.fanout, ring.clone(), sink),
                Some(watch),
                what,
            )
        }
        None => {
            let interfaces = if !args.interfaces.is_empty() {
                args.interfaces.clone()
            } else {
                default_interfaces(args.netns.is_some())?
            };
            if interfaces.is_empty() {
                bail!("no network interface is up besides loopback; capture loopback with `-i lo`");
            }
            let live = LiveTap::start(
                interfaces.iter().map(|name| template(name)).collect(),
                config,
                args.fanout,
                ring.clone(),
                sink,
            )?;
            (live, None, format!("on {}", interfaces.join(", ")))
        }
    };
    let answer = ring;
    hub.set_source(
        &args.node,
        tap_hub::hub::PacketSource::Local(Arc::new(move |req: &PcapRequest| {
            vec![lock(&answer).answer(req)]
        })),
    );
    eprintln!("kubetap: capturing {what}; the UI at http://{addr}/ — Ctrl-C stops");

    // This thread moves entries into the hub and reports the worker's
    // counters, until Ctrl-C or until every capture has ended.
    let mut stored = 0u64;
    let mut reported: Option<std::time::Instant> = None;
    let report = |live: &LiveTap, stored: u64| {
        let counters = WorkerCounters {
            queue_drops: queue_drops.load(Ordering::Relaxed),
            entries_sent: stored,
            ..live.counters()
        };
        hub.report_local(&args.node, counters, stored);
    };
    let store = |batch: Vec<Entry>, stored: &mut u64| {
        *stored += batch.len() as u64;
        if let Err(e) = hub.insert(&args.node, batch) {
            eprintln!("kubetap: {e}");
        }
    };
    let mut ticked: Option<std::time::Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Some(w) = watch.as_mut() {
            if ticked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                ticked = Some(std::time::Instant::now());
                for line in w.tick(&mut live) {
                    eprintln!("kubetap: {line}");
                }
            }
        } else if live.finished() {
            break;
        }
        // Polled, not waited on: a receiver blocked on the queue makes every
        // entry the capture sends a wake-up (a futex call and a context
        // switch each, a tenth of the capture's time at 300k entries/s).
        let batch: Vec<Entry> = queued.try_iter().take(4096).collect();
        // Counters go out before the entries they count (the workers panel
        // never shows fewer packets than the entries listed imply): once per
        // batch (at most 200 a second when entries trickle in, one per 4,096
        // entries under load; reading them takes each capture lock briefly).
        if !batch.is_empty() || reported.is_none_or(|r| r.elapsed() >= Duration::from_secs(1)) {
            reported = Some(std::time::Instant::now());
            report(&live, stored);
        }
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        } else {
            store(batch, &mut stored);
        }
    }
    // Stopping flushes the open connections into the queue: store them too.
    let stopped = live.stop();
    let (s, final_counters, errors) = (stopped.stats, stopped.counters, stopped.errors);
    let kernel_drops = final_counters.kernel_drops;
    store(queued.try_iter().collect(), &mut stored);
    hub.report_local(
        &args.node,
        WorkerCounters {
            queue_drops: queue_drops.load(Ordering::Relaxed),
            entries_sent: stored,
            ..final_counters
        },
        stored,
    );
    server.abort();
    for e in &errors {
        eprintln!("kubetap: {e}");
    }
    let copies = final_counters.duplicate_packets;
    eprintln!(
        "kubetap: {} packets, {} entries, {} dropped by the kernel (ring full), {} at the store's queue, {} at other bounds, {} parse errors{}",
        s.packets,
        s.entries,
        kernel_drops,
        queue_drops.load(Ordering::Relaxed),
        s.drops(),
        s.parse_errors,
        if copies > 0 {
            format!("; {copies} copies of packets taken on another interface skipped")
        } else {
            String::new()
        }
    );
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Live capture never waits for the store: a full queue drops, counted.
fn offer(queue: &SyncSender<Entry>, drops: &AtomicU64, e: Entry) {
    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = queue.try_send(e) {
        drops.fetch_add(1, Ordering::Relaxed);
    }
}
