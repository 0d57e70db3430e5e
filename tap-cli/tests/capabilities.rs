//! Least privilege, end to end (docs/security.md, "Least privilege:
//! capabilities"):
//!
//! - each mode of `tap-worker` and `kubetap tap --local`, started as root
//!   with every capability, keeps exactly the documented ones: on every
//!   thread, the effective, permitted and bounding sets are that list, the
//!   inheritable and ambient sets are empty, and no-new-privileges is set;
//! - started with nothing but the documented capabilities (as root with the
//!   bounding set cut down to them, as a Kubernetes container with
//!   `drop: [ALL]` and `add: [...]` is), a worker still captures: plain HTTP
//!   between two pods of a node and TLS plaintext from a server started
//!   after it, `kubetap tap --local -i lo` loopback HTTP with CAP_NET_RAW
//!   alone; and the hub's workers API lists what the worker kept;
//! - without one of them, the mode says which and what for.
//!
//! The lists here are written out from the documentation, not taken from
//! the code, so a change to either shows. Needs root, setpriv, python3,
//! curl and openssl.

mod peers;

use peers::{Peer, node, serve};
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::{Node, TempDir, free_port, require, require_root};

// Capability numbers (linux/capability.h).
const NET_RAW: u64 = 1 << 13;
const SYS_PTRACE: u64 = 1 << 19;
const SYS_ADMIN: u64 = 1 << 21;
const PERFMON: u64 = 1 << 38;
const BPF: u64 = 1 << 39;

const CAPTURE: u64 = NET_RAW;
const PODS: u64 = NET_RAW | SYS_ADMIN | SYS_PTRACE;
const TLS: u64 = BPF | PERFMON | SYS_ADMIN | SYS_PTRACE;

/// One thread's capability sets and no-new-privileges, from its status.
#[derive(Debug, PartialEq, Eq)]
struct ThreadCaps {
    inheritable: u64,
    permitted: u64,
    effective: u64,
    bounding: u64,
    ambient: u64,
    no_new_privs: bool,
}

fn thread_caps(status: &str) -> ThreadCaps {
    let field = |name: &str| {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"));
        line.trim().to_string()
    };
    let hex = |name: &str| u64::from_str_radix(&field(name), 16).unwrap();
    ThreadCaps {
        inheritable: hex("CapInh:"),
        permitted: hex("CapPrm:"),
        effective: hex("CapEff:"),
        bounding: hex("CapBnd:"),
        ambient: hex("CapAmb:"),
        no_new_privs: field("NoNewPrivs:") == "1",
    }
}

/// Asserts that every thread of `pid` has exactly `caps`.
fn assert_keeps_exactly(pid: u32, caps: u64, what: &str) {
    let expected = ThreadCaps {
        inheritable: 0,
        permitted: caps,
        effective: caps,
        bounding: caps,
        ambient: 0,
        no_new_privs: true,
    };
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .collect();
    assert!(tasks.len() > 1, "{what}: one thread only?");
    for t in tasks {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue; // a thread that ended meanwhile
        };
        assert_eq!(
            thread_caps(&status),
            expected,
            "{what}: thread {:?} ({})",
            t.file_name(),
            status.lines().next().unwrap_or_default()
        );
    }
}

/// A process started with its stderr read up to a line with `ready`.
fn started(cmd: &mut Command, ready: &str) -> Peer {
    let mut peer = serve::spawn_piped(cmd);
    serve::wait_line(&mut peer, ready);
    peer
}

#[test]
fn each_mode_keeps_exactly_its_documented_capabilities() {
    if !require_root() {
        return;
    }
    let dir = TempDir::new("caps-modes");
    let capture = dir.path("two.pcap");
    std::fs::write(
        &capture,
        testkit::conversation::pcap(&testkit::conversation::two_requests()),
    )
    .unwrap();
    let pods = dir.path("pods.json");
    std::fs::write(&pods, "[]").unwrap();
    let worker = peers::sibling("tap-worker");
    // No hub listens there: the worker keeps trying, which is all this needs.
    let hub = format!("https://127.0.0.1:{}", free_port());
    let worker_modes: [(&str, &[&str], u64); 4] = [
        (
            "a file",
            &["--file", capture.to_str().unwrap(), "--linger", "60"],
            0,
        ),
        ("interfaces", &["-i", "lo"], CAPTURE),
        ("pods", &["--pods", pods.to_str().unwrap()], PODS),
        ("interfaces and TLS", &["-i", "lo", "--tls"], CAPTURE | TLS),
    ];
    for (what, args, caps) in worker_modes {
        let w = started(
            Command::new(&worker)
                .args(["--hub", &hub, "--certs"])
                .arg(peers::certs())
                .args(args),
            "tap-worker: capturing",
        );
        assert_keeps_exactly(w.id(), caps, &format!("tap-worker on {what}"));
    }
    let local_modes: [(&str, &[&str], u64); 3] = [
        ("interfaces", &["-i", "lo"], CAPTURE),
        ("pods", &["--pods", pods.to_str().unwrap()], PODS),
        ("interfaces and TLS", &["-i", "lo", "--tls"], CAPTURE | TLS),
    ];
    for (what, args, caps) in local_modes {
        let k = started(
            Command::new(env!("CARGO_BIN_EXE_kubetap"))
                .args(["tap", "--local", "--port", &free_port().to_string()])
                .args(args),
            "kubetap: capturing",
        );
        assert_keeps_exactly(k.id(), caps, &format!("kubetap tap --local on {what}"));
    }
}

/// `setpriv` making a root process whose every set is `caps` (by name, as
/// setpriv spells them), as a container granted exactly those is.
fn with_only(caps: &[&str]) -> Vec<String> {
    let bounding = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "--bounding-set".into(),
        bounding,
        "--inh-caps".into(),
        "-all".into(),
        "--ambient-caps".into(),
        "-all".into(),
        "--".into(),
    ]
}

#[test]
fn a_worker_with_only_the_documented_capabilities_captures_pods_and_tls() {
    if !require_root() || !require(&["setpriv", "python3", "curl", "openssl"]) {
        return;
    }
    let node = Node::new("caps").unwrap();
    let web = node.pod("web").unwrap();
    let client = node.pod("client").unwrap();
    let dir = TempDir::new("caps-pods");
    let (cert, key) = testkit::self_signed(&dir, "web");
    let pods = dir.path("pods.json");
    let pod = |p: &testkit::Pod| serde_json::json!({"name": p.name, "namespace": "shop", "ips": [p.ip.to_string()]});
    std::fs::write(
        &pods,
        serde_json::json!([pod(&web), pod(&client)]).to_string(),
    )
    .unwrap();
    let (grpc, http) = (free_port(), free_port());
    let _hub = node::hub(&node, grpc, http, &[]);
    let names = ["net_raw", "sys_admin", "sys_ptrace", "bpf", "perfmon"];
    let worker = Peer::start(
        node.command("setpriv")
            .args(with_only(&names))
            .arg(peers::sibling("tap-worker"))
            .args(["--hub", &format!("https://127.0.0.1:{grpc}")])
            .arg("--certs")
            .arg(peers::certs())
            .args([
                "--node",
                "node-a",
                "--pods",
                pods.to_str().unwrap(),
                "--tls",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // Everything the worker had, it kept.
    testkit::eventually(Duration::from_secs(20), "the worker connected", || {
        let v = node::api(&node, http, "/api/workers");
        (v["workers"][0]["state"] == "connected").then_some(())
    });
    assert_keeps_exactly(worker.id(), PODS | TLS, "a worker given exactly its list");

    // Servers started after the worker: plain HTTP, and HTTPS through
    // OpenSSL, which the worker must find and hook.
    let _plain = node::http_servers(&node, &[&web], 8080);
    let ip = web.ip.to_string();
    let _https = node::https_server(&node, &web, &cert, &key);
    let server = u64::from(_https.id());
    testkit::eventually(Duration::from_secs(30), "the HTTPS server hooked", || {
        let v = node::api(&node, http, "/api/workers");
        let libs = v["workers"][0]["tls"]["libraries"].as_array()?.clone();
        libs.iter()
            .filter(|l| l["hooked"] == true)
            .flat_map(|l| l["processes"].as_array().cloned().unwrap_or_default())
            .any(|p| p["pid"] == server)
            .then_some(())
    });
    let curl = |url: &str| {
        let out = client
            .command("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", url])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{url}");
    };
    curl(&format!("http://{ip}:8080/"));
    curl(&format!("https://{ip}:8443/only-in-plaintext"));

    let entries = testkit::eventually(Duration::from_secs(30), "both requests' entries", || {
        let v = node::api(&node, http, "/api/entries?limit=200");
        let entries = v["entries"].as_array()?.clone();
        let path = |e: &serde_json::Value| e["request"]["path"].as_str().map(str::to_string);
        let plain = entries.iter().find(|e| path(e).as_deref() == Some("/"))?;
        let tls = entries
            .iter()
            .find(|e| path(e).as_deref() == Some("/only-in-plaintext"))?;
        Some((plain.clone(), tls.clone()))
    });
    let (plain, tls) = entries;
    assert_eq!(plain["tls"], false, "{plain}");
    assert_eq!(plain["dst"]["pod"], "web", "{plain}");
    assert_eq!(plain["src"]["pod"], "client", "{plain}");
    assert_eq!(tls["tls"], true, "{tls}");
    assert_eq!(tls["response"]["status"], 200, "{tls}");
    assert_eq!(tls["dst"]["pod"], "web", "{tls}");

    let v = node::api(&node, http, "/api/workers");
    let w = &v["workers"][0];
    assert_eq!(w["tls"]["state"], "on", "{w}");
    assert_eq!(
        w["linux_capabilities"],
        serde_json::json!([
            "CAP_NET_RAW",
            "CAP_SYS_PTRACE",
            "CAP_SYS_ADMIN",
            "CAP_PERFMON",
            "CAP_BPF"
        ]),
        "{w}"
    );
}

#[test]
fn local_capture_on_loopback_needs_net_raw_alone() {
    if !require_root() || !require(&["setpriv", "python3", "curl"]) {
        return;
    }
    let server_port = free_port();
    let server = Peer::spawn(
        Command::new("python3")
            .args(["-m", "http.server", &server_port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .current_dir(std::env::temp_dir()),
    );
    let port = free_port();
    let tap = started(
        testkit::http::with_token(&mut Command::new("setpriv"))
            .args(with_only(&["net_raw"]))
            .arg(env!("CARGO_BIN_EXE_kubetap"))
            .args(["tap", "--local", "-i", "lo", "--port", &port.to_string()]),
        "kubetap: capturing",
    );
    assert_keeps_exactly(tap.id(), NET_RAW, "kubetap tap --local given CAP_NET_RAW");
    server.wait_for_port(server_port);
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{server_port}/net-raw-only"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    testkit::eventually(Duration::from_secs(20), "the request's entry", || {
        let (status, body) = serve::get(port, "/api/entries?limit=100");
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (status == 200
            && v["entries"]
                .as_array()?
                .iter()
                .any(|e| e["request"]["path"] == "/net-raw-only" && e["response"]["status"] == 404))
        .then_some(())
    });
}

#[test]
fn without_a_documented_capability_the_mode_says_which_and_what_for() {
    if !require_root() || !require(&["setpriv"]) {
        return;
    }
    let dir = TempDir::new("caps-missing");
    let pods = dir.path("pods.json");
    std::fs::write(&pods, "[]").unwrap();
    // --pods with capture sockets but no way into pods' namespaces: fails at
    // once, naming the capability.
    let out = Command::new("setpriv")
        .args(with_only(&["net_raw"]))
        .arg(env!("CARGO_BIN_EXE_kubetap"))
        .args(["tap", "--local", "--pods", pods.to_str().unwrap()])
        .args(["--port", &free_port().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--pods: this process lacks CAP_SYS_ADMIN (entering pods' network namespaces"),
        "{err}"
    );
    // --tls with everything but CAP_SYS_PTRACE: TLS says it is missing and
    // what for; packets are still captured.
    let tap = started(
        Command::new("setpriv")
            .args(with_only(&["net_raw", "bpf", "perfmon", "sys_admin"]))
            .arg(env!("CARGO_BIN_EXE_kubetap"))
            .args(["tap", "--local", "-i", "lo", "--tls"])
            .args(["--port", &free_port().to_string()]),
        "--tls: this process lacks CAP_SYS_PTRACE (reading other processes' /proc/<pid>/maps",
    );
    drop(tap);
}
