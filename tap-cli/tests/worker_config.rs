//! The hub pushes the workers' configuration: a worker gets it when it
//! connects, and again, at once, when a user changes it through
//! `PUT /api/config`; a bad configuration is refused with a 400. A real hub
//! (in-process, on loopback) and the worker's real shipping stage.

use proto::v1::WorkerCounters;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tap_worker::ship::{ShipConfig, Shipper};

/// `method path` with a JSON `body` to the API on 127.0.0.1:`port`, with the tests' token.
fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let body = (!body.is_empty()).then_some(("application/json", body.as_bytes()));
    let reply = testkit::http::request(addr, method, path, body);
    (reply.status, reply.body)
}

#[test]
fn workers_get_the_configuration_on_connect_and_on_every_change() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = tap_hub::Hub::open(tap_hub::HubConfig {
        token: tap_hub::access::Token::new(testkit::http::TOKEN).unwrap(),
        ..Default::default()
    })
    .unwrap();
    let certs = testkit::TempDir::new("worker-config-certs");
    tap_certs::CertSet::generate(&["127.0.0.1".into()], &tap_certs::Validity::days(1))
        .unwrap()
        .write(&certs)
        .unwrap();
    let tls = tap_certs::HubCerts::load(&certs)
        .unwrap()
        .server_config()
        .unwrap();
    let (grpc, http) = rt.block_on(async {
        (
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
    });
    let (grpc_port, http_port) = (
        grpc.local_addr().unwrap().port(),
        http.local_addr().unwrap().port(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let grpc = tap_hub::WorkerListener::new(grpc, tls);
    rt.spawn(tap_hub::serve(hub, Some(grpc), http, async {
        let _ = stopped.await;
    }));
    let shipper = rt.block_on(async {
        Shipper::start(
            ShipConfig {
                hub: format!("https://127.0.0.1:{grpc_port}"),
                certs: certs.to_path_buf(),
                node: "n1".into(),
                ..Default::default()
            },
            Arc::new(tap_worker::queue::EntryQueue::new(Default::default())),
            Arc::new(WorkerCounters::default),
            None,
        )
    });
    let mut config = shipper.config();
    let wait_version = |config: &mut tokio::sync::watch::Receiver<_>, v: u64| {
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                config.wait_for(|c: &Option<proto::v1::WorkerConfig>| {
                    c.as_ref().is_some_and(|c| c.version == v)
                }),
            )
            .await
            .expect("the configuration did not arrive")
            .unwrap()
            .clone()
            .unwrap()
        })
    };
    assert_eq!(
        wait_version(&mut config, 1).target_pods,
        Vec::<String>::new()
    );

    let (status, body) = request(
        http_port,
        "PUT",
        "/api/config",
        r#"{"target_pods":["^checkout-"],"target_namespaces":["shop"],"redaction":[{"key":"ssn"},{"pattern":"\\d{3}-\\d{2}-\\d{4}"}],"capture":{"max_body":4096}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let c = wait_version(&mut config, 2);
    assert_eq!(c.target_pods, ["^checkout-"]);
    assert_eq!(c.target_namespaces, ["shop"]);
    assert_eq!(c.redaction[0].key, "ssn");
    assert_eq!(c.redaction[1].pattern, r"\d{3}-\d{2}-\d{4}");
    assert_eq!(c.capture.unwrap().max_body, 4096);

    // Mistakes are refused and change nothing.
    for bad in [
        r#"{"target_pods":["(unclosed"]}"#,
        r#"{"redaction":[{"pattern":"(unclosed"}]}"#,
        r#"{"redaction":[{"key":"a","pattern":"b"}]}"#,
        r#"{"redaction":[{}]}"#,
        r#"{"redaction":[{"key":"--"}]}"#,
        r#"{"target_podz":[]}"#,
        "not json",
    ] {
        let (status, body) = request(http_port, "PUT", "/api/config", bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
    let (status, body) = request(http_port, "GET", "/api/config", "");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["target_pods"][0], "^checkout-");

    rt.block_on(shipper.finish(Duration::from_secs(5))).unwrap();
    let _ = stop.send(());
}
