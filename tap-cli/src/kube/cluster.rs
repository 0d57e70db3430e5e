//! The connection to a cluster: the kubeconfig and context as kubectl picks
//! them (`--kubeconfig`, `--context`, the configuration file, `$KUBECONFIG`,
//! `~/.kube/config`), and the API server's answers turned into sentences
//! that say what failed and what to do.

use super::config::Config;
use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Clone, Debug, Default)]
pub struct ClusterArgs {
    /// The kubeconfig file. [default: $KUBECONFIG, or ~/.kube/config]
    #[arg(long, value_name = "FILE", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context. [default: its current context]
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,
    /// The namespace kubetap itself is installed in. [config: kubetapNamespace]
    #[arg(long, value_name = "NS", global = true)]
    pub kubetap_namespace: Option<String>,
}

/// A connected cluster.
pub struct Cluster {
    pub client: kube::Client,
    /// Where kubetap is (or goes).
    pub namespace: String,
    /// The context's namespace (`default` when it names none): what `tap`
    /// taps without -n or -A.
    pub context_namespace: String,
    /// The API server's address, for messages.
    pub server: String,
}

/// How long an API server has to answer the first request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

impl Cluster {
    /// Reads the kubeconfig and checks the API server answers (its version).
    pub async fn connect(config: &Config, args: &ClusterArgs) -> anyhow::Result<Cluster> {
        let file = args
            .kubeconfig
            .clone()
            .or_else(|| (!config.kubeconfig.is_empty()).then(|| config.kubeconfig.clone().into()));
        let kubeconfig = match &file {
            Some(path) => Kubeconfig::read_from(path).map_err(|e| {
                anyhow::anyhow!("cannot read the kubeconfig {}: {e}", path.display())
            })?,
            None => Kubeconfig::read().map_err(|e| {
                anyhow::anyhow!(
                    "cannot read a kubeconfig ($KUBECONFIG or ~/.kube/config): {e}; \
                     give one with --kubeconfig FILE"
                )
            })?,
        };
        let context = args
            .context
            .clone()
            .or_else(|| (!config.context.is_empty()).then(|| config.context.clone()));
        if let Some(name) = &context
            && !kubeconfig.contexts.iter().any(|c| &c.name == name)
        {
            let known: Vec<&str> = kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            anyhow::bail!(
                "the kubeconfig has no context {name:?} (it has: {})",
                known.join(", ")
            );
        }
        let options = KubeConfigOptions {
            context,
            ..Default::default()
        };
        let kube_config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| anyhow::anyhow!("the kubeconfig's context cannot be used: {e}"))?;
        let server = kube_config.cluster_url.to_string();
        let context_namespace = kube_config.default_namespace.clone();
        let client = kube::Client::try_from(kube_config)
            .map_err(|e| anyhow::anyhow!("cannot make a client for {server}: {e}"))?;
        let cluster = Cluster {
            client,
            namespace: args
                .kubetap_namespace
                .clone()
                .unwrap_or_else(|| config.kubetap_namespace.clone()),
            context_namespace,
            server,
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, cluster.client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(cluster),
            Ok(Err(e)) => Err(cluster.explain(&e, "asking the API server its version")),
            Err(_) => anyhow::bail!(
                "the API server at {} did not answer within {}s; check the context \
                 (kubectl cluster-info) and your network",
                cluster.server,
                CONNECT_TIMEOUT.as_secs()
            ),
        }
    }

    /// `error` from `doing` as a sentence naming the cause and what to do.
    pub fn explain(&self, error: &kube::Error, doing: &str) -> anyhow::Error {
        anyhow::anyhow!("{doing}: {}", describe(error, &self.server))
    }
}

/// What a user reads for a client error.
pub fn describe(error: &kube::Error, server: &str) -> String {
    match error {
        kube::Error::Api(status) => match status.code {
            401 => format!(
                "the API server at {server} refused the kubeconfig's credentials \
                 (401 Unauthorized: expired or revoked); log in to the cluster again \
                 and retry"
            ),
            403 => format!(
                "forbidden: {} (ask the cluster's admin for that right, or use a \
                 context that has it; `kubetap check` lists every right kubetap needs)",
                status.message
            ),
            404 => format!("not found: {}", status.message),
            code => format!("the API server answered {code}: {}", status.message),
        },
        kube::Error::Auth(e) => format!(
            "the kubeconfig's credentials cannot be used ({e}); log in to the cluster \
             again and retry"
        ),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            format!(
                "cannot reach the API server at {server}: {text}; check the context \
                 (kubectl cluster-info) and your network"
            )
        }
    }
}

/// Whether `error` is the API server saying the object is not there.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 404)
}
