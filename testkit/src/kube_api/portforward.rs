//! `pods/<name>/portforward`, as the kubelet serves it to its two kinds of
//! client.
//!
//! WebSocket with subprotocol `v4.channel.k8s.io` (what kube-rs's
//! `Api::<Pod>::portforward` speaks): per requested port `i` a data channel
//! `2i` and an error channel `2i+1`, each binary message's first byte its
//! channel; the server's first message on each channel is the port, two
//! bytes little-endian. The bytes of a data channel are relayed to and from
//! the address the test gave with [`super::ApiServer::set_port_forward`]; a
//! port with none, or whose connection fails, gets the kubelet's error text
//! on its error channel.
//!
//! SPDY/3.1 (`kubectl port-forward`; framing in `super::spdy`). kubectl
//! 1.32 first asks for a WebSocket with subprotocol
//! `SPDY/3.1+portforward.k8s.io` and speaks SPDY in its binary messages
//! (their bytes, in order, are the SPDY connection's): that is what it gets
//! here. Refused, it would upgrade the plain connection (`Upgrade:
//! SPDY/3.1`, `X-Stream-Protocol-Version: portforward.k8s.io`), which is
//! served as well (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false` sends kubectl
//! there at once). For each local connection kubectl opens an error stream
//! and a data stream, both with the pod's `port` and one `requestid`; the
//! server replies to each, relays the data stream to and from the port's
//! target (looked up then, so targets may be set while kubectl runs), and
//! ends both streams when the target connection ends; kubectl's end of the
//! data stream half-closes the target connection, its reset closes it. A
//! port with no target, or whose connection fails, gets the kubelet's error
//! text on the error stream (on which kubectl 1.32 drops the whole
//! connection and exits: "lost connection to pod").
//!
//! Flow control: kubectl's spdystream has none. It sends as fast as it
//! writes, ignores WINDOW_UPDATE and never sends one, so a server keeping to
//! SPDY/3.1's 64 KiB windows would stall after 64 KiB of any download. Like
//! the kubelet (spdystream too) this server does not hold back what it
//! sends, and bounds what it holds by back-pressure instead: every queue is
//! bounded, and a target that does not read holds up the reading of the
//! whole connection once its queue is full. It still grants window
//! (WINDOW_UPDATE per stream and for the connection) for every byte a
//! target has taken, so a client that keeps to windows would not stall
//! either.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::resources;
use super::serve::{Query, Reply, failure};
use super::spdy::{self, Frame};
use super::status::Failure;
use super::{Shared, lock};

/// The WebSocket subprotocol of the v4 channels.
pub const PROTOCOL: &str = "v4.channel.k8s.io";

/// The `Upgrade` of plain SPDY.
const SPDY: &str = "SPDY/3.1";

/// The stream protocol served over SPDY (`X-Stream-Protocol-Version`).
const SPDY_PROTOCOL: &str = "portforward.k8s.io";

/// The WebSocket subprotocol of SPDY tunnelled in binary messages.
const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// At most this many ports in one request (channels are one byte).
const MAX_PORTS: usize = 32;

/// At most this many SPDY streams open on a connection (two per forwarded
/// connection); more are refused.
const MAX_STREAMS: usize = 256;

/// Frames queued for a SPDY connection's writer, and read frames waiting
/// for its session.
const FRAME_QUEUE: usize = 64;

/// Data frames waiting for one target connection.
const INPUT_QUEUE: usize = 8;

/// Bytes read at a time from a target or a tunnel.
const CHUNK: usize = 32 * 1024;

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
    let session = || {
        let (shared, ns, pod) = (shared.clone(), ns.to_string(), pod.to_string());
        Session {
            what: format!("{ns}/{pod}"),
            targets: Box::new(move |port| {
                let forwards = lock(&shared.forwards);
                forwards.get(&(ns.clone(), pod.clone(), port)).copied()
            }),
        }
    };
    let upgrade = header(UPGRADE.as_str());
    if upgrade.eq_ignore_ascii_case(SPDY) {
        return spdy_upgrade(req, session());
    }
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return failure(&Failure::bad_request(format!(
            "Upgrade request required: this test API server forwards ports over {SPDY} (plain, or tunnelled in a WebSocket as {TUNNEL_PROTOCOL}) and over WebSocket {PROTOCOL}"
        )));
    }
    let offered = header("sec-websocket-protocol");
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    let key = header("sec-websocket-key");
    if key.is_empty() {
        return failure(&Failure::bad_request("missing Sec-WebSocket-Key"));
    }
    if offered.contains(&TUNNEL_PROTOCOL) && !offered.contains(&PROTOCOL) {
        let session = session();
        let on_upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            if let Some(ws) = websocket(on_upgrade).await {
                tunnel(ws, session).await;
            }
        });
        return websocket_reply(&key, Some(TUNNEL_PROTOCOL));
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
    let chosen = if offered.contains(&PROTOCOL) {
        Some(PROTOCOL)
    } else if offered.iter().all(|p| p.is_empty()) {
        None
    } else {
        return failure(&Failure::bad_request(format!(
            "none of the subprotocols {offered:?} is served: this test API server speaks {PROTOCOL} and {TUNNEL_PROTOCOL}"
        )));
    };
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
        if let Some(ws) = websocket(on_upgrade).await {
            relay(ws, targets, &what).await;
        }
    });
    websocket_reply(&key, chosen)
}

/// The server's end of the WebSocket the client upgraded to.
async fn websocket(
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Option<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>> {
    let upgraded = on_upgrade.await.ok()?;
    Some(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await)
}

fn websocket_reply(key: &str, protocol: Option<&str>) -> Reply {
    let mut reply = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "Upgrade")
        .header("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes()));
    if let Some(p) = protocol {
        reply = reply.header("Sec-WebSocket-Protocol", p);
    }
    reply
        .body(http_body_util::Either::Left(Default::default()))
        .expect("a valid response")
}

/// Connects to a port's target: the connection, or the kubelet's error text.
async fn connect(
    to: Option<SocketAddr>,
    port: impl Display,
    what: &str,
) -> Result<TcpStream, String> {
    let connected = match to {
        Some(addr) => TcpStream::connect(addr).await.map_err(|e| e.to_string()),
        None => Err(format!("no port-forward target set for port {port}")),
    };
    connected.map_err(|e| format!("error forwarding port {port} to pod {what}: {e}"))
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
        match connect(to, port, what).await {
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
                message.extend_from_slice(e.as_bytes());
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

/// A plain SPDY/3.1 upgrade (kubectl's fallback): 101, then SPDY on the
/// connection.
fn spdy_upgrade(req: &mut Request<Incoming>, session: Session) -> Reply {
    let versions: Vec<String> = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect();
    // A client naming none gets the one there is, as from the kubelet.
    if !versions.is_empty() && !versions.iter().any(|v| v == SPDY_PROTOCOL) {
        return failure(&Failure::bad_request(format!(
            "none of the stream protocols {versions:?} is served: this test API server speaks {SPDY_PROTOCOL} only"
        )));
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            session.serve(TokioIo::new(upgraded)).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(UPGRADE, SPDY)
        .header(CONNECTION, "Upgrade")
        .header("X-Stream-Protocol-Version", SPDY_PROTOCOL)
        .body(http_body_util::Either::Left(Default::default()))
        .expect("a valid response")
}

/// SPDY tunnelled in a WebSocket (client-go's `TunnelingConnection`): the
/// bytes of the binary messages, in order, are the SPDY connection's, both
/// ways.
async fn tunnel<S>(ws: WebSocketStream<S>, session: Session)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (spdy_end, our_end) = tokio::io::duplex(CHUNK);
    let (mut from_spdy, mut to_spdy) = tokio::io::split(our_end);
    let (mut sink, mut stream) = ws.split();
    // Each way on a task of its own, so that neither waits for the other.
    let inbound = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Binary(b) if to_spdy.write_all(&b).await.is_ok() => {}
                Message::Binary(_) | Message::Close(_) => break,
                _ => {}
            }
        }
        // The session reads the end of its connection.
        let _ = to_spdy.shutdown().await;
    });
    let outbound = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n) = from_spdy.read(&mut buf).await {
            if n == 0 || sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    session.serve(spdy_end).await;
    let _ = outbound.await;
    inbound.abort();
}

/// A SPDY port-forward connection: what it reaches.
struct Session {
    /// `namespace/pod`, for error texts.
    what: String,
    /// Where each port of the pod leads, looked up as kubectl connects.
    targets: Box<dyn Fn(u16) -> Option<SocketAddr> + Send>,
}

impl Session {
    /// Serves the connection until kubectl goes away (GOAWAY, or its end),
    /// then drops every target connection.
    async fn serve<S>(self, io: S)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut from_client, to_client) = tokio::io::split(io);
        let (out, outgoing) = mpsc::channel(FRAME_QUEUE);
        let writer = tokio::spawn(write_frames(to_client, outgoing));
        // Frames are read on a task of their own: reading one is not
        // cancel-safe, receiving one is.
        let (read, mut frames) = mpsc::channel(FRAME_QUEUE);
        let reader = tokio::spawn(async move {
            let mut decoder = spdy::Decoder::default();
            while let Some(frame) = spdy::read_frame(&mut from_client, &mut decoder)
                .await
                .transpose()
            {
                let failed = frame.is_err();
                if read.send(frame).await.is_err() || failed {
                    break;
                }
            }
        });
        let mut streams = Streams {
            session: self,
            out: out.clone(),
            pending: HashMap::new(),
            inputs: HashMap::new(),
            forwards: JoinSet::new(),
            last_good: 0,
        };
        loop {
            let frame = tokio::select! {
                frame = frames.recv() => frame,
                Some(Ok(data)) = streams.forwards.join_next() => {
                    streams.inputs.remove(&data);
                    continue;
                }
            };
            match frame {
                Some(Ok(frame)) => {
                    if !streams.take(frame).await {
                        break;
                    }
                }
                Some(Err(spdy::SpdyError::Io(_))) | None => break,
                Some(Err(_)) => {
                    let last_good = streams.last_good;
                    let status = spdy::PROTOCOL_ERROR;
                    let _ = out.send(Frame::GoAway { last_good, status }).await;
                    break;
                }
            }
        }
        reader.abort();
        // Aborts the forwards, which closes their target connections.
        drop(streams);
        drop(out);
        let _ = writer.await;
    }
}

/// A SPDY connection's streams.
struct Streams {
    session: Session,
    out: mpsc::Sender<Frame>,
    /// Streams of local connections whose other stream has not come yet, by
    /// request id.
    pending: HashMap<String, Pair>,
    /// Where the bytes of each forwarded data stream go.
    inputs: HashMap<u32, mpsc::Sender<Input>>,
    /// The forwards, each giving its data stream's id when it ends.
    forwards: JoinSet<u32>,
    /// The newest stream accepted.
    last_good: u32,
}

/// One local connection's streams as they come (kubectl opens the error
/// stream first).
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: String,
}

/// What a forward gets of its data stream.
enum Input {
    Data(Vec<u8>),
    /// kubectl's half ended: its local connection said all it had to.
    Fin,
}

impl Streams {
    /// Acts on a frame from kubectl; false when the connection is to end.
    async fn take(&mut self, frame: Frame) -> bool {
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => self.open(stream, &headers).await,
            Frame::Data { stream, fin, data } => {
                // Error streams, and streams no longer forwarded, take nothing.
                let Some(input) = self.inputs.get(&stream) else {
                    return true;
                };
                let taken = (data.is_empty() || input.send(Input::Data(data)).await.is_ok())
                    && (!fin || input.send(Input::Fin).await.is_ok());
                if !taken {
                    self.inputs.remove(&stream);
                }
            }
            Frame::RstStream { stream, .. } => {
                // Its forward ends when its input does.
                self.inputs.remove(&stream);
                self.pending
                    .retain(|_, p| p.error != Some(stream) && p.data != Some(stream));
            }
            // Echoed, if kubectl's (odd ids: this side sends none).
            Frame::Ping(id) if id % 2 == 1 => {
                let _ = self.out.send(Frame::Ping(id)).await;
            }
            Frame::GoAway { .. } => return false,
            // Replies and headers for streams this side never opens, window
            // updates (see the module's notes), settings, unknown frames.
            _ => {}
        }
        true
    }

    /// A new stream: replied to, or refused; the forward starts when both
    /// streams of a local connection are there.
    async fn open(&mut self, stream: u32, headers: &spdy::Headers) {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let kind = header("streamtype");
        let refused = if stream.is_multiple_of(2)
            || stream <= self.last_good
            || !matches!(kind, Some("error" | "data"))
        {
            Some(spdy::PROTOCOL_ERROR)
        } else if 2 * self.forwards.len() + self.pending.len() >= MAX_STREAMS {
            Some(spdy::REFUSED_STREAM)
        } else {
            None
        };
        if let Some(status) = refused {
            let _ = self.out.send(Frame::RstStream { stream, status }).await;
            return;
        }
        self.last_good = stream;
        let reply = Frame::SynReply {
            stream,
            fin: false,
            headers: Vec::new(),
        };
        let _ = self.out.send(reply).await;
        // Without a request id (clients before Kubernetes 1.6), a local
        // connection's streams follow each other, error then data: the
        // kubelet's guess too.
        let request = match (header("requestid"), kind) {
            (Some(id), _) => id.to_string(),
            (None, Some("data")) => stream.saturating_sub(2).to_string(),
            (None, _) => stream.to_string(),
        };
        let pair = self.pending.entry(request.clone()).or_default();
        if kind == Some("error") {
            pair.error = Some(stream);
        } else {
            pair.data = Some(stream);
            pair.port = header("port").unwrap_or_default().to_string();
        }
        let (Some(error), Some(data)) = (pair.error, pair.data) else {
            return;
        };
        let port = self
            .pending
            .remove(&request)
            .map(|p| p.port)
            .unwrap_or_default();
        let to = port.parse().ok().and_then(&self.session.targets);
        let (input, inputs) = mpsc::channel(INPUT_QUEUE);
        self.inputs.insert(data, input);
        let (streams, what) = ((data, error), self.session.what.clone());
        self.forwards
            .spawn(forward(self.out.clone(), streams, port, to, what, inputs));
    }
}

/// One local connection of kubectl's: its data stream relayed to and from
/// the target (or the error text on its error stream), then both streams
/// ended. Gives the data stream's id.
async fn forward(
    out: mpsc::Sender<Frame>,
    (data, error): (u32, u32),
    port: String,
    to: Option<SocketAddr>,
    what: String,
    mut input: mpsc::Receiver<Input>,
) -> u32 {
    match connect(to, &port, &what).await {
        Ok(tcp) => relay_stream(tcp, data, &out, &mut input).await,
        Err(e) => {
            let text = Frame::Data {
                stream: error,
                fin: false,
                data: e.into_bytes(),
            };
            let _ = out.send(text).await;
        }
    }
    for stream in [error, data] {
        let end = Frame::Data {
            stream,
            fin: true,
            data: Vec::new(),
        };
        let _ = out.send(end).await;
    }
    data
}

/// Relays a data stream until the target's end, kubectl's reset of the
/// stream, or the connection's end.
async fn relay_stream(
    tcp: TcpStream,
    data: u32,
    out: &mpsc::Sender<Frame>,
    input: &mut mpsc::Receiver<Input>,
) {
    let (mut from_target, mut to_target) = tcp.into_split();
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            read = from_target.read(&mut buf) => match read {
                Ok(n) if n > 0 => {
                    let bytes = buf[..n].to_vec();
                    let frame = Frame::Data { stream: data, fin: false, data: bytes };
                    if out.send(frame).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
            taken = input.recv() => match taken {
                Some(Input::Data(bytes)) => {
                    if to_target.write_all(&bytes).await.is_ok() {
                        let delta = bytes.len() as u32;
                        for stream in [data, 0] {
                            let _ = out.send(Frame::WindowUpdate { stream, delta }).await;
                        }
                    }
                }
                Some(Input::Fin) => {
                    let _ = to_target.shutdown().await;
                }
                None => return,
            },
        }
    }
}

/// Writes a SPDY connection's frames in the order they come (header
/// blocks share one zlib stream), as many at a time as are queued.
async fn write_frames<W: AsyncWrite>(io: W, mut frames: mpsc::Receiver<Frame>) {
    let mut io = std::pin::pin!(io);
    let mut encoder = spdy::Encoder::default();
    let mut bytes = Vec::new();
    while let Some(frame) = frames.recv().await {
        bytes.clear();
        encoder.encode(&frame, &mut bytes);
        while bytes.len() < CHUNK
            && let Ok(frame) = frames.try_recv()
        {
            encoder.encode(&frame, &mut bytes);
        }
        if io.write_all(&bytes).await.is_err() || io.flush().await.is_err() {
            return;
        }
    }
    let _ = io.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// kubectl's side of a SPDY connection to a session.
    struct Client {
        io: tokio::io::DuplexStream,
        encoder: spdy::Encoder,
        decoder: spdy::Decoder,
    }

    impl Client {
        fn start(targets: impl Fn(u16) -> Option<SocketAddr> + Send + 'static) -> Client {
            let (io, server) = tokio::io::duplex(CHUNK);
            let session = Session {
                what: "ns/web".into(),
                targets: Box::new(targets),
            };
            tokio::spawn(session.serve(server));
            Client {
                io,
                encoder: spdy::Encoder::default(),
                decoder: spdy::Decoder::default(),
            }
        }

        async fn send(&mut self, frames: &[Frame]) {
            let mut bytes = Vec::new();
            for frame in frames {
                self.encoder.encode(frame, &mut bytes);
            }
            self.io.write_all(&bytes).await.unwrap();
        }

        /// The next frame, or None at the connection's end.
        async fn next(&mut self) -> Option<Frame> {
            let read = spdy::read_frame(&mut self.io, &mut self.decoder);
            tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .expect("a frame within 10 s")
                .unwrap()
        }
    }

    /// kubectl's SYN_STREAM for one of a local connection's streams.
    fn open(stream: u32, kind: &str, port: &str, request: &str) -> Frame {
        let headers = [("streamtype", kind), ("port", port), ("requestid", request)];
        Frame::SynStream {
            stream,
            fin: false,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn data(stream: u32, fin: bool, bytes: &[u8]) -> Frame {
        Frame::Data {
            stream,
            fin,
            data: bytes.to_vec(),
        }
    }

    fn reply(stream: u32) -> Frame {
        Frame::SynReply {
            stream,
            fin: false,
            headers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn pings_refusals_and_a_port_without_target() {
        let mut kubectl = Client::start(|_| None);
        kubectl
            .send(&[
                Frame::Ping(1),
                open(2, "data", "9", "0"),
                open(1, "error", "9", "0"),
                open(3, "data", "9", "0"),
            ])
            .await;
        let error = "error forwarding port 9 to pod ns/web: no port-forward target set for port 9";
        let expected = [
            Frame::Ping(1),
            Frame::RstStream {
                stream: 2,
                status: spdy::PROTOCOL_ERROR,
            },
            reply(1),
            reply(3),
            data(1, false, error.as_bytes()),
            data(1, true, b""),
            data(3, true, b""),
        ];
        for frame in expected {
            assert_eq!(kubectl.next().await, Some(frame));
        }
        kubectl
            .send(&[Frame::GoAway {
                last_good: 0,
                status: 0,
            }])
            .await;
        assert_eq!(kubectl.next().await, None, "the connection ends");
    }

    #[tokio::test]
    async fn the_end_of_a_data_stream_half_closes_the_target() {
        // An echo server that answers once its client has said all.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut heard = Vec::new();
            tcp.read_to_end(&mut heard).await.unwrap();
            tcp.write_all(&heard).await.unwrap();
        });
        let mut kubectl = Client::start(move |port| (port == 8080).then_some(target));
        kubectl
            .send(&[
                open(1, "error", "8080", "0"),
                open(3, "data", "8080", "0"),
                data(3, false, b"hello, "),
                data(3, true, b"target"),
            ])
            .await;
        let (mut echoed, mut granted, mut ended) = (Vec::new(), 0, Vec::new());
        while ended.len() < 2 {
            match kubectl.next().await.expect("a frame") {
                Frame::Data { stream, fin, data } => {
                    echoed.extend_from_slice(&data);
                    if fin {
                        ended.push(stream);
                    }
                }
                Frame::WindowUpdate { stream: 3, delta } => granted += delta,
                Frame::WindowUpdate { stream: 0, .. } => {}
                other => assert!(other == reply(1) || other == reply(3), "{other:?}"),
            }
        }
        assert_eq!(echoed, b"hello, target");
        assert_eq!(granted, 13);
        assert_eq!(ended, [1, 3]);
    }
}
