//! Compiles the protobuf schema with protox (pure Rust), so no `protoc` is
//! needed; tonic generates the worker-hub service from it. Each protocol's
//! messages are in its folder of tap-dissect (`<protocol>/<protocol>.proto`),
//! imported by `entry.proto`. `Protocol::name` is generated from the enum.

use std::fmt::Write as _;
use std::path::Path;

/// Where imports are looked up: this crate's schema, then the protocols' folders.
const INCLUDES: [&str; 2] = ["proto", "../tap-dissect/src"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/kubetap/v1/entry.proto", "proto/kubetap/v1/hub.proto"];
    let fds = protox::compile(files, INCLUDES)?;
    // Every file the schema is made of, imports included.
    for f in &fds.file {
        let name = f.name.as_deref().unwrap_or_default();
        for dir in INCLUDES {
            let path = Path::new(dir).join(name);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    write_protocol_names(&fds)?;
    // Each protocol's request and response boxed: an entry then takes its
    // own protocol's size, not the largest one's (~900 bytes less each in
    // the hub's store).
    // The overlay hop too: most entries have none, and inline it would add
    // ~90 bytes to every one.
    tonic_prost_build::configure()
        .boxed(".kubetap.v1.Request.kind")
        .boxed(".kubetap.v1.Response.kind")
        .boxed(".kubetap.v1.Entry.tunnel")
        // A worker's TLS status is rare and large: the counters stay small.
        .boxed(".kubetap.v1.WorkerCounters.tls")
        .compile_fds(fds)?;
    Ok(())
}

/// `Protocol::name`: each value's name without `PROTOCOL_`, in lower case
/// (`PROTOCOL_HTTP2` is `http2`), `unknown` for `PROTOCOL_UNSPECIFIED`.
fn write_protocol_names(
    fds: &protox::prost_reflect::prost_types::FileDescriptorSet,
) -> Result<(), Box<dyn std::error::Error>> {
    let protocol = fds
        .file
        .iter()
        .filter(|f| f.package.as_deref() == Some("kubetap.v1"))
        .flat_map(|f| &f.enum_type)
        .find(|e| e.name.as_deref() == Some("Protocol"))
        .ok_or("entry.proto has no enum Protocol")?;
    let mut arms = String::new();
    for v in &protocol.value {
        let name = v.name.as_deref().unwrap_or_default();
        let short = name
            .strip_prefix("PROTOCOL_")
            .ok_or_else(|| format!("{name}: Protocol values start with PROTOCOL_"))?;
        if short != "UNSPECIFIED" {
            writeln!(
                arms,
                "            {} => {:?},",
                v.number.unwrap_or_default(),
                short.to_ascii_lowercase()
            )?;
        }
    }
    let code = format!(
        "impl Protocol {{\n    \
         /// The protocol's name as used in the JSON form and the filter\n    \
         /// language: its value's name in entry.proto without `PROTOCOL_`, in\n    \
         /// lower case (`unknown` for `PROTOCOL_UNSPECIFIED`).\n    \
         pub const fn name(self) -> &'static str {{\n        \
         match self as i32 {{\n{arms}            _ => \"unknown\",\n        }}\n    }}\n}}\n"
    );
    let out = std::env::var("OUT_DIR")?;
    std::fs::write(Path::new(&out).join("protocol_names.rs"), code)?;
    Ok(())
}
