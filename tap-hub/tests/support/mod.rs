//! What `hub_workers.rs` needs to drive the real binaries: `tap-hub` and
//! `tap-worker` processes that are killed when dropped (a failing test leaves
//! nothing running and prints their logs), and the hub's API read through
//! `testkit::http`. Its captures are `testkit::synth::exchanges`. Hub and
//! workers share one set of certificates (`certs`) unless a test gives its own.

/// Real `tap-hub` and `tap-worker` processes.
pub mod process {
    use serde_json::Value;
    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::{Arc, Mutex, mpsc};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};
    use testkit::http::{self, Reply};

    /// A child process, killed (SIGKILL) and reaped when dropped. Its stderr
    /// is kept, and printed when a test panics while holding it.
    pub struct Process {
        name: String,
        child: Child,
        log: Arc<Mutex<String>>,
        reader: Option<JoinHandle<()>>,
    }

    impl Process {
        /// Starts `command` with stderr captured; each line also goes to `lines`.
        pub fn spawn(
            name: &str,
            command: &mut Command,
            lines: Option<mpsc::Sender<String>>,
        ) -> Process {
            let mut child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start {name} ({:?}): {e}", command.get_program())
                });
            let stderr = child.stderr.take().expect("stderr is piped");
            let log = Arc::new(Mutex::new(String::new()));
            let sink = log.clone();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    {
                        let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                        log.push_str(&line);
                        log.push('\n');
                    }
                    if let Some(tx) = &lines {
                        let _ = tx.send(line);
                    }
                }
            });
            Process {
                name: name.to_string(),
                child,
                log,
                reader: Some(reader),
            }
        }

        pub fn pid(&self) -> u32 {
            self.child.id()
        }

        /// Its stderr so far; all of it once `wait_for` returned.
        pub fn log(&self) -> String {
            self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }

        /// SIGKILL, and reap it.
        pub fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }

        /// Sends it a signal by name (`STOP`, `CONT`) with kill(1).
        pub fn signal(&self, signal: &str) {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(self.pid().to_string())
                .status()
                .unwrap_or_else(|e| panic!("cannot run kill -{signal}: {e}"));
            assert!(
                status.success(),
                "kill -{signal} {} failed: {status}",
                self.pid()
            );
        }

        /// Waits until it exits, for at most `limit`, and until its stderr is
        /// read to the end.
        pub fn wait_for(&mut self, limit: Duration) -> ExitStatus {
            let deadline = Instant::now() + limit;
            let status = loop {
                match self.child.try_wait() {
                    Ok(Some(s)) => break s,
                    Ok(None) => {}
                    Err(e) => panic!("waiting for {}: {e}", self.name),
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not exit within {limit:?}",
                    self.name
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
            status
        }
    }

    impl Drop for Process {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "----- {} (pid {}) stderr -----\n{}----- end of {} -----",
                    self.name,
                    self.pid(),
                    self.log(),
                    self.name
                );
            }
        }
    }

    /// The certificates the tests' hubs and workers share: a set made by the
    /// first hub that starts (`tap-hub --certs`), kept in cargo's directory
    /// for tests' files and used by every later run.
    pub fn certs() -> PathBuf {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kubetap-certs")
    }

    /// A `tap-hub` process and the addresses it listens on.
    pub struct Hub {
        pub process: Process,
        pub grpc: SocketAddr,
        pub api: SocketAddr,
        /// The directory of its certificates, which its workers are given.
        pub certs: PathBuf,
    }

    impl Hub {
        /// A hub on ports the OS picks.
        pub fn start(extra: &[&str]) -> Hub {
            Hub::start_on("127.0.0.1:0", "127.0.0.1:0", extra)
        }

        /// A hub on the given addresses, once it says it listens.
        pub fn start_on(grpc: &str, api: &str, extra: &[&str]) -> Hub {
            Hub::start_with_certs(grpc, api, &certs(), extra)
        }

        /// A hub with the certificates in `certs` (a set is made there if
        /// it holds none).
        pub fn start_with_certs(grpc: &str, api: &str, certs: &Path, extra: &[&str]) -> Hub {
            let mut command = Hub::command(grpc, api);
            command.arg("--certs").arg(certs).args(extra);
            Hub::spawn(&mut command, certs)
        }

        /// `tap-hub --grpc GRPC --listen API`, to add to.
        pub fn command(grpc: &str, api: &str) -> Command {
            let mut command = Command::new(env!("CARGO_BIN_EXE_tap-hub"));
            http::with_token(&mut command).args(["--grpc", grpc, "--listen", api]);
            command
        }

        /// Starts `command` (a `tap-hub` using the certificates in `certs`)
        /// and waits until it says where it listens.
        pub fn spawn(command: &mut Command, certs: &Path) -> Hub {
            let (tx, rx) = mpsc::channel();
            let process = Process::spawn("tap-hub", command, Some(tx));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(line) => {
                        if let Some((grpc, api)) = parse_banner(&line) {
                            return Hub {
                                process,
                                grpc,
                                api,
                                certs: certs.to_path_buf(),
                            };
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        panic!("tap-hub did not say where it listens within 30 s")
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        panic!("tap-hub exited before it listened")
                    }
                }
            }
        }

        /// The address workers are given.
        pub fn url(&self) -> String {
            format!("https://{}", self.grpc)
        }

        pub fn get(&self, path: &str) -> Reply {
            http::get(self.api, path)
        }

        /// A 200 answer's JSON.
        pub fn get_json(&self, path: &str) -> Value {
            let reply = self.get(path);
            assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
            reply.json()
        }

        /// Every entry matching `filter`, newest first, paging through
        /// `/api/entries` 100 at a time with the cursors it hands out.
        pub fn entries(&self, filter: &str) -> Vec<Value> {
            let mut all = Vec::new();
            let mut cursor = String::new();
            loop {
                let page = self.get_json(&format!(
                    "/api/entries?limit=100&filter={}&cursor={cursor}",
                    http::encode(filter)
                ));
                let entries = page["entries"].as_array().expect("entries is a list");
                assert!(entries.len() <= 100, "a page of {} entries", entries.len());
                all.extend(entries.iter().cloned());
                match page["next_cursor"].as_str() {
                    Some(next) => {
                        assert_ne!(next, cursor, "the cursor does not move");
                        cursor = next.to_string();
                    }
                    None => {
                        assert!(page["next_cursor"].is_null(), "next_cursor: {page}");
                        return all;
                    }
                }
            }
        }

        pub fn workers(&self) -> Value {
            self.get_json("/api/workers")
        }

        /// The worker `node` as `/api/workers` shows it.
        pub fn worker(&self, node: &str) -> Option<Value> {
            let workers = self.workers();
            let list = workers["workers"].as_array().expect("workers is a list");
            list.iter().find(|w| w["node"] == node).cloned()
        }
    }

    /// `tap-hub: workers connect to https://A, API at http://B/`
    fn parse_banner(line: &str) -> Option<(SocketAddr, SocketAddr)> {
        let rest = line.strip_prefix("tap-hub: workers connect to https://")?;
        let (grpc, rest) = rest.split_once(", API at http://")?;
        let api = rest.strip_suffix('/')?;
        Some((grpc.parse().ok()?, api.parse().ok()?))
    }

    /// The `tap-worker` binary. It belongs to another package, so cargo does
    /// not name it for this test; it sits in the profile's directory, the
    /// parent of the test executable's `deps`.
    pub fn worker_binary() -> PathBuf {
        let exe = std::env::current_exe().expect("the test executable's path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps");
        let bin = dir.join(format!("tap-worker{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "{} is missing: run `cargo build -p tap-worker` first \
             (`cargo test --workspace` and `cargo xtask test` build it)",
            bin.display()
        );
        bin
    }

    /// A worker replaying `capture` to `hub` as node `node`, with the hub's
    /// certificates.
    pub fn start_worker(hub: &Hub, node: &str, capture: &Path, extra: &[&str]) -> Process {
        start_worker_with(&hub.url(), &hub.certs, node, capture, extra)
    }

    /// A worker replaying `capture` to the hub at `hub_url` with the
    /// certificates in `certs`.
    pub fn start_worker_with(
        hub_url: &str,
        certs: &Path,
        node: &str,
        capture: &Path,
        extra: &[&str],
    ) -> Process {
        let mut command = Command::new(worker_binary());
        command
            .args(["--hub", hub_url, "--node", node])
            .arg("--certs")
            .arg(certs)
            .arg("--file")
            .arg(capture)
            .args(extra);
        Process::spawn(&format!("tap-worker {node}"), &mut command, None)
    }

    /// A TLS channel to the hub at `url` with the worker certificate in
    /// `certs`, for tests that speak gRPC to the hub themselves.
    pub async fn channel(url: String, certs: &Path) -> tonic::transport::Channel {
        let tls = tap_certs::WorkerCerts::load(certs)
            .expect("the worker's certificates")
            .client_config();
        tonic::transport::Endpoint::from_shared(url)
            .expect("a valid URL")
            .tls_config(tls)
            .expect("TLS settings")
            .connect()
            .await
            .expect("connecting to the hub")
    }

    /// What a worker says it did when it ends.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Summary {
        pub packets: u64,
        pub entries: u64,
        pub acknowledged: u64,
        pub queue_drops: u64,
        pub lost_in_flight: u64,
        pub reconnects: u64,
    }

    impl Summary {
        /// From the line `tap-worker: P packets, E entries, A acknowledged by
        /// the hub, D dropped at the queue, L lost in flight, R reconnects`.
        pub fn parse(log: &str) -> Option<Summary> {
            const LABELS: [&str; 6] = [
                "packets",
                "entries",
                "acknowledged by the hub",
                "dropped at the queue",
                "lost in flight",
                "reconnects",
            ];
            let line = log.lines().rev().find_map(|l| {
                l.strip_prefix("tap-worker: ")
                    .filter(|l| l.contains(" packets, "))
            })?;
            let mut n = [0u64; 6];
            let parts: Vec<&str> = line.split(", ").collect();
            if parts.len() != LABELS.len() {
                return None;
            }
            for ((part, label), v) in parts.iter().zip(LABELS).zip(&mut n) {
                let (number, rest) = part.split_once(' ')?;
                if rest != label {
                    return None;
                }
                *v = number.parse().ok()?;
            }
            let [
                packets,
                entries,
                acknowledged,
                queue_drops,
                lost_in_flight,
                reconnects,
            ] = n;
            Some(Summary {
                packets,
                entries,
                acknowledged,
                queue_drops,
                lost_in_flight,
                reconnects,
            })
        }
    }

    /// Waits for a worker to end, for at most `limit`, and reads its summary.
    pub fn finish_worker(worker: &mut Process, limit: Duration) -> (ExitStatus, Summary) {
        let status = worker.wait_for(limit);
        let log = worker.log();
        let summary = Summary::parse(&log)
            .unwrap_or_else(|| panic!("no summary line in the worker's stderr:\n{log}"));
        (status, summary)
    }
}
