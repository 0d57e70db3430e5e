//! The web UI's tasks: `install` (npm ci when `node_modules` is missing or
//! older than `package-lock.json`; tap-hub's build script builds `web/dist`),
//! `test` (the unit tests and the browser tests in
//! headless Chromium against a real kubetap) and `bench` (the UI with a
//! large generated capture loaded).

use crate::{Tally, cargo, exec, setup, target_dir};
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

/// Entries the UI benchmark loads into the hub.
const BENCH_TRANSACTIONS: u64 = 500_000;

fn web_dir() -> PathBuf {
    crate::root().join("web")
}

/// Runs a command in `web/`, failing with its command line.
fn run_in_web(cmd: &mut Command) -> Result<()> {
    cmd.current_dir(web_dir());
    eprintln!("xtask: running {cmd:?} in web/");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} in web/ failed ({status})");
    }
    Ok(())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn need_npm() -> Result<()> {
    let ok = Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!(
            "the web UI needs Node.js (20.19 or later) and npm, which were not found: install them, then run this again"
        );
    }
    Ok(())
}

/// Installs the UI's npm packages when `node_modules` is missing or older
/// than `package-lock.json` (the UI's tests need them). The UI itself is
/// built by tap-hub's build script, whenever cargo builds the hub.
pub fn install() -> Result<()> {
    need_npm()?;
    let web = web_dir();
    // npm writes this after every install; older than the lock file means stale.
    let installed = modified(&web.join("node_modules/.package-lock.json"));
    if installed.is_none() || installed < modified(&web.join("package-lock.json")) {
        run_in_web(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]))?;
    }
    Ok(())
}

/// Runs a test command in `web/`, echoing its output, and adds up the
/// passed and failed tests its reporter names (node's TAP `# pass N` /
/// `# fail N`, vitest's `Tests  N passed | M failed`).
fn run_counted(cmd: &mut Command) -> Result<Tally> {
    use std::io::BufRead as _;
    cmd.current_dir(web_dir()).stdout(Stdio::piped());
    eprintln!("xtask: running {cmd:?} in web/");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let stdout = child.stdout.take().context("the tests' stdout")?;
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        let plain = without_colours(&line);
        let words: Vec<&str> = plain.split_whitespace().collect();
        match words.as_slice() {
            ["#", "pass", n] => passed += n.parse::<u64>().unwrap_or(0),
            ["#", "fail", n] => failed += n.parse::<u64>().unwrap_or(0),
            ["#", "skipped", n] => skipped += n.parse::<u64>().unwrap_or(0),
            ["Tests", rest @ ..] => {
                for pair in rest.windows(2) {
                    match (pair[0].parse::<u64>(), pair[1]) {
                        (Ok(n), "passed") => passed += n,
                        (Ok(n), "failed") => failed += n,
                        (Ok(n), "skipped") => skipped += n,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} in web/ failed ({status}): {failed} tests failed");
    }
    Ok(Tally {
        passed,
        failed,
        skipped,
    })
}

/// `line` without ANSI colour sequences (`ESC [ … m`).
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The UI's unit tests (vitest) and browser tests (node's test runner and
/// headless Chromium against `kubetap read --serve` of traffic captured on
/// lo, and `kubetap tap --local`), counted.
pub fn test() -> Result<Tally> {
    install()?;
    let unit = run_counted(
        Command::new("npm")
            .args(["test", "--", "--reporter=default"])
            .env("NO_COLOR", "1"),
    )?;
    // The browser tests drive the debug binaries, with the UI just built inside.
    exec(cargo().args([
        "build",
        "-p",
        "tap-cli",
        "-p",
        "tap-hub",
        "-p",
        "tap-worker",
    ]))?;
    let mut e2e = Command::new("node");
    e2e.args([
        "--test",
        "--test-concurrency=1",
        "--test-reporter=tap",
        "e2e/",
    ])
    .env("CARGO_TARGET_DIR", target_dir())
    .env("KUBETAP_BIN", target_dir().join("debug/kubetap"));
    if setup::is_root() {
        // Setup installed Chromium and tcpdump: a test that cannot run is a failure.
        e2e.env("KUBETAP_REQUIRE_PEERS", "1");
    } else {
        eprintln!("xtask: not root: the browser tests capture on lo and will print SKIPPED");
    }
    let browser = run_counted(&mut e2e)?;
    eprintln!(
        "xtask: web UI screenshots in {}",
        target_dir().join("web-artifacts").display()
    );
    let mut tally = unit;
    tally.add(browser);
    Ok(tally)
}

/// The UI with a 500,000-entry capture (generated by `testkit::synth::bulk`, cached under
/// target/bench/) in a release hub: time to first rows, to apply filters,
/// scrolling, memory per row. Measured and printed, never asserted.
pub fn bench() -> Result<()> {
    install()?;
    exec(cargo().args(["build", "--release", "-p", "tap-cli"]))?;
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let capture = dir.join(format!("http-{BENCH_TRANSACTIONS}.pcap"));
    if !capture.exists() {
        eprintln!(
            "xtask: generating {} ({BENCH_TRANSACTIONS} HTTP transactions; cached for later runs)",
            capture.display()
        );
        let partial = capture.with_extension("pcap.partial");
        testkit::synth::bulk::generate(&partial, BENCH_TRANSACTIONS, 7)?;
        std::fs::rename(&partial, &capture)?;
    }
    run_in_web(
        Command::new("node")
            .arg("e2e/bench.mjs")
            .env("CARGO_TARGET_DIR", target_dir())
            .env("KUBETAP_BIN", target_dir().join("release/kubetap"))
            .env("KUBETAP_BENCH_CAPTURE", &capture),
    )
}
