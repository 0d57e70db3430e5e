//! Compiles the protobuf schema with protox (pure Rust), so no `protoc` is
//! needed; tonic generates the worker-hub service from it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/kubetap/v1/entry.proto", "proto/kubetap/v1/hub.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    // Each protocol's request and response boxed: an entry then takes its
    // own protocol's size, not the largest one's (~900 bytes less each in
    // the hub's store).
    tonic_prost_build::configure()
        .boxed(".kubetap.v1.Request.kind")
        .boxed(".kubetap.v1.Response.kind")
        .compile_fds(fds)?;
    Ok(())
}
