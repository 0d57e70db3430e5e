//! Handshakes between the hub's server settings and worker-side clients, in
//! memory through rustls, and the files' layout and modes.

use super::*;
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, ClientConfig, ClientConnection, ServerConnection};
use std::os::unix::fs::PermissionsExt as _;

fn names() -> Vec<String> {
    vec![
        "kubetap-hub.kubetap.svc".into(),
        "localhost".into(),
        "127.0.0.1".into(),
    ]
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

/// A worker-side rustls client trusting `ca`, presenting `worker` if any.
fn client(ca: &str, worker: Option<&KeyedCert>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).expect("a CA certificate");
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    Arc::new(match worker {
        Some(w) => builder
            .with_client_auth_cert(
                certs(&w.cert),
                PrivateKeyDer::from_pem_slice(w.key.as_bytes()).expect("a PEM key"),
            )
            .expect("a client certificate"),
        None => builder.with_no_client_auth(),
    })
}

/// Runs a handshake in memory; each side's first error, if any.
fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> (Option<rustls::Error>, Option<rustls::Error>) {
    let name = ServerName::try_from(name.to_string()).expect("a server name");
    let mut c = ClientConnection::new(client, name).expect("a client connection");
    let mut s = ServerConnection::new(server).expect("a server connection");
    let (mut server_err, mut client_err) = (None, None);
    for _ in 0..16 {
        let mut moved = false;
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("client writes");
        }
        if !buf.is_empty() && server_err.is_none() {
            moved = true;
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).expect("server reads");
            }
            if let Err(e) = s.process_new_packets() {
                server_err = Some(e);
            }
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).expect("server writes");
        }
        if !buf.is_empty() && client_err.is_none() {
            moved = true;
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).expect("client reads");
            }
            if let Err(e) = c.process_new_packets() {
                client_err = Some(e);
            }
        }
        if !moved {
            break;
        }
    }
    if server_err.is_none() && client_err.is_none() {
        assert!(
            !s.is_handshaking() && !c.is_handshaking(),
            "the handshake neither finished nor failed"
        );
    }
    (server_err, client_err)
}

fn written_set(dir: &Path) -> CertSet {
    let set = CertSet::generate(&names(), &Validity::days(1)).expect("a set");
    set.write(dir).expect("writing the set");
    set
}

fn past(days_ago: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(days_ago * 86_400)
}

#[test]
fn a_worker_of_the_install_is_accepted_for_each_hub_name() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let set = written_set(dir.path());
    let server = HubCerts::load(dir.path())
        .expect("the hub's files")
        .server_config()
        .expect("server settings");
    WorkerCerts::load(dir.path()).expect("the worker's files");
    for name in names() {
        let (s, c) = handshake(server.clone(), client(&set.ca, Some(&set.worker)), &name);
        assert!(
            s.is_none() && c.is_none(),
            "{name}: hub {s:?}, worker {c:?}"
        );
    }
}

#[test]
fn the_hub_refuses_workers_without_a_certificate_of_its_ca() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let set = written_set(dir.path());
    let server = HubCerts::load(dir.path())
        .expect("the hub's files")
        .server_config()
        .expect("server settings");
    let other = Ca::new(&Validity::days(1)).expect("another CA");
    let install = Ca::new(&Validity::days(1)).expect("a CA");
    // An expired certificate needs the install's CA key: a set whose CA is
    // kept in memory, written over the hub's files.
    let hub = install.hub(&names(), &Validity::days(1)).expect("hub");
    CertSet {
        ca: install.pem(),
        hub: hub.clone(),
        worker: set.worker.clone(),
    }
    .write(dir.path())
    .expect("rewriting the set");
    let server_same_ca = HubCerts::load(dir.path())
        .expect("the hub's files")
        .server_config()
        .expect("server settings");
    let expired = install
        .worker(&Validity::between(past(30), past(1)))
        .expect("an expired worker certificate");
    let not_yet = install
        .worker(&Validity::between(
            SystemTime::now() + Duration::from_secs(86_400),
            SystemTime::now() + Duration::from_secs(2 * 86_400),
        ))
        .expect("a future worker certificate");

    struct Case {
        what: &'static str,
        server: Arc<rustls::ServerConfig>,
        /// The CA the worker trusts: the hub's.
        ca: String,
        worker: Option<KeyedCert>,
        hub_says: &'static str,
        alert: AlertDescription,
        worker_says: &'static str,
    }
    let cases = [
        Case {
            what: "another CA's worker certificate",
            server: server.clone(),
            ca: set.ca.clone(),
            worker: Some(other.worker(&Validity::days(1)).expect("worker")),
            hub_says: "UnknownIssuer",
            alert: AlertDescription::UnknownCA,
            worker_says: "not signed by the hub's CA",
        },
        Case {
            what: "an expired certificate",
            server: server_same_ca.clone(),
            ca: install.pem(),
            worker: Some(expired),
            hub_says: "certificate expired",
            alert: AlertDescription::CertificateExpired,
            worker_says: "has expired or is not valid yet",
        },
        Case {
            what: "a certificate not valid yet",
            server: server_same_ca.clone(),
            ca: install.pem(),
            worker: Some(not_yet),
            hub_says: "not valid yet",
            alert: AlertDescription::CertificateExpired,
            worker_says: "has expired or is not valid yet",
        },
        Case {
            what: "the hub's server certificate presented as a worker's",
            server: server_same_ca,
            ca: install.pem(),
            worker: Some(hub),
            hub_says: "does not allow extended key usage for client authentication",
            alert: AlertDescription::UnsupportedCertificate,
            worker_says: "the hub refused this worker's certificate",
        },
        Case {
            what: "no certificate",
            server,
            ca: set.ca.clone(),
            worker: None,
            hub_says: "peer sent no certificates",
            alert: AlertDescription::CertificateRequired,
            worker_says: "requires a worker certificate",
        },
    ];
    for case in cases {
        let (s, c) = handshake(
            case.server,
            client(&case.ca, case.worker.as_ref()),
            "localhost",
        );
        let s = s.unwrap_or_else(|| panic!("{}: the hub accepted it", case.what));
        assert!(
            s.to_string().contains(case.hub_says),
            "{}: the hub's reason {s}",
            case.what
        );
        let c = c.unwrap_or_else(|| panic!("{}: the worker saw no refusal", case.what));
        assert_eq!(
            c,
            rustls::Error::AlertReceived(case.alert),
            "{}: the worker's error",
            case.what
        );
        let why = explain_refusal(&c, Path::new("/certs")).expect("a TLS refusal is explained");
        assert!(why.contains(case.worker_says), "{}: {why}", case.what);
        // Through h2 only the text of the error is left.
        let text = io::Error::new(io::ErrorKind::InvalidData, c.to_string());
        let why = explain_refusal(&text, Path::new("/certs")).expect("explained from its text");
        assert!(
            why.contains(case.worker_says),
            "{}, as text: {why}",
            case.what
        );
    }
}

#[test]
fn a_worker_refuses_a_hub_it_does_not_trust() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let set = written_set(dir.path());
    let server = HubCerts::load(dir.path())
        .expect("the hub's files")
        .server_config()
        .expect("server settings");
    let other = Ca::new(&Validity::days(1)).expect("another CA");
    let (_, c) = handshake(
        server.clone(),
        client(&other.pem(), Some(&set.worker)),
        "localhost",
    );
    let c = c.expect("the worker refuses");
    let why = explain_refusal(&c, Path::new("/certs")).expect("explained");
    assert!(
        why.contains("the hub's certificate is not signed by the CA in /certs/ca.pem"),
        "{why}"
    );

    let (_, c) = handshake(server, client(&set.ca, Some(&set.worker)), "hub.example");
    let c = c.expect("the worker refuses a hub certificate for other names");
    let why = explain_refusal(&c, Path::new("/certs")).expect("explained");
    assert!(why.contains("does not name the host"), "{why}");
}

#[test]
fn keys_are_private_and_a_missing_file_is_named() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let certs = dir.path().join("certs");
    written_set(&certs);
    let mode = |f: &str| {
        fs::metadata(certs.join(f))
            .expect("the file")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700, "the directory");
    for (file, want) in [
        (CA_CERT, 0o644),
        (HUB_CERT, 0o644),
        (WORKER_CERT, 0o644),
        (HUB_KEY, 0o600),
        (WORKER_KEY, 0o600),
    ] {
        assert_eq!(mode(file), want, "{file}");
    }
    let leftovers: Vec<_> = fs::read_dir(&certs)
        .expect("the directory")
        .map(|e| e.expect("an entry").file_name())
        .filter(|n| n.to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    fs::remove_file(certs.join(WORKER_KEY)).expect("removing the key");
    let err = WorkerCerts::load(&certs).expect_err("a key is missing");
    assert!(
        matches!(&err, CertError::Missing { path } if path.ends_with(WORKER_KEY)),
        "{err}"
    );
    assert!(
        err.to_string().contains("worker-key.pem does not exist"),
        "{err}"
    );
    fs::write(certs.join(HUB_CERT), "not PEM").expect("spoiling the hub's certificate");
    let err = HubCerts::load(&certs).expect_err("a bad certificate");
    assert!(
        err.to_string()
            .contains("hub.pem: holds no PEM certificate"),
        "{err}"
    );
}

#[test]
fn a_local_set_is_generated_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let certs = dir.path().join("state/kubetap/certs");
    assert!(
        ensure_local(&certs).expect("generating"),
        "first start generates"
    );
    let ca = fs::read(certs.join(CA_CERT)).expect("ca.pem");
    assert!(
        !ensure_local(&certs).expect("second start"),
        "nothing generated again"
    );
    assert_eq!(fs::read(certs.join(CA_CERT)).expect("ca.pem"), ca);
    HubCerts::load(&certs)
        .expect("the hub's files")
        .server_config()
        .expect("server settings");
    WorkerCerts::load(&certs).expect("the worker's files");

    // An empty directory is filled; one with other files is not touched.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).expect("a directory");
    assert!(ensure_local(&empty).expect("generating into an empty directory"));
    let busy = dir.path().join("busy");
    fs::create_dir(&busy).expect("a directory");
    fs::write(busy.join("notes.txt"), "mine").expect("a file");
    let err = ensure_local(&busy).expect_err("a directory with other files");
    assert!(matches!(err, CertError::NotEmpty { .. }), "{err}");
    assert!(!busy.join(CA_CERT).exists());
}

#[test]
fn a_hub_certificate_needs_a_name() {
    let ca = Ca::new(&Validity::days(1)).expect("a CA");
    assert!(matches!(
        ca.hub(&[], &Validity::days(1)),
        Err(CertError::NoHubNames)
    ));
}
