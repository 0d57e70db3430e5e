//! `kubetap view` (alias `proxy`): the hub's UI and API on a local port,
//! through the API server's port-forward to the hub's pod (WebSocket,
//! `v4.channel.k8s.io`, as kube-rs speaks it), with the install's token in
//! the address it prints and opens.
//!
//! Each local connection gets its own port-forward stream. The hub's pod is
//! looked up again when a forward fails, so a hub restarted by its
//! Deployment is found again without restarting `view`.

use super::cluster::Cluster;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use std::sync::Arc;
use tokio::sync::Mutex;

/// The hub's HTTP port in its pod (the chart's `--listen`).
pub const HUB_PORT: u16 = 8899;
/// The hub's pods carry these labels (the chart's Deployment).
pub const HUB_SELECTOR: &str = "app.kubernetes.io/part-of=kubetap,app.kubernetes.io/component=hub";

/// A running, ready hub pod's name, or why there is none.
pub async fn hub_pod(cluster: &Cluster) -> anyhow::Result<String> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let list = pods
        .list(&ListParams::default().labels(HUB_SELECTOR))
        .await
        .map_err(|e| {
            cluster.explain(
                &e,
                &format!(
                    "looking for kubetap's hub in namespace {}",
                    cluster.namespace
                ),
            )
        })?;
    if list.items.is_empty() {
        anyhow::bail!(
            "kubetap's hub is not running in namespace {} (install it with `kubetap install`, \
             or name the namespace with --kubetap-namespace)",
            cluster.namespace
        );
    }
    let mut seen = Vec::new();
    for pod in &list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if phase == "Running" && ready && pod.metadata.deletion_timestamp.is_none() {
            return Ok(name);
        }
        seen.push(format!(
            "{name}: {}{}",
            if phase.is_empty() {
                "no phase yet"
            } else {
                &phase
            },
            if ready { "" } else { ", not ready" }
        ));
    }
    anyhow::bail!(
        "kubetap's hub is not ready in namespace {} ({}); see `kubectl -n {} describe pod -l {HUB_SELECTOR}`",
        cluster.namespace,
        seen.join("; "),
        cluster.namespace
    )
}

/// The install's API token (the Secret `kubetap-token`).
pub async fn token(cluster: &Cluster) -> anyhow::Result<String> {
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let secret = secrets.get("kubetap-token").await.map_err(|e| {
        cluster.explain(
            &e,
            &format!(
                "reading the hub's API token (secret {}/kubetap-token)",
                cluster.namespace
            ),
        )
    })?;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the secret {}/kubetap-token holds no token; `kubetap install` makes it again",
                cluster.namespace
            )
        })?;
    Ok(value)
}

/// The local listener for the UI on 127.0.0.1:`port`, and the UI's
/// address with `token`.
pub async fn listen(port: u16, token: &str) -> anyhow::Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on 127.0.0.1:{port} ({e}); another program may use it: --port picks another"
            )
        })?;
    let url = format!(
        "http://127.0.0.1:{}/?token={token}",
        listener.local_addr()?.port()
    );
    Ok((listener, url))
}

/// Forwards every connection to `listener` to the hub's pod until Ctrl-C.
pub async fn forward(
    cluster: Arc<Cluster>,
    listener: tokio::net::TcpListener,
    first_pod: String,
) -> anyhow::Result<()> {
    let pod = Arc::new(Mutex::new(first_pod));
    loop {
        let (mut local, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let cluster = cluster.clone();
        let pod = pod.clone();
        tokio::spawn(async move {
            if let Err(e) = forward_one(&cluster, &pod, &mut local).await {
                eprintln!("kubetap: a connection from {peer} to the hub was not forwarded: {e:#}");
            }
        });
    }
}

async fn forward_one(
    cluster: &Cluster,
    pod: &Mutex<String>,
    local: &mut tokio::net::TcpStream,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let name = pod.lock().await.clone();
    let mut forwarder = match pods.portforward(&name, &[HUB_PORT]).await {
        Ok(f) => f,
        Err(first) => {
            // The pod may have been replaced: look it up once more.
            let again = hub_pod(cluster).await?;
            if again == name {
                return Err(cluster.explain(&first, &format!("port-forwarding to pod {name}")));
            }
            *pod.lock().await = again.clone();
            pods.portforward(&again, &[HUB_PORT])
                .await
                .map_err(|e| cluster.explain(&e, &format!("port-forwarding to pod {again}")))?
        }
    };
    let mut upstream = forwarder
        .take_stream(HUB_PORT)
        .ok_or_else(|| anyhow::anyhow!("the port-forward gave no stream for port {HUB_PORT}"))?;
    let copied = tokio::io::copy_bidirectional(local, &mut upstream).await;
    drop(upstream);
    forwarder.abort();
    match copied {
        Ok(_) => Ok(()),
        // The browser closing its side early is normal.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens `url` in the desktop's browser; says so when there is none.
pub fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_) => {}
        Err(e) => {
            eprintln!("kubetap: could not open a browser ({opener}: {e}); open the address above")
        }
    }
}

/// `GET path` on the hub's API through a port-forward to `pod`, with the
/// token: its JSON answer (for `check`, `version` and `tap`'s status line).
pub async fn hub_get(
    cluster: &Cluster,
    pod: &str,
    token: &str,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut body = Vec::new();
    hub_fetch(cluster, pod, token, path, &mut body, 16 << 20).await?;
    serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("the hub's answer to GET {path} is not JSON: {e}"))
}

/// `GET path` on the hub's API through a port-forward to `pod`, the body
/// written to `out` (at most `limit` bytes); a status other than 200 is an
/// error quoting the hub's message. Returns the response's headers.
pub async fn hub_fetch(
    cluster: &Cluster,
    pod: &str,
    token: &str,
    path: &str,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    limit: u64,
) -> anyhow::Result<String> {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut forwarder = pods
        .portforward(pod, &[HUB_PORT])
        .await
        .map_err(|e| cluster.explain(&e, &format!("port-forwarding to pod {pod}")))?;
    let mut stream = forwarder
        .take_stream(HUB_PORT)
        .ok_or_else(|| anyhow::anyhow!("the port-forward gave no stream for port {HUB_PORT}"))?;
    // HTTP/1.0: the hub closes the connection after the answer, which is
    // then read to its end (no chunked framing to undo).
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let exchange = async {
        let mut reader = tokio::io::BufReader::new(&mut stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 {
                anyhow::bail!("the hub closed the connection before answering GET {path}");
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push_str(&line);
            if head.len() > 64 << 10 {
                anyhow::bail!("the hub's answer to GET {path} has an endless header");
            }
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        if status != "200" {
            let mut body = Vec::new();
            (&mut reader).take(64 << 10).read_to_end(&mut body).await?;
            anyhow::bail!(
                "the hub answered GET {path} with {status}: {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
        let copied = tokio::io::copy(&mut (&mut reader).take(limit), out).await?;
        if copied == limit {
            anyhow::bail!("the hub's answer to GET {path} is larger than {limit} bytes");
        }
        out.flush().await?;
        Ok(head)
    };
    let result = tokio::time::timeout(std::time::Duration::from_secs(300), exchange).await;
    drop(stream);
    forwarder.abort();
    result
        .map_err(|_| anyhow::anyhow!("the hub did not finish answering GET {path} within 300 s"))?
}
