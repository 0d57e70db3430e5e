//! `kubetap read FILE`: a capture file through the worker's pipeline to a table
//! or JSON lines on stdout, with a summary on stderr. Entries are written as
//! they complete, so the file is never held in memory.

use anyhow::Context as _;
use proto::v1::{Entry, request, response};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tap_dissect::GenericFields;
use tap_dissect::json::{EntryJson, rfc3339_nanos};
use tap_worker::Stats;
use tap_worker::driver::{self, Driver, DriverConfig, PipelineArgs, Sink, Source};
use tap_worker::queue::{EntryQueue, QueueBounds};
use tap_worker::ring::PacketRing;

#[derive(clap::Args)]
pub struct ReadArgs {
    /// Capture file (pcap or pcapng); '-' reads stdin.
    pub file: PathBuf,
    /// One JSON object per entry and line, instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Do not print the summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Keep the entries in an in-process hub and serve its API (and later the
    /// UI) on --port until Ctrl-C, instead of printing them.
    #[arg(long)]
    pub serve: bool,
    /// Port for --serve, on 127.0.0.1.
    #[arg(long, default_value_t = 8899, requires = "serve")]
    pub port: u16,
    /// Do not open a browser (kubetap never opens one yet; accepted for scripts).
    #[arg(long, requires = "serve")]
    pub no_browser: bool,
    /// Memory the served entries may take; the oldest are evicted beyond it.
    #[arg(long, default_value = "1GiB", requires = "serve")]
    pub memory_budget: bytesize::ByteSize,
    /// Memory for the file's raw packets, for PCAP export from --serve.
    #[arg(long, default_value = "256MiB", requires = "serve")]
    pub pcap_ring: bytesize::ByteSize,
    /// Print values as the file has them, without redaction (the file
    /// already holds them; for measuring what redaction costs, and for
    /// reading one's own test captures). Not with --serve.
    #[arg(long, conflicts_with = "serve")]
    pub no_redaction: bool,
    /// PCAP exports carry the packets as read, with the values redaction
    /// hid in the entries (each such export is logged).
    #[arg(long, requires = "serve")]
    pub raw_pcap: bool,
}

pub fn run(args: &ReadArgs) -> ExitCode {
    if args.serve {
        // A hub in this process: see `disable_transparent_huge_pages`.
        if let Err(e) = tap_worker::capture::live::disable_transparent_huge_pages() {
            tracing::debug!(%e, "transparent huge pages stay as the kernel has them");
        }
        return match serve(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("kubetap: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match read(args) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("kubetap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Output closed by the reader (`kubetap read … | head`): not an error worth a message.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let kind = c
            .downcast_ref::<io::Error>()
            .map(io::Error::kind)
            .or_else(|| {
                c.downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}

/// Reads the file of `args` to its end (or its damage) into `sink`; the
/// file's packets go into `ring` too, when there is one.
fn read_into(
    args: &ReadArgs,
    ring: Option<Arc<Mutex<PacketRing>>>,
    sink: &mut dyn Sink,
) -> anyhow::Result<driver::Outcome> {
    let driver = Driver::start(
        Source::File {
            path: args.file.clone(),
            pace: None,
        },
        DriverConfig {
            pipeline: tap_worker::PipelineConfig {
                redaction: if args.no_redaction {
                    tap_worker::redact::Redaction::new(tap_dissect::redact::Redactor::disabled())
                } else {
                    Default::default()
                },
                ..args.pipeline.config()
            },
            // Only the hop from the reader thread to the writer: a short
            // queue keeps memory flat and entries warm in cache.
            queue: Arc::new(EntryQueue::new(QueueBounds {
                entries: 1024,
                memory: 8 << 20,
            })),
            ring,
        },
    )?;
    driver::run(driver, sink, &AtomicBool::new(false), |_| {}, |_| {})
}

fn read(args: &ReadArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let stdout = io::stdout().lock();
    let mut sink = Stdout {
        out: BufWriter::with_capacity(256 << 10, stdout),
        json: args.json,
        header_done: false,
    };
    let outcome = read_into(args, None, &mut sink)?;
    if !sink.header_done && !args.json {
        sink.header()?;
    }
    sink.out.flush().context("writing entries to stdout")?;
    drop(sink);
    if !args.quiet {
        summary(
            &outcome.stats,
            outcome.file_bytes,
            started.elapsed().as_secs_f64(),
        );
    }
    outcome.print_problems("kubetap");
    Ok(if outcome.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `read FILE --serve`: the hub's API on 127.0.0.1:PORT, filled from the file
/// while it is read, served until Ctrl-C.
fn serve(args: &ReadArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (hub, listener, addr) = crate::local::hub(
        &runtime,
        args.memory_budget.as_u64(),
        args.port,
        args.raw_pcap,
    )?;
    let server = runtime.spawn(tap_hub::serve(
        hub.clone(),
        None,
        listener,
        tap_hub::serve::shutdown_signal(),
    ));
    eprintln!(
        "kubetap: serving the entries of {} at http://{addr}/",
        args.file.display()
    );
    // The file's packets answer PCAP exports, as a worker's ring would.
    let ring = driver::packet_ring("--pcap-ring", args.pcap_ring.as_u64())?;
    if let Some(ring) = &ring {
        crate::local::answer_pcap(&hub, &args.pipeline.node, ring.clone());
    }
    let mut sink = crate::local::HubSink::new(hub, &args.pipeline.node, false);
    let outcome = read_into(args, ring, &mut sink)?;
    if !args.quiet {
        summary(
            &outcome.stats,
            outcome.file_bytes,
            started.elapsed().as_secs_f64(),
        );
    }
    for e in &outcome.errors {
        eprintln!("kubetap: {e} (serving what was read before it)");
    }
    for w in &outcome.warnings {
        eprintln!("kubetap: warning: {w}");
    }
    eprintln!("kubetap: all entries loaded; serving at http://{addr}/ until Ctrl-C");
    runtime
        .block_on(server)
        .context("the API server stopped")??;
    Ok(if outcome.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Standard output as the driver's sink: a table, or JSON lines.
struct Stdout<W: Write> {
    out: W,
    json: bool,
    header_done: bool,
}

impl<W: Write> Stdout<W> {
    fn header(&mut self) -> io::Result<()> {
        self.header_done = true;
        writeln!(
            self.out,
            "{:<15} {:<47} {:<5} {:<8} {:<40} {:>6} {:>10}",
            "TIME", "SOURCE -> DESTINATION", "PROTO", "METHOD", "PATH", "STATUS", "ELAPSED"
        )
    }
}

impl<W: Write> Sink for Stdout<W> {
    fn drain(&mut self, driver: &Driver) -> anyhow::Result<usize> {
        let entries = driver.queue().take(4096);
        for e in &entries {
            if self.json {
                serde_json::to_writer(&mut self.out, &EntryJson(e))
                    .context("writing entries to stdout")?;
                self.out
                    .write_all(b"\n")
                    .context("writing entries to stdout")?;
            } else {
                if !self.header_done {
                    self.header().context("writing entries to stdout")?;
                }
                table_row(&mut self.out, e).context("writing entries to stdout")?;
            }
        }
        Ok(entries.len())
    }
}

/// Captured text may hold terminal escapes; show control characters as '?'.
fn clean(s: &str, width: usize) -> String {
    let mut c: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if c.chars().count() > width {
        c = c.chars().take(width.saturating_sub(1)).collect::<String>() + "…";
    }
    c
}

fn endpoint(ep: Option<&proto::v1::Endpoint>) -> String {
    match ep {
        Some(e) if e.ip.contains(':') => format!("[{}]:{}", e.ip, e.port),
        Some(e) => format!("{}:{}", e.ip, e.port),
        None => "?".into(),
    }
}

fn table_row(out: &mut impl Write, e: &Entry) -> io::Result<()> {
    let ts = rfc3339_nanos(e.ts_ns).to_string();
    // HH:MM:SS.micro of the UTC timestamp.
    let time = ts.get(11..26).unwrap_or(&ts);
    let method = e.method().unwrap_or("-");
    // Undissected flows show their byte counts and how they ended in the path column.
    let stream = |r: Option<&proto::v1::Request>, p: Option<&proto::v1::Response>| match (
        r.and_then(|r| r.kind.as_ref()),
        p.and_then(|p| p.kind.as_ref()),
    ) {
        (Some(request::Kind::Stream(up)), Some(response::Kind::Stream(down))) => Some(format!(
            "{} B up, {} B down, {}",
            up.bytes, down.bytes, down.ended
        )),
        _ => None,
    };
    let path = stream(e.request.as_ref(), e.response.as_ref())
        .unwrap_or_else(|| e.path().unwrap_or("-").to_string());
    let status = e.status().map_or("-".into(), |s| s.to_string());
    let elapsed = e
        .elapsed_ns
        .map_or("-".into(), |ns| format!("{:.3}ms", ns as f64 / 1e6));
    let proto = proto::v1::Protocol::try_from(e.protocol)
        .unwrap_or_default()
        .name();
    let flow = format!(
        "{} -> {}",
        endpoint(e.src.as_ref()),
        endpoint(e.dst.as_ref())
    );
    writeln!(
        out,
        "{time:<15} {flow:<47} {proto:<5} {:<8} {:<40} {status:>6} {elapsed:>10}",
        clean(method, 8),
        clean(&path, 40)
    )
}

fn summary(s: &Stats, file_bytes: u64, secs: f64) {
    let r = &s.reassembly;
    eprintln!(
        "kubetap: {} packets, {} bytes ({} file bytes in {:.2}s), {} connections, {} udp flows, {} entries, {} gaps ({} bytes), {} drops, {} parse errors",
        s.packets,
        s.bytes,
        file_bytes,
        secs,
        r.flows,
        s.udp.flows,
        s.entries,
        r.gaps,
        r.gap_bytes,
        s.drops(),
        s.parse_errors
    );
    let d = &s.decode;
    if d.malformed
        + d.unsupported_link
        + d.fragments_dropped
        + r.flows_evicted
        + r.buffer_limit_hits
        + s.unclaimed_connections
        > 0
    {
        eprintln!(
            "kubetap: drops and skips: {} malformed packets, {} unsupported link type, {} fragments dropped, {} flows evicted, {} buffer limit hits; {} connections not dissected (unknown protocol)",
            d.malformed,
            d.unsupported_link,
            d.fragments_dropped,
            r.flows_evicted,
            r.buffer_limit_hits,
            s.unclaimed_connections
        );
    }
    if d.length_from_capture > 0 {
        eprintln!(
            "kubetap: {} packets with an IP length of 0 or past the frame (segmentation offload, BIG TCP, a snap length) read with their captured length",
            d.length_from_capture
        );
    }
}
