//! Live capture on a set of interfaces into one pipeline: a thread per
//! interface reads its AF_PACKET ring (`capture::live`), feeds the shared
//! pipeline (one flow table, so a connection seen on two interfaces is one
//! connection) and the raw-packet ring, and hands each entry to a sink that
//! never blocks capture (the worker's shipping queue, or local mode's store
//! queue). Used by `tap-worker --interface` and `kubetap tap --local`.

use crate::capture::live::{LiveCapture, LiveConfig, LiveError, LiveStats};
use crate::ring::PacketRing;
use crate::{Pipeline, PipelineConfig, Stats};
use proto::v1::{Entry, WorkerCounters};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where entries go; must not block (drop and count instead).
pub type Sink = Arc<dyn Fn(Entry) + Send + Sync>;

struct Shared {
    pipeline: Pipeline,
    entries: Vec<Entry>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Running captures; [`LiveTap::stop`] ends them.
pub struct LiveTap {
    shared: Arc<Mutex<Shared>>,
    stats: Arc<Mutex<Vec<LiveStats>>>,
    interfaces: Vec<String>,
    threads: Vec<JoinHandle<Result<(), LiveError>>>,
    stop: Arc<AtomicBool>,
    sink: Sink,
}

impl LiveTap {
    /// Opens every interface first (a missing privilege or interface fails
    /// before anything runs), then starts a capture thread for each; packets
    /// are kept in `ring` for PCAP export.
    pub fn start(
        interfaces: Vec<LiveConfig>,
        pipeline: PipelineConfig,
        ring: Arc<Mutex<PacketRing>>,
        sink: Sink,
    ) -> Result<LiveTap, LiveError> {
        let captures = interfaces
            .into_iter()
            .map(LiveCapture::open)
            .collect::<Result<Vec<_>, _>>()?;
        let names = captures.iter().map(|c| c.interface().to_string()).collect();
        let shared = Arc::new(Mutex::new(Shared {
            pipeline: Pipeline::new(pipeline),
            entries: Vec::new(),
        }));
        let stats = Arc::new(Mutex::new(vec![LiveStats::default(); captures.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, cap) in captures.into_iter().enumerate() {
            let (shared, ring, stats, stop, sink) = (
                shared.clone(),
                ring.clone(),
                stats.clone(),
                stop.clone(),
                sink.clone(),
            );
            let name = format!("capture-{}", cap.interface());
            let t = std::thread::Builder::new()
                .name(name)
                .spawn(move || capture(cap, i, &shared, &ring, &stats, &stop, &*sink))
                .map_err(|error| LiveError::Io {
                    interface: String::new(),
                    what: "starting a capture thread",
                    error,
                })?;
            threads.push(t);
        }
        Ok(LiveTap {
            shared,
            stats,
            interfaces: names,
            threads,
            stop,
            sink,
        })
    }

    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    /// Whether every capture has ended (its interface went away, or an error).
    pub fn finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    pub fn pipeline_stats(&self) -> Stats {
        lock(&self.shared).pipeline.stats()
    }

    /// Packets the kernel dropped because a ring was full, over all interfaces.
    pub fn kernel_drops(&self) -> u64 {
        lock(&self.stats).iter().map(|s| s.kernel_drops).sum()
    }

    /// The capture's side of the worker's counters.
    pub fn counters(&self) -> WorkerCounters {
        let s = self.pipeline_stats();
        WorkerCounters {
            packets: s.packets,
            bytes: s.bytes,
            entries: s.entries,
            parse_errors: s.parse_errors,
            drops: s.drops() + self.kernel_drops(),
            gap_bytes: s.gap_bytes(),
            ..Default::default()
        }
    }

    /// Ends every capture, flushes the connections into the sink, and
    /// returns the errors captures ended with.
    pub fn stop(self) -> Vec<LiveError> {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self
            .threads
            .into_iter()
            .filter_map(|t| t.join().ok().and_then(Result::err))
            .collect();
        let mut s = lock(&self.shared);
        let Shared { pipeline, entries } = &mut *s;
        pipeline.finish(entries);
        for e in entries.drain(..) {
            (self.sink)(e);
        }
        errors
    }
}

/// One interface's capture loop, until stopped or the interface goes away.
fn capture(
    mut cap: LiveCapture,
    index: usize,
    shared: &Mutex<Shared>,
    ring: &Mutex<PacketRing>,
    stats: &Mutex<Vec<LiveStats>>,
    stop: &AtomicBool,
    sink: &(dyn Fn(Entry) + Send + Sync),
) -> Result<(), LiveError> {
    let mut n: u64 = 0;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        match cap.next_packet(Duration::from_millis(200)) {
            Ok(Some(pkt)) => {
                let mut s = lock(shared);
                let Shared { pipeline, entries } = &mut *s;
                if let Some(flow) = pipeline.packet(&pkt, entries) {
                    lock(ring).push(&pkt, flow);
                }
                for e in entries.drain(..) {
                    sink(e);
                }
            }
            Ok(None) => {}
            Err(LiveError::InterfaceGone { interface }) => {
                tracing::warn!(%interface, "interface went away; its capture ends");
                break Ok(());
            }
            Err(e) => break Err(e),
        }
        n += 1;
        if n.is_multiple_of(1024)
            && let Ok(st) = cap.stats()
        {
            lock(stats)[index] = st;
        }
    };
    if let Ok(st) = cap.stats() {
        lock(stats)[index] = st;
    }
    result
}
