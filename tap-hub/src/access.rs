//! `access`: who may use the hub's HTTP API. Every request to `/api/…` and
//! `/metrics` passes [`guard`] before its handler:
//!
//! - A browser's request from another origin (an `Origin` header that is not
//!   `http(s)://` + this request's `Host`) is refused with a 403, whatever
//!   it carries: a page elsewhere cannot read the API or open the live
//!   stream, and no answer carries `Access-Control-Allow-Origin`, so a CORS
//!   preflight from elsewhere fails too. Clients that send no `Origin` (curl,
//!   scripts, Prometheus) are not browsers and pass this check.
//! - Then the bearer token ([`Token`]): `Authorization: Bearer <token>`, or,
//!   for a WebSocket (browsers cannot set its headers), the subprotocol
//!   `kubetap.bearer.<token>` offered beside `kubetap.v1`, which the hub
//!   selects (the token is never echoed). Missing or wrong: a 401 whose body
//!   says where the token is.
//!
//! `/healthz`, `/readyz` and the UI's files stay open: probes need no secret,
//! and the page must load to read the token from its URL (`?token=`).
//!
//! Every refusal is counted by cause (`/metrics`, `/api/workers`) and logged
//! at warn with the peer and the path (never the token, nor the query, which
//! could hold one), at most [`LOG_BURST`] lines a minute per cause; the rest
//! are counted in the next line, so a scanner cannot flood the log, and a
//! tab without a token retrying its requests does not hide another origin's.

use crate::hub::Hub;
use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The environment variable a hub takes its token from.
pub const TOKEN_ENV: &str = "KUBETAP_TOKEN";
/// The live stream's subprotocol, which the hub selects.
pub const WS_PROTOCOL: &str = "kubetap.v1";
/// A WebSocket client offers `kubetap.bearer.<token>` beside [`WS_PROTOCOL`].
pub const WS_BEARER_PREFIX: &str = "kubetap.bearer.";
/// A token a user chooses is at least this long.
pub const MIN_TOKEN_LEN: usize = 16;
/// Refusals of one cause logged per [`LOG_WINDOW`]; the others are counted.
pub const LOG_BURST: u32 = 10;
const LOG_WINDOW: Duration = Duration::from_secs(60);

/// The hub's API token. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Token(Arc<str>);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the API token is {0} characters long; use at least {MIN_TOKEN_LEN} (for example `openssl rand -hex 32`)"
    )]
    TooShort(usize),
    #[error(
        "the API token has a character other than letters, digits, '-', '_', '.' and '~' (it must fit in a URL and a WebSocket subprotocol); `openssl rand -hex 32` makes one that does"
    )]
    BadCharacter,
    #[error("cannot read the API token from {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {TOKEN_ENV}: it is not valid UTF-8")]
    NotUnicode,
    #[error("the operating system gave no randomness for the API token: {0}")]
    Random(getrandom::Error),
}

impl Token {
    /// 32 random bytes from the operating system, as 64 hex digits.
    pub fn generate() -> Result<Token, TokenError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(TokenError::Random)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Token(hex.into()))
    }

    /// A token a user chose: long enough, and URL- and subprotocol-safe.
    pub fn new(secret: &str) -> Result<Token, TokenError> {
        if secret.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort(secret.len()));
        }
        if !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        {
            return Err(TokenError::BadCharacter);
        }
        Ok(Token(secret.into()))
    }

    /// The token in `path` (surrounding whitespace ignored: a file ends in a newline).
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Token::new(text.trim())
    }

    /// The secret itself, for the URL a user opens and for clients.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token, in time that does not depend on
    /// where they differ (only on the candidate's length, which is no secret).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        let mut diff = u8::from(ours.len() != candidate.len());
        for (i, b) in candidate.iter().enumerate() {
            // Against itself when the lengths differ: the loop runs the same.
            let o = ours.get(i).copied().unwrap_or(*b);
            diff |= o ^ b;
        }
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

/// Where a hub's token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env,
    /// Made at start: only the printed URL has it.
    Generated,
}

/// The token of a hub binary: the file given (`--token-file`), else
/// `KUBETAP_TOKEN`, else a new random one.
pub fn token_from(file: Option<&Path>) -> Result<(Token, TokenSource), TokenError> {
    if let Some(path) = file {
        return Ok((
            Token::from_file(path)?,
            TokenSource::File(path.to_path_buf()),
        ));
    }
    match std::env::var(TOKEN_ENV) {
        Ok(secret) if !secret.is_empty() => Ok((Token::new(&secret)?, TokenSource::Env)),
        Err(std::env::VarError::NotUnicode(_)) => Err(TokenError::NotUnicode),
        _ => Ok((Token::generate()?, TokenSource::Generated)),
    }
}

/// What a hub binary prints about its UI at `base` (`http://127.0.0.1:8899`).
/// A generated token is printed in the URL, the only place it exists; a
/// token the user gave is not repeated into the log.
pub fn ui_banner(base: &str, token: &Token, source: &TokenSource) -> String {
    match source {
        TokenSource::Generated => format!("{base}/?token={}", token.secret()),
        TokenSource::Env => {
            format!("{base}/?token=<the token in {TOKEN_ENV}>")
        }
        TokenSource::File(path) => {
            format!("{base}/?token=<the token in {}>", path.display())
        }
    }
}

/// Warns when `addr` is not a loopback address: the API is then reachable
/// from other hosts, protected by the token alone, in clear HTTP.
pub fn exposure_warning(addr: &SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "the API listens on {addr}, which other hosts can reach: anyone who learns the token can read all captured traffic, and plain HTTP shows it to the network; listen on 127.0.0.1 and use an SSH tunnel or `kubectl port-forward` unless this is what you want"
        )
    })
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MissingToken,
    WrongToken,
    ForeignOrigin,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [
        Refusal::MissingToken,
        Refusal::WrongToken,
        Refusal::ForeignOrigin,
    ];

    /// Its name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::MissingToken => "missing_token",
            Refusal::WrongToken => "wrong_token",
            Refusal::ForeignOrigin => "foreign_origin",
        }
    }
}

/// Refusals counted by cause, and the log's rate limit per cause.
#[derive(Debug, Default)]
pub struct Refusals {
    counts: [AtomicU64; 3],
    log: [Mutex<LogWindow>; 3],
}

#[derive(Debug, Default)]
struct LogWindow {
    started: Option<Instant>,
    logged: u32,
    unlogged: u64,
}

impl Refusals {
    pub fn count(&self, why: Refusal) -> u64 {
        self.counts[why as usize].load(Ordering::Relaxed)
    }

    /// Counts a refusal and logs it, unless this minute's lines are spent.
    fn record(&self, why: Refusal, peer: Option<SocketAddr>, path: &str, origin: Option<&str>) {
        self.counts[why as usize].fetch_add(1, Ordering::Relaxed);
        let unlogged_before = {
            let mut w = self.log[why as usize]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if w.started
                .is_none_or(|s| now.duration_since(s) >= LOG_WINDOW)
            {
                w.started = Some(now);
                w.logged = 0;
            }
            if w.logged >= LOG_BURST {
                w.unlogged += 1;
                return;
            }
            w.logged += 1;
            std::mem::take(&mut w.unlogged)
        };
        let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
        // Debug formatting quotes and escapes what a client sent.
        tracing::warn!(
            reason = why.name(),
            %peer,
            path = ?cut(path),
            origin = ?origin.map(cut),
            unlogged_before,
            "refused an API request"
        );
    }
}

fn cut(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The paths behind the token: the API and the metrics.
pub fn protected(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/metrics"
}

/// The middleware in front of every route (see the module's header).
pub async fn guard(State(hub): State<Arc<Hub>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !protected(path) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if let Some(origin) = foreign_origin(req.headers(), host) {
        hub.refusals
            .record(Refusal::ForeignOrigin, peer, path, Some(&origin));
        return refuse(
            StatusCode::FORBIDDEN,
            None,
            format!(
                "cross-origin request refused: Origin {origin:?} is not this hub's own address ({}); open the UI from the hub's address itself",
                host.unwrap_or("no Host header")
            ),
        );
    }
    let why = match presented(req.headers()) {
        Some(t) if hub.config.token.matches(t) => return next.run(req).await,
        Some(_) => Refusal::WrongToken,
        None => Refusal::MissingToken,
    };
    hub.refusals.record(why, peer, path, None);
    let hint = "send `Authorization: Bearer <token>` (a WebSocket may instead offer the subprotocols `kubetap.v1` and `kubetap.bearer.<token>`); the token is in the UI's URL that tap-hub or kubetap printed at start (…/?token=<token>), or in KUBETAP_TOKEN or the --token-file the hub was started with";
    let (message, challenge) = match why {
        Refusal::WrongToken => (
            format!("wrong API token: {hint}"),
            r#"Bearer realm="kubetap", error="invalid_token""#,
        ),
        _ => (
            format!("this API needs a token: {hint}"),
            r#"Bearer realm="kubetap""#,
        ),
    };
    refuse(StatusCode::UNAUTHORIZED, Some(challenge), message)
}

fn refuse(status: StatusCode, challenge: Option<&'static str>, message: String) -> Response {
    let mut response = (status, Json(json!({ "error": message }))).into_response();
    if let Some(c) = challenge {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    response
}

/// The request's `Origin` when it is another site's: present, and not
/// `http://` or `https://` followed by the `Host` the request went to.
/// (Behind a proxy, the proxy must pass the browser's `Host` on.)
fn foreign_origin(headers: &HeaderMap, host: Option<&str>) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?;
    let text = String::from_utf8_lossy(origin.as_bytes());
    let same = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .zip(host)
        .is_some_and(|(o, h)| o.eq_ignore_ascii_case(h));
    (!same).then(|| text.into_owned())
}

/// The token the request carries: `Authorization: Bearer …`, or on a
/// WebSocket upgrade the `kubetap.bearer.…` subprotocol.
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let v = auth.as_bytes();
        // The scheme is case-insensitive (RFC 9110, 11.1).
        return (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
            .then(|| v[7..].trim_ascii());
    }
    let upgrade = headers
        .get(header::UPGRADE)
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !upgrade {
        return None;
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .find_map(|p| p.strip_prefix(WS_BEARER_PREFIX.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        let t = Token::new("abcdefghijklmnop").unwrap();
        assert!(t.matches(b"abcdefghijklmnop"));
        assert!(!t.matches(b"abcdefghijklmnoq"));
        assert!(!t.matches(b"abcdefghijklmno"));
        assert!(!t.matches(b"abcdefghijklmnopq"));
        assert!(!t.matches(b""));
    }

    #[test]
    fn generated_tokens_are_long_random_and_url_safe() {
        let (a, b) = (Token::generate().unwrap(), Token::generate().unwrap());
        assert_eq!(a.secret().len(), 64);
        assert_ne!(a.secret(), b.secret());
        assert!(Token::new(a.secret()).is_ok());
        assert_eq!(format!("{a:?}"), "Token(…)");
    }

    #[test]
    fn chosen_tokens_must_be_long_and_plain() {
        assert!(matches!(Token::new("short"), Err(TokenError::TooShort(5))));
        assert!(matches!(
            Token::new("has space in it 12345"),
            Err(TokenError::BadCharacter)
        ));
        assert!(matches!(
            Token::new("comma,would,split,the,protocols"),
            Err(TokenError::BadCharacter)
        ));
        assert!(Token::new("A-b_c.d~0123456789").is_ok());
    }

    #[test]
    fn a_token_file_may_end_in_a_newline() {
        let dir = testkit::TempDir::new("token");
        let path = dir.path("token");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let t = Token::from_file(&path).unwrap();
        assert_eq!(t.secret(), "0123456789abcdef0123");
        let e = Token::from_file(&dir.path("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn bearer_and_subprotocol_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(header::AUTHORIZATION, "bearer  tok ".parse().unwrap());
        assert_eq!(presented(&h), Some(&b"tok"[..]));
        h.insert(header::AUTHORIZATION, "Basic dXNlcg==".parse().unwrap());
        assert_eq!(presented(&h), None);
        let mut ws = HeaderMap::new();
        ws.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "kubetap.v1, kubetap.bearer.tok".parse().unwrap(),
        );
        // Only on an upgrade.
        assert_eq!(presented(&ws), None);
        ws.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert_eq!(presented(&ws), Some(&b"tok"[..]));
    }

    #[test]
    fn only_the_hubs_own_origin_is_same() {
        let with = |origin: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ORIGIN, origin.parse().unwrap());
            h
        };
        let host = Some("127.0.0.1:8899");
        assert_eq!(foreign_origin(&HeaderMap::new(), host), None);
        assert_eq!(foreign_origin(&with("http://127.0.0.1:8899"), host), None);
        assert_eq!(foreign_origin(&with("https://127.0.0.1:8899"), host), None);
        for other in [
            "http://evil.example",
            "http://127.0.0.1:8898",
            "http://127.0.0.1",
            "null",
            "http://127.0.0.1:8899.evil.example",
        ] {
            assert_eq!(
                foreign_origin(&with(other), host).as_deref(),
                Some(other),
                "{other}"
            );
        }
        assert!(foreign_origin(&with("http://127.0.0.1:8899"), None).is_some());
    }

    #[test]
    fn the_log_is_limited_and_every_refusal_counted() {
        let r = Refusals::default();
        for _ in 0..(LOG_BURST + 5) {
            r.record(Refusal::MissingToken, None, "/api/entries", None);
        }
        // Another cause has lines of its own.
        r.record(
            Refusal::ForeignOrigin,
            None,
            "/api/stream",
            Some("http://x"),
        );
        assert_eq!(r.count(Refusal::MissingToken), u64::from(LOG_BURST) + 5);
        assert_eq!(r.count(Refusal::ForeignOrigin), 1);
        let missing = r.log[Refusal::MissingToken as usize].lock().unwrap();
        assert_eq!((missing.logged, missing.unlogged), (LOG_BURST, 5));
        let foreign = r.log[Refusal::ForeignOrigin as usize].lock().unwrap();
        assert_eq!((foreign.logged, foreign.unlogged), (1, 0));
    }

    #[test]
    fn loopback_listeners_need_no_warning() {
        assert!(exposure_warning(&"127.0.0.1:8899".parse().unwrap()).is_none());
        assert!(exposure_warning(&"[::1]:8899".parse().unwrap()).is_none());
        assert!(exposure_warning(&"0.0.0.0:8899".parse().unwrap()).is_some());
    }
}
