//! Runs the hub's two servers on listeners the caller bound: gRPC for the
//! workers (`ingest`, over mutual TLS: `handshake`) and HTTP for users
//! (`api`), until `shutdown` resolves.

use crate::api;
use crate::handshake::WorkerListener;
use crate::hub::Hub;
use crate::ingest::Ingest;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
}

/// Serves both until `shutdown` completes, then reports either one's error.
pub async fn serve(
    hub: Arc<Hub>,
    grpc: Option<WorkerListener>,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // The peer's address reaches `access`, which logs refusals with it.
    let app = api::router(hub.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let http_server = axum::serve(http, app).with_graceful_shutdown(stopped(stop_rx.clone()));
    let grpc_server = async {
        match grpc {
            Some(listener) => {
                tonic::transport::Server::builder()
                    // A worker that vanished without a FIN is noticed within ~15 s.
                    .http2_keepalive_interval(Some(Duration::from_secs(10)))
                    .http2_keepalive_timeout(Some(Duration::from_secs(5)))
                    .add_service(Ingest::new(hub.clone()).service())
                    .serve_with_incoming_shutdown(
                        listener.incoming(hub.clone()),
                        stopped(stop_rx.clone()),
                    )
                    .await?;
                Ok::<(), ServeError>(())
            }
            None => {
                stopped(stop_rx.clone()).await;
                Ok(())
            }
        }
    };
    let trigger = async {
        shutdown.await;
        hub.set_serving(false);
        let _ = stop_tx.send(true);
    };
    hub.set_serving(true);
    let (_, h, g) = tokio::join!(
        trigger,
        async { http_server.await.map_err(ServeError::from) },
        grpc_server
    );
    hub.set_serving(false);
    h?;
    g?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends a pod it stops).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
