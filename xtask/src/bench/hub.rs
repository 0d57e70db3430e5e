//! The hub's part of `cargo xtask bench`: ingest from several real worker
//! processes into one real hub, then query latency over everything stored.
//!
//! Ingest is reported per hub CPU second (the hub's user+system time from
//! /proc while the workers stream), since on a 2-core machine the workers'
//! own dissection shares the cores; the reference run is the same workers'
//! work without a hub (`kubetap read --json` of the same files), so the ratio
//! says how many workers' output one hub core keeps up with.

use super::{Measured, measure};
use crate::target_dir;
use anyhow::{Context as _, Result, bail};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use testkit::http::encode;

const WORKERS: u64 = 4;

/// Kills the hub when the bench ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (user+system CPU seconds, peak RSS MiB) of a running process.
pub(super) fn cpu_and_rss(pid: u32) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let after = stat.rsplit_once(')').context("/proc stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmHWM")?
        .parse()?;
    // USER_HZ is 100 on Linux.
    Ok((ticks / 100.0, hwm_kib / 1024.0))
}

/// A GET on the hub's API; the body.
fn get(addr: &str, path_and_query: &str) -> Result<String> {
    let reply =
        testkit::http::try_get(addr.parse()?, path_and_query).map_err(anyhow::Error::msg)?;
    if reply.status != 200 {
        bail!(
            "GET {path_and_query}: status {}: {}",
            reply.status,
            reply.body
        );
    }
    Ok(reply.body)
}

fn captures(per_worker: u64) -> Result<Vec<PathBuf>> {
    let dir = target_dir().join("bench/hub");
    std::fs::create_dir_all(&dir)?;
    (0..WORKERS)
        .map(|i| {
            let path = dir.join(format!("worker{i}-{per_worker}.pcap"));
            if !path.exists() {
                let tmp = path.with_extension("partial");
                testkit::synth::bulk::generate(&tmp, per_worker, 100 + i)?;
                std::fs::rename(&tmp, &path)?;
            }
            Ok(path)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A hub fed by one worker process per file, measured once they are done.
struct Ingest {
    hub: Guard,
    api: String,
    acked: u64,
    wall: f64,
    hub_cpu: f64,
    rss: f64,
    stored: u64,
    memory_bytes: f64,
}

/// The first number after `"key":` in a JSON text.
fn number(body: &str, key: &str) -> f64 {
    body.split(&format!("\"{key}\":"))
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit() && c != '.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

fn ingest(files: &[PathBuf], budget: &str) -> Result<Ingest> {
    let release = target_dir().join("release");
    let (hub_bin, worker_bin) = (release.join("tap-hub"), release.join("tap-worker"));
    let grpc = testkit::free_port();
    let http = testkit::free_port();
    let api = format!("127.0.0.1:{http}");
    let mut hub = Guard(
        testkit::http::with_token(&mut Command::new(&hub_bin))
            .args(["--grpc", &format!("127.0.0.1:{grpc}"), "--listen", &api])
            .args(["--memory-budget", budget])
            .arg("--certs")
            .arg(super::certs())
            .env("KUBETAP_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tap-hub")?,
    );
    let stderr = hub.0.stderr.take().context("hub stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("workers connect"))
        .context("tap-hub did not start")?;
    std::thread::spawn(move || for _ in lines {});
    let pid = hub.0.id();
    let (cpu0, _) = cpu_and_rss(pid)?;
    let started = Instant::now();
    let workers: Vec<Child> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Command::new(&worker_bin)
                .args(["--hub", &format!("https://127.0.0.1:{grpc}")])
                .arg("--certs")
                .arg(super::certs())
                .args(["--node", &format!("node-{i}"), "--file"])
                .arg(f)
                .env("KUBETAP_LOG", "warn")
                .stderr(Stdio::piped())
                .spawn()
                .context("starting tap-worker")
        })
        .collect::<Result<_>>()?;
    let mut acked = 0u64;
    for w in workers {
        let out = w.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("tap-worker failed: {text}");
        }
        acked += text
            .lines()
            .find_map(|l| {
                l.split(", ").find_map(|f| {
                    f.strip_suffix(" acknowledged by the hub")?
                        .parse::<u64>()
                        .ok()
                })
            })
            .unwrap_or(0);
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu1, rss) = cpu_and_rss(pid)?;
    let body = get(&api, "/api/workers")?;
    let ingested = number(&body, "entries_ingested") as u64;
    if ingested != acked {
        bail!("the hub counts {ingested} entries ingested but acknowledged {acked}");
    }
    Ok(Ingest {
        hub,
        api,
        acked,
        wall,
        hub_cpu: cpu1 - cpu0,
        rss,
        stored: number(&body, "entries_in_memory") as u64,
        memory_bytes: number(&body, "memory_bytes"),
    })
}

pub fn run(entries: u64) -> Result<()> {
    let per_worker = (entries / WORKERS).max(1);
    let files = captures(per_worker)?;
    let kubetap = target_dir().join("release/kubetap");
    let s = |p: &Path| p.to_string_lossy().into_owned();

    // Reference: the workers' own work, one after the other, without a hub.
    let mut reference = 0.0;
    for f in &files {
        let m: Measured = measure(&kubetap, &["read", "--json", "--quiet", &s(f)])?;
        reference += m.seconds;
    }
    println!("\nhub ingest: {WORKERS} tap-worker processes -> one tap-hub over gRPC, at once");
    println!(
        "  reference: the same files through kubetap read --json, no hub: {reference:.2} s of CPU"
    );
    // Steady state: the default budget fills early and memory is reused;
    // growth: every entry is kept, so the kernel zeroes fresh pages for all.
    let mut last = None;
    for (what, budget) in [
        ("default 256 MiB budget (steady state)", "256MiB"),
        ("8 GiB budget (the store grows to hold everything)", "8GiB"),
    ] {
        let r = ingest(&files, budget)?;
        println!(
            "  {what}: {} entries in {:.2} s ({:.0}/s end to end, workers on the same 2 cores); hub CPU {:.2} s = {:.0} entries per hub CPU second (goal 200000), {:.2} hub CPU s per reference CPU s; hub peak RSS {:.0} MiB, {} entries kept in {:.0} MiB ({:.0} bytes/entry)",
            r.acked,
            r.wall,
            r.acked as f64 / r.wall,
            r.hub_cpu,
            r.acked as f64 / r.hub_cpu.max(0.001),
            r.hub_cpu / reference.max(0.001),
            r.rss,
            r.stored,
            r.memory_bytes / (1 << 20) as f64,
            r.memory_bytes / r.stored.max(1) as f64
        );
        last = Some(r);
    }
    let Some(Ingest {
        hub,
        api,
        acked,
        stored,
        ..
    }) = last
    else {
        bail!("no ingest run");
    };
    if stored != acked {
        bail!("the hub stores {stored} entries but acknowledged {acked}");
    }

    println!("query latency over {acked} stored entries (median of 5, HTTP round trip included):");
    for (name, filter, path) in [
        (
            "selective",
            "http && request.method == \"POST\" && request.path.startsWith(\"/api/v1/orders?customer=4242\")",
            "/api/entries",
        ),
        ("broad", "http && response.status == 200", "/api/entries"),
        ("no match", "response.status == 599", "/api/entries"),
        (
            "header, no match",
            "request.headers[\"host\"] == \"orders.shop\" && response.status == 599",
            "/api/entries",
        ),
        ("service map, all", "http", "/api/servicemap"),
    ] {
        let q = format!("{path}?filter={}", encode(filter));
        let mut times = Vec::new();
        let mut body = String::new();
        for _ in 0..5 {
            let t = Instant::now();
            body = get(&api, &q)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let scanned = body
            .split("\"scanned\":")
            .nth(1)
            .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
            .unwrap_or("-")
            .to_string();
        println!(
            "  {name:<18} {:>9.1} ms (goal < 100 ms)  scanned {scanned:>8}  `{filter}`",
            median(times)
        );
    }
    drop(hub);
    Ok(())
}
