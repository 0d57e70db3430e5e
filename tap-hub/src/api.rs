//! `api`: the hub's HTTP API on the UI port (8899), with axum. Every answer is
//! JSON; a bad filter, cursor or parameter is a 400 whose body says what is
//! wrong (and at which column of a filter), an unknown entry a 404.
//!
//! - `GET /api/entries?filter=&cursor=&limit=`: newest first; `next_cursor`
//!   continues where the page ended.
//! - `GET /api/rows?filter=&cursor=&limit=`: the same, as compact summary
//!   rows (the UI's traffic list), up to 50,000 a page.
//! - `GET /api/entries/{id}`: one entry in full.
//! - `GET /api/stream?filter=` (WebSocket): entries as they arrive.
//! - `GET /api/servicemap?filter=&window=5m`
//! - `GET /api/workers`: each worker's state, heartbeat and counters, and the hub's.
//! - `GET /api/pcap?filter=&window=&encrypted=`: a pcapng of the matching
//!   entries' connections (`encrypted=true`: decrypted connections' captured
//!   packets beside their plaintext).
//! - `GET /api/config`, `PUT /api/config`: what workers capture; a change
//!   reaches every connected worker at once.
//! - `GET /api/filter/check?filter=`: whether a filter parses (the UI's
//!   filter bar, as the user types).
//! - `GET /api/fields`: the field names filters and the UI's completion use,
//!   per protocol.
//! - `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus text format,
//!   through `prometheus-client`; worker drops one series per cause).
//! - Every other path outside `/api/` is the web UI (`ui`); an unknown
//!   `/api/…` path is a JSON 404.
//!
//! Everything under `/api/` and `/metrics` needs the hub's bearer token and,
//! from a browser, the hub's own origin (`access`, a layer over every route);
//! `/healthz`, `/readyz` and the UI's files do not.
//!
//! The API is described in `tap-hub/openapi.yaml`.

use crate::export::ExportError;
use crate::filter::{Filter, FilterError};
use crate::hub::Hub;
use crate::servicemap::ServiceMapBuilder;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use proto::v1::{CaptureSettings, Endpoint, Entry, Protocol, RedactionRule};
use serde::Deserialize;
use serde_json::json;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tap_dissect::GenericFields;
use tap_dissect::json::{EntryJson, rfc3339_nanos};
use tokio::sync::broadcast::error::RecvError;

/// Entries per page when the query does not say.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Summary rows are small (~150 bytes): the UI loads long histories in pages this large.
const DEFAULT_ROWS_LIMIT: usize = 1000;
const MAX_ROWS_LIMIT: usize = 50_000;
/// A row's `path` is cut to this many bytes (SQL text can be long); `path_cut` says so.
const ROW_PATH_MAX: usize = 1024;
/// A query scans at most this long before it answers with what it found and
/// a cursor to continue (`partial`): a needle in a huge disk log does not
/// hold the store for minutes.
const SCAN_BUDGET: Duration = Duration::from_secs(2);
/// Entries from different workers arrive out of time order by up to a
/// batch's age; a scan bounded by `ts > …` goes this much further back.
const TS_SLACK_NS: u64 = 60_000_000_000;

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/api/entries", get(entries))
        .route("/api/rows", get(rows))
        .route("/api/filter/check", get(check_filter))
        .route("/api/entries/{id}", get(entry))
        .route("/api/stream", get(stream))
        .route("/api/servicemap", get(servicemap))
        .route("/api/workers", get(workers))
        .route("/api/pcap", get(pcap))
        .route("/api/config", get(get_config).put(put_config))
        .route("/api/fields", get(fields))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            crate::access::guard,
        ))
        .with_state(hub)
}

/// The filter's field names (the UI's completion): the entry's, an
/// endpoint's, and each protocol's under `request` and `response`, as the
/// JSON form writes them, with each protocol's colour and status classes
/// (`tap_dissect::registry::protocols`).
async fn fields() -> Json<serde_json::Value> {
    Json(json!({
        "entry": tap_dissect::json::ENTRY_FIELDS,
        "endpoint": tap_dissect::json::ENDPOINT_FIELDS,
        "tunnel": tap_dissect::json::TUNNEL_FIELDS,
        "protocols": tap_dissect::registry::protocols(),
    }))
}

/// Ready while `serve` runs the hub's servers (its store opened before):
/// not before they start, nor once they are shutting down, so a Service
/// sends no worker or user to a hub that cannot take them.
async fn readyz(State(hub): State<Arc<Hub>>) -> Response {
    if hub.serving() {
        "ready\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the hub's servers are not running (starting or shutting down)\n",
        )
            .into_response()
    }
}

/// Unknown API paths are a JSON 404; every other path is the web UI's.
async fn fallback(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no such endpoint; the API is described in tap-hub/openapi.yaml",
        )
        .into_response();
    }
    crate::ui::serve(&method, &uri)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// An error answer: `{"error": "...", "column": N}` (column for filter errors).
pub struct ApiError {
    status: StatusCode,
    message: String,
    column: Option<usize>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            column: None,
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("invalid filter: {e}"),
            column: Some(e.column),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.column {
            Some(c) => json!({"error": self.message, "column": c}),
            None => json!({"error": self.message}),
        };
        (self.status, Json(body)).into_response()
    }
}

#[derive(Deserialize)]
struct EntriesQuery {
    filter: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

fn parse_filter(src: Option<&str>) -> Result<Filter, ApiError> {
    Ok(Filter::parse(src.unwrap_or(""))?)
}

/// A page query's filter, cursor and limit (`default` and `max` for the limit).
fn page_params(
    q: &EntriesQuery,
    default: usize,
    max: usize,
) -> Result<(Filter, Option<u64>, usize), ApiError> {
    let filter = parse_filter(q.filter.as_deref())?;
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(c.parse::<u64>().map_err(|_| {
            ApiError::bad(format!(
                "invalid cursor {c:?}: use the next_cursor of a previous page"
            ))
        })?),
    };
    let limit = match q.limit.as_deref() {
        None => default,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(ApiError::bad(format!(
                    "invalid limit {l:?}: a number from 1 to {max}"
                )));
            }
        },
    };
    Ok((filter, cursor, limit))
}

async fn entries(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<EntriesQuery>,
) -> Result<Response, ApiError> {
    let (filter, cursor, limit) = page_params(&q, DEFAULT_LIMIT, MAX_LIMIT)?;
    tokio::task::spawn_blocking(move || {
        query(
            &hub,
            &filter,
            cursor,
            limit,
            b"{\"entries\":[",
            |out, _, e| {
                // Writing to a Vec cannot fail.
                let _ = serde_json::to_writer(out, &EntryJson(e));
            },
        )
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// The columns of `/api/rows`, in the order each row lists them.
const ROW_COLUMNS: &str = r#"["id","ts_us","protocol","src","dst","method","path","path_cut","status","elapsed_us","request_size","response_size","tls","flags","node"]"#;

/// `/api/rows`: what the UI's traffic list shows of each entry, as arrays
/// (a tenth of the entry's JSON form, so that a browser can hold a history
/// of hundreds of thousands). The full entry is `/api/entries/{id}`.
async fn rows(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<EntriesQuery>,
) -> Result<Response, ApiError> {
    let (filter, cursor, limit) = page_params(&q, DEFAULT_ROWS_LIMIT, MAX_ROWS_LIMIT)?;
    let head = format!("{{\"columns\":{ROW_COLUMNS},\"rows\":[");
    tokio::task::spawn_blocking(move || {
        query(
            &hub,
            &filter,
            cursor,
            limit,
            head.as_bytes(),
            |out, seq, e| {
                let _ = serde_json::to_writer(out, &row(seq, e));
            },
        )
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

type EndpointRow<'a> = (
    &'a str,
    u32,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

/// One row of `/api/rows`, in [`ROW_COLUMNS`]' order.
#[allow(clippy::type_complexity)]
fn row(
    seq: u64,
    e: &Entry,
) -> (
    u64,
    u64,
    &'static str,
    Option<EndpointRow<'_>>,
    Option<EndpointRow<'_>>,
    Option<&str>,
    Option<&str>,
    bool,
    Option<i64>,
    Option<u64>,
    u64,
    u64,
    bool,
    &[String],
    &str,
) {
    let protocol = Protocol::try_from(e.protocol).unwrap_or(Protocol::Unspecified);
    let path = e.path();
    let cut = path.is_some_and(|p| p.len() > ROW_PATH_MAX);
    let path = path.map(|p| &p[..p.floor_char_boundary(ROW_PATH_MAX)]);
    (
        seq,
        e.ts_ns / 1000,
        protocol.name(),
        endpoint_row(e.src.as_ref()),
        endpoint_row(e.dst.as_ref()),
        e.method(),
        path,
        cut,
        e.status(),
        e.elapsed_ns.map(|ns| ns / 1000),
        e.request_size,
        e.response_size,
        e.tls,
        &e.flags,
        &e.node,
    )
}

fn endpoint_row(ep: Option<&Endpoint>) -> Option<EndpointRow<'_>> {
    ep.map(|ep| {
        (
            ep.ip.as_str(),
            ep.port,
            ep.pod.as_deref(),
            ep.namespace.as_deref(),
            ep.service.as_deref(),
        )
    })
}

#[derive(Deserialize)]
struct CheckQuery {
    filter: Option<String>,
}

/// `{"ok": true}` for a filter that parses, else the 400 a query would get.
async fn check_filter(Query(q): Query<CheckQuery>) -> Result<Response, ApiError> {
    let filter = tokio::task::spawn_blocking(move || parse_filter(q.filter.as_deref()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(json!({"ok": true, "matches_all": filter.is_all()})).into_response())
}

/// One page of entries, written as JSON while the store is scanned: `head`
/// opens the object and its array, `write` adds one matching entry.
fn query(
    hub: &Hub,
    filter: &Filter,
    cursor: Option<u64>,
    limit: usize,
    head: &[u8],
    mut write: impl FnMut(&mut Vec<u8>, u64, &Entry),
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let now = now_ns();
    let stop_below = filter
        .min_ts_ns(now)
        .map(|ts| ts.saturating_sub(TS_SLACK_NS));
    let mut body = Vec::with_capacity(64 << 10);
    body.extend_from_slice(head);
    let mut found = 0usize;
    let mut scanned = 0u64;
    let mut last_seq = None;
    let mut partial = false;
    let mut more = false;
    let result = hub.scan_back(cursor, |seq, e| {
        if found == limit {
            more = true;
            return ControlFlow::Break(());
        }
        scanned += 1;
        last_seq = Some(seq);
        if stop_below.is_some_and(|min| e.ts_ns < min) {
            return ControlFlow::Break(());
        }
        if filter.matches(e, now) {
            if found > 0 {
                body.push(b',');
            }
            write(&mut body, seq, e);
            found += 1;
        }
        if scanned.is_multiple_of(4096) && started.elapsed() > SCAN_BUDGET {
            partial = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if let Err(e) = result {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ));
    }
    // The page ends at the last entry looked at: the next one starts below it.
    let next_cursor = if more || partial {
        last_seq.map(|s| s.to_string())
    } else {
        None
    };
    let tail = json!({
        "next_cursor": next_cursor,
        "partial": partial,
        "scanned": scanned,
        "took_ms": started.elapsed().as_secs_f64() * 1000.0,
    });
    body.extend_from_slice(b"],");
    let tail = tail.to_string();
    body.extend_from_slice(&tail.as_bytes()[1..]);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn entry(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let seq: u64 = id
        .parse()
        .map_err(|_| ApiError::bad(format!("invalid entry id {id:?}: ids are numbers")))?;
    let e = tokio::task::spawn_blocking(move || hub.store().get(seq))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no entry {seq}: never stored, or evicted by the store's budget"),
            )
        })?;
    let body = serde_json::to_vec(&EntryJson(&e))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Deserialize)]
struct StreamQuery {
    filter: Option<String>,
    /// `entries` (the default: each entry's JSON form) or `rows` (what the
    /// traffic list shows, as `/api/rows` has it: the UI builds no rows).
    format: Option<String>,
}

async fn stream(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let filter = parse_filter(q.filter.as_deref())?;
    let rows = match q.format.as_deref() {
        None | Some("" | "entries") => false,
        Some("rows") => true,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "unknown stream format {other:?}: use entries or rows"
            )));
        }
    };
    // Subscribed before the handshake's answer goes out: an entry stored
    // after the client sees the stream open is always in it (the UI asks
    // for history only then, so nothing falls between the two).
    let feed = hub.subscribe();
    // A browser that offered the token as a subprotocol must see one of its
    // offers selected, or it drops the connection: `kubetap.v1`, never the token.
    let ws = ws.protocols([crate::access::WS_PROTOCOL]);
    Ok(ws.on_upgrade(move |socket| live(hub, filter, rows, feed, socket)))
}

/// Sends each new matching entry as `{"type":"entry","entry":{…}}` (or, with
/// `rows`, `{"type":"row","row":[…]}` in `/api/rows`' columns); a client too
/// slow to keep up is told how many it missed with
/// `{"type":"dropped","count":N}` (also counted in `/metrics`).
async fn live(
    hub: Arc<Hub>,
    filter: Filter,
    rows: bool,
    mut feed: tokio::sync::broadcast::Receiver<crate::hub::LiveEntry>,
    mut socket: WebSocket,
) {
    loop {
        tokio::select! {
            got = feed.recv() => {
                let text = match got {
                    Ok((seq, e)) => {
                        if !filter.matches(&e, now_ns()) {
                            continue;
                        }
                        let json = if rows {
                            serde_json::to_string(&row(seq, &e))
                                .map(|r| format!("{{\"type\":\"row\",\"row\":{r}}}"))
                        } else {
                            serde_json::to_string(&EntryJson(&e))
                                .map(|e| format!("{{\"type\":\"entry\",\"entry\":{e}}}"))
                        };
                        match json {
                            Ok(text) => text,
                            Err(_) => continue,
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        hub.counters.live_dropped.fetch_add(n, Ordering::Relaxed);
                        format!("{{\"type\":\"dropped\",\"count\":{n}}}")
                    }
                    Err(RecvError::Closed) => return,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// A time window parameter (`30s`, `5m`, `2h`), absent or empty for none.
fn parse_window(w: Option<&str>) -> Result<Option<Duration>, ApiError> {
    match w.filter(|w| !w.is_empty()) {
        None => Ok(None),
        Some(w) => humantime::parse_duration(w).map(Some).map_err(|e| {
            ApiError::bad(format!("invalid window {w:?}: {e} (examples: 30s, 5m, 2h)"))
        }),
    }
}

#[derive(Deserialize)]
struct PcapQuery {
    filter: Option<String>,
    window: Option<String>,
    /// `true`: a decrypted connection's captured (encrypted) packets beside
    /// the packets made of its plaintext.
    encrypted: Option<String>,
}

async fn pcap(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<PcapQuery>,
) -> Result<Response, ApiError> {
    let filter = parse_filter(q.filter.as_deref())?;
    let window = parse_window(q.window.as_deref())?;
    let encrypted = match q.encrypted.as_deref() {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "invalid encrypted {other:?}: true or false"
            )));
        }
    };
    let export = crate::export::export(&hub, filter, window, now_ns(), encrypted)
        .await
        .map_err(|e| match e {
            ExportError::NothingMatches => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            ExportError::TooManyFlows(_) => ApiError::bad(e.to_string()),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        })?;
    // Header values must be visible ASCII.
    let problems: String = export
        .problems
        .join("; ")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(2000)
        .collect();
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/x-pcapng".to_string()),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"kubetap.pcapng\"".to_string(),
            ),
        ],
        export.pcapng,
    )
        .into_response();
    let h = response.headers_mut();
    h.insert("x-kubetap-connections", export.connections.into());
    h.insert("x-kubetap-packets", export.packets.into());
    if !problems.is_empty()
        && let Ok(v) = problems.parse()
    {
        h.insert("x-kubetap-problems", v);
    }
    Ok(response)
}

/// The workers' configuration in JSON.
#[derive(serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigJson {
    #[serde(default, skip_deserializing)]
    version: u64,
    /// Pod name regexes to capture; empty: all.
    #[serde(default)]
    target_pods: Vec<String>,
    #[serde(default)]
    target_namespaces: Vec<String>,
    /// The user's rules; the defaults apply besides them.
    #[serde(default)]
    redaction: Vec<RuleJson>,
    /// The keys every worker redacts whatever the rules say (read only: a
    /// PUT may send them back, they are not changed).
    #[serde(default)]
    default_redacted_keys: Vec<String>,
    #[serde(default)]
    capture: CaptureJson,
}

#[derive(serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleJson {
    /// An extra sensitive key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    key: String,
    /// A regex over values.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pattern: String,
}

#[derive(serde::Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CaptureJson {
    #[serde(default)]
    max_body: u64,
    #[serde(default)]
    pcap_ring_bytes: u64,
}

async fn get_config(State(hub): State<Arc<Hub>>) -> Json<ConfigJson> {
    let c = hub.worker_config().borrow().clone();
    let capture = c.capture.unwrap_or_default();
    Json(ConfigJson {
        version: c.version,
        target_pods: c.target_pods,
        target_namespaces: c.target_namespaces,
        redaction: c
            .redaction
            .into_iter()
            .map(|r| RuleJson {
                key: r.key,
                pattern: r.pattern,
            })
            .collect(),
        default_redacted_keys: tap_dissect::redact::DEFAULT_KEYS
            .iter()
            .map(|k| k.to_string())
            .collect(),
        capture: CaptureJson {
            max_body: capture.max_body,
            pcap_ring_bytes: capture.pcap_ring_bytes,
        },
    })
}

/// Replaces the workers' configuration. Regexes are checked here, so a
/// mistake is a 400 and not a worker that captures nothing.
async fn put_config(
    State(hub): State<Arc<Hub>>,
    body: axum::body::Bytes,
) -> Result<Json<ConfigJson>, ApiError> {
    let c: ConfigJson = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("invalid configuration: {e}")))?;
    for p in &c.target_pods {
        regex::Regex::new(p)
            .map_err(|e| ApiError::bad(format!("invalid regular expression {p:?}: {e}")))?;
    }
    let mut rules = Vec::new();
    for (i, r) in c.redaction.iter().enumerate() {
        rules.push(match (r.key.is_empty(), r.pattern.is_empty()) {
            (false, true) => tap_dissect::redact::Rule::Key(r.key.clone()),
            (true, false) => tap_dissect::redact::Rule::Pattern(r.pattern.clone()),
            _ => {
                return Err(ApiError::bad(format!(
                    "redaction rule {i}: give either \"key\" (an extra sensitive key) or \"pattern\" (a regex over values), not both or neither"
                )));
            }
        });
    }
    // Compiled here as every worker will, so a mistake is a 400 and not
    // workers that keep their old rules.
    tap_dissect::redact::Redactor::new(&rules).map_err(|e| ApiError::bad(e.to_string()))?;
    hub.update_worker_config(|config| {
        config.target_pods = c.target_pods;
        config.target_namespaces = c.target_namespaces;
        config.redaction = c
            .redaction
            .into_iter()
            .map(|r| RedactionRule {
                key: r.key,
                pattern: r.pattern,
            })
            .collect();
        config.capture = Some(CaptureSettings {
            max_body: c.capture.max_body,
            pcap_ring_bytes: c.capture.pcap_ring_bytes,
        });
    });
    Ok(get_config(State(hub)).await)
}

#[derive(Deserialize)]
struct MapQuery {
    filter: Option<String>,
    window: Option<String>,
}

async fn servicemap(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<MapQuery>,
) -> Result<Response, ApiError> {
    let filter = parse_filter(q.filter.as_deref())?;
    let window = parse_window(q.window.as_deref())?;
    let (map, span) = tokio::task::spawn_blocking(move || {
        let now = now_ns();
        let since = window.map(|w| now.saturating_sub(w.as_nanos() as u64));
        let mut builder = ServiceMapBuilder::default();
        // The capture times of the oldest and newest entry mapped, for rates.
        let mut span: Option<(u64, u64)> = None;
        let result = hub.scan_back(None, |_, e| {
            if let Some(since) = since {
                if e.ts_ns < since.saturating_sub(TS_SLACK_NS) {
                    return ControlFlow::Break(());
                }
                if e.ts_ns < since {
                    return ControlFlow::Continue(());
                }
            }
            if filter.matches(e, now) {
                builder.add(e);
                span = Some(span.map_or((e.ts_ns, e.ts_ns), |(first, last)| {
                    (first.min(e.ts_ns), last.max(e.ts_ns))
                }));
            }
            ControlFlow::Continue(())
        });
        result.map(|()| (builder.build(), span))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let ts = |ns: u64| rfc3339_nanos(ns).to_string();
    Ok(Json(MapJson {
        map,
        first_ts: span.map(|(first, _)| ts(first)),
        last_ts: span.map(|(_, last)| ts(last)),
        window_s: window.map(|w| w.as_secs_f64()),
    })
    .into_response())
}

/// The service map with the time it covers, so that the UI can show rates:
/// requests over the window when there is one, else over first_ts..last_ts.
#[derive(serde::Serialize)]
struct MapJson {
    #[serde(flatten)]
    map: crate::servicemap::ServiceMap,
    first_ts: Option<String>,
    last_ts: Option<String>,
    window_s: Option<f64>,
}

/// A worker's TLS status: each library found, hooked or why not, with its
/// processes and their pods.
fn tls_json(t: &proto::v1::TlsStatus) -> serde_json::Value {
    json!({
        "state": t.state,
        "reason": (!t.reason.is_empty()).then_some(&t.reason),
        "records": t.records,
        "bytes": t.bytes,
        "connections": t.connections,
        "mirrored_connections": t.mirrored_connections,
        "encrypted_entries_replaced": t.encrypted_entries_replaced,
        "degraded": (!t.degraded.is_empty()).then_some(&t.degraded),
        "untargeted_connections": t.untargeted_connections,
        "libraries": t.libraries.iter().map(|l| json!({
            "path": l.path,
            "kind": l.kind,
            "hooked": l.hooked,
            "functions": l.functions,
            "reason": (!l.reason.is_empty()).then_some(&l.reason),
            "bytes": l.bytes,
            "processes": l.processes.iter().map(|p| json!({
                "pid": p.pid,
                "command": p.command,
                "pod": p.pod,
                "namespace": p.namespace,
                "bytes": p.bytes,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn rfc3339(t: SystemTime) -> String {
    let ns = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    rfc3339_nanos(ns).to_string()
}

async fn workers(State(hub): State<Arc<Hub>>) -> Json<serde_json::Value> {
    let now = SystemTime::now();
    let workers: Vec<_> = hub
        .workers()
        .values()
        .map(|w| {
            let c = &w.counters;
            json!({
                "node": w.node,
                "instance": w.instance,
                "version": w.version,
                "capabilities": w.capabilities,
                "linux_capabilities": w.linux_capabilities,
                "state": if w.connected { "connected" } else { "disconnected" },
                "remote": w.remote,
                "connected_at": rfc3339(w.connected_at),
                "disconnected_at": w.disconnected_at.map(rfc3339),
                "last_heartbeat": w.last_heartbeat.map(rfc3339),
                "heartbeat_age_s": w.last_heartbeat
                    .and_then(|t| now.duration_since(t).ok())
                    .map(|d| d.as_secs_f64()),
                "sessions": w.sessions,
                "restarts": w.restarts,
                "batches": w.batches,
                "entries_received": w.entries_received,
                "last_error": w.last_error,
                "counters": {
                    "packets": c.packets,
                    "bytes": c.bytes,
                    "entries": c.entries,
                    "parse_errors": c.parse_errors,
                    "drops": c.drops,
                    "queue_drops": c.queue_drops,
                    "lost_in_flight": c.lost_in_flight,
                    "kernel_packets": c.kernel_packets,
                    "kernel_drops": c.kernel_drops,
                    "duplicate_packets": c.duplicate_packets,
                    "offloaded_packets": c.offloaded_packets,
                    "decapsulated_packets": c.decapsulated_packets,
                    "redacted_entries": c.redacted_entries,
                    "redacted_fields": c.redacted_fields,
                    "blanked_packets": c.blanked_packets,
                    "drops_by_cause": c.drops_by_cause,
                    "entries_sent": c.entries_sent,
                    "queued": c.queued,
                    "reconnects": c.reconnects,
                    "gap_bytes": c.gap_bytes,
                },
                "tls": c.tls.as_deref().map(tls_json),
            })
        })
        .collect();
    let h = &hub.counters;
    Json(json!({
        "workers": workers,
        "hub": {
            "version": env!("CARGO_PKG_VERSION"),
            "started": rfc3339(hub.started),
            "sessions": h.sessions.load(Ordering::Relaxed),
            "rejected_sessions": h.rejected_sessions.load(Ordering::Relaxed),
            "refused_handshakes": h.refused_handshakes.load(Ordering::Relaxed),
            "bad_messages": h.bad_messages.load(Ordering::Relaxed),
            "batches": h.batches.load(Ordering::Relaxed),
            "entries_ingested": h.entries_ingested.load(Ordering::Relaxed),
            "store_errors": h.store_errors.load(Ordering::Relaxed),
            "live_dropped": h.live_dropped.load(Ordering::Relaxed),
            "pods_followed": h.pods_followed.load(Ordering::Relaxed),
            "pod_watch_errors": h.pod_watch_errors.load(Ordering::Relaxed),
            "api_refused": crate::access::Refusal::ALL
                .into_iter()
                .map(|why| (why.name(), hub.refusals.count(why)))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "store": hub.store_stats(),
        },
    }))
}

/// Prometheus text exposition format 0.0.4 through `prometheus-client`: the
/// hub's counters and store, and per worker (`node` label) its counters,
/// with every drop cause a series of its own (`cause` label).
async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;
    type Labels = Vec<(String, String)>;

    let mut r = Registry::with_prefix("kubetap");
    let counter = |r: &mut Registry, name: &str, help: &str, v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        r.register(name, help, c);
    };
    let gauge = |r: &mut Registry, name: &str, help: &str, v: u64| {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        r.register(name, help, g);
    };
    let h = &hub.counters;
    let s = hub.store_stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    counter(
        &mut r,
        "hub_sessions",
        "Worker streams accepted",
        load(&h.sessions),
    );
    counter(
        &mut r,
        "hub_rejected_sessions",
        "Worker streams refused (no or bad hello)",
        load(&h.rejected_sessions),
    );
    counter(
        &mut r,
        "hub_refused_handshakes",
        "Worker connections refused in the TLS handshake (certificate not of the install's CA, expired, none)",
        load(&h.refused_handshakes),
    );
    counter(
        &mut r,
        "hub_pod_watch_errors",
        "Failed requests following the cluster's pods (--watch-pods; each retried)",
        load(&h.pod_watch_errors),
    );
    counter(
        &mut r,
        "hub_bad_messages",
        "Worker streams ended by an undecodable or oversized message",
        load(&h.bad_messages),
    );
    counter(
        &mut r,
        "hub_entries_ingested",
        "Entries received from workers",
        load(&h.entries_ingested),
    );
    counter(
        &mut r,
        "hub_live_dropped",
        "Entries live-stream clients were too slow to receive",
        load(&h.live_dropped),
    );
    gauge(
        &mut r,
        "hub_pods_followed",
        "Pods with an address of their own the hub follows (--watch-pods)",
        load(&h.pods_followed),
    );
    counter(
        &mut r,
        "hub_store_errors",
        "Batches kept in memory only because the disk failed",
        load(&h.store_errors),
    );
    gauge(
        &mut r,
        "store_entries",
        "Entries in memory",
        s.entries_in_memory,
    );
    gauge(
        &mut r,
        "store_memory_bytes",
        "Heap the stored entries take",
        s.memory_bytes,
    );
    gauge(
        &mut r,
        "store_memory_budget_bytes",
        "The store's memory budget",
        s.memory_budget,
    );
    counter(
        &mut r,
        "store_evicted_entries",
        "Entries evicted from memory by the budget",
        s.evicted_from_memory.entries,
    );
    gauge(
        &mut r,
        "store_disk_bytes",
        "Bytes of the on-disk log",
        s.disk_bytes,
    );
    counter(
        &mut r,
        "store_disk_evicted_entries",
        "Entries evicted from disk by its budget",
        s.evicted_from_disk.entries,
    );
    counter(
        &mut r,
        "store_lost_entries",
        "Entries gone from memory and disk both",
        s.lost_entries,
    );

    let refused = Family::<Labels, Counter>::default();
    for why in crate::access::Refusal::ALL {
        refused
            .get_or_create(&vec![("reason".into(), why.name().into())])
            .inc_by(hub.refusals.count(why));
    }
    r.register(
        "hub_api_refused",
        "API requests refused: without the token, with a wrong one, from another origin",
        refused,
    );

    let workers: Vec<_> = hub.workers().values().cloned().collect();
    let node = |w: &crate::hub::WorkerState| -> Labels { vec![("node".into(), w.node.clone())] };
    let per_worker =
        |r: &mut Registry, name: &str, help: &str, f: &dyn Fn(&crate::hub::WorkerState) -> u64| {
            let family = Family::<Labels, Counter>::default();
            for w in &workers {
                family.get_or_create(&node(w)).inc_by(f(w));
            }
            r.register(name, help, family);
        };
    let connected = Family::<Labels, Gauge>::default();
    for w in &workers {
        connected
            .get_or_create(&node(w))
            .set(i64::from(w.connected));
    }
    r.register(
        "worker_connected",
        "1 when the worker's stream is open",
        connected,
    );
    per_worker(
        &mut r,
        "worker_packets",
        "Packets the worker processed",
        &|w| w.counters.packets,
    );
    per_worker(&mut r, "worker_bytes", "Bytes the worker processed", &|w| {
        w.counters.bytes
    });
    per_worker(
        &mut r,
        "worker_kernel_packets",
        "Packets the worker's capture filters passed",
        &|w| w.counters.kernel_packets,
    );
    per_worker(
        &mut r,
        "worker_duplicate_packets",
        "Copies of packets taken on another interface, skipped",
        &|w| w.counters.duplicate_packets,
    );
    per_worker(
        &mut r,
        "worker_offloaded_packets",
        "Segmentation-offloaded packets (GSO, BIG TCP) read at their captured length",
        &|w| w.counters.offloaded_packets,
    );
    per_worker(
        &mut r,
        "worker_decapsulated_packets",
        "Packets unwrapped from an overlay tunnel (VXLAN, Geneve, GRE, IP-in-IP)",
        &|w| w.counters.decapsulated_packets,
    );
    per_worker(
        &mut r,
        "worker_redacted_entries",
        "Entries with at least one value redacted before they left the node",
        &|w| w.counters.redacted_entries,
    );
    per_worker(
        &mut r,
        "worker_redacted_fields",
        "Fields redacted before entries left the node",
        &|w| w.counters.redacted_fields,
    );
    per_worker(
        &mut r,
        "worker_blanked_packets",
        "Raw packets whose redacted bytes are overwritten in PCAP exports",
        &|w| w.counters.blanked_packets,
    );
    per_worker(&mut r, "worker_entries", "Entries the worker made", &|w| {
        w.counters.entries
    });
    per_worker(
        &mut r,
        "worker_parse_errors",
        "Messages the worker could not parse",
        &|w| w.counters.parse_errors,
    );
    per_worker(
        &mut r,
        "worker_gap_bytes",
        "Bytes the capture missed inside connections",
        &|w| w.counters.gap_bytes,
    );
    per_worker(
        &mut r,
        "worker_drops",
        "Things the worker dropped at a bound in capture or dissection: the causes kernel_ring_full, malformed_packet, fragments_dropped, connections_evicted, reassembly_buffer_full and dissector_bound of worker_dropped, added up",
        &|w| w.counters.drops,
    );
    per_worker(
        &mut r,
        "worker_queue_drops",
        "Entries the worker dropped at its entry queue",
        &|w| w.counters.queue_drops,
    );
    per_worker(
        &mut r,
        "worker_lost_in_flight",
        "Entries sent but not acknowledged when a stream broke",
        &|w| w.counters.lost_in_flight,
    );
    per_worker(
        &mut r,
        "worker_reconnects",
        "Times the worker reconnected to the hub",
        &|w| w.counters.reconnects,
    );
    per_worker(
        &mut r,
        "worker_entries_received",
        "Entries the hub received from the worker",
        &|w| w.entries_received,
    );
    per_worker(
        &mut r,
        "worker_tls_plaintext_bytes",
        "Plaintext bytes the worker's TLS probes read (0 without --tls)",
        &|w| w.counters.tls.as_ref().map_or(0, |t| t.bytes),
    );
    per_worker(
        &mut r,
        "worker_tls_connections",
        "Connections the worker's TLS probes read",
        &|w| w.counters.tls.as_ref().map_or(0, |t| t.connections),
    );
    let hooked = Family::<Labels, Gauge>::default();
    for w in &workers {
        if let Some(t) = &w.counters.tls {
            for hooked_or_not in [true, false] {
                let n = t
                    .libraries
                    .iter()
                    .filter(|l| l.hooked == hooked_or_not)
                    .count();
                hooked
                    .get_or_create(&vec![
                        ("node".into(), w.node.clone()),
                        ("hooked".into(), hooked_or_not.to_string()),
                    ])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }
    r.register(
        "worker_tls_libraries",
        "TLS libraries the worker found, hooked or not",
        hooked,
    );
    let dropped = Family::<Labels, Counter>::default();
    for w in &workers {
        for (cause, n) in &w.counters.drops_by_cause {
            dropped
                .get_or_create(&vec![
                    ("node".into(), w.node.clone()),
                    ("cause".into(), cause.clone()),
                ])
                .inc_by(*n);
        }
    }
    r.register(
        "worker_dropped",
        "What the worker lost or skipped, by cause (one series per bound)",
        dropped,
    );

    let mut out = String::with_capacity(8192);
    match prometheus_client::encoding::prometheus_text::encode(&mut out, &r) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use proto::v1::{HttpRequest, HttpResponse, request, response};
    use tower::ServiceExt as _;

    const T0: u64 = 1_795_203_410_000_000_000;

    fn http(ts_ns: u64, path: &str, status: u32, dst_pod: Option<&str>) -> Entry {
        Entry {
            ts_ns,
            node: "node-1".into(),
            protocol: Protocol::Http as i32,
            src: Some(Endpoint {
                ip: "10.0.0.1".into(),
                port: 40000,
                ..Default::default()
            }),
            dst: Some(Endpoint {
                ip: "10.0.0.2".into(),
                port: 8080,
                pod: dst_pod.map(Into::into),
                namespace: dst_pod.map(|_| "shop".into()),
                service: None,
            }),
            elapsed_ns: Some(1_234_567),
            request_size: 100,
            response_size: 2000,
            request: Some(proto::v1::Request {
                kind: Some(request::Kind::Http(Box::new(HttpRequest {
                    method: "GET".into(),
                    path: path.into(),
                    version: "1.1".into(),
                    ..Default::default()
                }))),
            }),
            response: Some(proto::v1::Response {
                kind: Some(response::Kind::Http(Box::new(HttpResponse {
                    status,
                    version: "1.1".into(),
                    ..Default::default()
                }))),
            }),
            flags: vec!["gap".into()],
            ..Default::default()
        }
    }

    /// A hub holding, oldest first: /a 200, a 2000-byte path 404 (with an
    /// `é` across byte 1024), /c 500 to a pod, and an entry with no endpoints.
    fn hub() -> (Arc<Hub>, String) {
        let hub = Hub::open(crate::HubConfig::default()).unwrap();
        let long = format!("/{}é{}", "x".repeat(1022), "y".repeat(975));
        let mut bare = http(T0 + 3_000_000_000, "/d", 200, None);
        bare.src = None;
        bare.dst = None;
        hub.insert(
            "node-1",
            vec![
                http(T0, "/a", 200, None),
                http(T0 + 1_000_000_000, &long, 404, None),
                http(T0 + 2_000_000_000, "/c", 500, Some("web-1")),
                bare,
            ],
        )
        .unwrap();
        (hub, long)
    }

    async fn get(hub: &Arc<Hub>, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let bearer = format!("Bearer {}", hub.config.token.secret());
        let request = Request::get(uri)
            .header(header::AUTHORIZATION, bearer)
            .body(Body::empty())
            .unwrap();
        let response = router(hub.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, body.to_vec())
    }

    async fn get_json(hub: &Arc<Hub>, uri: &str) -> (StatusCode, serde_json::Value) {
        let (status, _, body) = get(hub, uri).await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn rows_summarize_entries_newest_first_in_pages() {
        let (hub, long) = hub();
        let (status, page) = get_json(&hub, "/api/rows?limit=2").await;
        assert_eq!(status, StatusCode::OK);
        let columns: Vec<&str> = page["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(columns.len(), 15);
        let rows = page["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        let col = |row: &serde_json::Value, name: &str| {
            row[columns.iter().position(|c| *c == name).unwrap()].clone()
        };
        // Newest first: the bare entry (seq 4), then /c (seq 3).
        assert_eq!(col(&rows[0], "id"), json!(4));
        assert_eq!(col(&rows[0], "src"), json!(null));
        assert_eq!(col(&rows[1], "id"), json!(3));
        assert_eq!(col(&rows[1], "ts_us"), json!((T0 + 2_000_000_000) / 1000));
        assert_eq!(col(&rows[1], "protocol"), json!("http"));
        assert_eq!(
            col(&rows[1], "src"),
            json!(["10.0.0.1", 40000, null, null, null])
        );
        assert_eq!(
            col(&rows[1], "dst"),
            json!(["10.0.0.2", 8080, "web-1", "shop", null])
        );
        assert_eq!(col(&rows[1], "method"), json!("GET"));
        assert_eq!(col(&rows[1], "path"), json!("/c"));
        assert_eq!(col(&rows[1], "path_cut"), json!(false));
        assert_eq!(col(&rows[1], "status"), json!(500));
        assert_eq!(col(&rows[1], "elapsed_us"), json!(1234));
        assert_eq!(col(&rows[1], "request_size"), json!(100));
        assert_eq!(col(&rows[1], "response_size"), json!(2000));
        assert_eq!(col(&rows[1], "tls"), json!(false));
        assert_eq!(col(&rows[1], "flags"), json!(["gap"]));
        assert_eq!(col(&rows[1], "node"), json!("node-1"));
        // The full entry agrees with its row.
        let (_, entry) = get_json(&hub, "/api/entries/3").await;
        assert_eq!(entry["request"]["path"], json!("/c"));

        let cursor = page["next_cursor"].as_str().unwrap().to_string();
        let (_, rest) = get_json(&hub, &format!("/api/rows?limit=50000&cursor={cursor}")).await;
        let rest = rest["rows"].as_array().unwrap().clone();
        assert_eq!(rest.len(), 2);
        assert_eq!(col(&rest[0], "id"), json!(2));
        // The long path is cut before the `é` that straddles byte 1024.
        let cut = col(&rest[0], "path");
        assert_eq!(cut.as_str().unwrap(), &long[..1023]);
        assert_eq!(col(&rest[0], "path_cut"), json!(true));
        assert_eq!(col(&rest[1], "id"), json!(1));

        let (_, matching) = get_json(&hub, "/api/rows?filter=response.status%20%3E%3D%20400").await;
        let ids: Vec<_> = matching["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| col(r, "id"))
            .collect();
        assert_eq!(ids, [json!(3), json!(2)]);
        assert_eq!(matching["next_cursor"], json!(null));
    }

    #[tokio::test]
    async fn rows_refuse_bad_limits_and_filters() {
        let (hub, _) = hub();
        for limit in ["0", "50001", "x"] {
            let (status, body) = get_json(&hub, &format!("/api/rows?limit={limit}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{limit}");
            assert!(body["error"].as_str().unwrap().contains("1 to 50000"));
        }
        let (status, body) = get_json(&hub, "/api/rows?filter=protocol%20%3D%3D").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["column"], json!(12));
    }

    #[tokio::test]
    async fn filter_check_answers_like_a_query() {
        let (hub, _) = hub();
        let (status, body) = get_json(
            &hub,
            "/api/filter/check?filter=http%20and%20response.status%20%3E%20499",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"ok": true, "matches_all": false}));
        let (status, body) = get_json(&hub, "/api/filter/check?filter=").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["matches_all"], json!(true));
        // The same error, at the same column, as /api/entries gives.
        for uri in ["/api/filter/check", "/api/entries"] {
            let (status, body) =
                get_json(&hub, &format!("{uri}?filter=src.nope%20%3D%3D%201")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(body["column"], json!(5), "{uri}: {body}");
            assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
        }
    }

    #[tokio::test]
    async fn servicemap_says_what_time_it_covers() {
        let (hub, _) = hub();
        let (status, map) =
            get_json(&hub, "/api/servicemap?filter=response.status%20%3C%20500").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(map["entries"], json!(3));
        assert_eq!(map["first_ts"], json!(rfc3339_nanos(T0).to_string()));
        assert_eq!(
            map["last_ts"],
            json!(rfc3339_nanos(T0 + 3_000_000_000).to_string())
        );
        assert_eq!(map["window_s"], json!(null));
        assert!(map["edges"].as_array().is_some_and(|e| !e.is_empty()));
        let (_, empty) = get_json(&hub, "/api/servicemap?filter=dns&window=5m").await;
        assert_eq!(empty["first_ts"], json!(null));
        assert_eq!(empty["window_s"], json!(300.0));
    }

    #[tokio::test]
    async fn other_paths_are_the_ui_and_unknown_api_paths_json() {
        let (hub, _) = hub();
        for uri in ["/", "/map?filter=http", "/workers"] {
            let (status, headers, body) = get(&hub, uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert!(
                headers[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap()
                    .contains("script-src 'self'")
            );
            let html = String::from_utf8_lossy(&body);
            assert!(html.contains("<html"));
            // The built UI's page carries a nonce for its style sheet, in the policy too.
            if let Some((_, rest)) = html.split_once(r#"name="kubetap-csp-nonce" content=""#) {
                let nonce = rest.split('"').next().unwrap();
                assert_eq!(nonce.len(), 32, "{nonce}");
                let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
                assert!(csp.contains(&format!("'nonce-{nonce}'")), "{csp}");
            }
        }
        for uri in ["/api/nope", "/api", "/api/entries/1/more"] {
            let (status, body) = get_json(&hub, uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert!(body["error"].as_str().is_some(), "{uri}");
        }
        let (status, _, _) = get(&hub, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        // The router alone is not a running hub.
        let (status, _, _) = get(&hub, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn fields_name_every_protocols_request_and_response_fields() {
        let hub = Hub::open(Default::default()).unwrap();
        let (status, v) = get_json(&hub, "/api/fields").await;
        assert_eq!(status, StatusCode::OK);
        assert!(v["entry"].as_array().unwrap().contains(&json!("protocol")));
        assert!(v["endpoint"].as_array().unwrap().contains(&json!("pod")));
        let of = |p: &str, side: &str| -> Vec<String> {
            let f = v["protocols"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["protocol"] == p)
                .unwrap_or_else(|| panic!("{p} missing: {v}"));
            serde_json::from_value(f[side].clone()).unwrap()
        };
        assert!(of("redis", "request").contains(&"command".to_string()));
        assert!(of("postgres", "request").contains(&"sql".to_string()));
        assert!(of("dns", "response").contains(&"rcode_name".to_string()));
        assert!(of("tcp", "response").contains(&"ended".to_string()));
        assert_eq!(v["protocols"].as_array().unwrap().len(), 14);
        assert_eq!(
            v["tunnel"],
            serde_json::json!(["dst", "kind", "src", "vni"])
        );
    }

    #[tokio::test]
    async fn fields_carry_each_protocols_colour_and_status_classes() {
        let hub = Hub::open(Default::default()).unwrap();
        let (_, v) = get_json(&hub, "/api/fields").await;
        let of = |p: &str| {
            v["protocols"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["protocol"] == p)
                .cloned()
                .unwrap()
        };
        assert_eq!(of("http")["colour"], "#58a6ff");
        assert_eq!(
            of("http")["status"],
            json!({"ok": [[0, 299]], "redirect": [[300, 399]], "client": [[400, 499]]})
        );
        assert_eq!(of("dns")["status"]["client"], json!([[3, 3]]));
        assert_eq!(of("redis")["status"]["ok"], json!([[0, 0]]));
    }

    /// `method uri` with `headers`, answered by the router; no token unless a header carries it.
    async fn call(
        hub: &Arc<Hub>,
        method: Method,
        uri: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let response = router(hub.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_api_needs_the_token_and_the_probes_and_page_do_not() {
        let (hub, _) = hub();
        let bearer = format!("Bearer {}", hub.config.token.secret());
        let right = [(header::AUTHORIZATION, bearer.as_str())];
        let wrong = [(header::AUTHORIZATION, "Bearer not-the-token-at-all")];
        for uri in [
            "/api/entries",
            "/api/rows",
            "/api/entries/1",
            "/api/workers",
            "/api/config",
            "/api/fields",
            "/api/servicemap",
            "/api/filter/check?filter=http",
            "/api/stream",
            "/api/nope",
            "/api",
            "/metrics",
        ] {
            let (status, h, body) = call(&hub, Method::GET, uri, &[]).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {body}");
            assert_eq!(h[header::WWW_AUTHENTICATE], r#"Bearer realm="kubetap""#);
            let error = serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                error.contains("Authorization: Bearer <token>") && error.contains("KUBETAP_TOKEN"),
                "{uri}: {error}"
            );
            let (status, h, _) = call(&hub, Method::GET, uri, &wrong).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
            assert!(
                h[header::WWW_AUTHENTICATE]
                    .to_str()
                    .unwrap()
                    .contains("invalid_token")
            );
        }
        // The same token as a query parameter is no token.
        let uri = format!("/api/entries?token={}", hub.config.token.secret());
        let (status, _, _) = call(&hub, Method::GET, &uri, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        for uri in ["/api/entries", "/api/workers", "/api/fields", "/metrics"] {
            let (status, _, body) = call(&hub, Method::GET, uri, &right).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        }
        // A PUT is refused before it changes anything.
        let (status, _, _) = call(&hub, Method::PUT, "/api/config", &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Open: the probes, and the page that reads the token from its URL.
        for uri in ["/healthz", "/", "/workers?filter=http"] {
            let (status, _, _) = call(&hub, Method::GET, uri, &[]).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
        }
        let (status, _, _) = call(&hub, Method::GET, "/readyz", &[]).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "not serving, but answered"
        );
        // Counted by cause, where an operator looks.
        let (_, _, metrics) = call(&hub, Method::GET, "/metrics", &right).await;
        assert!(
            metrics.contains(r#"kubetap_hub_api_refused_total{reason="missing_token"} 14"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"kubetap_hub_api_refused_total{reason="wrong_token"} 12"#),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn another_origin_is_refused_even_with_the_token() {
        let (hub, _) = hub();
        let bearer = format!("Bearer {}", hub.config.token.secret());
        let host = "127.0.0.1:8899";
        let from = |origin: &'static str| {
            [
                (header::HOST, host),
                (header::ORIGIN, origin),
                (header::AUTHORIZATION, bearer.as_str()),
            ]
        };
        let (status, h, body) = call(
            &hub,
            Method::GET,
            "/api/entries",
            &from("http://evil.example"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("evil.example"), "{body}");
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        // A CORS preflight from there gets nothing that allows it.
        let (status, h, _) = call(
            &hub,
            Method::OPTIONS,
            "/api/entries",
            &[
                (header::HOST, host),
                (header::ORIGIN, "http://evil.example"),
                (header::ACCESS_CONTROL_REQUEST_METHOD, "GET"),
                (header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            !h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "{h:?}"
        );
        assert!(
            !h.contains_key(header::ACCESS_CONTROL_ALLOW_HEADERS),
            "{h:?}"
        );
        // The hub's own page may.
        let (status, _, _) = call(
            &hub,
            Method::GET,
            "/api/entries",
            &from("http://127.0.0.1:8899"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(hub.refusals.count(crate::access::Refusal::ForeignOrigin), 2);
    }

    /// `encrypted=true` reaches the node's packet source, and the captured
    /// packets it sends for it come first in the file, then the rest, each
    /// part in time order; a value other than true or false is refused.
    #[tokio::test]
    async fn an_encrypted_pcap_export_asks_for_the_captured_packets_and_puts_them_first() {
        use proto::v1::{PcapChunk, PcapRequest, RawPacket};
        let (hub, _) = hub();
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = asked.clone();
        let answer = move |req: &PcapRequest| {
            seen.lock().unwrap().push(req.encrypted);
            let packet = |ts_ns, encrypted| RawPacket {
                ts_ns,
                linktype: 101,
                data: vec![0x45; 20],
                orig_len: 20,
                encrypted,
                ..Default::default()
            };
            let mut packets = vec![packet(T0 + 2, false)];
            if req.encrypted {
                packets.extend([packet(T0 + 3, true), packet(T0 + 1, true)]);
            }
            vec![PcapChunk {
                request_id: req.request_id,
                packets,
                last: true,
                error: String::new(),
            }]
        };
        hub.set_source("node-1", crate::hub::PacketSource::Local(Arc::new(answer)));
        let times = |pcapng: &[u8]| {
            let mut reader = pcap_file::pcapng::PcapNgReader::new(pcapng).unwrap();
            let mut times = Vec::new();
            while let Some(block) = reader.next_block() {
                if let pcap_file::pcapng::Block::EnhancedPacket(p) = block.unwrap() {
                    times.push(p.timestamp.as_nanos() as u64 - T0);
                }
            }
            times
        };
        let (status, _, body) = get(&hub, "/api/pcap").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(times(&body), [2]);
        let (status, _, body) = get(&hub, "/api/pcap?encrypted=true").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(times(&body), [1, 3, 2]);
        assert_eq!(*asked.lock().unwrap(), [false, true]);
        let (status, _, body) = get(&hub, "/api/pcap?encrypted=yes").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&body).contains("true or false"));
    }

    #[tokio::test]
    async fn ready_while_serving_and_not_once_shutting_down() {
        let hub = Hub::open(Default::default()).unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = http.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve(hub.clone(), None, http, async {
            let _ = stopped.await;
        }));
        let ready = || async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        assert!(ready().await.starts_with("HTTP/1.1 200"));
        assert!(hub.serving());
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        assert!(!hub.serving(), "a stopped hub is not ready");
    }
}
