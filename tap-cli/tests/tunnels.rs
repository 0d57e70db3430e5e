//! Traffic inside a real VXLAN overlay, as a node's uplink carries it
//! (Flannel's and Calico's VXLAN mode): two testkit pods stand for two nodes,
//! the kernel's vxlan devices between them carry an overlay subnet, curl on
//! one node asks a Python server on the other through it, and tcpdump on the
//! underlay sees only UDP to port 4789. `kubetap read` of that capture must
//! show the HTTP exchange between the overlay addresses.

mod peers;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::{Node, Pod, TempDir, require};

/// Makes `vx0` on `pod`: VXLAN 42 to `remote` over eth0, address `overlay`/24.
fn vxlan(pod: &Pod, remote: std::net::Ipv4Addr, port: u16, overlay: &str) {
    let ip = |args: &[&str]| {
        let ok = pod.command("ip").args(args).status().unwrap();
        assert!(ok.success(), "ip {args:?} in {}", pod.name);
    };
    let remote = remote.to_string();
    let port = port.to_string();
    ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", "42", "remote", &remote, "dstport", &port,
        "dev", "eth0",
    ]);
    ip(&["addr", "add", &format!("{overlay}/24"), "dev", "vx0"]);
    ip(&["link", "set", "vx0", "up"]);
}

fn http_through_vxlan_is_dissected(port: u16) {
    if !require(&["python3", "curl", "tcpdump"]) {
        return;
    }
    let node = Node::new("vx").unwrap();
    let (a, b) = (node.pod("node-a").unwrap(), node.pod("node-b").unwrap());
    vxlan(&a, b.ip, port, "172.31.0.1");
    vxlan(&b, a.ip, port, "172.31.0.2");
    let _server = b
        .spawn(
            b.command("python3")
                .args(["-m", "http.server", "8080", "--bind", "172.31.0.2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
    let dir = TempDir::new("vxlan");
    let file = dir.join("underlay.pcap");
    let mut dump = a
        .spawn(
            a.command("tcpdump")
                .args(["-i", "eth0", "--immediate-mode", "-U", "-w"])
                .arg(&file)
                .args(["udp", "port", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
    // tcpdump has attached once it has written the file's header (and a
    // moment more, as peers::Capture waits for dumpcap).
    testkit::assert_eventually!(
        Duration::from_secs(20),
        std::fs::metadata(&file).is_ok_and(|m| m.len() >= 24),
        "tcpdump writing {}",
        file.display()
    );
    std::thread::sleep(Duration::from_millis(300));
    // The server listens once the overlay answers.
    testkit::assert_eventually!(
        Duration::from_secs(20),
        a.command("curl")
            .args(["-s", "-o", "/dev/null", "http://172.31.0.2:8080/"])
            .status()
            .unwrap()
            .success(),
        "the server behind the overlay"
    );
    for path in ["/one", "/two"] {
        let ok = a
            .command("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                &format!("http://172.31.0.2:8080{path}"),
            ])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    std::thread::sleep(Duration::from_millis(500));
    // tcpdump writes its buffer when it is told to stop.
    let _ = Command::new("kill")
        .args(["-INT", &dump.id().to_string()])
        .status();
    let _ = dump.wait_timeout(Duration::from_secs(10));
    check(&file, (&a, &b));
}

/// The capture holds only UDP on the underlay, yet kubetap finds the
/// overlay's HTTP, and each entry names the hop it crossed: VXLAN 42
/// between the two "nodes".
fn check(file: &Path, (a, b): (&Pod, &Pod)) {
    // kubetap read --json, which must succeed.
    let entries = peers::kubetap_entries(file);
    let http: Vec<(String, String, i64)> = entries
        .iter()
        .filter(|e| e["protocol"] == "http")
        .map(|e| {
            (
                e["dst"]["ip"].as_str().unwrap().to_string(),
                e["request"]["path"].as_str().unwrap().to_string(),
                e["response"]["status"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    for path in ["/one", "/two"] {
        assert!(
            http.contains(&("172.31.0.2".to_string(), path.to_string(), 404)),
            "{path} not among {http:?}"
        );
    }
    assert!(
        entries.iter().all(|e| e["dst"]["port"] != 4789),
        "an entry for the tunnel itself: {entries:?}"
    );
    for e in entries.iter().filter(|e| e["protocol"] == "http") {
        let t = &e["tunnel"];
        assert_eq!(t["kind"], "vxlan", "{e}");
        assert_eq!(t["vni"], 42, "{e}");
        // The connection's first packet went from node a to node b.
        assert_eq!(t["src"], a.ip.to_string(), "{e}");
        assert_eq!(t["dst"], b.ip.to_string(), "{e}");
    }
}

#[test]
fn http_inside_vxlan_on_the_iana_port_is_dissected() {
    http_through_vxlan_is_dissected(4789);
}

#[test]
fn http_inside_vxlan_on_flannels_port_is_dissected() {
    http_through_vxlan_is_dissected(8472);
}
