//! Detaching a library's probes (its last user gone) returns the attached
//! probes to their baseline, counted as the kernel's BPF links this process
//! holds. A test binary of its own: the count is per process, and other
//! tests' probes would move it. Needs root (eBPF) and python3 (a process
//! mapping libssl).

use std::process::{Command, Stdio};
use std::time::Duration;
use tap_worker::tls::{TlsProbes, libraries_of};
use testkit::{Process, require_tools};

/// The BPF links this process holds open: one per attached probe (and per
/// syscall tracepoint).
fn bpf_links() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy() == "anon_inode:bpf_link")
        .count()
}

#[test]
fn detaching_a_library_returns_the_probe_count_to_its_baseline() {
    if !require_tools("eBPF TLS test", true, &["python3"]) {
        return;
    }
    // A process that maps libssl, to find it.
    let holder = Process::spawn(
        Command::new("python3")
            .args([
                "-c",
                "import ssl, time; print('up', flush=True); time.sleep(60)",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let libs = testkit::eventually(Duration::from_secs(20), "python3 maps libssl", || {
        Some(libraries_of(holder.id())).filter(|l| !l.is_empty())
    });
    let lib = &libs[0];
    let mut probes = TlsProbes::load().unwrap();
    let baseline = bpf_links();
    let hooked = probes.attach(lib).unwrap();
    assert_eq!(
        bpf_links(),
        baseline + 2 * hooked,
        "an entry and a return probe each"
    );
    assert!(probes.detach(lib));
    assert_eq!(bpf_links(), baseline);
    assert_eq!(probes.attached().count(), 0);
    assert!(!probes.detach(lib), "detached twice");
    assert_eq!(probes.attach(lib).unwrap(), hooked);
    assert_eq!(bpf_links(), baseline + 2 * hooked);
    drop(probes);
    assert_eq!(bpf_links(), 0, "dropping the probes removes every link");
}
