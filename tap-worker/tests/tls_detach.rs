//! Detaching a library's probes (its last user gone) returns the attached
//! probes to their baseline, counted as the kernel's BPF links this process
//! holds; and discovery does it by itself: a process started after the
//! probes is found and its library hooked, and when it exits the library
//! is unhooked. A test binary of its own (its tests one at a time): the
//! count is per process, and other tests' probes would move it. Needs root
//! (eBPF), python3 (a process mapping libssl), go and openssl (a Go HTTPS
//! server).

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tap_worker::tls::discovery::Discovery;
use tap_worker::tls::{TlsProbes, go, libraries_of};
use testkit::go::{HTTPS_SERVER, Link, build};
use testkit::{Process, TempDir, require_tools};

/// The tests count this process's links: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

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
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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
    // An entry and a return probe each, and one on SSL_set_fd.
    let links = 2 * hooked + usize::from(probes.functions_of(lib).contains(&"SSL_set_fd"));
    assert_eq!(bpf_links(), baseline + links);
    assert!(probes.detach(lib));
    assert_eq!(bpf_links(), baseline);
    assert_eq!(probes.attached().count(), 0);
    assert!(!probes.detach(lib), "detached twice");
    assert_eq!(probes.attach(lib).unwrap(), hooked);
    assert_eq!(bpf_links(), baseline + links);
    drop(probes);
    assert_eq!(bpf_links(), 0, "dropping the probes removes every link");
}

/// Discovery follows processes: a Python started after the probes, with a
/// libssl of its own (a copy, so no other process on the machine shares
/// the file), is found through its exec and hooked; its exit unhooks the
/// file and the link count is back where it was.
#[test]
fn a_process_started_later_is_hooked_and_unhooked_when_it_exits() {
    if !require_tools("eBPF TLS test", true, &["python3"]) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Where this machine's libssl is, from a short-lived Python.
    let finder = Process::spawn(
        Command::new("python3")
            .args(["-c", "import ssl, time; time.sleep(30)"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let system = testkit::eventually(Duration::from_secs(20), "python3 maps libssl", || {
        libraries_of(finder.id()).into_iter().next()
    });
    drop(finder);
    let dir = TempDir::new("tls-discovery");
    std::fs::copy(
        &system,
        dir.path(system.file_name().unwrap().to_str().unwrap()),
    )
    .unwrap();

    let mut probes = TlsProbes::load().unwrap();
    let mut discovery = Discovery::new();
    discovery.scan(&mut probes);
    let baseline = bpf_links();
    let step = |probes: &mut TlsProbes, discovery: &mut Discovery| {
        let mut events = Vec::new();
        probes.poll(Duration::from_millis(50), |_| {}, |e| events.push(e));
        for e in events {
            discovery.event(e);
        }
        discovery.tick(probes);
    };
    let python = Process::spawn(
        Command::new("python3")
            .args([
                "-c",
                "import ssl, time; print('up', flush=True); time.sleep(60)",
            ])
            .env("LD_LIBRARY_PATH", dir.root())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let ours = |d: &Discovery| {
        d.libraries()
            .into_iter()
            .find(|l| l.path.starts_with(dir.root().to_str().unwrap()))
    };
    let started = Instant::now();
    while ours(&discovery).is_none() && started.elapsed() < Duration::from_secs(20) {
        step(&mut probes, &mut discovery);
    }
    let lib = ours(&discovery).expect("the later process's libssl is hooked");
    assert!(lib.hooked, "{lib:?}");
    assert_eq!(lib.processes.len(), 1, "{lib:?}");
    assert_eq!(lib.processes[0].pid, python.id());
    assert_eq!(lib.processes[0].command, "python3");
    assert!(bpf_links() > baseline);

    drop(python);
    let started = Instant::now();
    while ours(&discovery).is_some() && started.elapsed() < Duration::from_secs(20) {
        step(&mut probes, &mut discovery);
    }
    assert!(
        ours(&discovery).is_none(),
        "unhooked when its process exits"
    );
    assert_eq!(
        bpf_links(),
        baseline,
        "the link count is back at its baseline"
    );
}

/// The same for a Go binary with crypto/tls (built by the test, so no
/// other process runs it): discovery finds it when it starts, hooks its
/// two functions (an entry probe each and one per `ret`) and unhooks it
/// when it exits, the link count back at its baseline. A Go binary
/// without crypto/tls beside it is not listed at all.
#[test]
fn a_go_binary_is_hooked_while_it_runs_and_unhooked_when_it_exits() {
    if !require_tools("eBPF TLS test", true, &["go", "openssl"]) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("tls-go-detach");
    let server = build(dir.root(), "server", HTTPS_SERVER, Link::Full);
    let hello = build(
        dir.root(),
        "hello",
        "package main\n\nimport \"time\"\n\nfunc main() { time.Sleep(time.Minute) }\n",
        Link::Full,
    );
    let (cert, key) = testkit::self_signed(&dir, "localhost");
    let binary = go::inspect(&server).unwrap().unwrap();
    let rets: usize = binary.functions.iter().map(|f| f.rets.len()).sum();

    let mut probes = TlsProbes::load().unwrap();
    let mut discovery = Discovery::new();
    discovery.scan(&mut probes);
    let baseline = bpf_links();
    let step = |probes: &mut TlsProbes, discovery: &mut Discovery| {
        let mut events = Vec::new();
        probes.poll(Duration::from_millis(50), |_| {}, |e| events.push(e));
        for e in events {
            discovery.event(e);
        }
        discovery.tick(probes);
    };
    let _hello = Process::spawn(&mut Command::new(&hello)).unwrap();
    let running = Process::spawn(
        Command::new(&server)
            .arg(format!("127.0.0.1:{}", testkit::free_port()))
            .arg(&cert)
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let ours = |d: &Discovery| {
        d.libraries()
            .into_iter()
            .find(|l| l.path.starts_with(dir.root().to_str().unwrap()))
    };
    let started = Instant::now();
    while ours(&discovery).is_none() && started.elapsed() < Duration::from_secs(20) {
        step(&mut probes, &mut discovery);
    }
    let lib = ours(&discovery).expect("the Go server is found");
    assert_eq!(
        lib.path,
        server.to_str().unwrap(),
        "only the server: {lib:?}"
    );
    assert_eq!((lib.kind.as_str(), lib.hooked), ("go", true), "{lib:?}");
    assert_eq!(lib.processes.len(), 1, "{lib:?}");
    assert_eq!(lib.processes[0].pid, running.id());
    assert_eq!(bpf_links(), baseline + 2 + rets);
    // The hello binary was looked at by then (started first) and is not
    // listed.
    step(&mut probes, &mut discovery);
    assert_eq!(
        discovery
            .libraries()
            .iter()
            .filter(|l| l.path.starts_with(dir.root().to_str().unwrap()))
            .count(),
        1
    );

    drop(running);
    let started = Instant::now();
    while ours(&discovery).is_some() && started.elapsed() < Duration::from_secs(20) {
        step(&mut probes, &mut discovery);
    }
    assert!(ours(&discovery).is_none(), "unhooked when it exits");
    assert_eq!(
        bpf_links(),
        baseline,
        "the link count is back at its baseline"
    );
}
