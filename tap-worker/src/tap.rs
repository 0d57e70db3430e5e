//! Live capture on a set of interfaces: a thread per capture socket reads
//! its AF_PACKET ring (`capture::live`), feeds a pipeline and the raw-packet
//! ring, and hands each entry to a sink that never blocks capture (the
//! worker's shipping queue, or local mode's store queue). Used by
//! `tap-worker` and `kubetap tap --local`.
//!
//! By default every interface's socket feeds one shared pipeline (one flow
//! table, so a connection whose packets cross two interfaces is still one
//! connection). With fanout N, each interface has N sockets in a
//! `PACKET_FANOUT` group, each with its own thread, and the tap N pipelines:
//! socket i of every interface feeds pipeline i. The kernel's fanout hash is
//! the flow's symmetric hash, the same on every interface, so both
//! directions of a connection, on whichever interface, reach pipeline i, and
//! N cores share the work. The pipelines share one flow id counter, so ids
//! stay unique.
//!
//! Several interfaces given at the start (no pod filters) may see one
//! packet each (a bridge and its ports): a copy taken on a second interface
//! is skipped and counted (`dedup`).
//!
//! Interfaces can be added and removed while the others run; [`PodWatch`]
//! does that for a list of target pods, capturing each on its host veth:
//!
//! - A capture's filter passes its pod's traffic except traffic with pods
//!   whose captures started earlier (`Targets::exclude`): a packet between
//!   two watched pods crosses both their veths, and is taken on the older
//!   capture only, so it is counted once and both directions of a
//!   connection are read by one thread, in order. Existing filters never
//!   change when a pod is added (no moment where both take a packet); when a
//!   watched pod is dropped, the captures that excluded it widen after it
//!   has stopped.
//! - A pod deleted while watched takes its veth with it: that capture ends
//!   (`InterfaceGone`), the others keep running, and the pod is looked for
//!   again if it is still listed.

use crate::capture::bpf::Targets;
use crate::capture::live::{Fanout, LiveCapture, LiveConfig, LiveError, LiveStats};
use crate::dedup::Dedup;
use crate::pods::{Names, Resolver, Selector, TargetPod};
use crate::ring::PacketRing;
use crate::{Pipeline, PipelineConfig, Stats};
use proto::v1::{Entry, WorkerCounters};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Where entries go; must not block (drop and count instead).
pub type Sink = Arc<dyn Fn(Entry) + Send + Sync>;

/// Most sockets per interface.
pub const MAX_FANOUT: u16 = 64;

struct Shared {
    pipeline: Pipeline,
    entries: Vec<Entry>,
    names: Names,
}

impl Shared {
    fn new(config: PipelineConfig, names: Names) -> Arc<Mutex<Shared>> {
        Arc::new(Mutex::new(Shared {
            pipeline: Pipeline::new(config),
            entries: Vec::new(),
            names,
        }))
    }

    /// Closes every connection and hands what they held to `sink`; the
    /// packets of what was redacted are blanked in `ring`.
    fn finish(&mut self, sink: &Sink, ring: &Mutex<PacketRing>) {
        let Shared {
            pipeline,
            entries,
            names,
        } = self;
        pipeline.finish(entries);
        let blanks = pipeline.take_blanks();
        if !blanks.is_empty() {
            let mut ring = lock(ring);
            for b in &blanks {
                ring.blank(b);
            }
        }
        for mut e in entries.drain(..) {
            names.annotate(&mut e);
            sink(e);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A filter waiting for its capture thread to install it.
type PendingFilter = Arc<Mutex<Option<Option<Targets>>>>;

/// One socket's thread.
struct Socket {
    pending: PendingFilter,
    stats: Arc<Mutex<LiveStats>>,
    thread: JoinHandle<Result<(), LiveError>>,
}

/// One interface's capture: one socket, or a fanout group of them.
struct Running {
    interface: String,
    filter: Option<Targets>,
    stop: Arc<AtomicBool>,
    sockets: Vec<Socket>,
}

/// Running captures; [`LiveTap::stop`] ends them.
pub struct LiveTap {
    /// Pipeline i takes the packets of socket i of every interface.
    pipelines: Vec<Arc<Mutex<Shared>>>,
    /// Sockets per interface.
    fanout: u16,
    /// Copies of packets seen on two interfaces are skipped while
    /// `dedup_on`: always when several interfaces are captured without pod
    /// filters; for pod captures, only while one is retiring
    /// ([`LiveTap::set_dedup`]).
    dedup: Arc<Mutex<Dedup>>,
    dedup_on: Arc<AtomicBool>,
    /// The next capture's number, for `dedup`.
    next_interface: u32,
    ring: Arc<Mutex<PacketRing>>,
    sink: Sink,
    captures: Vec<Running>,
    /// Counters of captures that have ended.
    retired: LiveStats,
    /// Names set since [`LiveTap::take_new_names`] (for the TLS source).
    new_names: Option<Names>,
}

impl LiveTap {
    /// Opens every interface first (a missing privilege or interface fails
    /// before anything runs), then starts capturing on each; packets are
    /// kept in `ring` for PCAP export. `fanout`: sockets (and threads) per
    /// interface, 1 to [`MAX_FANOUT`].
    pub fn start(
        interfaces: Vec<LiveConfig>,
        pipeline: PipelineConfig,
        fanout: u16,
        ring: Arc<Mutex<PacketRing>>,
        sink: Sink,
    ) -> Result<LiveTap, LiveError> {
        let mut tap = LiveTap::idle(pipeline, fanout, ring, sink);
        if interfaces.len() > 1 {
            tap.dedup_on.store(true, Ordering::Relaxed);
        }
        let opened = interfaces
            .into_iter()
            .map(|c| tap.open(c))
            .collect::<Result<Vec<_>, _>>()?;
        for (sockets, filter) in opened {
            tap.spawn(sockets, filter)?;
        }
        Ok(tap)
    }

    /// A tap capturing nothing yet; [`LiveTap::add`] starts captures.
    pub fn idle(
        pipeline: PipelineConfig,
        fanout: u16,
        ring: Arc<Mutex<PacketRing>>,
        sink: Sink,
    ) -> LiveTap {
        let fanout = fanout.clamp(1, MAX_FANOUT);
        LiveTap {
            // Clones of one config: the pipelines share its flow id counter.
            pipelines: (0..fanout)
                .map(|_| Shared::new(pipeline.clone(), Names::default()))
                .collect(),
            fanout,
            dedup: Arc::new(Mutex::new(Dedup::new())),
            dedup_on: Arc::new(AtomicBool::new(false)),
            next_interface: 0,
            ring,
            sink,
            captures: Vec::new(),
            retired: LiveStats::default(),
            new_names: None,
        }
    }

    /// Opens one more interface and starts capturing on it.
    pub fn add(&mut self, config: LiveConfig) -> Result<(), LiveError> {
        let (sockets, filter) = self.open(config)?;
        self.spawn(sockets, filter)
    }

    /// Opens an interface's sockets: one, or a new fanout group of them.
    fn open(&self, config: LiveConfig) -> Result<(Vec<LiveCapture>, Option<Targets>), LiveError> {
        let filter = config.filter.clone();
        if self.fanout == 1 {
            return Ok((vec![LiveCapture::open(config)?], filter));
        }
        let first = LiveCapture::open(LiveConfig {
            fanout: Some(Fanout::New),
            ..config.clone()
        })?;
        let group = first.fanout_group();
        let mut sockets = vec![first];
        for _ in 1..self.fanout {
            sockets.push(LiveCapture::open(LiveConfig {
                fanout: group.map(Fanout::Join),
                ..config.clone()
            })?);
        }
        Ok((sockets, filter))
    }

    fn spawn(
        &mut self,
        sockets: Vec<LiveCapture>,
        filter: Option<Targets>,
    ) -> Result<(), LiveError> {
        let interface = sockets[0].interface().to_string();
        let fanned = sockets.len() > 1;
        let interface_id = self.next_interface;
        self.next_interface = self.next_interface.wrapping_add(1);
        let stop = Arc::new(AtomicBool::new(false));
        let mut running = Running {
            interface: interface.clone(),
            filter,
            stop: stop.clone(),
            sockets: Vec::new(),
        };
        for (i, cap) in sockets.into_iter().enumerate() {
            let pending: PendingFilter = Arc::new(Mutex::new(None));
            let stats = Arc::new(Mutex::new(LiveStats::default()));
            let worker = Worker {
                shared: self.pipelines[i].clone(),
                ring: self.ring.clone(),
                sink: self.sink.clone(),
                pending: pending.clone(),
                stop: stop.clone(),
                stats: stats.clone(),
                dedup: self.dedup.clone(),
                dedup_on: self.dedup_on.clone(),
                interface_id,
            };
            let name = if fanned {
                format!("capture-{interface}-{i}")
            } else {
                format!("capture-{interface}")
            };
            let thread = match std::thread::Builder::new()
                .name(name)
                .spawn(move || worker.run(cap))
            {
                Ok(t) => t,
                Err(error) => {
                    stop.store(true, Ordering::Relaxed);
                    self.retire(running);
                    return Err(LiveError::Io {
                        interface,
                        what: "starting a capture thread",
                        error,
                    });
                }
            };
            running.sockets.push(Socket {
                pending,
                stats,
                thread,
            });
        }
        self.captures.push(running);
        Ok(())
    }

    /// Stops the capture on `interface` (after what it has read so far is
    /// processed); returns the error it had ended with, if any.
    pub fn remove(&mut self, interface: &str) -> Option<LiveError> {
        let i = self
            .captures
            .iter()
            .position(|c| c.interface == interface)?;
        let c = self.captures.swap_remove(i);
        c.stop.store(true, Ordering::Relaxed);
        self.retire(c)
    }

    /// Waits for a stopped (or ended) capture's threads and keeps their
    /// counters; returns the first error it ended with.
    fn retire(&mut self, c: Running) -> Option<LiveError> {
        let mut first_error = None;
        for s in c.sockets {
            let result = s.thread.join();
            let st = *lock(&s.stats);
            self.retired.packets += st.packets;
            self.retired.kernel_drops += st.kernel_drops;
            self.retired.freeze_count += st.freeze_count;
            self.retired.delivered += st.delivered;
            let error = match result {
                Ok(r) => r.err(),
                Err(_) => Some(LiveError::Io {
                    interface: c.interface.clone(),
                    what: "capturing",
                    error: std::io::Error::other("the capture thread panicked"),
                }),
            };
            if first_error.is_none() {
                first_error = error;
            }
        }
        first_error
    }

    /// Captures that have ended on their own (their interface went away, or
    /// an error), removed from the tap: each interface with its error. A
    /// fanout capture ends with its first socket.
    pub fn reap(&mut self) -> Vec<(String, Option<LiveError>)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.captures.len() {
            if self.captures[i]
                .sockets
                .iter()
                .any(|s| s.thread.is_finished())
            {
                let c = self.captures.swap_remove(i);
                c.stop.store(true, Ordering::Relaxed);
                let name = c.interface.clone();
                out.push((name, self.retire(c)));
            } else {
                i += 1;
            }
        }
        out
    }

    /// Replaces the filter of the capture on `interface`; its threads
    /// install it within one poll (200 ms).
    pub fn set_filter(&mut self, interface: &str, filter: Option<Targets>) {
        if let Some(c) = self.captures.iter_mut().find(|c| c.interface == interface)
            && c.filter != filter
        {
            c.filter = filter.clone();
            for s in &c.sockets {
                *lock(&s.pending) = Some(filter.clone());
            }
        }
    }

    /// The filter the capture on `interface` runs (or is about to).
    pub fn filter(&self, interface: &str) -> Option<&Targets> {
        self.captures
            .iter()
            .find(|c| c.interface == interface)
            .and_then(|c| c.filter.as_ref())
    }

    /// Skips copies of packets another capture took (or stops skipping):
    /// for the moment two pod captures overlap.
    pub fn set_dedup(&self, on: bool) {
        self.dedup_on.store(on, Ordering::Relaxed);
    }

    /// Body bytes kept per message, for connections that start from now on.
    pub fn set_max_body(&mut self, max_body: usize) {
        for p in &self.pipelines {
            lock(p).pipeline.set_max_body(max_body);
        }
    }

    /// Names given to entries' ends from now on.
    pub fn set_names(&mut self, names: Names) {
        for p in &self.pipelines {
            lock(p).names = names.clone();
        }
        self.new_names = Some(names);
    }

    /// The names set since the last call, if they changed.
    pub fn take_new_names(&mut self) -> Option<Names> {
        self.new_names.take()
    }

    pub fn interfaces(&self) -> Vec<String> {
        self.captures.iter().map(|c| c.interface.clone()).collect()
    }

    /// Sockets per interface.
    pub fn fanout(&self) -> u16 {
        self.fanout
    }

    /// Whether every capture has ended (its interface went away, or an error).
    pub fn finished(&self) -> bool {
        self.captures
            .iter()
            .all(|c| c.sockets.iter().all(|s| s.thread.is_finished()))
    }

    /// The pipelines' counters, added up (ended captures' included).
    pub fn pipeline_stats(&self) -> Stats {
        let mut s = Stats::default();
        for p in &self.pipelines {
            s.absorb(&lock(p).pipeline.stats());
        }
        s
    }

    /// Packets skipped as copies of packets taken on another interface.
    pub fn copies(&self) -> u64 {
        lock(&self.dedup).copies
    }

    /// Packets each running socket has taken from the kernel, by interface
    /// (a fanout capture lists one number per socket).
    pub fn socket_packets(&self) -> Vec<(String, Vec<u64>)> {
        self.captures
            .iter()
            .map(|c| {
                let n = c.sockets.iter().map(|s| lock(&s.stats).packets).collect();
                (c.interface.clone(), n)
            })
            .collect()
    }

    /// The kernel's counters over all captures, ended ones included.
    pub fn live_stats(&self) -> LiveStats {
        let mut t = self.retired;
        for s in self.captures.iter().flat_map(|c| &c.sockets) {
            let s = *lock(&s.stats);
            t.packets += s.packets;
            t.kernel_drops += s.kernel_drops;
            t.freeze_count += s.freeze_count;
            t.delivered += s.delivered;
        }
        t
    }

    /// Packets the kernel dropped because a ring was full, over all interfaces.
    pub fn kernel_drops(&self) -> u64 {
        self.live_stats().kernel_drops
    }

    /// The capture's side of the worker's counters.
    pub fn counters(&self) -> WorkerCounters {
        self.counters_and_stats().0
    }

    /// The capture's side of the worker's counters, and the pipelines'
    /// counters they were made from (read once: each read takes every
    /// pipeline's lock).
    pub fn counters_and_stats(&self) -> (WorkerCounters, Stats) {
        let s = self.pipeline_stats();
        let k = self.live_stats();
        let c = WorkerCounters {
            packets: s.packets,
            bytes: s.bytes,
            entries: s.entries,
            parse_errors: s.parse_errors,
            drops: s.drops() + k.kernel_drops,
            gap_bytes: s.gap_bytes(),
            kernel_packets: k.packets,
            kernel_drops: k.kernel_drops,
            duplicate_packets: self.copies(),
            offloaded_packets: s.decode.length_from_capture,
            decapsulated_packets: s.decode.decapsulated,
            ..Default::default()
        };
        (c, s)
    }

    /// Ends every capture, flushes the connections into the sink, and
    /// returns the errors captures ended with and the final counters.
    pub fn stop(mut self) -> Stopped {
        for c in &self.captures {
            c.stop.store(true, Ordering::Relaxed);
        }
        let mut errors = Vec::new();
        for c in std::mem::take(&mut self.captures) {
            errors.extend(self.retire(c));
        }
        for p in &self.pipelines {
            lock(p).finish(&self.sink, &self.ring);
        }
        Stopped {
            errors,
            stats: self.pipeline_stats(),
            counters: self.counters(),
        }
    }
}

/// What [`LiveTap::stop`] leaves: the errors captures ended with, and the
/// counters once the open connections were flushed.
pub struct Stopped {
    pub errors: Vec<LiveError>,
    pub stats: Stats,
    pub counters: WorkerCounters,
}

/// What one capture thread holds.
struct Worker {
    shared: Arc<Mutex<Shared>>,
    ring: Arc<Mutex<PacketRing>>,
    sink: Sink,
    pending: PendingFilter,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<LiveStats>>,
    dedup: Arc<Mutex<Dedup>>,
    dedup_on: Arc<AtomicBool>,
    /// This capture's number, for `dedup`.
    interface_id: u32,
}

impl Worker {
    /// One interface's capture loop, until stopped or the interface goes away.
    fn run(self, mut cap: LiveCapture) -> Result<(), LiveError> {
        let mut n: u64 = 0;
        let mut refreshed = Instant::now();
        // Capture time after which the periodic work below is due, so that
        // a trickle of packets (never idle, rarely 64) still gets it.
        let mut due_ns: u64 = 0;
        let result = loop {
            if self.stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            let (mut periodic, mut idle) = (false, false);
            match cap.next_packet(Duration::from_millis(200)) {
                Ok(Some(pkt)) => {
                    if pkt.ts_ns >= due_ns {
                        periodic = true;
                        due_ns = pkt.ts_ns.saturating_add(100_000_000);
                    }
                    let copy = self.dedup_on.load(Ordering::Relaxed)
                        && lock(&self.dedup).is_copy(&pkt, self.interface_id);
                    if !copy {
                        let mut s = lock(&self.shared);
                        let Shared {
                            pipeline,
                            entries,
                            names,
                        } = &mut *s;
                        let flow = pipeline.packet(&pkt, entries);
                        let blanks = pipeline.take_blanks();
                        if flow.is_some() || !blanks.is_empty() {
                            let mut ring = lock(&self.ring);
                            if let Some(flow) = flow {
                                ring.push(&pkt, flow);
                            }
                            for b in &blanks {
                                ring.blank(b);
                            }
                        }
                        for mut e in entries.drain(..) {
                            names.annotate(&mut e);
                            (self.sink)(e);
                        }
                    }
                }
                // Idle: the periodic work, the counters brought up to date.
                Ok(None) => {
                    periodic = true;
                    idle = true;
                }
                Err(LiveError::InterfaceGone { interface }) => {
                    tracing::warn!(%interface, "interface went away; its capture ends");
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
            n += 1;
            // Every 64 packets, every 100 ms of capture time, and when idle:
            // a replaced filter is installed (not looked for on every packet:
            // a lock per packet is measurable here), and the kernel's
            // counters are read at least twice a second.
            if periodic || n.is_multiple_of(64) {
                if let Some(filter) = lock(&self.pending).take()
                    && let Err(e) = cap.set_filter(filter.as_ref())
                {
                    break Err(e);
                }
                if (idle || refreshed.elapsed() >= Duration::from_millis(500))
                    && let Ok(st) = cap.stats()
                {
                    *lock(&self.stats) = st;
                    refreshed = Instant::now();
                }
            }
        };
        if let Ok(st) = cap.stats() {
            *lock(&self.stats) = st;
        }
        result
    }
}

/// Where the target pods come from.
#[derive(Debug, Clone)]
pub enum PodSource {
    /// A JSON file ([`crate::pods::load`]), read again whenever it changes.
    File(PathBuf),
    /// A fixed list.
    List(Vec<TargetPod>),
    /// The hub's (`tap-worker --hub-pods`): this node's pods as the hub
    /// follows them in the cluster, none until its first configuration
    /// ([`PodWatch::set_pods`]).
    Hub,
}

/// One pod's capture, as [`PodWatch`] runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCapture {
    pub interface: String,
    /// `namespace/name` of the pods behind the interface (normally one).
    pub pods: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// Keeps a [`LiveTap`] capturing the target pods of this node: call
/// [`PodWatch::tick`] every second or so.
pub struct PodWatch {
    source: PodSource,
    node: Option<String>,
    template: LiveConfig,
    resolver: Resolver,
    file_stamp: Option<(SystemTime, u64)>,
    pods: Vec<TargetPod>,
    /// Captures in the order they started (the exclusion order).
    captures: Vec<PodCapture>,
    /// Captures no longer wanted, stopped at the next tick: the others'
    /// replaced filters are installed by their threads within a block
    /// timeout or so, and until then a retiring capture still takes its
    /// pod's traffic with them (copies skipped meanwhile: [`LiveTap::set_dedup`]);
    /// and its ring's last block is read.
    retiring: Vec<PodCapture>,
    unresolved: Vec<String>,
    /// The pod list changed since the tap last got its names.
    renamed: bool,
    /// Which of the listed pods are captured (the hub's target pods).
    selector: Selector,
}

impl PodWatch {
    /// `node`: this worker's node (pods listed for another node are left
    /// alone; pods without a node are looked for here). `template`: ring
    /// sizes and snap length for each capture. Make it on the thread (and so
    /// in the network namespace) that captures.
    pub fn new(
        source: PodSource,
        node: Option<String>,
        template: LiveConfig,
    ) -> std::io::Result<PodWatch> {
        let pods = match &source {
            PodSource::List(l) => l.clone(),
            PodSource::File(_) | PodSource::Hub => Vec::new(),
        };
        Ok(PodWatch {
            source,
            node,
            template,
            resolver: Resolver::new()?,
            // Unlike any file's, and unlike a missing file's (None): the
            // first tick reads the list, or says once that it cannot.
            file_stamp: Some((SystemTime::UNIX_EPOCH, u64::MAX)),
            pods,
            captures: Vec::new(),
            retiring: Vec::new(),
            unresolved: Vec::new(),
            renamed: true,
            selector: Selector::default(),
        })
    }

    /// Whether the pod list comes from the hub ([`PodSource::Hub`]).
    pub fn follows_hub(&self) -> bool {
        matches!(self.source, PodSource::Hub)
    }

    /// A new pod list (the hub's), captured from the next tick on.
    pub fn set_pods(&mut self, pods: Vec<TargetPod>) {
        if pods != self.pods {
            self.pods = pods;
            self.renamed = true;
        }
    }

    /// Captures only the listed pods `selector` takes, from the next tick on.
    pub fn select(&mut self, selector: Selector) {
        self.selector = selector;
    }

    /// The pods being captured, oldest capture first.
    pub fn captures(&self) -> &[PodCapture] {
        &self.captures
    }

    /// Target pods of this node whose interface was not found (yet).
    pub fn unresolved(&self) -> &[String] {
        &self.unresolved
    }

    /// Re-reads the pod list if it changed; a bad list is reported and the
    /// last good one kept.
    fn reload(&mut self) -> Option<String> {
        let PodSource::File(path) = &self.source else {
            return None;
        };
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if stamp == self.file_stamp {
            return None;
        }
        self.file_stamp = stamp;
        match crate::pods::load(path) {
            Ok(pods) => {
                self.pods = pods;
                self.renamed = true;
                None
            }
            Err(e) => Some(format!("{e}; keeping the previous list")),
        }
    }

    /// Brings the captures in line with the pod list and the node's
    /// interfaces; returns what changed, one line each, for the log.
    pub fn tick(&mut self, tap: &mut LiveTap) -> Vec<String> {
        let mut log = Vec::new();
        let retired = std::mem::take(&mut self.retiring);
        if !retired.is_empty() {
            tap.set_dedup(false);
        }
        for c in retired {
            if let Some(e) = tap.remove(&c.interface) {
                log.push(format!("capture on {} ended: {e}", c.interface));
            }
            log.push(format!(
                "stopped capturing {} on {}",
                c.pods.join(", "),
                c.interface
            ));
        }
        log.extend(self.reload());
        for (interface, error) in tap.reap() {
            match error {
                Some(e) => log.push(format!("capture on {interface} ended: {e}")),
                None => log.push(format!("{interface} went away; its capture ended")),
            }
        }
        let local: Vec<&TargetPod> = self
            .pods
            .iter()
            .filter(|p| match (&p.node, &self.node) {
                (Some(n), Some(me)) => n == me,
                _ => true,
            })
            .filter(|p| self.selector.matches(p))
            .collect();
        let ips: Vec<IpAddr> = local.iter().flat_map(|p| p.ips.iter().copied()).collect();
        let found = match self.resolver.resolve(&ips) {
            Ok(f) => f,
            Err(e) => {
                log.push(format!("cannot look up the pods' interfaces: {e}"));
                return log;
            }
        };
        // interface -> (pods, ips), in a stable order.
        let mut wanted: BTreeMap<String, (Vec<String>, Vec<IpAddr>)> = BTreeMap::new();
        let mut unresolved = Vec::new();
        for p in &local {
            let mut any = false;
            for ip in &p.ips {
                if let Some(i) = found.get(&ip.to_canonical()) {
                    let w = wanted.entry(i.name.clone()).or_default();
                    if !w.0.contains(&p.id()) {
                        w.0.push(p.id());
                    }
                    w.1.push(ip.to_canonical());
                    any = true;
                }
            }
            if !any {
                unresolved.push(p.id());
            }
        }

        // Drop captures whose interface is gone from the tap or no longer
        // wanted (or now holds other IPs).
        let running: Vec<String> = tap.interfaces();
        let mut kept = Vec::new();
        let mut dropped = false;
        for c in std::mem::take(&mut self.captures) {
            let still = wanted
                .get(&c.interface)
                .is_some_and(|(_, ips)| *ips == c.ips)
                && running.contains(&c.interface);
            if still {
                kept.push(c);
            } else {
                if !running.contains(&c.interface) {
                    if let Some(e) = tap.remove(&c.interface) {
                        log.push(format!("capture on {} ended: {e}", c.interface));
                    }
                } else if self.unselected(&c) {
                    // Stopped (and said so) at the next tick; meanwhile it
                    // runs beside the others (`retiring`).
                    tap.set_dedup(true);
                    self.retiring.push(c);
                    dropped = true;
                    continue;
                } else if let Some(e) = tap.remove(&c.interface) {
                    // The same interface with other IPs: captured again below.
                    log.push(format!("capture on {} ended: {e}", c.interface));
                }
                log.push(format!(
                    "stopped capturing {} on {}",
                    c.pods.join(", "),
                    c.interface
                ));
                dropped = true;
            }
        }
        self.captures = kept;
        // Said after the capture it had is stopped, so the log reads in order.
        for id in &unresolved {
            if !self.unresolved.contains(id) {
                log.push(format!("pod {id}: no interface on this node (yet)"));
            }
        }
        self.unresolved = unresolved;
        if dropped {
            // Captures that excluded a dropped pod take its traffic now.
            for i in 0..self.captures.len() {
                let filter = self.filter_for(i);
                tap.set_filter(&self.captures[i].interface, Some(filter));
            }
        }
        // New pods: each excludes the pods captured before it.
        for (interface, (pods, ips)) in wanted {
            if self.captures.iter().any(|c| c.interface == interface) {
                continue;
            }
            self.captures.push(PodCapture {
                interface: interface.clone(),
                pods: pods.clone(),
                ips,
            });
            let filter = self.filter_for(self.captures.len() - 1);
            let config = LiveConfig {
                interface: interface.clone(),
                filter: Some(filter),
                ..self.template.clone()
            };
            match tap.add(config) {
                Ok(()) => log.push(format!("capturing {} on {interface}", pods.join(", "))),
                Err(e) => {
                    self.captures.pop();
                    log.push(format!("cannot capture {}: {e}", pods.join(", ")));
                }
            }
        }
        if std::mem::take(&mut self.renamed) {
            tap.set_names(Names::new(&self.pods));
        }
        log
    }

    /// Whether the capture's pods are still listed, and no longer selected
    /// (the hub's targets changed): then it is retired, not stopped at once.
    fn unselected(&self, c: &PodCapture) -> bool {
        let listed: Vec<&TargetPod> = self
            .pods
            .iter()
            .filter(|p| c.pods.contains(&p.id()))
            .collect();
        !listed.is_empty() && listed.iter().all(|p| !self.selector.matches(p))
    }

    /// The filter of the i-th capture: its IPs, minus traffic with the pods
    /// captured before it.
    fn filter_for(&self, i: usize) -> Targets {
        Targets {
            ips: self.captures[i].ips.clone(),
            ports: Vec::new(),
            exclude: self.captures[..i]
                .iter()
                .flat_map(|c| c.ips.iter().copied())
                .collect(),
        }
    }
}
