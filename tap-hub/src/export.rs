//! `export`: PCAP export. The entries matching a filter (and time window)
//! name their connections (node and `flow_id`); each node's packet source —
//! a worker's raw-packet ring over its stream, or this process's own ring in
//! `kubetap read --serve` — sends those connections' packets, and they are
//! merged in capture-time order into one pcapng with one interface per node
//! and link type, nanosecond timestamps. It opens in Wireshark and tshark.
//! A decrypted (TLS) connection's entries name its plaintext, made into
//! packets; asked to (`encrypted`), each node sends that connection's
//! captured, encrypted packets too. Those come first in the file, in time
//! order, and everything else after them: the made packets share the
//! connection's addresses, and Wireshark keeps the two apart only when the
//! made handshake follows the captured packets (it reads it as the ports
//! reused and starts a new stream); interleaved, the captured packets after
//! it would be read as part of the made stream.

use crate::filter::Filter;
use crate::hub::{Hub, PacketSource};
use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use proto::v1::{HubMessage, PcapRequest, RawPacket, hub_message};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

/// Connections one export may ask for, at most.
pub const MAX_FLOWS: usize = 20_000;
/// How long a worker has to send its packets.
const WORKER_TIMEOUT: Duration = Duration::from_secs(30);
/// Packets a connection may have sent before its first entry's time or after
/// its last entry's end, and still be exported (handshakes, teardown).
const MARGIN_NS: u64 = 30_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no stored entry matches the filter (and window)")]
    NothingMatches,
    #[error(
        "the filter selects {0} connections, more than the {MAX_FLOWS} one export takes: narrow it"
    )]
    TooManyFlows(usize),
    #[error("entry store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("writing the pcapng: {0}")]
    Write(String),
}

/// An export's result: the pcapng and what could not be included.
pub struct Export {
    pub pcapng: Vec<u8>,
    pub packets: usize,
    pub connections: usize,
    /// Per node, why its packets are missing or incomplete.
    pub problems: Vec<String>,
}

/// The connections to export, per node: flow ids and the time they span.
#[derive(Default)]
struct NodeFlows {
    flows: BTreeSet<u64>,
    from_ns: u64,
    to_ns: u64,
}

fn select(
    hub: &Hub,
    filter: &Filter,
    since_ns: Option<u64>,
    now_ns: u64,
) -> Result<BTreeMap<String, NodeFlows>, ExportError> {
    let mut nodes: BTreeMap<String, NodeFlows> = BTreeMap::new();
    let mut count = 0usize;
    hub.scan_back(None, |_, e| {
        if since_ns.is_some_and(|s| e.ts_ns < s) {
            return ControlFlow::Continue(());
        }
        if !filter.matches(e, now_ns) {
            return ControlFlow::Continue(());
        }
        let n = nodes.entry(e.node.clone()).or_insert_with(|| NodeFlows {
            from_ns: u64::MAX,
            ..Default::default()
        });
        if n.flows.insert(e.flow_id) {
            count += 1;
        }
        n.from_ns = n.from_ns.min(e.ts_ns);
        n.to_ns = n
            .to_ns
            .max(e.ts_ns.saturating_add(e.elapsed_ns.unwrap_or(0)));
        if count > MAX_FLOWS {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if count > MAX_FLOWS {
        return Err(ExportError::TooManyFlows(count));
    }
    if nodes.is_empty() {
        return Err(ExportError::NothingMatches);
    }
    Ok(nodes)
}

/// Asks one node's source for its packets; `Err` says why there are none.
async fn fetch(hub: &Arc<Hub>, node: &str, req: PcapRequest) -> (Vec<RawPacket>, Vec<String>) {
    let mut problems = Vec::new();
    let Some(source) = hub.source(node) else {
        return (
            Vec::new(),
            vec![format!("{node}: no connected worker to ask for packets")],
        );
    };
    let chunks = match source {
        PacketSource::Local(answer) => answer(&req),
        PacketSource::Worker { stream, .. } => {
            let (id, mut rx) = hub.pcap_waiter();
            let req = PcapRequest {
                request_id: id,
                ..req
            };
            let sent = stream
                .send(Ok(HubMessage {
                    kind: Some(hub_message::Kind::PcapRequest(req)),
                }))
                .await;
            let mut chunks = Vec::new();
            if sent.is_err() {
                problems.push(format!("{node}: the worker's stream closed"));
            } else {
                let collect = async {
                    while let Some(c) = rx.recv().await {
                        let last = c.last;
                        chunks.push(c);
                        if last {
                            return true;
                        }
                    }
                    false
                };
                match tokio::time::timeout(WORKER_TIMEOUT, collect).await {
                    Ok(true) => {}
                    Ok(false) => problems.push(format!("{node}: the worker went away mid-answer")),
                    Err(_) => problems.push(format!(
                        "{node}: no complete answer within {WORKER_TIMEOUT:?}"
                    )),
                }
            }
            hub.end_pcap_waiter(id);
            chunks
        }
    };
    let mut packets = Vec::new();
    for c in chunks {
        if !c.error.is_empty() {
            problems.push(format!("{node}: {}", c.error));
        }
        packets.extend(c.packets);
    }
    (packets, problems)
}

/// The pcapng of the connections of the entries that match `filter`
/// (captured within `window` of now, when given); with `encrypted`, the
/// captured packets of the decrypted connections among them too.
pub async fn export(
    hub: &Arc<Hub>,
    filter: Filter,
    window: Option<Duration>,
    now_ns: u64,
    encrypted: bool,
) -> Result<Export, ExportError> {
    let since_ns = window.map(|w| now_ns.saturating_sub(w.as_nanos() as u64));
    let scan_hub = hub.clone();
    let nodes = tokio::task::spawn_blocking(move || select(&scan_hub, &filter, since_ns, now_ns))
        .await
        .map_err(|e| ExportError::Write(e.to_string()))??;
    let connections = nodes.values().map(|n| n.flows.len()).sum();
    let raw = hub.config.raw_pcap;
    if raw {
        tracing::warn!(
            connections,
            "PCAP export of raw packets (--raw-pcap): redacted values are in it as captured"
        );
    }
    let mut all: Vec<(usize, RawPacket)> = Vec::new();
    let mut problems = Vec::new();
    let names: Vec<String> = nodes.keys().cloned().collect();
    for (i, (node, n)) in nodes.into_iter().enumerate() {
        let req = PcapRequest {
            request_id: 0,
            flow_ids: n.flows.into_iter().collect(),
            from_ns: n.from_ns.saturating_sub(MARGIN_NS),
            to_ns: n.to_ns.saturating_add(MARGIN_NS),
            raw,
            encrypted,
        };
        let (packets, p) = fetch(hub, &node, req).await;
        problems.extend(p);
        all.extend(packets.into_iter().map(|pkt| (i, pkt)));
    }
    all.sort_by_key(|(_, p)| (!p.encrypted, p.ts_ns));
    let packets = all.len();
    let pcapng = write(&names, &all).map_err(ExportError::Write)?;
    Ok(Export {
        pcapng,
        packets,
        connections,
        problems,
    })
}

/// One interface per (node, link type), in order of first use.
fn write(names: &[String], packets: &[(usize, RawPacket)]) -> Result<Vec<u8>, String> {
    let mut w = PcapNgWriter::new(Vec::new()).map_err(|e| e.to_string())?;
    let mut interfaces: HashMap<(usize, u32), u32> = HashMap::new();
    for (node, p) in packets {
        let next = interfaces.len() as u32;
        let interface_id = match interfaces.get(&(*node, p.linktype)) {
            Some(id) => *id,
            None => {
                let idb = InterfaceDescriptionBlock {
                    linktype: DataLink::from(p.linktype),
                    snaplen: 0,
                    options: vec![
                        InterfaceDescriptionOption::IfName(Cow::Owned(names[*node].clone())),
                        // Timestamps are written in nanoseconds.
                        InterfaceDescriptionOption::IfTsResol(9),
                    ],
                };
                w.write_pcapng_block(idb).map_err(|e| e.to_string())?;
                interfaces.insert((*node, p.linktype), next);
                next
            }
        };
        let epb = EnhancedPacketBlock {
            interface_id,
            timestamp: Duration::from_nanos(p.ts_ns),
            original_len: p.orig_len.max(p.data.len() as u32),
            data: Cow::Borrowed(&p.data),
            options: if p.comment.is_empty() {
                Vec::new()
            } else {
                vec![EnhancedPacketOption::Comment(Cow::Borrowed(&p.comment))]
            },
        };
        w.write_pcapng_block(epb).map_err(|e| e.to_string())?;
    }
    Ok(w.into_inner())
}
