//! Puts the web UI the hub embeds into `$OUT_DIR/ui`, so that a plain
//! `cargo build` (or `cargo install --path tap-cli`) gives a hub with its UI:
//! when `web/dist` is missing or older than the UI's sources, this script
//! builds it with npm first (`npm ci` when `node_modules` is missing or older
//! than `package-lock.json`, then `npm run build`), and stops with a message
//! saying what to install when npm is absent. `KUBETAP_NO_UI=1` embeds a
//! one-page placeholder instead, for a build of the Rust code alone. `ui.rs`
//! embeds the folder with `include_dir!`.

use std::fs;
use std::io;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>kubetap</title></head>
<body>
<h1>kubetap</h1>
<p>This hub was built without its web UI (<code>KUBETAP_NO_UI</code> was set when it was compiled).</p>
<p>Build it again without that variable (it needs Node.js and npm): <code>cargo build</code>.</p>
<p>The API works all the same: <a href="/api/entries">/api/entries</a>,
<a href="/api/servicemap">/api/servicemap</a>, <a href="/api/workers">/api/workers</a>.</p>
</body>
</html>
"#;

/// What the UI is built from, relative to `web/`.
const SOURCES: [&str; 8] = [
    "src",
    "public",
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
    "tsconfig.test.json",
];

fn main() {
    if let Err(e) = run() {
        // A build script's error is printed whole by cargo; say it plainly.
        eprintln!("\nkubetap: cannot build the web UI the hub embeds: {e}\n");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("ui");
    let web = manifest.join("../web");
    let dist = web.join("dist");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KUBETAP_NO_UI");
    for s in SOURCES {
        println!("cargo:rerun-if-changed={}", web.join(s).display());
    }
    // Notices web/dist going away (rebuilt here) or rebuilt by hand.
    println!(
        "cargo:rerun-if-changed={}",
        dist.join("index.html").display()
    );
    let io = |what: &str, e: io::Error| format!("{what}: {e}");
    if out.exists() {
        fs::remove_dir_all(&out).map_err(|e| io("clearing the last copy", e))?;
    }
    fs::create_dir_all(&out).map_err(|e| io("creating OUT_DIR/ui", e))?;
    if std::env::var_os("KUBETAP_NO_UI").is_some_and(|v| !v.is_empty() && v != "0") {
        fs::write(out.join("index.html"), PLACEHOLDER).map_err(|e| io("writing", e))?;
        println!(
            "cargo:warning=KUBETAP_NO_UI is set: the hub embeds a placeholder page instead of the UI"
        );
        return Ok(());
    }
    let built = modified(&dist.join("index.html"));
    let sources = SOURCES.iter().filter_map(|s| newest(&web.join(s))).max();
    if built.is_none() || built < sources {
        build_ui(&web)?;
    }
    copy_tree(&dist, &out).map_err(|e| io("copying web/dist", e))
}

fn build_ui(web: &Path) -> Result<(), String> {
    let npm_found = Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !npm_found {
        return Err("web/dist is missing or older than web/src, and npm was not found: install Node.js (20.19 or later) and npm (`cargo xtask setup` does), or set KUBETAP_NO_UI=1 to build without the UI".into());
    }
    let installed = modified(&web.join("node_modules/.package-lock.json"));
    if installed.is_none() || installed < modified(&web.join("package-lock.json")) {
        npm(web, &["ci", "--no-audit", "--no-fund"])?;
    }
    npm(web, &["run", "build"])
}

fn npm(web: &Path, args: &[&str]) -> Result<(), String> {
    // npm's output goes to this script's stderr (cargo shows it on failure);
    // its stdout is cargo's channel for directives.
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot pass stderr to npm: {e}"))?;
    let status = Command::new("npm")
        .args(args)
        .current_dir(web)
        .stdout(Stdio::from(stderr))
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("cannot start npm {}: {e}", args.join(" ")))?;
    if !status.success() {
        return Err(format!(
            "`npm {}` in web/ failed ({status}); its output is above",
            args.join(" ")
        ));
    }
    Ok(())
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the files under `path`.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| newest(&e.path()))
        .max()
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
