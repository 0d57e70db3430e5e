//! The hub's shared state: the store, the registry of workers, the live feed
//! of new entries and the configuration pushed to workers. `ingest` writes
//! it, `api` reads it.

use crate::store::{Store, StoreConfig, StoreError, StoreStats};
use proto::v1::{Entry, HubMessage, PcapChunk, PcapRequest, WorkerConfig, WorkerCounters};
use std::collections::{BTreeMap, HashMap};
use std::ops::{ControlFlow, Range};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;
use tokio::sync::{broadcast, mpsc, watch};
use tonic::Status;

#[derive(Debug, Clone)]
pub struct HubConfig {
    pub store: StoreConfig,
    /// Largest gRPC message accepted from a worker, bytes.
    pub max_message: usize,
    /// Entries in flight to each live-stream client before a slow one misses some.
    pub live_buffer: usize,
    /// What every worker is told to capture, on connect and when it changes.
    pub worker_config: WorkerConfig,
    /// PCAP exports carry the packets as captured, redacted values
    /// included (`--raw-pcap`); each such export is logged.
    pub raw_pcap: bool,
    /// The API's bearer token (`access`); by default a new random one.
    pub token: crate::access::Token,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            store: StoreConfig::default(),
            max_message: 8 << 20,
            live_buffer: 4096,
            worker_config: WorkerConfig {
                version: 1,
                ..Default::default()
            },
            raw_pcap: false,
            token: crate::access::Token::generate()
                .expect("the operating system gives randomness for the API token"),
        }
    }
}

/// Counters of the hub itself, for `/metrics` and the workers panel.
#[derive(Debug, Default)]
pub struct HubCounters {
    pub sessions: AtomicU64,
    /// Streams refused: no hello, a bad hello.
    pub rejected_sessions: AtomicU64,
    /// Connections refused before any stream: a failed TLS handshake (no
    /// certificate of the install's CA, expired …) or none within 10 s.
    pub refused_handshakes: AtomicU64,
    /// Streams ended by a message the hub could not decode or that was too large.
    pub bad_messages: AtomicU64,
    pub batches: AtomicU64,
    pub entries_ingested: AtomicU64,
    /// Batches stored in memory only because the disk failed.
    pub store_errors: AtomicU64,
    /// Entries a live-stream client was too slow to receive.
    pub live_dropped: AtomicU64,
    /// `--watch-pods`: pods with an address of their own, as last seen.
    pub pods_followed: AtomicU64,
    /// `--watch-pods`: failed list or watch requests (each retried).
    pub pod_watch_errors: AtomicU64,
}

/// One worker as the hub knows it (by node name).
#[derive(Debug, Clone)]
pub struct WorkerState {
    pub node: String,
    pub instance: String,
    /// The hub's id of the worker's current stream (see [`Hub::new_session`]).
    pub session: u64,
    pub version: String,
    pub capabilities: Vec<String>,
    /// The Linux capabilities the worker kept after start.
    pub linux_capabilities: Vec<String>,
    pub connected: bool,
    pub remote: Option<String>,
    pub connected_at: SystemTime,
    pub disconnected_at: Option<SystemTime>,
    pub last_heartbeat: Option<SystemTime>,
    pub sessions: u64,
    /// Times the worker came back as a new process (a new instance).
    pub restarts: u64,
    pub batches: u64,
    pub entries_received: u64,
    pub counters: WorkerCounters,
    /// Why the last stream ended, when it did not end cleanly.
    pub last_error: Option<String>,
}

/// A new entry for the live stream.
pub type LiveEntry = (u64, Arc<Entry>);

/// Where a node's raw packets come from, for PCAP export.
#[derive(Clone)]
pub enum PacketSource {
    /// A connected worker: the request goes down its stream, chunks come back.
    Worker {
        session: u64,
        stream: mpsc::Sender<Result<HubMessage, Status>>,
    },
    /// This process keeps the packets itself (`kubetap read --serve`).
    Local(LocalPackets),
}

/// Answers a PCAP request from packets this process holds.
pub type LocalPackets = Arc<dyn Fn(&PcapRequest) -> Vec<PcapChunk> + Send + Sync>;

pub struct Hub {
    store: RwLock<Store>,
    workers: Mutex<BTreeMap<String, WorkerState>>,
    live: broadcast::Sender<LiveEntry>,
    worker_config: watch::Sender<WorkerConfig>,
    sources: Mutex<HashMap<String, PacketSource>>,
    /// PCAP exports waiting for workers' chunks, by request id.
    pcap_waiters: Mutex<HashMap<u64, mpsc::Sender<PcapChunk>>>,
    next_pcap_request: AtomicU64,
    next_session: AtomicU64,
    /// Worker ids of entries others may refer to, and their hub ids.
    references: Mutex<crate::ids::References>,
    /// `serve` is running the hub's servers (`/readyz`).
    serving: AtomicBool,
    pub counters: HubCounters,
    /// API requests refused for want of a token or from another origin.
    pub refusals: crate::access::Refusals,
    pub config: HubConfig,
    pub started: SystemTime,
}

impl Hub {
    pub fn open(config: HubConfig) -> Result<Arc<Hub>, StoreError> {
        let store = Store::open(config.store.clone())?;
        let (live, _) = broadcast::channel(config.live_buffer.max(16));
        let (worker_config, _) = watch::channel(config.worker_config.clone());
        Ok(Arc::new(Hub {
            store: RwLock::new(store),
            workers: Mutex::new(BTreeMap::new()),
            live,
            worker_config,
            sources: Mutex::new(HashMap::new()),
            pcap_waiters: Mutex::new(HashMap::new()),
            next_pcap_request: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            references: Mutex::default(),
            serving: AtomicBool::new(false),
            counters: HubCounters::default(),
            refusals: Default::default(),
            config,
            started: SystemTime::now(),
        }))
    }

    /// The store for queries. A panic elsewhere never makes the store unreadable.
    pub fn store(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }

    fn store_mut(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Scans the store newest first from below `before`, taking its lock for
    /// a bounded number of entries at a time, so that a long query never
    /// holds ingest (which needs the lock to store a batch) for long.
    pub fn scan_back(
        &self,
        before: Option<u64>,
        mut f: impl FnMut(u64, &Entry) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        const CHUNK: usize = 16_384;
        let mut before = before;
        loop {
            let mut seen = 0usize;
            let mut stopped = false;
            let mut last = None;
            self.store().scan_back(before, |seq, e| {
                if seen == CHUNK {
                    return ControlFlow::Break(());
                }
                seen += 1;
                last = Some(seq);
                if f(seq, e).is_break() {
                    stopped = true;
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })?;
            if stopped || seen < CHUNK || last.is_none_or(|s| s <= 1) {
                return Ok(());
            }
            before = last;
        }
    }

    /// Whether the hub's servers are running (set by `serve`).
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Relaxed)
    }

    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }

    pub fn store_stats(&self) -> StoreStats {
        self.store().stats()
    }

    pub fn workers(&self) -> MutexGuard<'_, BTreeMap<String, WorkerState>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a worker's batch: each entry gets the hub's id (its seq, unique
    /// across workers and restarts; references to other entries follow,
    /// `ids`) and the node of the stream it came on.
    /// Blocking (disk writes): call from a blocking task.
    pub fn insert(&self, node: &str, mut entries: Vec<Entry>) -> Result<Range<u64>, StoreError> {
        let n = entries.len() as u64;
        let (result, fresh) = {
            let mut store = self.store_mut();
            let first = store.next_seq();
            let mut references = self.references.lock().unwrap_or_else(|e| e.into_inner());
            for (i, e) in entries.iter_mut().enumerate() {
                references.assign(node, e, first + i as u64);
                if e.node != node {
                    e.node = node.to_string();
                }
            }
            let result = store.insert_batch(entries);
            // On a disk error the batch is in memory all the same.
            let range = first..store.next_seq();
            // Live clients get the new entries; none listening costs nothing.
            let fresh: Vec<LiveEntry> = if self.live.receiver_count() > 0 {
                range
                    .filter_map(|seq| store.get(seq).map(|e| (seq, e)))
                    .collect()
            } else {
                Vec::new()
            };
            (result, fresh)
        };
        for e in fresh {
            let _ = self.live.send(e);
        }
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters
            .entries_ingested
            .fetch_add(n, Ordering::Relaxed);
        if result.is_err() {
            self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// A worker in this process (`kubetap tap --local`): shown in the workers
    /// panel like a remote one, its counters set directly instead of by
    /// heartbeats. `capabilities` and `linux_capabilities` as a remote
    /// worker's hello says them.
    pub fn report_local(
        &self,
        node: &str,
        capabilities: &[String],
        linux_capabilities: &[String],
        counters: WorkerCounters,
        entries_received: u64,
    ) {
        let now = SystemTime::now();
        let mut workers = self.workers();
        let w = workers
            .entry(node.to_string())
            .or_insert_with(|| WorkerState {
                node: node.to_string(),
                instance: "in-process".into(),
                session: 0,
                version: env!("CARGO_PKG_VERSION").into(),
                capabilities: capabilities.to_vec(),
                linux_capabilities: linux_capabilities.to_vec(),
                connected: true,
                remote: Some("in-process".into()),
                connected_at: now,
                disconnected_at: None,
                last_heartbeat: None,
                sessions: 1,
                restarts: 0,
                batches: 0,
                entries_received: 0,
                counters: WorkerCounters::default(),
                last_error: None,
            });
        w.last_heartbeat = Some(now);
        w.entries_received = entries_received;
        w.counters = counters;
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEntry> {
        self.live.subscribe()
    }

    pub fn worker_config(&self) -> watch::Receiver<WorkerConfig> {
        self.worker_config.subscribe()
    }

    /// Changes what workers capture; every connected worker gets it at
    /// once. A change in place, so the user's settings (`PUT /api/config`)
    /// and the followed pods (`pods::follow`) never undo each other.
    pub fn update_worker_config(&self, change: impl FnOnce(&mut WorkerConfig)) {
        self.worker_config.send_modify(|config| {
            change(config);
            config.version += 1;
        });
    }

    /// A new id for a worker's stream. A worker that reconnects keeps its
    /// instance id, and its old stream may end after the new one began: what
    /// the old stream's end undoes is decided by this id, not the instance.
    pub fn new_session(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub fn set_source(&self, node: &str, source: PacketSource) {
        lock(&self.sources).insert(node.to_string(), source);
    }

    /// Forgets a worker's stream as a packet source, unless a newer stream
    /// of the same node replaced it already.
    pub fn drop_source(&self, node: &str, session: u64) {
        let mut sources = lock(&self.sources);
        if matches!(sources.get(node), Some(PacketSource::Worker { session: s, .. }) if *s == session)
        {
            sources.remove(node);
        }
    }

    pub fn source(&self, node: &str) -> Option<PacketSource> {
        lock(&self.sources).get(node).cloned()
    }

    /// A new PCAP request id and the channel its chunks will arrive on.
    pub fn pcap_waiter(&self) -> (u64, mpsc::Receiver<PcapChunk>) {
        let id = self.next_pcap_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(64);
        lock(&self.pcap_waiters).insert(id, tx);
        (id, rx)
    }

    pub fn end_pcap_waiter(&self, id: u64) {
        lock(&self.pcap_waiters).remove(&id);
    }

    /// Hands a worker's chunk to the export waiting for it (none: dropped).
    pub async fn deliver_pcap(&self, chunk: PcapChunk) {
        let waiter = lock(&self.pcap_waiters).get(&chunk.request_id).cloned();
        match waiter {
            Some(w) => {
                let _ = w.send(chunk).await;
            }
            None => tracing::debug!(request = chunk.request_id, "PCAP chunk nobody waits for"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_scan_sees_every_entry_once_newest_first() {
        let hub = Hub::open(HubConfig::default()).unwrap();
        for _ in 0..5 {
            hub.insert("n1", vec![Entry::default(); 10_000]).unwrap();
        }
        let mut seqs = Vec::new();
        hub.scan_back(None, |seq, _| {
            seqs.push(seq);
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(seqs.len(), 50_000);
        assert!(
            seqs.windows(2).all(|w| w[0] == w[1] + 1),
            "not newest first, once each"
        );
        // From a cursor, and stopping early, across a chunk boundary.
        let mut n = 0;
        hub.scan_back(Some(40_000), |seq, e| {
            assert!(seq < 40_000);
            assert_eq!(e.id, seq.to_string());
            n += 1;
            if n == 20_000 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(n, 20_000);
    }
}
