//! `cargo xtask demo`: a small microservice shop in network-namespace pods on
//! a bridge (testkit's node, exactly what a CNI bridge makes), under a steady
//! load, watched by `kubetap tap --local` with the UI on port 8899.
//!
//! Pods (namespace `shop`): `frontend` (HTTP/1, Python) calls `catalogue`
//! (HTTP/1 JSON, Python), `cache` (redis-server) and `orders` (gRPC,
//! grpcio), which keeps orders in `db` (a PostgreSQL server); every pod
//! resolves the others' names through `dns` (dnsmasq); `loadgen` plays
//! shoppers. The services are `xtask/demo/shop.py` and Debian's servers.
//!
//! `--seconds N --check` runs it for N seconds and fails unless entries of
//! every protocol arrived, between the right pods (what `cargo xtask test`
//! runs).

use crate::root;
use anyhow::{Context as _, Result, bail};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use testkit::{Node, Pod, Process};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Port of the UI on 127.0.0.1.
    #[arg(long, default_value_t = 8899)]
    pub port: u16,
    /// Stop after this many seconds (default: at Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Before stopping, fail unless every protocol's entries arrived.
    #[arg(long, requires = "seconds")]
    pub check: bool,
    /// Use the debug build of kubetap (what the tests built) instead of release.
    #[arg(long)]
    pub debug: bool,
}

const SERVICES: [&str; 7] = [
    "dns",
    "db",
    "cache",
    "catalogue",
    "orders",
    "frontend",
    "loadgen",
];

/// Removes the pods' resolv.conf overrides (`/etc/netns/<pod>/`).
struct EtcNetns(Vec<PathBuf>);

impl Drop for EtcNetns {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

pub fn run(args: &DemoArgs, kubetap: &Path) -> Result<()> {
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        // Ctrl-C reaches kubetap (same terminal); this process outlives it
        // to take the shop down.
        let interrupted = interrupted.clone();
        ctrlc::set_handler(move || interrupted.store(true, Ordering::Relaxed))
            .context("setting the Ctrl-C handler")?;
    }
    let node = Node::new("demo").context("making the demo node (network namespaces)")?;
    let pods: Vec<Pod> = SERVICES
        .iter()
        .map(|s| node.pod(s))
        .collect::<Result<_, _>>()
        .context("making the shop's pods")?;
    let pod = |name: &str| pods.iter().find(|p| p.name == name).expect("a shop pod");
    let dns_ip = pod("dns").ip;
    let etc = EtcNetns(
        pods.iter()
            .map(|p| PathBuf::from("/etc/netns").join(&p.netns))
            .collect(),
    );
    for d in &etc.0 {
        std::fs::create_dir_all(d)?;
        std::fs::write(
            d.join("resolv.conf"),
            format!("nameserver {dns_ip}\nsearch shop.svc\n"),
        )?;
    }
    let work = std::env::temp_dir().join(format!("kubetap-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let _work = RemoveDir(work.clone());
    let mut procs: Vec<Process> = Vec::new();
    let quiet = |c: &mut Command| {
        c.stdout(Stdio::null()).stderr(Stdio::null());
    };

    eprintln!("xtask: starting the shop: {}", SERVICES.join(", "));
    // DNS: every service's name.
    let mut dns = pod("dns").command("dnsmasq");
    dns.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--pid-file=",
        "--user=root",
    ])
    .arg(format!("--listen-address={dns_ip}"))
    // The shop's zone is answered from here alone, as a cluster's DNS
    // answers its own: an AAAA query for a name with only an IPv4 address
    // gets an empty answer (NODATA), not REFUSED for want of an upstream.
    .arg("--local=/shop.svc/");
    for p in &pods {
        dns.arg(format!("--host-record={}.shop.svc,{}", p.name, p.ip));
    }
    quiet(&mut dns);
    procs.push(pod("dns").spawn(&mut dns)?);

    // PostgreSQL as nobody, open to the pods.
    let (pg_bin, _) = postgres_bin()?;
    let data = work.join("pg");
    std::fs::create_dir_all(&data)?;
    std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    crate::exec(Command::new("chown").arg("nobody:").arg(&data))?;
    let initdb = Command::new("setpriv")
        .args(nobody())
        .arg(pg_bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--no-sync", "--no-locale"])
        .current_dir(&work)
        .stdout(Stdio::null())
        .status()
        .context("running initdb")?;
    if !initdb.success() {
        bail!("initdb failed ({initdb})");
    }
    let mut hba = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("pg_hba.conf"))?;
    writeln!(hba, "host all all 0.0.0.0/0 trust")?;
    let db = pod("db");
    let mut pg = db.command("setpriv");
    pg.args(nobody())
        .arg(pg_bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(&data)
        .args(["-c", &format!("listen_addresses={}", db.ip)])
        .args(["-c", "fsync=off", "-c", "ssl=off"])
        .current_dir(&work);
    quiet(&mut pg);
    procs.push(db.spawn(&mut pg)?);

    let cache = pod("cache");
    let mut redis = cache.command("redis-server");
    redis
        .args(["--bind", &cache.ip.to_string(), "--port", "6379"])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"]);
    quiet(&mut redis);
    procs.push(cache.spawn(&mut redis)?);
    node.wait_for_tcp(db.addr(5432), Duration::from_secs(30))?;
    node.wait_for_tcp(cache.addr(6379), Duration::from_secs(10))?;

    let shop = root().join("xtask/demo/shop.py");
    for (name, port) in [("catalogue", 8080), ("orders", 9090), ("frontend", 8080)] {
        let p = pod(name);
        let mut c = p.command("python3");
        c.arg(&shop)
            .arg(name)
            .arg(port.to_string())
            .current_dir(&work);
        c.stdout(Stdio::null());
        procs.push(p.spawn(&mut c)?);
        node.wait_for_tcp(p.addr(port), Duration::from_secs(30))
            .with_context(|| format!("the shop's {name} did not start"))?;
    }
    let lg = pod("loadgen");
    let mut c = lg.command("python3");
    c.arg(&shop).args(["loadgen", "8080"]).current_dir(&work);
    procs.push(lg.spawn(&mut c)?);

    let list = work.join("pods.json");
    let json: Vec<String> = pods
        .iter()
        .map(|p| {
            format!(
                r#"{{"name":"{}","namespace":"shop","ips":["{}"]}}"#,
                p.name, p.ip
            )
        })
        .collect();
    std::fs::write(&list, format!("[{}]", json.join(",")))?;

    let ns = testkit::netns::netns_path(node.netns());
    // The demo knows the UI's token, to print the URL and for its --check:
    // the user's KUBETAP_TOKEN, else a new one.
    let token = match std::env::var("KUBETAP_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes)
                .map_err(|e| anyhow::anyhow!("no randomness for the UI's token: {e}"))?;
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    let mut cmd = Command::new(kubetap);
    cmd.env("KUBETAP_TOKEN", &token)
        .args(["tap", "--local", "--no-browser"])
        .arg("--port")
        .arg(args.port.to_string())
        .arg("--netns")
        .arg(&ns)
        .arg("--pods")
        .arg(&list);
    eprintln!("xtask: running {cmd:?}");
    eprintln!(
        "\nxtask: the shop runs in network namespaces on bridge cbr0 of {}; kubetap watches its pods.\n       Open http://localhost:{}/?token={token} — Ctrl-C stops kubetap and the shop.\n",
        node.netns(),
        args.port
    );
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", kubetap.display()))?;
    let started = Instant::now();
    let mut result = Ok(());
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() && !interrupted.load(Ordering::Relaxed) {
                result = Err(anyhow::anyhow!("kubetap failed ({status})"));
            }
            break;
        }
        if let Some(s) = args.seconds
            && started.elapsed() >= Duration::from_secs(s)
        {
            if args.check {
                result = check(args.port, &token);
            }
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let status = child.wait()?;
            if result.is_ok() && !status.success() {
                result = Err(anyhow::anyhow!("kubetap failed ({status})"));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("xtask: taking the shop down");
    drop(procs);
    drop(node);
    drop(etc);
    if result.is_ok() && args.check {
        eprintln!("xtask: demo check passed");
    }
    result
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn nobody() -> [&'static str; 4] {
    [
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--reset-env",
    ]
}

/// Debian's PostgreSQL server binaries (the newest installed version).
fn postgres_bin() -> Result<(PathBuf, u32)> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL's server is not installed (cargo xtask setup installs it)")?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    let (v, bin) = found
        .pop()
        .context("no PostgreSQL server under /usr/lib/postgresql")?;
    Ok((bin, v))
}

fn get(port: u16, token: &str, path: &str) -> Result<serde_json::Value> {
    let addr = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let reply = testkit::http::try_request_as(addr, "GET", path, None, Some(token), &[])
        .map_err(anyhow::Error::msg)?;
    serde_json::from_str(&reply.body).with_context(|| format!("GET {path}: {}", reply.body))
}

/// Every protocol of the shop shows up, between the pods that speak it.
fn check(port: u16, token: &str) -> Result<()> {
    let cases = [
        ("http", "loadgen", "frontend"),
        ("http", "frontend", "catalogue"),
        ("grpc", "frontend", "orders"),
        ("redis", "frontend", "cache"),
        ("postgres", "orders", "db"),
        ("dns", "loadgen", "dns"),
    ];
    let mut missing = Vec::new();
    for (protocol, src, dst) in cases {
        let filter =
            format!("protocol == \"{protocol}\" && src.pod == \"{src}\" && dst.pod == \"{dst}\"");
        let q: String = url_encode(&filter);
        let v = get(port, token, &format!("/api/entries?filter={q}&limit=5"))?;
        let n = v["entries"].as_array().map_or(0, Vec::len);
        eprintln!("xtask: check: {protocol} {src} -> {dst}: {n} entries (of at most 5 asked)");
        if n == 0 {
            missing.push(format!("{protocol} {src} -> {dst}"));
        }
    }
    let workers = get(port, token, "/api/workers")?;
    eprintln!("xtask: check: workers: {}", workers["workers"]);
    if !missing.is_empty() {
        bail!("the demo made no entries for: {}", missing.join(", "));
    }
    Ok(())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
