//! `kubetap tap --local` end to end on loopback: real HTTP (a Python server
//! and curl) captured live through the AF_PACKET ring, queryable through the
//! in-process hub's API while it runs, counted in the workers panel,
//! exportable as PCAP; SIGTERM ends it cleanly. And its bad conditions: an
//! interface that does not exist, no privileges.

mod peers;

use peers::serve::get;
use peers::{Peer, TempDir, free_port, require};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

#[test]
fn local_mode_captures_live_traffic_into_its_hub() {
    if !require(&["curl", "python3", "tshark"]) {
        return;
    }
    if !is_root() {
        testkit::skip("live capture", "needs root");
        return;
    }
    let dir = TempDir::new("tap-local");
    let (api, web) = (free_port(), free_port());
    let mut tap = Peer::start(
        testkit::http::with_token(&mut Command::new(env!("CARGO_BIN_EXE_kubetap")))
            .args(["tap", "--local", "-i", "lo", "--port", &api.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let mut lines = BufReader::new(tap.child().stderr.take().unwrap()).lines();
    assert!(
        lines.next().unwrap().unwrap().contains("capturing on lo"),
        "kubetap did not start capturing"
    );
    let summary = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let server = Peer::spawn(
        Command::new("python3")
            .args(["-m", "http.server", &web.to_string(), "--bind", "127.0.0.1"])
            .current_dir(dir.root()),
    );
    server.wait_for_port(web);
    let paths = ["/", "/missing-1", "/missing-2", "/"];
    for p in paths {
        let status = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                &format!("http://127.0.0.1:{web}{p}"),
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
    // Entries arrive within the ring's block timeout and the store's batching.
    // `http`: the readiness probe's empty connection is a `tcp` entry.
    let filter = format!("/api/entries?filter=http%20%26%26%20dst.port%20%3D%3D%20{web}");
    let started = Instant::now();
    let entries = loop {
        let (status, body) = get(api, &filter);
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let entries = v["entries"].as_array().unwrap().clone();
        if entries.len() >= paths.len() {
            break entries;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {} entries of {} arrived",
            entries.len(),
            paths.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Newest first.
    let got: Vec<(String, u64)> = entries
        .iter()
        .rev()
        .map(|e| {
            (
                e["request"]["path"].as_str().unwrap().to_string(),
                e["response"]["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = paths
        .iter()
        .map(|p| {
            (
                p.to_string(),
                if p.starts_with("/missing") { 404 } else { 200 },
            )
        })
        .collect();
    assert_eq!(got, want);

    let (_, body) = get(api, "/api/workers");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let w = &v["workers"][0];
    assert_eq!(w["state"], "connected");
    assert!(w["counters"]["packets"].as_u64().unwrap() > 0);

    let (status, pcap) = get(
        api,
        &format!(
            "/api/pcap?filter=dst.port%20%3D%3D%20{web}%20%26%26%20response.status%20%3D%3D%20404"
        ),
    );
    assert_eq!(status, 200);
    let file = dir.path("local.pcapng");
    std::fs::write(&file, pcap).unwrap();
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        // Decode the server's port as HTTP: a client port tshark ties to
        // another protocol would otherwise hide the request.
        .args(["-d", &format!("tcp.port=={web},http")])
        .args([
            "-Y",
            "http.request",
            "-T",
            "fields",
            "-e",
            "http.request.uri",
        ])
        .output()
        .unwrap();
    let uris = String::from_utf8_lossy(&out.stdout);
    let mut uris: Vec<&str> = uris.lines().collect();
    uris.sort();
    assert_eq!(uris, ["/missing-1", "/missing-2"]);

    Command::new("kill")
        .args(["-TERM", &tap.id().to_string()])
        .status()
        .unwrap();
    let status = tap.child().wait().unwrap();
    assert!(status.success(), "{status}");
    let summary = summary.join().unwrap();
    assert!(
        summary
            .iter()
            .any(|l| l.contains("packets") && l.contains("dropped by the kernel")),
        "{summary:?}"
    );
}

#[test]
fn local_mode_says_what_is_wrong() {
    let out = Command::new(env!("CARGO_BIN_EXE_kubetap"))
        .args([
            "tap",
            "--local",
            "-i",
            "kt-no-such-if0",
            "--port",
            &free_port().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // Without the privilege the socket is refused before the interface is
    // looked up: that is what the message names then.
    let says = if is_root() {
        "'kt-no-such-if0': no such network interface"
    } else {
        "capturing on 'kt-no-such-if0' needs root or CAP_NET_RAW"
    };
    assert!(err.contains(says), "{err}");

    // A packet ring the machine cannot hold is refused before anything runs.
    let out = Command::new(env!("CARGO_BIN_EXE_kubetap"))
        .args(["tap", "--local", "-i", "lo", "--pcap-ring", "1PiB"])
        .args(["--port", &free_port().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "--pcap-ring: a packet ring of 1.0 PiB is more than half of this machine's memory"
        ),
        "{err}"
    );

    // A pod list that is missing, or not a pod list.
    let dir = TempDir::new("tap-pods");
    let bad = dir.path("pods.json");
    std::fs::write(&bad, r#"[{"name": "web", "ips": ["10.0.0.300"]}]"#).unwrap();
    for (list, says) in [
        (dir.path("missing.json"), "reading the pod list"),
        (bad, "is not valid"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kubetap"))
            .args(["tap", "--local", "--port", &free_port().to_string()])
            .arg("--pods")
            .arg(&list)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(says) && err.contains(&*list.to_string_lossy()),
            "{err}"
        );
    }

    // Without a cluster, `tap` says how to tap this host instead.
    let out = Command::new(env!("CARGO_BIN_EXE_kubetap"))
        .args(["tap"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kubeconfig") && err.contains("kubetap tap --local"),
        "{err}"
    );

    if is_root() && require(&["setpriv"]) {
        // The binary may sit where nobody cannot read it: run a copy.
        let dir = TempDir::new("tap-nopriv");
        let exe = dir.path("kubetap");
        std::fs::copy(env!("CARGO_BIN_EXE_kubetap"), &exe).unwrap();
        Command::new("chmod")
            .args(["-R", "a+rx"])
            .arg(dir.root())
            .status()
            .unwrap();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&exe)
            .args([
                "tap",
                "--local",
                "-i",
                "lo",
                "--port",
                &free_port().to_string(),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("needs root or CAP_NET_RAW"), "{err}");
    }
}
