//! kubetap's hub: takes entries from every node's worker over gRPC (`ingest`),
//! keeps them within a memory and disk budget (`store`), answers queries in
//! the filter language (`filter`), draws who talks to whom (`servicemap`) and
//! serves all of it over HTTP on the UI port (`api`, behind the bearer
//! token and origin checks of `access`), with the browser UI (`ui`). `hub`
//! is the state they share; `serve` runs the two servers; `handshake`
//! admits only workers with a certificate of the install's CA.
#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod export;
pub mod filter;
pub mod handshake;
pub mod hub;
pub mod ids;
pub mod ingest;
pub mod pods;
pub mod serve;
pub mod servicemap;
pub mod store;
pub mod ui;

pub use handshake::WorkerListener;
pub use hub::{Hub, HubConfig};
pub use serve::serve;
