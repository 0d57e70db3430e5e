//! `kubetap tap --local`: live capture on this host with the hub in the same
//! process. The capture driver (`tap_worker::driver`) feeds its bounded
//! queue, which this thread moves into the in-process hub (`local::HubSink`),
//! without a gRPC hop (which would itself be captured on `lo`); the worker's
//! counters are shown in the workers panel, and PCAP export reads the
//! raw-packet ring.

use anyhow::Context as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tap_worker::driver::{self, Driver, DriverConfig, LiveArgs, PipelineArgs, QueueArgs};
use tap_worker::privileges;

#[derive(clap::Args)]
pub struct TapArgs {
    /// In a cluster: the pods to tap, a regex over pod names (unanchored, as
    /// grep). [default: every pod of the namespaces]
    #[arg(value_name = "POD_REGEX", conflicts_with = "local")]
    pub pod_regex: Option<String>,
    /// In a cluster: a namespace to tap (repeat for several). [default: the
    /// kubeconfig context's namespace]
    #[arg(
        short = 'n',
        long = "namespace",
        value_name = "NS",
        conflicts_with = "local"
    )]
    pub namespaces: Vec<String>,
    /// In a cluster: tap every namespace.
    #[arg(short = 'A', long, conflicts_with_all = ["namespaces", "local"])]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub cluster: crate::kube::cluster::ClusterArgs,
    /// Capture on this host instead of a cluster, hub and worker in one
    /// process. Without -i or --pods: every interface that is up, except
    /// loopback (`-i lo` captures loopback).
    #[arg(long)]
    pub local: bool,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Capture inside this network namespace (e.g. /run/netns/NODE: a node
    /// of veth pods, as `cargo xtask demo` makes); the API stays on this
    /// host's 127.0.0.1.
    #[arg(long, value_name = "PATH")]
    pub netns: Option<std::path::PathBuf>,
    /// Port of the API and the UI, on 127.0.0.1. [default: 8899; in a
    /// cluster the configuration's port]
    #[arg(long)]
    pub port: Option<u16>,
    /// Do not open a browser (with --local, kubetap never opens one).
    #[arg(long)]
    pub no_browser: bool,
    /// Memory the stored entries may take.
    #[arg(long, default_value = "256MiB")]
    pub memory_budget: bytesize::ByteSize,
    /// Memory for raw packets kept for PCAP export.
    #[arg(long, default_value = "64MiB")]
    pub pcap_ring: bytesize::ByteSize,
    /// PCAP exports carry the packets as captured, with the values
    /// redaction hid in the entries (each such export is logged).
    #[arg(long)]
    pub raw_pcap: bool,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
}

pub fn run(args: &TapArgs) -> ExitCode {
    match tap(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubetap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Interfaces that are up, from /sys/class/net (loopback left out). Inside
/// another network namespace (`in_netns`) /sys still shows this host's, so
/// the thread's own list (/proc/thread-self/net/dev) is used, all of it.
fn default_interfaces(in_netns: bool) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    if in_netns {
        let dev = std::fs::read_to_string("/proc/thread-self/net/dev")
            .context("listing network interfaces")?;
        for line in dev.lines().skip(2) {
            if let Some((name, _)) = line.split_once(':') {
                let name = name.trim();
                if name != "lo" {
                    out.push(name.to_string());
                }
            }
        }
        out.sort();
        return Ok(out);
    }
    for d in std::fs::read_dir("/sys/class/net").context("listing network interfaces")? {
        let name = d?.file_name().to_string_lossy().into_owned();
        if name == "lo" {
            continue;
        }
        let flags =
            std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).unwrap_or_default();
        let up = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
            .is_ok_and(|f| f & 1 != 0);
        if up {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

fn tap(args: &TapArgs) -> anyhow::Result<ExitCode> {
    if !args.local {
        return Ok(crate::kube::run_tap(
            &args.cluster,
            args.pod_regex.clone(),
            if args.all_namespaces {
                Some(Vec::new())
            } else if args.namespaces.is_empty() {
                None
            } else {
                Some(args.namespaces.clone())
            },
            args.port,
            args.no_browser,
            args.live.tls,
        ));
    }
    let port = args.port.unwrap_or(8899);
    // Before any thread starts (threads copy the capabilities they start
    // with): the capture's needs, entering --netns, a port below 1024.
    let mut needs = privileges::for_live(&args.live);
    if args.netns.is_some() {
        needs.push(privileges::ENTER_NETNS);
    }
    if port < 1024 {
        needs.push(privileges::LOW_PORT);
    }
    let kept = privileges::drop_for("kubetap", &needs)
        .context("dropping the capabilities this capture does not need")?;
    if let Err(e) = tap_worker::capture::live::disable_transparent_huge_pages() {
        tracing::debug!(%e, "transparent huge pages stay as the kernel has them");
    }
    let ring = driver::packet_ring("--pcap-ring", args.pcap_ring.as_u64())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (hub, http, url) =
        crate::local::hub(&runtime, args.memory_budget.as_u64(), port, args.raw_pcap)?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        runtime.spawn(tap_hub::serve(hub.clone(), None, http, async move {
            tap_hub::serve::shutdown_signal().await;
            stop.store(true, Ordering::Relaxed);
        }))
    };
    // Everything captured from here on is in --netns; the API socket above
    // stays on this host. Threads started below inherit the namespace.
    if let Some(ns) = &args.netns {
        tap_worker::capture::live::enter_netns(ns)
            .with_context(|| format!("entering the network namespace {}", ns.display()))?;
    }
    let source = args
        .live
        .source(None, || default_interfaces(args.netns.is_some()))?;
    let driver = Driver::start(
        source,
        DriverConfig {
            pipeline: args.pipeline.config(),
            queue: args.queue.queue(),
            ring: ring.clone(),
        },
    )?;
    let node = &args.pipeline.node;
    if let Some(ring) = ring {
        crate::local::answer_pcap(&hub, node, ring);
    }
    eprintln!(
        "kubetap: capturing {}; the UI at {url} — Ctrl-C stops",
        driver.describe()
    );
    if let Some(why) = driver.tls_unavailable() {
        eprintln!("kubetap: --tls: {why}; capturing packets without TLS plaintext");
    }
    // What PUT /api/config sets (target pods, redaction rules, capture
    // settings) applies here as a worker applies what its hub pushes.
    let mut configs = hub.worker_config();
    let mut sink = crate::local::HubSink::new(hub, node, true);
    sink.linux_capabilities = kept.names().iter().map(|n| n.to_string()).collect();
    let outcome = driver::run(
        driver,
        &mut sink,
        &stop,
        |line| eprintln!("kubetap: {line}"),
        |driver| {
            if configs.has_changed().unwrap_or(false) {
                let c = configs.borrow_and_update().clone();
                for line in driver.apply(&c) {
                    eprintln!("kubetap: {line}");
                }
            }
        },
    )?;
    server.abort();
    outcome.print_problems("kubetap");
    let (s, c) = (&outcome.stats, &outcome.counters);
    eprintln!(
        "kubetap: {} packets, {} entries, {} dropped by the kernel (ring full), {} at the store's queue, {} at other bounds, {} parse errors{}",
        s.packets,
        c.entries,
        c.kernel_drops,
        c.queue_drops,
        s.drops(),
        s.parse_errors,
        notable(c)
    );
    if let Some(tls) = &c.tls {
        eprintln!("kubetap: {}", tap_worker::tls::source::summary(tls));
    }
    Ok(if outcome.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The summary's tail: what the capture met that is worth knowing, not lost.
fn notable(c: &proto::v1::WorkerCounters) -> String {
    let mut out = String::new();
    for (n, what) in [
        (
            c.duplicate_packets,
            "copies of packets taken on another interface skipped",
        ),
        (
            c.offloaded_packets,
            "offloaded super-packets (IP length 0 or past the frame) read whole",
        ),
        (
            c.decapsulated_packets,
            "packets unwrapped from overlay tunnels",
        ),
    ] {
        if n > 0 {
            out.push_str(&format!("; {n} {what}"));
        }
    }
    out
}
