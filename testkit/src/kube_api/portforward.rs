//! `pods/<name>/portforward` as the kubelet serves it over WebSocket with
//! subprotocol `v4.channel.k8s.io` (what kube-rs's `Api::<Pod>::portforward`
//! speaks): per requested port `i` a data channel `2i` and an error channel
//! `2i+1`, each binary message's first byte its channel; the server's first
//! message on each channel is the port, two bytes little-endian. The bytes
//! of a data channel are relayed to and from the address the test gave
//! with [`super::ApiServer::set_port_forward`]; a port with none, or whose
//! connection fails, gets the kubelet's error text on its error channel.
//!
//! Not served: SPDY/3.1 (`kubectl port-forward`'s protocol, plain or
//! tunnelled as `SPDY/3.1+portforward.k8s.io`): such an upgrade is answered
//! 400, so kubectl says it cannot upgrade the connection.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::resources;
use super::serve::{Query, Reply, failure};
use super::status::Failure;
use super::{Shared, lock};

/// The subprotocol served.
pub const PROTOCOL: &str = "v4.channel.k8s.io";

/// At most this many ports in one request (channels are one byte).
const MAX_PORTS: usize = 32;

/// Answers the upgrade (101) and relays on a task of its own.
pub(crate) fn upgrade(
    shared: &Arc<Shared>,
    req: &mut Request<Incoming>,
    ns: &str,
    pod: &str,
    q: &Query,
) -> Reply {
    let pods = resources::lookup("pods", None).expect("pods are served");
    if shared.store().get(pods, ns, pod).is_none() {
        return failure(&Failure::not_found(pods, pod));
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    if !header(UPGRADE.as_str()).eq_ignore_ascii_case("websocket") {
        return failure(&Failure::bad_request(
            "Upgrade request required: this test API server forwards ports over WebSocket (v4.channel.k8s.io) only, not SPDY/3.1",
        ));
    }
    let mut ports = Vec::new();
    for p in q.all("ports").flat_map(|v| v.split(',')) {
        match p.trim().parse::<u16>() {
            Ok(port) if port > 0 => ports.push(port),
            _ => return failure(&Failure::bad_request(format!("invalid port {p:?}"))),
        }
    }
    if ports.is_empty() || ports.len() > MAX_PORTS {
        return failure(&Failure::bad_request(format!(
            "between 1 and {MAX_PORTS} ports are needed in the ports parameter"
        )));
    }
    let offered = header("sec-websocket-protocol");
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    let chosen = if offered.contains(&PROTOCOL) {
        Some(PROTOCOL)
    } else if offered.iter().all(|p| p.is_empty()) {
        None
    } else {
        return failure(&Failure::bad_request(format!(
            "none of the subprotocols {offered:?} is served: this test API server speaks {PROTOCOL} only"
        )));
    };
    let key = header("sec-websocket-key");
    if key.is_empty() {
        return failure(&Failure::bad_request("missing Sec-WebSocket-Key"));
    }
    let targets: Vec<(u16, Option<SocketAddr>)> = {
        let forwards = lock(&shared.forwards);
        ports
            .iter()
            .map(|p| {
                (
                    *p,
                    forwards
                        .get(&(ns.to_string(), pod.to_string(), *p))
                        .copied(),
                )
            })
            .collect()
    };
    let on_upgrade = hyper::upgrade::on(req);
    let what = format!("{ns}/{pod}");
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        relay(ws, targets, &what).await;
    });
    let mut reply = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "Upgrade")
        .header("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes()));
    if let Some(p) = chosen {
        reply = reply.header("Sec-WebSocket-Protocol", p);
    }
    reply
        .body(http_body_util::Either::Left(Default::default()))
        .expect("a valid response")
}

async fn relay<S>(ws: WebSocketStream<S>, targets: Vec<(u16, Option<SocketAddr>)>, what: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (out, mut outgoing) = mpsc::channel::<Message>(2 * MAX_PORTS + 16);
    let writer = tokio::spawn(async move {
        while let Some(m) = outgoing.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut upstreams = Vec::new();
    let mut readers = JoinSet::new();
    for (i, (port, to)) in targets.into_iter().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        let [lo, hi] = port.to_le_bytes();
        for channel in [data, error] {
            let _ = out.send(Message::binary(vec![channel, lo, hi])).await;
        }
        let connected = match to {
            Some(addr) => TcpStream::connect(addr).await.map_err(|e| e.to_string()),
            None => Err(format!("no port-forward target set for port {port}")),
        };
        match connected {
            Ok(tcp) => {
                let (mut r, w) = tcp.into_split();
                upstreams.push(Some(w));
                let out = out.clone();
                readers.spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    buf[0] = data;
                    while let Ok(n) = r.read(&mut buf[1..]).await {
                        if n == 0 || out.send(Message::binary(buf[..=n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => {
                upstreams.push(None);
                let mut message = vec![error];
                message.extend_from_slice(
                    format!("error forwarding port {port} to pod {what}: {e}").as_bytes(),
                );
                let _ = out.send(Message::binary(message)).await;
            }
        }
    }
    // Until the client closes or every upstream connection has ended.
    while !readers.is_empty() {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                    let channel = usize::from(b[0]);
                    if channel % 2 == 0
                        && let Some(slot) = upstreams.get_mut(channel / 2)
                        && let Some(w) = slot
                        && w.write_all(&b[1..]).await.is_err()
                    {
                        *slot = None;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = readers.join_next() => {}
        }
    }
    drop(upstreams);
    readers.abort_all();
    drop(out);
    let _ = writer.await;
}
