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
