//! `ingest`: the gRPC server every worker streams to (`Hub.Session`,
//! proto/kubetap/v1/hub.proto). A stream starts with the worker's hello;
//! then batches are stored and acknowledged one by one, heartbeats update the
//! worker's counters, and the hub sends the worker its configuration on
//! connect and whenever it changes.
//!
//! Flow control is the acknowledgement: a batch is acknowledged only once it
//! is stored (on disk when the disk is on), and a worker sends only a few
//! batches ahead of its acks, so a slow hub slows every worker down instead of
//! queueing without bound. Anything a client sends wrong (no hello, an
//! undecodable or oversized message) ends that client's stream with a status
//! saying why; it never touches the others.

use crate::hub::{Hub, PacketSource, WorkerState};
use proto::v1::hub_server::{Hub as HubService, HubServer};
use proto::v1::{Ack, HubMessage, WorkerMessage, hub_message, worker_message};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// A worker must say hello within this time after opening its stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Entries in one batch, at most.
const MAX_BATCH_ENTRIES: usize = 65_536;

/// The gRPC service; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    hub: Arc<Hub>,
}

impl Ingest {
    pub fn new(hub: Arc<Hub>) -> Self {
        Ingest { hub }
    }

    /// The tonic service with the hub's message size limit.
    pub fn service(self) -> HubServer<Ingest> {
        let max = self.hub.config.max_message;
        HubServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<HubMessage, Status>> + Send>>;

#[tonic::async_trait]
impl HubService for Ingest {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<SessionStream>, Status> {
        let remote = request.remote_addr();
        let mut inbound = request.into_inner();
        let hub = self.hub.clone();
        let first = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => {
                return Err(reject(&hub, Status::cancelled("stream ended before hello")));
            }
            Ok(Err(status)) => {
                hub.counters.bad_messages.fetch_add(1, Ordering::Relaxed);
                return Err(reject(&hub, status));
            }
            Err(_) => {
                return Err(reject(
                    &hub,
                    Status::deadline_exceeded("no hello within 10 s of opening the stream"),
                ));
            }
        };
        let Some(worker_message::Kind::Hello(hello)) = first.kind else {
            return Err(reject(
                &hub,
                Status::invalid_argument("the first message of a session must be a hello"),
            ));
        };
        let node = hello.node.trim().to_string();
        if node.is_empty() || node.len() > 253 || node.chars().any(char::is_control) {
            return Err(reject(
                &hub,
                Status::invalid_argument(
                    "hello.node must be a node name of 1 to 253 printable characters",
                ),
            ));
        }
        hub.counters.sessions.fetch_add(1, Ordering::Relaxed);
        let session = hub.new_session();
        register(&hub, &node, &hello, remote, session);
        tracing::info!(%node, instance = %hello.instance, remote = ?remote, "worker connected");

        let (tx, rx) = mpsc::channel::<Result<HubMessage, Status>>(64);
        let mut config = hub.worker_config();
        let first_config = crate::pods::for_node(&config.borrow_and_update(), &node);
        let _ = tx
            .send(Ok(HubMessage {
                kind: Some(hub_message::Kind::Config(first_config)),
            }))
            .await;
        hub.set_source(
            &node,
            PacketSource::Worker {
                session,
                stream: tx.clone(),
            },
        );
        tokio::spawn(async move {
            let end = serve(&hub, &node, &mut inbound, &tx, &mut config).await;
            hub.drop_source(&node, session);
            let mut workers = hub.workers();
            if let Some(w) = workers.get_mut(&node)
                && w.session == session
            {
                w.connected = false;
                w.disconnected_at = Some(SystemTime::now());
                w.last_error = end.clone();
            }
            drop(workers);
            match end {
                None => tracing::info!(%node, "worker disconnected"),
                Some(why) => tracing::warn!(%node, %why, "worker stream ended"),
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn reject(hub: &Hub, status: Status) -> Status {
    hub.counters
        .rejected_sessions
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%status, "worker stream refused");
    status
}

fn register(
    hub: &Hub,
    node: &str,
    hello: &proto::v1::Hello,
    remote: Option<SocketAddr>,
    session: u64,
) {
    let now = SystemTime::now();
    let mut workers = hub.workers();
    let w = workers
        .entry(node.to_string())
        .or_insert_with(|| WorkerState {
            node: node.to_string(),
            instance: hello.instance.clone(),
            session,
            version: String::new(),
            capabilities: Vec::new(),
            linux_capabilities: Vec::new(),
            connected: false,
            remote: None,
            connected_at: now,
            disconnected_at: None,
            last_heartbeat: None,
            sessions: 0,
            restarts: 0,
            batches: 0,
            entries_received: 0,
            counters: Default::default(),
            last_error: None,
        });
    if w.instance != hello.instance {
        w.restarts += 1;
        w.instance = hello.instance.clone();
        w.counters = Default::default();
    }
    w.session = session;
    w.version = hello.version.clone();
    w.capabilities = hello.capabilities.clone();
    w.linux_capabilities = hello.linux_capabilities.clone();
    w.connected = true;
    w.remote = remote.map(|r| r.to_string());
    w.connected_at = now;
    w.disconnected_at = None;
    w.sessions += 1;
}

/// One worker's stream until it ends; `Some(reason)` when it did not end cleanly.
async fn serve(
    hub: &Arc<Hub>,
    node: &str,
    inbound: &mut Streaming<WorkerMessage>,
    tx: &mpsc::Sender<Result<HubMessage, Status>>,
    config: &mut tokio::sync::watch::Receiver<proto::v1::WorkerConfig>,
) -> Option<String> {
    loop {
        let msg = tokio::select! {
            m = inbound.message() => m,
            changed = config.changed() => {
                if changed.is_ok() {
                    let c = crate::pods::for_node(&config.borrow_and_update(), node);
                    if tx.send(Ok(HubMessage { kind: Some(hub_message::Kind::Config(c)) })).await.is_err() {
                        return Some("the worker stopped reading".into());
                    }
                }
                continue;
            }
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(status) => {
                if status.code() != tonic::Code::Cancelled && status.code() != tonic::Code::Unknown
                {
                    hub.counters.bad_messages.fetch_add(1, Ordering::Relaxed);
                }
                let _ = tx.send(Err(status.clone())).await;
                return Some(status.message().to_string());
            }
        };
        match msg.kind {
            Some(worker_message::Kind::Batch(batch)) => {
                if batch.entries.len() > MAX_BATCH_ENTRIES {
                    hub.counters.bad_messages.fetch_add(1, Ordering::Relaxed);
                    let status = Status::invalid_argument(format!(
                        "a batch holds at most {MAX_BATCH_ENTRIES} entries, this one {}",
                        batch.entries.len()
                    ));
                    let _ = tx.send(Err(status.clone())).await;
                    return Some(status.message().to_string());
                }
                let n = batch.entries.len() as u64;
                let store_hub = hub.clone();
                let store_node = node.to_string();
                let stored = tokio::task::spawn_blocking(move || {
                    store_hub.insert(&store_node, batch.entries)
                })
                .await;
                match stored {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(%node, error = %e, "storing a batch"),
                    Err(e) => return Some(format!("storing a batch failed: {e}")),
                }
                if let Some(w) = hub.workers().get_mut(node) {
                    w.batches += 1;
                    w.entries_received += n;
                }
                let ack = HubMessage {
                    kind: Some(hub_message::Kind::Ack(Ack { seq: batch.seq })),
                };
                if tx.send(Ok(ack)).await.is_err() {
                    return Some("the worker stopped reading".into());
                }
            }
            Some(worker_message::Kind::Heartbeat(h)) => {
                if let Some(w) = hub.workers().get_mut(node) {
                    w.last_heartbeat = Some(SystemTime::now());
                    if let Some(c) = h.counters {
                        w.counters = c;
                    }
                }
            }
            Some(worker_message::Kind::Pcap(chunk)) => hub.deliver_pcap(chunk).await,
            Some(worker_message::Kind::Hello(_)) => {
                hub.counters.bad_messages.fetch_add(1, Ordering::Relaxed);
                let status = Status::invalid_argument("hello sent twice on one stream");
                let _ = tx.send(Err(status.clone())).await;
                return Some(status.message().to_string());
            }
            None => {}
        }
    }
}
