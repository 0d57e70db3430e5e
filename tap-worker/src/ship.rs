//! `ship`: the node's last stage — streams entries to the hub over one gRPC
//! stream (`Hub.Session`, proto/kubetap/v1/hub.proto).
//!
//! It takes its entries from the worker's one entry queue (`queue`), in
//! batches, and sends at most `window` batches the hub has not acknowledged
//! yet; the hub acknowledges a batch once it is stored. So a slow hub slows
//! the worker down end to end: acks come late, the window stays full, the
//! queue fills, and what a live capture cannot queue is dropped and counted
//! there, never held in memory without bound. Heartbeats carry every counter
//! to the hub each second.
//!
//! The hub may ask for the raw packets of some connections (PCAP export);
//! they come from the worker's packet ring (`ring`), in chunks on the same
//! stream.
//!
//! When the stream breaks the task reconnects with jittered exponential
//! backoff. Batches in flight at that moment are counted as `lost_in_flight`
//! and not sent again: the hub may have stored them, and an entry stored twice
//! would mislead a user as much as a lost one; the counter says how many.

use crate::queue::{EntryQueue, Take};
use crate::ring::PacketRing;
use proto::v1::hub_client::HubClient;
use proto::v1::{
    EntryBatch, Heartbeat, Hello, HubMessage, PcapChunk, WorkerConfig, WorkerCounters,
    WorkerMessage, hub_message, worker_message,
};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
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
    /// The Linux capabilities the worker kept (`privileges::Kept::names`),
    /// for the hello.
    pub linux_capabilities: Vec<String>,
}

impl Default for ShipConfig {
    fn default() -> Self {
        ShipConfig {
            hub: "http://127.0.0.1:8898".into(),
            node: "local".into(),
            batch: 512,
            batch_bytes: 2 << 20,
            linger: Duration::from_millis(50),
            window: 8,
            heartbeat: Duration::from_secs(1),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            capabilities: vec!["entries".into()],
            linux_capabilities: Vec::new(),
        }
    }
}

/// What the shipper did, shared with whoever reports the worker's counters.
#[derive(Debug, Default)]
pub struct ShipCounters {
    pub entries_sent: AtomicU64,
    pub entries_acked: AtomicU64,
    pub lost_in_flight: AtomicU64,
    pub reconnects: AtomicU64,
    /// Entries sent and not acknowledged yet.
    pub in_flight: AtomicU64,
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

/// The task that drains the worker's entry queue to the hub.
pub struct Shipper {
    queue: Arc<EntryQueue>,
    counters: Arc<ShipCounters>,
    config: watch::Receiver<Option<WorkerConfig>>,
    task: JoinHandle<()>,
    hub: String,
}

impl Shipper {
    /// Starts the shipping task on the current tokio runtime, taking its
    /// entries from `queue`; `ring` answers the hub's PCAP requests (None:
    /// this worker keeps no raw packets).
    pub fn start(
        mut config: ShipConfig,
        queue: Arc<EntryQueue>,
        source: CounterSource,
        ring: Option<Arc<Mutex<PacketRing>>>,
    ) -> Shipper {
        if ring.is_some() && !config.capabilities.iter().any(|c| c == "pcap") {
            config.capabilities.push("pcap".into());
        }
        let counters = Arc::new(ShipCounters::default());
        let (config_tx, config_rx) = watch::channel(None);
        let hub = config.hub.clone();
        let task = tokio::spawn(
            Link {
                config,
                queue: queue.clone(),
                counters: counters.clone(),
                source,
                config_tx,
                instance: format!("{:016x}", fastrand::u64(..)),
                next_seq: 1,
                in_flight: VecDeque::new(),
                ring,
            }
            .run(),
        );
        Shipper {
            queue,
            counters,
            config: config_rx,
            task,
            hub,
        }
    }

    pub fn counters(&self) -> Arc<ShipCounters> {
        self.counters.clone()
    }

    /// The configuration the hub sent last (None before the first).
    pub fn config(&self) -> watch::Receiver<Option<WorkerConfig>> {
        self.config.clone()
    }

    /// Closes the queue, sends what it holds and waits until the hub has
    /// acknowledged all of it, for at most `limit`.
    pub async fn finish(self, limit: Duration) -> Result<(), ShipError> {
        let Shipper {
            queue,
            counters,
            mut task,
            hub,
            ..
        } = self;
        queue.close();
        if timeout(limit, &mut task).await.is_err() {
            task.abort();
            let unacked = queue.len() as u64 + counters.in_flight.load(Ordering::Relaxed);
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
    queue: Arc<EntryQueue>,
    counters: Arc<ShipCounters>,
    source: CounterSource,
    config_tx: watch::Sender<Option<WorkerConfig>>,
    instance: String,
    next_seq: u64,
    /// Batches sent and not acknowledged: (seq, entries).
    in_flight: VecDeque<(u64, u64)>,
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
                self.counters.in_flight.fetch_sub(lost, Ordering::Relaxed);
            }
            if self.queue.is_closed() && self.queue.is_empty() {
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
        c.entries_sent = s.entries_sent.load(Ordering::Relaxed);
        c.reconnects = s.reconnects.load(Ordering::Relaxed);
        c.queued = self.queue.len() as u64 + s.in_flight.load(Ordering::Relaxed);
        c.lost_in_flight = s.lost_in_flight.load(Ordering::Relaxed);
        c.drops_by_cause.insert(
            crate::drops::DropCause::LostInFlight.name().to_string(),
            c.lost_in_flight,
        );
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
                linux_capabilities: cfg.linux_capabilities.clone(),
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
            let closed = self.queue.is_closed();
            if closed && self.in_flight.is_empty() && self.queue.is_empty() {
                // A last heartbeat so the hub's counters are final.
                let _ = tx.try_send(self.heartbeat());
                drop(tx);
                // Let the hub read it before the stream closes.
                let _ = timeout(Duration::from_secs(2), inbound.message()).await;
                return End::Done;
            }
            // Closed and empty: only acks are awaited now.
            let can_send =
                self.in_flight.len() < self.config.window && !(closed && self.queue.is_empty());
            let queue = self.queue.clone();
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
                () = entries_waiting(&queue), if can_send => {
                    if let Some(batch) = self.gather().await
                        && tx.try_send(batch).is_err()
                    {
                        return self.broke(progressed, "the stream's send queue is full".into());
                    }
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

    /// One batch: what is queued and whatever else arrives within the
    /// linger time, up to the entry and byte limits (None: nothing queued).
    async fn gather(&mut self) -> Option<WorkerMessage> {
        let deadline = Instant::now() + self.config.linger;
        let mut entries = Vec::with_capacity(self.config.batch);
        let mut bytes = 0;
        while entries.len() < self.config.batch {
            match self.queue.take_within(&mut bytes, self.config.batch_bytes) {
                Take::Entry(e) => {
                    entries.push(e);
                    continue;
                }
                // Full in bytes: the next entry starts the next batch.
                Take::Full => break,
                Take::Empty => {}
            }
            let now = Instant::now();
            if now >= deadline || self.queue.is_closed() {
                break;
            }
            tokio::time::sleep_until(deadline.min(now + GATHER_POLL)).await;
        }
        if entries.is_empty() {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let n = entries.len() as u64;
        self.in_flight.push_back((seq, n));
        self.counters.entries_sent.fetch_add(n, Ordering::Relaxed);
        self.counters.in_flight.fetch_add(n, Ordering::Relaxed);
        Some(WorkerMessage {
            kind: Some(worker_message::Kind::Batch(EntryBatch { seq, entries })),
        })
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
                    self.counters.in_flight.fetch_sub(n, Ordering::Relaxed);
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

/// Returns once `queue` holds an entry or is closed. The queue is polled in
/// short sleeps, not waited on: a task waiting on it would be woken by every
/// entry the capture offers (a context switch per entry at full rate).
async fn entries_waiting(queue: &EntryQueue) {
    while queue.is_empty() && !queue.is_closed() {
        tokio::time::sleep(GATHER_POLL).await;
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

/// The driver's side of shipping: the shipper's task drains the queue by
/// itself, so this sink takes nothing; it keeps the counters the heartbeats
/// carry up to date (four times a second).
pub struct ShipSink {
    counters: Arc<Mutex<WorkerCounters>>,
    published: Option<std::time::Instant>,
}

impl ShipSink {
    /// The sink, and the counter source to start the shipper with.
    pub fn new() -> (ShipSink, CounterSource) {
        let counters = Arc::new(Mutex::new(WorkerCounters::default()));
        let source = {
            let counters = counters.clone();
            Arc::new(move || counters.lock().unwrap_or_else(|e| e.into_inner()).clone())
        };
        (
            ShipSink {
                counters,
                published: None,
            },
            source,
        )
    }
}

impl crate::driver::Sink for ShipSink {
    fn drain(&mut self, driver: &crate::driver::Driver) -> anyhow::Result<usize> {
        let due = self
            .published
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(250));
        // Once stopped, always: the last heartbeat carries the final counters.
        if due || driver.finished() {
            self.published = Some(std::time::Instant::now());
            *self.counters.lock().unwrap_or_else(|e| e.into_inner()) = driver.counters();
        }
        Ok(0)
    }
}
