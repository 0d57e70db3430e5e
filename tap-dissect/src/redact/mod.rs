//! Redaction: the entry stage that takes secrets out of an entry before it
//! leaves the node. Values of sensitive keys (the defaults below plus the
//! user's extra keys) become `[REDACTED]` wherever a protocol has keys —
//! headers, query strings, form and JSON bodies, GraphQL variables and
//! arguments, gRPC metadata, WebSocket JSON, PostgreSQL connection
//! parameters, AMQP tables — and the user's regexes take matching values out
//! of every text the entry carries. Protocol commands that carry credentials
//! by position (Redis `AUTH`, PostgreSQL's `PASSWORD '…'`) are redacted by
//! command; credentials the dissectors never keep (PostgreSQL password and
//! SASL messages, AMQP `start-ok`, Kafka SASL, SOCKS passwords) are named
//! so the raw packets carrying them can be blanked.
//!
//! [`Redactor::entry`] returns, besides the edited entry, what the worker's
//! raw-packet ring needs to blank the same bytes in its packets
//! ([`Blanks`]): the wire bytes of each redacted value (with context when
//! the value alone is short), and which sides of the message must be
//! blanked whole (compressed, chunked, masked or never-kept bytes).
//!
//! Bounded: every scan is linear in the entry's size (JSON is scanned
//! without recursion, regexes are finite automata with size limits), so
//! hostile input costs time in proportion to its bytes and nothing more.

mod json;
mod protocols;
mod text;

use proto::v1::Entry;
use std::collections::HashSet;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The keys whose values are always redacted, compared case-insensitively
/// as whole keys with `-` and `_` left out (`X-Auth-Token` is not `token`;
/// `client_secret` is `clientsecret`). The first list is the issue's; the
/// second adds keys whose values are credentials under other names.
pub const DEFAULT_KEYS: &[&str] = &[
    "token",
    "authorization",
    "authentication",
    "cookie",
    "userid",
    "password",
    "username",
    "user",
    "key",
    "passcode",
    "pass",
    "auth",
    "authtoken",
    "jwt",
    "bearer",
    "clientid",
    "clientsecret",
    "redirecturi",
    "phonenumber",
    "zip",
    "zipcode",
    "address",
    "country",
    "firstname",
    "lastname",
    "middlename",
    "fname",
    "lname",
    "birthdate",
    // Credentials under other common names.
    "setcookie",
    "proxyauthorization",
    "apikey",
    "xapikey",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "secret",
    "privatekey",
    "passwd",
    "pwd",
    "sessionid",
    "xauthtoken",
    "xcsrftoken",
    "csrftoken",
];

/// Regexes users often add, shipped as examples (docs/redaction.md): they
/// are not on by default, since a regex over every value costs time and
/// may hide what a user is debugging.
pub const EXAMPLE_PATTERNS: &[(&str, &str)] = &[
    ("card number", r"\b(?:\d[ -]?){12,18}\d\b"),
    (
        "JWT",
        r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+",
    ),
    (
        "e-mail address",
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
    ),
];

/// The largest compiled form a user's regex may take: a pattern that would
/// need more is refused when it is configured.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A rule the user added: an extra sensitive key, or a regex over values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Key(String),
    Pattern(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("redaction key '{0}' has no letters or digits (keys compare without '-' and '_')")]
    EmptyKey(String),
    #[error("redaction key '{0}' is longer than 64 characters (without '-' and '_')")]
    LongKey(String),
    #[error("redaction pattern '{pattern}' is not a valid regex: {reason}")]
    BadPattern { pattern: String, reason: String },
}

/// The longest key a rule may name (without `-` and `_`).
const MAX_KEY: usize = 64;

/// Compiles a user's value regex with the limits every worker uses, so the
/// hub refuses at configuration time what a worker could not run.
pub fn compile_pattern(pattern: &str) -> Result<regex::bytes::Regex, RuleError> {
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| RuleError::BadPattern {
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })
}

/// A key as it is compared: ASCII lowercase, without `-` and `_`.
fn normalize(key: &[u8]) -> Vec<u8> {
    key.iter()
        .filter(|b| **b != b'-' && **b != b'_')
        .map(u8::to_ascii_lowercase)
        .collect()
}

/// The rules in force: built once per configuration and shared by every
/// pipeline (`Arc`), swapped whole when the hub pushes new rules.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Normalized sensitive keys by their length: a lookup compares a few
    /// short slices of one length, cheaper than hashing (it runs for every
    /// header, JSON key and parameter).
    by_len: Vec<Vec<Vec<u8>>>,
    patterns: Vec<regex::bytes::Regex>,
    /// Off only in benchmarks and tests that measure what redaction costs.
    enabled: bool,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(&[]).expect("the default rules compile")
    }
}

impl Redactor {
    /// The default keys plus the user's rules.
    pub fn new(rules: &[Rule]) -> Result<Self, RuleError> {
        let mut keys: HashSet<Vec<u8>> = DEFAULT_KEYS
            .iter()
            .map(|k| normalize(k.as_bytes()))
            .collect();
        let mut patterns = Vec::new();
        for rule in rules {
            match rule {
                Rule::Key(k) => {
                    let n = normalize(k.as_bytes());
                    if n.is_empty() {
                        return Err(RuleError::EmptyKey(k.clone()));
                    }
                    if n.len() > MAX_KEY {
                        return Err(RuleError::LongKey(k.clone()));
                    }
                    keys.insert(n);
                }
                Rule::Pattern(p) => patterns.push(compile_pattern(p)?),
            }
        }
        let longest_key = keys.iter().map(Vec::len).max().unwrap_or(0);
        let mut by_len = vec![Vec::new(); longest_key + 1];
        for k in keys {
            by_len[k.len()].push(k);
        }
        Ok(Redactor {
            by_len,
            patterns,
            enabled: true,
        })
    }

    /// A redactor that leaves entries as they are: for measuring its cost.
    pub fn disabled() -> Self {
        Redactor {
            enabled: false,
            ..Self::default()
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `key` is sensitive, without allocating.
    pub fn sensitive(&self, key: &[u8]) -> bool {
        let mut buf = [0u8; MAX_KEY];
        let mut n = 0;
        for &b in key {
            if b == b'-' || b == b'_' {
                continue;
            }
            if n + 1 >= self.by_len.len() {
                return false;
            }
            buf[n] = b.to_ascii_lowercase();
            n += 1;
        }
        n > 0 && self.by_len[n].iter().any(|k| k[..] == buf[..n])
    }

    /// Takes every secret out of `entry`, names each redacted field in its
    /// `redacted` list, and returns what the packets carrying it need.
    pub fn entry(&self, entry: &mut Entry) -> Blanks {
        let mut cx = Cx {
            r: self,
            blanks: Blanks::default(),
            paths: std::mem::take(&mut entry.redacted),
            echoes: Vec::new(),
            more_paths: 0,
            hpack: matches!(
                proto::v1::Protocol::try_from(entry.protocol),
                Ok(proto::v1::Protocol::Http2
                    | proto::v1::Protocol::Grpc
                    | proto::v1::Protocol::Graphql)
            ),
        };
        if self.enabled {
            protocols::entry(&mut cx, entry);
        }
        if cx.more_paths > 0 {
            cx.paths.push(format!("… and {} more", cx.more_paths));
        }
        entry.redacted = cx.paths;
        cx.blanks
    }
}

/// A value to overwrite in the packets: find `context`, blank its bytes in
/// `blank` (the value; the context around it makes a short value's match
/// unambiguous).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needle {
    pub context: Vec<u8>,
    pub blank: std::ops::Range<usize>,
    /// An HPACK Huffman-coded value: overwritten with bytes that still
    /// decode (`http2::huffman::filler`), not `*`.
    pub huffman: bool,
}

/// What the raw packets of a redacted entry need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blanks {
    /// Values whose wire bytes are to be overwritten wherever they appear
    /// in the entry's packets.
    pub needles: Vec<Needle>,
    /// The request's (client's) or response's (server's) bytes must be
    /// blanked whole: their redacted plaintext is not on the wire as such
    /// (compressed, chunked, masked) or was never kept (credentials).
    pub whole_request: bool,
    pub whole_response: bool,
}

impl Blanks {
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty() && !self.whole_request && !self.whole_response
    }
}

/// Fields an entry's `redacted` list names; more are counted in its last
/// item (`… and 12 more`).
const MAX_PATHS: usize = 64;
/// Values searched for in one entry's packets; past this the entry's
/// packets are blanked whole.
const MAX_NEEDLES: usize = 128;

/// Values shorter than this are searched for with their key around them.
const SHORT_VALUE: usize = 6;

/// One entry's redaction in progress.
pub(crate) struct Cx<'r> {
    r: &'r Redactor,
    blanks: Blanks,
    paths: Vec<String>,
    /// Redacted values the other side may say back (a PostgreSQL user in
    /// the server's ParameterStatus and errors).
    echoes: Vec<String>,
    /// Fields redacted past [`MAX_PATHS`].
    more_paths: usize,
    /// The entry came over HTTP/2 (HPACK-coded headers).
    hpack: bool,
}

/// Which side of the entry a field is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Request,
    Response,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Request => "request",
            Side::Response => "response",
        }
    }
}

impl Cx<'_> {
    fn sensitive(&self, key: &[u8]) -> bool {
        self.r.sensitive(key)
    }

    fn has_patterns(&self) -> bool {
        !self.r.patterns.is_empty()
    }

    fn path(&mut self, path: String) {
        if self.paths.contains(&path) {
            return;
        }
        if self.paths.len() < MAX_PATHS {
            self.paths.push(path);
        } else {
            self.more_paths += 1;
        }
    }

    /// Blank the wire bytes `value`; `key` is the context a short value is
    /// searched with (`key` `sep` `value`).
    fn needle(&mut self, key: &[u8], sep: &[u8], value: &[u8]) {
        if value.is_empty() || value == REDACTED.as_bytes() {
            return;
        }
        let needle = if value.len() >= SHORT_VALUE || key.is_empty() {
            Needle {
                context: value.to_vec(),
                blank: 0..value.len(),
                huffman: false,
            }
        } else {
            let mut context = Vec::with_capacity(key.len() + sep.len() + value.len());
            context.extend_from_slice(key);
            context.extend_from_slice(sep);
            let start = context.len();
            context.extend_from_slice(value);
            Needle {
                blank: start..context.len(),
                context,
                huffman: false,
            }
        };
        if self.blanks.needles.contains(&needle) {
            return;
        }
        if self.blanks.needles.len() < MAX_NEEDLES {
            self.blanks.needles.push(needle);
        } else {
            // Too many to search for: the whole message goes instead.
            self.blanks.whole_request = true;
            self.blanks.whole_response = true;
        }
    }

    /// On HTTP/2 the sender may have Huffman-coded a header's value (its
    /// whole value: HPACK codes strings, not parts of them): that form is
    /// searched for too.
    fn hpack_value(&mut self, original: &str) {
        if !self.hpack || original.is_empty() {
            return;
        }
        let context = crate::http2::huffman::encode(original.as_bytes());
        let needle = Needle {
            blank: 0..context.len(),
            context,
            huffman: true,
        };
        if !self.blanks.needles.contains(&needle) && self.blanks.needles.len() < MAX_NEEDLES {
            self.blanks.needles.push(needle);
        }
    }

    fn whole(&mut self, side: Side) {
        match side {
            Side::Request => self.blanks.whole_request = true,
            Side::Response => self.blanks.whole_response = true,
        }
    }

    /// The user's regexes over a text value: matches become `[REDACTED]`.
    fn text(&mut self, path: impl FnOnce() -> String, s: &mut String) {
        if !self.has_patterns() || s.is_empty() {
            return;
        }
        if let Some(out) = self.replace_matches(s.as_bytes()) {
            *s = String::from_utf8(out)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            self.path(path());
        }
    }

    /// The user's regexes over bytes.
    fn bytes(&mut self, path: impl FnOnce() -> String, b: &mut Vec<u8>) -> bool {
        if !self.has_patterns() || b.is_empty() {
            return false;
        }
        match self.replace_matches(b) {
            Some(out) => {
                *b = out;
                self.path(path());
                true
            }
            None => false,
        }
    }

    /// `data` with every match of every pattern replaced, or `None` when
    /// nothing matched. Matches are also needles for the packets.
    fn replace_matches(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for p in &self.r.patterns {
            spans.extend(
                p.find_iter(data)
                    .filter(|m| !m.is_empty())
                    .map(|m| (m.start(), m.end())),
            );
        }
        if spans.is_empty() {
            return None;
        }
        spans.sort_unstable();
        let mut out = Vec::with_capacity(data.len());
        let mut at = 0;
        for (s, e) in spans {
            let s = s.max(at);
            if s >= e {
                continue;
            }
            out.extend_from_slice(&data[at..s]);
            out.extend_from_slice(REDACTED.as_bytes());
            let needle = data[s..e].to_vec();
            self.needle(&[], &[], &needle);
            at = e;
        }
        out.extend_from_slice(&data[at..]);
        Some(out)
    }
}

#[cfg(test)]
mod tests;
