//! A plain HTTP/1.1 client for tests that talk to a kubetap API (the hub's,
//! `read --serve`'s): one request per connection, whole or chunked bodies.
//! Tests call the panicking functions (the panic names the request); xtask
//! calls the `try_` ones.
//!
//! The API needs a bearer token: tests start every `kubetap` and `tap-hub`
//! with [`with_token`] (`KUBETAP_TOKEN` = [`TOKEN`]), and every request here
//! sends `Authorization: Bearer` [`TOKEN`] unless [`try_request_as`] says
//! otherwise.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// The API token of every hub a test or xtask's benchmarks start.
pub const TOKEN: &str = "kubetap-tests-token-0123456789";

/// Gives `cmd` (a `kubetap` or `tap-hub` to start) the tests' API token.
pub fn with_token(cmd: &mut Command) -> &mut Command {
    cmd.env("KUBETAP_TOKEN", TOKEN)
}

/// An answer: its status, headers, content type and body.
pub struct Reply {
    pub status: u16,
    /// Every header as sent, names in lower case.
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    /// The body as text (invalid UTF-8 replaced).
    pub body: String,
    /// The body's bytes (a PCAP, say).
    pub raw: Vec<u8>,
}

impl Reply {
    /// The first header `name` (lower case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET path` from `addr`.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None)
}

/// `GET path` from 127.0.0.1:`port`.
pub fn get_local(port: u16, path: &str) -> Reply {
    get(SocketAddr::from(([127, 0, 0, 1], port)), path)
}

/// `method path` to `addr`, with a body and its content type when given.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Reply {
    try_request(addr, method, path, body).unwrap_or_else(|e| panic!("{e}"))
}

/// `GET path` from `addr`, failing with a message instead of panicking (for
/// xtask's demo and benchmarks).
pub fn try_get(addr: SocketAddr, path: &str) -> Result<Reply, String> {
    try_request(addr, "GET", path, None)
}

/// [`request`], failing with a message that names the request instead of
/// panicking.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Result<Reply, String> {
    try_request_as(addr, method, path, body, Some(TOKEN), &[])
}

/// A request with the bearer `token` (none: no `Authorization` header) and
/// more `headers` (an `Origin`, say).
pub fn try_request_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let what = format!("{method} {path} on {addr}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("{what}: cannot connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| format!("{what}: {e}"))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some((content_type, data)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            data.len()
        ));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.map_or(&[][..], |(_, d)| d));
    stream.write_all(&out).map_err(|e| format!("{what}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("{what}: reading the answer: {e}"))?;
    parse(&raw).ok_or_else(|| {
        format!(
            "{what}: not an HTTP answer: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse(raw: &[u8]) -> Option<Reply> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut body = raw[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut content_type = None;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
            body = dechunk(&body)?;
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_string());
        }
        headers.push((name.to_ascii_lowercase(), value.to_string()));
    }
    Some(Reply {
        status,
        headers,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
        raw: body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Percent-encodes a query parameter's value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_and_chunked_bodies_are_read() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nok").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        assert_eq!(r.content_type.as_deref(), Some("text/plain"));
        let r = parse(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "{}"));
        assert!(parse(b"garbage").is_none());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(encode("x-y_z.~1"), "x-y_z.~1");
    }
}
