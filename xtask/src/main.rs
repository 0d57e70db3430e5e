//! `cargo xtask <task>`: the project's tasks. It runs things; the build itself
//! stays in Cargo so plain `cargo build` and `cargo test` keep working.
#![forbid(unsafe_code)]

mod bench;
mod demo;
mod setup;
mod synth;
mod web;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "kubetap's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install everything the build and the tests need (idempotent, non-interactive).
    Setup,
    /// Build the web UI (web/dist), then the workspace, which embeds it.
    Build,
    /// Setup, then fmt check, clippy, every test and a short fuzz run.
    Test {
        /// Seconds each fuzz target runs.
        #[arg(long, default_value_t = 10)]
        fuzz_seconds: u64,
    },
    /// Setup, then kubetap's main job: a microservice shop in network-namespace
    /// pods under load, watched by `kubetap tap --local`, UI on port 8899.
    Demo(demo::DemoArgs),
    /// Setup, then time `kubetap read` against tshark (a large generated
    /// capture, and real peers' captures per protocol), and the hub's ingest
    /// and query latency.
    Bench {
        /// HTTP transactions in the generated capture (and entries for the hub).
        #[arg(long, default_value_t = 1_000_000)]
        transactions: u64,
        /// Run only this part.
        #[arg(long, value_enum)]
        only: Option<bench::Part>,
    },
    /// Run every fuzz target (cargo-fuzz, nightly).
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup => setup::all(),
        Task::Build => web::build().and_then(|()| exec(cargo().args(["build", "--workspace"]))),
        Task::Test { fuzz_seconds } => test(fuzz_seconds),
        Task::Demo(args) => demo(&args),
        Task::Bench { transactions, only } => bench::run(transactions, only),
        Task::Fuzz { seconds } => fuzz(seconds),
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Where cargo puts build output, honouring CARGO_TARGET_DIR.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Runs a command in the workspace root, failing with its command line.
pub fn exec(cmd: &mut Command) -> Result<()> {
    cmd.current_dir(root());
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn test(fuzz_seconds: u64) -> Result<()> {
    setup::all()?;
    web::build()?;
    exec(cargo().args(["fmt", "--all", "--check"]))?;
    exec(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let mut tests = cargo();
    tests.args(["test", "--workspace"]);
    if setup::is_root() {
        // Setup installed the real peers, so a test that cannot find them is a failure, not a skip.
        tests.env("KUBETAP_REQUIRE_PEERS", "1");
    } else {
        eprintln!("xtask: not root: tests that capture on lo will print SKIPPED with the reason");
    }
    let (passed, failed) = run_tests(&mut tests)?;
    let (web_passed, web_failed) = web::test()?;
    let (passed, failed) = (passed + web_passed, failed + web_failed);
    if setup::is_root() {
        // The demo's shop for 20 s: every protocol must show up between the right pods.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let args = demo::DemoArgs {
            port,
            seconds: Some(20),
            check: true,
            debug: true,
        };
        demo::run(&args, &target_dir().join("debug/kubetap"))?;
    }
    fuzz(fuzz_seconds)?;
    // One closing line for whoever reads the end of the log (CI does).
    println!("tests: {passed} passed, {failed} failed");
    Ok(())
}

/// Runs `cargo test`, echoing its output, and adds up its "test result" lines.
fn run_tests(cmd: &mut Command) -> Result<(u64, u64)> {
    use std::io::BufRead as _;
    cmd.current_dir(root()).stdout(std::process::Stdio::piped());
    eprintln!("xtask: running {cmd:?}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let (mut passed, mut failed) = (0, 0);
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split([';', '.']) {
                let mut words = part.split_whitespace();
                match (words.next().map(str::parse::<u64>), words.next()) {
                    (Some(Ok(n)), Some("passed")) => passed += n,
                    (Some(Ok(n)), Some("failed")) => failed += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("tests: {passed} passed, {failed} failed");
        bail!("{cmd:?} failed ({status})");
    }
    Ok((passed, failed))
}

fn demo(args: &demo::DemoArgs) -> Result<()> {
    setup::all()?;
    web::build()?;
    let kubetap = if args.debug {
        exec(cargo().args(["build", "-p", "tap-cli"]))?;
        target_dir().join("debug/kubetap")
    } else {
        exec(cargo().args(["build", "--release", "-p", "tap-cli"]))?;
        target_dir().join("release/kubetap")
    };
    if !setup::is_root() {
        bail!(
            "the demo makes network namespaces and captures in them, which needs root: run it with sudo"
        );
    }
    demo::run(args, &kubetap)
}

fn fuzz(seconds: u64) -> Result<()> {
    setup::cargo_fuzz()?;
    let fuzz_dir = root().join("fuzz");
    for target in [
        "capture_file",
        "reassembly",
        "http1",
        "dns",
        "redis",
        "http2",
        "websocket",
        "graphql",
        "postgres",
        "amqp",
        "kafka",
        "filter",
    ] {
        let corpus = target_dir().join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        // cargo-fuzz needs nightly; `rustup run` reaches it even when CARGO names stable's cargo.
        let mut cmd = Command::new("rustup");
        cmd.args(["run", "nightly", "cargo", "fuzz", "run", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg(target)
            .arg(&corpus)
            .arg(fuzz_dir.join("seeds").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=2048")
            .env("CARGO_TARGET_DIR", target_dir().join("fuzz"));
        exec(&mut cmd)?;
    }
    Ok(())
}
