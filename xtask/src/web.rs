//! The web UI's tasks: `build` (npm ci when `node_modules` is missing or
//! older than `package-lock.json`, then `npm run build` into `web/dist`,
//! which tap-hub embeds), `test` (the unit tests and the browser tests in
//! headless Chromium against a real kubetap) and `bench` (the UI with a
//! large generated capture loaded).

use crate::{cargo, exec, setup, synth, target_dir};
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

/// The newest modification time of the files under `path`.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| newest(&e.path()))
        .max()
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

/// Builds the UI into `web/dist` when its sources changed since the last build
/// (rebuilding for nothing would make cargo rebuild the hub that embeds it).
pub fn build() -> Result<()> {
    need_npm()?;
    let web = web_dir();
    let lock = web.join("package-lock.json");
    // npm writes this after every install; older than the lock file means stale.
    let installed = modified(&web.join("node_modules/.package-lock.json"));
    if installed.is_none() || installed < modified(&lock) {
        run_in_web(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]))?;
    }
    let built = modified(&web.join("dist/index.html"));
    let sources = [
        "src",
        "public",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
        "tsconfig.test.json",
    ]
    .iter()
    .filter_map(|p| newest(&web.join(p)))
    .max();
    if built.is_some() && built >= sources {
        eprintln!("xtask: web/dist is up to date");
        return Ok(());
    }
    run_in_web(Command::new("npm").args(["run", "build"]))
}

/// Runs a test command in `web/`, echoing its output, and adds up the
/// passed and failed tests its reporter names (node's TAP `# pass N` /
/// `# fail N`, vitest's `Tests  N passed | M failed`).
fn run_counted(cmd: &mut Command) -> Result<(u64, u64)> {
    use std::io::BufRead as _;
    cmd.current_dir(web_dir()).stdout(Stdio::piped());
    eprintln!("xtask: running {cmd:?} in web/");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let stdout = child.stdout.take().context("the tests' stdout")?;
    let (mut passed, mut failed) = (0, 0);
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        let plain = without_colours(&line);
        let words: Vec<&str> = plain.split_whitespace().collect();
        match words.as_slice() {
            ["#", "pass", n] => passed += n.parse::<u64>().unwrap_or(0),
            ["#", "fail", n] => failed += n.parse::<u64>().unwrap_or(0),
            ["Tests", rest @ ..] => {
                for pair in rest.windows(2) {
                    match (pair[0].parse::<u64>(), pair[1]) {
                        (Ok(n), "passed") => passed += n,
                        (Ok(n), "failed") => failed += n,
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
    Ok((passed, failed))
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
/// lo, and `kubetap tap --local`). Returns (passed, failed).
pub fn test() -> Result<(u64, u64)> {
    build()?;
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
    Ok((unit.0 + browser.0, unit.1 + browser.1))
}

/// The UI with a 500,000-entry capture (generated by `synth`, cached under
/// target/bench/) in a release hub: time to first rows, to apply filters,
/// scrolling, memory per row. Measured and printed, never asserted.
pub fn bench() -> Result<()> {
    build()?;
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
        synth::generate(&partial, BENCH_TRANSACTIONS, 7)?;
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
