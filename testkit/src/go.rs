//! Go programs built by the tests with the installed Go (Debian's
//! `golang-go`): standard library only, no module download, the build
//! cache and GOPATH inside the test's own directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How a program is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// With its symbol table and DWARF.
    Full,
    /// `-ldflags=-s -w`: no symbol table, no DWARF.
    Stripped,
}

/// Builds `source` (one `package main` file) into `dir/name`; panics with
/// Go's message when it does not build. Static (`CGO_ENABLED=0`), so it
/// runs in any pod.
pub fn build(dir: &Path, name: &str, source: &str, link: Link) -> PathBuf {
    let src = dir.join(format!("{name}.go"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let mut cmd = Command::new("go");
    cmd.arg("build").arg("-o").arg(&out);
    if link == Link::Stripped {
        cmd.arg("-ldflags=-s -w");
    }
    let done = cmd
        .arg(&src)
        .current_dir(dir)
        .env("GOCACHE", dir.join("go-cache"))
        .env("GOPATH", dir.join("go-path"))
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", "0")
        .output()
        .unwrap_or_else(|e| panic!("running go build: {e}"));
    assert!(
        done.status.success(),
        "go build {name}: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    out
}

/// An HTTPS server on the standard library: `server ADDR CERT KEY`.
/// `http.Server.ServeTLS` offers HTTP/2 and HTTP/1.1 (ALPN); every path
/// answers 200 with a body naming it and the protocol, except those under
/// `/missing`, 404. Prints `listening` once it does.
pub const HTTPS_SERVER: &str = r#"package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
)

func main() {
	addr, cert, key := os.Args[1], os.Args[2], os.Args[3]
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		status := 200
		if strings.HasPrefix(r.URL.Path, "/missing") {
			status = 404
		}
		body := "you asked for " + r.URL.Path + " over " + r.Proto + "\n"
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		w.Write([]byte(body))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening")
	srv := &http.Server{Handler: mux}
	fmt.Fprintln(os.Stderr, srv.ServeTLS(ln, cert, key))
	os.Exit(1)
}
"#;

/// An HTTPS client on the standard library: `client BASE h1|h2 PATH…`.
/// It prints `ready` and waits for a line on stdin (so the probes can be
/// attached first), asks for each path in turn on one connection
/// (HTTP/1.1, or HTTP/2 with `h2`; certificates not checked), prints each
/// answer's protocol and status (`HTTP/2.0 200`), then `done`, and holds
/// its connection until stdin closes.
pub const HTTPS_CLIENT: &str = r#"package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	base, mode := os.Args[1], os.Args[2]
	transport := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: mode == "h2",
	}
	client := &http.Client{Transport: transport}
	stdin := bufio.NewReader(os.Stdin)
	fmt.Println("ready")
	stdin.ReadString('\n')
	for _, path := range os.Args[3:] {
		resp, err := client.Get(base + path)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.Proto, resp.StatusCode)
	}
	fmt.Println("done")
	io.ReadAll(stdin)
}
"#;
