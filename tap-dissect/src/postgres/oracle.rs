//! Real PostgreSQL traffic, real oracle: a PostgreSQL server of its own, in
//! a temporary directory and on its own loopback port, driven by psql (DDL,
//! inserts, selects, an error, a multi-statement string, COPY TO STDOUT,
//! LISTEN/NOTIFY, a connection to a database that does not exist) and
//! pgbench (initialisation with COPY FROM STDIN, then transactions over the
//! extended protocol, unnamed and prepared), captured by dumpcap. Per
//! connection and in order, kubetap's queries (the SQL of each Query and of
//! each Execute's statement) must equal those tshark's PGSQL dissector
//! finds, and so must the command tags and the SQLSTATEs of the errors.
//!
//! The server runs as `nobody` (PostgreSQL refuses to run as root) from
//! Debian's binaries under /usr/lib/postgresql/<version>/bin, with its data
//! and socket in the temporary directory, so a system cluster (Debian starts
//! one on 5432) is neither used nor touched.
//!
//! Needs root, dumpcap, tshark, psql, pgbench, setpriv and the server
//! (`cargo xtask setup` installs them). Without them the test says why and
//! skips, unless KUBETAP_REQUIRE_PEERS=1 (set by `cargo xtask test`).

#[path = "../../../tap-cli/tests/peers/mod.rs"]
mod peers;

use peers::{Capture, Peer, TempDir, free_port, run};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Per connection (the client's port), in order.
type PerConnection<T> = BTreeMap<u16, Vec<T>>;

/// The newest PostgreSQL server Debian installed (or a path that does not
/// exist, which `peers::require` reports as missing).
fn server_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|d| {
            let v = d.file_name().to_str()?.parse().ok()?;
            let bin = d.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map_or_else(
        || PathBuf::from("/usr/lib/postgresql/VERSION/bin"),
        |(_, b)| b,
    )
}

fn id_of(flag: &str) -> String {
    let out = run(Command::new("id").args([flag, "nobody"]));
    String::from_utf8(out).unwrap().trim().to_string()
}

/// `setpriv` as nobody: it execs the command (no process left between), so
/// the server is the child the test stops.
fn as_nobody(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", id_of("-u")))
        .arg(format!("--regid={}", id_of("-g")))
        .args(["--clear-groups", "--"])
        .arg(program);
    cmd
}

/// The server: shut down cleanly (SIGINT, a fast shutdown) when dropped.
struct Server(Peer);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.child().wait();
    }
}

fn start_server(bin: &Path, dir: &TempDir, port: u16) -> Server {
    let data = dir.path("data");
    std::fs::create_dir(&data).unwrap();
    run(Command::new("chown").arg("nobody:").arg(&data));
    run(as_nobody(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "--no-locale",
            "-E",
            "UTF8",
        ])
        .current_dir(dir.root())
        .stdout(Stdio::null()));
    let server = Server(Peer::spawn(
        as_nobody(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "ssl=off",
            ])
            .current_dir(dir.root()),
    ));
    server.0.wait_for_port(port);
    server
}

/// tshark's view: per connection, the queries the client ran (a Query's
/// text; an Execute's statement's, through its Bind and Parse), and the
/// server's command tags and error codes.
struct Theirs {
    queries: PerConnection<(String, String)>,
    tags: PerConnection<String>,
    errors: PerConnection<String>,
}

fn tshark(file: &Path, port: u16) -> Theirs {
    let out = run(Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-d", &format!("tcp.port=={port},pgsql"), "-Y", "pgsql"])
        .args(["-T", "json", "--no-duplicate-keys", "-J", "tcp pgsql"]));
    let packets: Vec<Value> = serde_json::from_slice(&out).unwrap();
    let mut t = Theirs {
        queries: PerConnection::new(),
        tags: PerConnection::new(),
        errors: PerConnection::new(),
    };
    let mut statements: HashMap<(u16, String), String> = HashMap::new();
    let mut portals: HashMap<(u16, String), String> = HashMap::new();
    let field = |m: &Value, f: &str| m[f].as_str().unwrap_or_default().to_string();
    for p in &packets {
        let layers = &p["_source"]["layers"];
        let src: u16 = field(&layers["tcp"], "tcp.srcport").parse().unwrap();
        let dst: u16 = field(&layers["tcp"], "tcp.dstport").parse().unwrap();
        let messages = match &layers["pgsql"] {
            Value::Array(a) => a.clone(),
            m => vec![m.clone()],
        };
        for m in &messages {
            let kind = field(m, "pgsql.type");
            if dst == port {
                let c = src;
                match kind.as_str() {
                    "Simple query" => t
                        .queries
                        .entry(c)
                        .or_default()
                        .push(("simple".into(), field(m, "pgsql.query"))),
                    "Parse" => {
                        statements
                            .insert((c, field(m, "pgsql.statement")), field(m, "pgsql.query"));
                    }
                    "Bind" => {
                        let s = statements
                            .get(&(c, field(m, "pgsql.statement")))
                            .cloned()
                            .unwrap_or_default();
                        portals.insert((c, field(m, "pgsql.portal")), s);
                    }
                    "Execute" => {
                        let sql = portals
                            .get(&(c, field(m, "pgsql.portal")))
                            .cloned()
                            .unwrap_or_default();
                        t.queries
                            .entry(c)
                            .or_default()
                            .push(("extended".into(), sql));
                    }
                    _ => {}
                }
            } else {
                match kind.as_str() {
                    "Command completion" => {
                        t.tags.entry(dst).or_default().push(field(m, "pgsql.tag"))
                    }
                    "Error" => t
                        .errors
                        .entry(dst)
                        .or_default()
                        .push(field(m, "pgsql.code")),
                    _ => {}
                }
            }
        }
    }
    t
}

/// Entries ordered per connection by their index ("<flow>-<n>").
fn ordered(mut entries: Vec<Value>) -> Vec<Value> {
    let key = |e: &Value| {
        let id = e["id"].as_str().unwrap();
        let (flow, n) = id.rsplit_once('-').unwrap();
        (flow.to_string(), n.parse::<u64>().unwrap())
    };
    entries.sort_by_key(key);
    entries
}

fn client_port(e: &Value) -> u16 {
    e["src"]["port"].as_u64().unwrap() as u16
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn postgres_queries_match_tshark_on_real_traffic() {
    let bin = server_bin();
    let postgres = bin.join("postgres");
    if !peers::require(&["psql", "pgbench", "setpriv", postgres.to_str().unwrap()]) {
        return;
    }
    let dir = TempDir::new("postgres-oracle");
    let port = free_port();
    let p = port.to_string();
    let server = start_server(&bin, &dir, port);
    let capture = Capture::start(dir.path("postgres.pcapng"), &format!("tcp port {port}"));
    let connect = ["-h", "127.0.0.1", "-p", &p, "-U", "postgres"];

    // One psql connection, one Query per -c: psql goes on after an error.
    run(Command::new("psql")
        .args(connect)
        .args(["-d", "postgres", "-X", "-q"])
        .args([
            "-c",
            "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric)",
            "-c",
            "INSERT INTO items VALUES (1, 'apple', 1.50), (2, 'pear', NULL), (3, 'fig', 2.25)",
            "-c",
            "SELECT id, name, price FROM items ORDER BY id",
            "-c",
            "SELECT * FROM missing_table",
            "-c",
            "BEGIN; UPDATE items SET price = 3 WHERE id = 2; SELECT count(*) FROM items; COMMIT",
            "-c",
            "COPY items TO STDOUT",
            "-c",
            "LISTEN news",
            "-c",
            "NOTIFY news, 'hello'",
        ]));
    // A database that does not exist: the startup fails (psql exits 2).
    let status = Command::new("psql")
        .args(connect)
        .args(["-d", "no_such_db", "-X", "-c", "SELECT 1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2), "psql to a missing database");
    // Tables, with COPY FROM STDIN; then transactions of seven statements
    // over the extended protocol: unnamed statements, then prepared ones.
    run(Command::new("pgbench")
        .args(connect)
        .args(["-i", "-s", "1", "-q", "postgres"]));
    run(Command::new("pgbench")
        .args(connect)
        .args(["-n", "-c", "1", "-t", "20", "-M", "extended", "postgres"]));
    run(Command::new("pgbench")
        .args(connect)
        .args(["-n", "-c", "2", "-t", "20", "-M", "prepared", "postgres"]));

    let file = capture.stop();
    drop(server);

    let theirs = tshark(&file, port);
    let entries = ordered(peers::kubetap_entries(&file));
    assert!(entries.iter().all(|e| e["protocol"] == "postgres"));
    let mut queries: PerConnection<(String, String)> = PerConnection::new();
    let mut tags: PerConnection<String> = PerConnection::new();
    let mut errors: PerConnection<String> = PerConnection::new();
    for e in &entries {
        let c = client_port(e);
        let kind = s(&e["request"]["kind"]);
        if matches!(kind, "simple" | "extended") {
            queries
                .entry(c)
                .or_default()
                .push((kind.to_string(), s(&e["request"]["sql"]).to_string()));
        }
        for r in e["response"]["results"].as_array().into_iter().flatten() {
            let tag = s(&r["command_tag"]);
            if !tag.is_empty() {
                tags.entry(c).or_default().push(tag.to_string());
            }
        }
        if e["response"]["status"] == 1 {
            errors
                .entry(c)
                .or_default()
                .push(s(&e["response"]["sqlstate"]).to_string());
        }
    }
    let count = |m: &PerConnection<(String, String)>, kind: &str| {
        m.values().flatten().filter(|(k, _)| k == kind).count()
    };
    // 20 transactions of 7 statements, by 1 and then 2 clients.
    assert!(
        count(&theirs.queries, "extended") >= 140 + 280,
        "{}",
        count(&theirs.queries, "extended")
    );
    assert!(
        count(&theirs.queries, "simple") >= 8 + 10,
        "{}",
        count(&theirs.queries, "simple")
    );
    assert_eq!(queries, theirs.queries, "queries per connection");
    assert_eq!(tags, theirs.tags, "command tags per connection");
    assert_eq!(errors, theirs.errors, "errors per connection");
    // Each connection made its startup entry; every request was answered.
    // psql, pgbench -i, and each pgbench run's clients plus the connection
    // it reads the scale on.
    assert_eq!(theirs.queries.len(), 1 + 1 + (1 + 1) + (1 + 2));
    for e in &entries {
        assert!(e["response"].is_object(), "unanswered: {e}");
        assert_eq!(e["flags"], serde_json::json!([]), "{e}");
    }

    let find = |sql: &str| {
        entries
            .iter()
            .find(|e| e["request"]["path"] == sql)
            .unwrap_or_else(|| panic!("no entry for {sql}"))
    };
    let select = find("SELECT id, name, price FROM items ORDER BY id");
    assert_eq!(select["request"]["method"], "SELECT");
    let r = &select["response"];
    assert_eq!(
        (r["status"].clone(), r["command_tag"].clone()),
        (0.into(), "SELECT 3".into())
    );
    assert_eq!(
        r["results"][0]["columns"],
        serde_json::json!(["id", "name", "price"])
    );
    assert_eq!(
        r["results"][0]["rows"],
        serde_json::json!([
            ["1", "apple", "1.50"],
            ["2", "pear", null],
            ["3", "fig", "2.25"]
        ])
    );
    let missing = &find("SELECT * FROM missing_table")["response"];
    assert_eq!(
        (missing["status"].clone(), missing["sqlstate"].clone()),
        (1.into(), "42P01".into())
    );
    assert_eq!(missing["error"]["severity"], "ERROR");
    assert_eq!(
        missing["error"]["message"],
        "relation \"missing_table\" does not exist"
    );
    let multi =
        &find("BEGIN; UPDATE items SET price = 3 WHERE id = 2; SELECT count(*) FROM items; COMMIT");
    assert_eq!(multi["request"]["method"], "BEGIN");
    assert_eq!(
        multi["response"]["command_tag"],
        "BEGIN; UPDATE 1; SELECT 1; COMMIT"
    );
    assert_eq!(
        multi["response"]["results"][2]["rows"],
        serde_json::json!([["3"]])
    );
    let copy_out = &find("COPY items TO STDOUT")["response"]["results"][0];
    assert_eq!(
        (copy_out["copy"].clone(), copy_out["row_count"].clone()),
        ("out".into(), 3.into())
    );
    assert!(copy_out["copy_bytes"].as_u64().unwrap() > 20);
    let note = entries
        .iter()
        .find(|e| e["request"]["method"] == "NOTIFICATION")
        .expect("the notification's entry");
    assert_eq!(
        (
            note["request"]["path"].clone(),
            note["response"]["payload"].clone()
        ),
        ("news".into(), "hello".into())
    );

    let startups: Vec<&Value> = entries
        .iter()
        .filter(|e| e["request"]["method"] == "STARTUP")
        .collect();
    assert_eq!(startups.len(), 7 + 1);
    for st in &startups {
        // libpq asks for TLS first (sslmode=prefer); this server says no.
        assert_eq!(st["request"]["encryption"], "ssl");
        assert_eq!(st["response"]["encryption"], "refused");
        // `user` is a sensitive key: redacted, and named as such.
        assert_eq!(st["request"]["user"], "[REDACTED]");
        assert!(
            st["redacted"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "request.user"),
            "{st}"
        );
    }
    let failed: Vec<_> = startups
        .iter()
        .filter(|e| e["response"]["status"] == 1)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["request"]["database"], "no_such_db");
    assert_eq!(failed[0]["response"]["sqlstate"], "3D000");
    let ok = startups
        .iter()
        .find(|e| e["request"]["application_name"] == "psql")
        .unwrap();
    assert_eq!(ok["response"]["auth_method"], "none");
    assert_eq!(ok["response"]["transaction_status"], "idle");
    assert!(ok["response"]["backend_pid"].as_u64().unwrap() > 0);
    assert!(ok["response"]["parameters"]["server_version"].is_string());

    let copy_in = entries
        .iter()
        .find(|e| s(&e["request"]["path"]).starts_with("copy pgbench_accounts from stdin"))
        .expect("pgbench's COPY");
    assert_eq!(copy_in["response"]["command_tag"], "COPY 100000");
    assert!(copy_in["request"]["copy_bytes"].as_u64().unwrap() > 1_000_000);
    // pgbench's UPDATE with its two parameters, unnamed and prepared.
    let updates: Vec<_> = entries
        .iter()
        .filter(|e| s(&e["request"]["path"]).starts_with("UPDATE pgbench_accounts SET abalance"))
        .collect();
    assert_eq!(updates.len(), 20 + 40);
    for u in &updates {
        assert_eq!(u["request"]["kind"], "extended");
        assert_eq!(u["request"]["parameter_count"], 2);
        for v in u["request"]["parameters"].as_array().unwrap() {
            assert!(s(v).parse::<i64>().is_ok(), "{v}");
        }
        assert_eq!(u["response"]["command_tag"], "UPDATE 1");
    }
    let named = updates
        .iter()
        .filter(|u| u["request"]["statement"] != "")
        .count();
    assert_eq!(named, 40, "prepared mode names its statements");
}
