//! TLS plaintext as a source of entries beside the captured packets
//! (`--tls`): one thread loads the probes, follows processes as they start
//! and exit ([`discovery`](super::discovery)), turns the records into
//! entries ([`streams`](super::streams)) and hands them to the driver's
//! sink, as the capture threads do theirs. Its status (libraries found,
//! hooked or why not, processes and their pods, what was read and lost)
//! is published once a second for the worker's counters.

use super::discovery::Discovery;
use super::streams::{Decrypted, StreamStats, Streams};
use super::{Lost, TlsProbes};
use crate::dissect::{DissectConfig, Emit};
use crate::pods::Names;
use crate::ring::PacketRing;
use crate::tap::Sink;
use proto::v1::TlsStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A connection with no TLS call for this long is closed (its pending
/// messages become entries).
const IDLE: Duration = Duration::from_secs(30);

/// What the TLS thread shares with the driver.
#[derive(Default)]
struct Shared {
    status: TlsStatus,
    lost: Lost,
    streams: StreamStats,
    names: Option<Names>,
    parse_errors: u64,
    dissect_dropped: u64,
    entries: u64,
}

/// The running TLS source.
pub struct TlsSource {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
    decrypted: Arc<Decrypted>,
}

/// Losses and counts the driver adds to the worker's counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct TlsCounts {
    pub lost: Lost,
    pub streams: StreamStats,
    pub parse_errors: u64,
    pub dissect_dropped: u64,
    pub entries: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TlsSource {
    /// Loads the probes and starts following processes; entries go to
    /// `sink` with `node` set. Fails (and nothing runs) when the probes
    /// cannot be loaded: the message says what is missing.
    /// With a `ring`, the plaintext is also kept there as TCP packets on
    /// each connection's addresses, for PCAP export.
    pub fn start(
        node: String,
        dissect: Arc<DissectConfig>,
        redaction: crate::redact::Redaction,
        decrypted: Arc<Decrypted>,
        sink: Sink,
        ring: Option<Arc<Mutex<PacketRing>>>,
    ) -> Result<TlsSource, super::TlsError> {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (loaded_tx, loaded_rx) = std::sync::mpsc::sync_channel(1);
        let thread = {
            let (stop, shared, decrypted) = (stop.clone(), shared.clone(), decrypted.clone());
            std::thread::Builder::new()
                .name("tls".into())
                .spawn(move || {
                    let probes = match TlsProbes::load() {
                        Ok(p) => {
                            let _ = loaded_tx.send(Ok(()));
                            p
                        }
                        Err(e) => {
                            let _ = loaded_tx.send(Err(e));
                            return;
                        }
                    };
                    let mut streams = Streams::new(dissect);
                    streams.note_decrypted(decrypted);
                    if ring.is_some() {
                        streams.make_packets();
                    }
                    Worker {
                        probes,
                        streams,
                        discovery: Discovery::new(),
                        names: Names::default(),
                        node,
                        sink,
                        ring,
                        redact: redaction.stage(),
                        blanks: Vec::new(),
                        shared,
                        out: Vec::new(),
                        parse_errors: 0,
                        dissect_dropped: 0,
                        entries: 0,
                    }
                    .run(&stop);
                })
                .map_err(|e| super::TlsError::Thread(e.to_string()))?
        };
        match loaded_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(super::TlsError::Thread(
                    "the TLS thread ended while loading".into(),
                ));
            }
        }
        lock(&shared).status.state = "on".into();
        Ok(TlsSource {
            stop,
            thread: Some(thread),
            shared,
            decrypted,
        })
    }

    /// Pod names for entries' ends and for the status, from now on.
    pub fn set_names(&self, names: Names) {
        lock(&self.shared).names = Some(names);
    }

    /// The status now.
    pub fn status(&self) -> TlsStatus {
        let mut s = lock(&self.shared).status.clone();
        s.encrypted_entries_replaced = self.decrypted.replaced();
        s
    }

    pub fn counts(&self) -> TlsCounts {
        let s = lock(&self.shared);
        TlsCounts {
            lost: s.lost,
            streams: s.streams,
            parse_errors: s.parse_errors,
            dissect_dropped: s.dissect_dropped,
            entries: s.entries,
        }
    }

    /// Stops the thread: open connections are flushed into the sink, every
    /// probe is detached.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the TLS thread panicked");
        }
    }
}

impl Drop for TlsSource {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The TLS thread's state.
struct Worker {
    probes: TlsProbes,
    streams: Streams,
    discovery: Discovery,
    names: Names,
    node: String,
    sink: Sink,
    ring: Option<Arc<Mutex<PacketRing>>>,
    redact: crate::redact::Stage,
    blanks: Vec<crate::redact::PendingBlank>,
    shared: Arc<Mutex<Shared>>,
    out: Vec<Emit>,
    parse_errors: u64,
    dissect_dropped: u64,
    entries: u64,
}

impl Worker {
    fn run(mut self, stop: &AtomicBool) {
        self.discovery.scan(&mut self.probes);
        let mut published = Instant::now();
        self.publish();
        while !stop.load(Ordering::Relaxed) {
            // New pod names at once: an entry made later names its pods.
            self.take_names();
            let mut events = Vec::new();
            let (streams, discovery, out) = (&mut self.streams, &mut self.discovery, &mut self.out);
            self.probes.poll(
                Duration::from_millis(100),
                |r| {
                    discovery.count(r.pid, u64::from(r.total));
                    streams.record(&r, out);
                },
                |e| events.push(e),
            );
            for e in events {
                if let super::ProcessEvent::Exit(pid) = e {
                    self.streams
                        .process_exited(pid, monotonic_ns(), &mut self.out);
                }
                self.discovery.event(e);
            }
            self.discovery.tick(&mut self.probes);
            for (pid, local) in self.streams.take_opened() {
                self.discovery.name_process(pid, local.ip(), &self.names);
            }
            self.deliver();
            if published.elapsed() >= Duration::from_secs(1) {
                published = Instant::now();
                let now = monotonic_ns();
                self.streams
                    .sweep(now, IDLE.as_nanos() as u64, &mut self.out);
                self.deliver();
                self.publish();
            }
        }
        self.streams.finish(monotonic_ns(), &mut self.out);
        self.deliver();
        self.publish();
        // Dropping the probes detaches every one of them.
    }

    /// The entry stages for TLS entries (as `Pipeline::deliver` for
    /// packets'): node, redaction, pod names, then the sink; the made
    /// packets of what was redacted are blanked in the ring.
    fn deliver(&mut self) {
        for e in &mut self.out {
            if let Emit::Entry(entry) = e {
                entry.node.clone_from(&self.node);
                self.redact.apply(entry, &mut self.blanks);
            }
        }
        if let Some(ring) = &self.ring {
            let made = self.streams.take_packets();
            if !made.is_empty() {
                let mut ring = lock(ring);
                for p in made {
                    ring.push_synthetic(
                        &crate::capture::Packet {
                            ts_ns: p.ts_ns,
                            link: super::streams::LINKTYPE_RAW,
                            data: &p.data,
                            orig_len: p.data.len() as u32,
                        },
                        p.flow,
                    );
                }
            }
        }
        let blanks = std::mem::take(&mut self.blanks);
        if let Some(ring) = &self.ring
            && !blanks.is_empty()
        {
            let mut ring = lock(ring);
            for b in &blanks {
                ring.blank(b);
            }
        }
        for e in self.out.drain(..) {
            match e {
                Emit::Entry(mut entry) => {
                    self.names.annotate(&mut entry);
                    self.entries += 1;
                    (self.sink)(*entry);
                }
                Emit::ParseError { protocol, reason } => {
                    self.parse_errors += 1;
                    tracing::debug!(protocol, %reason, "parse error in TLS plaintext");
                }
                Emit::Dropped { .. } => self.dissect_dropped += 1,
                Emit::Unclaimed => {}
            }
        }
    }

    /// New pod names from the driver, if any.
    fn take_names(&mut self) {
        let Some(names) = lock(&self.shared).names.take() else {
            return;
        };
        // Pods targeted: only their processes are followed and read, and
        // only their connections dissected.
        let targets = (!names.is_empty()).then(|| names.clone());
        let ips: Option<std::collections::BTreeSet<_>> =
            targets.as_ref().map(|t| t.ips().collect());
        self.probes.set_scope(ips.as_ref());
        self.discovery
            .set_targets(targets.clone(), &mut self.probes);
        self.streams.set_targets(targets);
        self.names = names;
    }

    /// The status and counts, for the driver.
    fn publish(&mut self) {
        let mut shared = lock(&self.shared);
        let st = self.streams.stats();
        shared.lost = self.probes.lost();
        shared.streams = st;
        shared.parse_errors = self.parse_errors;
        shared.dissect_dropped = self.dissect_dropped;
        shared.entries = self.entries;
        shared.status = TlsStatus {
            state: "on".into(),
            reason: String::new(),
            libraries: self.discovery.libraries(),
            records: st.records,
            bytes: st.bytes,
            connections: st.flows,
            encrypted_entries_replaced: 0,
            mirrored_connections: st.mirrored,
            untargeted_connections: st.untargeted,
            degraded: self
                .probes
                .no_socket_walk()
                .map(|why| {
                    format!(
                        "sockets are resolved from /proc (connections closed right after their last call are missed): no socket walk in the kernel: {why}"
                    )
                })
                .unwrap_or_default(),
        };
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the probes' clock.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// One line about TLS for a command's summary: what was read, or why
/// nothing could be.
pub fn summary(status: &TlsStatus) -> String {
    if status.state != "on" {
        return format!("TLS plaintext unavailable: {}", status.reason);
    }
    let mut line = format!(
        "TLS plaintext: {} calls, {} bytes, {} connections ({} of them seen from both ends), {} encrypted entries replaced",
        status.records,
        status.bytes,
        status.connections,
        status.mirrored_connections,
        status.encrypted_entries_replaced
    );
    if !status.degraded.is_empty() {
        line.push_str("; ");
        line.push_str(&status.degraded);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_was_read_why_nothing_was_or_what_is_degraded() {
        let on = TlsStatus {
            state: "on".into(),
            records: 12,
            bytes: 832,
            connections: 3,
            mirrored_connections: 1,
            encrypted_entries_replaced: 2,
            ..Default::default()
        };
        assert_eq!(
            summary(&on),
            "TLS plaintext: 12 calls, 832 bytes, 3 connections (1 of them seen from both ends), 2 encrypted entries replaced"
        );
        let degraded = TlsStatus {
            degraded: "sockets are resolved from /proc".into(),
            ..on
        };
        assert!(summary(&degraded).ends_with("; sockets are resolved from /proc"));
        let off = TlsStatus {
            state: "unavailable".into(),
            reason: "no BPF".into(),
            ..Default::default()
        };
        assert_eq!(summary(&off), "TLS plaintext unavailable: no BPF");
    }
}
