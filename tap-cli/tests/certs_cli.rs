//! `kubetap certs generate`, with openssl as the oracle: the hub's
//! certificate carries the names asked for and `serverAuth`, the workers'
//! `clientAuth`, both verify against the CA for their purpose, the validity
//! is `--days`, keys are private, no CA key is written, and an existing set
//! is replaced only with `--force`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};
use testkit::TempDir;

fn generate(out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubetap"))
        .args(["certs", "generate", "--out"])
        .arg(out)
        .args(["--hub-name", "kubetap-hub.kubetap.svc"])
        .args(["--hub-name", "10.96.0.10"])
        .args(extra)
        .output()
        .expect("running kubetap")
}

fn openssl(args: &[&str], dir: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn generate_writes_a_set_openssl_verifies() {
    if !testkit::require_tools("kubetap certs test", false, &["openssl"]) {
        return;
    }
    let dir = TempDir::new("certs-cli");
    let out = dir.join("certs");
    let first = generate(&out, &["--days", "30"]);
    assert!(first.status.success(), "{}", text(&first));

    let mut files: Vec<String> = std::fs::read_dir(&out)
        .expect("the directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "ca.pem",
            "hub-key.pem",
            "hub.pem",
            "worker-key.pem",
            "worker.pem"
        ],
        "no CA key, nothing else"
    );
    for (file, mode) in [
        ("hub-key.pem", 0o600),
        ("worker-key.pem", 0o600),
        ("", 0o700),
    ] {
        let got = std::fs::metadata(out.join(file))
            .expect("the file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(got, mode, "mode of {}", out.join(file).display());
    }

    for (cert, purpose) in [("hub.pem", "sslserver"), ("worker.pem", "sslclient")] {
        let v = openssl(
            &["verify", "-CAfile", "ca.pem", "-purpose", purpose, cert],
            &out,
        );
        assert!(v.status.success(), "{cert} as {purpose}: {}", text(&v));
    }
    // The other way round is refused: the purposes are kept apart.
    let v = openssl(
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslclient",
            "hub.pem",
        ],
        &out,
    );
    assert!(
        !v.status.success(),
        "the hub's certificate passes as a client's"
    );

    let ext = |cert: &str| {
        text(&openssl(
            &[
                "x509",
                "-in",
                cert,
                "-noout",
                "-ext",
                "subjectAltName,extendedKeyUsage",
            ],
            &out,
        ))
    };
    let hub = ext("hub.pem");
    for want in [
        "DNS:kubetap-hub.kubetap.svc",
        "IP Address:10.96.0.10",
        "TLS Web Server Authentication",
    ] {
        assert!(hub.contains(want), "hub.pem lacks {want}: {hub}");
    }
    assert!(
        ext("worker.pem").contains("TLS Web Client Authentication"),
        "worker.pem: {}",
        ext("worker.pem")
    );
    // Valid for 30 days: still in 29, no longer in 31.
    let valid_in = |days: u64| {
        openssl(
            &[
                "x509",
                "-in",
                "worker.pem",
                "-noout",
                "-checkend",
                &(days * 86_400).to_string(),
            ],
            &out,
        )
        .status
        .success()
    };
    assert!(valid_in(29) && !valid_in(31), "--days 30 not applied");

    let ca = std::fs::read(out.join("ca.pem")).expect("ca.pem");
    let again = generate(&out, &[]);
    assert!(
        !again.status.success(),
        "an existing set was replaced without --force"
    );
    assert!(text(&again).contains("--force"), "{}", text(&again));
    assert_eq!(std::fs::read(out.join("ca.pem")).expect("ca.pem"), ca);
    let forced = generate(&out, &["--force"]);
    assert!(forced.status.success(), "{}", text(&forced));
    assert_ne!(
        std::fs::read(out.join("ca.pem")).expect("ca.pem"),
        ca,
        "a new CA"
    );
}

#[test]
fn generate_needs_a_hub_name() {
    let dir = TempDir::new("certs-cli-names");
    let out = Command::new(env!("CARGO_BIN_EXE_kubetap"))
        .args(["certs", "generate", "--out"])
        .arg(dir.join("certs"))
        .output()
        .expect("running kubetap");
    assert!(!out.status.success());
    assert!(text(&out).contains("--hub-name"), "{}", text(&out));
    assert!(!dir.join("certs").exists(), "files written without a name");
}
