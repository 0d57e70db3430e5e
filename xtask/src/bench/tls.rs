//! TLS probes' cost on the traced server: an HTTPS server (`nghttpd`,
//! HTTP/2 over OpenSSL) under `h2load`, with no kubetap and with a
//! `tap-worker --tls` (and its hub) following the node, in the same run,
//! alternating, several rounds each; medians and their ratio.
//!
//! - **Saturated**: the server on one core and the load generator on the
//!   other (`taskset`), as many requests as they make; the worker and hub
//!   run where the scheduler puts them. On this two-core machine they take
//!   their CPU from the server or the load generator, so this ratio is the
//!   whole node's cost, not the probes'.
//! - **Fixed rate**: a rate well below saturation; the server's own CPU time
//!   per request with and without the probes: what the uprobes cost the
//!   traced process itself, whatever the worker does elsewhere.
//!
//! With kubetap: the worker's CPU time, the plaintext it read per second,
//! whether its probes' ring lost anything, and how many entries reached the
//! hub for the requests made.

use super::hub::cpu_and_rss;
use super::live::{Reaped, get, interrupt, wait_capturing};
use crate::target_dir;
use anyhow::{Context as _, Result, bail};
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::{Node, Pod};

/// Seconds of load per round, and rounds per side.
const SECONDS: u32 = 8;
const ROUNDS: usize = 3;

pub fn run() -> Result<()> {
    if !crate::setup::is_root() {
        bail!(
            "the TLS benchmark attaches eBPF probes and makes network namespaces: run it as root"
        );
    }
    let node = Node::new("tlsb").context("making the bench node")?;
    let server = node.pod("server")?;
    let client = node.pod("client")?;
    let dir = testkit::TempDir::new("bench-tls");
    let (cert, key) = testkit::self_signed(&dir, "server");
    let htdocs = dir.path("htdocs");
    std::fs::create_dir_all(&htdocs)?;
    std::fs::write(htdocs.join("page"), vec![b'k'; 1024])?;
    let _nghttpd = Reaped(
        server
            .command("taskset")
            .args(["-c", "1", "nghttpd", "-d"])
            .arg(&htdocs)
            .arg("8443")
            .arg(&key)
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nghttpd")?,
    );
    node.wait_for_tcp(server.addr(8443), Duration::from_secs(20))?;
    let url = format!("https://{}:8443/page", server.ip);

    eprintln!(
        "\nxtask: TLS probes' cost: nghttpd (HTTP/2 over OpenSSL, 1 core) under h2load (4 connections x 10 streams, 1 core), {SECONDS} s per round, {ROUNDS} rounds each, alternating"
    );
    // `ip netns exec` and `taskset` exec nghttpd: the same pid.
    let nghttpd = _nghttpd.0.id();
    for rate in [None, Some(FIXED_RPS)] {
        rounds(&node, &server, &client, &url, nghttpd, rate)?;
    }
    Ok(())
}

/// Requests per second per h2load client in the fixed-rate runs (4 clients).
const FIXED_RPS: u32 = 2_500;

/// Alternating rounds without and with kubetap, at `rate` per client or
/// saturated; their medians.
fn rounds(
    node: &Node,
    server: &Pod,
    client: &Pod,
    url: &str,
    nghttpd: u32,
    rate: Option<u32>,
) -> Result<()> {
    match rate {
        None => eprintln!("  saturated:"),
        Some(r) => eprintln!(
            "  at a fixed {} requests/s: the server's CPU per request",
            r * 4
        ),
    }
    let mut plain = Vec::new();
    let mut traced = Vec::new();
    let mut cost = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let before = cpu_seconds(nghttpd)?;
        let p = load(client, url, rate)?;
        let us = (cpu_seconds(nghttpd)? - before) * 1e6 / p.requests.max(1) as f64;
        eprintln!(
            "  round {}: without kubetap {:>9.0} requests/s, server {us:.1} µs CPU per request",
            round + 1,
            p.rps
        );
        plain.push(p.rps);
        cost.0.push(us);
        let before = cpu_seconds(nghttpd)?;
        let t = with_worker(node, server, client, url, nghttpd, rate)?;
        let us = (t.server_cpu - before) * 1e6 / t.load.requests.max(1) as f64;
        cost.1.push(us);
        eprintln!(
            "  round {}: with tap-worker --tls {:>9.0} requests/s, server {us:.1} µs CPU per request; worker {:.2} s CPU, {:.1} MiB/s of plaintext read, {} entries at the hub for {} requests, TLS ring lost {}",
            round + 1,
            t.load.rps,
            t.worker_cpu,
            t.plaintext as f64 / f64::from(SECONDS) / (1 << 20) as f64,
            t.entries,
            t.load.requests,
            t.ring_lost
        );
        traced.push(t.load.rps);
    }
    let (p, t) = (median(&mut plain), median(&mut traced));
    let (cp, ct) = (median(&mut cost.0), median(&mut cost.1));
    eprintln!(
        "  median: {p:.0} requests/s without, {t:.0} with: ratio {:.3} ({:+.1}% throughput); server CPU per request {cp:.1} µs without, {ct:.1} µs with: ratio {:.2}",
        t / p,
        (t / p - 1.0) * 100.0,
        ct / cp
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Load {
    rps: f64,
    requests: u64,
}

/// h2load on core 0 against `url` for [`SECONDS`], as fast as it goes or
/// at `rate` requests per second per client.
fn load(client: &Pod, url: &str, rate: Option<u32>) -> Result<Load> {
    let mut cmd = client.command("taskset");
    cmd.args(["-c", "0", "h2load", "-c", "4", "-m", "10", "-t", "1"])
        .args(["-D", &SECONDS.to_string(), url]);
    if let Some(r) = rate {
        cmd.arg(format!("--rps={r}"));
    }
    let out = cmd.output().context("running h2load")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "h2load failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // "finished in 8.00s, 12345.67 req/s, 1.23MB/s"
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|f| f.strip_suffix(" req/s"))
        .and_then(|f| f.parse().ok())
        .with_context(|| format!("no req/s from h2load: {text}"))?;
    // "requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, ..."
    let requests = text
        .lines()
        .find_map(|l| l.strip_prefix("requests: "))
        .and_then(|l| l.split(", ").find_map(|f| f.strip_suffix(" succeeded")))
        .and_then(|f| f.parse().ok())
        .with_context(|| format!("no succeeded requests from h2load: {text}"))?;
    Ok(Load { rps, requests })
}

struct Traced {
    load: Load,
    /// The server's CPU seconds when the load ended.
    server_cpu: f64,
    worker_cpu: f64,
    plaintext: u64,
    entries: u64,
    ring_lost: u64,
}

/// One round with a worker (`--tls`, capturing the server's veth) and its
/// hub in the node.
fn with_worker(
    node: &Node,
    server: &Pod,
    client: &Pod,
    url: &str,
    nghttpd: u32,
    rate: Option<u32>,
) -> Result<Traced> {
    let (grpc, api) = (18998, 18999);
    let mut hub = Reaped(
        testkit::http::with_token(
            &mut node.command(&target_dir().join("release/tap-hub").to_string_lossy()),
        )
        .args(["--grpc", &format!("127.0.0.1:{grpc}")])
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .args(["--memory-budget", "512MiB"])
        .arg("--certs")
        .arg(super::certs())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tap-hub")?,
    );
    let mut worker = Reaped(
        node.command(&target_dir().join("release/tap-worker").to_string_lossy())
            .args([
                "--hub",
                &format!("https://127.0.0.1:{grpc}"),
                "--node",
                "bench",
            ])
            .arg("--certs")
            .arg(super::certs())
            .args(["-i", &server.host_veth, "--tls"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tap-worker")?,
    );
    wait_capturing(&mut worker.0, "tap-worker")?;
    // Discovery hooks nghttpd's libssl at start; give it its first scan.
    std::thread::sleep(Duration::from_secs(2));
    let cpu_before = cpu_seconds(worker.0.id())?;
    let l = load(client, url, rate)?;
    let worker_cpu = cpu_seconds(worker.0.id())? - cpu_before;
    let server_cpu = cpu_seconds(nghttpd)?;
    // The last connections' entries come when they go idle or end.
    std::thread::sleep(Duration::from_secs(3));
    let w = node
        .in_netns(|| get(api, "/api/workers"))
        .map_err(|e| anyhow::anyhow!("{e}"))??;
    let me = &w["workers"][0];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let traced = Traced {
        load: l,
        server_cpu,
        worker_cpu,
        plaintext: n(&me["tls"]["bytes"]),
        entries: n(&me["entries_received"]),
        ring_lost: n(&me["counters"]["drops_by_cause"]["tls_ring_full"]),
    };
    Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()?;
    worker.0.wait()?;
    interrupt(&mut hub.0)?;
    Ok(traced)
}

/// User and system CPU seconds of a running process.
fn cpu_seconds(pid: u32) -> Result<f64> {
    Ok(cpu_and_rss(pid)?.0)
}
