//! The pod harness against the real kernel: pods on a node's bridge reach
//! each other and nothing else, the node sees their veths, and every
//! namespace and process goes away with the node — also after a panic.
//! Needs root; skips with a printed reason otherwise.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use testkit::{Node, Pod, PodError, Process, netns, require};

const WAIT: Duration = Duration::from_secs(20);

fn stdout(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The root namespace's interfaces, addresses and routes (all tables).
fn host_network() -> String {
    let mut all = String::new();
    for args in [
        &["-o", "link", "show"][..],
        &["-o", "addr", "show"],
        &["route", "show", "table", "all"],
        &["-6", "route", "show", "table", "all"],
    ] {
        all.push_str(&stdout(Command::new("ip").args(args)));
    }
    all
}

fn http_server(pod: &Pod, port: u16) -> Process {
    pod.spawn(
        pod.command("python3")
            .args(["-m", "http.server", "--bind", "0.0.0.0", &port.to_string()])
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap()
}

/// curl from `client` to `url`: the HTTP status, or curl's exit code when it
/// got none (7: could not connect, 28: timed out).
fn curl_status(client: &Pod, url: &str) -> Result<u16, i32> {
    let out = client
        .command("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg(url)
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout).parse().unwrap()),
        code => Err(code.unwrap_or(-1)),
    }
}

/// The child's exit status once it ends; kills it (and returns None) if it
/// is still running after `WAIT`, so a failing test leaves nothing behind.
fn wait_exit(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn pods_on_a_node_reach_each_other_through_the_bridge_and_nothing_leaves() {
    if !require(&["python3", "curl"]) {
        return;
    }
    let host_before = host_network();
    let node = Node::new("talk").unwrap();
    let a = node.pod("server").unwrap();
    let b = node.pod("client").unwrap();

    let (net, len) = node.subnet();
    assert_eq!(len, 24);
    assert_eq!(node.gateway(), {
        let [x, y, z, _] = net.octets();
        Ipv4Addr::new(x, y, z, 1)
    });
    for pod in [&a, &b] {
        assert!(node.contains(pod.ip), "{} not in {net}/24", pod.ip);
        assert_ne!(pod.ip, node.gateway());
        assert!(pod.host_veth.len() <= 15, "{}", pod.host_veth);
        let eth0 = stdout(Command::new("ip").args(["-n", &pod.netns, "-o", "addr", "show"]));
        assert!(
            eth0.lines()
                .any(|l| l.contains(" eth0 ") && l.contains(&format!("inet {}/24", pod.ip))),
            "{eth0}"
        );
        assert!(!eth0.contains("inet6"), "IPv6 should be off: {eth0}");
        let route = stdout(Command::new("ip").args(["-n", &pod.netns, "route", "show", "default"]));
        assert!(
            route.contains(&format!("default via {} dev eth0", node.gateway())),
            "{route}"
        );
    }
    assert_ne!(a.ip, b.ip);

    // The node sees each pod's host veth as a port of its bridge, with the
    // index the Pod reports.
    let ports = stdout(Command::new("ip").args([
        "-n",
        node.netns(),
        "-o",
        "link",
        "show",
        "master",
        "cbr0",
    ]));
    for pod in [&a, &b] {
        assert!(
            ports.contains(&format!("{}: {}@", pod.host_ifindex, pod.host_veth)),
            "{} (index {}) not on cbr0: {ports}",
            pod.host_veth,
            pod.host_ifindex
        );
    }
    assert_eq!(ports.lines().count(), 2, "{ports}");

    let _server = http_server(&a, 8080);
    node.wait_for_tcp(a.addr(8080), WAIT).unwrap();
    assert_eq!(curl_status(&b, &format!("http://{}:8080/", a.ip)), Ok(200));
    // The client found the server on the bridge itself, not via the gateway.
    assert!(
        stdout(b.command("ip").args(["neigh", "show", "dev", "eth0"])).contains(&a.ip.to_string()),
        "client never resolved the server's MAC on the bridge"
    );

    // A server started outside the pod would listen in the host namespace.
    let stray = a.spawn(&mut Command::new("sleep"));
    assert!(matches!(stray, Err(PodError::NotInPod { .. })), "{stray:?}");

    assert_eq!(
        host_network(),
        host_before,
        "the host's namespace changed while pods ran"
    );
    drop(node);
    assert_eq!(host_network(), host_before);
}

#[test]
fn removing_a_pod_removes_its_veth_from_the_node_at_once() {
    if !require(&[]) {
        return;
    }
    let node = Node::new("remove").unwrap();
    let gone = node.pod("gone").unwrap();
    let stays = node.pod("stays").unwrap();
    let (gone_ns, gone_veth, gone_index) = (
        gone.netns.clone(),
        gone.host_veth.clone(),
        gone.host_ifindex,
    );
    // A socket inside the pod keeps its namespace alive after the name is
    // gone, as a slow process would; the veth must vanish anyway.
    let pinned = gone
        .in_netns(|| TcpListener::bind((gone.ip, 0)).unwrap())
        .unwrap();

    node.remove_pod(gone).unwrap();

    let show = Command::new("ip")
        .args(["-n", node.netns(), "link", "show", "dev", &gone_veth])
        .output()
        .unwrap();
    assert!(!show.status.success(), "{gone_veth} is still on the node");
    let links = stdout(Command::new("ip").args(["-n", node.netns(), "-o", "link", "show"]));
    assert!(
        !links
            .lines()
            .any(|l| l.starts_with(&format!("{gone_index}:"))),
        "index {gone_index} still on the node: {links}"
    );
    assert!(links.contains(&stays.host_veth), "{links}");
    assert!(!netns::list().contains(&gone_ns));
    drop(pinned);

    // The name is free again, and the new pod gets a fresh address.
    let again = node.pod("gone").unwrap();
    assert!(node.contains(again.ip));
    assert_ne!(again.ip, stays.ip);

    let other = Node::new("remove").unwrap();
    let foreign = other.pod("x").unwrap();
    assert!(matches!(
        node.remove_pod(foreign),
        Err(PodError::ForeignPod { .. })
    ));
}

#[test]
fn dropping_the_node_deletes_every_namespace_and_kills_what_ran_there() {
    if !require(&["python3"]) {
        return;
    }
    let node = Node::new("drop").unwrap();
    let a = node.pod("a").unwrap();
    let b = node.pod("b").unwrap();
    let names = [node.netns().to_string(), a.netns.clone(), b.netns.clone()];
    let listed = netns::list();
    for name in &names {
        assert!(listed.contains(name), "{name} not in {listed:?}");
    }
    let server = http_server(&a, 8080);
    // A process the test started without Process: the node still ends it.
    let mut stray = b
        .command("sleep")
        .arg("1000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    node.wait_for_tcp(a.addr(8080), WAIT).unwrap();

    drop(node);

    let listed = netns::list();
    for name in &names {
        assert!(!listed.contains(name), "{name} survived the node");
        assert!(!netns::exists(name));
    }
    let status = wait_exit(&mut stray).expect("the node left a process running in its pod");
    assert_eq!(status.signal(), Some(9), "{status}");
    drop(server);
}

#[test]
fn a_panicking_test_still_removes_its_namespaces() {
    if !require(&["python3"]) {
        return;
    }
    let made = Mutex::new(Vec::new());
    let outcome = std::panic::catch_unwind(|| {
        let node = Node::new("panic").unwrap();
        let pod = node.pod("doomed").unwrap();
        made.lock()
            .unwrap()
            .extend([node.netns().to_string(), pod.netns.clone()]);
        let _server = http_server(&pod, 8080);
        node.wait_for_tcp(pod.addr(8080), WAIT).unwrap();
        panic!("deliberate failure inside a pod test");
    });
    let payload = outcome.expect_err("the body should have panicked");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"deliberate failure inside a pod test")
    );
    let made = made.into_inner().unwrap();
    assert_eq!(made.len(), 2);
    let listed = netns::list();
    for name in &made {
        assert!(!listed.contains(name), "{name} survived the panic");
    }
}

#[test]
fn nodes_get_different_subnets_and_cannot_reach_each_other() {
    if !require(&["python3", "curl"]) {
        return;
    }
    let one = Node::new("two").unwrap();
    let two = Node::new("two").unwrap();
    assert_ne!(one.subnet(), two.subnet());
    assert_ne!(one.netns(), two.netns());
    let server = one.pod("server").unwrap();
    let neighbour = one.pod("neighbour").unwrap();
    let outsider = two.pod("outsider").unwrap();
    assert!(one.contains(server.ip) && !two.contains(server.ip));
    assert!(two.contains(outsider.ip) && !one.contains(outsider.ip));

    let _server = http_server(&server, 8080);
    one.wait_for_tcp(server.addr(8080), WAIT).unwrap();
    let url = format!("http://{}:8080/", server.ip);
    assert_eq!(curl_status(&neighbour, &url), Ok(200));
    // The other node has no route to this one: its gateway answers
    // "unreachable" at once, so curl fails to connect rather than time out.
    assert_eq!(curl_status(&outsider, &url), Err(7));
}

#[test]
fn in_netns_runs_inside_the_namespace_and_only_there() {
    if !require(&[]) {
        return;
    }
    let node = Node::new("enter").unwrap();
    let pod = node.pod("inside").unwrap();

    let inside = pod.in_netns(|| TcpListener::bind((pod.ip, 0))).unwrap();
    let listener = inside.expect("binding the pod's address inside the pod");
    let outside = TcpListener::bind((pod.ip, 0));
    assert_eq!(
        outside.map(drop).unwrap_err().kind(),
        std::io::ErrorKind::AddrNotAvailable
    );
    // /proc/thread-self/net answers for the thread's namespace.
    let dev = pod
        .in_netns(|| std::fs::read_to_string("/proc/thread-self/net/dev").unwrap())
        .unwrap();
    assert!(dev.contains("eth0:") && !dev.contains("cbr0:"), "{dev}");
    let dev = node
        .in_netns(|| std::fs::read_to_string("/proc/thread-self/net/dev").unwrap())
        .unwrap();
    assert!(
        dev.contains("cbr0:") && dev.contains(&pod.host_veth),
        "{dev}"
    );

    // The listener stays in the pod's namespace after the thread is gone:
    // the node, which routes to the pod, reaches it.
    let port = listener.local_addr().unwrap().port();
    let accepted = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        conn.write_all(b"hello from the pod").unwrap();
        peer
    });
    let (got, local) = node
        .in_netns(|| {
            let mut conn = TcpStream::connect(pod.addr(port)).unwrap();
            let mut got = String::new();
            conn.read_to_string(&mut got).unwrap();
            (got, conn.local_addr().unwrap())
        })
        .unwrap();
    assert_eq!(got, "hello from the pod");
    assert_eq!(accepted.join().unwrap(), local);
    assert_eq!(local.ip(), node.gateway());

    // A panic inside comes back out on the caller's thread.
    let panic = std::panic::catch_unwind(|| {
        pod.in_netns(|| panic!("inside the namespace")).unwrap();
    })
    .unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"inside the namespace"));

    assert!(testkit::in_netns("kt-no-such-namespace", || ()).is_err());

    // A long-lived thread in the pod: it serves while the test goes on.
    let server = testkit::spawn_in_netns(&pod.netns, {
        let addr = pod.addr(9000);
        move || {
            let listener = TcpListener::bind(addr).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = String::new();
            conn.read_to_string(&mut got).unwrap();
            got
        }
    })
    .unwrap();
    node.wait_for_tcp(pod.addr(9000), WAIT).unwrap();
    // wait_for_tcp's probe was the one connection accepted; it sent nothing.
    assert_eq!(server.join().unwrap(), "");
}

#[test]
fn namespaces_of_dead_runs_are_swept_and_live_ones_kept() {
    if !require(&[]) {
        return;
    }
    let mut exited = Command::new("true").spawn().unwrap();
    exited.wait().unwrap();
    let dead = exited.id();
    let me = std::process::id();
    // A family of names of our own: Node::new sweeps only "kt-…", and another
    // run of this test in parallel sweeps only its own family.
    let prefix = format!("ktstale{me}-");
    let stale = [
        format!("{prefix}pods-{dead}-0"),
        format!("{prefix}pods-{dead}-1-somepod"),
        // Our own pid, but not a node this process made: a reused pid.
        format!("{prefix}pods-{me}-4000000000"),
    ];
    let live = format!("{prefix}pods-1-0"); // pid 1 is always alive
    let unrelated = format!("{prefix}notours");
    let made = HandMade(stale.iter().chain([&live, &unrelated]).cloned().collect());
    for name in &made.0 {
        stdout(Command::new("ip").args(["netns", "add", name]));
    }
    let ours = Node::new("stale").unwrap();

    let mut removed = testkit::cleanup_stale(&prefix);
    removed.sort();
    let mut want = stale.to_vec();
    want.sort();
    assert_eq!(removed, want);
    let listed = netns::list();
    for name in &stale {
        assert!(!listed.contains(name), "{name} was not swept");
    }
    assert!(listed.contains(&live), "a live owner's namespace was swept");
    assert!(listed.contains(&unrelated));
    assert!(listed.contains(&ours.netns().to_string()));
    // Our own live node is never stale, whoever sweeps.
    testkit::cleanup_stale(netns::PREFIX);
    assert!(netns::exists(ours.netns()));
}

/// Namespaces a test made by hand, deleted when it ends.
struct HandMade(Vec<String>);

impl Drop for HandMade {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["netns", "delete", name]).output();
        }
    }
}
