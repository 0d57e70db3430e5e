//! kubetap on Kubernetes: the commands that install, run and remove it in a
//! cluster, and what they share.
//!
//! - `chart`: the Helm chart in `deploy/chart/kubetap`, built into the
//!   binary and rendered without Helm: the one source of every object.
//! - `config`: `~/.kubetap/config.yaml`, read by every command.
//! - `cluster`: the kubeconfig and context, and the API server's refusals
//!   as sentences.
//! - `resources`: the kinds kubetap installs, a client for each.
//! - `install`: the chart's values for an install (flags, files, the token
//!   and certificates), `--dry-run` output, server-side apply.
//! - `clean`: deleting all of it.
//! - `check`: what kubetap needs from a cluster, before and after install.
//! - `logs`: a bug report's zip; `export`, `version` through the hub.
//! - `tap`: targets to the hub, the UI forwarded, a status line.
//! - `view`: the hub's UI on a local port through a port-forward.

pub mod chart;
pub mod check;
pub mod clean;
pub mod cluster;
pub mod config;
pub mod install;
pub mod logs;
pub mod resources;
pub mod tap;
pub mod view;

use clap::Args;
use cluster::{Cluster, ClusterArgs};
use install::{Change, Output, Secrets, ValuesArgs};
use std::process::ExitCode;

#[derive(Args)]
pub struct InstallArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    values: ValuesArgs,
    /// Print the objects an install would apply, touching nothing (no
    /// cluster is needed). Its Secrets hold a new token and new keys.
    #[arg(long)]
    dry_run: bool,
    /// The format of --dry-run's output.
    #[arg(
        short = 'o',
        long,
        value_enum,
        default_value = "yaml",
        requires = "dry_run"
    )]
    output: Output,
}

#[derive(Args)]
pub struct CleanArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The entries whose connections to export, in the hub's filter
    /// language (as the UI's filter box). [default: every entry]
    filter: Option<String>,
    /// The pcapng file to write (written whole or not at all).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: std::path::PathBuf,
    /// Only entries of the last WINDOW (e.g. 10m, 2h). [default: all kept]
    #[arg(long, value_name = "WINDOW")]
    window: Option<String>,
    /// With a decrypted (TLS) connection's plaintext, its captured,
    /// encrypted packets too.
    #[arg(long)]
    encrypted: bool,
}

pub fn run_export(args: &ExportArgs) -> ExitCode {
    block_on(async {
        let config = load_config()?;
        let cluster = Cluster::connect(&config, &args.cluster).await?;
        let pod = view::hub_pod(&cluster).await?;
        let token = view::token(&cluster).await?;
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(f) = &args.filter {
            query.append_pair("filter", f);
        }
        if let Some(w) = &args.window {
            query.append_pair("window", w);
        }
        if args.encrypted {
            query.append_pair("encrypted", "true");
        }
        let path = format!("/api/pcap?{}", query.finish());
        let partial = args.output.with_extension("partial");
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", partial.display()))?;
        let fetched = view::hub_fetch(&cluster, &pod, &token, &path, &mut file, u64::MAX).await;
        drop(file);
        if let Err(e) = fetched {
            let _ = std::fs::remove_file(&partial);
            return Err(e.context("exporting the PCAP"));
        }
        std::fs::rename(&partial, &args.output)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.output.display()))?;
        let size = std::fs::metadata(&args.output)
            .map(|m| m.len())
            .unwrap_or(0);
        eprintln!("kubetap: wrote {} ({size} bytes)", args.output.display());
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Args)]
pub struct LogsArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The zip to write.
    #[arg(
        short = 'o',
        long,
        value_name = "FILE",
        default_value = "kubetap-logs.zip"
    )]
    output: std::path::PathBuf,
}

pub fn run_logs(args: &LogsArgs) -> ExitCode {
    block_on(async {
        let config = load_config()?;
        let cluster = Cluster::connect(&config, &args.cluster).await?;
        let files = logs::collect(&cluster, &config, &args.output).await?;
        eprintln!(
            "kubetap: wrote {} ({} files: {})",
            args.output.display(),
            files.len(),
            files.join(", ")
        );
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Args)]
pub struct VersionArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// kubetap's version, then (when a cluster with kubetap answers) the hub's
/// and each worker's.
pub fn run_version(args: &VersionArgs) -> ExitCode {
    println!("kubetap {}", env!("CARGO_PKG_VERSION"));
    block_on(async {
        let in_cluster = async {
            let config = load_config()?;
            let cluster = Cluster::connect(&config, &args.cluster).await?;
            let pod = view::hub_pod(&cluster).await?;
            let token = view::token(&cluster).await?;
            let workers = view::hub_get(&cluster, &pod, &token, "/api/workers").await?;
            anyhow::Ok((cluster.namespace.clone(), pod, workers))
        };
        match in_cluster.await {
            Ok((namespace, pod, v)) => {
                println!(
                    "hub {} (pod {namespace}/{pod})",
                    v["hub"]["version"].as_str().unwrap_or("unknown")
                );
                for w in v["workers"].as_array().into_iter().flatten() {
                    println!(
                        "worker {} {} ({})",
                        w["node"].as_str().unwrap_or("?"),
                        w["version"].as_str().unwrap_or("unknown"),
                        w["state"].as_str().unwrap_or("unknown")
                    );
                }
            }
            Err(e) => eprintln!("kubetap: no hub or workers to ask: {e:#}"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn run_check(args: &CheckArgs) -> ExitCode {
    block_on(async {
        let config = load_config()?;
        let cluster = Cluster::connect(&config, &args.cluster).await?;
        let checks = check::run(&cluster).await;
        for c in &checks {
            println!("{}", c.line());
        }
        let failed = checks.iter().filter(|c| !c.pass).count();
        if failed == 0 {
            eprintln!("kubetap: every check passed");
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("kubetap: {failed} check(s) failed");
            Ok(ExitCode::FAILURE)
        }
    })
}

#[derive(Args)]
pub struct ViewArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The local port for the hub's UI and API. [config: port, 8899]
    #[arg(long)]
    port: Option<u16>,
    /// Do not open a browser. [config: openBrowser]
    #[arg(long)]
    no_browser: bool,
}

#[derive(Args)]
pub struct ConfigArgs {
    /// Write the default configuration to ~/.kubetap/config.yaml (replacing it).
    #[arg(short = 'r', long = "regenerate")]
    regenerate: bool,
}

/// Runs `body` on a runtime and turns its error into the exit status, the
/// way every Kubernetes command ends.
fn block_on<F>(body: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubetap: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(body) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubetap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config() -> anyhow::Result<config::Config> {
    config::load(&config::path()?)
}

pub fn run_config(args: &ConfigArgs) -> ExitCode {
    match config::run(args.regenerate) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubetap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn run_install(args: &InstallArgs) -> ExitCode {
    block_on(async {
        let config = load_config()?;
        if args.dry_run {
            let namespace = args
                .cluster
                .kubetap_namespace
                .clone()
                .unwrap_or_else(|| config.kubetap_namespace.clone());
            let secrets = Secrets::generate(&namespace)?;
            let values = install::values(&config, &args.values, &secrets)?;
            let objects = chart::render(&values, &namespace)?;
            print!("{}", install::print(&objects, args.output));
            return Ok(ExitCode::SUCCESS);
        }
        let cluster = Cluster::connect(&config, &args.cluster).await?;
        install(&cluster, &config, &args.values).await
    })
}

/// Installs (or updates) kubetap in `cluster`, printing a line per object;
/// on Ctrl-C a new install is removed again.
pub async fn install(
    cluster: &Cluster,
    config: &config::Config,
    values_args: &ValuesArgs,
) -> anyhow::Result<ExitCode> {
    let secrets = match install::installed_secrets(cluster).await? {
        Some(s) => s,
        None => Secrets::generate(&cluster.namespace)?,
    };
    let mut values = install::values(config, values_args, &secrets)?;
    // A namespace kubetap did not make is left as it is: not labelled as
    // kubetap's, so `clean` (or undoing a failed install) never deletes it
    // with everything else in it.
    let namespaces = resources::Kind::named("Namespace")
        .expect("Namespace is a kind kubetap installs")
        .api(&cluster.client, "");
    let existing = namespaces
        .get_opt(&cluster.namespace)
        .await
        .map_err(|e| cluster.explain(&e, &format!("reading namespace {}", cluster.namespace)))?;
    if let Some(ns) = existing
        && !resources::is_kubetaps(&ns.metadata)
    {
        eprintln!(
            "kubetap: namespace {} exists and is not kubetap's: installing into it without changing it \
             (the workers need it to allow privileged pods: pod-security.kubernetes.io/enforce=privileged); \
             `kubetap clean` will leave it",
            cluster.namespace
        );
        chart::merge(&mut values, serde_json::json!({"createNamespace": false}));
    }
    let objects = chart::render(&values, &cluster.namespace)?;
    let mut done = Vec::new();
    let result = tokio::select! {
        r = install::apply(cluster, &objects, &mut done) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    for a in &done {
        let word = match a.change {
            Change::Created => "created",
            Change::Changed => "configured",
            Change::Unchanged => "unchanged",
        };
        println!("{}/{} {word}", a.kind.to_lowercase(), a.name);
    }
    match result {
        Some(Ok(())) => {
            eprintln!(
                "kubetap: installed in namespace {} of {}",
                cluster.namespace, cluster.server
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Err(e)) if done.iter().all(|a| a.change == Change::Created) => {
            undo(cluster).await;
            Err(e.context("installing kubetap (what this install had made is removed)"))
        }
        Some(Err(e)) => Err(e.context(
            "installing kubetap (it was installed before: run `kubetap install` again, or `kubetap clean`)",
        )),
        None if done.iter().all(|a| a.change == Change::Created) => {
            eprintln!("kubetap: interrupted; removing what this install made");
            undo(cluster).await;
            Ok(ExitCode::from(130))
        }
        None => {
            eprintln!(
                "kubetap: interrupted; kubetap was installed before: run `kubetap install` again to finish, or `kubetap clean`"
            );
            Ok(ExitCode::from(130))
        }
    }
}

/// `kubetap tap` on a cluster (`tap --local` is `crate::tap`).
/// `namespaces`: `None` for the context's namespace, empty for all (`-A`).
pub fn run_tap(
    cluster_args: &ClusterArgs,
    regex: Option<String>,
    namespaces: Option<Vec<String>>,
    port: Option<u16>,
    no_browser: bool,
    tls: bool,
) -> ExitCode {
    block_on(async {
        // A bad regex is said before anything touches the cluster.
        tap::check_regex(regex.as_deref())?;
        let config = load_config()?;
        let cluster = Cluster::connect(&config, cluster_args).await.map_err(|e| {
            anyhow::anyhow!("{e:#}\n  (to tap this host without a cluster: kubetap tap --local)")
        })?;
        let targets = tap::Targets {
            regex,
            namespaces: namespaces.unwrap_or_else(|| vec![cluster.context_namespace.clone()]),
        };
        tap::run(
            cluster,
            &config,
            targets,
            port.unwrap_or(config.port),
            config.open_browser && !no_browser,
            tls,
        )
        .await
    })
}

/// Removes a half-made install, saying so; a failure here is said, not hidden.
async fn undo(cluster: &Cluster) {
    let mut removed = Vec::new();
    if let Err(e) = clean::clean(cluster, &mut removed).await {
        eprintln!("kubetap: could not remove all of it ({e:#}); run `kubetap clean`");
    }
    for r in &removed {
        eprintln!("{}/{} deleted", r.kind.to_lowercase(), r.name);
    }
}

pub fn run_view(args: &ViewArgs) -> ExitCode {
    block_on(async {
        let config = load_config()?;
        let cluster = Cluster::connect(&config, &args.cluster).await?;
        let pod = view::hub_pod(&cluster).await?;
        let token = view::token(&cluster).await?;
        let port = args.port.unwrap_or(config.port);
        let (listener, url) = view::listen(port, &token).await?;
        eprintln!(
            "kubetap: the hub's UI: {url} (pod {}/{pod}; Ctrl-C stops forwarding)",
            cluster.namespace
        );
        if config.open_browser && !args.no_browser {
            view::open_browser(&url);
        }
        view::forward(std::sync::Arc::new(cluster), listener, pod).await?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run_clean(args: &CleanArgs) -> ExitCode {
    block_on(async {
        let config = load_config()?;
        let cluster = Cluster::connect(&config, &args.cluster).await?;
        let mut removed = Vec::new();
        let result = clean::clean(&cluster, &mut removed).await;
        for r in &removed {
            println!("{}/{} deleted", r.kind.to_lowercase(), r.name);
        }
        result?;
        if removed.is_empty() {
            eprintln!(
                "kubetap: nothing to remove: kubetap is not installed in namespace {}",
                cluster.namespace
            );
        } else {
            eprintln!(
                "kubetap: removed {} objects from {}",
                removed.len(),
                cluster.server
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
