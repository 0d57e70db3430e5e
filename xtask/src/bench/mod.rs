//! `cargo xtask bench`: `kubetap read --json` against tshark's HTTP dissector
//! on the same large generated capture, in one invocation; ratios, throughput
//! and peak RSS (GNU time's maximum resident set size). Then each protocol
//! against tshark on real peers' captures, and the hub (`hub`).

mod hub;
mod live;
mod tls;

use crate::{cargo, exec, root, setup, target_dir};
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Measured {
    seconds: f64,
    rss_mib: f64,
    stderr: String,
}

/// Runs `cmd` with stdout to /dev/null under /usr/bin/time; returns time and peak RSS.
fn measure(program: &Path, args: &[&str]) -> Result<Measured> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "XTASK_TIME %e %M"])
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{} {:?} failed: {stderr}", program.display(), args);
    }
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("XTASK_TIME "))
        .context("no timing from /usr/bin/time")?;
    let mut f = line.split_whitespace();
    let seconds: f64 = f.next().context("time")?.parse()?;
    let rss_kib: f64 = f.next().context("rss")?.parse()?;
    Ok(Measured {
        seconds,
        rss_mib: rss_kib / 1024.0,
        stderr: stderr.into_owned(),
    })
}

fn capture(transactions: u64) -> Result<(PathBuf, u64)> {
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("http-{transactions}.pcap"));
    if !path.exists() {
        eprintln!(
            "xtask: generating {} ({transactions} HTTP transactions; cached for later runs)",
            path.display()
        );
        let tmp = path.with_extension("pcap.partial");
        let s = testkit::synth::bulk::generate(&tmp, transactions, 7)?;
        std::fs::rename(&tmp, &path)?;
        eprintln!(
            "xtask: {} packets, {:.1} MiB",
            s.packets,
            s.bytes as f64 / (1 << 20) as f64
        );
    }
    let size = std::fs::metadata(&path)?.len();
    Ok((path, size))
}

/// A part of the benchmark, to run only that one.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// kubetap read against tshark on a generated HTTP/1 capture.
    Read,
    /// Each protocol against tshark on real peers' captures, and all merged.
    Protocols,
    /// Ingest from worker processes into one hub, and query latency.
    Hub,
    /// Live capture's loss-free packet rate on a veth, against tcpdump.
    Live,
    /// An HTTPS server's requests per second with and without the TLS
    /// probes (`tap-worker --tls`) following it.
    Tls,
    /// The web UI with 500,000 entries in a hub: first rows, filters, scrolling.
    Web,
    /// In-process measurements kept beside the code they time (ignored by
    /// `cargo test`): the store's insert rate, the service map over 1M
    /// entries, the filter's time per entry, an AF_PACKET socket's read rate.
    Micro,
}

pub fn run(transactions: u64, only: Option<Part>) -> Result<()> {
    setup::all()?;
    run_cargo_release()?;
    let want = |p: Part| only.is_none_or(|o| o == p);
    if want(Part::Read) {
        read(transactions)?;
    }
    if want(Part::Protocols) {
        protocols()?;
    }
    if want(Part::Hub) {
        hub::run(transactions)?;
    }
    if want(Part::Live) {
        live::run()?;
    }
    if want(Part::Tls) {
        tls::run()?;
    }
    if want(Part::Web) {
        crate::web::bench()?;
    }
    if want(Part::Micro) {
        micro()?;
    }
    Ok(())
}

/// Runs the measurements written as ignored tests, in release mode, one at a
/// time so they do not share the two cores, printing what they measure.
fn micro() -> Result<()> {
    for crate_ in ["tap-hub", "tap-dissect"] {
        exec(cargo().args([
            "test",
            "--release",
            "-p",
            crate_,
            "--lib",
            "--",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]))?;
    }
    if setup::is_root() {
        exec(cargo().args([
            "test",
            "--release",
            "-p",
            "tap-worker",
            "--test",
            "live_capture",
            "--",
            "--ignored",
            "--nocapture",
            "--exact",
            "throughput",
        ]))?;
    } else {
        eprintln!("xtask: not root: the AF_PACKET read rate needs root, left out");
    }
    Ok(())
}

fn read(transactions: u64) -> Result<()> {
    let kubetap = target_dir().join("release/kubetap");
    let (big, big_size) = capture(transactions)?;
    let (small, small_size) = capture((transactions / 10).max(1))?;
    let path = |p: &Path| p.to_string_lossy().into_owned();

    // Both tools read the file from the page cache: kubetap goes first, so
    // read it once beforehand (a cold first run cost kubetap 50% once).
    std::io::copy(&mut std::fs::File::open(&big)?, &mut std::io::sink())?;
    let ours = measure(&kubetap, &["read", "--json", &path(&big)])?;
    // The summary line says how many entries kubetap made: all transactions, or the bench is void.
    // One HTTP entry per transaction, plus a `tcp` entry for each connection
    // the generator opened and closed without a transaction (at the very end).
    let entries = entries_in(&ours.stderr);
    let undissected = ours
        .stderr
        .lines()
        .find_map(|l| {
            let (_, tail) = l.split_once("; ")?;
            tail.strip_suffix(" connections not dissected (unknown protocol)")?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    if entries != transactions + undissected {
        bail!(
            "kubetap made {entries} entries ({undissected} of undissected connections) from {transactions} transactions: {}",
            ours.stderr
        );
    }
    let ours_small = measure(&kubetap, &["read", "--json", "--quiet", &path(&small)])?;
    eprintln!("xtask: running tshark on the same file (this takes a while)");
    let tshark_http = measure(
        Path::new("tshark"),
        &[
            "-n",
            "-r",
            &path(&big),
            "-Y",
            "http",
            "-T",
            "fields",
            "-e",
            "http.request.method",
            "-e",
            "http.request.uri",
            "-e",
            "http.response.code",
        ],
    )?;

    let mb = big_size as f64 / 1e6;
    println!(
        "capture: {} ({:.0} MB, {transactions} HTTP transactions)",
        big.display(),
        mb
    );
    println!(
        "{:<28} {:>9} {:>10} {:>12} {:>14}",
        "tool", "seconds", "MB/s", "tx/s", "peak RSS MiB"
    );
    for (name, m) in [
        ("kubetap read --json", &ours),
        ("tshark -Y http -T fields", &tshark_http),
    ] {
        println!(
            "{name:<28} {:>9.2} {:>10.1} {:>12.0} {:>14.1}",
            m.seconds,
            mb / m.seconds.max(0.001),
            transactions as f64 / m.seconds.max(0.001),
            m.rss_mib
        );
    }
    println!(
        "speed ratio kubetap/tshark: {:.1}x",
        tshark_http.seconds / ours.seconds.max(0.001)
    );
    println!(
        "kubetap peak RSS: {:.1} MiB on {:.0} MB, {:.1} MiB on {:.0} MB (flat memory: same order whatever the size)",
        ours.rss_mib,
        mb,
        ours_small.rss_mib,
        small_size as f64 / 1e6
    );
    Ok(())
}

/// One protocol of the per-protocol benchmark: tshark's decode-as protocol and
/// transport, display filter and the fields that carry the same facts kubetap keeps.
struct ProtocolBench {
    name: &'static str,
    transport: &'static str,
    dissector: &'static str,
    filter: &'static str,
    fields: &'static [&'static str],
}

const PROTOCOL_BENCHES: &[ProtocolBench] = &[
    ProtocolBench {
        name: "redis",
        transport: "tcp",
        dissector: "resp",
        filter: "resp",
        fields: &["resp.bulk_string.value"],
    },
    ProtocolBench {
        name: "http2",
        transport: "tcp",
        dissector: "http2",
        filter: "http2",
        fields: &[
            "http2.streamid",
            "http2.headers.method",
            "http2.headers.path",
            "http2.headers.status",
        ],
    },
    ProtocolBench {
        name: "grpc",
        transport: "tcp",
        dissector: "http2",
        filter: "grpc",
        fields: &[
            "http2.streamid",
            "http2.headers.path",
            "grpc.message_length",
        ],
    },
    ProtocolBench {
        name: "postgres",
        transport: "tcp",
        dissector: "pgsql",
        filter: "pgsql",
        fields: &["pgsql.type", "pgsql.query", "pgsql.tag"],
    },
    ProtocolBench {
        name: "dns",
        transport: "udp",
        dissector: "dns",
        filter: "dns",
        fields: &["dns.id", "dns.qry.name", "dns.qry.type", "dns.flags.rcode"],
    },
];

/// The entry count from kubetap's summary line ("…, 400002 entries, …").
fn entries_in(summary: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| {
            l.split(", ")
                .find_map(|f| f.strip_suffix(" entries")?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// tshark dissecting `file` as a user would to see `b`'s messages: every
/// protocol's server port decoded as its protocol, `b`'s display filter and fields.
fn tshark(file: &Path, decode_as: &[String], b: &ProtocolBench) -> Result<Measured> {
    let path = file.to_string_lossy().into_owned();
    let mut args = vec!["-n", "-r", &path];
    for d in decode_as {
        args.extend(["-d", d]);
    }
    args.extend(["-Y", b.filter, "-T", "fields"]);
    for f in b.fields {
        args.extend(["-e", f]);
    }
    measure(Path::new("tshark"), &args)
}

/// Real servers and load generators captured once (xtask/bench/protocols.sh),
/// then kubetap and tshark timed on each protocol's capture and on all of
/// them merged into one file.
fn protocols() -> Result<()> {
    let dir = target_dir().join("bench/protocols");
    if !dir.join("mixed.pcapng").exists() {
        eprintln!(
            "xtask: capturing real Redis, HTTP/2, gRPC, PostgreSQL and DNS load on loopback (cached for later runs)"
        );
        exec(
            Command::new("bash")
                .arg(root().join("xtask/bench/protocols.sh"))
                .arg(&dir),
        )?;
    }
    let kubetap = target_dir().join("release/kubetap");
    let mut decode_as = Vec::new();
    for b in PROTOCOL_BENCHES {
        let port = std::fs::read_to_string(dir.join(format!("{}.port", b.name)))?;
        decode_as.push(format!(
            "{}.port=={},{}",
            b.transport,
            port.trim(),
            b.dissector
        ));
    }
    let header = || {
        println!(
            "{:<8} {:>9} {:>12} {:>12} {:>10} {:>10} {:>8}",
            "protocol", "MB", "entries", "kubetap s", "tshark s", "ratio", "RSS MiB"
        )
    };
    println!("\nper protocol, each on its own capture (real peers' load, captured on lo):");
    header();
    for (b, d) in PROTOCOL_BENCHES.iter().zip(&decode_as) {
        let file = dir.join(format!("{}.pcapng", b.name));
        let ours = measure(&kubetap, &["read", "--json", &file.to_string_lossy()])?;
        let theirs = tshark(&file, std::slice::from_ref(d), b)?;
        let mb = std::fs::metadata(&file)?.len() as f64 / 1e6;
        println!(
            "{:<8} {mb:>9.1} {:>12} {:>12.2} {:>10.2} {:>9.1}x {:>8.1}",
            b.name,
            entries_in(&ours.stderr),
            ours.seconds,
            theirs.seconds,
            theirs.seconds / ours.seconds.max(0.001),
            ours.rss_mib
        );
    }

    // The mixed file: kubetap dissects every protocol in one pass; tshark is
    // run once per protocol with that protocol's filter, as a user would.
    let mixed = dir.join("mixed.pcapng");
    let mb = std::fs::metadata(&mixed)?.len() as f64 / 1e6;
    let ours = measure(&kubetap, &["read", "--json", &mixed.to_string_lossy()])?;
    println!(
        "\nmixed capture ({mb:.0} MB, all five protocols): kubetap read --json {:.2} s, {} entries, peak RSS {:.1} MiB",
        ours.seconds,
        entries_in(&ours.stderr),
        ours.rss_mib
    );
    // Redaction's cost: the same read with it off, three alternating runs
    // each, the fastest of each compared.
    let mut on = f64::MAX;
    let mut off = f64::MAX;
    let path = mixed.to_string_lossy().into_owned();
    for _ in 0..3 {
        on = on.min(measure(&kubetap, &["read", "--json", &path])?.seconds);
        off = off.min(measure(&kubetap, &["read", "--json", "--no-redaction", &path])?.seconds);
    }
    println!(
        "redaction (default rules) on {on:.2} s, off {off:.2} s: on/off {:.3} (goal under 1.10)",
        on / off.max(0.001)
    );
    println!(
        "{:<8} {:>22} {:>10}",
        "protocol", "tshark -Y <protocol> s", "ratio"
    );
    for b in PROTOCOL_BENCHES {
        let theirs = tshark(&mixed, &decode_as, b)?;
        println!(
            "{:<8} {:>22.2} {:>9.1}x",
            b.name,
            theirs.seconds,
            theirs.seconds / ours.seconds.max(0.001)
        );
    }
    Ok(())
}

/// The certificates the benchmarks' `tap-hub`s and `tap-worker`s share
/// (`--certs`): the first hub makes the set, later runs reuse it (the same
/// directory the tests use).
pub(super) fn certs() -> PathBuf {
    target_dir().join("tmp/kubetap-certs")
}

fn run_cargo_release() -> Result<()> {
    exec(
        cargo()
            .args([
                "build",
                "--release",
                "-p",
                "tap-cli",
                "-p",
                "tap-hub",
                "-p",
                "tap-worker",
            ])
            .current_dir(root()),
    )
}
