//! For tests on a testkit node: a `tap-hub` inside the node, the API read from
//! inside it, Python HTTP servers in pods.

use super::{Peer, certs, sibling};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;
use testkit::{Node, Pod, Process};

/// GET `path` from 127.0.0.1:`port` inside `node`'s namespace; the body.
pub fn get(node: &Node, port: u16, path: &str) -> Vec<u8> {
    request(node, port, "GET", path, "")
}

/// `method path` with a JSON `body` to 127.0.0.1:`port` inside `node`'s
/// namespace; the answer's body (the status is asserted to be 200).
pub fn request(node: &Node, port: u16, method: &str, path: &str, body: &str) -> Vec<u8> {
    let (method, path, body) = (method.to_string(), path.to_string(), body.to_string());
    let reply = node
        .in_netns(move || {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let body = (!body.is_empty()).then_some(("application/json", body.as_bytes()));
            testkit::http::request(addr, &method, &path, body)
        })
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.raw
}

/// The hub's JSON answer to `path`.
pub fn api(node: &Node, port: u16, path: &str) -> serde_json::Value {
    serde_json::from_slice(&get(node, port, path)).unwrap()
}

/// A `tap-hub` inside `node` (gRPC on `grpc`, API on `http`), once it listens.
pub fn hub(node: &Node, grpc: u16, http: u16, extra: &[&str]) -> Peer {
    hub_with_env(node, grpc, http, extra, &[])
}

/// [`hub`], with more environment variables (`KUBECONFIG`, say).
pub fn hub_with_env(
    node: &Node,
    grpc: u16,
    http: u16,
    extra: &[&str],
    env: &[(&str, &std::path::Path)],
) -> Peer {
    let mut command = node.command(sibling("tap-hub").to_str().unwrap());
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let mut hub = Peer::start(
        testkit::http::with_token(&mut command)
            .args(["--grpc", &format!("127.0.0.1:{grpc}")])
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .arg("--certs")
            .arg(certs())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let mut lines = BufReader::new(hub.child().stderr.take().unwrap()).lines();
    let mut said = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("workers connect") {
            super::echo_rest("tap-hub", lines);
            return hub;
        }
        said.push_str(&line);
        said.push('\n');
    }
    panic!("tap-hub ended before it listened:\n{said}")
}

/// `python3 -m http.server PORT` in each pod, on its address, once they answer.
pub fn http_servers(node: &Node, pods: &[&Pod], port: u16) -> Vec<Process> {
    let servers = pods
        .iter()
        .map(|p| {
            p.spawn(
                p.command("python3")
                    .args(["-m", "http.server", &port.to_string()])
                    .args(["--bind", &p.ip.to_string()])
                    .current_dir(std::env::temp_dir())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .unwrap()
        })
        .collect();
    for p in pods {
        node.wait_for_tcp(p.addr(port), Duration::from_secs(10))
            .unwrap();
    }
    servers
}

/// A `tap-worker` inside `node` shipping to the hub's gRPC port as node
/// `name` with `args`, once it has logged a line containing `ready`.
pub fn worker(node: &Node, grpc: u16, name: &str, args: &[&str], ready: &str) -> Peer {
    let mut worker = Peer::start(
        node.command(sibling("tap-worker").to_str().unwrap())
            .args(["--hub", &format!("https://127.0.0.1:{grpc}")])
            .arg("--certs")
            .arg(certs())
            .args(["--node", name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let mut lines = BufReader::new(worker.child().stderr.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains(ready)),
        "the worker never logged {ready:?}"
    );
    super::echo_rest("tap-worker", lines);
    worker
}

/// `peers/https_server.py` in `pod` on its address's port 8443 with `cert`
/// and `key`, once it listens.
pub fn https_server(
    node: &Node,
    pod: &Pod,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Process {
    let server = pod
        .spawn(
            pod.command("python3")
                .args([super::HTTPS_SERVER, &pod.ip.to_string(), "8443"])
                .arg(cert)
                .arg(key)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
    node.wait_for_tcp(pod.addr(8443), Duration::from_secs(20))
        .unwrap();
    server
}
