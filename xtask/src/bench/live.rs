//! Live capture: the highest packet rate a capture takes on a veth pair with
//! zero loss, for kubetap (local mode: capture, dissect, store) and for
//! `tcpdump -w /dev/null`, in the same run on the same veth.
//!
//! kubetap is measured twice: local mode (capture, dissect, store in one
//! process) and a `tap-worker` shipping to a `tap-hub` over gRPC, as on a
//! cluster node, where the worker's RSS is the node's cost.
//!
//! Two testkit pods on a node; the sender pod sends DNS queries over UDP (so
//! every packet is dissected into an entry) at a paced rate to the receiver
//! pod, whose host veth is captured. The rate doubles until the capture
//! loses packets (kernel ring drops, or kubetap's entry queue), then a
//! bisection finds the last loss-free rate. The sender runs on one core and
//! the capture on the other; a rate the sender cannot reach is reported as
//! such. Both use a 4 MiB ring (tcpdump -B 4096; kubetap 4 x 1 MiB blocks).
//!
//! Then bulk TCP, as a node with BIG TCP carries large transfers: both pods'
//! links pass segments of up to 185,000 bytes whole (`Node::offload`), so
//! the capture sees super-packets, most with an IPv4 total length of 0. The
//! sender uploads 1 MiB HTTP/1.1 POST bodies over four keep-alive
//! connections at a paced byte rate (256 KiB writes), the receiver answers
//! each; the rate
//! doubles and bisects the same way. kubetap's loss also counts packets
//! dropped as malformed (there must be none), and its count of offloaded
//! packets read whole is printed. tcpdump keeps at most 64 KiB of each
//! packet (libpcap's ring frames), so it records fewer bytes than it saw.

use crate::target_dir;
use anyhow::{Context as _, Result, bail};
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Node, Pod};

/// How long each rate is offered.
const STEP: Duration = Duration::from_secs(3);

struct Outcome {
    /// Packets per second the sender reached.
    sent_pps: f64,
    lost: u64,
    /// Peak RSS of the capture process, bytes.
    rss: u64,
    /// kubetap's: offloaded packets read whole, and packets dropped as
    /// malformed (also in `lost`).
    offloaded: u64,
    malformed: u64,
    /// kubetap's drops by cause, those not zero.
    causes: String,
}

pub fn run() -> Result<()> {
    if !crate::setup::is_root() {
        bail!("the live capture benchmark makes network namespaces: run it as root");
    }
    let node = Node::new("bench").context("making the bench node")?;
    let sender = node.pod("sender")?;
    let receiver = node.pod("receiver")?;
    let kubetap = target_dir().join("release/kubetap");
    let bins = (
        target_dir().join("release/tap-worker"),
        target_dir().join("release/tap-hub"),
    );
    for (label, payload) in [
        ("DNS queries, 94-byte frames", 52),
        ("1400-byte frames", 1358),
    ] {
        let frame = 14 + 20 + 8 + payload;
        let traffic = |rate: f64| send(&sender, &receiver, payload, rate);
        let rates = compare(&node, &receiver, &kubetap, &bins, &traffic, label, 25_000.0)?;
        let gbit = |pps: f64| pps * frame as f64 * 8.0 / 1e9;
        let line = |who: &str, r: &Search| {
            format!(
                "{who:<22} {:>9.0} packets/s {:>6.2} Gbit/s loss-free{}, peak RSS {:.1} MiB",
                r.best,
                gbit(r.best),
                limited(r),
                mib(r.rss)
            )
        };
        report(label, &rates, line);
    }

    // Bulk TCP over BIG TCP links: rates in bytes per second.
    for pod in [&sender, &receiver] {
        node.offload(pod, 185_000)?;
    }
    let server = BulkServer::start(&receiver)?;
    let label = "bulk TCP, 1 MiB HTTP uploads over BIG TCP (185,000-byte segments)";
    let traffic = |rate: f64| bulk(&sender, server.addr, rate);
    let rates = compare(
        &node,
        &receiver,
        &kubetap,
        &bins,
        &traffic,
        label,
        62_500_000.0,
    )?;
    let line = |who: &str, r: &Search| {
        format!(
            "{who:<22} {:>6.2} Gbit/s loss-free{}, peak RSS {:.1} MiB{}",
            r.best * 8.0 / 1e9,
            limited(r),
            mib(r.rss),
            if r.offloaded > 0 {
                format!(
                    ", {} offloaded packets read whole, {} malformed",
                    r.offloaded, r.malformed
                )
            } else {
                String::new()
            }
        )
    };
    report(label, &rates, line);
    Ok(())
}

/// kubetap in local mode, a worker shipping to a hub, and tcpdump, each
/// searched for its loss-free rate of `traffic` on the receiver's veth.
fn compare(
    node: &Node,
    receiver: &Pod,
    kubetap: &std::path::Path,
    bins: &(std::path::PathBuf, std::path::PathBuf),
    traffic: &dyn Fn(f64) -> Result<f64>,
    label: &str,
    start: f64,
) -> Result<[Search; 3]> {
    eprintln!("\nxtask: live capture on a veth, {label}: raising the rate until the first loss");
    let ours = search(start, |rate| {
        kubetap_step(node, receiver, kubetap, traffic, rate)
    })?;
    let worker = search(start, |rate| {
        worker_step(node, receiver, bins, traffic, rate)
    })?;
    let theirs = search(start, |rate| tcpdump_step(node, receiver, traffic, rate))?;
    Ok([ours, worker, theirs])
}

fn report(
    label: &str,
    [ours, worker, theirs]: &[Search; 3],
    line: impl Fn(&str, &Search) -> String,
) {
    println!("live capture, {label}:");
    println!("  {}", line("kubetap tap --local", ours));
    println!("  {}", line("tap-worker -> tap-hub", worker));
    println!("  {}", line("tcpdump -w /dev/null", theirs));
    println!(
        "  ratio: local mode {:.2}x, worker {:.2}x tcpdump's loss-free rate",
        ours.best / theirs.best.max(1.0),
        worker.best / theirs.best.max(1.0)
    );
}

fn limited(r: &Search) -> &'static str {
    if r.sender_limited {
        " (the sender's limit: no loss seen)"
    } else {
        ""
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

struct Search {
    best: f64,
    sender_limited: bool,
    rss: u64,
    offloaded: u64,
    malformed: u64,
}

/// Doubles the rate from `start` per second until a loss (or the sender's
/// limit), then bisects five times.
fn search(start: f64, mut step: impl FnMut(f64) -> Result<Outcome>) -> Result<Search> {
    let mut rate = start;
    let mut best = 0.0;
    let mut rss = 0;
    let (mut offloaded, mut malformed) = (0, 0);
    let bad = loop {
        let o = step(rate)?;
        rss = rss.max(o.rss);
        offloaded += o.offloaded;
        malformed += o.malformed;
        eprintln!(
            "xtask:   offered {rate:>9.0}/s, sent {:>9.0}/s, lost {}{}",
            o.sent_pps, o.lost, o.causes
        );
        if o.lost > 0 {
            break rate;
        }
        best = o.sent_pps;
        if o.sent_pps < rate * 0.9 {
            return Ok(Search {
                best,
                sender_limited: true,
                rss,
                offloaded,
                malformed,
            });
        }
        rate *= 2.0;
    };
    let mut lo = best;
    let mut hi = bad;
    for _ in 0..5 {
        let mid = (lo + hi) / 2.0;
        let o = step(mid)?;
        rss = rss.max(o.rss);
        offloaded += o.offloaded;
        malformed += o.malformed;
        eprintln!(
            "xtask:   offered {mid:>9.0}/s, sent {:>9.0}/s, lost {}{}",
            o.sent_pps, o.lost, o.causes
        );
        if o.lost > 0 {
            hi = mid;
        } else {
            lo = o.sent_pps.min(mid);
        }
    }
    Ok(Search {
        best: lo,
        sender_limited: false,
        rss,
        offloaded,
        malformed,
    })
}

/// Sends DNS-query datagrams of `payload` bytes from `sender` to
/// `receiver`:53 at `rate` per second for `STEP`; returns the rate reached.
fn send(sender: &Pod, receiver: &Pod, payload: usize, rate: f64) -> Result<f64> {
    let dst = receiver.ip;
    let src = sender.ip;
    sender
        .in_netns(move || -> Result<f64> {
            let sockets: Vec<UdpSocket> = (0..16)
                .map(|_| -> Result<UdpSocket> {
                    let s = UdpSocket::bind((src, 0))?;
                    s.connect((dst, 53))?;
                    Ok(s)
                })
                .collect::<Result<_>>()?;
            let mut msg = dns_query(payload);
            let started = Instant::now();
            let mut sent: u64 = 0;
            while started.elapsed() < STEP {
                // Packets due by now, sent in a burst; then wait a little.
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                while sent < due {
                    let id = (sent as u16).to_be_bytes();
                    msg[0] = id[0];
                    msg[1] = id[1];
                    let s = &sockets[(sent % 16) as usize];
                    // A full socket buffer is the sender's limit, not a loss.
                    if s.send(&msg).is_ok() {
                        sent += 1;
                    } else {
                        break;
                    }
                    if sent.is_multiple_of(256) && started.elapsed() >= STEP {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(sent as f64 / started.elapsed().as_secs_f64())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?
}

/// A DNS query for a name that fills `payload` bytes.
fn dns_query(payload: usize) -> Vec<u8> {
    let mut m = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    let name_len = payload.saturating_sub(12 + 4 + 2).max(3);
    let mut left = name_len;
    while left > 0 {
        let label = left.min(63);
        m.push(label as u8);
        m.extend(std::iter::repeat_n(b'a', label));
        left = left.saturating_sub(label + 1);
    }
    m.push(0);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.truncate(payload.max(m.len()));
    m
}

pub(super) fn get(port: u16, path: &str) -> Result<serde_json::Value> {
    let addr = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let reply = testkit::http::try_get(addr, path).map_err(anyhow::Error::msg)?;
    serde_json::from_str(&reply.body).with_context(|| format!("GET {path}: {}", reply.body))
}

fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Waits for a capture's "capturing on" line on its stderr (piped), then
/// drains the rest on a thread of its own.
pub(super) fn wait_capturing(child: &mut Child, who: &str) -> Result<()> {
    let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
    if !lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("capturing on"))
    {
        bail!("{who} did not start capturing");
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(())
}

pub(super) fn interrupt(child: &mut Child) -> Result<()> {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    child.wait()?;
    Ok(())
}

fn kubetap_step(
    node: &Node,
    receiver: &Pod,
    kubetap: &std::path::Path,
    traffic: &dyn Fn(f64) -> Result<f64>,
    rate: f64,
) -> Result<Outcome> {
    let port = testkit::free_port();
    let mut child = testkit::http::with_token(&mut Command::new(kubetap))
        .args([
            "tap",
            "--local",
            "--no-browser",
            "--port",
            &port.to_string(),
        ])
        .arg("--netns")
        .arg(testkit::netns::netns_path(node.netns()))
        .args(["-i", &receiver.host_veth, "--memory-budget", "64MiB"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting kubetap")?;
    wait_capturing(&mut child, "kubetap")?;
    let sent_pps = traffic(rate)?;
    // Let the capture drain its ring and report.
    std::thread::sleep(Duration::from_millis(1500));
    let w = get(port, "/api/workers")?;
    let rss = peak_rss(child.id());
    interrupt(&mut child)?;
    Ok(counted(&w["workers"][0]["counters"], sent_pps, rss))
}

/// A worker capturing the receiver's veth and shipping to a hub, both in
/// the node's namespace (the worker's peak RSS is reported); lost: kernel
/// ring drops, the worker's queue drops and batches lost in flight.
fn worker_step(
    node: &Node,
    receiver: &Pod,
    (worker, hub): &(std::path::PathBuf, std::path::PathBuf),
    traffic: &dyn Fn(f64) -> Result<f64>,
    rate: f64,
) -> Result<Outcome> {
    let (grpc, api) = (18898, 18899);
    let mut hub = Reaped(
        testkit::http::with_token(&mut node.command(&hub.to_string_lossy()))
            .args(["--grpc", &format!("127.0.0.1:{grpc}")])
            .args(["--listen", &format!("127.0.0.1:{api}")])
            .args(["--memory-budget", "64MiB"])
            .arg("--certs")
            .arg(super::certs())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tap-hub")?,
    );
    let mut child = Reaped(
        node.command(&worker.to_string_lossy())
            .args([
                "--hub",
                &format!("https://127.0.0.1:{grpc}"),
                "--node",
                "bench",
            ])
            .arg("--certs")
            .arg(super::certs())
            .args(["-i", &receiver.host_veth])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tap-worker")?,
    );
    wait_capturing(&mut child.0, "tap-worker")?;
    let sent_pps = traffic(rate)?;
    std::thread::sleep(Duration::from_millis(1500));
    let w = node
        .in_netns(|| get(api, "/api/workers"))
        .map_err(|e| anyhow::anyhow!("{e}"))??;
    // A worker the hub does not list has shipped nothing: not loss-free.
    let c = w["workers"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["node"] == "bench"))
        .map(|x| x["counters"].clone())
        .with_context(|| format!("the hub lists no worker: {w}"))?;
    let rss = peak_rss(child.0.id());
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()?;
    child.0.wait()?;
    interrupt(&mut hub.0)?;
    Ok(counted(&c, sent_pps, rss))
}

/// A kubetap capture's outcome from its `WorkerCounters` JSON: lost are
/// kernel ring drops, entry queue drops, batches lost in flight and packets
/// dropped as malformed.
fn counted(c: &serde_json::Value, sent_pps: f64, rss: u64) -> Outcome {
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let malformed = c["drops_by_cause"]["malformed_packet"]
        .as_u64()
        .unwrap_or(0);
    Outcome {
        sent_pps,
        lost: n("kernel_drops") + n("queue_drops") + n("lost_in_flight") + malformed,
        rss,
        offloaded: n("offloaded_packets"),
        malformed,
        causes: c["drops_by_cause"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.as_u64().is_some_and(|n| n > 0))
            .map(|(k, v)| format!(" {k}={v}"))
            .collect(),
    }
}

/// A child process killed (if still running) and waited for when dropped,
/// so a failed step leaves nothing running on its fixed ports.
pub(super) struct Reaped(pub(super) Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn tcpdump_step(
    node: &Node,
    receiver: &Pod,
    traffic: &dyn Fn(f64) -> Result<f64>,
    rate: f64,
) -> Result<Outcome> {
    let mut child = node
        .command("tcpdump")
        .args([
            "-i",
            &receiver.host_veth,
            "-w",
            "/dev/null",
            "-B",
            "4096",
            "-n",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tcpdump")?;
    let mut stderr = BufReader::new(child.stderr.take().context("stderr")?);
    let mut line = String::new();
    while stderr.read_line(&mut line)? > 0 && !line.contains("listening on") {
        line.clear();
    }
    let sent_pps = traffic(rate)?;
    std::thread::sleep(Duration::from_millis(500));
    // `ip netns exec` execs tcpdump in place: the pid is tcpdump's.
    let rss = peak_rss(child.id());
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    let mut rest = String::new();
    stderr.read_to_string(&mut rest)?;
    child.wait()?;
    // "N packets dropped by kernel"
    let lost = rest
        .lines()
        .find(|l| l.contains("dropped by kernel"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .with_context(|| format!("tcpdump's summary: {rest}"))?;
    Ok(Outcome {
        sent_pps,
        lost,
        rss,
        offloaded: 0,
        malformed: 0,
        causes: String::new(),
    })
}

/// Bytes of each upload's body.
const UPLOAD: usize = 1 << 20;
/// Connections the uploads are spread over.
const UPLOADERS: usize = 4;
/// Bytes written at once: paced chunks large enough for the stack to build
/// 185,000-byte segments, small enough that the four connections' bursts
/// (1 MiB at most) fit the 4 MiB rings. Whole 1 MiB writes at veth speed
/// overflow every capture's ring, tcpdump's too, at any rate.
const CHUNK: usize = 256 << 10;

/// The receiver's side of the bulk workload: reads each HTTP/1.1 upload and
/// answers it, on every connection, until the sender closes. Its threads end
/// with their connections; the accepting one with the process.
struct BulkServer {
    addr: std::net::SocketAddr,
}

impl BulkServer {
    fn start(receiver: &Pod) -> Result<BulkServer> {
        let ip = receiver.ip;
        let listener = receiver
            .in_netns(move || std::net::TcpListener::bind((ip, 0)))
            .map_err(|e| anyhow::anyhow!("{e}"))??;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                std::thread::spawn(move || {
                    if let Err(e) = answer_uploads(conn) {
                        eprintln!("xtask: bulk receiver: {e}");
                    }
                });
            }
        });
        Ok(BulkServer { addr })
    }
}

fn answer_uploads(conn: std::net::TcpStream) -> Result<()> {
    use std::io::Write as _;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::with_capacity(1 << 16, conn);
    let mut line = String::new();
    loop {
        let mut length = None;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = Some(v.trim().parse::<u64>()?);
            }
        }
        let length = length.context("an upload without Content-Length")?;
        let copied = std::io::copy(&mut reader.by_ref().take(length), &mut std::io::sink())?;
        if copied < length {
            return Ok(());
        }
        writer.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")?;
    }
}

/// Uploads 1 MiB bodies from `sender` to `server` over `UPLOADERS`
/// connections, made for this step, at `rate` bytes per second in all for
/// `STEP`; returns the byte rate reached.
fn bulk(sender: &Pod, server: std::net::SocketAddr, rate: f64) -> Result<f64> {
    use std::io::Write as _;
    let conns = sender
        .in_netns(move || -> std::io::Result<Vec<std::net::TcpStream>> {
            (0..UPLOADERS)
                .map(|_| {
                    let s = std::net::TcpStream::connect(server)?;
                    s.set_nodelay(true)?;
                    Ok(s)
                })
                .collect()
        })
        .map_err(|e| anyhow::anyhow!("{e}"))??;
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\nContent-Length: {UPLOAD}\r\n\r\n"
    );
    let body = vec![b'u'; UPLOAD];
    let each = rate / UPLOADERS as f64;
    let started = Instant::now();
    let sent: Vec<u64> = std::thread::scope(|scope| {
        let threads: Vec<_> = conns
            .into_iter()
            .map(|mut conn| {
                let (head, body) = (head.as_bytes(), &body[..]);
                scope.spawn(move || -> Result<u64> {
                    let mut reader = BufReader::new(conn.try_clone()?);
                    let mut answer = String::new();
                    let mut sent = 0u64;
                    while started.elapsed() < STEP {
                        conn.write_all(head)?;
                        sent += head.len() as u64;
                        for chunk in body.chunks(CHUNK) {
                            // Ahead of the pace: wait until this chunk is due.
                            while sent as f64 > started.elapsed().as_secs_f64() * each {
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            conn.write_all(chunk)?;
                            sent += chunk.len() as u64;
                        }
                        // The answer: a status line and an empty line.
                        for _ in 0..2 {
                            answer.clear();
                            reader.read_line(&mut answer)?;
                        }
                    }
                    Ok(sent)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an uploader panicked")))
            })
            .collect::<Result<_>>()
    })?;
    Ok(sent.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64())
}
