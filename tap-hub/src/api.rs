//! `api`: the hub's HTTP API on the UI port (8899), with axum. Every answer is
//! JSON; a bad filter, cursor or parameter is a 400 whose body says what is
//! wrong (and at which column of a filter), an unknown entry a 404.
//!
//! - `GET /api/entries?filter=&cursor=&limit=`: newest first; `next_cursor`
//!   continues where the page ended.
//! - `GET /api/entries/{id}`: one entry in full.
//! - `GET /api/stream?filter=` (WebSocket): entries as they arrive.
//! - `GET /api/servicemap?filter=&window=5m`
//! - `GET /api/workers`: each worker's state, heartbeat and counters, and the hub's.
//! - `GET /api/pcap?filter=&window=`: a pcapng of the matching entries' connections.
//! - `GET /api/config`, `PUT /api/config`: what workers capture; a change
//!   reaches every connected worker at once.
//! - `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus text format).
//!
//! The API is described in `tap-hub/openapi.yaml`.

use crate::export::ExportError;
use crate::filter::{Filter, FilterError};
use crate::hub::Hub;
use crate::servicemap::ServiceMapBuilder;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use proto::json::{EntryJson, rfc3339_nanos};
use proto::v1::{CaptureSettings, RedactionRule, WorkerConfig};
use serde::Deserialize;
use serde_json::json;
use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::error::RecvError;

/// Entries per page when the query does not say.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// A query scans at most this long before it answers with what it found and
/// a cursor to continue (`partial`): a needle in a huge disk log does not
/// hold the store for minutes.
const SCAN_BUDGET: Duration = Duration::from_secs(2);
/// Entries from different workers arrive out of time order by up to a
/// batch's age; a scan bounded by `ts > …` goes this much further back.
const TS_SLACK_NS: u64 = 60_000_000_000;

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/entries", get(entries))
        .route("/api/entries/{id}", get(entry))
        .route("/api/stream", get(stream))
        .route("/api/servicemap", get(servicemap))
        .route("/api/workers", get(workers))
        .route("/api/pcap", get(pcap))
        .route("/api/config", get(get_config).put(put_config))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; see /") })
        .with_state(hub)
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

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "kubetap hub. The web UI arrives in a later step; the API is here:\n\
         /api/entries?filter=&cursor=&limit=\n/api/entries/{id}\n/api/stream?filter= (WebSocket)\n\
         /api/servicemap?filter=&window=\n/api/workers\n/api/pcap?filter=&window=\n/healthz /readyz /metrics\n",
    )
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

async fn entries(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<EntriesQuery>,
) -> Result<Response, ApiError> {
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
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad(format!(
                    "invalid limit {l:?}: a number from 1 to {MAX_LIMIT}"
                )));
            }
        },
    };
    tokio::task::spawn_blocking(move || query(&hub, &filter, cursor, limit))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// One page of entries, written as JSON while the store is scanned.
fn query(
    hub: &Hub,
    filter: &Filter,
    cursor: Option<u64>,
    limit: usize,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let now = now_ns();
    let stop_below = filter
        .min_ts_ns(now)
        .map(|ts| ts.saturating_sub(TS_SLACK_NS));
    let mut body = Vec::with_capacity(64 << 10);
    body.extend_from_slice(b"{\"entries\":[");
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
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut body, &EntryJson(e));
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
}

async fn stream(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let filter = parse_filter(q.filter.as_deref())?;
    Ok(ws.on_upgrade(move |socket| live(hub, filter, socket)))
}

/// Sends each new matching entry as `{"type":"entry","entry":{…}}`; a client
/// too slow to keep up is told how many it missed with
/// `{"type":"dropped","count":N}` (also counted in `/metrics`).
async fn live(hub: Arc<Hub>, filter: Filter, mut socket: WebSocket) {
    let mut feed = hub.subscribe();
    loop {
        tokio::select! {
            got = feed.recv() => {
                let text = match got {
                    Ok((_, e)) => {
                        if !filter.matches(&e, now_ns()) {
                            continue;
                        }
                        let entry = match serde_json::to_string(&EntryJson(&e)) {
                            Ok(s) => s,
                            Err(_) => continue,
                        };
                        format!("{{\"type\":\"entry\",\"entry\":{entry}}}")
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

async fn pcap(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<MapQuery>,
) -> Result<Response, ApiError> {
    let filter = parse_filter(q.filter.as_deref())?;
    let window = parse_window(q.window.as_deref())?;
    let export = crate::export::export(&hub, filter, window, now_ns())
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
    #[serde(default)]
    redaction: Vec<RuleJson>,
    #[serde(default)]
    capture: CaptureJson,
}

#[derive(serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleJson {
    #[serde(default)]
    field: String,
    #[serde(default)]
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
                field: r.field,
                pattern: r.pattern,
            })
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
    for p in c
        .target_pods
        .iter()
        .chain(c.redaction.iter().map(|r| &r.pattern))
    {
        if !p.is_empty() {
            regex::Regex::new(p)
                .map_err(|e| ApiError::bad(format!("invalid regular expression {p:?}: {e}")))?;
        }
    }
    hub.set_worker_config(WorkerConfig {
        version: 0,
        target_pods: c.target_pods,
        target_namespaces: c.target_namespaces,
        redaction: c
            .redaction
            .into_iter()
            .map(|r| RedactionRule {
                field: r.field,
                pattern: r.pattern,
            })
            .collect(),
        capture: Some(CaptureSettings {
            max_body: c.capture.max_body,
            pcap_ring_bytes: c.capture.pcap_ring_bytes,
        }),
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
    let map = tokio::task::spawn_blocking(move || {
        let now = now_ns();
        let since = window.map(|w| now.saturating_sub(w.as_nanos() as u64));
        let mut builder = ServiceMapBuilder::default();
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
            }
            ControlFlow::Continue(())
        });
        result.map(|()| builder.build())
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(map).into_response())
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
                    "entries_sent": c.entries_sent,
                    "queued": c.queued,
                    "reconnects": c.reconnects,
                    "gap_bytes": c.gap_bytes,
                },
            })
        })
        .collect();
    let h = &hub.counters;
    Json(json!({
        "workers": workers,
        "hub": {
            "started": rfc3339(hub.started),
            "sessions": h.sessions.load(Ordering::Relaxed),
            "rejected_sessions": h.rejected_sessions.load(Ordering::Relaxed),
            "bad_messages": h.bad_messages.load(Ordering::Relaxed),
            "batches": h.batches.load(Ordering::Relaxed),
            "entries_ingested": h.entries_ingested.load(Ordering::Relaxed),
            "store_errors": h.store_errors.load(Ordering::Relaxed),
            "live_dropped": h.live_dropped.load(Ordering::Relaxed),
            "store": hub.store_stats(),
        },
    }))
}

/// Prometheus text exposition format 0.0.4, written by hand: a handful of
/// counters and gauges, most per worker (`node` label).
async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    let mut out = String::with_capacity(4096);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(Option<&str>, u64)]| {
        let _ = writeln!(out, "# HELP kubetap_{name} {help}");
        let _ = writeln!(out, "# TYPE kubetap_{name} {kind}");
        for (node, v) in samples {
            match node {
                Some(n) => {
                    let _ = writeln!(out, "kubetap_{name}{{node=\"{}\"}} {v}", label(n));
                }
                None => {
                    let _ = writeln!(out, "kubetap_{name} {v}");
                }
            }
        }
    };
    let h = &hub.counters;
    let s = hub.store_stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    family(
        "hub_sessions_total",
        "counter",
        "Worker streams accepted.",
        &[(None, load(&h.sessions))],
    );
    family(
        "hub_rejected_sessions_total",
        "counter",
        "Worker streams refused (no or bad hello).",
        &[(None, load(&h.rejected_sessions))],
    );
    family(
        "hub_bad_messages_total",
        "counter",
        "Worker streams ended by an undecodable or oversized message.",
        &[(None, load(&h.bad_messages))],
    );
    family(
        "hub_entries_ingested_total",
        "counter",
        "Entries received from workers.",
        &[(None, load(&h.entries_ingested))],
    );
    family(
        "hub_live_dropped_total",
        "counter",
        "Entries live-stream clients were too slow to receive.",
        &[(None, load(&h.live_dropped))],
    );
    family(
        "hub_store_errors_total",
        "counter",
        "Batches kept in memory only because the disk failed.",
        &[(None, load(&h.store_errors))],
    );
    family(
        "store_entries",
        "gauge",
        "Entries in memory.",
        &[(None, s.entries_in_memory)],
    );
    family(
        "store_memory_bytes",
        "gauge",
        "Heap the stored entries take.",
        &[(None, s.memory_bytes)],
    );
    family(
        "store_memory_budget_bytes",
        "gauge",
        "The store's memory budget.",
        &[(None, s.memory_budget)],
    );
    family(
        "store_evicted_entries_total",
        "counter",
        "Entries evicted from memory by the budget.",
        &[(None, s.evicted_from_memory.entries)],
    );
    family(
        "store_disk_bytes",
        "gauge",
        "Bytes of the on-disk log.",
        &[(None, s.disk_bytes)],
    );
    family(
        "store_disk_evicted_entries_total",
        "counter",
        "Entries evicted from disk by its budget.",
        &[(None, s.evicted_from_disk.entries)],
    );
    family(
        "store_lost_entries_total",
        "counter",
        "Entries gone from memory and disk both.",
        &[(None, s.lost_entries)],
    );
    let workers: Vec<_> = hub.workers().values().cloned().collect();
    let per = |f: &dyn Fn(&crate::hub::WorkerState) -> u64| -> Vec<(Option<&str>, u64)> {
        workers
            .iter()
            .map(|w| (Some(w.node.as_str()), f(w)))
            .collect()
    };
    family(
        "worker_connected",
        "gauge",
        "1 when the worker's stream is open.",
        &per(&|w| u64::from(w.connected)),
    );
    family(
        "worker_packets_total",
        "counter",
        "Packets the worker captured.",
        &per(&|w| w.counters.packets),
    );
    family(
        "worker_bytes_total",
        "counter",
        "Bytes the worker captured.",
        &per(&|w| w.counters.bytes),
    );
    family(
        "worker_entries_total",
        "counter",
        "Entries the worker made.",
        &per(&|w| w.counters.entries),
    );
    family(
        "worker_parse_errors_total",
        "counter",
        "Messages the worker could not parse.",
        &per(&|w| w.counters.parse_errors),
    );
    family(
        "worker_drops_total",
        "counter",
        "Things the worker dropped at a bound in capture or dissection.",
        &per(&|w| w.counters.drops),
    );
    family(
        "worker_queue_drops_total",
        "counter",
        "Entries the worker dropped because its queue to the hub was full.",
        &per(&|w| w.counters.queue_drops),
    );
    family(
        "worker_lost_in_flight_total",
        "counter",
        "Entries sent but not acknowledged when a stream broke.",
        &per(&|w| w.counters.lost_in_flight),
    );
    family(
        "worker_reconnects_total",
        "counter",
        "Times the worker reconnected to the hub.",
        &per(&|w| w.counters.reconnects),
    );
    family(
        "worker_entries_received_total",
        "counter",
        "Entries the hub received from the worker.",
        &per(&|w| w.entries_received),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// A label value escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
