//! `cargo xtask setup`: installs what the build and the tests need, and only
//! what is missing, so running it again costs a few checks.

use crate::exec;
use anyhow::{Context as _, Result};
use std::process::Command;

/// Debian packages and a command each provides, to tell whether it is there.
const PACKAGES: &[(&str, &str)] = &[
    ("tshark", "tshark"),
    ("wireshark-common", "editcap"),
    ("tcpdump", "tcpdump"),
    ("curl", "curl"),
    // A TLS client on GnuTLS, which the TLS probes do not hook (its handshake stays a `tls` entry).
    ("wget", "wget"),
    // The TLS tests: openssl s_server and its certificates.
    ("openssl", "openssl"),
    ("python3", "python3"),
    // OpenSSL linked into an executable: the TLS test builds a C client
    // with libssl.a.
    ("gcc", "gcc"),
    ("libssl-dev", "/usr/include/openssl/ssl.h"),
    // Go's crypto/tls probes: the tests build Go HTTPS servers and clients.
    ("golang-go", "go"),
    // objcopy: a Go binary with its function table's section renamed.
    ("binutils", "objcopy"),
    ("time", "/usr/bin/time"),
    // dnsmasq-base is the binary without the system service, which would take port 53.
    ("dnsmasq-base", "/usr/sbin/dnsmasq"),
    ("dnsutils", "dig"),
    ("redis-server", "redis-server"),
    ("redis-tools", "redis-benchmark"),
    // HTTP/2 peers: nghttpd (server), nghttp and h2load (clients).
    ("nghttp2-server", "nghttpd"),
    ("nghttp2-client", "nghttp"),
    ("nghttp2-client", "h2load"),
    // PostgreSQL: the server (its binaries under /usr/lib/postgresql/<version>/bin;
    // pg_ctlcluster comes with it), psql and pgbench. The test runs a server of
    // its own on its own port, beside any system cluster the package starts.
    ("postgresql", "pg_ctlcluster"),
    ("postgresql-client", "pgbench"),
    // AMQP: a broker (the test runs a node of its own on its own ports) and
    // rabbitmq-c's command-line clients.
    ("rabbitmq-server", "rabbitmq-server"),
    ("amqp-tools", "amqp-publish"),
    ("python3-pip", "pip3"),
    // Network namespaces, veths and bridges for live capture and testkit's pods;
    // setpriv (util-linux) runs the no-privilege checks as nobody.
    ("iproute2", "ip"),
    ("util-linux", "setpriv"),
    // The web UI's browser tests drive Debian's Chromium (never a downloaded one).
    ("chromium", "chromium"),
    // The hub's and worker's images (cargo xtask images, tap-cli's images
    // test): the Docker daemon and CLI, and musl-gcc for the C parts (ring,
    // mimalloc) of the static musl binaries.
    ("docker.io", "dockerd"),
    ("musl-tools", "musl-gcc"),
    // The web UI's build (Vite); machines of this kind come with Node.js and npm.
    ("nodejs", "node"),
    ("npm", "npm"),
    // kubectl 1.32, one of the real clients the test API server
    // (testkit::kube_api) is checked against; machines of this kind carry it
    // (the Google Cloud SDK's apt package of that name).
    ("kubectl", "kubectl"),
];

/// Python modules the real-peer tests import, pinned to versions with wheels
/// for Debian 12's Python 3.11, installed with pip when missing.
const PYTHON_MODULES: &[(&str, &str)] = &[
    ("grpc", "grpcio==1.76.0"),
    ("websockets", "websockets==15.0.1"),
    ("graphql", "graphql-core==3.2.8"),
    ("kafka", "kafka-python==3.0.12"),
    // The demo shop's clients (pure Python).
    ("redis", "redis==5.2.1"),
    ("pg8000", "pg8000==1.31.2"),
    // Parses the hub's /metrics in the tests, as Prometheus would.
    ("prometheus_client", "prometheus_client==0.23.1"),
    // The chart test: every rendered object against the Kubernetes schemas,
    // and Go's rendering read back as Helm's YAML 1.1 reads it.
    ("kubernetes_validate", "kubernetes-validate==1.37.0"),
    ("yaml", "PyYAML==6.0.3"),
    // The official Kubernetes client, one of the two real clients the test
    // API server (testkit::kube_api) is checked against; 32.x is the client
    // of Kubernetes 1.32, the version that server says it is.
    ("kubernetes", "kubernetes==32.0.1"),
];

/// Whether `command` runs (or, for an absolute path, the file exists).
fn have(command: &str) -> bool {
    if command.starts_with('/') {
        return std::path::Path::new(command).exists();
    }
    Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs the packages of `packages` whose command is missing.
fn debian_packages<'a>(packages: impl IntoIterator<Item = &'a (&'a str, &'a str)>) -> Result<()> {
    let mut missing: Vec<&str> = packages
        .into_iter()
        .filter(|(_, cmd)| !have(cmd))
        .map(|(pkg, _)| *pkg)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    let apt = |args: &[&str]| {
        let mut cmd = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        if !sudo.is_empty() {
            cmd.arg("apt-get");
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    exec(&mut apt(&["update", "-qq"]))?;
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(&missing);
    exec(&mut install)
}

/// Installs each of [`PYTHON_MODULES`] that `python3` cannot import at the
/// pinned version (an older one is upgraded). Only `--only-binary` wheels,
/// so nothing is compiled here. Debian marks its Python as externally
/// managed (PEP 668); these are test peers on a build machine, so pip may
/// install beside Debian's packages.
fn python_modules() -> Result<()> {
    for (module, requirement) in PYTHON_MODULES {
        let (dist, version) = requirement
            .split_once("==")
            .context("PYTHON_MODULES pins every requirement with ==")?;
        let check = format!(
            "import {module}, importlib.metadata as m; assert m.version('{dist}') == '{version}'"
        );
        let present = Command::new("python3")
            .args(["-c", &check])
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            exec(Command::new("python3").args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--only-binary=:all:",
                "--break-system-packages",
                requirement,
            ]))?;
        }
    }
    Ok(())
}

/// The nightly toolchain's rust-src (for the eBPF build), and the musl
/// target of the images' static binaries.
fn rust_components() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("rust-src"))
        });
    if !installed {
        exec(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    let musl = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == testkit::images::MUSL)
        });
    if !musl {
        exec(Command::new("rustup").args(["target", "add", testkit::images::MUSL]))?;
    }
    Ok(())
}

/// A Docker daemon for the images: started with
/// `testkit::images::DOCKERD_FLAGS` (no iptables, no default bridge), its
/// log in the target directory, unless one answers already. Starting one
/// needs root; without, the images test skips and says so.
pub fn docker_daemon() -> Result<()> {
    if testkit::images::daemon_answers() {
        return Ok(());
    }
    if !is_root() {
        eprintln!("xtask: not root: no Docker daemon started (the images test will skip)");
        return Ok(());
    }
    testkit::images::ensure_daemon(&crate::target_dir().join("dockerd.log"))
}

pub fn cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        exec(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// bpf-linker, which links tap-ebpf's kernel programs, built against the
/// stable toolchain's own LLVM (the `libLLVM-<major>-rust-…` in its sysroot)
/// so that it reads the bitcode rustc writes; about five minutes, once.
pub fn bpf_linker() -> Result<()> {
    let present = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()?;
    let lib = std::path::PathBuf::from(String::from_utf8(sysroot.stdout)?.trim()).join("lib");
    // libLLVM-22-rust-1.95.0-stable.so: the library's name and LLVM's major version.
    let llvm = std::fs::read_dir(&lib)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find_map(|f| {
            let name = f.strip_prefix("lib")?.strip_suffix(".so")?.to_string();
            let major = name.strip_prefix("LLVM-")?.split('-').next()?.to_string();
            major.parse::<u32>().ok().map(|_| (name, major))
        })
        .with_context(|| format!("no libLLVM-<major>-rust-….so in {}", lib.display()))?;
    let (name, major) = llvm;
    let lib = lib.display();
    exec(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{major},no-llvm-linking"))
            .env(
                "RUSTFLAGS",
                format!("-L {lib} -l dylib={name} -C link-arg=-Wl,-rpath,{lib}"),
            ),
    )
}

/// What `cargo xtask images` needs, and only that: Docker, musl-gcc, npm
/// (tap-hub's build script builds the UI), the musl target, the eBPF
/// toolchain (tap-worker's build script), and a running Docker daemon.
pub fn images() -> Result<()> {
    const NEEDED: [&str; 4] = ["docker.io", "musl-tools", "nodejs", "npm"];
    debian_packages(PACKAGES.iter().filter(|(pkg, _)| NEEDED.contains(pkg)))?;
    rust_components()?;
    bpf_linker()?;
    docker_daemon()
}

pub fn all() -> Result<()> {
    debian_packages(PACKAGES)?;
    python_modules()?;
    rust_components()?;
    docker_daemon()?;
    bpf_linker()?;
    cargo_fuzz()
}
