//! `kubetap tap [POD_REGEX] [-n NS …|-A]` on a cluster: checks the regex
//! and the namespaces before touching anything, installs kubetap if it is
//! not there, waits for the hub, gives it the targets (the hub follows the
//! pods themselves with its own watch, so targets stay current after `tap`
//! ends), forwards the UI to a local port, and prints a one-line status
//! until Ctrl-C. The workers keep running until `kubetap clean`.
//!
//! The status comes from the hub's `/api/workers` over one port-forward
//! kept open (HTTP/1.1 keep-alive, hyper), and the number of targeted pods
//! from one watch on pods: no request to the API server per status line.

use super::cluster::Cluster;
use super::config::Config;
use super::install::ValuesArgs;
use super::view;
use futures_util::TryStreamExt as _;
use http_body_util::BodyExt as _;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::Api;
use kube::runtime::watcher;
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `tap` was asked for.
pub struct Targets {
    pub regex: Option<String>,
    /// Empty: every namespace (`-A`).
    pub namespaces: Vec<String>,
}

/// How long the hub has to become ready after an install.
const HUB_WAIT: Duration = Duration::from_secs(300);

/// Checks `regex` before anything else happens.
pub fn check_regex(regex: Option<&str>) -> anyhow::Result<Option<regex::Regex>> {
    regex
        .map(|r| {
            regex::Regex::new(r)
                .map_err(|e| anyhow::anyhow!("the pod regex {r:?} is not valid: {e}"))
        })
        .transpose()
}

pub async fn run(
    cluster: Cluster,
    config: &Config,
    targets: Targets,
    port: u16,
    open_browser: bool,
    tls: bool,
) -> anyhow::Result<ExitCode> {
    let regex = check_regex(targets.regex.as_deref())?;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    for ns in &targets.namespaces {
        match namespaces.get_opt(ns).await {
            Ok(Some(_)) => {}
            Ok(None) => anyhow::bail!(
                "namespace {ns:?} does not exist in this cluster (`kubectl get namespaces` lists them)"
            ),
            Err(e) => return Err(cluster.explain(&e, &format!("reading namespace {ns}"))),
        }
    }
    let daemonsets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let installed = daemonsets
        .get_opt("kubetap-worker")
        .await
        .map_err(|e| cluster.explain(&e, "looking for kubetap's workers"))?
        .is_some();
    if !installed {
        eprintln!(
            "kubetap: not installed in namespace {}: installing",
            cluster.namespace
        );
        let values = ValuesArgs {
            tls,
            ..Default::default()
        };
        let code = super::install(&cluster, config, &values).await?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    }
    let pod = wait_for_hub(&cluster).await?;
    let token = view::token(&cluster).await?;
    let mut hub = HubConnection::open(&cluster, &pod, &token).await?;
    let mut hub_config = hub.request("GET", "/api/config", None).await?;
    hub_config["target_pods"] = serde_json::json!(targets.regex.iter().collect::<Vec<_>>());
    hub_config["target_namespaces"] = serde_json::json!(targets.namespaces);
    // Read only: the hub numbers its configurations itself.
    if let Some(c) = hub_config.as_object_mut() {
        c.remove("version");
    }
    hub.request("PUT", "/api/config", Some(hub_config)).await?;
    let described = format!(
        "pods {} in {}",
        targets
            .regex
            .as_deref()
            .map(|r| format!("matching {r:?}"))
            .unwrap_or_else(|| "of every name".into()),
        if targets.namespaces.is_empty() {
            "every namespace".to_string()
        } else {
            format!("namespace(s) {}", targets.namespaces.join(", "))
        }
    );
    eprintln!("kubetap: tapping {described}");

    let (listener, url) = view::listen(port, &token).await?;
    eprintln!(
        "kubetap: the UI: {url} (Ctrl-C stops forwarding; the workers keep capturing until `kubetap clean`)"
    );
    if open_browser {
        view::open_browser(&url);
    }
    let targeted = Arc::new(Mutex::new(BTreeSet::new()));
    let cluster = Arc::new(cluster);
    let follow = tokio::spawn(follow_targets(
        cluster.clone(),
        regex,
        targets.namespaces.clone(),
        targeted.clone(),
    ));
    let forward = tokio::spawn(view::forward(cluster.clone(), listener, pod.clone()));
    let status = status_lines(&cluster, &pod, &token, hub, targeted);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        r = forward => { r??; }
        () = status => {}
    }
    follow.abort();
    eprintln!("\nkubetap: stopped forwarding; the workers keep capturing until `kubetap clean`");
    Ok(ExitCode::SUCCESS)
}

/// The hub's pod once it is ready, watching the namespace's hub pods.
async fn wait_for_hub(cluster: &Cluster) -> anyhow::Result<String> {
    if let Ok(pod) = view::hub_pod(cluster).await {
        return Ok(pod);
    }
    eprintln!("kubetap: waiting for the hub to be ready");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let config = watcher::Config::default().labels(view::HUB_SELECTOR);
    let stream = watcher::watcher(pods, config);
    futures_util::pin_mut!(stream);
    let deadline = tokio::time::sleep(HUB_WAIT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                let why = view::hub_pod(cluster).await.err().map(|e| format!("{e:#}")).unwrap_or_default();
                anyhow::bail!("the hub was not ready within {}s: {why}", HUB_WAIT.as_secs());
            }
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted while waiting for the hub"),
            event = stream.try_next() => match event {
                Ok(Some(watcher::Event::Apply(_) | watcher::Event::InitDone)) => {
                    if let Ok(pod) = view::hub_pod(cluster).await {
                        return Ok(pod);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => anyhow::bail!("the watch on the hub's pods ended"),
                Err(e) => anyhow::bail!("watching for the hub: {e}"),
            }
        }
    }
}

/// Keeps `targeted` the set of pods the targets take, from one watch.
async fn follow_targets(
    cluster: Arc<Cluster>,
    regex: Option<regex::Regex>,
    namespaces: Vec<String>,
    targeted: Arc<Mutex<BTreeSet<String>>>,
) {
    let pods: Api<Pod> = match namespaces.as_slice() {
        [one] => Api::namespaced(cluster.client.clone(), one),
        _ => Api::all(cluster.client.clone()),
    };
    let takes = |pod: &Pod| -> Option<String> {
        let name = pod.metadata.name.as_deref()?;
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let in_ns = namespaces.is_empty() || namespaces.iter().any(|n| n == ns);
        let named = regex.as_ref().is_none_or(|r| r.is_match(name));
        (in_ns && named).then(|| format!("{ns}/{name}"))
    };
    let stream = watcher::watcher(pods, watcher::Config::default());
    futures_util::pin_mut!(stream);
    let mut relist: Option<BTreeSet<String>> = None;
    while let Ok(Some(event)) = stream.try_next().await {
        let mut set = targeted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            watcher::Event::Init => relist = Some(BTreeSet::new()),
            watcher::Event::InitApply(p) => {
                if let (Some(list), Some(k)) = (relist.as_mut(), takes(&p)) {
                    list.insert(k);
                }
            }
            watcher::Event::InitDone => *set = relist.take().unwrap_or_default(),
            watcher::Event::Apply(p) => {
                if let Some(k) = takes(&p) {
                    set.insert(k);
                }
            }
            watcher::Event::Delete(p) => {
                if let Some(k) = takes(&p) {
                    set.remove(&k);
                }
            }
        }
    }
}

/// Prints the status whenever it changes (every 2 s at most): pods
/// targeted, workers connected, entries per second, drops.
async fn status_lines(
    cluster: &Cluster,
    pod: &str,
    token: &str,
    mut hub: HubConnection,
    targeted: Arc<Mutex<BTreeSet<String>>>,
) {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last: Option<(u64, Instant)> = None;
    let mut said = String::new();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let workers = match hub.request("GET", "/api/workers", None).await {
            Ok(w) => w,
            Err(_) => match HubConnection::open(cluster, pod, token).await {
                // One new forward when the kept one broke (the hub restarted).
                Ok(again) => {
                    hub = again;
                    continue;
                }
                Err(e) => {
                    eprintln!("\nkubetap: the hub does not answer: {e:#}");
                    continue;
                }
            },
        };
        let list = workers["workers"].as_array().cloned().unwrap_or_default();
        let connected = list.iter().filter(|w| w["state"] == "connected").count();
        let ingested = workers["hub"]["entries_ingested"].as_u64().unwrap_or(0);
        let drops: u64 = list
            .iter()
            .flat_map(|w| w["counters"]["drops_by_cause"].as_object().cloned())
            .flat_map(|m| m.into_values())
            .filter_map(|v| v.as_u64())
            .sum();
        let now = Instant::now();
        let rate = match last {
            Some((before, at)) => {
                (ingested.saturating_sub(before)) as f64 / now.duration_since(at).as_secs_f64()
            }
            None => 0.0,
        };
        last = Some((ingested, now));
        let pods = targeted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        let line = format!(
            "pods targeted {pods} · workers connected {connected}/{} · {rate:.0} entries/s · drops {drops}",
            list.len()
        );
        if terminal {
            eprint!("\r{line}   ");
        } else if line != said {
            eprintln!("kubetap: {line}");
        }
        said = line;
    }
}

/// HTTP/1.1 requests to the hub over one port-forward kept open.
struct HubConnection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    token: String,
    _forwarder: kube::api::Portforwarder,
}

impl HubConnection {
    async fn open(cluster: &Cluster, pod: &str, token: &str) -> anyhow::Result<HubConnection> {
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        let mut forwarder = pods
            .portforward(pod, &[view::HUB_PORT])
            .await
            .map_err(|e| cluster.explain(&e, &format!("port-forwarding to pod {pod}")))?;
        let stream = forwarder
            .take_stream(view::HUB_PORT)
            .ok_or_else(|| anyhow::anyhow!("the port-forward gave no stream"))?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(HubConnection {
            sender,
            token: token.to_string(),
            _forwarder: forwarder,
        })
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        self.sender.ready().await?;
        let response =
            tokio::time::timeout(Duration::from_secs(30), self.sender.send_request(request))
                .await
                .map_err(|_| {
                    anyhow::anyhow!("the hub did not answer {method} {path} within 30 s")
                })??;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            anyhow::bail!(
                "the hub answered {method} {path} with {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            );
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}
