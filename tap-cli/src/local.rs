//! What `read --serve` and `tap --local` share: a hub in this process, its
//! entries in memory, the UI/API listener on this host's loopback, and the
//! driver's sink that stores entries in it.

use anyhow::Context as _;
use proto::v1::{PcapRequest, WorkerCounters};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tap_worker::driver::{Driver, Sink};
use tap_worker::ring::PacketRing;

/// Opens the hub (entries kept within `memory_budget` bytes; PCAP exports
/// untouched with `raw_pcap`) and binds 127.0.0.1:`port`; returns both and
/// the address.
pub fn hub(
    runtime: &tokio::runtime::Runtime,
    memory_budget: u64,
    port: u16,
    raw_pcap: bool,
) -> anyhow::Result<(Arc<tap_hub::Hub>, tokio::net::TcpListener, String)> {
    if raw_pcap {
        tracing::warn!("--raw-pcap: PCAP exports will carry redacted values as captured");
    }
    let hub = tap_hub::Hub::open(tap_hub::HubConfig {
        store: tap_hub::store::StoreConfig {
            memory_budget,
            disk: None,
        },
        raw_pcap,
        ..Default::default()
    })
    .context("opening the entry store")?;
    let addr = format!("127.0.0.1:{port}");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&addr))
        .with_context(|| {
            format!(
                "cannot listen on {addr} (is another kubetap running? pick another with --port)"
            )
        })?;
    Ok((hub, listener, addr))
}

/// The in-process hub as the driver's sink: entries go straight into its
/// store (no gRPC hop, which `tap --local` would capture on `lo`).
pub struct HubSink {
    pub hub: Arc<tap_hub::Hub>,
    pub node: String,
    /// Report the worker's counters to the hub's workers panel (local mode;
    /// a file served by `read --serve` is not a worker).
    pub report: bool,
    pub stored: u64,
    reported: Option<Instant>,
}

impl HubSink {
    pub fn new(hub: Arc<tap_hub::Hub>, node: &str, report: bool) -> HubSink {
        HubSink {
            hub,
            node: node.to_string(),
            report,
            stored: 0,
            reported: None,
        }
    }

    fn report(&mut self, driver: &Driver) {
        self.reported = Some(Instant::now());
        let counters = WorkerCounters {
            entries_sent: self.stored,
            ..driver.counters()
        };
        // What this worker does, as a remote one's hello says it.
        let mut capabilities = vec!["entries".to_string()];
        if driver.ring().is_some() {
            capabilities.push("pcap".into());
        }
        self.hub
            .report_local(&self.node, &capabilities, counters, self.stored);
    }
}

impl Sink for HubSink {
    fn drain(&mut self, driver: &Driver) -> anyhow::Result<usize> {
        let batch = driver.queue().take(4096);
        // Counters go out before the entries they count (the workers panel
        // never shows fewer packets than the entries listed imply): once per
        // batch, at most 200 a second when entries trickle in, one per 4,096
        // entries under load (reading them takes each capture lock briefly),
        // and once a second when idle.
        if self.report
            && (!batch.is_empty()
                || driver.finished()
                || self
                    .reported
                    .is_none_or(|r| r.elapsed() >= Duration::from_secs(1)))
        {
            self.report(driver);
        }
        let n = batch.len();
        if n > 0 {
            self.stored += n as u64;
            if let Err(e) = self.hub.insert(&self.node, batch) {
                eprintln!("kubetap: {e}");
            }
        }
        Ok(n)
    }
}

/// Answers the hub's PCAP exports for `node` from `ring`, as a worker would.
pub fn answer_pcap(hub: &tap_hub::Hub, node: &str, ring: Arc<Mutex<PacketRing>>) {
    hub.set_source(
        node,
        tap_hub::hub::PacketSource::Local(Arc::new(move |req: &PcapRequest| {
            vec![ring.lock().unwrap_or_else(|e| e.into_inner()).answer(req)]
        })),
    );
}
