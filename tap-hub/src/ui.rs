//! `ui`: the browser UI's files, embedded in the binary (built from `web/` by
//! `cargo xtask build`; `build.rs` puts them, or a placeholder page, in
//! `$OUT_DIR/ui`), served by the API's router at every path that is not an
//! API route.
//!
//! - `/assets/…`: Vite's output, named by content hash, so cached for a year;
//!   a missing one is a 404, never the page (a script URL answered with HTML
//!   would only confuse).
//! - any other path (`/`, `/map`, `/workers?filter=…`): the file of that name
//!   when there is one, else `index.html`, which routes in the browser.
//!
//! Every answer carries a strict Content-Security-Policy: scripts only from
//! this origin, no inline script, no plugins, no framing. The UI never turns
//! captured data into markup; the policy is the second line of defence.
//! The filter editor (CodeMirror) writes its style sheet into a `<style>`
//! element: `index.html` is served with a fresh nonce for it in the policy
//! and in `<meta name="kubetap-csp-nonce">`, where the UI reads it.

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};
use std::hash::{BuildHasher, Hasher};

static UI: Dir<'static> = include_dir!("$OUT_DIR/ui");

/// The policy of every UI answer; `{style}` is `style-src`'s sources.
/// `connect-src 'self'` covers the live stream's same-origin WebSocket (CSP
/// level 3). Style *attributes* are allowed because CodeMirror sets a few,
/// and an attribute cannot run code.
fn content_security_policy(style: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src {style}; \
         style-src-attr 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self'; \
         connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'; object-src 'none'"
    )
}

/// Where `index.html` (web/index.html) wants the page's nonce.
const NONCE_PLACEHOLDER: &str = "__KUBETAP_CSP_NONCE__";

/// 128 unpredictable bits, hex: std's `RandomState` is keyed from the
/// operating system's randomness, and SipHash's output cannot be told
/// without the key.
fn nonce() -> String {
    let half = || {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    format!("{:016x}{:016x}", half(), half())
}

/// The answer for a GET or HEAD of `uri` outside the API.
pub fn serve(method: &Method, uri: &Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "the UI only answers GET\n");
    }
    let path = uri.path().trim_start_matches('/');
    if path.split('/').any(|part| part == "..") {
        return plain(StatusCode::BAD_REQUEST, "bad path\n");
    }
    let file = if path.is_empty() {
        None
    } else {
        UI.get_file(path)
    };
    let (file, name) = match file {
        Some(f) => (f, path),
        None if path.starts_with("assets/") => {
            return plain(StatusCode::NOT_FOUND, "no such file in the UI\n");
        }
        None => match UI.get_file("index.html") {
            Some(f) => (f, "index.html"),
            None => return plain(StatusCode::NOT_FOUND, "the UI has no index.html\n"),
        },
    };
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let headers = [
        (header::CONTENT_TYPE, content_type(name)),
        (header::CACHE_CONTROL, cache),
    ];
    let html = file.contents();
    if name == "index.html"
        && let Ok(text) = std::str::from_utf8(html)
        && text.contains(NONCE_PLACEHOLDER)
    {
        let nonce = nonce();
        let mut response = (headers, text.replace(NONCE_PLACEHOLDER, &nonce)).into_response();
        secure(response.headers_mut(), &format!("'self' 'nonce-{nonce}'"));
        return response;
    }
    let mut response = (headers, html).into_response();
    secure(response.headers_mut(), "'self'");
    response
}

/// The security headers of every UI answer; `style` is `style-src`'s sources.
fn secure(h: &mut axum::http::HeaderMap, style: &str) {
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(style)) {
        h.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response();
    secure(response.headers_mut(), "'self'");
    response
}

/// The media type of a UI file, by its extension.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Response {
        serve(&Method::GET, &path.parse().unwrap())
    }

    fn header(r: &Response, name: header::HeaderName) -> &str {
        r.headers().get(name).unwrap().to_str().unwrap()
    }

    #[test]
    fn pages_route_to_index_with_a_strict_policy() {
        for path in ["/", "/map", "/workers?filter=http", "/index.html"] {
            let r = get(path);
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&r, header::CONTENT_TYPE), "text/html; charset=utf-8");
            assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache");
            let csp = header(&r, header::CONTENT_SECURITY_POLICY);
            assert!(csp.contains("; script-src 'self';"), "{csp}");
            // Inline code never: only style attributes may be inline.
            let inline: Vec<&str> = csp
                .split(';')
                .filter(|d| d.contains("unsafe-"))
                .map(str::trim)
                .collect();
            assert_eq!(inline, ["style-src-attr 'unsafe-inline'"], "{csp}");
            assert_eq!(header(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        }
    }

    #[test]
    fn missing_assets_and_bad_paths_are_not_the_page() {
        assert_eq!(get("/assets/nope-123.js").status(), StatusCode::NOT_FOUND);
        assert_eq!(get("/a/../index.html").status(), StatusCode::BAD_REQUEST);
        let post = serve(&Method::POST, &"/".parse().unwrap());
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn hashed_assets_are_immutable_and_typed() {
        // Only a build with the real UI has assets; the placeholder has none.
        let Some(assets) = UI.get_dir("assets") else {
            testkit::skip(
                "UI assets",
                "built with KUBETAP_NO_UI: the hub embeds only the placeholder page",
            );
            return;
        };
        let mut seen_script = false;
        for f in assets.files() {
            let path = format!("/{}", f.path().display());
            let r = get(&path);
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header(&r, header::CACHE_CONTROL),
                "public, max-age=31536000, immutable"
            );
            if path.ends_with(".js") {
                seen_script = true;
                assert_eq!(
                    header(&r, header::CONTENT_TYPE),
                    "text/javascript; charset=utf-8"
                );
            }
        }
        assert!(seen_script, "the built UI has a script");
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(
            content_type("assets/index-x.css"),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn each_page_gets_its_own_style_nonce() {
        let a = nonce();
        let b = nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        let policy = content_security_policy(&format!("'self' 'nonce-{a}'"));
        assert!(
            policy.contains(&format!("style-src 'self' 'nonce-{a}';")),
            "{policy}"
        );
        assert!(HeaderValue::from_str(&policy).is_ok());
    }
}
