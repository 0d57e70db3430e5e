//! The install's certificates for the gRPC stream between the workers and the
//! hub (mutual TLS), their files, and each side's TLS settings.
//!
//! One install has one CA. It signs one server certificate for the hub (its
//! DNS names and addresses as subject alternative names, extended key usage
//! `serverAuth`) and one client certificate that every worker presents
//! (`clientAuth`). The hub accepts a worker only with a certificate from that
//! CA ([`HubCerts::server_config`]); a worker sends only to a hub whose
//! certificate is from that CA and names the host it dialled
//! ([`WorkerCerts::client_config`]). Keys are ECDSA P-256; everything is
//! written as PEM in one directory:
//!
//! | file | who reads it |
//! |---|---|
//! | `ca.pem` | hub and workers |
//! | `hub.pem`, `hub-key.pem` | the hub |
//! | `worker.pem`, `worker-key.pem` | the workers |
//!
//! The CA's private key is used once, while the set is generated, and never
//! written: a hub that needs no CA key at run time cannot lose it, and
//! renewing means generating a new set (`kubetap certs generate`) and
//! replacing the files. Keys are written with mode 0600, the directory 0700.
//!
//! Local use needs no step of its own: `tap-hub` and `tap-worker` default to
//! the same directory ([`local_dir`]), and the hub's first start generates a
//! set there ([`ensure_local`]) for `localhost`, the loopback addresses and
//! the machine's host name.

#![forbid(unsafe_code)]

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

/// The CA's certificate: the trust anchor of both sides.
pub const CA_CERT: &str = "ca.pem";
pub const HUB_CERT: &str = "hub.pem";
pub const HUB_KEY: &str = "hub-key.pem";
pub const WORKER_CERT: &str = "worker.pem";
pub const WORKER_KEY: &str = "worker-key.pem";

/// Days a generated set is valid for unless told otherwise (`kubetap certs
/// generate --days`).
pub const DEFAULT_DAYS: u32 = 365;
/// Days a local set (generated on the hub's first start) is valid for: it
/// never leaves the machine, and nobody is asked to renew it.
pub const LOCAL_DAYS: u32 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{} does not exist (tap-hub generates certificates for local use on its first start; \
         for a cluster, `kubetap certs generate --out DIR`)",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("{}: {why}", path.display())]
    Invalid { path: PathBuf, why: String },
    #[error("{}: {source}", path.display())]
    Tls {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "{} holds files but no {CA_CERT}; give an empty or new directory for the certificates",
        dir.display()
    )]
    NotEmpty { dir: PathBuf },
    #[error(
        "no directory for the certificates: neither XDG_STATE_HOME nor HOME is set; give --certs DIR"
    )]
    NoHome,
    #[error("a hub certificate needs at least one name (a DNS name or an IP address)")]
    NoHubNames,
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (the clocks of nodes differ a little) for `days`.
    pub fn days(days: u32) -> Validity {
        let now = SystemTime::now();
        Validity::between(
            now - Duration::from_secs(3600),
            now + Duration::from_secs(u64::from(days) * 86_400),
        )
    }

    pub fn between(not_before: SystemTime, not_after: SystemTime) -> Validity {
        Validity {
            not_before: not_before.into(),
            not_after: not_after.into(),
        }
    }

    fn apply(&self, params: &mut CertificateParams) {
        params.not_before = self.not_before;
        params.not_after = self.not_after;
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct KeyedCert {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for KeyedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedCert")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// An install's CA, with its key in memory only.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA named `kubetap CA <id>`, the id from its public key: two
    /// installs' CAs differ by name, so a certificate of the other one is
    /// refused as from an unknown issuer, not as a bad signature.
    pub fn new(validity: &Validity) -> Result<Ca, CertError> {
        let key = KeyPair::generate()?;
        // The raw key is 0x04, X, Y: X's first bytes.
        let id: String = key.public_key_raw()[1..7]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("kubetap CA {id}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity.apply(&mut params);
        let issuer = CertifiedIssuer::self_signed(params, key)?;
        Ok(Ca { issuer })
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The hub's server certificate, valid for `names` (DNS names; IP
    /// addresses become IP SANs).
    pub fn hub(&self, names: &[String], validity: &Validity) -> Result<KeyedCert, CertError> {
        if names.is_empty() {
            return Err(CertError::NoHubNames);
        }
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "kubetap hub");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.leaf(params, validity)
    }

    /// The workers' client certificate.
    pub fn worker(&self, validity: &Validity) -> Result<KeyedCert, CertError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "kubetap worker");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.leaf(params, validity)
    }

    fn leaf(
        &self,
        mut params: CertificateParams,
        validity: &Validity,
    ) -> Result<KeyedCert, CertError> {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        validity.apply(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(KeyedCert {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// A whole set: the CA's certificate, the hub's and the workers'.
#[derive(Debug, Clone)]
pub struct CertSet {
    pub ca: String,
    pub hub: KeyedCert,
    pub worker: KeyedCert,
}

impl CertSet {
    /// A new CA and the two certificates it signs; the CA's key is dropped.
    pub fn generate(hub_names: &[String], validity: &Validity) -> Result<CertSet, CertError> {
        let ca = Ca::new(validity)?;
        Ok(CertSet {
            hub: ca.hub(hub_names, validity)?,
            worker: ca.worker(validity)?,
            ca: ca.pem(),
        })
    }

    /// Writes the five files into `dir` (created 0700 if missing), each
    /// through a temporary file and a rename, so a reader never sees half a
    /// file; keys 0600, certificates 0644. Existing files are replaced.
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        create_private_dir(dir)?;
        write_file(&dir.join(HUB_CERT), &self.hub.cert, 0o644)?;
        write_file(&dir.join(HUB_KEY), &self.hub.key, 0o600)?;
        write_file(&dir.join(WORKER_CERT), &self.worker.cert, 0o644)?;
        write_file(&dir.join(WORKER_KEY), &self.worker.key, 0o600)?;
        // Last: a set is complete once its CA certificate is there.
        write_file(&dir.join(CA_CERT), &self.ca, 0o644)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), CertError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CertError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| CertError::Io { path: p, source }
    };
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn read_file(path: &Path) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            CertError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            CertError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// The certificates in a PEM file (at least one).
fn read_certs(path: &Path) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), CertError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Invalid {
            path: path.to_path_buf(),
            why: format!("not a PEM certificate: {e}"),
        })?;
    if certs.is_empty() {
        return Err(CertError::Invalid {
            path: path.to_path_buf(),
            why: "holds no PEM certificate".into(),
        });
    }
    Ok((pem, certs))
}

fn read_key(path: &Path) -> Result<(Vec<u8>, PrivateKeyDer<'static>), CertError> {
    let pem = read_file(path)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| CertError::Invalid {
        path: path.to_path_buf(),
        why: format!("not a PEM private key: {e}"),
    })?;
    Ok((pem, key))
}

/// What the hub reads: the CA's certificate, its own certificate and key.
#[derive(Debug)]
pub struct HubCerts {
    dir: PathBuf,
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl HubCerts {
    pub fn load(dir: &Path) -> Result<HubCerts, CertError> {
        let (_, ca) = read_certs(&dir.join(CA_CERT))?;
        let (_, chain) = read_certs(&dir.join(HUB_CERT))?;
        let (_, key) = read_key(&dir.join(HUB_KEY))?;
        Ok(HubCerts {
            dir: dir.to_path_buf(),
            ca,
            chain,
            key,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// TLS 1.3 only (both ends are ours), ALPN `h2` (gRPC), and a client
    /// certificate required and checked against `ca.pem`: chain, validity
    /// period, extended key usage `clientAuth`.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, CertError> {
        let provider = provider();
        let ca_path = self.dir.join(CA_CERT);
        let mut roots = rustls::RootCertStore::empty();
        for cert in &self.ca {
            roots.add(cert.clone()).map_err(|source| CertError::Tls {
                path: ca_path.clone(),
                source,
            })?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .map_err(|e| CertError::Invalid {
            path: ca_path.clone(),
            why: format!("cannot check workers' certificates against it: {e}"),
        })?;
        let hub_path = self.dir.join(HUB_CERT);
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|source| CertError::Tls {
                path: hub_path.clone(),
                source,
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|source| CertError::Tls {
                path: hub_path,
                source,
            })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// rustls's ring provider: it builds statically for musl without cmake or a
/// C++ toolchain (aws-lc-rs needs both), which the node images need. rustls
/// 0.23.48 deprecates it for lacking post-quantum key exchange (X25519MLKEM768);
/// the stream runs between our own two ends inside the cluster, and moving to
/// aws-lc-rs is this one function (and tonic's `tls-aws-lc` feature).
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a worker reads: the CA's certificate, the workers' certificate and key.
#[derive(Debug, Clone)]
pub struct WorkerCerts {
    dir: PathBuf,
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl WorkerCerts {
    pub fn load(dir: &Path) -> Result<WorkerCerts, CertError> {
        let (ca, _) = read_certs(&dir.join(CA_CERT))?;
        let (cert, _) = read_certs(&dir.join(WORKER_CERT))?;
        let (key, _) = read_key(&dir.join(WORKER_KEY))?;
        Ok(WorkerCerts {
            dir: dir.to_path_buf(),
            ca,
            cert,
            key,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The channel's TLS: the hub's certificate must chain to `ca.pem` and
    /// name the host of the hub's address; the worker presents its own.
    pub fn client_config(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca))
            .identity(tonic::transport::Identity::from_pem(&self.cert, &self.key))
    }
}

/// The directory `tap-hub` and `tap-worker` use when given none:
/// `$XDG_STATE_HOME/kubetap/certs`, else `~/.local/state/kubetap/certs`.
pub fn local_dir() -> Result<PathBuf, CertError> {
    let nonempty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    let state = match nonempty("XDG_STATE_HOME") {
        Some(s) => PathBuf::from(s),
        None => PathBuf::from(nonempty("HOME").ok_or(CertError::NoHome)?).join(".local/state"),
    };
    Ok(state.join("kubetap/certs"))
}

/// The names a local hub's certificate carries: `localhost`, the loopback
/// addresses, and the machine's host name.
pub fn local_hub_names() -> Vec<String> {
    let mut names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && !names.iter().any(|n| n == host) {
            names.push(host.to_string());
        }
    }
    names
}

/// Makes sure `dir` holds a set: when it has no `ca.pem`, a local set is
/// generated. The set is written into a new directory beside `dir` and
/// renamed onto it, so two hubs starting at once end with one whole set
/// (the second rename fails and its set is dropped). `dir` may exist if it
/// is empty. True when this call generated the set.
pub fn ensure_local(dir: &Path) -> Result<bool, CertError> {
    if dir.join(CA_CERT).exists() {
        return Ok(false);
    }
    let set = CertSet::generate(&local_hub_names(), &Validity::days(LOCAL_DAYS))?;
    let name = dir.file_name().ok_or_else(|| CertError::Invalid {
        path: dir.to_path_buf(),
        why: "not a directory name".into(),
    })?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|source| CertError::Io {
        path: parent.clone(),
        source,
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = parent.join(tmp_name);
    let _ = fs::remove_dir_all(&tmp);
    set.write(&tmp)?;
    match fs::rename(&tmp, dir) {
        Ok(()) => Ok(true),
        Err(source) => {
            let _ = fs::remove_dir_all(&tmp);
            if dir.join(CA_CERT).exists() {
                Ok(false)
            } else if matches!(source.raw_os_error(), Some(39 | 17)) {
                // ENOTEMPTY, EEXIST: files of someone else's.
                Err(CertError::NotEmpty {
                    dir: dir.to_path_buf(),
                })
            } else {
                Err(CertError::Io {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Why a worker's connection to the hub failed, when the TLS handshake is
/// the reason: a sentence naming who refused whom and why, with the files
/// in `certs` to look at. None for other errors (unreachable, reset …).
pub fn explain_refusal(error: &(dyn std::error::Error + 'static), certs: &Path) -> Option<String> {
    let tls = &tls_error(error)?;
    let ca = certs.join(CA_CERT).display().to_string();
    let mine = certs.join(WORKER_CERT).display().to_string();
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    Some(match tls {
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            format!("the hub's certificate is not signed by the CA in {ca} ({tls})")
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "the hub's certificate does not name the host in the hub's address ({tls}); \
             generate it with that name (kubetap certs generate --hub-name NAME)"
        ),
        E::InvalidCertificate(e) => {
            format!("this worker does not accept the hub's certificate: {e}")
        }
        E::AlertReceived(a @ (A::UnknownCA | A::DecryptError)) => format!(
            "the hub refused this worker's certificate {mine}: it is not signed by the hub's CA \
             (TLS alert {a:?})"
        ),
        E::AlertReceived(A::CertificateExpired) => format!(
            "the hub refused this worker's certificate {mine}: it has expired or is not valid yet \
             (TLS alert CertificateExpired)"
        ),
        E::AlertReceived(A::CertificateRequired) => {
            "the hub refused this worker: it requires a worker certificate".into()
        }
        E::AlertReceived(
            a @ (A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateUnknown
            | A::AccessDenied),
        ) => format!(
            "the hub refused this worker's certificate {mine} (TLS alert {a:?}; the hub's log says why)"
        ),
        E::AlertReceived(a) => format!("the hub ended the TLS handshake (TLS alert {a:?})"),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => format!(
            "the hub did not answer in TLS ({tls}); is it an older tap-hub without mutual TLS?"
        ),
        other => format!("TLS with the hub failed: {other}"),
    })
}

/// The rustls error somewhere in `error`'s chain. rustls reports through
/// `io::Error`s (whose `source` skips the error they wrap); an error that
/// went through h2 keeps only its text, from which a received alert is
/// read back.
pub fn tls_error(error: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut cur = Some(error);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t.clone());
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(t.clone());
            }
            if let Some(alert) = alert_in(&io.to_string()) {
                return Some(rustls::Error::AlertReceived(alert));
            }
        }
        cur = e.source();
    }
    None
}

/// The alert in rustls's text for it, `received fatal alert: UnknownCA`.
fn alert_in(text: &str) -> Option<rustls::AlertDescription> {
    use rustls::AlertDescription as A;
    const KNOWN: [A; 16] = [
        A::UnknownCA,
        A::DecryptError,
        A::CertificateExpired,
        A::CertificateRequired,
        A::BadCertificate,
        A::UnsupportedCertificate,
        A::CertificateRevoked,
        A::CertificateUnknown,
        A::AccessDenied,
        A::HandshakeFailure,
        A::ProtocolVersion,
        A::NoApplicationProtocol,
        A::IllegalParameter,
        A::DecodeError,
        A::InternalError,
        A::UnexpectedMessage,
    ];
    let (_, rest) = text.split_once("received fatal alert: ")?;
    let name: String = rest
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    KNOWN.into_iter().find(|a| format!("{a:?}") == name)
}

#[cfg(test)]
mod tests;
