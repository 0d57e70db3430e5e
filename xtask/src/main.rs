//! `cargo xtask <task>`: the project's tasks. It runs things; the build itself
//! stays in Cargo so plain `cargo build` and `cargo test` keep working.
#![forbid(unsafe_code)]

mod bench;
mod demo;
mod setup;
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
    /// Build the workspace (tap-hub's build script builds the web UI it embeds).
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
    /// Build the hub's and the worker's container images (static musl
    /// binaries, FROM scratch): REGISTRY/tap-hub:TAG and REGISTRY/tap-worker:TAG.
    Images {
        /// [default: the chart's image.registry, deploy/chart/kubetap/values.yaml]
        #[arg(long)]
        registry: Option<String>,
        /// [default: the chart's image.tag, or its appVersion when empty]
        #[arg(long)]
        tag: Option<String>,
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
        Task::Build => web::install().and_then(|()| exec(cargo().args(["build", "--workspace"]))),
        Task::Test { fuzz_seconds } => test(fuzz_seconds),
        Task::Demo(args) => demo(&args),
        Task::Bench { transactions, only } => bench::run(transactions, only),
        Task::Images { registry, tag } => images(registry, tag),
        Task::Fuzz { seconds } => fuzz(seconds),
    }
}

/// `cargo xtask images`: the musl target, Docker and its daemon if missing,
/// then both images; prints each one's reference and size.
fn images(registry: Option<String>, tag: Option<String>) -> Result<()> {
    setup::images()?;
    let (chart_registry, chart_tag) = testkit::images::chart_defaults(&root())?;
    let registry = registry.unwrap_or(chart_registry);
    let tag = tag.unwrap_or(chart_tag);
    for image in testkit::images::build(&root(), &target_dir(), &registry, &tag)? {
        println!(
            "{}  {:.1} MiB",
            image.reference,
            image.size as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
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
    web::install()?;
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
    let mut tally = run_tests(&mut tests)?;
    tally.add(web::test()?);
    if setup::is_root() && tally.skipped > 0 {
        println!("{}", tally.line());
        bail!(
            "{} tests skipped although this run is root and set everything up: each skip above says why",
            tally.skipped
        );
    }
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
    println!("{}", tally.line());
    Ok(())
}

/// Tests counted across the runners: a test that skipped (it says why, and
/// `testkit::skip` records it) is not counted as passed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Tally {
    pub fn add(&mut self, o: Tally) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.skipped += o.skipped;
    }

    pub fn line(&self) -> String {
        format!(
            "tests: {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// Runs `cargo test`, echoing its output, and adds up its "test result"
/// lines; the tests that skipped (recorded by `testkit::skip` in the file
/// `KUBETAP_SKIP_LOG` names) are counted apart from those that passed.
fn run_tests(cmd: &mut Command) -> Result<Tally> {
    use std::io::BufRead as _;
    let skips = target_dir().join("test-skips.log");
    match std::fs::remove_file(&skips) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", skips.display()));
        }
        _ => {}
    }
    cmd.env("KUBETAP_SKIP_LOG", &skips);
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
    let skipped = std::fs::read_to_string(&skips)
        .map(|s| s.lines().count() as u64)
        .unwrap_or(0);
    let tally = Tally {
        // A skipped test returned early: libtest counted it as passed.
        passed: passed - skipped.min(passed),
        failed,
        skipped,
    };
    let status = child.wait()?;
    if !status.success() {
        println!("{}", tally.line());
        bail!("{cmd:?} failed ({status})");
    }
    Ok(tally)
}

fn demo(args: &demo::DemoArgs) -> Result<()> {
    setup::all()?;
    web::install()?;
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
    // The targets are fuzz/Cargo.toml's bins (the protocols' are in their
    // folders, tap-dissect/src/<protocol>/fuzz.rs), as cargo-fuzz lists them.
    let list = Command::new("rustup")
        .args(["run", "nightly", "cargo", "fuzz", "list", "--fuzz-dir"])
        .arg(&fuzz_dir)
        .output()?;
    if !list.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&list.stderr).trim()
        );
    }
    let targets = String::from_utf8(list.stdout)?;
    for target in targets.split_whitespace() {
        let corpus = target_dir().join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        // cargo-fuzz needs nightly; `rustup run` reaches it even when CARGO names stable's cargo.
        let mut cmd = Command::new("rustup");
        cmd.args(["run", "nightly", "cargo", "fuzz", "run", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg(target)
            .arg(&corpus);
        // Seeds, where the target has some (fuzz/seeds/<target>/).
        let seeds = fuzz_dir.join("seeds").join(target);
        if seeds.is_dir() {
            cmd.arg(seeds);
        }
        cmd.arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=2048")
            .env("CARGO_TARGET_DIR", target_dir().join("fuzz"));
        exec(&mut cmd)?;
    }
    Ok(())
}
