//! `kubetap logs`: a zip with what a bug report needs — the hub's and every
//! worker's logs, their pods described, the events of kubetap's namespace,
//! the effective configuration (secrets left out) and `check`'s output.
//! What cannot be read is written into the zip as the reason, so one refusal
//! does not lose the rest.

use super::cluster::Cluster;
use super::config::Config;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams};
use std::io::Write as _;

/// Lines of each container's log kept (the newest).
const TAIL_LINES: i64 = 10_000;

/// Writes the zip to `out`; returns the names of the files in it.
pub async fn collect(
    cluster: &Cluster,
    config: &Config,
    out: &std::path::Path,
) -> anyhow::Result<Vec<String>> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    files.push((
        "version.txt".into(),
        format!(
            "kubetap {}\nAPI server {}\nnamespace {}\n",
            env!("CARGO_PKG_VERSION"),
            cluster.server,
            cluster.namespace
        )
        .into_bytes(),
    ));
    let checks = super::check::run(cluster).await;
    files.push((
        "check.txt".into(),
        checks
            .iter()
            .map(|c| c.line() + "\n")
            .collect::<String>()
            .into_bytes(),
    ));
    // The configuration file's settings; its values hold no secrets (the
    // token and certificates are made at install and live in Secrets).
    files.push((
        "config.yaml".into(),
        serde_saphyr::to_string(config)
            .unwrap_or_else(|e| format!("# cannot write the configuration: {e}\n"))
            .into_bytes(),
    ));
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    match pods
        .list(&ListParams::default().labels(super::resources::PART_OF))
        .await
    {
        Ok(list) => {
            for pod in &list.items {
                let name = pod.metadata.name.clone().unwrap_or_default();
                files.push((format!("pods/{name}.yaml"), yaml(pod).into_bytes()));
                let containers = pod
                    .spec
                    .as_ref()
                    .map(|s| {
                        s.containers
                            .iter()
                            .map(|c| c.name.clone())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                for container in containers {
                    let params = LogParams {
                        container: Some(container.clone()),
                        tail_lines: Some(TAIL_LINES),
                        timestamps: true,
                        ..Default::default()
                    };
                    let text = match pods.logs(&name, &params).await {
                        Ok(t) => t,
                        Err(e) => format!(
                            "# cannot read this log: {}\n",
                            super::cluster::describe(&e, &cluster.server)
                        ),
                    };
                    files.push((format!("logs/{name}/{container}.log"), text.into_bytes()));
                }
            }
        }
        Err(e) => files.push((
            "pods.error.txt".into(),
            super::cluster::describe(&e, &cluster.server).into_bytes(),
        )),
    }
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    files.push((
        "events.yaml".into(),
        match events.list(&ListParams::default()).await {
            Ok(list) => yaml(&list.items),
            Err(e) => format!(
                "# cannot list events: {}\n",
                super::cluster::describe(&e, &cluster.server)
            ),
        }
        .into_bytes(),
    ));
    write_zip(out, &files)?;
    Ok(files.into_iter().map(|(name, _)| name).collect())
}

fn yaml(value: &impl serde::Serialize) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# cannot write as YAML: {e}\n"))
}

/// The zip, through a temporary file renamed into place: whole or absent.
fn write_zip(out: &std::path::Path, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    let partial = out.with_extension("partial");
    let write = || -> anyhow::Result<()> {
        let file = std::fs::File::create(&partial)?;
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in files {
            zip.start_file(format!("kubetap-logs/{name}"), options)?;
            zip.write_all(data)?;
        }
        zip.finish()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("writing {}", out.display())));
    }
    std::fs::rename(&partial, out).map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))
}
