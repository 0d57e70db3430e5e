//! Real DNS traffic, real oracle: dnsmasq answers dig on 127.0.0.1 at a free
//! high port, over UDP and TCP (one query per connection, and several on one
//! kept-open connection); dumpcap captures it, and kubetap's queries and
//! responses must match tshark's DNS dissector: the same count of each, and
//! per transaction the same name, type and response code.
//!
//! Needs root, dumpcap, tshark, dnsmasq and dig (`cargo xtask setup` installs
//! them). Without them the test says why and skips, unless
//! KUBETAP_REQUIRE_PEERS=1 (set by `cargo xtask test`), where it fails.

#[path = "../../../tap-cli/tests/peers/mod.rs"]
mod peers;

use peers::{Capture, Peer, TempDir, free_port, run};
use std::path::Path;
use std::process::Command;

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Query types by the number tshark prints for them.
fn type_code(name: &str) -> u16 {
    match name {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        other => panic!("query type {other} is not in the test's table"),
    }
}

/// One DNS message as both tools must see it: (id, first question's name, its type, rcode).
/// Queries carry no rcode.
type Seen = (u16, String, u16, Option<u16>);

struct View {
    queries: Vec<Seen>,
    responses: Vec<Seen>,
}

fn tshark_view(file: &Path, port: u16) -> View {
    let rows = peers::tshark_fields(
        file,
        &[
            "-d",
            &format!("udp.port=={port},dns"),
            "-d",
            &format!("tcp.port=={port},dns"),
        ],
        "dns",
        &[
            "dns.id",
            "dns.qry.name",
            "dns.qry.type",
            "dns.flags.rcode",
            "dns.flags.response",
        ],
    );
    let mut v = View {
        queries: Vec::new(),
        responses: Vec::new(),
    };
    for row in rows {
        // One message per packet here: dig waits for each answer before the next query.
        assert_eq!(
            row[0].len(),
            1,
            "one DNS message per packet expected: {row:?}"
        );
        let id = u16::from_str_radix(row[0][0].trim_start_matches("0x"), 16).unwrap();
        let name = row[1][0].clone();
        let qtype: u16 = row[2][0].parse().unwrap();
        if row[4][0] == "1" || row[4][0] == "True" {
            let rcode: u16 = row[3][0].parse().unwrap();
            v.responses.push((id, name, qtype, Some(rcode)));
        } else {
            v.queries.push((id, name, qtype, None));
        }
    }
    v.queries.sort();
    v.responses.sort();
    v
}

fn kubetap_view(entries: &[serde_json::Value]) -> View {
    let mut v = View {
        queries: Vec::new(),
        responses: Vec::new(),
    };
    for e in entries {
        assert_eq!(e["protocol"], "dns", "not a DNS entry: {e}");
        let (req, resp) = (&e["request"], &e["response"]);
        if req.is_object() {
            v.queries.push((
                req["id"].as_u64().unwrap() as u16,
                req["name"].as_str().unwrap().to_string(),
                type_code(req["qtype"].as_str().unwrap()),
                None,
            ));
        }
        if resp.is_object() {
            let q = &resp["questions"][0];
            v.responses.push((
                resp["id"].as_u64().unwrap() as u16,
                q["name"].as_str().unwrap().to_string(),
                type_code(q["type"].as_str().unwrap()),
                Some(resp["rcode"].as_u64().unwrap() as u16),
            ));
        }
    }
    v.queries.sort();
    v.responses.sort();
    v
}

fn dig(port: u16, extra: &[&str], questions: &[(&str, &str)]) {
    let mut cmd = Command::new("dig");
    cmd.args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=5"])
        .args(extra);
    for (name, qtype) in questions {
        cmd.args([*name, *qtype]);
    }
    run(&mut cmd);
}

#[test]
fn dns_entries_match_tshark_on_real_dnsmasq_traffic() {
    if !peers::require(&[DNSMASQ, "dig"]) {
        return;
    }
    let dir = TempDir::new("dns-oracle");
    let hosts = dir.path("hosts");
    std::fs::write(
        &hosts,
        "10.0.0.7 web.test.example\nfd00::7 web.test.example\n",
    )
    .unwrap();
    let port = free_port();
    let server = Peer::spawn(
        Command::new(DNSMASQ)
            .args([
                "--no-daemon",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
                "--user=root",
                // Names under test.example that it does not know are NXDOMAIN.
                "--local=/test.example/",
                "--cname=alias.test.example,web.test.example",
                "--txt-record=txt.test.example,hello world,second",
                "--mx-host=test.example,mail.test.example,10",
                "--srv-host=_http._tcp.test.example,web.test.example,8080,5,7",
                "--ptr-record=7.0.0.10.in-addr.arpa,web.test.example",
            ])
            .arg(format!("--addn-hosts={}", hosts.display())),
    );
    server.wait_for_port(port);

    let capture = Capture::start(dir.path("dns.pcapng"), &format!("port {port}"));
    // UDP, one query per socket.
    for (name, qtype) in [
        ("web.test.example", "A"),
        ("web.test.example", "AAAA"),
        ("alias.test.example", "A"),
        ("txt.test.example", "TXT"),
        ("test.example", "MX"),
        ("_http._tcp.test.example", "SRV"),
        ("7.0.0.10.in-addr.arpa", "PTR"),
        ("nope.test.example", "A"),
        ("elsewhere.invalid", "A"),
    ] {
        dig(port, &[], &[(name, qtype)]);
    }
    // TCP: a connection per query, then three queries on one kept-open connection.
    dig(port, &["+tcp"], &[("web.test.example", "A")]);
    dig(port, &["+tcp"], &[("missing.test.example", "AAAA")]);
    dig(
        port,
        &["+tcp", "+keepopen"],
        &[
            ("txt.test.example", "TXT"),
            ("alias.test.example", "A"),
            ("test.example", "MX"),
        ],
    );
    let file = capture.stop();
    drop(server);

    let oracle = tshark_view(&file, port);
    assert_eq!(
        (oracle.queries.len(), oracle.responses.len()),
        (14, 14),
        "tshark saw {:?} queries and {:?} responses",
        oracle.queries,
        oracle.responses
    );
    let entries = peers::kubetap_entries(&file);
    let ours = kubetap_view(&entries);
    assert_eq!(ours.queries, oracle.queries, "queries differ");
    assert_eq!(ours.responses, oracle.responses, "responses differ");

    // Each entry pairs a query with the response of the same id, and nothing is left over.
    assert_eq!(entries.len(), 14);
    for e in &entries {
        assert_eq!(e["request"]["id"], e["response"]["id"], "{e}");
        assert_eq!(e["flags"], serde_json::json!([]), "{e}");
        let elapsed = e["elapsed_us"].as_u64().expect("elapsed");
        assert!(elapsed < 5_000_000, "implausible elapsed {elapsed}us: {e}");
        assert!(e["request_size"].as_u64().unwrap() >= 17, "{e}");
        assert!(e["response_size"].as_u64().unwrap() >= 17, "{e}");
    }
    let tcp = entries
        .iter()
        .filter(|e| e["request"]["transport"] == "tcp")
        .count();
    assert_eq!(tcp, 5);
    let keepopen: std::collections::BTreeSet<_> = entries
        .iter()
        .filter(|e| e["request"]["transport"] == "tcp")
        .map(|e| e["flow_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keepopen.len(), 3, "five TCP queries on three connections");

    // What a user reads: generic fields and answers in zone-file form.
    let find = |name: &str, qtype: &str| {
        entries
            .iter()
            .find(|e| {
                e["request"]["path"] == name
                    && e["request"]["method"] == qtype
                    && e["request"]["transport"] == "udp"
            })
            .unwrap_or_else(|| panic!("no entry for {name} {qtype}"))
    };
    let data = |e: &serde_json::Value| -> Vec<String> {
        e["response"]["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                format!(
                    "{} {}",
                    a["type"].as_str().unwrap(),
                    a["data"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(data(find("web.test.example", "A")), ["A 10.0.0.7"]);
    assert_eq!(data(find("web.test.example", "AAAA")), ["AAAA fd00::7"]);
    assert_eq!(
        data(find("alias.test.example", "A")),
        ["CNAME web.test.example.", "A 10.0.0.7"]
    );
    assert_eq!(
        data(find("test.example", "MX")),
        ["MX 10 mail.test.example."]
    );
    assert_eq!(
        data(find("_http._tcp.test.example", "SRV"))[0],
        "SRV 5 7 8080 web.test.example."
    );
    assert_eq!(
        data(find("7.0.0.10.in-addr.arpa", "PTR")),
        ["PTR web.test.example."]
    );
    let nx = find("nope.test.example", "A");
    assert_eq!(nx["response"]["status"], 3);
    assert_eq!(nx["response"]["rcode_name"], "NXDOMAIN");
    let refused = find("elsewhere.invalid", "A");
    assert_eq!(refused["response"]["rcode_name"], "REFUSED");
}
