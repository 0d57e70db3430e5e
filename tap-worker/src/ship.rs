//! `ship`: the node's last stage — streams entries to the hub over one gRPC
//! stream (`Hub.Session`, proto/kubetap/v1/hub.proto).
//!
//! Entries wait in one queue bounded in entries and in memory (each entry
//! counted as the heap it holds, `proto::heap`). A task takes them in batches
//! and sends at most `window` batches the hub has not acknowledged yet; the
//! hub acknowledges a batch once it is stored. So a slow hub slows the worker
//! down end to end: acks come late, the window stays full, the queue fills,
//! and what a live capture cannot queue is dropped and counted
//! (`queue_drops`), never held in memory without bound. Heartbeats carry
//! every counter to the hub each second.
//!
//! The hub may ask for the raw packets of some connections (PCAP export);
//! they come from the worker's packet ring (`ring`), in chunks on the same
//! stream.
//!
//! When the stream breaks the task reconnects with jittered exponential
//! backoff. Batches in flight at that moment are counted as `lost_in_flight`
//! and not sent again: the hub may have stored them, and an entry stored twice
//! would mislead a user as much as a lost one; the counter says how many.

use crate::ring::PacketRing;
use proto::v1::hub_client::HubClient;
use proto::v1::{
    Entry, EntryBatch, Heartbeat, Hello, HubMessage, PcapChunk, WorkerConfig, WorkerCounters,
    WorkerMessage, hub_message, worker_message,
};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

/// How often a partial batch looks for more entries.
const GATHER_POLL: Duration = Duration::from_millis(2);

#[derive(Debug, Clone)]
pub struct ShipConfig {
    /// The hub's gRPC address, `http://host:port`.
    pub hub: String,
    pub node: String,
    /// Entries waiting for the hub, at most.
    pub queue: usize,
    /// Memory the entries waiting for the hub may take, at most (bytes; up
    /// to 4 GiB).
    pub queue_memory: usize,
    /// Entries per batch, at most.
    pub batch: usize,
    /// Encoded bytes per batch, at most (the hub refuses bigger messages).
    pub batch_bytes: usize,
    /// How long a partial batch waits for more entries.
    pub linger: Duration,
    /// Batches sent and not yet acknowledged, at most.
    pub window: usize,
    pub heartbeat: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Connecting and the stream's first answer, at most; a stalled hub does
    /// not hold a worker forever.
    pub connect_timeout: Duration,
    pub capabilities: Vec<String>,
}

impl Default for ShipConfig {
    fn default() -> Self {
        ShipConfig {
            hub: "http://127.0.0.1:8898".into(),
            node: "local".into(),
            queue: 64 * 1024,
            queue_memory: 32 << 20,
            batch: 512,
            batch_bytes: 2 << 20,
            linger: Duration::from_millis(50),
            window: 8,
            heartbeat: Duration::from_secs(1),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            capabilities: vec!["entries".into()],
        }
    }
}

/// What the shipper did, shared with whoever reports the worker's counters.
#[derive(Debug, Default)]
pub struct ShipCounters {
    pub queue_drops: AtomicU64,
    pub entries_sent: AtomicU64,
    pub entries_acked: AtomicU64,
    pub lost_in_flight: AtomicU64,
    pub reconnects: AtomicU64,
    pub queued: AtomicU64,
    pub connected: AtomicBool,
}

/// The rest of the worker's counters (capture, dissection), read at each heartbeat.
pub type CounterSource = Arc<dyn Fn() -> WorkerCounters + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("the shipper stopped")]
    Stopped,
    #[error(
        "{unacked} entries were not acknowledged by the hub at {hub} within {timeout:?} (is the hub up?)"
    )]
    Unacknowledged {
        hub: String,
        unacked: u64,
        timeout: Duration,
    },
}

/// An entry in the queue, with the memory it holds there (bytes).
struct Queued {
    entry: Entry,
    bytes: u32,
}

/// The queue's memory bound: one permit per byte of queued entries.
struct Memory {
    permits: Arc<Semaphore>,
    total: u32,
}

impl Memory {
    fn new(bytes: usize) -> Memory {
        // A permit count is at most u32::MAX per acquire: bounds up to 4 GiB.
        let total = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        Memory {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// What `e` holds, in bytes; an entry larger than the whole bound counts
    /// as the bound (it goes alone).
    fn cost(&self, e: &Entry) -> u32 {
        u32::try_from(proto::heap::entry(e))
            .unwrap_or(u32::MAX)
            .min(self.total)
    }
}

/// The sending end of the worker's entry queue and the task that drains it.
pub struct Shipper {
    queue: mpsc::Sender<Queued>,
    memory: Memory,
    runtime: tokio::runtime::Handle,
    counters: Arc<ShipCounters>,
    config: watch::Receiver<Option<WorkerConfig>>,
    task: JoinHandle<()>,
    hub: String,
}

impl Shipper {
    /// Starts the shipping task on the current tokio runtime; `ring` answers
    /// the hub's PCAP requests (None: this worker keeps no raw packets).
    pub fn start(
        mut config: ShipConfig,
        source: CounterSource,
        ring: Option<Arc<Mutex<PacketRing>>>,
    ) -> Shipper {
        if ring.is_some() && !config.capabilities.iter().any(|c| c == "pcap") {
            config.capabilities.push("pcap".into());
        }
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let memory = Memory::new(config.queue_memory);
        let permits = memory.permits.clone();
        let counters = Arc::new(ShipCounters::default());
        let (config_tx, config_rx) = watch::channel(None);
        let hub = config.hub.clone();
        let task = tokio::spawn(
            Link {
                config,
                queue: rx,
                permits,
                counters: counters.clone(),
                source,
                config_tx,
                instance: format!("{:016x}", fastrand::u64(..)),
                next_seq: 1,
                in_flight: VecDeque::new(),
                closed: false,
                ring,
            }
            .run(),
        );
        Shipper {
            queue,
            memory,
            runtime: tokio::runtime::Handle::current(),
            counters,
            config: config_rx,
            task,
            hub,
        }
    }

    /// Queues an entry without waiting (live capture): when the queue is
    /// full (in entries or memory) the entry is dropped and counted, and
    /// `false` returned.
    pub fn offer(&self, e: Entry) -> bool {
        let bytes = self.memory.cost(&e);
        let queued = match self.memory.permits.try_acquire_many(bytes) {
            Ok(permit) => {
                permit.forget();
                match self.queue.try_send(Queued { entry: e, bytes }) {
                    Ok(()) => true,
                    Err(_) => {
                        self.memory.permits.add_permits(bytes as usize);
                        false
                    }
                }
            }
            Err(_) => false,
        };
        if queued {
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.queue_drops.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// Queues an entry, waiting for room (a capture file: nothing to lose by
    /// waiting). Call from a thread outside the runtime.
    pub fn blocking_send(&self, e: Entry) -> Result<(), ShipError> {
        let bytes = self.memory.cost(&e);
        // If the shipping task is gone, the memory it held never comes back:
        // stop waiting then.
        self.runtime
            .block_on(async {
                tokio::select! {
                    permit = self.memory.permits.acquire_many(bytes) => permit.ok(),
                    () = self.queue.closed() => None,
                }
            })
            .ok_or(ShipError::Stopped)?
            .forget();
        self.queue
            .blocking_send(Queued { entry: e, bytes })
            .map_err(|_| ShipError::Stopped)?;
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn counters(&self) -> Arc<ShipCounters> {
        self.counters.clone()
    }

    /// The configuration the hub sent last (None before the first).
    pub fn config(&self) -> watch::Receiver<Option<WorkerConfig>> {
        self.config.clone()
    }

    /// No more entries: sends what is queued and waits until the hub has
    /// acknowledged all of it, for at most `limit`.
    pub async fn finish(self, limit: Duration) -> Result<(), ShipError> {
        let Shipper {
            queue,
            counters,
            mut task,
            hub,
            ..
        } = self;
        drop(queue);
        if timeout(limit, &mut task).await.is_err() {
            task.abort();
            let unacked = counters.queued.load(Ordering::Relaxed);
            return Err(ShipError::Unacknowledged {
                hub,
                unacked,
                timeout: limit,
            });
        }
        Ok(())
    }
}

/// The shipping task's state, kept across reconnects.
struct Link {
    config: ShipConfig,
    queue: mpsc::Receiver<Queued>,
    /// The queue's memory bound: given back as entries leave the queue.
    permits: Arc<Semaphore>,
    counters: Arc<ShipCounters>,
    source: CounterSource,
    config_tx: watch::Sender<Option<WorkerConfig>>,
    instance: String,
    next_seq: u64,
    /// Batches sent and not acknowledged: (seq, entries).
    in_flight: VecDeque<(u64, u64)>,
    /// The queue is closed: ship what is left, then stop.
    closed: bool,
    ring: Option<Arc<Mutex<PacketRing>>>,
}

/// Why a session ended.
enum End {
    /// Everything queued was acknowledged after the queue closed.
    Done,
    /// The session made progress before breaking: retry soon.
    Broke(String),
    /// It never got going (unreachable hub, refused, timed out).
    Failed(String),
}

impl Link {
    async fn run(mut self) {
        let mut backoff = self.config.backoff_min;
        loop {
            match self.session().await {
                End::Done => return,
                End::Broke(why) => {
                    tracing::warn!(hub = %self.config.hub, %why, "stream to the hub broke; reconnecting");
                    backoff = self.config.backoff_min;
                }
                End::Failed(why) => {
                    tracing::warn!(hub = %self.config.hub, %why, retry_in = ?backoff, "cannot reach the hub");
                }
            }
            self.counters.connected.store(false, Ordering::Relaxed);
            let lost: u64 = self.in_flight.drain(..).map(|(_, n)| n).sum();
            if lost > 0 {
                self.counters
                    .lost_in_flight
                    .fetch_add(lost, Ordering::Relaxed);
                self.counters.queued.fetch_sub(lost, Ordering::Relaxed);
            }
            if self.closed && self.queue.is_empty() {
                return;
            }
            // Full jitter over the upper half: workers that lost the same hub
            // do not come back in lockstep.
            let half = backoff / 2;
            let sleep = half + half.mul_f64(fastrand::f64());
            tokio::time::sleep(sleep).await;
            backoff = (backoff * 2).min(self.config.backoff_max);
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counters_now(&self) -> WorkerCounters {
        let mut c = (self.source)();
        let s = &self.counters;
        c.queue_drops = s.queue_drops.load(Ordering::Relaxed);
        c.entries_sent = s.entries_sent.load(Ordering::Relaxed);
        c.reconnects = s.reconnects.load(Ordering::Relaxed);
        c.queued = s.queued.load(Ordering::Relaxed);
        c.lost_in_flight = s.lost_in_flight.load(Ordering::Relaxed);
        c
    }

    fn heartbeat(&self) -> WorkerMessage {
        let ts_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        WorkerMessage {
            kind: Some(worker_message::Kind::Heartbeat(Heartbeat {
                ts_ns,
                counters: Some(self.counters_now()),
            })),
        }
    }

    async fn session(&mut self) -> End {
        let cfg = &self.config;
        let endpoint = match Endpoint::from_shared(cfg.hub.clone()) {
            Ok(e) => e
                .connect_timeout(cfg.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5)),
            Err(e) => return End::Failed(format!("bad hub address {:?}: {e}", cfg.hub)),
        };
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => return End::Failed(format!("connect: {}", error_chain(&e))),
        };
        let mut client = HubClient::new(channel)
            .max_encoding_message_size(cfg.batch_bytes * 2)
            .max_decoding_message_size(4 << 20);
        // Room for a full window of batches plus heartbeats and PCAP answers.
        let (tx, rx) = mpsc::channel(cfg.window + 16);
        let hello = WorkerMessage {
            kind: Some(worker_message::Kind::Hello(Hello {
                node: cfg.node.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
                capabilities: cfg.capabilities.clone(),
                instance: self.instance.clone(),
            })),
        };
        let _ = tx.try_send(hello);
        let _ = tx.try_send(self.heartbeat());
        let call = client.session(ReceiverStream::new(rx));
        let mut inbound = match timeout(cfg.connect_timeout, call).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return End::Failed(format!("hub refused the stream: {status}")),
            Err(_) => return End::Failed("the hub did not answer in time".into()),
        };
        self.counters.connected.store(true, Ordering::Relaxed);
        tracing::info!(hub = %cfg.hub, node = %cfg.node, "connected to the hub");
        let mut ticks = tokio::time::interval(cfg.heartbeat);
        ticks.reset();
        let mut progressed = false;
        loop {
            if self.closed && self.in_flight.is_empty() && self.queue.is_empty() {
                // A last heartbeat so the hub's counters are final.
                let _ = tx.try_send(self.heartbeat());
                drop(tx);
                // Let the hub read it before the stream closes.
                let _ = timeout(Duration::from_secs(2), inbound.message()).await;
                return End::Done;
            }
            let can_send = self.in_flight.len() < self.config.window && !self.closed;
            tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(m)) => {
                        progressed = true;
                        if !self.on_message(m, &tx).await {
                            return self.broke(progressed, "the stream's send queue closed".into());
                        }
                    }
                    Ok(None) => return self.broke(progressed, "the hub closed the stream".into()),
                    Err(status) => return self.broke(progressed, format!("{status}")),
                },
                first = self.queue.recv(), if can_send => match first {
                    Some(q) => {
                        let batch = self.gather(q).await;
                        if tx.try_send(batch).is_err() {
                            return self.broke(progressed, "the stream's send queue is full".into());
                        }
                    }
                    None => self.closed = true,
                },
                _ = ticks.tick() => {
                    // A full send queue means the hub is not reading: skipping a
                    // heartbeat is fine, the next one carries the same counters.
                    let _ = tx.try_send(self.heartbeat());
                }
            }
        }
    }

    fn broke(&self, progressed: bool, why: String) -> End {
        if progressed {
            End::Broke(why)
        } else {
            End::Failed(why)
        }
    }

    /// One batch: `first` and whatever else arrives within the linger time,
    /// up to the entry and byte limits.
    async fn gather(&mut self, first: Queued) -> WorkerMessage {
        use prost::Message as _;
        let deadline = Instant::now() + self.config.linger;
        let mut entries = Vec::with_capacity(self.config.batch);
        let mut bytes = first.entry.encoded_len();
        self.permits.add_permits(first.bytes as usize);
        entries.push(first.entry);
        while entries.len() < self.config.batch && bytes < self.config.batch_bytes {
            match self.queue.try_recv() {
                Ok(q) => {
                    bytes += q.entry.encoded_len();
                    self.permits.add_permits(q.bytes as usize);
                    entries.push(q.entry);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            // The queue is polled in short sleeps, not waited on: a task
            // waiting on it is woken by every entry the capture offers (a
            // context switch per entry at full rate).
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep_until(deadline.min(now + GATHER_POLL)).await;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let n = entries.len() as u64;
        self.in_flight.push_back((seq, n));
        self.counters.entries_sent.fetch_add(n, Ordering::Relaxed);
        WorkerMessage {
            kind: Some(worker_message::Kind::Batch(EntryBatch { seq, entries })),
        }
    }

    /// Handles one message from the hub; false when the stream can no longer be written.
    async fn on_message(&mut self, m: HubMessage, tx: &mpsc::Sender<WorkerMessage>) -> bool {
        match m.kind {
            Some(hub_message::Kind::Ack(ack)) => {
                while let Some(&(seq, n)) = self.in_flight.front() {
                    if seq > ack.seq {
                        break;
                    }
                    self.in_flight.pop_front();
                    self.counters.entries_acked.fetch_add(n, Ordering::Relaxed);
                    self.counters.queued.fetch_sub(n, Ordering::Relaxed);
                }
            }
            Some(hub_message::Kind::Config(c)) => {
                tracing::info!(version = c.version, "configuration from the hub");
                self.config_tx.send_replace(Some(c));
            }
            Some(hub_message::Kind::PcapRequest(r)) => {
                for chunk in self.pcap_chunks(&r) {
                    let msg = WorkerMessage {
                        kind: Some(worker_message::Kind::Pcap(chunk)),
                    };
                    if tx.send(msg).await.is_err() {
                        return false;
                    }
                }
            }
            None => {}
        }
        true
    }

    /// The answer to a PCAP request: the ring's packets in chunks of at most
    /// `batch_bytes`, the last one marked (and saying what the ring lost).
    fn pcap_chunks(&self, r: &proto::v1::PcapRequest) -> Vec<PcapChunk> {
        let chunk = |packets, last, error: String| PcapChunk {
            request_id: r.request_id,
            packets,
            last,
            error,
        };
        let Some(ring) = &self.ring else {
            return vec![chunk(
                Vec::new(),
                true,
                "this worker keeps no raw packets".into(),
            )];
        };
        let answer = ring.lock().unwrap_or_else(|e| e.into_inner()).answer(r);
        let mut out = Vec::new();
        let mut cur = Vec::new();
        let mut bytes = 0;
        for p in answer.packets {
            bytes += p.data.len() + 32;
            cur.push(p);
            if bytes >= self.config.batch_bytes {
                out.push(chunk(std::mem::take(&mut cur), false, String::new()));
                bytes = 0;
            }
        }
        out.push(chunk(cur, true, answer.error));
        out
    }
}

/// A transport error with its causes: tonic's top-level message alone is "transport error".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{Body, HttpRequest, Request, request};

    fn entry_with_body(bytes: usize) -> Entry {
        Entry {
            request: Some(Request {
                kind: Some(request::Kind::Http(Box::new(HttpRequest {
                    body: Some(Body {
                        data: vec![b'x'; bytes],
                        ..Default::default()
                    }),
                    ..Default::default()
                }))),
            }),
            ..Default::default()
        }
    }

    /// No hub answers, so nothing leaves the queue: it takes entries until
    /// their memory reaches the bound, and drops (and counts) the rest.
    #[tokio::test]
    async fn the_queue_is_bounded_in_memory_and_counts_what_it_drops() {
        let config = ShipConfig {
            // A port nothing listens on: the shipper keeps retrying.
            hub: "http://127.0.0.1:9".into(),
            queue: 10_000,
            queue_memory: 1 << 20,
            ..Default::default()
        };
        let shipper = Shipper::start(config, Arc::new(WorkerCounters::default), None);
        let cost = |e: &Entry| proto::heap::entry(e);
        let big = cost(&entry_with_body(100 << 10));
        assert!((100 << 10..101 << 10).contains(&big), "{big} bytes");
        let offered = 100;
        let taken = (0..offered)
            .filter(|_| shipper.offer(entry_with_body(100 << 10)))
            .count() as u64;
        let c = shipper.counters();
        assert_eq!(taken, (1 << 20) / big);
        assert_eq!(c.queued.load(Ordering::Relaxed), taken);
        assert_eq!(c.queue_drops.load(Ordering::Relaxed), offered - taken);
        // Small entries fill what is left, and no more.
        let small = (0..10_000)
            .filter(|_| shipper.offer(entry_with_body(0)))
            .count() as u64;
        assert_eq!(small, ((1 << 20) - taken * big) / cost(&entry_with_body(0)));
        // An entry larger than the whole bound is never taken while others wait.
        assert!(!shipper.offer(entry_with_body(2 << 20)));
    }
}
