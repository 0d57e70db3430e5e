//! `kubetap clean`: deletes every object kubetap installed — those with
//! its label in its namespace, its cluster-wide role and binding, and the
//! namespace itself when kubetap made it — and says what it removed.

use super::cluster::{Cluster, is_not_found};
use super::resources::{KINDS, Kind, PART_OF};
use kube::api::{DeleteParams, ListParams};

/// One object removed.
#[derive(Debug, Clone)]
pub struct Removed {
    pub kind: &'static str,
    pub name: String,
}

/// Deletes kubetap's objects, the namespace last; `removed` gets each one
/// as it goes. A namespace without kubetap's label (one the user made) is
/// left, and so are objects without the label.
pub async fn clean(cluster: &Cluster, removed: &mut Vec<Removed>) -> anyhow::Result<()> {
    let params = DeleteParams::background();
    let ns = &cluster.namespace;
    for kind in KINDS.iter().rev() {
        let api = kind.api(&cluster.client, ns);
        let names: Vec<String> = match (kind.kind, kind.namespaced) {
            ("Namespace", _) => {
                let namespace = api
                    .get_opt(ns)
                    .await
                    .map_err(|e| cluster.explain(&e, &format!("reading namespace {ns}")))?;
                namespace
                    .filter(|n| super::resources::is_kubetaps(&n.metadata))
                    .map(|_| vec![ns.clone()])
                    .unwrap_or_default()
            }
            (_, true) => {
                // Nothing to list in a namespace that is not there.
                match api.list(&ListParams::default().labels(PART_OF)).await {
                    Ok(list) => list
                        .items
                        .into_iter()
                        .filter_map(|o| o.metadata.name)
                        .collect(),
                    Err(e) if is_not_found(&e) => Vec::new(),
                    Err(e) => {
                        return Err(cluster
                            .explain(&e, &format!("listing {} in {ns}", kind.resource_name())));
                    }
                }
            }
            (_, false) => {
                // Cluster-wide objects are named for the install's namespace,
                // so another install's are not touched.
                let name = format!("kubetap-hub-{ns}");
                let found = api.get_opt(&name).await.map_err(|e| {
                    cluster.explain(&e, &format!("reading {}/{name}", kind.resource_name()))
                })?;
                found
                    .filter(|o| super::resources::is_kubetaps(&o.metadata))
                    .map(|_| vec![name])
                    .unwrap_or_default()
            }
        };
        for name in names {
            delete(cluster, kind, &name, &params).await?;
            removed.push(Removed {
                kind: kind.kind,
                name,
            });
        }
    }
    Ok(())
}

async fn delete(
    cluster: &Cluster,
    kind: &Kind,
    name: &str,
    params: &DeleteParams,
) -> anyhow::Result<()> {
    let api = kind.api(&cluster.client, &cluster.namespace);
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        // Gone meanwhile (the namespace's deletion took it, say): as wanted.
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(cluster.explain(&e, &format!("deleting {}/{name}", kind.resource_name()))),
    }
}
