//! `handshake`: the hub's side of mutual TLS with the workers, between the
//! gRPC listener and `ingest`. Each TCP connection gets its TLS handshake
//! here (the worker's certificate must be signed by the install's CA:
//! `tap_certs::HubCerts::server_config`), and only finished TLS streams go on
//! to tonic. A refused worker is logged with its address and the reason and
//! counted (`refused_handshakes`), which tonic's own TLS would not do.
//!
//! Bounds: 256 handshakes at once (then accepting waits), 10 s each.

use crate::hub::Hub;
use rustls::ServerConfig;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const MAX_HANDSHAKES: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a refusal the hub keeps reading for this long before it closes, so
/// the worker reads the TLS alert saying why instead of a reset.
const LINGER: Duration = Duration::from_secs(1);

/// The workers' gRPC listener and the TLS settings it requires.
pub struct WorkerListener {
    listener: TcpListener,
    tls: Arc<ServerConfig>,
}

impl WorkerListener {
    pub fn new(listener: TcpListener, tls: Arc<ServerConfig>) -> WorkerListener {
        WorkerListener { listener, tls }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The stream of workers' connections whose handshake succeeded; the
    /// accepting task ends when it is dropped.
    pub(crate) fn incoming(self, hub: Arc<Hub>) -> Incoming {
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(accept(self, hub, tx));
        Incoming { rx, task }
    }
}

pub(crate) struct Incoming {
    rx: mpsc::Receiver<TlsStream<TcpStream>>,
    task: JoinHandle<()>,
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<TlsStream<TcpStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|s| s.map(Ok))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: WorkerListener, hub: Arc<Hub>, tx: mpsc::Sender<TlsStream<TcpStream>>) {
    let acceptor = TlsAcceptor::from(listener.tls);
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!(%e, "cannot accept a worker's connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, hub, tx) = (acceptor.clone(), hub.clone(), tx.clone());
        tokio::spawn(async move {
            let handshake = acceptor.accept(stream).into_fallible();
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(tls)) => {
                    drop(slot);
                    let _ = tx.send(tls).await;
                }
                Ok(Err((e, stream))) => {
                    drop(slot);
                    refused(&hub, peer, &e);
                    linger(stream).await;
                }
                Err(_) => {
                    drop(slot);
                    hub.counters
                        .refused_handshakes
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        %peer,
                        "refused a worker: no TLS handshake within {HANDSHAKE_TIMEOUT:?}"
                    );
                }
            }
        });
    }
}

fn refused(hub: &Hub, peer: SocketAddr, e: &io::Error) {
    // A TCP probe (a load balancer, kubelet) connects and closes: not a worker.
    if e.kind() == io::ErrorKind::UnexpectedEof && e.get_ref().is_none() {
        tracing::debug!(%peer, "a connection closed before its TLS handshake");
        return;
    }
    hub.counters
        .refused_handshakes
        .fetch_add(1, Ordering::Relaxed);
    match tap_certs::tls_error(e) {
        // The worker ended it: it does not trust the hub's certificate.
        Some(rustls::Error::AlertReceived(alert)) => tracing::warn!(
            %peer,
            ?alert,
            "a worker refused the hub's certificate: its ca.pem is not this install's CA, \
             or the hub's certificate does not name the address it dialled"
        ),
        _ => tracing::warn!(%peer, reason = %e, "refused a worker: TLS handshake failed"),
    }
}

/// Closes our side, then reads what the worker still sends (its finished
/// handshake, the start of HTTP/2) until it closes too or `LINGER` passes:
/// closing with unread data would send a reset, which can reach the worker
/// before the alert that says why it was refused.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut buf = [0u8; 4096];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}
