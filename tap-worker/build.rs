//! Builds tap-ebpf's kernel programs for `bpfel-unknown-none` into OUT_DIR,
//! where `src/tls.rs` embeds them, as aya's template does (aya-build): with
//! the nightly toolchain's `rust-src` and `bpf-linker`, which `cargo xtask
//! setup` installs.

use std::path::Path;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tap-ebpf");
    println!("cargo:rerun-if-changed=../tap-ebpf-common/src");
    if std::env::var_os("AYA_BUILD_SKIP").is_none() && which("bpf-linker").is_none() {
        anyhow::bail!(
            "bpf-linker is not installed: `cargo xtask setup` builds it (the eBPF programs of tap-ebpf are linked with it)"
        );
    }
    let root = root
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", root.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "tap-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}

/// `program` on the PATH.
fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}
