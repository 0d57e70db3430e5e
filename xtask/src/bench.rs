//! `cargo xtask bench`: `kubetap read --json` against tshark's HTTP dissector
//! on the same large generated capture, in one invocation; ratios, throughput
//! and peak RSS (GNU time's maximum resident set size).

use crate::{cargo, exec, root, setup, synth, target_dir};
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
        let s = synth::generate(&tmp, transactions, 7)?;
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

pub fn run(transactions: u64, protocols_only: bool) -> Result<()> {
    setup::all()?;
    run_cargo_release()?;
    if protocols_only {
        return protocols();
    }
    let kubetap = target_dir().join("release/kubetap");
    let (big, big_size) = capture(transactions)?;
    let (small, small_size) = capture((transactions / 10).max(1))?;
    let path = |p: &Path| p.to_string_lossy().into_owned();

    let ours = measure(&kubetap, &["read", "--json", &path(&big)])?;
    // The summary line says how many entries kubetap made: all transactions, or the bench is void.
    let entries = ours.stderr.lines().find_map(|l| {
        l.split(", ")
            .find_map(|f| f.strip_suffix(" entries")?.parse::<u64>().ok())
    });
    if entries != Some(transactions) {
        bail!(
            "kubetap made {entries:?} entries from {transactions} transactions: {}",
            ours.stderr
        );
    }
    let ours_small = measure(&kubetap, &["read", "--json", "--quiet", &path(&small)])?;
    eprintln!("xtask: running tshark on the same file (this takes a while)");
    let tshark = measure(
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
        ("tshark -Y http -T fields", &tshark),
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
        tshark.seconds / ours.seconds.max(0.001)
    );
    println!(
        "kubetap peak RSS: {:.1} MiB on {:.0} MB, {:.1} MiB on {:.0} MB (flat memory: same order whatever the size)",
        ours.rss_mib,
        mb,
        ours_small.rss_mib,
        small_size as f64 / 1e6
    );
    protocols()
}

/// One protocol of the per-protocol benchmark: tshark's decode-as protocol and
/// transport, display filter and the fields that carry the same facts kubetap keeps.
struct ProtocolBench {
    name: &'static str,
    transport: &'static str,
    dissector: &'static str,
    fields: &'static [&'static str],
}

const PROTOCOL_BENCHES: &[ProtocolBench] = &[
    ProtocolBench {
        name: "redis",
        transport: "tcp",
        dissector: "resp",
        fields: &["resp.bulk_string.value"],
    },
    ProtocolBench {
        name: "http2",
        transport: "tcp",
        dissector: "http2",
        fields: &[
            "http2.streamid",
            "http2.headers.method",
            "http2.headers.path",
            "http2.headers.status",
        ],
    },
    ProtocolBench {
        name: "dns",
        transport: "udp",
        dissector: "dns",
        fields: &["dns.id", "dns.qry.name", "dns.qry.type", "dns.flags.rcode"],
    },
];

/// Real servers and load generators captured once (xtask/bench/protocols.sh),
/// then kubetap and tshark timed on each capture.
fn protocols() -> Result<()> {
    let dir = target_dir().join("bench/protocols");
    if !PROTOCOL_BENCHES
        .iter()
        .all(|b| dir.join(format!("{}.pcapng", b.name)).exists())
    {
        eprintln!(
            "xtask: capturing real Redis, HTTP/2 and DNS load on loopback (cached for later runs)"
        );
        exec(
            Command::new("bash")
                .arg(root().join("xtask/bench/protocols.sh"))
                .arg(&dir),
        )?;
    }
    let kubetap = target_dir().join("release/kubetap");
    println!("\nper protocol (real peers' load, captured on lo):");
    println!(
        "{:<8} {:>9} {:>12} {:>12} {:>10} {:>10} {:>8}",
        "protocol", "MB", "entries", "kubetap s", "tshark s", "ratio", "RSS MiB"
    );
    for b in PROTOCOL_BENCHES {
        let file = dir.join(format!("{}.pcapng", b.name));
        let port = std::fs::read_to_string(dir.join(format!("{}.port", b.name)))?
            .trim()
            .to_string();
        let path = file.to_string_lossy().into_owned();
        let ours = measure(&kubetap, &["read", "--json", &path])?;
        let entries = ours
            .stderr
            .lines()
            .find_map(|l| {
                l.split(", ")
                    .find_map(|f| f.strip_suffix(" entries")?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        let decode_as = format!("{}.port=={port},{}", b.transport, b.dissector);
        let mut args = vec![
            "-n",
            "-r",
            &path,
            "-d",
            &decode_as,
            "-Y",
            b.dissector,
            "-T",
            "fields",
        ];
        for f in b.fields {
            args.extend(["-e", f]);
        }
        let tshark = measure(Path::new("tshark"), &args)?;
        let mb = std::fs::metadata(&file)?.len() as f64 / 1e6;
        println!(
            "{:<8} {mb:>9.1} {entries:>12} {:>12.2} {:>10.2} {:>9.1}x {:>8.1}",
            b.name,
            ours.seconds,
            tshark.seconds,
            tshark.seconds / ours.seconds.max(0.001),
            ours.rss_mib
        );
    }
    Ok(())
}

fn run_cargo_release() -> Result<()> {
    exec(
        cargo()
            .args(["build", "--release", "-p", "tap-cli"])
            .current_dir(root()),
    )
}
