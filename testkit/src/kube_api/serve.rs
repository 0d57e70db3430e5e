//! The HTTPS side: TLS, authentication, routing of Kubernetes paths to
//! verbs, and each verb's answer (watches stream JSON lines).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIVersions, ServerAddressByClientCIDR};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::apply::{self, Writer};
use super::resources::{self, Resource};
use super::selector::{FieldSelector, LabelSelector};
use super::status::Failure;
use super::store::{Change, Event, now};
use super::table::{self, Form};
use super::{KubeApiError, MAX_BODY, RequestRecord, Shared, USER};

/// How often a watch with `allowWatchBookmarks` gets a BOOKMARK (the real
/// server: about a minute; here short, so tests see them).
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// A watch's longest life without `timeoutSeconds` (the real server picks
/// 30 to 60 minutes).
const WATCH_LIMIT: Duration = Duration::from_secs(30 * 60);

/// A streamed body: the lines of a watch, as they come.
pub(crate) struct Lines(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Lines {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

pub(crate) type Body = Either<Full<Bytes>, Lines>;
pub(crate) type Reply = Response<Body>;

/// The CA's certificate (PEM) and the server's TLS settings: a fresh CA
/// signs a certificate for 127.0.0.1 and localhost; HTTP/1.1 only.
pub(crate) fn tls_config(
    ip: std::net::IpAddr,
) -> Result<(String, Arc<rustls::ServerConfig>), KubeApiError> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "kubetap test API server CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    if !ip.is_loopback() {
        names.push(ip.to_string());
    }
    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    #[allow(deprecated)] // ring, as tap-certs (see tap_certs::provider).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((ca.pem(), Arc::new(config)))
}

/// Accepts connections until `stopped`.
pub(crate) async fn run(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

pub(crate) fn json_reply(code: u16, content_type: &str, body: &Value) -> Reply {
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, content_type)
        .body(Either::Left(Full::new(Bytes::from(body.to_string()))))
        .expect("a valid response")
}

pub(crate) fn failure(f: &Failure) -> Reply {
    json_reply(f.code, "application/json", &f.to_json())
}

fn text_reply(code: u16, text: String) -> Reply {
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, "text/plain")
        .body(Either::Left(Full::new(Bytes::from(text))))
        .expect("a valid response")
}

/// The query string's parameters, decoded.
pub(crate) struct Query(Vec<(String, String)>);

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            (b'+', ..) => out.push(b' '),
            (b, ..) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub fn parse(q: &str) -> Query {
        Query(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean as Go's strconv.ParseBool reads it (Python sends `True`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }
}

/// A request for a resource, from its path.
struct Target {
    r: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

/// `/api/v1/…` or `/apis/<group>/<version>/…` after the group version:
/// `[namespaces/<ns>/]<plural>[/<name>[/<sub>]]`.
fn target(group: &str, version: &str, rest: &[&str]) -> Result<Target, Failure> {
    let namespaced_path =
        rest.len() >= 3 && rest[0] == "namespaces" && !matches!(rest[2], "status" | "finalize");
    let (namespace, rest) = if namespaced_path {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let Some((plural, rest)) = rest.split_first() else {
        return Err(Failure::no_route());
    };
    let r = resources::find(group, version, plural).ok_or_else(Failure::no_route)?;
    let (name, sub) = match rest {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] if r.subresources.iter().any(|(s, ..)| s == sub) => {
            (Some(name.to_string()), Some(sub.to_string()))
        }
        _ => return Err(Failure::no_route()),
    };
    if namespace.is_some() && !r.namespaced {
        return Err(Failure::no_route());
    }
    if namespace.is_none() && r.namespaced && name.is_some() {
        return Err(Failure::no_route());
    }
    if let Some(n) = name
        .as_deref()
        .filter(|n| n.is_empty() || n.contains(['\0', '%']))
    {
        return Err(Failure::bad_request(format!("invalid name {n:?}")));
    }
    Ok(Target {
        r,
        namespace,
        name,
        sub,
    })
}

fn verb(method: &Method, t: &Target, watch: bool) -> &'static str {
    match (method, t.name.is_some()) {
        (&Method::GET, _) if t.sub.as_deref() == Some("portforward") => "create",
        (&Method::GET, _) if watch => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

/// The real server's 403 message.
fn forbidden(verb: &str, t: &Target) -> Failure {
    let resource = match &t.sub {
        Some(sub) => format!("{}/{sub}", t.r.plural),
        None => t.r.plural.to_string(),
    };
    let what = match &t.name {
        Some(name) => format!("{} \"{name}\"", t.r.qualified()),
        None => t.r.qualified(),
    };
    let scope = match &t.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    Failure::new(
        403,
        "Forbidden",
        format!(
            "{what} is forbidden: User \"{USER}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
            t.r.group
        ),
    )
    .about(t.r, t.name.as_deref().unwrap_or_default())
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let q = Query::parse(&query);
    let watch = q.flag("watch");
    let mut verb_name = method.as_str().to_ascii_lowercase();
    let latency = shared.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let reply = route(&shared, req, &path, &q, watch, &mut verb_name).await;
    shared.record(RequestRecord {
        method: method.to_string(),
        verb: verb_name,
        path,
        query,
        watch,
        status: reply.status().as_u16(),
    });
    reply
}

async fn route(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    path: &str,
    q: &Query,
    watch: bool,
    verb_name: &mut String,
) -> Reply {
    let authorized = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == shared.token);
    if !authorized || shared.expired.load(Ordering::SeqCst) {
        return failure(&Failure::unauthorized());
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ok = |v: Value| json_reply(200, "application/json", &v);
    let get_only = req.method() == Method::GET;
    match segments.as_slice() {
        ["version"] if get_only => ok(version()),
        ["healthz" | "livez" | "readyz"] if get_only => text_reply(200, "ok".into()),
        ["api"] if get_only => ok(serde_json::to_value(APIVersions {
            versions: vec!["v1".into()],
            server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
                client_cidr: "0.0.0.0/0".into(),
                server_address: shared.addr.to_string(),
            }],
        })
        .expect("serializes")),
        ["apis"] if get_only => {
            ok(serde_json::to_value(resources::group_list()).expect("serializes"))
        }
        ["apis", group] if get_only => match resources::group(group) {
            Some(g) => ok(serde_json::to_value(g).expect("serializes")),
            None => failure(&Failure::no_route()),
        },
        ["api", "v1"] if get_only => discovery("", "v1"),
        ["apis", group, version] if get_only => discovery(group, version),
        ["api", "v1", rest @ ..] => {
            resource(shared, req, "", "v1", rest, q, watch, verb_name).await
        }
        ["apis", group, version, rest @ ..] => {
            resource(shared, req, group, version, rest, q, watch, verb_name).await
        }
        _ => failure(&Failure::no_route()),
    }
}

fn discovery(group: &str, version: &str) -> Reply {
    match resources::resource_list(group, version) {
        Some(list) => json_reply(
            200,
            "application/json",
            &serde_json::to_value(list).expect("serializes"),
        ),
        None => failure(&Failure::no_route()),
    }
}

fn version() -> Value {
    let info = k8s_openapi::apimachinery::pkg::version::Info {
        major: "1".into(),
        minor: "32".into(),
        git_version: "v1.32.4".into(),
        git_commit: "59526cd4867447956156ae3a602fcbac10a2c335".into(),
        git_tree_state: "clean".into(),
        build_date: "2025-04-22T16:03:26Z".into(),
        go_version: "go1.23.6".into(),
        compiler: "gc".into(),
        platform: "linux/amd64".into(),
        ..Default::default()
    };
    serde_json::to_value(info).expect("serializes")
}

/// Reads a JSON body, at most [`MAX_BODY`] bytes.
async fn read_json(req: Request<Incoming>) -> Result<Value, Failure> {
    let kind = content_type(&req);
    if kind.contains("cbor") {
        return Err(Failure::unsupported_media_type(&kind));
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(Failure::too_large(MAX_BODY));
    }
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Failure::too_large(MAX_BODY));
        }
        Err(e) => return Err(Failure::bad_request(format!("cannot read the body: {e}"))),
    };
    if kind == "application/vnd.kubernetes.protobuf" {
        return super::protobuf::to_json(&bytes).map_err(|e| {
            let mut f = Failure::unsupported_media_type(&kind);
            f.message = e;
            f
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Failure::bad_request(format!(
            "the body is not JSON: {e} (this test server reads JSON only, also for apply)"
        ))
    })
}

fn content_type(req: &Request<Incoming>) -> String {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The field manager of a write: `fieldManager`, or the user agent's
/// program name (client-go's `kubectl-label/v1.32…` ⇒ `kubectl-label`).
fn manager(req: &Request<Incoming>, q: &Query) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    req.headers()
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|m| !m.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    shared: &Arc<Shared>,
    mut req: Request<Incoming>,
    group: &str,
    version: &str,
    rest: &[&str],
    q: &Query,
    watch: bool,
    verb_name: &mut String,
) -> Reply {
    let t = match target(group, version, rest) {
        Ok(t) => t,
        Err(f) => return failure(&f),
    };
    let verb = verb(req.method(), &t, watch);
    *verb_name = verb.to_string();
    let full = match &t.sub {
        Some(sub) => format!("{}/{sub}", t.r.plural),
        None => t.r.plural.to_string(),
    };
    if (!t.r.verbs.contains(&verb) && t.sub.is_none()) || verb == "unknown" {
        return failure(&Failure::method_not_allowed(req.method().as_str()));
    }
    if shared.denied(verb, t.r.group, &full, t.namespace.as_deref()) {
        return failure(&forbidden(verb, &t));
    }
    let form = Form::from_accept(
        req.headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json"),
    );
    let dry_run = q.get("dryRun") == Some("All");
    let ns = t.namespace.clone().unwrap_or_default();
    let result = match (req.method().clone(), t.name.clone(), t.sub.as_deref()) {
        (Method::GET, None, None) if watch => return start_watch(shared, &t, q, form),
        (Method::GET, None, None) => list(shared, &t, q, form),
        (Method::GET | Method::POST, Some(_), Some("portforward")) => {
            return super::portforward::upgrade(
                shared,
                &mut req,
                &ns,
                t.name.as_deref().unwrap_or_default(),
                q,
            );
        }
        (Method::GET, Some(name), Some("log")) => return pod_log(shared, &ns, &name, q),
        (Method::GET, Some(name), _) => get(shared, &t, &name, q, form),
        (Method::POST, None, None) if t.r.virtual_only => read_json(req)
            .await
            .and_then(|body| access_review(shared, body)),
        (Method::POST, None, None) => {
            let manager = manager(&req, q);
            match read_json(req).await {
                Ok(body) => create(shared, &t, body, &manager, dry_run),
                Err(f) => Err(f),
            }
        }
        (Method::PUT, Some(name), sub) => {
            let manager = manager(&req, q);
            let sub = sub.map(String::from);
            match read_json(req).await {
                Ok(body) => replace(shared, &t, &name, sub.as_deref(), body, &manager, dry_run),
                Err(f) => Err(f),
            }
        }
        (Method::PATCH, Some(name), sub) if sub != Some("log") && sub != Some("portforward") => {
            let kind = content_type(&req);
            let manager = manager(&req, q);
            let force = q.flag("force");
            let sub = sub.map(String::from);
            match read_json(req).await {
                Ok(body) => patch(
                    shared,
                    &t,
                    &name,
                    sub.as_deref(),
                    &kind,
                    body,
                    &manager,
                    force,
                    dry_run,
                    q,
                ),
                Err(f) => Err(f),
            }
        }
        (Method::DELETE, Some(name), None) => shared
            .store()
            .delete(t.r, &ns, &name, dry_run)
            .map(|o| (200, o)),
        (Method::DELETE, None, None) => delete_collection(shared, &t, q, dry_run),
        (method, ..) => Err(Failure::method_not_allowed(method.as_str())),
    };
    match result {
        Ok((code, body)) => json_reply(code, form.content_type(body.get("items").is_some()), &body),
        Err(f) => failure(&f),
    }
}

fn selectors(t: &Target, q: &Query) -> Result<(LabelSelector, FieldSelector), Failure> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())
        .map_err(|e| Failure::bad_request(format!("unable to parse labelSelector: {e}")))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or_default(), t.r)
        .map_err(Failure::bad_request)?;
    Ok((labels, fields))
}

/// An object as a list item: the real server leaves out kind and apiVersion.
fn item(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    v
}

fn render(t: &Target, objects: &[&Value], rv: u64, form: Form, q: &Query, single: bool) -> Value {
    match form {
        Form::Table => table::table(
            t.r,
            objects,
            &rv.to_string(),
            true,
            q.get("includeObject").unwrap_or("Metadata"),
        ),
        Form::Metadata if single => table::metadata(objects[0]),
        Form::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv.to_string()},
            "items": objects.iter().map(|o| table::metadata(o)).collect::<Vec<_>>(),
        }),
        Form::Object if single => objects[0].clone(),
        Form::Object => json!({
            "kind": format!("{}List", t.r.kind),
            "apiVersion": t.r.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": objects.iter().map(|o| item(o)).collect::<Vec<_>>(),
        }),
    }
}

fn list(shared: &Shared, t: &Target, q: &Query, form: Form) -> Result<(u16, Value), Failure> {
    let (labels, fields) = selectors(t, q)?;
    let store = shared.store();
    let objects: Vec<&Value> = store
        .list(t.r, t.namespace.as_deref())
        .filter(|o| labels.matches(o) && fields.matches(o))
        .collect();
    Ok((
        200,
        render(t, &objects, store.resource_version(), form, q, false),
    ))
}

fn get(
    shared: &Shared,
    t: &Target,
    name: &str,
    q: &Query,
    form: Form,
) -> Result<(u16, Value), Failure> {
    let store = shared.store();
    let ns = t.namespace.as_deref().unwrap_or_default();
    let object = store
        .get(t.r, ns, name)
        .ok_or_else(|| Failure::not_found(t.r, name))?;
    Ok((
        200,
        render(t, &[object], store.resource_version(), form, q, true),
    ))
}

fn create(
    shared: &Shared,
    t: &Target,
    body: Value,
    manager: &str,
    dry_run: bool,
) -> Result<(u16, Value), Failure> {
    let ns = t.namespace.clone().unwrap_or_default();
    if let Some(given) = body.pointer("/metadata/namespace").and_then(Value::as_str)
        && t.r.namespaced
        && given != ns
    {
        return Err(Failure::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    check_kind(t.r, &body)?;
    let object = shared
        .store()
        .create(t.r, &ns, body, Some(manager), dry_run)?;
    Ok((201, object))
}

/// The body's kind and apiVersion, when given, must be the path's.
fn check_kind(r: &Resource, body: &Value) -> Result<(), Failure> {
    let kind = body.get("kind").and_then(Value::as_str);
    let api_version = body.get("apiVersion").and_then(Value::as_str);
    if kind.is_some_and(|k| k != r.kind) || api_version.is_some_and(|v| v != r.api_version()) {
        return Err(Failure::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({}) or kind ({}) is not {}",
            api_version.unwrap_or_default(),
            r.api_version(),
            kind.unwrap_or_default(),
            r.kind
        )));
    }
    Ok(())
}

/// Writes to a kind with a status subresource keep the other part: the
/// object's own path leaves status alone, `/status` changes only status.
fn split_status(r: &Resource, sub: Option<&str>, live: &Value, mut new: Value) -> Value {
    if !r.has_status() {
        return new;
    }
    if sub == Some("status") {
        let mut kept = live.clone();
        kept["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        if let Some(m) = new.pointer("/metadata/managedFields") {
            kept["metadata"]["managedFields"] = m.clone();
        }
        return kept;
    }
    match live.get("status") {
        Some(s) => new["status"] = s.clone(),
        None => {
            if let Some(m) = new.as_object_mut() {
                m.remove("status");
            }
        }
    }
    new
}

#[allow(clippy::too_many_arguments)]
fn write(
    shared: &Shared,
    t: &Target,
    name: &str,
    sub: Option<&str>,
    live: &Value,
    new: Value,
    writer: Option<(&str, &str, &Value)>,
    dry_run: bool,
) -> Result<(u16, Value), Failure> {
    let mut new = split_status(t.r, sub, live, new);
    if let Some((manager, operation, fields_from)) = writer {
        let now = now();
        let mut managed = apply::read_managed(live);
        let changed = apply::changed(live, &new);
        let writer = Writer {
            manager,
            operation,
            subresource: sub,
            api_version: &t.r.api_version(),
            now: &now,
        };
        let fields = apply::fields(fields_from);
        apply::record(&mut managed, &writer, fields, &changed);
        apply::write_managed(&mut new, &managed);
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
            m.remove("resourceVersion");
        }
        v
    };
    if strip(live) == strip(&new) {
        // No change: no new resourceVersion, as the real server.
        return Ok((200, live.clone()));
    }
    let ns = t.namespace.as_deref().unwrap_or_default();
    Ok((200, shared.store().commit(t.r, ns, name, new, dry_run)?))
}

/// A write naming a resourceVersion must name the stored one (409 otherwise).
fn precondition(r: &Resource, name: &str, live: &Value, body: &Value) -> Result<(), Failure> {
    let rv = |v: &Value| {
        v.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from)
    };
    match rv(body) {
        Some(asked) if Some(&asked) != rv(live).as_ref() => Err(Failure::conflict(
            r,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )),
        _ => Ok(()),
    }
}

fn replace(
    shared: &Shared,
    t: &Target,
    name: &str,
    sub: Option<&str>,
    body: Value,
    manager: &str,
    dry_run: bool,
) -> Result<(u16, Value), Failure> {
    check_kind(t.r, &body)?;
    let ns = t.namespace.as_deref().unwrap_or_default();
    let live = shared
        .store()
        .get(t.r, ns, name)
        .cloned()
        .ok_or_else(|| Failure::not_found(t.r, name))?;
    precondition(t.r, name, &live, &body)?;
    let fields_from = body.clone();
    write(
        shared,
        t,
        name,
        sub,
        &live,
        body,
        Some((manager, "Update", &fields_from)),
        dry_run,
    )
}

#[allow(clippy::too_many_arguments)]
fn patch(
    shared: &Shared,
    t: &Target,
    name: &str,
    sub: Option<&str>,
    kind: &str,
    body: Value,
    manager: &str,
    force: bool,
    dry_run: bool,
    q: &Query,
) -> Result<(u16, Value), Failure> {
    let ns = t.namespace.clone().unwrap_or_default();
    let live = shared.store().get(t.r, &ns, name).cloned();
    match kind {
        "application/apply-patch+yaml" => {
            if q.get("fieldManager").is_none_or(str::is_empty) {
                return Err(Failure::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            if !body.is_object() {
                return Err(Failure::bad_request(
                    "the applied configuration is not an object",
                ));
            }
            check_kind(t.r, &body)?;
            if body.get("kind").is_none() || body.get("apiVersion").is_none() {
                return Err(Failure::bad_request(
                    "invalid object type: apiVersion and kind must be set",
                ));
            }
            if body
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_some_and(|n| n != name)
            {
                return Err(Failure::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    body["metadata"]["name"]
                )));
            }
            let now = now();
            let base = live.clone().unwrap_or_else(apply::empty);
            let applied = apply::apply(&base, &body, manager, force, &t.r.api_version(), &now)
                .map_err(|c| {
                    let mut f = Failure::conflict(t.r, name, "");
                    f.message = c.message(&t.r.api_version());
                    f
                })?;
            match (live, applied) {
                (Some(live), None) => Ok((200, live)),
                (Some(live), Some(new)) => write(shared, t, name, sub, &live, new, None, dry_run),
                (None, _) if sub.is_some() => Err(Failure::not_found(t.r, name)),
                (None, new) => {
                    let mut new = new.unwrap_or_else(|| body.clone());
                    new["metadata"]["name"] = name.into();
                    if t.r.has_status()
                        && let Some(m) = new.as_object_mut()
                    {
                        m.remove("status");
                    }
                    let object = shared.store().create(t.r, &ns, new, None, dry_run)?;
                    Ok((201, object))
                }
            }
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let live = live.ok_or_else(|| Failure::not_found(t.r, name))?;
            precondition(t.r, name, &live, &body)?;
            let mut new = live.clone();
            apply::merge_patch(&mut new, &body, kind.starts_with("application/strategic"));
            write(
                shared,
                t,
                name,
                sub,
                &live,
                new,
                Some((manager, "Update", &body)),
                dry_run,
            )
        }
        other => Err(Failure::unsupported_media_type(other)),
    }
}

fn delete_collection(
    shared: &Shared,
    t: &Target,
    q: &Query,
    dry_run: bool,
) -> Result<(u16, Value), Failure> {
    let (labels, fields) = selectors(t, q)?;
    let mut store = shared.store();
    let doomed: Vec<(String, String)> = store
        .list(t.r, t.namespace.as_deref())
        .filter(|o| labels.matches(o) && fields.matches(o))
        .map(|o| {
            (
                o.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                o.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let mut items = Vec::new();
    for (ns, name) in doomed {
        items.push(item(&store.delete(t.r, &ns, &name, dry_run)?));
    }
    Ok((
        200,
        json!({
            "kind": format!("{}List", t.r.kind),
            "apiVersion": t.r.api_version(),
            "metadata": {"resourceVersion": store.resource_version().to_string()},
            "items": items,
        }),
    ))
}

/// SelfSubjectAccessReview: allowed unless a denial matches.
fn access_review(shared: &Shared, mut body: Value) -> Result<(u16, Value), Failure> {
    let attrs = body.pointer("/spec/resourceAttributes").cloned();
    let allowed = match &attrs {
        Some(a) => {
            let s = |k: &str| {
                a.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let resource = match s("subresource").as_str() {
                "" => s("resource"),
                sub => format!("{}/{sub}", s("resource")),
            };
            let ns = s("namespace");
            !shared.denied(
                &s("verb"),
                &s("group"),
                &resource,
                (!ns.is_empty()).then_some(ns.as_str()),
            )
        }
        None if body.pointer("/spec/nonResourceAttributes").is_some() => true,
        None => {
            return Err(Failure::new(
                422,
                "Invalid",
                "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
    };
    body["apiVersion"] = "authorization.k8s.io/v1".into();
    body["kind"] = "SelfSubjectAccessReview".into();
    body["metadata"] = json!({"creationTimestamp": null});
    body["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to User \"kubetap-test\""})
    } else {
        json!({"allowed": false})
    };
    Ok((201, body))
}

/// `pods/<name>/log`: the text the test set, `tailLines` and `limitBytes`
/// applied. `follow` is answered as without it: the container is taken to
/// have ended.
fn pod_log(shared: &Shared, ns: &str, name: &str, q: &Query) -> Reply {
    let pods = resources::lookup("pods", None).expect("pods are served");
    let Some(pod) = shared.store().get(pods, ns, name).cloned() else {
        return failure(&Failure::not_found(pods, name));
    };
    let names = |key: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect()
    };
    let (containers, init) = (names("containers"), names("initContainers"));
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().chain(&init).any(|x| x == c) => c.to_string(),
        Some(c) => {
            return failure(&Failure::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            return failure(&Failure::bad_request(message));
        }
    };
    let text = super::lock(&shared.logs)
        .get(&(ns.to_string(), name.to_string(), container))
        .cloned()
        .unwrap_or_default();
    let mut text = match q.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            lines[lines.len().saturating_sub(n)..].concat()
        }
        None => text,
    };
    if let Some(limit) = q.get("limitBytes").and_then(|n| n.parse::<usize>().ok()) {
        let mut cut = limit.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text_reply(200, text)
}

/// What a watch needs to filter and print each change.
struct WatchView {
    r: &'static Resource,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    form: Form,
    include: String,
}

impl WatchView {
    fn matches(&self, o: &Value) -> bool {
        self.labels.matches(o) && self.fields.matches(o)
    }

    /// The event type this watch sees for a change, if any: a modification
    /// into or out of the selection is ADDED or DELETED.
    fn sees(&self, e: &Event) -> Option<&'static str> {
        if e.resource.group != self.r.group || e.resource.plural != self.r.plural {
            return None;
        }
        let ns = e
            .object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if self.namespace.as_deref().is_some_and(|n| n != ns) {
            return None;
        }
        let now = self.matches(&e.object);
        let before = e.prev.as_ref().is_some_and(|p| self.matches(p));
        match (e.change, before, now) {
            (Change::Modified, true, true) => Some("MODIFIED"),
            (Change::Modified, false, true) => Some("ADDED"),
            (Change::Modified, true, false) => Some("DELETED"),
            (Change::Modified, false, false) => None,
            (c, _, true) => Some(c.name()),
            _ => None,
        }
    }

    fn line(&self, kind: &str, object: &Value, first: &mut bool) -> Bytes {
        let object = match self.form {
            Form::Object => object.clone(),
            Form::Metadata => table::metadata(object),
            Form::Table => {
                let rv = object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let t = table::table(self.r, &[object], rv, *first, &self.include);
                *first = false;
                t
            }
        };
        let mut line = json!({"type": kind, "object": object}).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut object = json!({
            "kind": self.r.kind,
            "apiVersion": self.r.api_version(),
            "metadata": {"resourceVersion": rv.to_string(), "creationTimestamp": null},
        });
        if initial_end {
            object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let mut line = json!({"type": "BOOKMARK", "object": object}).to_string();
        line.push('\n');
        Bytes::from(line)
    }
}

fn start_watch(shared: &Arc<Shared>, t: &Target, q: &Query, form: Form) -> Reply {
    let (labels, fields) = match selectors(t, q) {
        Ok(s) => s,
        Err(f) => return failure(&f),
    };
    let view = WatchView {
        r: t.r,
        namespace: t.namespace.clone(),
        labels,
        fields,
        form,
        include: q.get("includeObject").unwrap_or("Metadata").to_string(),
    };
    let from = match q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
    {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                return failure(&Failure::bad_request(format!(
                    "invalid resource version {v:?}"
                )));
            }
        },
    };
    let initial_events = q.flag("sendInitialEvents");
    let bookmarks = q.flag("allowWatchBookmarks");
    let limit = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(WATCH_LIMIT, Duration::from_secs);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut first = true;
    let mut opening: Vec<Bytes> = Vec::new();
    let subscribed = {
        let store = shared.store();
        match store.subscribe(if initial_events { None } else { from }) {
            Ok((kept, live)) => {
                if from.is_none() || initial_events {
                    let rv = store.resource_version();
                    for o in store
                        .list(view.r, view.namespace.as_deref())
                        .filter(|o| view.matches(o))
                    {
                        opening.push(view.line("ADDED", o, &mut first));
                    }
                    if initial_events {
                        opening.push(view.bookmark(rv, true));
                    }
                }
                for e in kept {
                    if let Some(kind) = view.sees(&e) {
                        opening.push(view.line(kind, &e.object, &mut first));
                    }
                }
                Some(live)
            }
            Err(expired) => {
                let mut line = json!({"type": "ERROR", "object": expired.to_json()}).to_string();
                line.push('\n');
                opening.push(Bytes::from(line));
                None
            }
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        for line in opening {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let Some(mut live) = subscribed else { return };
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            let line = tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                event = live.recv() => match event {
                    Ok(e) => match view.sees(&e) {
                        Some(kind) => view.line(kind, &e.object, &mut first),
                        None => continue,
                    },
                    // Too slow a reader: end the watch, the client starts again.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    let store = shared.store();
                    // Only when every change so far has been seen here.
                    if !live.is_empty() {
                        continue;
                    }
                    view.bookmark(store.resource_version(), false)
                }
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, form.content_type(false))
        .header("Transfer-Encoding", "chunked")
        .body(Either::Right(Lines(rx)))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_to_targets() {
        let t = target("", "v1", &["namespaces", "ns1", "pods", "p", "log"]).unwrap();
        assert_eq!(
            (
                t.r.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            ("pods", Some("ns1"), Some("p"), Some("log"))
        );
        let t = target("", "v1", &["namespaces", "ns1", "status"]).unwrap();
        assert_eq!(
            (t.r.plural, t.name.as_deref(), t.sub.as_deref()),
            ("namespaces", Some("ns1"), Some("status"))
        );
        let t = target("", "v1", &["pods"]).unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        let t = target("apps", "v1", &["namespaces", "k", "daemonsets"]).unwrap();
        assert_eq!(t.r.kind, "DaemonSet");
        for bad in [
            &["pods", "x"][..],
            &["namespaces", "a", "nodes"],
            &["pods2"],
            &["namespaces", "a", "pods", "p", "exec"],
        ] {
            assert!(target("", "v1", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn queries_are_decoded() {
        let q = Query::parse("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=1&ports=80&ports=81");
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.all("ports").collect::<Vec<_>>(), ["80", "81"]);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
