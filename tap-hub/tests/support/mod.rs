//! What `hub_workers.rs` needs to drive the real binaries: `tap-hub` and
//! `tap-worker` processes that are killed when dropped (a failing test leaves
//! nothing running and prints their logs), a plain HTTP/1.1 client for the
//! hub's API, and capture files of HTTP/1.1 exchanges whose every status and
//! latency the test knows, so it can compute what the hub must answer.

use std::time::{Duration, Instant};

pub use testkit::TempDir;

/// A port nobody listens on right now (bound and released), for a hub that
/// must come back on the same address after a restart.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

/// Polls `check` until it returns `Some`, for at most `limit`; panics saying
/// `what` was awaited. Only to keep a broken build from hanging, never to
/// assert a time.
pub fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Real `tap-hub` and `tap-worker` processes.
pub mod process {
    use super::http::{self, Reply};
    use serde_json::Value;
    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::{Arc, Mutex, mpsc};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// A child process, killed (SIGKILL) and reaped when dropped. Its stderr
    /// is kept, and printed when a test panics while holding it.
    pub struct Process {
        name: String,
        child: Child,
        log: Arc<Mutex<String>>,
        reader: Option<JoinHandle<()>>,
    }

    impl Process {
        /// Starts `command` with stderr captured; each line also goes to `lines`.
        pub fn spawn(
            name: &str,
            command: &mut Command,
            lines: Option<mpsc::Sender<String>>,
        ) -> Process {
            let mut child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start {name} ({:?}): {e}", command.get_program())
                });
            let stderr = child.stderr.take().expect("stderr is piped");
            let log = Arc::new(Mutex::new(String::new()));
            let sink = log.clone();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    {
                        let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                        log.push_str(&line);
                        log.push('\n');
                    }
                    if let Some(tx) = &lines {
                        let _ = tx.send(line);
                    }
                }
            });
            Process {
                name: name.to_string(),
                child,
                log,
                reader: Some(reader),
            }
        }

        pub fn pid(&self) -> u32 {
            self.child.id()
        }

        /// Its stderr so far; all of it once `wait_for` returned.
        pub fn log(&self) -> String {
            self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }

        /// SIGKILL, and reap it.
        pub fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }

        /// Sends it a signal by name (`STOP`, `CONT`) with kill(1).
        pub fn signal(&self, signal: &str) {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(self.pid().to_string())
                .status()
                .unwrap_or_else(|e| panic!("cannot run kill -{signal}: {e}"));
            assert!(
                status.success(),
                "kill -{signal} {} failed: {status}",
                self.pid()
            );
        }

        /// Waits until it exits, for at most `limit`, and until its stderr is
        /// read to the end.
        pub fn wait_for(&mut self, limit: Duration) -> ExitStatus {
            let deadline = Instant::now() + limit;
            let status = loop {
                match self.child.try_wait() {
                    Ok(Some(s)) => break s,
                    Ok(None) => {}
                    Err(e) => panic!("waiting for {}: {e}", self.name),
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not exit within {limit:?}",
                    self.name
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
            status
        }
    }

    impl Drop for Process {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "----- {} (pid {}) stderr -----\n{}----- end of {} -----",
                    self.name,
                    self.pid(),
                    self.log(),
                    self.name
                );
            }
        }
    }

    /// A `tap-hub` process and the addresses it listens on.
    pub struct Hub {
        pub process: Process,
        pub grpc: SocketAddr,
        pub api: SocketAddr,
    }

    impl Hub {
        /// A hub on ports the OS picks.
        pub fn start(extra: &[&str]) -> Hub {
            Hub::start_on("127.0.0.1:0", "127.0.0.1:0", extra)
        }

        /// A hub on the given addresses, once it says it listens.
        pub fn start_on(grpc: &str, api: &str, extra: &[&str]) -> Hub {
            let (tx, rx) = mpsc::channel();
            let mut command = Command::new(env!("CARGO_BIN_EXE_tap-hub"));
            command.args(["--grpc", grpc, "--listen", api]).args(extra);
            let process = Process::spawn("tap-hub", &mut command, Some(tx));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(line) => {
                        if let Some((grpc, api)) = parse_banner(&line) {
                            return Hub { process, grpc, api };
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        panic!("tap-hub did not say where it listens within 30 s")
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        panic!("tap-hub exited before it listened")
                    }
                }
            }
        }

        /// The address workers are given.
        pub fn url(&self) -> String {
            format!("http://{}", self.grpc)
        }

        pub fn get(&self, path: &str) -> Reply {
            http::get(self.api, path)
        }

        /// A 200 answer's JSON.
        pub fn get_json(&self, path: &str) -> Value {
            let reply = self.get(path);
            assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
            reply.json()
        }

        /// Every entry matching `filter`, newest first, paging through
        /// `/api/entries` 100 at a time with the cursors it hands out.
        pub fn entries(&self, filter: &str) -> Vec<Value> {
            let mut all = Vec::new();
            let mut cursor = String::new();
            loop {
                let page = self.get_json(&format!(
                    "/api/entries?limit=100&filter={}&cursor={cursor}",
                    http::encode(filter)
                ));
                let entries = page["entries"].as_array().expect("entries is a list");
                assert!(entries.len() <= 100, "a page of {} entries", entries.len());
                all.extend(entries.iter().cloned());
                match page["next_cursor"].as_str() {
                    Some(next) => {
                        assert_ne!(next, cursor, "the cursor does not move");
                        cursor = next.to_string();
                    }
                    None => {
                        assert!(page["next_cursor"].is_null(), "next_cursor: {page}");
                        return all;
                    }
                }
            }
        }

        pub fn workers(&self) -> Value {
            self.get_json("/api/workers")
        }

        /// The worker `node` as `/api/workers` shows it.
        pub fn worker(&self, node: &str) -> Option<Value> {
            let workers = self.workers();
            let list = workers["workers"].as_array().expect("workers is a list");
            list.iter().find(|w| w["node"] == node).cloned()
        }
    }

    /// `tap-hub: workers connect to http://A, API at http://B/`
    fn parse_banner(line: &str) -> Option<(SocketAddr, SocketAddr)> {
        let rest = line.strip_prefix("tap-hub: workers connect to http://")?;
        let (grpc, rest) = rest.split_once(", API at http://")?;
        let api = rest.strip_suffix('/')?;
        Some((grpc.parse().ok()?, api.parse().ok()?))
    }

    /// The `tap-worker` binary. It belongs to another package, so cargo does
    /// not name it for this test; it sits in the profile's directory, the
    /// parent of the test executable's `deps`.
    pub fn worker_binary() -> PathBuf {
        let exe = std::env::current_exe().expect("the test executable's path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps");
        let bin = dir.join(format!("tap-worker{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "{} is missing: run `cargo build -p tap-worker` first \
             (`cargo test --workspace` and `cargo xtask test` build it)",
            bin.display()
        );
        bin
    }

    /// A worker replaying `capture` to the hub at `hub_url` as node `node`.
    pub fn start_worker(hub_url: &str, node: &str, capture: &Path, extra: &[&str]) -> Process {
        let mut command = Command::new(worker_binary());
        command
            .args(["--hub", hub_url, "--node", node])
            .arg("--file")
            .arg(capture)
            .args(extra);
        Process::spawn(&format!("tap-worker {node}"), &mut command, None)
    }

    /// What a worker says it did when it ends.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Summary {
        pub packets: u64,
        pub entries: u64,
        pub acknowledged: u64,
        pub queue_drops: u64,
        pub lost_in_flight: u64,
        pub reconnects: u64,
    }

    impl Summary {
        /// From the line `tap-worker: P packets, E entries, A acknowledged by
        /// the hub, D dropped at the queue, L lost in flight, R reconnects`.
        pub fn parse(log: &str) -> Option<Summary> {
            const LABELS: [&str; 6] = [
                "packets",
                "entries",
                "acknowledged by the hub",
                "dropped at the queue",
                "lost in flight",
                "reconnects",
            ];
            let line = log.lines().rev().find_map(|l| {
                l.strip_prefix("tap-worker: ")
                    .filter(|l| l.contains(" packets, "))
            })?;
            let mut n = [0u64; 6];
            let parts: Vec<&str> = line.split(", ").collect();
            if parts.len() != LABELS.len() {
                return None;
            }
            for ((part, label), v) in parts.iter().zip(LABELS).zip(&mut n) {
                let (number, rest) = part.split_once(' ')?;
                if rest != label {
                    return None;
                }
                *v = number.parse().ok()?;
            }
            let [
                packets,
                entries,
                acknowledged,
                queue_drops,
                lost_in_flight,
                reconnects,
            ] = n;
            Some(Summary {
                packets,
                entries,
                acknowledged,
                queue_drops,
                lost_in_flight,
                reconnects,
            })
        }
    }

    /// Waits for a worker to end, for at most `limit`, and reads its summary.
    pub fn finish_worker(worker: &mut Process, limit: Duration) -> (ExitStatus, Summary) {
        let status = worker.wait_for(limit);
        let log = worker.log();
        let summary = Summary::parse(&log)
            .unwrap_or_else(|| panic!("no summary line in the worker's stderr:\n{log}"));
        (status, summary)
    }
}

/// A plain HTTP/1.1 GET over `std::net`, enough for the hub's API.
pub mod http {
    use serde_json::Value;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    pub struct Reply {
        pub status: u16,
        pub content_type: Option<String>,
        pub body: String,
    }

    impl Reply {
        pub fn json(&self) -> Value {
            serde_json::from_str(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
        }
    }

    pub fn get(addr: SocketAddr, path: &str) -> Reply {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("cannot connect to the API at {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("setting a read timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("GET {path}: reading the answer: {e}"));
        parse(&raw).unwrap_or_else(|| {
            panic!(
                "GET {path}: not an HTTP answer: {:?}",
                String::from_utf8_lossy(&raw)
            )
        })
    }

    fn parse(raw: &[u8]) -> Option<Reply> {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..end]).ok()?;
        let mut body = raw[end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let mut content_type = None;
        for line in lines {
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
                body = dechunk(&body)?;
            } else if name.eq_ignore_ascii_case("content-type") {
                content_type = Some(value.to_string());
            }
        }
        Some(Reply {
            status,
            content_type,
            body: String::from_utf8(body).ok()?,
        })
    }

    fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let eol = data.windows(2).position(|w| w == b"\r\n")?;
            let size = std::str::from_utf8(&data[..eol]).ok()?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            data = &data[eol + 2..];
            if size == 0 {
                return Some(out);
            }
            out.extend_from_slice(data.get(..size)?);
            data = data.get(size + 2..)?;
        }
    }

    /// Percent-encodes a query parameter's value.
    pub fn encode(value: &str) -> String {
        let mut out = String::with_capacity(value.len() * 3);
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
}

/// Capture files of HTTP/1.1 exchanges, and what the hub must make of them.
pub mod capture {
    use etherparse::PacketBuilder;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::{DataLink, TsResolution};
    use std::collections::BTreeMap;
    use std::io::{BufWriter, Write};
    use std::net::Ipv4Addr;
    use std::path::Path;
    use std::time::Duration;

    /// Capture time of the first packet; any fixed time does.
    const START_NS: u64 = 1_790_000_000_000_000_000;
    /// The servers every worker's clients call.
    const SERVERS: [([u8; 4], u16); 3] = [
        ([10, 9, 0, 1], 80),
        ([10, 9, 0, 2], 8080),
        ([10, 9, 0, 3], 9090),
    ];
    /// Client addresses per worker: 10.0.<worker>.1 to .3. Few, so that an
    /// edge has enough exchanges for its percentiles to differ.
    const CLIENTS: usize = 3;

    /// One request and its response, as written to a capture.
    #[derive(Debug, Clone)]
    pub struct Exchange {
        pub client: Ipv4Addr,
        pub client_port: u16,
        pub server: Ipv4Addr,
        pub server_port: u16,
        /// Unique per worker and exchange: `/shop/w<worker>/<n>`.
        pub path: String,
        pub status: u16,
        /// The response's packet time minus the request's, in ns; not whole
        /// microseconds, so the hub's rounding down is checked too.
        pub elapsed_ns: u64,
    }

    impl Exchange {
        pub fn elapsed_us(&self) -> u64 {
            self.elapsed_ns / 1000
        }

        pub fn is_error(&self) -> bool {
            self.status >= 500
        }
    }

    /// What to write: `exchanges` exchanges of clients 10.0.`worker`.x,
    /// their connections starting evenly over `span` of capture time.
    pub struct Spec {
        pub worker: u8,
        pub exchanges: usize,
        pub span: Duration,
    }

    impl Spec {
        pub fn new(worker: u8, exchanges: usize, span: Duration) -> Spec {
            Spec {
                worker,
                exchanges,
                span,
            }
        }
    }

    /// SplitMix64: deterministic, so a failure can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    struct Connection {
        client: [u8; 4],
        client_port: u16,
        server: [u8; 4],
        server_port: u16,
        client_seq: u32,
        server_seq: u32,
    }

    impl Connection {
        /// One TCP segment (flags of `SAFP`); advances the sender's sequence
        /// number past its payload, SYN and FIN.
        fn segment(&mut self, to_server: bool, flags: &str, payload: &[u8]) -> Vec<u8> {
            let (src, dst, sport, dport, seq, ack) = if to_server {
                let c = (self.client, self.server, self.client_port, self.server_port);
                (c.0, c.1, c.2, c.3, self.client_seq, self.server_seq)
            } else {
                let c = (self.server, self.client, self.server_port, self.client_port);
                (c.0, c.1, c.2, c.3, self.server_seq, self.client_seq)
            };
            let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4(src, dst, 64)
                .tcp(sport, dport, seq, 65_000);
            if flags.contains('S') {
                b = b.syn();
            }
            if flags.contains('A') {
                b = b.ack(ack);
            }
            if flags.contains('F') {
                b = b.fin();
            }
            if flags.contains('P') {
                b = b.psh();
            }
            let mut out = Vec::with_capacity(64 + payload.len());
            b.write(&mut out, payload)
                .expect("writing a packet to a Vec");
            let advance =
                payload.len() as u32 + u32::from(flags.contains('S') || flags.contains('F'));
            let next = if to_server {
                &mut self.client_seq
            } else {
                &mut self.server_seq
            };
            *next = next.wrapping_add(advance);
            out
        }
    }

    fn reason(status: u16) -> &'static str {
        match status {
            200 => "OK",
            404 => "Not Found",
            500 => "Internal Server Error",
            _ => "Service Unavailable",
        }
    }

    /// Writes the capture (Ethernet, nanosecond pcap) and returns its
    /// exchanges in the order written. Connections carry one to four
    /// exchanges each (keep-alive) and overlap in time; every one has its
    /// handshake and its FIN teardown. Statuses are 200, 404, 500 and 503;
    /// latencies 100 µs to 50 ms.
    pub fn write(path: &Path, spec: &Spec) -> Vec<Exchange> {
        let mut rng =
            Rng(0x6b75_6265_7461_7000 ^ (u64::from(spec.worker) << 32) ^ spec.exchanges as u64);
        let mut sizes = Vec::new();
        let mut left = spec.exchanges;
        while left > 0 {
            let k = (1 + rng.below(4) as usize).min(left);
            sizes.push(k);
            left -= k;
        }
        assert!(sizes.len() < 40_000, "more connections than client ports");
        let span_ns = u64::try_from(spec.span.as_nanos()).expect("a span of less than 584 years");
        let mut packets: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut exchanges = Vec::with_capacity(spec.exchanges);
        for (c, &k) in sizes.iter().enumerate() {
            let (server, server_port) = SERVERS[rng.below(SERVERS.len() as u64) as usize];
            let mut conn = Connection {
                client: [10, 0, spec.worker, 1 + (c % CLIENTS) as u8],
                client_port: 20_000 + c as u16,
                server,
                server_port,
                client_seq: rng.next() as u32,
                server_seq: rng.next() as u32,
            };
            let mut ts = START_NS + span_ns * c as u64 / sizes.len() as u64;
            packets.push((ts, conn.segment(true, "S", b"")));
            packets.push((ts + 30_000, conn.segment(false, "SA", b"")));
            packets.push((ts + 60_000, conn.segment(true, "A", b"")));
            ts += 100_000;
            for _ in 0..k {
                let path = format!("/shop/w{}/{}", spec.worker, exchanges.len());
                let status = match rng.below(10) {
                    0 => 500,
                    1 => 503,
                    2 => 404,
                    _ => 200,
                };
                let us = match rng.below(10) {
                    0 => 5_000 + rng.below(45_000),
                    1..=3 => 1_000 + rng.below(4_000),
                    _ => 100 + rng.below(900),
                };
                let elapsed_ns = us * 1000 + rng.below(1000);
                let request = format!(
                    "GET {path} HTTP/1.1\r\nHost: shop.local\r\nUser-Agent: kubetap-test\r\n\r\n"
                );
                let body = format!("{{\"path\":\"{path}\"}}");
                let response = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    reason(status),
                    body.len()
                );
                packets.push((ts, conn.segment(true, "AP", request.as_bytes())));
                packets.push((
                    ts + elapsed_ns,
                    conn.segment(false, "AP", response.as_bytes()),
                ));
                packets.push((ts + elapsed_ns + 20_000, conn.segment(true, "A", b"")));
                exchanges.push(Exchange {
                    client: conn.client.into(),
                    client_port: conn.client_port,
                    server: server.into(),
                    server_port,
                    path,
                    status,
                    elapsed_ns,
                });
                ts += elapsed_ns + 100_000 + rng.below(2_000) * 1000;
            }
            packets.push((ts, conn.segment(true, "FA", b"")));
            packets.push((ts + 30_000, conn.segment(false, "FA", b"")));
            packets.push((ts + 60_000, conn.segment(true, "A", b"")));
        }
        // Stable: a connection's packets keep their order.
        packets.sort_by_key(|p| p.0);
        let file = std::fs::File::create(path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            snaplen: 65_535,
            ..Default::default()
        };
        let mut pcap = PcapWriter::with_header(BufWriter::new(file), header).expect("pcap header");
        for (ts, data) in &packets {
            let p = PcapPacket::new(Duration::from_nanos(*ts), data.len() as u32, data);
            pcap.write_packet(&p).expect("writing a packet");
        }
        pcap.into_writer().flush().expect("flushing the capture");
        exchanges
    }

    /// An `http` edge of the service map as it must be.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct EdgeStats {
        pub requests: u64,
        pub errors: u64,
        pub p50: u64,
        pub p95: u64,
        pub p99: u64,
        pub max: u64,
    }

    /// The edges (`ip:<client>` → `ip:<server>:<port>`) `exchanges` make,
    /// with nearest-rank latency percentiles in whole µs.
    pub fn edges<'a>(
        exchanges: impl IntoIterator<Item = &'a Exchange>,
    ) -> BTreeMap<(String, String), EdgeStats> {
        let mut by_edge: BTreeMap<(String, String), Vec<&Exchange>> = BTreeMap::new();
        for x in exchanges {
            let key = (
                format!("ip:{}", x.client),
                format!("ip:{}:{}", x.server, x.server_port),
            );
            by_edge.entry(key).or_default().push(x);
        }
        by_edge
            .into_iter()
            .map(|(key, xs)| {
                let mut us: Vec<u64> = xs.iter().map(|x| x.elapsed_us()).collect();
                us.sort_unstable();
                let stats = EdgeStats {
                    requests: xs.len() as u64,
                    errors: xs.iter().filter(|x| x.is_error()).count() as u64,
                    p50: nearest_rank(&us, 50),
                    p95: nearest_rank(&us, 95),
                    p99: nearest_rank(&us, 99),
                    max: *us.last().expect("an edge has an exchange"),
                };
                (key, stats)
            })
            .collect()
    }

    /// The ⌈q·n/100⌉-th smallest of `sorted`.
    pub fn nearest_rank(sorted: &[u64], q: usize) -> u64 {
        let rank = (q * sorted.len()).div_ceil(100).max(1);
        sorted[rank - 1]
    }
}
