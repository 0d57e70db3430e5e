//! Puts the web UI the hub embeds into `$OUT_DIR/ui`: the files of `web/dist`
//! when the UI has been built (`cargo xtask build`, or `npm run build` in
//! `web/`), otherwise a one-page placeholder that says how to build it, so a
//! fresh clone still builds and lints without Node.js. `ui.rs` embeds the
//! folder with `include_dir!`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>kubetap</title></head>
<body>
<h1>kubetap</h1>
<p>This hub was built without its web UI (<code>web/dist</code> was missing when it was compiled).</p>
<p>Build the UI and then the binary again: <code>cargo xtask build</code>
(or <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>, then <code>cargo build</code>).</p>
<p>The API works all the same: <a href="/api/entries">/api/entries</a>,
<a href="/api/servicemap">/api/servicemap</a>, <a href="/api/workers">/api/workers</a>.</p>
</body>
</html>
"#;

fn main() -> io::Result<()> {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("ui");
    let web = manifest.join("../web");
    let dist = web.join("dist");
    if out.exists() {
        fs::remove_dir_all(&out)?;
    }
    fs::create_dir_all(&out)?;
    if dist.join("index.html").is_file() {
        copy_tree(&dist, &out)?;
        println!("cargo:rerun-if-changed={}", dist.display());
    } else {
        fs::write(out.join("index.html"), PLACEHOLDER)?;
        // Notices web/dist when it appears (a path that does not exist would
        // make cargo run this script on every build).
        println!("cargo:rerun-if-changed={}", web.display());
        println!(
            "cargo:warning=web/dist is missing: the hub embeds a placeholder page instead of the UI (build it with `cargo xtask build`)"
        );
    }
    println!("cargo:rerun-if-changed=build.rs");
    Ok(())
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
