//! `kubetap install`: the chart's objects with this install's values, and
//! (`--dry-run`) printed as kubectl prints them.
//!
//! The values are the chart's `values.yaml`, then the configuration file's
//! `values`, then `-f FILE`s, then the flags (`--registry`, `--tag`,
//! `--tls`), then what the install makes: the namespace, the API token and
//! the mutual-TLS certificates (reused from the cluster's Secrets when
//! kubetap is already installed there, so installing again changes nothing).

use super::chart;
use super::cluster::Cluster;
use super::config::Config;
use super::resources::Kind;
use base64::Engine as _;
use clap::{Args, ValueEnum};
use kube::api::{Patch, PatchParams};
use serde_json::{Value as Json, json};
use std::path::PathBuf;

#[derive(Args, Clone, Debug, Default)]
pub struct ValuesArgs {
    /// A values file for kubetap's chart (YAML or JSON, as `helm install -f`);
    /// repeat for several, later ones win.
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// The registry the tap-hub and tap-worker images come from (a mirror,
    /// for an air-gapped cluster). [config: values.image.registry]
    #[arg(long, value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// The images' tag. [default: kubetap's version]
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// TLS plaintext through eBPF uprobes on every node (the workers get
    /// the BPF and PERFMON capabilities too).
    #[arg(long)]
    pub tls: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Yaml,
    Json,
}

/// The secrets an install is made with.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub token: String,
    pub certs: tap_certs::CertSet,
}

impl Secrets {
    /// A new token (32 random bytes as hex) and a new certificate set for
    /// the hub's Service in `namespace`.
    pub fn generate(namespace: &str) -> anyhow::Result<Secrets> {
        let token = tap_hub::access::Token::generate()?.secret().to_string();
        let certs = tap_certs::CertSet::generate(
            &hub_names(namespace),
            &tap_certs::Validity::days(tap_certs::DEFAULT_DAYS),
        )?;
        Ok(Secrets { token, certs })
    }

    /// The secrets of objects already installed (the three Secrets as the
    /// API server returns them), if all are there and whole.
    pub fn from_installed(secrets: &[Json]) -> Option<Secrets> {
        let field = |name: &str, key: &str| -> Option<String> {
            let secret = secrets
                .iter()
                .find(|s| s["metadata"]["name"].as_str() == Some(name))?;
            let data = secret["data"][key].as_str()?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .ok()?;
            String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
        };
        Some(Secrets {
            token: field("kubetap-token", "token")?,
            certs: tap_certs::CertSet {
                ca: field("kubetap-hub-certs", tap_certs::CA_CERT)?,
                hub: tap_certs::KeyedCert {
                    cert: field("kubetap-hub-certs", tap_certs::HUB_CERT)?,
                    key: field("kubetap-hub-certs", tap_certs::HUB_KEY)?,
                },
                worker: tap_certs::KeyedCert {
                    cert: field("kubetap-worker-certs", tap_certs::WORKER_CERT)?,
                    key: field("kubetap-worker-certs", tap_certs::WORKER_KEY)?,
                },
            },
        })
    }
}

/// The names workers may dial the hub by: its Service's.
pub fn hub_names(namespace: &str) -> Vec<String> {
    vec![
        "kubetap-hub".into(),
        format!("kubetap-hub.{namespace}"),
        format!("kubetap-hub.{namespace}.svc"),
        format!("kubetap-hub.{namespace}.svc.cluster.local"),
    ]
}

/// The chart's values for this install: the defaults, the configuration
/// file's, the files of `-f`, the flags, then `secrets`.
pub fn values(config: &Config, args: &ValuesArgs, secrets: &Secrets) -> anyhow::Result<Json> {
    let mut values = chart::default_values();
    chart::merge(&mut values, config.values.clone());
    for file in &args.values {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read the values file {}: {e}", file.display()))?;
        let given = chart::parse_values(&text)
            .map_err(|e| anyhow::anyhow!("the values file {}: {e}", file.display()))?;
        chart::merge(&mut values, given);
    }
    if let Some(registry) = &args.registry {
        chart::merge(&mut values, json!({"image": {"registry": registry}}));
    }
    if let Some(tag) = &args.tag {
        chart::merge(&mut values, json!({"image": {"tag": tag}}));
    }
    if args.tls {
        chart::merge(&mut values, json!({"worker": {"tls": true}}));
    }
    let c = &secrets.certs;
    chart::merge(
        &mut values,
        json!({
            "createNamespace": true,
            "token": secrets.token,
            "certs": {
                "ca": c.ca, "hub": c.hub.cert, "hubKey": c.hub.key,
                "worker": c.worker.cert, "workerKey": c.worker.key,
            },
        }),
    );
    Ok(values)
}

/// The objects as `kubectl … -o yaml|json` prints a list of them.
pub fn print(objects: &[chart::Rendered], output: Output) -> String {
    match output {
        Output::Yaml => objects
            .iter()
            .map(|o| serde_saphyr::to_string(&o.object).expect("JSON values serialize as YAML"))
            .collect::<Vec<_>>()
            .join("---\n"),
        Output::Json => {
            let list = json!({
                "apiVersion": "v1",
                "kind": "List",
                "metadata": {"resourceVersion": ""},
                "items": objects.iter().map(|o| o.object.clone()).collect::<Vec<_>>(),
            });
            serde_json::to_string_pretty(&list).expect("JSON serializes") + "\n"
        }
    }
}

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Changed,
    Unchanged,
}

/// One object applied.
#[derive(Debug, Clone)]
pub struct Applied {
    pub kind: &'static str,
    pub name: String,
    pub change: Change,
}

/// The Secrets of an install already in the cluster, if it is whole.
pub async fn installed_secrets(cluster: &Cluster) -> anyhow::Result<Option<Secrets>> {
    let kind = Kind::named("Secret").expect("Secret is a kind kubetap installs");
    let api = kind.api(&cluster.client, &cluster.namespace);
    let mut found = Vec::new();
    for name in ["kubetap-token", "kubetap-hub-certs", "kubetap-worker-certs"] {
        match api.get_opt(name).await {
            Ok(Some(secret)) => found.push(serde_json::to_value(secret)?),
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(cluster.explain(
                    &e,
                    &format!("reading the secret {}/{name}", cluster.namespace),
                ));
            }
        }
    }
    Ok(Secrets::from_installed(&found))
}

/// Applies `objects` in order with server-side apply (field manager
/// `kubetap`, taking over fields another manager set), saying for each
/// whether it was created, changed or already so. `done` gets each object
/// as it is applied, so an interrupted install knows what it made.
pub async fn apply(
    cluster: &Cluster,
    objects: &[chart::Rendered],
    done: &mut Vec<Applied>,
) -> anyhow::Result<()> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for o in objects {
        let kind = Kind::named(o.kind()).ok_or_else(|| {
            anyhow::anyhow!("the chart has a {} kubetap cannot install", o.kind())
        })?;
        let api = kind.api(&cluster.client, &cluster.namespace);
        let name = o.name();
        let what = format!("{}/{name}", kind.resource_name());
        let before = api
            .get_opt(name)
            .await
            .map_err(|e| cluster.explain(&e, &format!("reading {what}")))?;
        let after = api
            .patch(name, &params, &Patch::Apply(&o.object))
            .await
            .map_err(|e| cluster.explain(&e, &format!("applying {what}")))?;
        let change = match before {
            None => Change::Created,
            Some(b) if b.metadata.resource_version == after.metadata.resource_version => {
                Change::Unchanged
            }
            Some(_) => Change::Changed,
        };
        done.push(Applied {
            kind: kind.kind,
            name: name.to_string(),
            change,
        });
    }
    Ok(())
}

/// The field manager kubetap's server-side applies are recorded under.
pub const FIELD_MANAGER: &str = "kubetap";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_files_which_win_over_the_configuration() {
        let dir = std::env::temp_dir().join(format!("kubetap-values-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("v.yaml");
        std::fs::write(
            &file,
            "image:\n  registry: files.example\n  tag: from-file\n",
        )
        .unwrap();
        let config = Config {
            values: json!({"image": {"registry": "config.example"}, "hub": {"memoryBudget": "1GiB"}}),
            ..Default::default()
        };
        let secrets = Secrets::generate("kt").unwrap();
        let args = ValuesArgs {
            values: vec![file],
            tag: Some("from-flag".into()),
            ..Default::default()
        };
        let v = values(&config, &args, &secrets).unwrap();
        assert_eq!(v["image"]["registry"], "files.example");
        assert_eq!(v["image"]["tag"], "from-flag");
        assert_eq!(v["hub"]["memoryBudget"], "1GiB");
        assert_eq!(
            v["image"]["pullPolicy"], "IfNotPresent",
            "the chart's defaults stay"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn installed_secrets_are_read_back_whole_or_not_at_all() {
        let secrets = Secrets::generate("kt").unwrap();
        let values = values(&Config::default(), &ValuesArgs::default(), &secrets).unwrap();
        let objects = chart::render(&values, "kt").unwrap();
        let installed: Vec<Json> = objects
            .iter()
            .filter(|o| o.kind() == "Secret")
            .map(|o| o.object.clone())
            .collect();
        let back = Secrets::from_installed(&installed).unwrap();
        assert_eq!(back.token, secrets.token);
        assert_eq!(back.certs.ca, secrets.certs.ca);
        assert_eq!(back.certs.worker.key, secrets.certs.worker.key);
        assert!(Secrets::from_installed(&installed[..2]).is_none());
    }
}
