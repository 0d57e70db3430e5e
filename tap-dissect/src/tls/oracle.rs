//! Real TLS handshakes, real oracle: `openssl s_client` connects to
//! `openssl s_server` on loopback, TLS 1.2 (its certificate in clear) and
//! TLS 1.3, with and without a server name, offering application protocols,
//! and once with no cipher suite in common (the server's handshake_failure
//! alert). Captured by dumpcap, the file is read by kubetap and by tshark's
//! TLS dissector: per connection, the server name and application protocols
//! offered, the version, cipher suite and application protocol chosen, the
//! certificate's names and the alert must agree.
//!
//! Needs root, dumpcap, tshark and openssl; skips with the reason
//! otherwise, unless KUBETAP_REQUIRE_PEERS=1, where it fails.

#[path = "../../../tap-cli/tests/peers/mod.rs"]
mod peers;

use peers::{Capture, Peer, TempDir, free_port};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

/// One connection as both readers see it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Handshake {
    server_name: String,
    alpn_offered: String,
    version: String,
    cipher_suite: String,
    alpn: String,
    sans: Vec<String>,
    alert: Option<u64>,
}

/// Per client port.
type Handshakes = BTreeMap<u64, Handshake>;

fn version_name(hex: &str) -> String {
    match hex {
        "0x0303" => "TLS 1.2",
        "0x0304" => "TLS 1.3",
        other => other,
    }
    .to_string()
}

/// tshark's view: ClientHellos by source port, ServerHellos, certificates
/// and alerts by destination port (the client's).
fn tshark_view(file: &Path, ports: &[u16]) -> Handshakes {
    let mut decode = Vec::new();
    for p in ports {
        decode.push("-d".to_string());
        decode.push(format!("tcp.port=={p},tls"));
    }
    let decode: Vec<&str> = decode.iter().map(String::as_str).collect();
    let first = |v: &Vec<String>| v.first().cloned().unwrap_or_default();
    let port = |v: &Vec<String>| first(v).parse::<u64>().unwrap();
    let mut out = Handshakes::new();
    for row in peers::tshark_fields(
        file,
        &decode,
        "tls.handshake.type == 1",
        &[
            "tcp.srcport",
            "tls.handshake.extensions_server_name",
            "tls.handshake.extensions_alpn_str",
        ],
    ) {
        let h = out.entry(port(&row[0])).or_default();
        h.server_name = first(&row[1]);
        h.alpn_offered = row[2].join(",");
    }
    for row in peers::tshark_fields(
        file,
        &decode,
        "tls.handshake.type == 2",
        &[
            "tcp.dstport",
            "tls.handshake.version",
            "tls.handshake.extensions.supported_version",
            "tls.handshake.extensions_alpn_str",
        ],
    ) {
        let h = out.entry(port(&row[0])).or_default();
        let version = row[2].first().or(row[1].first()).unwrap();
        h.version = version_name(version);
        h.alpn = first(&row[3]);
    }
    for row in peers::tshark_fields(
        file,
        &decode,
        "tls.handshake.type == 11",
        &["tcp.dstport", "x509ce.dNSName"],
    ) {
        out.entry(port(&row[0])).or_default().sans = row[1].clone();
    }
    for row in peers::tshark_fields(
        file,
        &decode,
        "tls.alert_message.desc",
        &["tcp.srcport", "tcp.dstport", "tls.alert_message.desc"],
    ) {
        // An alert either way belongs to the client's connection.
        let (src, dst) = (port(&row[0]), port(&row[1]));
        let client = if ports.contains(&(src as u16)) {
            dst
        } else {
            src
        };
        out.entry(client).or_default().alert = first(&row[2]).parse().ok();
    }
    for (client, name) in cipher_suites(file, &decode) {
        out.entry(client).or_default().cipher_suite = name;
    }
    out
}

/// The cipher suite each ServerHello chose, by name as tshark's detail
/// view writes it ("Cipher Suite: TLS_AES_256_GCM_SHA384 (0x1302)"), per
/// client port.
fn cipher_suites(file: &Path, decode: &[&str]) -> Vec<(u64, String)> {
    let out = peers::run(
        Command::new("tshark")
            .args(["-n", "-r"])
            .arg(file)
            .args(decode)
            .args(["-Y", "tls.handshake.type == 2", "-O", "tls", "-V"]),
    );
    let mut found = Vec::new();
    let mut client = None;
    for line in String::from_utf8(out).unwrap().lines() {
        let line = line.trim();
        if let Some(at) = line.find("Dst Port: ") {
            let digits = line[at + 10..].split(|c: char| !c.is_ascii_digit()).next();
            client = digits.and_then(|d| d.parse::<u64>().ok());
        }
        if let Some(rest) = line.strip_prefix("Cipher Suite: ")
            && let Some(c) = client
        {
            found.push((c, rest.split(" (").next().unwrap().to_string()));
        }
    }
    found
}

#[test]
fn tls_handshakes_match_tshark() {
    if !peers::require(&["openssl"]) {
        return;
    }
    let dir = TempDir::new("tls-oracle");
    let (key, cert) = (dir.path("key.pem"), dir.path("cert.pem"));
    peers::run(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "30",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-subj", "/O=kubetap/CN=shop.internal", "-addext"])
            .arg("subjectAltName=DNS:shop.internal,DNS:*.shop.internal"),
    );
    let server = |port: u16, options: &[&str]| {
        let peer = Peer::spawn(
            Command::new("openssl")
                .args(["s_server", "-quiet", "-accept"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("-cert")
                .arg(&cert)
                .arg("-key")
                .arg(&key)
                .args(options)
                .stdin(Stdio::null()),
        );
        peer.wait_for_port(port);
        peer
    };
    let (v12, v13, strict) = (free_port(), free_port(), free_port());
    let _v12 = server(v12, &["-tls1_2", "-alpn", "http/1.1"]);
    let _v13 = server(v13, &["-tls1_3", "-alpn", "h2,http/1.1"]);
    let _strict = server(
        strict,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
    );

    let capture = Capture::start(
        dir.path("tls.pcapng"),
        &format!("tcp port {v12} or tcp port {v13} or tcp port {strict}"),
    );
    let client = |port: u16, options: &[&str]| {
        Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    let tls12 = ["-tls1_2", "-servername", "shop.internal"];
    assert!(client(v12, &[&tls12[..], &["-alpn", "h2,http/1.1"]].concat()).success());
    let tls13 = ["-tls1_3", "-servername", "api.shop.internal"];
    assert!(client(v13, &[&tls13[..], &["-alpn", "h2"]].concat()).success());
    assert!(client(v13, &["-tls1_3", "-noservername"]).success());
    let refused = client(
        strict,
        &[&tls12[..], &["-cipher", "ECDHE-ECDSA-AES256-SHA"]].concat(),
    );
    assert!(
        !refused.success(),
        "no common cipher suite, yet it connected"
    );
    let file = capture.stop();

    let theirs = tshark_view(&file, &[v12, v13, strict]);
    let entries = peers::kubetap_entries(&file);
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut ours = Handshakes::new();
    for e in entries.iter().filter(|e| e["protocol"] == "tls") {
        let (req, resp) = (&e["request"], &e["response"]);
        let alpn: Vec<String> = req["alpn"].as_array().unwrap().iter().map(text).collect();
        let sans = resp["certificate_sans"]
            .as_array()
            .unwrap()
            .iter()
            .map(text)
            .collect();
        let h = Handshake {
            server_name: text(&req["server_name"]),
            alpn_offered: alpn.join(","),
            version: text(&resp["version"]),
            cipher_suite: text(&resp["cipher_suite"]),
            alpn: text(&resp["alpn"]),
            sans,
            alert: resp["alert"].as_u64(),
        };
        let client = e["src"]["port"].as_u64().unwrap();
        assert!(ours.insert(client, h).is_none(), "two entries for {client}");
    }
    assert_eq!(ours.len(), 4, "{entries:#?}");
    assert_eq!(ours, theirs, "handshakes per connection");

    // What the four were meant to show, so that agreeing on nothing fails.
    let by_name = |n: &str| ours.values().find(|h| h.server_name == n).unwrap();
    let tls12 = ours.values().find(|h| h.alpn == "http/1.1").unwrap();
    assert_eq!(tls12.version, "TLS 1.2");
    assert_eq!(tls12.sans, ["shop.internal", "*.shop.internal"]);
    let tls13 = by_name("api.shop.internal");
    assert_eq!(tls13.version, "TLS 1.3");
    assert!(tls13.sans.is_empty() && tls13.cipher_suite.starts_with("TLS_AES_"));
    assert!(
        ours.values()
            .any(|h| h.server_name.is_empty() && h.version == "TLS 1.3")
    );
    assert!(ours.values().any(|h| h.alert == Some(40)), "{ours:#?}");
    let failed = entries
        .iter()
        .find(|e| e["protocol"] == "tls" && e["response"]["status"] == 40)
        .unwrap();
    assert_eq!(
        failed["response"]["alert_name"], "handshake_failure",
        "{failed}"
    );
    let unnamed = entries
        .iter()
        .find(|e| e["protocol"] == "tls" && e["request"]["server_name"].is_null())
        .unwrap();
    assert_eq!(
        unnamed["request"]["path"],
        format!("127.0.0.1:{v13}"),
        "{unnamed}"
    );
}
