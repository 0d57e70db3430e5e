//! `tap-hub --watch-pods`: the cluster's pods, followed with one watch
//! (kube-rs's watcher: a list, then a watch from its resourceVersion,
//! relisting after a 410 and backing off after errors), so that the workers
//! need no Kubernetes API access of their own. Every change of a pod's
//! node, phase or addresses sets the workers' configuration's `pods`; the
//! session of each worker sends it only its own node's ([`for_node`]), and
//! a worker started with `--hub-pods` captures those its target selector
//! takes.
//!
//! Pods that share the node's network (`hostNetwork`) have no veth of their
//! own and are left out; so are pods without an address yet (pending) and
//! finished ones.

use crate::Hub;
use futures_util::TryStreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use proto::v1::{ClusterPod, WorkerConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The pod as a worker needs it, or `None` when it has nothing to capture.
pub fn cluster_pod(pod: &Pod) -> Option<ClusterPod> {
    let spec = pod.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let mut ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if ips.is_empty()
        && let Some(ip) = status.pod_ip.as_ref().filter(|ip| !ip.is_empty())
    {
        ips.push(ip.clone());
    }
    if ips.is_empty() {
        return None;
    }
    Some(ClusterPod {
        name: pod.metadata.name.clone()?,
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        ips,
        node: spec.node_name.clone().unwrap_or_default(),
    })
}

/// The configuration as the worker on `node` is sent it: only that node's
/// pods.
pub fn for_node(config: &WorkerConfig, node: &str) -> WorkerConfig {
    if config.pods.iter().all(|p| p.node == node) {
        return config.clone();
    }
    WorkerConfig {
        pods: config
            .pods
            .iter()
            .filter(|p| p.node == node)
            .cloned()
            .collect(),
        ..config.clone()
    }
}

/// How long to wait before trying again to reach the Kubernetes API.
const RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// Makes a client (in a pod: its service account; elsewhere $KUBECONFIG or
/// ~/.kube/config) and follows every pod. Without a Kubernetes API it says
/// why and tries again every 30 s: the hub keeps serving what it has (a hub
/// that stops at start when a dependency is missing only crash-loops).
pub async fn connect_and_follow(hub: Arc<Hub>) {
    loop {
        match kube::Client::try_default().await {
            Ok(client) => return follow(hub, client).await,
            Err(e) => {
                hub.counters
                    .pod_watch_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = %e,
                    "--watch-pods: no Kubernetes API to follow pods with (in a pod: its service account; elsewhere: $KUBECONFIG or ~/.kube/config); trying again in 30 s, and workers with --hub-pods capture no pod meanwhile"
                );
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Follows every pod until the hub stops; errors are logged and retried
/// with the watcher's backoff, never fatal (a hub without pods still serves
/// what its workers already capture).
pub async fn follow(hub: Arc<Hub>, client: kube::Client) {
    let api: kube::Api<Pod> = kube::Api::all(client);
    let mut known: BTreeMap<(String, String), ClusterPod> = BTreeMap::new();
    // The list being (re)built after an Init: swapped in whole at InitDone,
    // so a relist never sends the workers a half list.
    let mut relist: Option<BTreeMap<(String, String), ClusterPod>> = None;
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures_util::pin_mut!(stream);
    loop {
        let event = match stream.try_next().await {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => {
                hub.counters
                    .pod_watch_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "following the cluster's pods (retrying)");
                continue;
            }
        };
        let key = |p: &Pod| {
            (
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
            )
        };
        let changed = match event {
            Event::Init => {
                relist = Some(BTreeMap::new());
                false
            }
            Event::InitApply(pod) => {
                if let (Some(list), Some(p)) = (relist.as_mut(), cluster_pod(&pod)) {
                    list.insert(key(&pod), p);
                }
                false
            }
            Event::InitDone => {
                let list = relist.take().unwrap_or_default();
                let changed = list != known;
                known = list;
                changed
            }
            Event::Apply(pod) => match cluster_pod(&pod) {
                Some(p) => known.insert(key(&pod), p.clone()).as_ref() != Some(&p),
                None => known.remove(&key(&pod)).is_some(),
            },
            Event::Delete(pod) => known.remove(&key(&pod)).is_some(),
        };
        if changed {
            hub.counters
                .pods_followed
                .store(known.len() as u64, Ordering::Relaxed);
            let pods: Vec<ClusterPod> = known.values().cloned().collect();
            hub.update_worker_config(|config| {
                config.pods = pods;
                config.pods_followed = true;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_pod_with_its_own_address_is_kept_host_network_and_pending_ones_are_not() {
        let running = pod(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"nodeName": "node-a", "containers": []},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]},
        }));
        assert_eq!(
            cluster_pod(&running),
            Some(ClusterPod {
                name: "web".into(),
                namespace: "shop".into(),
                ips: vec!["10.0.0.5".into(), "fd00::5".into()],
                node: "node-a".into(),
            })
        );
        let host = pod(serde_json::json!({
            "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
            "spec": {"nodeName": "node-a", "hostNetwork": true, "containers": []},
            "status": {"phase": "Running", "podIP": "192.168.1.2"},
        }));
        assert_eq!(cluster_pod(&host), None);
        let pending = pod(serde_json::json!({
            "metadata": {"name": "new", "namespace": "shop"},
            "spec": {"containers": []},
            "status": {"phase": "Pending"},
        }));
        assert_eq!(cluster_pod(&pending), None);
    }

    #[test]
    fn each_worker_is_sent_its_own_nodes_pods() {
        let p = |name: &str, node: &str| ClusterPod {
            name: name.into(),
            namespace: "shop".into(),
            ips: vec!["10.0.0.1".into()],
            node: node.into(),
        };
        let config = WorkerConfig {
            pods: vec![p("a", "node-a"), p("b", "node-b"), p("c", "node-a")],
            pods_followed: true,
            ..Default::default()
        };
        let a = for_node(&config, "node-a");
        assert_eq!(a.pods, vec![p("a", "node-a"), p("c", "node-a")]);
        assert!(a.pods_followed);
        assert!(for_node(&config, "node-z").pods.is_empty());
    }
}
