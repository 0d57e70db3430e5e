//! Mutual TLS between real `tap-worker` and `tap-hub` processes: a worker
//! with the install's certificate ships; one with a self-signed certificate
//! (made by openssl), one from another CA and an expired one are refused,
//! the hub logs each refusal with the worker's address and the reason, and
//! the worker says why and keeps retrying; a worker that does not trust the
//! hub's certificate sends nothing. And the local flow: `tap-hub` and
//! `tap-worker` with no certificate flags find the same generated set.

// Shared with hub_workers.rs, which uses the rest of it.
#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, SystemTime};
use support::process::{Hub, Process, Summary, finish_worker, start_worker_with, worker_binary};
use tap_certs::{CertSet, KeyedCert, Validity};
use testkit::synth::exchanges::{self as capture, Spec};
use testkit::{TempDir, eventually, require_tools};

const EXCHANGES: usize = 20;

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents)
        .unwrap_or_else(|e| panic!("writing {}: {e}", dir.join(name).display()));
}

/// A worker's directory: `ca` as the CA it trusts, `cert` as its own.
fn worker_dir(root: &TempDir, name: &str, ca: &str, cert: &KeyedCert) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("a certificate directory");
    write(&dir, tap_certs::CA_CERT, ca);
    write(&dir, tap_certs::WORKER_CERT, &cert.cert);
    write(&dir, tap_certs::WORKER_KEY, &cert.key);
    dir
}

/// A self-signed certificate as someone would make one by hand (openssl).
fn self_signed(root: &TempDir) -> KeyedCert {
    let (cert, key) = testkit::self_signed(root, "kubetap worker");
    let read = |p: &Path| std::fs::read_to_string(p).expect("openssl's output");
    KeyedCert {
        cert: read(&cert),
        key: read(&key),
    }
}

fn days_ago(days: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(days * 86_400)
}

/// Runs a worker that the hub must not hear from to its end; its status,
/// summary and log.
fn refused_worker(
    hub: &Hub,
    node: &str,
    certs: &Path,
    file: &Path,
) -> (ExitStatus, Summary, String) {
    let mut worker = start_worker_with(&hub.url(), certs, node, file, &["--finish-timeout", "3"]);
    let (status, summary) = finish_worker(&mut worker, Duration::from_secs(60));
    (status, summary, worker.log())
}

#[test]
fn only_workers_with_a_certificate_of_the_install_ship() {
    if !require_tools("mutual TLS test", false, &["openssl"]) {
        return;
    }
    let root = TempDir::new("mtls");
    let file = root.join("w.pcap");
    capture::write(&file, &Spec::new(1, EXCHANGES, Duration::from_secs(1)));

    // The install: its CA stays in memory here, to sign an expired
    // certificate below.
    let validity = Validity::days(1);
    let install = tap_certs::Ca::new(&validity).expect("the install's CA");
    let set = CertSet {
        ca: install.pem(),
        hub: install
            .hub(&tap_certs::local_hub_names(), &validity)
            .expect("the hub's certificate"),
        worker: install.worker(&validity).expect("the workers' certificate"),
    };
    let hub_dir = root.join("hub");
    set.write(&hub_dir).expect("writing the install's set");
    let mut hub = Hub::start_with_certs("127.0.0.1:0", "127.0.0.1:0", &hub_dir, &[]);

    // The install's worker ships everything.
    let mut good = start_worker_with(&hub.url(), &hub_dir, "good", &file, &[]);
    let (status, s) = finish_worker(&mut good, Duration::from_secs(60));
    assert!(status.success(), "the good worker failed:\n{}", good.log());
    assert_eq!(s.acknowledged, EXCHANGES as u64, "{s:?}");

    let other = tap_certs::Ca::new(&validity).expect("another install's CA");
    let cases = [
        (
            "self-signed",
            self_signed(&root),
            "invalid peer certificate",
            "the hub refused this worker's certificate",
        ),
        (
            "other-ca",
            other
                .worker(&validity)
                .expect("another CA's worker certificate"),
            "invalid peer certificate: UnknownIssuer",
            "it is not signed by the hub's CA",
        ),
        (
            "expired",
            install
                .worker(&Validity::between(days_ago(30), days_ago(1)))
                .expect("an expired worker certificate"),
            "invalid peer certificate: certificate expired",
            "it has expired or is not valid yet",
        ),
    ];
    for (node, cert, hub_says, worker_says) in cases {
        let certs = worker_dir(&root, node, &set.ca, &cert);
        let seen = hub.process.log().len();
        let (status, s, log) = refused_worker(&hub, node, &certs, &file);
        assert!(!status.success(), "{node}: the worker says it delivered");
        assert_eq!(s.acknowledged, 0, "{node}: {s:?}");
        let refusals = log
            .lines()
            .filter(|l| l.contains(worker_says) && l.contains(&*certs.to_string_lossy()))
            .count();
        assert!(
            refusals >= 2,
            "{node}: the worker does not say {worker_says:?} naming {} on each retry:\n{log}",
            certs.display()
        );
        let line = eventually(Duration::from_secs(10), "the hub's refusal line", || {
            hub.process.log()[seen..]
                .lines()
                .find(|l| l.contains("refused a worker: TLS handshake failed"))
                .map(str::to_string)
        });
        assert!(
            line.contains("peer=127.0.0.1:") && line.contains(hub_says),
            "{node}: the hub's refusal names neither the worker's address nor {hub_says:?}: {line}"
        );
        assert!(hub.worker(node).is_none(), "{node} got a session");
    }

    // A worker that trusts another CA does not send to this hub.
    let certs = worker_dir(&root, "distrust", &other.pem(), &set.worker);
    let seen = hub.process.log().len();
    let (status, s, log) = refused_worker(&hub, "distrust", &certs, &file);
    assert!(
        !status.success(),
        "the distrusting worker says it delivered"
    );
    assert_eq!(s.acknowledged, 0, "{s:?}");
    let ca = certs.join("ca.pem");
    assert!(
        log.contains(&format!(
            "the hub's certificate is not signed by the CA in {}",
            ca.display()
        )),
        "the worker does not say it distrusts the hub:\n{log}"
    );
    eventually(Duration::from_secs(10), "the hub's line", || {
        hub.process.log()[seen..]
            .contains("a worker refused the hub's certificate")
            .then_some(())
    });
    assert!(hub.worker("distrust").is_none(), "distrust got a session");

    // Only the good worker's entries are stored; the refusals are counted.
    assert_eq!(hub.entries("").len(), EXCHANGES);
    let refused = hub.workers()["hub"]["refused_handshakes"]
        .as_u64()
        .expect("refused_handshakes");
    assert!(
        refused >= 8,
        "refused_handshakes {refused}: each worker retried"
    );
    let metrics = hub.get("/metrics").body;
    assert!(
        metrics.contains(&format!("kubetap_hub_refused_handshakes_total {refused}")),
        "{metrics}"
    );
    hub.process.kill();
}

/// `tap-hub` then `tap-worker` with no certificate flags: the hub makes a
/// set in the default directory on its first start, the worker finds it
/// there; the hub's certificate names localhost and 127.0.0.1.
#[test]
fn hub_and_worker_share_the_local_certificates_without_flags() {
    let root = TempDir::new("mtls-local");
    let state = root.join("state");
    let file = root.join("w.pcap");
    capture::write(&file, &Spec::new(2, EXCHANGES, Duration::from_secs(1)));
    let certs = state.join("kubetap/certs");
    let mut command = Hub::command("127.0.0.1:0", "127.0.0.1:0");
    command.env("XDG_STATE_HOME", &state);
    let hub = Hub::spawn(&mut command, &certs);
    assert!(
        hub.process.log().contains(&format!(
            "generated certificates for local use in {}",
            certs.display()
        )),
        "the hub does not say where it put the certificates:\n{}",
        hub.process.log()
    );
    for (node, host) in [("by-name", "localhost"), ("by-address", "127.0.0.1")] {
        let mut command = Command::new(worker_binary());
        command
            .env("XDG_STATE_HOME", &state)
            .args(["--hub", &format!("https://{host}:{}", hub.grpc.port())])
            .args(["--node", node, "--file"])
            .arg(&file);
        let mut worker = Process::spawn(node, &mut command, None);
        let (status, s) = finish_worker(&mut worker, Duration::from_secs(60));
        assert!(status.success(), "{node}:\n{}", worker.log());
        assert_eq!(s.acknowledged, EXCHANGES as u64, "{node}: {s:?}");
    }
    assert_eq!(hub.entries("").len(), 2 * EXCHANGES);
}
