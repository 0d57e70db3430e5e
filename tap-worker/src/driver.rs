//! The capture driver: the one loop behind `kubetap read`, `kubetap tap
//! --local` and `tap-worker`.
//!
//! ```text
//!  Source ──► stages (pipeline) ──► EntryQueue (bounded) ──► Sink
//!  file / interfaces / pods     │                     shipper / in-process hub / stdout
//!                               └──► PacketRing (raw packets for PCAP export)
//! ```
//!
//! A [`Source`] runs on threads of its own (a file's reader, a thread per
//! capture socket) and pushes entries into the queue: a file waits for room,
//! a live capture drops and counts. [`run`] is the caller's side: it ticks the
//! source (pod lists followed, ended captures reaped), hands the queue to the
//! [`Sink`] until the source ends or `stop` is set, then flushes the open
//! connections and lets the sink take the rest.
//!
//! The stages themselves are `pipeline::Pipeline` (decode → reassemble →
//! detect → dissect → pair); the options every binary shares are
//! [`PipelineArgs`], [`LiveArgs`] and [`QueueArgs`].

use crate::capture::live::{LiveConfig, LiveError};
use crate::capture::{CaptureError, CaptureFile};
use crate::queue::{EntryQueue, QueueBounds};
use crate::ring::PacketRing;
use crate::tap::{LiveTap, PodSource, PodWatch};
use crate::tls::source::TlsSource;
use crate::tls::streams::Decrypted;
use crate::{Pipeline, PipelineConfig, Stats};
use anyhow::Context as _;
use proto::v1::{Entry, WorkerCounters};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What every capturing command takes about the entries it makes.
#[derive(clap::Args, Debug, Clone)]
pub struct PipelineArgs {
    /// Node name written into the entries.
    #[arg(long, default_value = "local")]
    pub node: String,
    /// Body bytes kept per message (after decoding); longer bodies are flagged truncated.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_body: usize,
}

impl PipelineArgs {
    pub fn config(&self) -> PipelineConfig {
        let mut config = PipelineConfig {
            node: self.node.clone(),
            ..Default::default()
        };
        config.dissect.max_body = self.max_body;
        config
    }
}

/// Live capture options, shared by `kubetap tap --local` and `tap-worker`.
#[derive(clap::Args, Debug, Clone)]
pub struct LiveArgs {
    /// Interface to capture on (repeat for several).
    #[arg(long = "interface", short = 'i', value_name = "IF")]
    pub interfaces: Vec<String>,
    /// Capture the pods listed in this JSON file (`[{"name", "namespace",
    /// "ips": [...], "node"}]`) on their host veths, following the file as
    /// it changes; pods of another node (`node` not this --node) are left
    /// alone. Entries name the pods.
    #[arg(long, value_name = "FILE", conflicts_with = "interfaces")]
    pub pods: Option<PathBuf>,
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
    /// Also read TLS plaintext with eBPF uprobes on the TLS libraries of
    /// the node's processes (OpenSSL), joined to their connections and
    /// dissected like captured packets, entries marked `tls`. Needs root
    /// (or CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN and CAP_SYS_PTRACE); without
    /// them, says what is missing and captures packets alone.
    #[arg(long)]
    pub tls: bool,
}

impl LiveArgs {
    /// Ring sizes for a capture on `interface`.
    pub fn template(&self, interface: &str) -> LiveConfig {
        LiveConfig {
            block_size: usize::try_from(self.block_size.as_u64()).unwrap_or(usize::MAX),
            block_count: self.blocks,
            ..LiveConfig::new(interface)
        }
    }

    /// The source these options name: the pods of `--pods`, the interfaces
    /// of `-i`, or (none given) `default_interfaces`.
    pub fn source(
        &self,
        node: Option<String>,
        default_interfaces: impl FnOnce() -> anyhow::Result<Vec<String>>,
    ) -> anyhow::Result<Source> {
        if let Some(path) = &self.pods {
            // A wrong path or a bad list is an error at once; later changes
            // to the file are followed (and a bad one reported, not fatal).
            crate::pods::load(path)?;
            return Ok(Source::Pods {
                pods: PodSource::File(path.clone()),
                node,
                live: self.clone(),
            });
        }
        let interfaces = if self.interfaces.is_empty() {
            default_interfaces()?
        } else {
            self.interfaces.clone()
        };
        if interfaces.is_empty() {
            anyhow::bail!(
                "no network interface is up besides loopback; capture loopback with `-i lo`"
            );
        }
        Ok(Source::Interfaces {
            names: interfaces,
            live: self.clone(),
        })
    }
}

/// The entry queue's bounds, as options.
#[derive(clap::Args, Debug, Clone)]
pub struct QueueArgs {
    /// Entries waiting for the sink (the hub, the store), at most; a live
    /// capture drops what does not fit, and counts it.
    #[arg(long, default_value_t = 64 * 1024)]
    pub queue: usize,
    /// Memory the waiting entries may take, at most (each counted as the
    /// heap it holds); beyond it, as beyond --queue.
    #[arg(long, default_value = "32MiB")]
    pub queue_memory: bytesize::ByteSize,
}

impl QueueArgs {
    pub fn queue(&self) -> Arc<EntryQueue> {
        Arc::new(EntryQueue::new(QueueBounds {
            entries: self.queue,
            memory: usize::try_from(self.queue_memory.as_u64()).unwrap_or(usize::MAX),
        }))
    }
}

/// The raw-packet ring for PCAP export, `budget` bytes (0: none kept); a
/// budget the machine cannot hold is refused, naming `option`.
pub fn packet_ring(option: &str, budget: u64) -> anyhow::Result<Option<Arc<Mutex<PacketRing>>>> {
    if let Some(e) = crate::ring::budget_error(budget) {
        anyhow::bail!("{option}: {e}");
    }
    Ok((budget > 0).then(|| {
        Arc::new(Mutex::new(PacketRing::new(
            usize::try_from(budget).unwrap_or(usize::MAX),
        )))
    }))
}

/// Where packets come from.
pub enum Source {
    /// A capture file ('-': stdin), read as fast as the sink takes it, or
    /// at the pace it was recorded (times `pace`), dropping like a live
    /// capture when the sink cannot keep up.
    File { path: PathBuf, pace: Option<f64> },
    /// Live interfaces of this network namespace.
    Interfaces { names: Vec<String>, live: LiveArgs },
    /// Target pods, each captured on its host veth (`tap::PodWatch`).
    Pods {
        pods: PodSource,
        /// This worker's node: pods listed for another are left alone.
        node: Option<String>,
        live: LiveArgs,
    },
}

/// What a driver is made of besides its source.
pub struct DriverConfig {
    pub pipeline: PipelineConfig,
    pub queue: Arc<EntryQueue>,
    pub ring: Option<Arc<Mutex<PacketRing>>>,
}

/// A running source feeding the queue.
pub struct Driver {
    queue: Arc<EntryQueue>,
    ring: Option<Arc<Mutex<PacketRing>>>,
    /// Packets earlier rings (replaced by the hub's settings) let go, and
    /// those they had blanked.
    ring_evicted_before: u64,
    ring_blanked_before: u64,
    /// The redaction rules every pipeline and the TLS source apply.
    redaction: crate::redact::Redaction,
    run: Run,
    described: String,
    /// TLS plaintext (`--tls`), beside a live source.
    tls: Option<TlsSource>,
    /// Why `--tls` could not be had.
    tls_unavailable: Option<String>,
    /// Handshake entries waiting to learn whether their connection was
    /// decrypted (`--tls`), and the connections that were.
    held: Arc<Mutex<Held>>,
    decrypted: Option<Arc<Decrypted>>,
    /// The hub's configuration applied last: a new one is applied (and
    /// logged) only where it differs.
    applied: Option<proto::v1::WorkerConfig>,
}

/// How long a handshake's entry waits for its connection's plaintext.
const HOLD: Duration = Duration::from_millis(1500);
/// Handshake entries waiting at most; beyond, one goes on at once.
const MAX_HELD: usize = 16 * 1024;

/// Handshake entries waiting, oldest first.
#[derive(Default)]
struct Held {
    entries: std::collections::VecDeque<(Instant, Entry)>,
}

impl Held {
    /// Keeps `e`, or hands it back when full.
    fn hold(&mut self, e: Entry) -> Option<Entry> {
        if self.entries.len() >= MAX_HELD {
            return Some(e);
        }
        self.entries.push_back((Instant::now(), e));
        None
    }

    /// The entries whose wait is over (`all`: every one).
    fn due(&mut self, all: bool) -> Vec<Entry> {
        let mut out = Vec::new();
        while let Some((since, _)) = self.entries.front() {
            if !all && since.elapsed() < HOLD {
                break;
            }
            if let Some((_, e)) = self.entries.pop_front() {
                out.push(e);
            }
        }
        out
    }
}

enum Run {
    File {
        thread: JoinHandle<FileEnd>,
        stats: Arc<Mutex<Stats>>,
        stop: Arc<AtomicBool>,
    },
    Live {
        tap: Box<LiveTap>,
        watch: Option<Box<PodWatch>>,
        ticked: Option<Instant>,
    },
    /// Stopped: its final counters.
    Stopped(WorkerCounters),
}

/// How a file's reading ended.
struct FileEnd {
    stats: Stats,
    offset: u64,
    failure: Option<String>,
    warning: Option<String>,
}

/// What a driver leaves when it stops.
#[derive(Debug)]
pub struct Outcome {
    pub stats: Stats,
    pub counters: WorkerCounters,
    /// Errors the source ended with (a damaged file, a capture that failed).
    pub errors: Vec<String>,
    /// What the user should know but is not a failure: a capture file cut
    /// inside its last record (a capture process killed), whose earlier
    /// records were all read.
    pub warnings: Vec<String>,
    /// A file's bytes read.
    pub file_bytes: u64,
}

impl Outcome {
    /// Prints the errors and warnings on stderr, one line each, after `who: `.
    pub fn print_problems(&self, who: &str) {
        for e in &self.errors {
            eprintln!("{who}: {e}");
        }
        for w in &self.warnings {
            eprintln!("{who}: warning: {w}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Driver {
    /// Starts the source. Live sources open every interface first, so a
    /// missing privilege or interface fails before anything runs. A live
    /// source needs a ring (`config.ring`).
    pub fn start(source: Source, config: DriverConfig) -> anyhow::Result<Driver> {
        let DriverConfig {
            pipeline,
            queue,
            ring,
        } = config;
        let redaction = pipeline.redaction.clone();
        let tls_asked = match &source {
            Source::Interfaces { live, .. } | Source::Pods { live, .. } => live.tls,
            Source::File { .. } => false,
        };
        let decrypted = Arc::new(Decrypted::default());
        let held = Arc::new(Mutex::new(Held::default()));
        let sink: crate::tap::Sink = {
            let queue = queue.clone();
            let (decrypted, held) = (decrypted.clone(), held.clone());
            Arc::new(move |e: Entry| {
                if !tls_asked {
                    queue.offer(e);
                    return;
                }
                // A handshake's entry comes as soon as the handshake is
                // over, often before the connection's first plaintext: it
                // waits a moment to learn whether it was decrypted.
                let e = if e.protocol == proto::v1::Protocol::Tls as i32 {
                    match lock(&held).hold(e) {
                        None => return,
                        Some(e) => e,
                    }
                } else {
                    e
                };
                // The packets of a connection read in plaintext: its
                // plaintext's entries stand for them.
                if !decrypted.replaces(&e) {
                    queue.offer(e);
                }
            })
        };
        let (tls, tls_unavailable) = if tls_asked {
            let plain: crate::tap::Sink = {
                let queue = queue.clone();
                Arc::new(move |e: Entry| {
                    queue.offer(e);
                })
            };
            match TlsSource::start(
                pipeline.node.clone(),
                Arc::new(pipeline.dissect.clone()),
                pipeline.redaction.clone(),
                decrypted.clone(),
                plain,
                ring.clone(),
            ) {
                Ok(t) => (Some(t), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, None)
        };
        let live_ring = || {
            ring.clone()
                .unwrap_or_else(|| Arc::new(Mutex::new(PacketRing::new(0))))
        };
        let (run, described) = match source {
            Source::File { path, pace } => {
                let file = CaptureFile::open(&path)?;
                let stats = Arc::new(Mutex::new(Stats::default()));
                let stop = Arc::new(AtomicBool::new(false));
                let reader = FileReader {
                    pipeline: Pipeline::new(pipeline),
                    queue: queue.clone(),
                    ring: ring.clone(),
                    pace,
                    stats: stats.clone(),
                    stop: stop.clone(),
                };
                let thread = std::thread::Builder::new()
                    .name("read-file".into())
                    .spawn(move || reader.run(file))
                    .context("starting the file's reader thread")?;
                (
                    Run::File {
                        thread,
                        stats,
                        stop,
                    },
                    path.display().to_string(),
                )
            }
            Source::Interfaces { names, live } => {
                let tap = LiveTap::start(
                    names.iter().map(|n| live.template(n)).collect(),
                    pipeline,
                    live.fanout,
                    live_ring(),
                    sink,
                )?;
                (
                    Run::Live {
                        tap: Box::new(tap),
                        watch: None,
                        ticked: None,
                    },
                    format!("on {}", names.join(", ")),
                )
            }
            Source::Pods { pods, node, live } => {
                // Without capture sockets or entering their namespaces no
                // pod is ever captured: said now, not as "no interface
                // (yet)" forever. Without CAP_SYS_PTRACE some are found.
                use crate::privileges::{Cap, describe, missing};
                let (ptrace, fatal): (Vec<_>, Vec<_>) = missing(crate::privileges::PODS)
                    .into_iter()
                    .partition(|n| n.cap == Cap::SysPtrace);
                if !fatal.is_empty() {
                    anyhow::bail!(
                        "--pods: this process lacks {}; run as root or grant them (securityContext.capabilities.add: [NET_RAW, SYS_ADMIN, SYS_PTRACE])",
                        describe(&fatal)
                    );
                }
                if !ptrace.is_empty() {
                    tracing::warn!(
                        "--pods: this process lacks {}: only pods whose network namespace is pinned under /run/netns are found",
                        describe(&ptrace)
                    );
                }
                let described = match &pods {
                    PodSource::File(p) => format!("the pods listed in {}", p.display()),
                    PodSource::List(_) => "the target pods".to_string(),
                    PodSource::Hub => "the pods the hub sends for this node".to_string(),
                };
                let watch = PodWatch::new(pods, node, live.template(""))
                    .context("opening a netlink socket to find pod interfaces")?;
                let tap = LiveTap::idle(pipeline, live.fanout, live_ring(), sink);
                (
                    Run::Live {
                        tap: Box::new(tap),
                        watch: Some(Box::new(watch)),
                        ticked: None,
                    },
                    described,
                )
            }
        };
        Ok(Driver {
            queue,
            ring,
            ring_evicted_before: 0,
            ring_blanked_before: 0,
            redaction,
            run,
            described,
            tls,
            tls_unavailable,
            held,
            decrypted: tls_asked.then_some(decrypted),
            applied: None,
        })
    }

    /// What is captured, for a log line ("on eth0, lo", "the pods listed in …").
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// Why `--tls` was asked for and could not be had (the packets are
    /// captured all the same).
    pub fn tls_unavailable(&self) -> Option<&str> {
        self.tls_unavailable.as_deref()
    }

    pub fn queue(&self) -> &Arc<EntryQueue> {
        &self.queue
    }

    pub fn ring(&self) -> Option<&Arc<Mutex<PacketRing>>> {
        self.ring.as_ref()
    }

    /// Handshake entries whose wait is over go on, unless their connection
    /// was decrypted.
    fn release_held(&self, all: bool) {
        let Some(decrypted) = &self.decrypted else {
            return;
        };
        let due = lock(&self.held).due(all);
        for e in due {
            if !decrypted.replaces(&e) {
                self.queue.offer(e);
            }
        }
    }

    /// Periodic work: held handshake entries released, a pod list followed
    /// (once a second), ended captures reaped. Returns what changed, one
    /// line each, for the log.
    pub fn tick(&mut self) -> Vec<String> {
        self.release_held(false);
        let Run::Live {
            tap,
            watch: Some(watch),
            ticked,
        } = &mut self.run
        else {
            return Vec::new();
        };
        if ticked.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return Vec::new();
        }
        *ticked = Some(Instant::now());
        let log = watch.tick(tap);
        if let (Some(tls), Some(names)) = (&self.tls, tap.take_new_names()) {
            tls.set_names(names);
        }
        log
    }

    /// Applies the hub's configuration when it has changed since the last
    /// call; returns a line for the log when a part of it changed.
    pub fn follow(
        &mut self,
        hub: &mut tokio::sync::watch::Receiver<Option<proto::v1::WorkerConfig>>,
    ) -> Option<String> {
        if !hub.has_changed().unwrap_or(false) {
            return None;
        }
        let config = hub.borrow_and_update().clone()?;
        let log = self.apply(&config);
        (!log.is_empty()).then(|| log.join("; "))
    }

    /// Narrows the target pods to those whose name matches one of `names`
    /// (regexes) in one of `namespaces` (empty: any), from the next tick on;
    /// false when this source does not capture pods.
    pub fn select_pods(&mut self, selector: crate::pods::Selector) -> bool {
        match &mut self.run {
            Run::Live {
                watch: Some(watch),
                ticked,
                ..
            } => {
                watch.select(selector);
                *ticked = None;
                true
            }
            _ => false,
        }
    }

    /// Takes the hub's pod list for this node when this capture follows the
    /// hub's pods (`--hub-pods`); returns what was done, for the log.
    fn set_hub_pods(&mut self, pods: &[proto::v1::ClusterPod]) -> Option<String> {
        let Run::Live {
            watch: Some(watch),
            ticked,
            ..
        } = &mut self.run
        else {
            return None;
        };
        if !watch.follows_hub() {
            return None;
        }
        let mut bad = Vec::new();
        let list: Vec<crate::pods::TargetPod> = pods
            .iter()
            .map(|p| crate::pods::TargetPod {
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                ips: p
                    .ips
                    .iter()
                    .filter_map(|ip| match ip.parse() {
                        Ok(ip) => Some(ip),
                        Err(_) => {
                            bad.push(format!("{}/{}: {ip:?}", p.namespace, p.name));
                            None
                        }
                    })
                    .collect(),
                node: Some(p.node.clone()).filter(|n| !n.is_empty()),
            })
            .collect();
        let n = list.len();
        watch.set_pods(list);
        *ticked = None;
        let mut line = format!("pods from the hub: {n} on this node");
        if !bad.is_empty() {
            line.push_str(&format!(
                " (addresses that are not IPs left out: {})",
                bad.join(", ")
            ));
        }
        Some(line)
    }

    /// Applies a configuration the hub pushed: its target pods, and its
    /// capture settings (0: unchanged) to a live capture, and its redaction
    /// rules to every entry from now on. Only the parts that differ from
    /// the configuration applied before are applied (the hub sends a new
    /// version at each change of its node's pods, say). Returns what was
    /// done, for the log, one line each.
    pub fn apply(&mut self, c: &proto::v1::WorkerConfig) -> Vec<String> {
        let before = self.applied.replace(c.clone());
        let changed = |part: fn(&proto::v1::WorkerConfig) -> Vec<String>| {
            before.as_ref().is_none_or(|b| part(b) != part(c))
        };
        let mut log = Vec::new();
        if changed(|c| [c.target_pods.clone(), c.target_namespaces.clone()].concat()) {
            log.push(self.apply_targets(c));
        }
        if c.pods_followed
            && before
                .as_ref()
                .is_none_or(|b| b.pods != c.pods || !b.pods_followed)
        {
            log.extend(self.set_hub_pods(&c.pods));
        }
        if before.as_ref().is_none_or(|b| b.redaction != c.redaction) {
            log.push(self.apply_redaction(c));
        }
        if before.as_ref().is_none_or(|b| b.capture != c.capture) {
            log.extend(self.apply_capture(c));
        }
        log
    }

    fn apply_targets(&mut self, c: &proto::v1::WorkerConfig) -> String {
        match crate::pods::Selector::new(&c.target_pods, &c.target_namespaces) {
            Ok(s) => {
                if self.select_pods(s) {
                    format!(
                        "target pods from the hub: names {:?} in namespaces {:?} (empty: all)",
                        c.target_pods, c.target_namespaces
                    )
                } else {
                    "the hub's target pods are not applied: this worker captures interfaces or a file, not pods (--pods)".into()
                }
            }
            Err(e) => {
                format!("the hub's target pods are not valid, keeping the previous ones: {e}")
            }
        }
    }

    fn apply_redaction(&mut self, c: &proto::v1::WorkerConfig) -> String {
        match self.redaction.set_rules(&c.redaction) {
            Ok(()) => format!(
                "redaction rules from the hub: the default keys and {} rule(s) of the hub's",
                c.redaction.len()
            ),
            Err(e) => {
                format!("the hub's redaction rules are refused, keeping the previous ones: {e}")
            }
        }
    }

    fn apply_capture(&mut self, c: &proto::v1::WorkerConfig) -> Vec<String> {
        let mut log = Vec::new();
        let Some(capture) = c.capture else {
            return log;
        };
        let Run::Live { tap, .. } = &mut self.run else {
            if capture.max_body > 0 || capture.pcap_ring_bytes > 0 {
                log.push("the hub's capture settings apply to live captures, not to a file".into());
            }
            return log;
        };
        if capture.max_body > 0 {
            let max_body = usize::try_from(capture.max_body).unwrap_or(usize::MAX);
            tap.set_max_body(max_body);
            log.push(format!(
                "max body from the hub: {max_body} bytes per message, for connections from now on"
            ));
        }
        if capture.pcap_ring_bytes > 0 {
            let budget = capture.pcap_ring_bytes;
            match (crate::ring::budget_error(budget), &self.ring) {
                (Some(e), _) => log.push(format!("the hub's PCAP ring size is refused: {e}")),
                (None, None) => log.push(
                    "the hub's PCAP ring size is not applied: this worker keeps no raw packets (--pcap-ring 0)".into(),
                ),
                (None, Some(ring)) => {
                    // A ring of another size starts empty: the packets kept
                    // so far go (counted, so the eviction counter never
                    // runs backwards).
                    let mut ring = lock(ring);
                    let old = ring.stats();
                    self.ring_evicted_before += old.evicted_packets + old.packets;
                    self.ring_blanked_before += ring.blanked_packets();
                    *ring = PacketRing::new(usize::try_from(budget).unwrap_or(usize::MAX));
                    log.push(format!(
                        "PCAP ring from the hub: {budget} bytes (the packets kept before are dropped)"
                    ));
                }
            }
        }
        log
    }

    /// The pods being captured now (`namespace/name`), for pod sources.
    pub fn captured_pods(&self) -> Vec<String> {
        match &self.run {
            Run::Live {
                watch: Some(watch), ..
            } => watch
                .captures()
                .iter()
                .flat_map(|c| c.pods.iter().cloned())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the source has ended by itself: a file read to its end (or
    /// its damage), every live interface gone. A pod source never ends: pods
    /// come back.
    pub fn finished(&self) -> bool {
        match &self.run {
            Run::File { thread, .. } => thread.is_finished(),
            Run::Live {
                tap, watch: None, ..
            } => tap.finished(),
            Run::Live { .. } => false,
            Run::Stopped(_) => true,
        }
    }

    /// The worker's counters now: the capture's, the queue's and the ring's,
    /// with every drop by cause.
    pub fn counters(&self) -> WorkerCounters {
        match &self.run {
            Run::File { stats, .. } => {
                let stats = lock(stats).clone();
                self.complete(file_counters(&stats), &stats)
            }
            Run::Live { tap, .. } => {
                let (c, stats) = tap.counters_and_stats();
                self.complete(c, &stats)
            }
            Run::Stopped(c) => c.clone(),
        }
    }

    /// `c` with the queue's drops, every drop by cause and TLS's part.
    fn complete(&self, c: WorkerCounters, stats: &Stats) -> WorkerCounters {
        let queue = self.queue.drops();
        let ring_evicted = self.ring_evicted_before
            + self
                .ring
                .as_ref()
                .map_or(0, |r| lock(r).stats().evicted_packets);
        let tls_counts = self.tls.as_ref().map(TlsSource::counts).unwrap_or_default();
        let tls = match (&self.tls, &self.tls_unavailable) {
            (Some(t), _) => Some(t.status()),
            (None, Some(why)) => Some(proto::v1::TlsStatus {
                state: "unavailable".into(),
                reason: why.clone(),
                ..Default::default()
            }),
            (None, None) => None,
        };
        let l = &tls_counts.lost;
        WorkerCounters {
            queue_drops: queue.total(),
            drops_by_cause: crate::drops::by_cause(
                stats,
                c.kernel_drops,
                queue,
                ring_evicted,
                &tls_counts,
            ),
            entries: c.entries + tls_counts.entries,
            parse_errors: c.parse_errors + tls_counts.parse_errors,
            drops: c.drops
                + l.ring_full
                + l.unreadable
                + l.calls_full
                + tls_counts.streams.no_socket
                + tls_counts.streams.unresolved
                + tls_counts.dissect_dropped,
            tls: tls.map(Box::new),
            redacted_entries: self.redaction.counts.entries.load(Ordering::Relaxed),
            redacted_fields: self.redaction.counts.fields.load(Ordering::Relaxed),
            blanked_packets: self.ring_blanked_before
                + self.ring.as_ref().map_or(0, |r| lock(r).blanked_packets()),
            ..c
        }
    }

    /// Stops the source: a file stops reading, live captures end; the open
    /// connections are flushed into the queue either way. Stopping twice
    /// gives the same counters and no errors.
    pub fn stop(&mut self) -> Outcome {
        // TLS first: its open connections flushed into the queue, its
        // probes detached; its final counts stay for the outcome.
        if let Some(tls) = &mut self.tls {
            tls.stop();
        }
        let outcome = self.stop_source();
        self.release_held(true);
        outcome
    }

    fn stop_source(&mut self) -> Outcome {
        let outcome = match std::mem::replace(&mut self.run, Run::Stopped(Default::default())) {
            Run::File {
                thread,
                stats,
                stop,
            } => {
                stop.store(true, Ordering::Relaxed);
                let end = thread.join().unwrap_or_else(|_| FileEnd {
                    stats: lock(&stats).clone(),
                    offset: 0,
                    failure: Some("the file's reader thread panicked".into()),
                    warning: None,
                });
                let counters = self.complete(file_counters(&end.stats), &end.stats);
                Outcome {
                    stats: end.stats,
                    counters,
                    errors: end.failure.into_iter().collect(),
                    warnings: end.warning.into_iter().collect(),
                    file_bytes: end.offset,
                }
            }
            Run::Live { tap, .. } => {
                let stopped = (*tap).stop();
                Outcome {
                    counters: self.complete(stopped.counters, &stopped.stats),
                    stats: stopped.stats,
                    errors: stopped.errors.iter().map(LiveError::to_string).collect(),
                    warnings: Vec::new(),
                    file_bytes: 0,
                }
            }
            Run::Stopped(counters) => Outcome {
                stats: Stats::default(),
                counters,
                errors: Vec::new(),
                warnings: Vec::new(),
                file_bytes: 0,
            },
        };
        self.run = Run::Stopped(outcome.counters.clone());
        outcome
    }
}

fn file_counters(s: &Stats) -> WorkerCounters {
    WorkerCounters {
        packets: s.packets,
        bytes: s.bytes,
        entries: s.entries,
        parse_errors: s.parse_errors,
        drops: s.drops(),
        gap_bytes: s.gap_bytes(),
        offloaded_packets: s.decode.length_from_capture,
        decapsulated_packets: s.decode.decapsulated,
        ..Default::default()
    }
}

/// A capture file's reader thread.
struct FileReader {
    pipeline: Pipeline,
    queue: Arc<EntryQueue>,
    ring: Option<Arc<Mutex<PacketRing>>>,
    pace: Option<f64>,
    stats: Arc<Mutex<Stats>>,
    stop: Arc<AtomicBool>,
}

impl FileReader {
    fn run(mut self, mut file: CaptureFile) -> FileEnd {
        let started = Instant::now();
        let mut first_ts = None;
        let mut out: Vec<Entry> = Vec::new();
        let mut failure = None;
        let mut warning = None;
        let mut n: u64 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            match file.next_packet() {
                Ok(Some(pkt)) => {
                    if let Some(speed) = self.pace {
                        let first = *first_ts.get_or_insert(pkt.ts_ns);
                        let due =
                            Duration::from_nanos(pkt.ts_ns.saturating_sub(first)).div_f64(speed);
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let flow = self.pipeline.packet(&pkt, &mut out);
                    let blanks = self.pipeline.take_blanks();
                    if let Some(ring) = &self.ring {
                        let mut ring = lock(ring);
                        if let Some(flow) = flow {
                            ring.push(&pkt, flow);
                        }
                        for b in &blanks {
                            ring.blank(b);
                        }
                    }
                }
                Ok(None) => break,
                // Cut inside its last record (the process writing it was
                // killed): everything before was read, which is the point of
                // reading it; a failure only when not one record was there.
                Err(e @ CaptureError::Truncated { .. }) if n > 0 => {
                    warning = Some(format!("{e}; the {n} packets before it were read"));
                    break;
                }
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
            n += 1;
            if n.is_multiple_of(256) {
                *lock(&self.stats) = self.pipeline.stats();
            }
            if self.deliver(&mut out).is_err() {
                break;
            }
        }
        // Whatever the end, flush the connections: every entry decoded so
        // far is delivered.
        self.pipeline.finish(&mut out);
        let blanks = self.pipeline.take_blanks();
        if let Some(ring) = &self.ring {
            let mut ring = lock(ring);
            for b in &blanks {
                ring.blank(b);
            }
        }
        let _ = self.deliver(&mut out);
        let stats = self.pipeline.stats();
        *lock(&self.stats) = stats.clone();
        FileEnd {
            stats,
            offset: file.offset(),
            failure,
            warning,
        }
    }

    /// A paced replay behaves like live capture (drops when the sink cannot
    /// keep up); a plain read waits for room.
    fn deliver(&self, out: &mut Vec<Entry>) -> Result<(), crate::queue::Closed> {
        if out.is_empty() {
            return Ok(());
        }
        if self.pace.is_some() {
            for e in out.drain(..) {
                self.queue.offer(e);
            }
            Ok(())
        } else {
            self.queue.send_all(out)
        }
    }
}

/// Where the queue's entries go.
pub trait Sink {
    /// Takes what it can from the driver's queue now; returns how many
    /// entries it took (0: the loop may sleep a little). A sink that drains
    /// the queue on a task of its own (the shipper) takes nothing here and
    /// may read the driver's counters.
    fn drain(&mut self, driver: &Driver) -> anyhow::Result<usize>;
}

/// How long the loop sleeps when the sink took nothing: short enough for a
/// live view, long enough not to spin.
const IDLE: Duration = Duration::from_millis(5);

/// Runs `driver` into `sink` until the source ends by itself or `stop` is
/// set; then stops the source and lets the sink take the rest of the queue.
/// `log` gets the source's changes (pods picked up or lost) as they happen.
pub fn run(
    mut driver: Driver,
    sink: &mut dyn Sink,
    stop: &AtomicBool,
    mut log: impl FnMut(&str),
    mut on_tick: impl FnMut(&mut Driver),
) -> anyhow::Result<Outcome> {
    while !stop.load(Ordering::Relaxed) {
        for line in driver.tick() {
            log(&line);
        }
        on_tick(&mut driver);
        let finished = driver.finished();
        let taken = sink.drain(&driver)?;
        if finished {
            break;
        }
        if taken == 0 {
            std::thread::sleep(IDLE);
        }
    }
    let outcome = driver.stop();
    // The rest of the queue, with what the stopped source flushed into it.
    // A sink that takes nothing in `drain` (the shipper, which empties the
    // queue on its own when it finishes) still sees the final counters.
    let mut idle = 0;
    loop {
        let taken = sink.drain(&driver)?;
        idle = if taken == 0 { idle + 1 } else { 0 };
        if driver.queue().is_empty() || idle >= 3 {
            break;
        }
    }
    Ok(outcome)
}

/// `--pace`'s value: a replay speed above 0.
pub fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "{s:?} is not a speed: use a number above 0, e.g. 1 or 0.5"
        )),
    }
}

/// A flag set on Ctrl-C or SIGTERM, for [`run`]'s `stop`.
pub fn stop_on_signal(runtime: &tokio::runtime::Handle) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let set = stop.clone();
    runtime.spawn(async move {
        shutdown_signal().await;
        set.store(true, Ordering::Relaxed);
    });
    stop
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends a pod it stops).
pub async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A new version from the hub that changes nothing is applied and
    /// logged not at all; one that changes a part, only that part.
    #[test]
    fn the_hubs_configuration_is_applied_and_logged_only_where_it_changed() {
        let dir = testkit::TempDir::new("driver-config");
        let file = dir.path("empty.pcap");
        // A pcap header (little-endian, v2.4, Ethernet) and no packet.
        let mut header = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        header.extend([0; 8]);
        header.extend(65535u32.to_le_bytes());
        header.extend(1u32.to_le_bytes());
        std::fs::write(&file, header).unwrap();
        let mut driver = Driver::start(
            Source::File {
                path: file,
                pace: None,
            },
            DriverConfig {
                pipeline: PipelineConfig::default(),
                queue: Arc::new(EntryQueue::new(Default::default())),
                ring: None,
            },
        )
        .unwrap();
        let first = proto::v1::WorkerConfig {
            version: 1,
            ..Default::default()
        };
        let log = driver.apply(&first);
        assert_eq!(log.len(), 2, "targets and redaction: {log:?}");
        let same = proto::v1::WorkerConfig {
            version: 2,
            ..first.clone()
        };
        assert_eq!(driver.apply(&same), Vec::<String>::new());
        let rules = proto::v1::WorkerConfig {
            version: 3,
            redaction: vec![proto::v1::RedactionRule {
                key: "ssn".into(),
                pattern: String::new(),
            }],
            ..first
        };
        let log = driver.apply(&rules);
        assert_eq!(log.len(), 1, "{log:?}");
        assert!(log[0].contains("1 rule(s)"), "{log:?}");
    }
}
