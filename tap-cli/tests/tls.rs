//! TLS in plain text, end to end: a hub and a `tap-worker --tls` capturing
//! two pods of a node (network namespaces on a bridge); HTTPS servers
//! started in one pod after the worker (so discovery must find them), real
//! clients in the other:
//!
//! - a Python `http.server` over `ssl` (`SSL_read_ex`/`SSL_write_ex`) with
//!   curl (HTTP/1.1) and `openssl s_client` as clients;
//! - `nghttpd` (HTTP/2 over TLS) with `curl --http2`;
//! - `openssl s_server -www` with `openssl s_client`: the server reads
//!   through an SSL BIO, which never calls `SSL_read`, so this exchange is
//!   read from the client's side alone;
//! - a Go HTTPS server and Go clients (crypto/tls, built by the test) over
//!   HTTP/1.1 and HTTP/2, the client started after the worker too.
//!
//! Every request must be one entry marked `tls`, with the right method,
//! path, status, protocol and both ends' pod addresses and names; none of
//! those connections may also show as an encrypted `tls` or `tcp` entry;
//! the hub's workers API must show libssl hooked with its processes in
//! their pod, and the Go binaries hooked as Go. And a client the worker
//! cannot hook (wget, on GnuTLS) talking to `s_server -www` gives a `tls`
//! entry with its SNI. The PCAP export of a decrypted exchange holds its
//! plaintext as TCP on the connection's addresses, which tshark reads as
//! HTTP (each packet's comment says it was made, not captured), and no TLS
//! record; exported with `encrypted=true`, the connection's captured TLS
//! records come beside the same HTTP. Needs root
//! (eBPF, namespaces), python3, curl, wget, openssl, nghttpd, go and tshark.

mod peers;

use peers::node;
use std::io::{BufRead as _, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::{Node, TempDir, require, require_root};

/// `openssl s_client` sending `request`, kept open a moment so the answer
/// arrives before it closes.
fn s_client(client: &testkit::Pod, addr: &str, request: &str) -> String {
    let mut child = client
        .command("openssl")
        .args(["s_client", "-quiet", "-connect", addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn curl(client: &testkit::Pod, args: &[&str]) -> String {
    let out = client
        .command("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Go HTTPS client (`testkit::go::HTTPS_CLIENT`) in `pod`, asking for
/// `path` once it is hooked (`hooked(pid)` turns true); its answer's line.
fn go_client(
    pod: &testkit::Pod,
    binary: &std::path::Path,
    base: &str,
    mode: &str,
    path: &str,
    hooked: impl Fn(u32) -> bool,
) -> String {
    let mut process = pod
        .spawn(
            pod.command(binary.to_str().unwrap())
                .args([base, mode, path])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .unwrap();
    let mut lines = std::io::BufReader::new(process.child().stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let pid = process.id();
    testkit::eventually(Duration::from_secs(20), "the Go client hooked", || {
        hooked(pid).then_some(())
    });
    let mut stdin = process.child().stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    let answer = lines.next().unwrap().unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "done");
    drop(stdin);
    let _ = process.wait_timeout(Duration::from_secs(10));
    answer
}

/// The pids of the processes of the hooked TLS libraries and Go binaries.
fn hooked_pids(node: &Node, http: u16) -> Vec<u64> {
    let v = node::api(node, http, "/api/workers");
    let libs = v["workers"][0]["tls"]["libraries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    libs.iter()
        .filter(|l| l["hooked"] == true)
        .flat_map(|l| l["processes"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["pid"].as_u64())
        .collect()
}

#[test]
fn tls_plaintext_of_openssl_peers_in_pods() {
    if !require_root()
        || !require(&[
            "python3", "curl", "wget", "openssl", "nghttpd", "go", "tshark",
        ])
    {
        return;
    }
    let node = Node::new("tls").unwrap();
    let web = node.pod("web").unwrap();
    let client = node.pod("client").unwrap();
    // Not in the pods list: its TLS is read by the probes (they hook the
    // library file) but not dissected.
    let other = node.pod("other").unwrap();
    let dir = TempDir::new("tls");
    let (cert, key) = testkit::self_signed(&dir, "web");
    let pods = dir.path("pods.json");
    let pod = |p: &testkit::Pod| serde_json::json!({"name": p.name, "namespace": "shop", "ips": [p.ip.to_string()]});
    std::fs::write(
        &pods,
        serde_json::json!([pod(&web), pod(&client)]).to_string(),
    )
    .unwrap();

    let (grpc, http) = (18898, 18899);
    let _hub = node::hub(&node, grpc, http, &[]);
    let _worker = node::worker(
        &node,
        grpc,
        "node-a",
        &["--pods", pods.to_str().unwrap(), "--tls"],
        "capturing",
    );

    let go_server = testkit::go::build(
        dir.root(),
        "go-server",
        testkit::go::HTTPS_SERVER,
        testkit::go::Link::Full,
    );
    let go_client_bin = testkit::go::build(
        dir.root(),
        "go-client",
        testkit::go::HTTPS_CLIENT,
        testkit::go::Link::Full,
    );

    // The servers start after the worker.
    let htdocs = dir.path("htdocs");
    std::fs::create_dir_all(&htdocs).unwrap();
    std::fs::write(htdocs.join("h2-page"), "over http/2\n").unwrap();
    let ip = web.ip.to_string();
    let _py = web
        .spawn(
            web.command("python3")
                .args([peers::HTTPS_SERVER, &ip, "8443"])
                .arg(&cert)
                .arg(&key)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
    let _h2 = web
        .spawn(
            web.command("nghttpd")
                .arg("-d")
                .arg(&htdocs)
                .arg("8444")
                .arg(&key)
                .arg(&cert)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
    let _www = web
        .spawn(
            web.command("openssl")
                .args(["s_server", "-www", "-accept", "4433", "-cert"])
                .arg(&cert)
                .arg("-key")
                .arg(&key)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
    let _go = web
        .spawn(
            web.command(go_server.to_str().unwrap())
                .arg(format!("{ip}:8445"))
                .arg(&cert)
                .arg(&key)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
    for port in [8443, 8444, 4433, 8445] {
        node.wait_for_tcp(web.addr(port), Duration::from_secs(20))
            .unwrap();
    }
    // Discovery looks at new programs within a second or so.
    testkit::eventually(
        Duration::from_secs(20),
        "the servers' libssl and Go binary hooked",
        || {
            let pids = hooked_pids(&node, http);
            [_py.id(), _h2.id(), _www.id(), _go.id()]
                .iter()
                .all(|p| pids.contains(&u64::from(*p)))
                .then_some(())
        },
    );

    let py = format!("https://{ip}:8443");
    assert_eq!(
        curl(&client, &["--http1.1", &format!("{py}/curl-one")]),
        "1.1 200"
    );
    assert_eq!(
        curl(&client, &["--http1.1", &format!("{py}/missing-curl")]),
        "1.1 404"
    );
    assert_eq!(
        curl(&client, &["--http2", &format!("https://{ip}:8444/h2-page")]),
        "2 200"
    );
    let answer = s_client(
        &client,
        &format!("{ip}:8443"),
        "GET /s-client HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.contains("/s-client"), "{answer}");
    let answer = s_client(
        &client,
        &format!("{ip}:4433"),
        "GET /www-page HTTP/1.0\r\n\r\n",
    );
    assert!(answer.contains("200 ok"), "{answer}");

    let go_base = format!("https://{ip}:8445");
    let hooked = |pid: u32| hooked_pids(&node, http).contains(&u64::from(pid));
    assert_eq!(
        go_client(&client, &go_client_bin, &go_base, "h1", "/go-h1", hooked),
        "HTTP/1.1 200"
    );
    assert_eq!(
        go_client(&client, &go_client_bin, &go_base, "h2", "/go-h2", hooked),
        "HTTP/2.0 200"
    );

    // wget (GnuTLS: not hooked) by name, which it sends as the SNI; the
    // name comes from the client pod's own hosts file (`ip netns exec`
    // mounts /etc/netns/<netns>/hosts over /etc/hosts).
    let hosts = HostsFile::new(&client.netns, &format!("{ip} web.shop.test\n"));
    let got = client
        .command("wget")
        .args(["-q", "-O", "-", "--no-check-certificate", "--tries=1"])
        .arg("https://web.shop.test:4433/unhooked")
        .output()
        .unwrap();
    assert!(
        got.status.success() && String::from_utf8_lossy(&got.stdout).contains("s_server"),
        "wget: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    drop(hosts);
    let handshake = testkit::eventually(Duration::from_secs(30), "wget's tls entry", || {
        let v = node::api(
            &node,
            http,
            "/api/entries?filter=protocol%20%3D%3D%20%22tls%22&limit=50",
        );
        v["entries"]
            .as_array()?
            .iter()
            .find(|e| e["request"]["server_name"] == "web.shop.test")
            .cloned()
    });
    assert_eq!(handshake["tls"], false, "not decrypted: {handshake}");
    assert_eq!(handshake["dst"]["port"], 4433, "{handshake}");
    assert_eq!(handshake["src"]["pod"], "client", "{handshake}");

    // (path, protocol, status, server port)
    let expected = [
        ("/curl-one", "http", 200, 8443),
        ("/missing-curl", "http", 404, 8443),
        ("/h2-page", "http2", 200, 8444),
        ("/s-client", "http", 200, 8443),
        ("/www-page", "http", 200, 4433),
        ("/go-h1", "http", 200, 8445),
        ("/go-h2", "http2", 200, 8445),
    ];
    // `/www-page` comes last: its answer ends with the connection, and the
    // client's flow ends when idle (30 s); the limit leaves room on a busy
    // machine.
    let started = std::time::Instant::now();
    let entries = loop {
        let v = node::api(&node, http, "/api/entries?limit=200");
        let es = v["entries"].as_array().cloned().unwrap_or_default();
        let missing: Vec<&str> = expected
            .iter()
            .map(|(p, ..)| *p)
            .filter(|p| !es.iter().any(|e| e["request"]["path"] == *p))
            .collect();
        if missing.is_empty() {
            break es;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let workers = node::api(&node, http, "/api/workers");
            panic!(
                "not within 90 s: an entry for {missing:?}; the entries: {:?}; the worker: {}",
                es.iter()
                    .map(|e| format!("{} {} {}", e["protocol"], e["request"]["path"], e["tls"]))
                    .collect::<Vec<_>>(),
                workers["workers"][0]
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    for (path, protocol, status, port) in expected {
        let found: Vec<&serde_json::Value> = entries
            .iter()
            .filter(|e| e["request"]["path"] == path)
            .collect();
        assert_eq!(found.len(), 1, "{path} once: {found:?}");
        let e = found[0];
        assert_eq!(e["tls"], true, "{e}");
        assert_eq!(e["protocol"], protocol, "{e}");
        assert_eq!(e["request"]["method"], "GET", "{e}");
        assert_eq!(e["response"]["status"], status, "{e}");
        assert_eq!(e["src"]["ip"], client.ip.to_string(), "{e}");
        assert_eq!(e["src"]["pod"], "client", "{e}");
        assert_eq!(e["dst"]["ip"], ip, "{e}");
        assert_eq!(e["dst"]["port"], port, "{e}");
        assert_eq!(e["dst"]["pod"], "web", "{e}");
        assert_eq!(e["dst"]["namespace"], "shop", "{e}");
    }
    // The encrypted packets of the client's connections are not a `tls`
    // (handshake) or `tcp` entry too. The node's own port checks above are
    // `tcp` entries, rightly.
    std::thread::sleep(Duration::from_secs(2));
    let v = node::api(
        &node,
        http,
        "/api/entries?filter=protocol%20in%20%5B%22tcp%22%2C%20%22tls%22%5D&limit=200",
    );
    let tcp: Vec<&serde_json::Value> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["src"]["ip"] == client.ip.to_string())
        .filter(|e| e["request"]["server_name"] != "web.shop.test")
        .collect();
    assert!(tcp.is_empty(), "encrypted entries shown: {tcp:?}");

    // The decrypted exchange, exported: tshark reads the plaintext as HTTP
    // on the connection's addresses, and nothing encrypted.
    let filter = testkit::http::encode(r#"request.path == "/curl-one""#);
    let export = |name: &str, query: &str| {
        let pcap = node::get(&node, http, &format!("/api/pcap?filter={filter}{query}"));
        let file = dir.path(name);
        std::fs::write(&file, &pcap).unwrap();
        file
    };
    let http_fields = [
        "ip.src",
        "tcp.srcport",
        "tcp.dstport",
        "http.request.uri",
        "http.response.code",
        "frame.comment",
    ];
    let tls_fields = [
        "tcp.srcport",
        "tcp.dstport",
        "tls.record.content_type",
        // TLS 1.3's encrypted records, application data outwardly.
        "tls.record.opaque_type",
        "frame.comment",
    ];
    let plain = export("curl-one.pcapng", "");
    let rows = peers::tshark_fields(&plain, &[], "http", &http_fields);
    assert_eq!(rows.len(), 2, "a request and its answer: {rows:?}");
    assert_eq!(rows[0][0], [client.ip.to_string()], "{rows:?}");
    assert_eq!(rows[0][2], ["8443"], "{rows:?}");
    assert_eq!(rows[0][3], ["/curl-one"], "{rows:?}");
    assert_eq!(rows[1][4], ["200"], "{rows:?}");
    assert!(
        rows.iter().all(|r| r[5].concat().contains("TLS plaintext")),
        "{rows:?}"
    );
    let client_port = rows[0][1].clone();
    let tls = peers::tshark_fields(&plain, &[], "tls", &tls_fields);
    assert!(tls.is_empty(), "encrypted packets exported: {tls:?}");

    // Asked for, the connection's captured packets come beside: its TLS
    // records, on the same two ports, each saying it was captured, every
    // one read as TLS (not taken into the made packets' stream), and the
    // plaintext reads as before.
    let both = export("curl-one-encrypted.pcapng", "&encrypted=true");
    assert_eq!(
        peers::tshark_fields(&both, &[], "http", &http_fields),
        rows,
        "the plaintext as before"
    );
    let tls = peers::tshark_fields(&both, &[], "tls", &tls_fields);
    let types = |col: usize| -> Vec<&str> {
        tls.iter()
            .flat_map(|r| r[col].iter().map(String::as_str))
            .collect()
    };
    assert!(types(2).contains(&"22"), "a handshake: {tls:?}");
    assert!(types(3).contains(&"23"), "application data: {tls:?}");
    let mut connection = [client_port.concat(), "8443".to_string()];
    connection.sort();
    for r in &tls {
        let mut ports = [r[0].concat(), r[1].concat()];
        ports.sort();
        assert_eq!(ports, connection, "{tls:?}");
        assert!(r[4].concat().contains("captured (encrypted)"), "{tls:?}");
    }
    let unread = peers::tshark_fields(
        &both,
        &[],
        r#"frame.comment contains "captured (encrypted)" && tcp.len > 0 && !tls"#,
        &["frame.number", "tcp.stream"],
    );
    assert!(
        unread.is_empty(),
        "captured bytes not read as TLS: {unread:?}"
    );

    // A pod not targeted talking to itself over TLS, through the same
    // libssl file as the targets: its processes are not followed, and the
    // kernel programs do not read their calls (not one record more).
    let other_ip = other.ip.to_string();
    let records = |v: &serde_json::Value| v["workers"][0]["tls"]["records"].as_u64().unwrap();
    let other_py = node::https_server(&node, &other, &cert, &key);
    std::thread::sleep(Duration::from_secs(2));
    let before = node::api(&node, http, "/api/workers");
    assert_eq!(
        curl(
            &other,
            &["--http1.1", &format!("https://{other_ip}:8443/untargeted")]
        ),
        "1.1 200"
    );
    std::thread::sleep(Duration::from_secs(3));
    let after = node::api(&node, http, "/api/workers");
    assert_eq!(
        records(&after),
        records(&before),
        "an untargeted pod's calls were read: {after}"
    );
    assert_eq!(
        after["workers"][0]["tls"]["untargeted_connections"], 0,
        "{after}"
    );
    let listed: Vec<u64> = after["workers"][0]["tls"]["libraries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["processes"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    assert!(
        !listed.contains(&u64::from(other_py.id())),
        "the untargeted pod's server is listed: {listed:?}"
    );
    let v = node::api(&node, http, "/api/entries?limit=500");
    assert!(
        !v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["request"]["path"] == "/untargeted" || e["src"]["ip"] == other_ip.as_str()),
        "an untargeted pod's traffic made entries"
    );

    let workers = node::api(&node, http, "/api/workers");
    let tls = &workers["workers"][0]["tls"];
    assert_eq!(tls["state"], "on", "{tls}");
    assert!(
        tls["encrypted_entries_replaced"].as_u64().unwrap() >= 4,
        "{tls}"
    );
    let libs = tls["libraries"].as_array().unwrap();
    let ssl = libs
        .iter()
        .find(|l| l["path"].as_str().unwrap().contains("libssl.so"))
        .unwrap_or_else(|| panic!("no libssl: {tls}"));
    assert_eq!(ssl["kind"], "openssl");
    assert!(ssl["bytes"].as_u64().unwrap() > 0, "{ssl}");
    let functions = ssl["functions"].as_array().unwrap();
    assert!(functions.iter().any(|f| f == "SSL_read_ex"), "{ssl}");
    let python = ssl["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == _py.id())
        .unwrap_or_else(|| panic!("the Python server is not listed: {ssl}"));
    assert_eq!(python["pod"], "web", "{python}");
    assert_eq!(python["namespace"], "shop", "{python}");
    let go = libs
        .iter()
        .find(|l| l["path"] == go_server.to_str().unwrap())
        .unwrap_or_else(|| panic!("the Go server is not listed: {tls}"));
    assert_eq!(go["kind"], "go", "{go}");
    assert_eq!(go["hooked"], true, "{go}");
    assert_eq!(
        go["functions"],
        serde_json::json!(["crypto/tls.(*Conn).Write", "crypto/tls.(*Conn).Read"]),
        "{go}"
    );
    assert!(go["bytes"].as_u64().unwrap() > 0, "{go}");
    let process = &go["processes"][0];
    assert_eq!(process["pid"], _go.id(), "{go}");
    assert_eq!(process["pod"], "web", "{go}");
    let drops = &workers["workers"][0]["counters"]["drops_by_cause"];
    for cause in ["tls_ring_full", "tls_unreadable", "tls_calls_full"] {
        assert_eq!(drops[cause], 0, "{cause}: {drops}");
    }
}

/// A pod's own /etc/hosts: `ip netns exec NS` mounts /etc/netns/NS/hosts
/// over /etc/hosts for what it runs. Removed on drop.
struct HostsFile(std::path::PathBuf);

impl HostsFile {
    fn new(netns: &str, text: &str) -> HostsFile {
        let dir = std::path::Path::new("/etc/netns").join(netns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hosts"), text).unwrap();
        HostsFile(dir)
    }
}

impl Drop for HostsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Without the capabilities eBPF needs (root, with CAP_BPF, CAP_PERFMON
/// and CAP_SYS_ADMIN taken out of its bounding set), `--tls` says what is
/// missing and the packets are captured all the same; nothing panics.
#[test]
fn without_bpf_privileges_tls_says_why_and_packets_are_still_captured() {
    if !require_root() || !require(&["setpriv"]) {
        return;
    }
    let port = testkit::free_port();
    let mut tap = peers::Peer::start(
        testkit::http::with_token(&mut Command::new("setpriv"))
            .args(["--bounding-set", "-bpf,-perfmon,-sys_admin", "--"])
            .arg(env!("CARGO_BIN_EXE_kubetap"))
            .args([
                "tap",
                "--local",
                "-i",
                "lo",
                "--tls",
                "--port",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stderr = tap.child().stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut seen = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let done = line.contains("--tls:");
        seen.push(line);
        if done {
            break;
        }
    }
    let said = seen.join("\n");
    assert!(said.contains("capturing on lo"), "{said}");
    assert!(
        said.contains("--tls: ") && said.contains("capturing packets without TLS plaintext"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    // Still serving, with the reason in the workers API.
    let tls = testkit::eventually(Duration::from_secs(10), "the TLS status", || {
        let (status, body) = peers::serve::get(port, "/api/workers");
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (status == 200 && v["workers"][0]["tls"].is_object())
            .then(|| v["workers"][0]["tls"].clone())
    });
    assert_eq!(tls["state"], "unavailable", "{tls}");
    assert!(!tls["reason"].as_str().unwrap_or("").is_empty(), "{tls}");
    Command::new("kill")
        .args(["-INT", &tap.id().to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = tap.child().wait().unwrap();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("TLS plaintext unavailable")),
        "{rest:?}"
    );
}
