//! `kubetap check`: one pass/fail line per thing kubetap needs from a
//! cluster, before install (the API server, each right, the nodes' kernels)
//! and after (the hub ready, a worker on every node, and each worker's
//! capture and TLS status as the hub reports it). Exit status 1 when one
//! fails.

use super::cluster::Cluster;
use super::resources::KINDS;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, PostParams};

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    pub pass: bool,
    pub what: String,
    /// What was found, or what to do.
    pub detail: String,
}

impl Check {
    fn pass(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            pass: true,
            what: what.into(),
            detail: detail.into(),
        }
    }

    fn fail(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            pass: false,
            what: what.into(),
            detail: detail.into(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "[{}] {}: {}",
            if self.pass { "pass" } else { "FAIL" },
            self.what,
            self.detail
        )
    }
}

/// A right kubetap needs: verb on resource (group, subresource) in a
/// namespace or cluster-wide, and what for.
struct Right {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
    namespaced: bool,
    why: &'static str,
}

/// The rights install, tap, view, logs and clean use.
fn rights() -> Vec<Right> {
    let mut out = Vec::new();
    for kind in KINDS {
        for verb in ["get", "patch", "delete"] {
            out.push(Right {
                verb,
                group: kind.group,
                resource: kind.plural,
                subresource: "",
                namespaced: kind.namespaced,
                why: "install and clean",
            });
        }
    }
    for verb in ["list", "watch"] {
        out.push(Right {
            verb,
            group: "",
            resource: "pods",
            subresource: "",
            namespaced: false,
            why: "the hub's role grants it, so installing needs it too",
        });
    }
    out.push(Right {
        verb: "create",
        group: "",
        resource: "pods",
        subresource: "portforward",
        namespaced: true,
        why: "view and tap reach the hub through a port-forward",
    });
    out.push(Right {
        verb: "get",
        group: "",
        resource: "pods",
        subresource: "log",
        namespaced: true,
        why: "logs",
    });
    out
}

/// Every check, in order; the caller prints them.
pub async fn run(cluster: &Cluster) -> Vec<Check> {
    let mut checks = Vec::new();
    match cluster.client.apiserver_version().await {
        Ok(v) => checks.push(Check::pass(
            "API server",
            format!(
                "{} answers, Kubernetes {}.{} ({})",
                cluster.server, v.major, v.minor, v.git_version
            ),
        )),
        Err(e) => {
            checks.push(Check::fail(
                "API server",
                super::cluster::describe(&e, &cluster.server),
            ));
            return checks;
        }
    }
    checks.extend(check_rights(cluster).await);
    checks.push(check_nodes(cluster).await);
    checks.extend(check_install(cluster).await);
    checks
}

async fn check_rights(cluster: &Cluster) -> Vec<Check> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    let mut denied = Vec::new();
    let mut asked = 0;
    for right in rights() {
        asked += 1;
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(right.verb.into()),
                    group: Some(right.group.into()),
                    resource: Some(right.resource.into()),
                    subresource: (!right.subresource.is_empty()).then(|| right.subresource.into()),
                    namespace: right.namespaced.then(|| cluster.namespace.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let name = {
            let resource = if right.subresource.is_empty() {
                right.resource.to_string()
            } else {
                format!("{}/{}", right.resource, right.subresource)
            };
            let resource = if right.group.is_empty() {
                resource
            } else {
                format!("{resource}.{}", right.group)
            };
            format!("{} {resource}", right.verb)
        };
        match reviews.create(&PostParams::default(), &review).await {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(r) => {
                let reason = r
                    .status
                    .and_then(|s| s.reason)
                    .filter(|r| !r.is_empty())
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                denied.push(format!("{name} ({}){reason}", right.why));
            }
            Err(e) => {
                return vec![Check::fail(
                    "rights",
                    format!(
                        "cannot ask the API server what this user may do ({})",
                        super::cluster::describe(&e, &cluster.server)
                    ),
                )];
            }
        }
    }
    if denied.is_empty() {
        vec![Check::pass(
            "rights",
            format!(
                "all {asked} rights kubetap needs are granted (namespace {})",
                cluster.namespace
            ),
        )]
    } else {
        denied
            .into_iter()
            .map(|d| {
                Check::fail(
                    "right",
                    format!(
                        "not allowed to {d}; ask the cluster's admin, or use a context that may"
                    ),
                )
            })
            .collect()
    }
}

/// The nodes and their kernels (TLS plaintext needs 5.8: the BPF ring buffer).
async fn check_nodes(cluster: &Cluster) -> Check {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let list = match nodes.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => return Check::fail("nodes", super::cluster::describe(&e, &cluster.server)),
    };
    if list.items.is_empty() {
        return Check::fail(
            "nodes",
            "the cluster has no nodes: workers have nowhere to run",
        );
    }
    let mut kernels = Vec::new();
    let mut old = Vec::new();
    for node in &list.items {
        let name = node.metadata.name.clone().unwrap_or_default();
        let kernel = node
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.kernel_version.clone())
            .unwrap_or_default();
        if !kernel_at_least(&kernel, 5, 8) {
            old.push(name.clone());
        }
        kernels.push(format!("{name} {kernel}"));
    }
    let mut detail = format!("{} ({})", list.items.len(), kernels.join(", "));
    if !old.is_empty() {
        detail.push_str(&format!(
            "; TLS plaintext (--tls) needs Linux 5.8 or later, not on {}",
            old.join(", ")
        ));
    }
    Check::pass("nodes", detail)
}

fn kernel_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let a = parts.next().and_then(|p| p.parse::<u32>().ok());
    let b = parts.next().and_then(|p| p.parse::<u32>().ok());
    matches!((a, b), (Some(a), Some(b)) if (a, b) >= (major, minor))
}

/// After an install: the hub ready and a worker ready on every node. Not
/// installed: one line saying so, which is not a failure.
async fn check_install(cluster: &Cluster) -> Vec<Check> {
    let daemonsets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let ds = match daemonsets.get_opt("kubetap-worker").await {
        Ok(Some(ds)) => ds,
        Ok(None) => {
            return vec![Check::pass(
                "install",
                format!(
                    "kubetap is not installed in namespace {} (yet)",
                    cluster.namespace
                ),
            )];
        }
        Err(e) => {
            return vec![Check::fail(
                "install",
                super::cluster::describe(&e, &cluster.server),
            )];
        }
    };
    let mut checks = Vec::new();
    let hub = super::view::hub_pod(cluster).await;
    checks.push(match &hub {
        Ok(pod) => Check::pass("hub", format!("pod {}/{pod} ready", cluster.namespace)),
        Err(e) => Check::fail("hub", format!("{e:#}")),
    });
    let status = ds.status.unwrap_or_default();
    let (want, ready) = (status.desired_number_scheduled, status.number_ready);
    checks.push(if want > 0 && ready == want {
        Check::pass("workers", format!("{ready} of {want} nodes have a ready worker"))
    } else {
        Check::fail(
            "workers",
            format!(
                "{ready} of {want} nodes have a ready worker; see `kubectl -n {} describe daemonset kubetap-worker`",
                cluster.namespace
            ),
        )
    });
    if let Ok(pod) = hub {
        checks.extend(check_workers_at_hub(cluster, &pod).await);
    }
    checks
}

/// Each worker as the hub sees it: connected, what it captures, TLS.
async fn check_workers_at_hub(cluster: &Cluster, pod: &str) -> Vec<Check> {
    let answer = match super::view::token(cluster).await {
        Ok(token) => super::view::hub_get(cluster, pod, &token, "/api/workers").await,
        Err(e) => Err(e),
    };
    let workers = match answer {
        Ok(v) => v["workers"].as_array().cloned().unwrap_or_default(),
        Err(e) => return vec![Check::fail("hub's API", format!("{e:#}"))],
    };
    if workers.is_empty() {
        return vec![Check::fail(
            "workers at the hub",
            "no worker has connected to the hub; see `kubetap logs`",
        )];
    }
    workers
        .iter()
        .map(|w| {
            let node = w["node"].as_str().unwrap_or("?");
            let connected = w["state"] == "connected";
            let tls = match w["tls"]["state"].as_str() {
                Some(state) => format!(
                    ", TLS {state}{}",
                    w["tls"]["reason"]
                        .as_str()
                        .filter(|r| !r.is_empty())
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
                None => String::new(),
            };
            let detail = format!(
                "{}{}, version {}{tls}",
                w["state"].as_str().unwrap_or("unknown"),
                w["last_error"]
                    .as_str()
                    .filter(|e| !e.is_empty())
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default(),
                w["version"].as_str().unwrap_or("?"),
            );
            if connected {
                Check::pass(format!("worker on {node}"), detail)
            } else {
                Check::fail(format!("worker on {node}"), detail)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_versions_compare_by_major_and_minor() {
        assert!(super::kernel_at_least("6.18.0-1-amd64", 5, 8));
        assert!(super::kernel_at_least("5.8.0", 5, 8));
        assert!(!super::kernel_at_least("5.4.0-1103-aws", 5, 8));
        assert!(!super::kernel_at_least("", 5, 8));
    }
}
