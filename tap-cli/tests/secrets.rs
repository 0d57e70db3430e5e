//! The secrets canary test (issue 15's acceptance): real clients send
//! planted canary values through every place a secret travels, in clear and
//! through TLS where the client can, past a real `tap-worker --tls` that
//! watches the server pod and ships to a real `tap-hub --disk`; then every
//! byte that left the worker is searched for every canary, and none may be
//! found.
//!
//! The traffic, from a client pod to a server pod of one node:
//! - HTTP/1.1 (curl, plain and TLS to a Python server): `Authorization:
//!   Bearer`, `Cookie`, `X-Api-Key`, `?password=&user=`; the answer's
//!   `Set-Cookie` and a token in its JSON body;
//! - Python requests (plain and TLS): a JSON body with a password at depth
//!   and a token, GraphQL variables, a form body, Basic authentication;
//! - HTTP/2 (curl with prior knowledge to `nghttpd --no-tls`, curl over TLS
//!   to nghttpd): `Authorization`, `Cookie`, a `?token=`;
//! - a Go crypto/tls client (HTTP/1.1 and HTTP/2) with `Authorization`;
//! - gRPC (grpcio, plain) with `authorization` and `x-api-key` metadata;
//! - WebSocket (Python websockets' synchronous API, ws and wss):
//!   `{"token": …}` both ways;
//! - Redis (redis-cli, plain and TLS): `AUTH password`, `HELLO 3 AUTH user
//!   password`, `MIGRATE … AUTH password`, `CONFIG SET masterauth`, `ACL
//!   SETUSER … >password`, `AUTH user password`;
//! - PostgreSQL (psql): a user and its password under `password`
//!   authentication (cleartext on the wire), in clear and over TLS, each
//!   then running `ALTER ROLE … PASSWORD '…'`, and a user logging in with
//!   SCRAM-SHA-256;
//! - AMQP (amqp-publish to RabbitMQ): `connection.start-ok`'s PLAIN
//!   credentials, in clear only (amqp-publish --ssl could not connect to
//!   RabbitMQ's TLS listener; not pursued);
//! - Kafka: no Kafka broker installs here and the Kafka client's SASL needs
//!   one, so a small Python client sends what a client sends to log in
//!   (ApiVersions, SaslHandshake PLAIN, SaslAuthenticate `\0user\0password`)
//!   over a real TCP connection (in clear and over TLS) to a Python listener
//!   that answers each.
//!
//! What is searched, for each canary as it is, in base64 (at each of the
//! three alignments) and in hex (URL encoding leaves canaries as they are:
//! they are `[a-z0-9-]`): the hub's disk store (every file), every API
//! answer the test reads (every page of `/api/entries` and `/api/rows`,
//! each entry's `/api/entries/{id}`, the service map, workers, config,
//! fields, metrics), what the live stream (`/api/stream`, entries and rows)
//! sent, the hub's and the worker's logs, and the default PCAP export
//! (`/api/pcap`): its bytes and tshark's full decoding of it (which undoes
//! HPACK's Huffman coding and Basic authentication's base64).
//!
//! And the same traffic must be shown otherwise right: methods, paths,
//! statuses, the non-secret headers (`X-Request-Id: visible-…`), `tls` on
//! the TLS ones, the `redacted` list naming what was redacted, and tshark
//! still reading the export's HTTP requests. Every problem is collected and
//! reported at once, each leak naming the canary and where it was found.
//!
//! Needs root (eBPF, namespaces), python3 (requests, grpcio, websockets),
//! curl, nghttpd, go, redis-server, redis-cli, psql, the PostgreSQL server,
//! setpriv, rabbitmq-server, amqp-publish, rabbitmqctl and tshark.

mod peers;

use peers::sibling;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Node, Pod, Process, TempDir};

use base64::Engine as _;
use serde_json::Value;

const PEER: &str = "tests/peers/secrets_peer.py";

/// Ports in the server pod.
const HTTP: u16 = 8080;
const HTTPS: u16 = 8443;
const H2C: u16 = 8081;
const H2_TLS: u16 = 8444;
const WS: u16 = 8765;
const WSS: u16 = 8766;
const GRPC: u16 = 50051;
const REDIS: u16 = 6379;
const REDIS_TLS: u16 = 6380;
const POSTGRES: u16 = 5432;
const AMQP: u16 = 5672;
const KAFKA: u16 = 9092;
const KAFKA_TLS: u16 = 9093;

/// The canaries: kind -> a value that cannot occur by chance.
struct Canaries(BTreeMap<String, String>);

/// Every kind planted; `-plain` and `-tls` kinds travel in clear and through
/// TLS.
const KINDS: &[&str] = &[
    // curl, HTTP/1.1
    "bearer-plain",
    "bearer-tls",
    "cookie-plain",
    "cookie-tls",
    "api-key-plain",
    "api-key-tls",
    "query-password-plain",
    "query-password-tls",
    "query-user-plain",
    "query-user-tls",
    // the Python HTTP server's answers
    "set-cookie-plain",
    "set-cookie-tls",
    "response-json-token-plain",
    "response-json-token-tls",
    // Python requests
    "json-deep-password-plain",
    "json-deep-password-tls",
    "json-token-plain",
    "json-token-tls",
    "graphql-password-plain",
    "graphql-password-tls",
    "form-password-plain",
    "form-password-tls",
    "basic-user-plain",
    "basic-user-tls",
    "basic-password-plain",
    "basic-password-tls",
    // curl, HTTP/2
    "h2-bearer-plain",
    "h2-bearer-tls",
    "h2-cookie-plain",
    "h2-cookie-tls",
    "h2-query-token-plain",
    "h2-query-token-tls",
    // Go crypto/tls
    "go-bearer-h1-tls",
    "go-bearer-h2-tls",
    // gRPC
    "grpc-authorization",
    "grpc-api-key",
    // WebSocket
    "ws-token-plain",
    "ws-token-tls",
    "ws-reply-token-plain",
    "ws-reply-token-tls",
    // Redis
    "redis-auth-plain",
    "redis-hello-user-plain",
    "redis-hello-password-plain",
    "redis-migrate-password-plain",
    "redis-config-password-plain",
    "redis-acl-password-plain",
    "redis-user-tls",
    "redis-password-tls",
    // PostgreSQL
    "pg-user-plain",
    "pg-password-plain",
    "pg-scram-user-plain",
    "pg-scram-password-plain",
    "pg-user-tls",
    "pg-password-tls",
    "pg-sql-password-plain",
    "pg-sql-password-tls",
    // AMQP
    "amqp-user-plain",
    "amqp-password-plain",
    // Kafka
    "kafka-sasl-user-plain",
    "kafka-sasl-user-tls",
    "kafka-sasl-password-plain",
    "kafka-sasl-password-tls",
];

impl Canaries {
    fn new() -> Canaries {
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut map = BTreeMap::new();
        for kind in KINDS {
            // RandomState is seeded from the OS per instance: two 64-bit
            // draws per canary.
            let mut hex = String::new();
            for _ in 0..2 {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write(kind.as_bytes());
                write!(hex, "{:016x}", h.finish()).unwrap();
            }
            map.insert(kind.to_string(), format!("canary-{kind}-{hex}"));
        }
        Canaries(map)
    }

    fn get(&self, kind: &str) -> &str {
        self.0
            .get(kind)
            .unwrap_or_else(|| panic!("no canary kind {kind}"))
    }

    /// The needles to look for: each canary as it is, in base64 at the
    /// three alignments (standard and URL-safe alphabets), and in hex.
    fn needles(&self) -> Vec<(String, &'static str, Vec<u8>)> {
        let mut out = Vec::new();
        for (kind, value) in &self.0 {
            out.push((kind.clone(), "as is", value.as_bytes().to_vec()));
            for shift in 0..3 {
                let mut data = vec![0u8; shift];
                data.extend_from_slice(value.as_bytes());
                for (engine, name) in [
                    (&base64::engine::general_purpose::STANDARD, "base64"),
                    (&base64::engine::general_purpose::URL_SAFE, "base64url"),
                ] {
                    let encoded = engine.encode(&data);
                    // Skip the characters the prefix and whatever follows
                    // the canary take part in.
                    let from = (shift * 4).div_ceil(3) + 1;
                    let to = encoded.len() - 4;
                    out.push((kind.clone(), name, encoded.as_bytes()[from..to].to_vec()));
                }
            }
            let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
            out.push((kind.clone(), "hex", hex.into_bytes()));
        }
        out
    }

    fn write(&self, path: &Path) {
        std::fs::write(path, serde_json::to_string(&self.0).unwrap()).unwrap();
    }
}

/// Every byte the test saw leave the worker, by where it was found.
#[derive(Default)]
struct Seen(Vec<(String, Vec<u8>)>);

impl Seen {
    fn add(&mut self, place: impl Into<String>, bytes: Vec<u8>) {
        self.0.push((place.into(), bytes));
    }

    /// Whether something seen at a place starting with `place` holds `text`.
    fn holds(&self, place: &str, text: &str) -> bool {
        self.0.iter().any(|(p, bytes)| {
            p.starts_with(place) && bytes.windows(text.len()).any(|w| w == text.as_bytes())
        })
    }

    /// Per canary kind found: the places, each with the encodings found there.
    fn leaks(&self, canaries: &Canaries) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
        let needles = canaries.needles();
        let search = aho_corasick::AhoCorasick::new(needles.iter().map(|n| &n.2)).unwrap();
        let mut found: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for (place, bytes) in &self.0 {
            for m in search.find_overlapping_iter(bytes) {
                let (kind, encoding, _) = &needles[m.pattern().as_usize()];
                found
                    .entry(kind.clone())
                    .or_default()
                    .entry(place.clone())
                    .or_default()
                    .insert(encoding.to_string());
            }
        }
        found
    }
}

/// The hub's HTTP API from inside the node. Every call goes through `call`
/// (one place to add a header such as a token), and every answer is kept
/// to be searched.
struct Api<'a> {
    node: &'a Node,
    port: u16,
    seen: std::cell::RefCell<Seen>,
    /// Whether answers are kept (not while polling for the traffic).
    record: std::cell::Cell<bool>,
}

/// An API path as a place: entry ids and cursors left out.
fn place(path: &str) -> String {
    let path = path.split("&cursor=").next().unwrap_or(path);
    match path.strip_prefix("/api/entries/") {
        Some(_) => "/api/entries/{id}".into(),
        None => path.into(),
    }
}

impl Api<'_> {
    fn call(&self, path: &str) -> testkit::http::Reply {
        let (port, p) = (self.port, path.to_string());
        let reply = self
            .node
            .in_netns(move || {
                testkit::http::request(
                    std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                    "GET",
                    &p,
                    None,
                )
            })
            .unwrap();
        if self.record.get() {
            self.seen
                .borrow_mut()
                .add(format!("the API's GET {}", place(path)), reply.raw.clone());
        }
        reply
    }

    fn json(&self, path: &str) -> Value {
        let reply = self.call(path);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }

    /// Every page of `/api/entries` (or `/api/rows`): the items.
    fn all(&self, what: &str, key: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor = String::new();
        loop {
            let v = self.json(&format!("/api/{what}?limit=1000{cursor}"));
            items.extend(v[key].as_array().cloned().unwrap_or_default());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={}", testkit::http::encode(c)),
                None => return items,
            }
        }
    }
}

/// A process whose output goes to a file, read back when searching.
fn logged(cmd: &mut Command, log: &Path) -> Process {
    let file = std::fs::File::create(log).unwrap();
    Process::spawn(
        cmd.stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null()),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn wait_log(log: &Path, needle: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not within 60 s: {what} (no {needle:?} in {}):\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a client in `pod` to its end; its stdout. A client that fails is a
/// problem of the test's own making, so it panics with the client's output.
fn client(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` with `input` on its stdin; its stdout (failures allowed:
/// some logins are meant to be refused).
fn with_stdin(cmd: &mut Command, input: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// curl with its options in a config file (`-K`), so no canary is on a
/// command line; `-w` prints the HTTP version and status.
fn curl(pod: &Pod, dir: &TempDir, name: &str, lines: &[String]) -> String {
    let config = dir.path(&format!("{name}.curlrc"));
    let mut text = String::from(
        "silent\nshow-error\ninsecure\noutput = \"/dev/null\"\nwrite-out = \"%{http_version} %{http_code}\"\n",
    );
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&config, text).unwrap();
    client(
        pod.command("curl").arg("-K").arg(&config),
        &format!("curl {name}"),
    )
}

/// A Go HTTPS client: `client URL h1|h2 REQUEST-ID`, which prints `ready`,
/// reads the bearer token from a line of stdin (so it is on no command line
/// and the probes can be attached first), makes one GET with
/// `Authorization: Bearer <token>` and `X-Request-Id`, prints the answer's
/// protocol and status and `done`, and holds its connection until stdin
/// closes.
const GO_CLIENT: &str = r#"package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

func main() {
	url, mode, id := os.Args[1], os.Args[2], os.Args[3]
	transport := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: mode == "h2",
	}
	client := &http.Client{Transport: transport}
	stdin := bufio.NewReader(os.Stdin)
	fmt.Println("ready")
	token, _ := stdin.ReadString('\n')
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
	req.Header.Set("X-Request-Id", id)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Proto, resp.StatusCode)
	fmt.Println("done")
	io.ReadAll(stdin)
}
"#;

/// The pids of the processes of the hooked TLS libraries and Go binaries.
fn hooked_pids(api: &Api) -> Vec<u64> {
    let v = api.json("/api/workers");
    v["workers"][0]["tls"]["libraries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|l| l["hooked"] == true)
        .flat_map(|l| l["processes"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["pid"].as_u64())
        .collect()
}

fn go_client(pod: &Pod, binary: &Path, url: &str, mode: &str, token: &str, api: &Api) -> String {
    let id = format!("visible-go-{mode}");
    let mut process = pod
        .spawn(
            pod.command(binary.to_str().unwrap())
                .args([url, mode, &id])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .unwrap();
    let mut lines = std::io::BufReader::new(process.child().stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let pid = u64::from(process.id());
    testkit::eventually(Duration::from_secs(30), "the Go client hooked", || {
        hooked_pids(api).contains(&pid).then_some(())
    });
    let mut stdin = process.child().stdin.take().unwrap();
    writeln!(stdin, "{token}").unwrap();
    let answer = lines.next().unwrap().unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "done", "{answer}");
    drop(stdin);
    let _ = process.wait_timeout(Duration::from_secs(10));
    answer
}

// --- PostgreSQL --------------------------------------------------------------

/// The newest PostgreSQL server Debian installed (or a path that does not
/// exist, which the tool check reports).
fn postgres_bin() -> PathBuf {
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

fn nobody(flag: &str) -> String {
    let out = peers::run(Command::new("id").args([flag, "nobody"]));
    String::from_utf8(out).unwrap().trim().to_string()
}

/// `setpriv` as nobody before `program` (PostgreSQL refuses root).
fn as_nobody(mut cmd: Command, program: &Path) -> Command {
    cmd.arg(format!("--reuid={}", nobody("-u")))
        .arg(format!("--regid={}", nobody("-g")))
        .args(["--clear-groups", "--"])
        .arg(program);
    cmd
}

/// PostgreSQL in `pod` on its address, SSL on, three canary users: two
/// logging in with `password` (cleartext on the wire; one of them only over
/// TLS), one with SCRAM-SHA-256.
fn start_postgres(pod: &Pod, dir: &TempDir, c: &Canaries, cert: &Path, key: &Path) -> Process {
    let bin = postgres_bin();
    let data = dir.path("pgdata");
    std::fs::create_dir(&data).unwrap();
    peers::run(Command::new("chown").arg("nobody:").arg(&data));
    peers::run(
        as_nobody(Command::new("setpriv"), &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "--no-locale"])
            .current_dir(dir.root())
            .stdout(Stdio::null()),
    );
    for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
        std::fs::copy(from, data.join(to)).unwrap();
        peers::run(Command::new("chown").arg("nobody:").arg(data.join(to)));
    }
    peers::run(
        Command::new("chmod")
            .arg("600")
            .arg(data.join("server.key")),
    );
    let hba = format!(
        "local all postgres trust\n\
         hostnossl all \"{}\" 0.0.0.0/0 password\n\
         hostnossl all \"{}\" 0.0.0.0/0 scram-sha-256\n\
         hostssl all \"{}\" 0.0.0.0/0 password\n",
        c.get("pg-user-plain"),
        c.get("pg-scram-user-plain"),
        c.get("pg-user-tls"),
    );
    std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
    let server = pod
        .spawn(
            as_nobody(pod.command("setpriv"), &bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(&data)
                .args(["-p", &POSTGRES.to_string()])
                .args(["-c", &format!("listen_addresses={}", pod.ip)])
                .args(["-c", "fsync=off", "-c", "ssl=on"])
                .current_dir(dir.root())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
    testkit::eventually(Duration::from_secs(30), "PostgreSQL's socket", || {
        data.join(format!(".s.PGSQL.{POSTGRES}"))
            .exists()
            .then_some(())
    });
    // The roles, through the Unix socket (not captured).
    let mut sql = String::new();
    for (user, password) in [
        ("pg-user-plain", "pg-password-plain"),
        ("pg-scram-user-plain", "pg-scram-password-plain"),
        ("pg-user-tls", "pg-password-tls"),
    ] {
        writeln!(
            sql,
            "CREATE ROLE \"{}\" LOGIN PASSWORD '{}';",
            c.get(user),
            c.get(password)
        )
        .unwrap();
    }
    let out = with_stdin(
        Command::new("psql")
            .arg("-h")
            .arg(&data)
            .args(["-p", &POSTGRES.to_string(), "-U", "postgres", "-X", "-q"])
            .args(["-v", "ON_ERROR_STOP=1", "-d", "postgres"]),
        &sql,
    );
    assert!(!out.contains("ERROR"), "creating the roles: {out}");
    server
}

/// psql logging in as `user` with `password` (from the environment, on no
/// command line) to run `sql` (from stdin); its output.
fn psql(pod: &Pod, host: &str, login: (&str, &str), sslmode: &str, sql: &str) -> String {
    with_stdin(
        pod.command("psql")
            .env("PGHOST", host)
            .env("PGPORT", POSTGRES.to_string())
            .env("PGUSER", login.0)
            .env("PGPASSWORD", login.1)
            .env("PGSSLMODE", sslmode)
            .env("PGDATABASE", "postgres")
            .args(["-X", "-A", "-t", "-q"]),
        sql,
    )
}

// --- RabbitMQ ----------------------------------------------------------------

/// RabbitMQ in a pod: its node stopped when dropped (the node's teardown
/// kills what is left in its namespaces).
struct Broker {
    script: Process,
    pid_file: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill")
                .args(["-KILL", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.script.child().kill();
    }
}

fn rabbit_env(cmd: &mut Command, home: &Path, ip: &str) {
    cmd.env("HOME", home)
        .env("RABBITMQ_NODE_IP_ADDRESS", ip)
        .env("RABBITMQ_NODE_PORT", AMQP.to_string())
        .env("RABBITMQ_DIST_PORT", "25672")
        .env("ERL_EPMD_PORT", "4369")
        .env("RABBITMQ_NODENAME", "secrets@localhost")
        .env("RABBITMQ_MNESIA_BASE", home.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", home.join("log"))
        .env("RABBITMQ_PID_FILE", home.join("rabbit.pid"))
        .env(
            "RABBITMQ_ENABLED_PLUGINS_FILE",
            home.join("enabled_plugins"),
        )
        .env("RABBITMQ_CONFIG_FILE", home.join("rabbitmq"));
}

/// RabbitMQ in `pod`, AMQP on its address. (Not over TLS: amqp-publish
/// --ssl could not connect to RabbitMQ's TLS listener here.)
fn start_broker(pod: &Pod, dir: &TempDir) -> Broker {
    let home = dir.path("rabbitmq");
    std::fs::create_dir(&home).unwrap();
    peers::run(Command::new("chown").arg("rabbitmq:").arg(&home));
    let mut cmd = pod.command("rabbitmq-server");
    rabbit_env(&mut cmd, &home, &pod.ip.to_string());
    let script = pod
        .spawn(
            cmd.current_dir(&home)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
    Broker {
        script,
        pid_file: home.join("rabbit.pid"),
    }
}

// --- the test ----------------------------------------------------------------

fn expect(problems: &mut Vec<String>, what: &str, got: String, want: &str) {
    if got.trim() != want {
        problems.push(format!("{what}: the client got {got:?}, not {want:?}"));
    }
}

/// An entry's request header, or "".
fn header<'a>(e: &'a Value, side: &str, name: &str) -> &'a str {
    // A GraphQL entry keeps its HTTP message under `http`.
    e[side]["headers"][name]
        .as_str()
        .or_else(|| e[side]["http"]["headers"][name].as_str())
        .unwrap_or("")
}

fn redacted(e: &Value) -> Vec<String> {
    e["redacted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_ascii_lowercase))
        .collect()
}

#[test]
fn no_canary_leaves_the_node() {
    if !testkit::require_tools(
        "secrets canary test",
        true,
        &[
            "ip",
            "python3",
            "curl",
            "nghttpd",
            "go",
            "redis-server",
            "redis-cli",
            "psql",
            "setpriv",
            "rabbitmq-server",
            "rabbitmqctl",
            "amqp-publish",
            "tshark",
            "openssl",
        ],
    ) {
        return;
    }
    let python = Command::new("python3")
        .args(["-c", "import requests, grpc, websockets"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !python
        && !testkit::skip(
            "secrets canary test",
            "the Python modules requests, grpcio and websockets are not all installed (cargo xtask setup installs them)",
        )
    {
        return;
    }
    if !postgres_bin().join("postgres").exists()
        && !testkit::skip(
            "secrets canary test",
            "the PostgreSQL server is not installed (cargo xtask setup installs it)",
        )
    {
        return;
    }

    let canaries = Canaries::new();
    let c = |kind: &str| canaries.get(kind).to_string();
    let dir = TempDir::new("secrets");
    // The peers (nobody, rabbitmq) read and write in the directory.
    peers::run(Command::new("chmod").arg("755").arg(dir.root()));
    let canary_file = dir.path("canaries.json");
    canaries.write(&canary_file);
    let (cert, key) = testkit::self_signed(&dir, "server");
    let peer = Path::new(env!("CARGO_MANIFEST_DIR")).join(PEER);

    let node = Node::new("secrets").unwrap();
    let server = node.pod("server").unwrap();
    let clientpod = node.pod("client").unwrap();
    let ip = server.ip.to_string();
    // Both pods targeted: the TLS probes follow only target pods'
    // processes, and the clients' own TLS calls (the Go client's among
    // them) are to be read and redacted too.
    let pods = dir.path("pods.json");
    std::fs::write(
        &pods,
        serde_json::json!([
            {"name": "server", "namespace": "shop", "ips": [ip]},
            {"name": "client", "namespace": "shop", "ips": [clientpod.ip.to_string()]},
        ])
        .to_string(),
    )
    .unwrap();

    // The hub, with a disk store, and the worker, their logs in files.
    let (grpc, http) = (18998, 18999);
    let disk = dir.path("store");
    let (hub_log, worker_log) = (dir.path("hub.log"), dir.path("worker.log"));
    let mut hub = logged(
        testkit::http::with_token(&mut node.command(sibling("tap-hub").to_str().unwrap()))
            .args(["--grpc", &format!("127.0.0.1:{grpc}")])
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .arg("--disk")
            .arg(&disk)
            .arg("--certs")
            .arg(peers::certs()),
        &hub_log,
    );
    wait_log(&hub_log, "workers connect", "the hub listening");
    let api = Api {
        node: &node,
        port: http,
        seen: Default::default(),
        record: std::cell::Cell::new(true),
    };
    // The live stream, recorded from before the first entry.
    let mut streams = Vec::new();
    for (name, query) in [("entries", ""), ("rows", "?format=rows")] {
        let out = dir.path(&format!("stream-{name}.txt"));
        let mut p = Process::spawn(
            node.command("python3")
                .arg(&peer)
                .args([
                    "stream",
                    &format!("ws://127.0.0.1:{http}/api/stream{query}"),
                ])
                .arg(&out)
                .arg(format!("Authorization=Bearer {}", testkit::http::TOKEN))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .unwrap();
        let mut lines = std::io::BufReader::new(p.child().stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "subscribed");
        streams.push((p, out, name));
    }
    let mut worker = logged(
        node.command(sibling("tap-worker").to_str().unwrap())
            .args(["--hub", &format!("https://127.0.0.1:{grpc}")])
            .arg("--certs")
            .arg(peers::certs())
            .args(["--node", "node-a", "--pods"])
            .arg(&pods)
            .arg("--tls"),
        &worker_log,
    );
    wait_log(&worker_log, "capturing", "the worker capturing");

    // The servers, started after the worker (TLS discovery finds them).
    let broker = start_broker(&server, &dir);
    let go_bin = testkit::go::build(dir.root(), "go-client", GO_CLIENT, testkit::go::Link::Full);
    let canary_arg = canary_file.to_str().unwrap();
    let py = |args: &[&str]| {
        server
            .spawn(
                server
                    .command("python3")
                    .arg(&peer)
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .unwrap()
    };
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut servers = vec![
        py(&["http", canary_arg, "plain", &ip, &HTTP.to_string()]),
        py(&[
            "http",
            canary_arg,
            "tls",
            &ip,
            &HTTPS.to_string(),
            cert_s,
            key_s,
        ]),
        py(&["ws", canary_arg, "plain", &ip, &WS.to_string()]),
        py(&[
            "ws",
            canary_arg,
            "tls",
            &ip,
            &WSS.to_string(),
            cert_s,
            key_s,
        ]),
        py(&["grpc", &ip, &GRPC.to_string()]),
        py(&["kafka", &ip, &KAFKA.to_string()]),
    ];
    let htdocs = dir.path("htdocs");
    std::fs::create_dir_all(&htdocs).unwrap();
    std::fs::write(htdocs.join("h2-page"), "over http/2\n").unwrap();
    servers.push(
        server
            .spawn(
                server
                    .command("nghttpd")
                    .arg("-d")
                    .arg(&htdocs)
                    .args(["--no-tls", &H2C.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .unwrap(),
    );
    servers.push(
        server
            .spawn(
                server
                    .command("nghttpd")
                    .arg("-d")
                    .arg(&htdocs)
                    .arg(H2_TLS.to_string())
                    .arg(&key)
                    .arg(&cert)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .unwrap(),
    );
    let redis_conf = dir.path("redis.conf");
    std::fs::write(
        &redis_conf,
        format!(
            "bind {ip}\nport {REDIS}\ntls-port {REDIS_TLS}\ntls-cert-file {cert_s}\n\
             tls-key-file {key_s}\ntls-auth-clients no\nprotected-mode no\nsave \"\"\n\
             appendonly no\ndir {}\n\
             user default on >{} ~* &* +@all\n\
             user {} on >{} ~* &* +@all\n\
             user {} on >{} ~* &* +@all\n",
            dir.root().display(),
            c("redis-auth-plain"),
            c("redis-hello-user-plain"),
            c("redis-hello-password-plain"),
            c("redis-user-tls"),
            c("redis-password-tls"),
        ),
    )
    .unwrap();
    servers.push(
        server
            .spawn(
                server
                    .command("redis-server")
                    .arg(&redis_conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .unwrap(),
    );
    servers.push(py(&["kafka", &ip, &KAFKA_TLS.to_string(), cert_s, key_s]));
    let _postgres = start_postgres(&server, &dir, &canaries, &cert, &key);
    for port in [
        HTTP, HTTPS, WS, WSS, GRPC, KAFKA, KAFKA_TLS, H2C, H2_TLS, REDIS, REDIS_TLS, POSTGRES,
    ] {
        node.wait_for_tcp(server.addr(port), Duration::from_secs(30))
            .unwrap();
    }
    // The TLS servers hooked before their first connection.
    let tls_servers = [
        servers[1].id(),
        servers[3].id(),
        servers[7].id(),
        servers[8].id(),
        servers[9].id(),
        _postgres.id(),
    ];
    testkit::eventually(
        Duration::from_secs(30),
        "the TLS servers' libssl hooked (Python, websockets, nghttpd, redis, postgres)",
        || {
            let pids = hooked_pids(&api);
            tls_servers
                .iter()
                .all(|p| pids.contains(&u64::from(*p)))
                .then_some(())
        },
    );

    // --- the traffic ---
    let mut problems: Vec<String> = Vec::new();
    for (label, base, ver) in [
        ("plain", format!("http://{ip}:{HTTP}"), "1.1"),
        ("tls", format!("https://{ip}:{HTTPS}"), "1.1"),
    ] {
        let l = |k: &str| c(&format!("{k}-{label}"));
        let got = curl(
            &clientpod,
            &dir,
            &format!("h1-{label}"),
            &[
                "http1.1".into(),
                format!(
                    "url = \"{base}/login?password={}&user={}&page=visible-page\"",
                    l("query-password"),
                    l("query-user")
                ),
                format!("header = \"Authorization: Bearer {}\"", l("bearer")),
                format!("header = \"Cookie: session={}\"", l("cookie")),
                format!("header = \"X-Api-Key: {}\"", l("api-key")),
                format!("header = \"X-Request-Id: visible-curl-{label}\""),
            ],
        );
        expect(
            &mut problems,
            &format!("curl {label}"),
            got,
            &format!("{ver} 200"),
        );
        client(
            clientpod
                .command("python3")
                .arg(&peer)
                .args(["requests", canary_arg, label, &base]),
            &format!("requests {label}"),
        );
    }
    for (label, base, flag) in [
        (
            "plain",
            format!("http://{ip}:{H2C}"),
            "http2-prior-knowledge",
        ),
        ("tls", format!("https://{ip}:{H2_TLS}"), "http2"),
    ] {
        let l = |k: &str| c(&format!("{k}-{label}"));
        let got = curl(
            &clientpod,
            &dir,
            &format!("h2-{label}"),
            &[
                flag.into(),
                format!("url = \"{base}/h2-page?token={}\"", l("h2-query-token")),
                format!("header = \"Authorization: Bearer {}\"", l("h2-bearer")),
                format!("header = \"Cookie: session={}\"", l("h2-cookie")),
                format!("header = \"X-Request-Id: visible-h2-{label}\""),
            ],
        );
        expect(&mut problems, &format!("curl h2 {label}"), got, "2 200");
    }
    let got = go_client(
        &clientpod,
        &go_bin,
        &format!("https://{ip}:{HTTPS}/go-h1"),
        "h1",
        &c("go-bearer-h1-tls"),
        &api,
    );
    expect(&mut problems, "Go h1", got, "HTTP/1.1 200");
    let got = go_client(
        &clientpod,
        &go_bin,
        &format!("https://{ip}:{H2_TLS}/h2-page"),
        "h2",
        &c("go-bearer-h2-tls"),
        &api,
    );
    expect(&mut problems, "Go h2", got, "HTTP/2.0 200");
    client(
        clientpod.command("python3").arg(&peer).args([
            "grpccall",
            canary_arg,
            &ip,
            &GRPC.to_string(),
        ]),
        "grpc",
    );
    for (label, url) in [
        ("plain", format!("ws://{ip}:{WS}/socket")),
        ("tls", format!("wss://{ip}:{WSS}/socket")),
    ] {
        client(
            clientpod
                .command("python3")
                .arg(&peer)
                .args(["wsclient", canary_arg, label, &url]),
            &format!("websocket {label}"),
        );
    }
    let redis_plain = with_stdin(
        clientpod
            .command("redis-cli")
            .args(["-h", &ip, "-p", &REDIS.to_string()]),
        &format!(
            "AUTH {}\nSET visible-key visible-value\nGET visible-key\nHELLO 3 AUTH {} {}\n\
             MIGRATE {ip} {REDIS} visible-key 0 1000 COPY AUTH {}\n\
             CONFIG SET masterauth {}\nACL SETUSER visible-acl-user on >{}\n",
            c("redis-auth-plain"),
            c("redis-hello-user-plain"),
            c("redis-hello-password-plain"),
            c("redis-migrate-password-plain"),
            c("redis-config-password-plain"),
            c("redis-acl-password-plain"),
        ),
    );
    if !redis_plain.contains("visible-value") {
        problems.push(format!("redis-cli (plain) did not log in: {redis_plain}"));
    }
    let redis_tls = with_stdin(
        clientpod.command("redis-cli").args([
            "--tls",
            "--insecure",
            "-h",
            &ip,
            "-p",
            &REDIS_TLS.to_string(),
        ]),
        &format!(
            "AUTH {} {}\nGET visible-key\n",
            c("redis-user-tls"),
            c("redis-password-tls")
        ),
    );
    if !redis_tls.contains("visible-value") {
        problems.push(format!("redis-cli (TLS) did not log in: {redis_tls}"));
    }
    // Logins with `password` (cleartext) and SCRAM; the first and last
    // also change their password with a PASSWORD literal.
    for (user, password, sslmode, tag, new) in [
        (
            "pg-user-plain",
            "pg-password-plain",
            "disable",
            "pg-plain",
            Some("pg-sql-password-plain"),
        ),
        (
            "pg-scram-user-plain",
            "pg-scram-password-plain",
            "disable",
            "pg-scram",
            None,
        ),
        (
            "pg-user-tls",
            "pg-password-tls",
            "require",
            "pg-tls",
            Some("pg-sql-password-tls"),
        ),
    ] {
        let mut sql = format!("SELECT 'visible-{tag}';\n");
        if let Some(new) = new {
            writeln!(sql, "ALTER ROLE CURRENT_USER PASSWORD '{}';", c(new)).unwrap();
        }
        let got = psql(&clientpod, &ip, (&c(user), &c(password)), sslmode, &sql);
        if !got.contains(&format!("visible-{tag}")) || got.contains("ERROR") {
            problems.push(format!("psql {tag}: {got}"));
        }
    }
    for (label, port) in [("plain", KAFKA), ("tls", KAFKA_TLS)] {
        client(
            clientpod.command("python3").arg(&peer).args([
                "kafkasasl",
                canary_arg,
                label,
                &ip,
                &port.to_string(),
            ]),
            &format!("kafka SASL {label}"),
        );
    }
    // AMQP last: RabbitMQ takes a while to boot.
    node.wait_for_tcp(server.addr(AMQP), Duration::from_secs(120))
        .unwrap();
    let home = dir.path("rabbitmq");
    {
        let label = "plain";
        let (user, password) = (
            c(&format!("amqp-user-{label}")),
            c(&format!("amqp-password-{label}")),
        );
        for args in [
            vec!["add_user", &user, &password],
            vec!["set_permissions", &user, ".*", ".*", ".*"],
        ] {
            let mut ctl = server.command("rabbitmqctl");
            rabbit_env(&mut ctl, &home, &ip);
            let done = ctl.args(&args).output().unwrap();
            if !done.status.success() {
                problems.push(format!(
                    "rabbitmqctl {}: {}",
                    args[0],
                    String::from_utf8_lossy(&done.stderr)
                ));
            }
        }
        let mut publish = clientpod.command("amqp-publish");
        publish
            .args(["--server", &ip, "--port", &AMQP.to_string()])
            .args(["--username", &user, "--password", &password]);
        let published = publish
            .args(["-r", "visible-routing-key"])
            .args(["-b", &format!("visible-amqp-body-{label}")])
            .output()
            .unwrap();
        if !published.status.success() {
            problems.push(format!(
                "amqp-publish ({label}) failed: {}",
                String::from_utf8_lossy(&published.stderr)
            ));
        }
    }

    // --- what the hub shows ---
    // Until every exchange is shown (the last ones come when their
    // connections end or idle out).
    let started = Instant::now();
    api.record.set(false);
    loop {
        let (missing, _) = check_shown(&api.all("entries", "entries"));
        if missing.is_empty() || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    api.record.set(true);
    // Whatever else the worker holds, come too.
    std::thread::sleep(Duration::from_secs(3));
    let entries = api.all("entries", "entries");
    let (missing, wrong) = check_shown(&entries);
    problems.extend(
        missing
            .into_iter()
            .map(|m| format!("not shown within 120 s: {m}")),
    );
    problems.extend(wrong);

    // Every answer of the API, once more, to search.
    for e in &entries {
        if let Some(id) = e["id"].as_str() {
            api.json(&format!("/api/entries/{id}"));
        }
    }
    api.all("rows", "rows");
    for path in [
        "/api/servicemap",
        "/api/workers",
        "/api/config",
        "/api/fields",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        let r = api.call(path);
        if r.status != 200 {
            problems.push(format!("GET {path}: {} {}", r.status, r.body));
        }
    }
    // The default PCAP export: every stored entry's connections.
    let pcap = api.call("/api/pcap");
    let export = dir.path("export.pcapng");
    let mut seen = api.seen.take();
    if pcap.status == 200 {
        std::fs::write(&export, &pcap.raw).unwrap();
        check_pcap(&export, &ip, &mut seen, &mut problems);
    } else {
        problems.push(format!("GET /api/pcap: {} {}", pcap.status, pcap.body));
    }

    // The worker and the hub end; their logs, the streams and the disk.
    Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    if worker
        .wait_timeout(Duration::from_secs(40))
        .unwrap()
        .is_none()
    {
        problems.push("the worker did not end within 40 s of SIGTERM".into());
    }
    streams_into(&mut streams, &mut seen);
    Command::new("kill")
        .args(["-TERM", &hub.id().to_string()])
        .status()
        .unwrap();
    let _ = hub.wait_timeout(Duration::from_secs(20));
    for (log, name) in [
        (&hub_log, "the hub's log"),
        (&worker_log, "the worker's log"),
    ] {
        seen.add(name, std::fs::read(log).unwrap());
    }
    for file in files_under(&disk) {
        let name = file.strip_prefix(&disk).unwrap_or(&file).display();
        seen.add(
            format!("the hub's disk store ({name})"),
            std::fs::read(&file).unwrap(),
        );
    }
    drop(servers);
    drop(broker);
    // The search would miss nothing: each place searched holds what the
    // traffic showed.
    for (place, text) in [
        ("the API's GET /api/entries?", "visible-curl-plain"),
        ("the API's GET /api/entries/{id}", "visible-curl-plain"),
        ("the API's GET /api/rows?", "/login"),
        ("the live stream (entries)", "visible-curl-plain"),
        ("the live stream (rows)", "/login"),
        ("the hub's disk store", "visible-curl-plain"),
        ("the hub's log", "workers connect"),
        ("the worker's log", "capturing"),
        ("the PCAP export's bytes", "visible-curl-plain"),
        ("tshark's decoding of the PCAP export", "visible-h2-plain"),
    ] {
        if !seen.holds(place, text) {
            problems.push(format!(
                "{place} does not hold {text:?}: the search there proves nothing"
            ));
        }
    }

    let leaks = seen.leaks(&canaries);
    let mut report = String::new();
    if !leaks.is_empty() {
        writeln!(
            report,
            "{} of {} canaries left the node:",
            leaks.len(),
            KINDS.len()
        )
        .unwrap();
        for (kind, places) in &leaks {
            let places: Vec<String> = places
                .iter()
                .map(|(place, encodings)| {
                    let encodings: Vec<&str> = encodings.iter().map(String::as_str).collect();
                    format!("{place} [{}]", encodings.join(", "))
                })
                .collect();
            writeln!(report, "  LEAK {kind}: {}", places.join("; ")).unwrap();
        }
    }
    if !problems.is_empty() {
        writeln!(report, "{} problems:", problems.len()).unwrap();
        for p in &problems {
            writeln!(report, "  {p}").unwrap();
        }
    }
    assert!(report.is_empty(), "{report}");
}

/// What the streams recorded (their clients stopped first).
fn streams_into(streams: &mut Vec<(Process, PathBuf, &str)>, seen: &mut Seen) {
    for (p, out, name) in streams.drain(..) {
        drop(p);
        seen.add(
            format!("the live stream ({name})"),
            std::fs::read(&out).unwrap_or_default(),
        );
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The traffic, shown right: each request once with its method, path
/// (secrets gone), status, visible headers, `tls` flag, and what was
/// redacted named in `redacted`.
/// Returns what is not shown (yet), and what is shown wrong.
fn check_shown(entries: &[Value]) -> (Vec<String>, Vec<String>) {
    let (mut missing, mut problems) = (Vec::new(), Vec::new());
    // (X-Request-Id, protocol, method, path prefix, status, tls, redacted must name)
    let http = [
        (
            "visible-curl-plain",
            "http",
            "GET",
            "/login",
            200,
            false,
            &["authorization", "cookie", "password", "user", "set-cookie"][..],
        ),
        (
            "visible-curl-tls",
            "http",
            "GET",
            "/login",
            200,
            true,
            &["authorization", "cookie", "password", "user", "set-cookie"][..],
        ),
        (
            "visible-json-plain",
            "http",
            "POST",
            "/json",
            200,
            false,
            &["password", "token"][..],
        ),
        (
            "visible-json-tls",
            "http",
            "POST",
            "/json",
            200,
            true,
            &["password", "token"][..],
        ),
        (
            "visible-graphql-plain",
            "graphql",
            "mutation",
            "Login",
            200,
            false,
            &["password"][..],
        ),
        (
            "visible-graphql-tls",
            "graphql",
            "mutation",
            "Login",
            200,
            true,
            &["password"][..],
        ),
        (
            "visible-form-plain",
            "http",
            "POST",
            "/form",
            201,
            false,
            &["password"][..],
        ),
        (
            "visible-form-tls",
            "http",
            "POST",
            "/form",
            201,
            true,
            &["password"][..],
        ),
        (
            "visible-basic-plain",
            "http",
            "GET",
            "/basic",
            200,
            false,
            &["authorization"][..],
        ),
        (
            "visible-basic-tls",
            "http",
            "GET",
            "/basic",
            200,
            true,
            &["authorization"][..],
        ),
        (
            "visible-h2-plain",
            "http2",
            "GET",
            "/h2-page",
            200,
            false,
            &["authorization", "cookie", "token"][..],
        ),
        (
            "visible-h2-tls",
            "http2",
            "GET",
            "/h2-page",
            200,
            true,
            &["authorization", "cookie", "token"][..],
        ),
        (
            "visible-go-h1",
            "http",
            "GET",
            "/go-h1",
            200,
            true,
            &["authorization"][..],
        ),
        (
            "visible-go-h2",
            "http2",
            "GET",
            "/h2-page",
            200,
            true,
            &["authorization"][..],
        ),
        (
            "visible-grpc",
            "grpc",
            "",
            "/demo.Auth/Login",
            0,
            false,
            &["authorization"][..],
        ),
    ];
    for (id, protocol, method, path, status, tls, names) in http {
        let found: Vec<&Value> = entries
            .iter()
            .filter(|e| header(e, "request", "x-request-id") == id)
            .collect();
        if found.len() != 1 {
            let list = if found.is_empty() {
                &mut missing
            } else {
                &mut problems
            };
            list.push(format!("{id}: {} entries, not 1", found.len()));
            continue;
        }
        let e = found[0];
        let mut wrong = Vec::new();
        if e["protocol"] != protocol {
            wrong.push(format!("protocol {} (want {protocol})", e["protocol"]));
        }
        if !method.is_empty() && e["request"]["method"] != method {
            wrong.push(format!("method {}", e["request"]["method"]));
        }
        let p = e["request"]["path"].as_str().unwrap_or("");
        if !p.starts_with(path) {
            wrong.push(format!("path {p:?} (want {path}…)"));
        }
        if protocol == "grpc" {
            if e["response"]["status"] != 0 {
                wrong.push(format!("grpc-status {}", e["response"]["status"]));
            }
        } else if e["response"]["status"] != status {
            wrong.push(format!("status {}", e["response"]["status"]));
        }
        if e["tls"] != tls {
            wrong.push(format!("tls {} (want {tls})", e["tls"]));
        }
        if id == "visible-curl-plain" || id == "visible-curl-tls" {
            if !p.contains("page=visible-page") {
                wrong.push(format!("the query's visible parameter is gone: {p:?}"));
            }
            let served = header(e, "response", "x-served-by");
            if !served.starts_with("visible-server-") {
                wrong.push(format!("response header x-served-by {served:?}"));
            }
        }
        let r = redacted(e);
        for n in names {
            if !r.iter().any(|f| f.contains(n)) {
                wrong.push(format!("`redacted` does not name {n}: {r:?}"));
            }
        }
        if !wrong.is_empty() {
            problems.push(format!("{id} shown wrong: {}", wrong.join("; ")));
        }
    }
    // The other protocols: each secret-bearing message shown, with its
    // secret named in `redacted`, beside what is not secret.
    // (what, protocol, tls, a field's path and the text it must hold, a
    // word `redacted` must name, or "" when nothing is secret there)
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let field = |e: &Value, path: &str| {
        let mut v = e;
        for p in path.split('.') {
            v = &v[p];
        }
        s(v)
    };
    let checks: &[(&str, &str, bool, &str, &str, &str)] = &[
        (
            "WebSocket message",
            "websocket",
            false,
            "request.payload",
            "visible-ws-plain",
            "token",
        ),
        (
            "WebSocket message",
            "websocket",
            true,
            "request.payload",
            "visible-ws-tls",
            "token",
        ),
        (
            "WebSocket answer",
            "websocket",
            false,
            "response.payload",
            "visible-ws-reply-plain",
            "token",
        ),
        (
            "WebSocket answer",
            "websocket",
            true,
            "response.payload",
            "visible-ws-reply-tls",
            "token",
        ),
        (
            "Redis AUTH",
            "redis",
            false,
            "request.command",
            "AUTH",
            "args",
        ),
        (
            "Redis AUTH",
            "redis",
            true,
            "request.command",
            "AUTH",
            "args",
        ),
        (
            "Redis HELLO",
            "redis",
            false,
            "request.command",
            "HELLO",
            "args",
        ),
        (
            "Redis MIGRATE",
            "redis",
            false,
            "request.command",
            "MIGRATE",
            "args",
        ),
        (
            "Redis CONFIG SET",
            "redis",
            false,
            "request.command",
            "CONFIG SET",
            "args",
        ),
        (
            "Redis ACL SETUSER",
            "redis",
            false,
            "request.command",
            "ACL SETUSER",
            "args",
        ),
        (
            "Redis GET",
            "redis",
            false,
            "response.value",
            "visible-value",
            "",
        ),
        (
            "Redis GET",
            "redis",
            true,
            "response.value",
            "visible-value",
            "",
        ),
        (
            "PostgreSQL login",
            "postgres",
            false,
            "response.auth_method",
            "cleartext",
            "user",
        ),
        (
            "PostgreSQL login",
            "postgres",
            true,
            "response.auth_method",
            "cleartext",
            "user",
        ),
        (
            "PostgreSQL SCRAM login",
            "postgres",
            false,
            "response.auth_method",
            "sasl",
            "user",
        ),
        (
            "PostgreSQL query",
            "postgres",
            false,
            "request.sql",
            "visible-pg-plain",
            "",
        ),
        (
            "PostgreSQL query",
            "postgres",
            true,
            "request.sql",
            "visible-pg-tls",
            "",
        ),
        (
            "PostgreSQL query",
            "postgres",
            false,
            "request.sql",
            "visible-pg-scram",
            "",
        ),
        (
            "PostgreSQL ALTER ROLE",
            "postgres",
            false,
            "request.sql",
            "ALTER ROLE CURRENT_USER PASSWORD",
            "sql",
        ),
        (
            "PostgreSQL ALTER ROLE",
            "postgres",
            true,
            "request.sql",
            "ALTER ROLE CURRENT_USER PASSWORD",
            "sql",
        ),
        (
            "Kafka SaslAuthenticate",
            "kafka",
            false,
            "request.api_name",
            "SaslAuthenticate",
            "sasl",
        ),
        (
            "Kafka client id",
            "kafka",
            false,
            "request.client_id",
            "visible-kafka-client",
            "",
        ),
        (
            "AMQP connection.start-ok",
            "amqp",
            false,
            "response.method",
            "connection.start-ok",
            "response",
        ),
        (
            "AMQP basic.publish",
            "amqp",
            false,
            "request.routing_key",
            "visible-routing-key",
            "",
        ),
        (
            "AMQP message",
            "amqp",
            false,
            "request.body",
            "visible-amqp-body-plain",
            "",
        ),
        (
            "Kafka SaslAuthenticate",
            "kafka",
            true,
            "request.api_name",
            "SaslAuthenticate",
            "sasl",
        ),
        (
            "Kafka client id",
            "kafka",
            true,
            "request.client_id",
            "visible-kafka-client",
            "",
        ),
    ];
    for (what, protocol, tls, path, text, names) in checks {
        let found: Vec<&Value> = entries
            .iter()
            .filter(|e| e["protocol"] == *protocol && e["tls"] == *tls)
            .filter(|e| field(e, path).contains(text))
            .collect();
        let how = if *tls { "through TLS" } else { "in clear" };
        let Some(e) = found.first() else {
            missing.push(format!(
                "{what} {how}: no {protocol} entry whose {path} holds {text:?}"
            ));
            continue;
        };
        let r = redacted(e);
        if !names.is_empty() && !r.iter().any(|f| f.contains(names)) {
            problems.push(format!(
                "{what} {how}: `redacted` does not name {names}: {r:?}"
            ));
        }
    }
    (missing, problems)
}

/// The export: its bytes and tshark's full decoding of it go to `seen`;
/// tshark must still read the HTTP requests.
fn check_pcap(export: &Path, ip: &str, seen: &mut Seen, problems: &mut Vec<String>) {
    seen.add("the PCAP export's bytes", std::fs::read(export).unwrap());
    let decode_as = [
        format!("tcp.port=={H2C},http2"),
        format!("tcp.port=={H2_TLS},http2"),
        format!("tcp.port=={GRPC},http2"),
        format!("tcp.port=={REDIS},resp"),
        format!("tcp.port=={REDIS_TLS},resp"),
        format!("tcp.port=={AMQP},amqp"),
        format!("tcp.port=={KAFKA},kafka"),
        format!("tcp.port=={KAFKA_TLS},kafka"),
        format!("tcp.port=={HTTPS},http"),
        format!("tcp.port=={WSS},http"),
    ];
    let tshark = |extra: &[&str]| {
        let mut cmd = Command::new("tshark");
        cmd.args(["-n", "-r"]).arg(export);
        for d in &decode_as {
            cmd.args(["-d", d]);
        }
        cmd.args(extra).output().unwrap()
    };
    let verbose = tshark(&["-V"]);
    if !verbose.status.success() {
        problems.push(format!(
            "tshark cannot read the export: {}",
            String::from_utf8_lossy(&verbose.stderr)
        ));
    }
    seen.add("tshark's decoding of the PCAP export", verbose.stdout);
    let methods = tshark(&[
        "-Y",
        "http.request",
        "-T",
        "fields",
        "-e",
        "ip.dst",
        "-e",
        "http.request.method",
        "-e",
        "http.request.uri",
    ]);
    let rows: Vec<String> = String::from_utf8_lossy(&methods.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    for (method, path) in [
        ("GET", "/login"),
        ("POST", "/json"),
        ("POST", "/graphql"),
        ("POST", "/form"),
        ("GET", "/basic"),
        ("GET", "/go-h1"),
    ] {
        let n = rows
            .iter()
            .filter(|r| {
                let f: Vec<&str> = r.split('\t').collect();
                f.len() == 3 && f[0] == ip && f[1] == method && f[2].starts_with(path)
            })
            .count();
        let want = if path == "/go-h1" { 1 } else { 2 };
        if n < want {
            problems.push(format!(
                "tshark reads {n} {method} {path} requests in the export, not {want}: {rows:?}"
            ));
        }
    }
}
