//! The tap-worker binary (one per node). Live capture and streaming to the hub
//! arrive in steps 3 and 4; until then it says so instead of pretending.

fn main() {
    eprintln!(
        "tap-worker {}: live capture is not built yet (step 4). Use `kubetap read FILE` to dissect a capture file.",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
