//! What `read --serve` and `tap --local` share: a hub in this process, its
//! entries in memory, and the UI/API listener on this host's loopback.

use anyhow::Context as _;
use std::sync::Arc;

/// Opens the hub (entries kept within `memory_budget` bytes) and binds
/// 127.0.0.1:`port`; returns both and the address.
pub fn hub(
    runtime: &tokio::runtime::Runtime,
    memory_budget: u64,
    port: u16,
) -> anyhow::Result<(Arc<tap_hub::Hub>, tokio::net::TcpListener, String)> {
    let hub = tap_hub::Hub::open(tap_hub::HubConfig {
        store: tap_hub::store::StoreConfig {
            memory_budget,
            disk: None,
        },
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
