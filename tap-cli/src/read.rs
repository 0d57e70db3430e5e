//! `kubetap read FILE`: a capture file through the worker's pipeline to a table
//! or JSON lines on stdout, with a summary on stderr. Entries are written as
//! they complete, so the file is never held in memory.

use anyhow::Context as _;
use proto::json::{EntryJson, rfc3339_nanos};
use proto::v1::{Entry, PcapRequest, request, response};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tap_worker::capture::CaptureFile;
use tap_worker::ring::PacketRing;
use tap_worker::{Pipeline, PipelineConfig, Stats};

#[derive(clap::Args)]
pub struct ReadArgs {
    /// Capture file (pcap or pcapng); '-' reads stdin.
    pub file: PathBuf,
    /// One JSON object per entry and line, instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Body bytes kept per message (after decoding); longer bodies are flagged truncated.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_body: usize,
    /// Node name written into the entries.
    #[arg(long, default_value = "local")]
    pub node: String,
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

fn read(args: &ReadArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut config = PipelineConfig {
        node: args.node.clone(),
        ..Default::default()
    };
    config.dissect.max_body = args.max_body;
    let mut pipeline = Pipeline::new(config);
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(256 << 10, stdout);
    let mut sink = Sink {
        json: args.json,
        header_done: false,
    };
    let mut entries = Vec::new();

    let mut file = CaptureFile::open(&args.file)?;
    let mut failure = None;
    loop {
        match file.next_packet() {
            Ok(Some(pkt)) => {
                pipeline.packet(&pkt, &mut entries);
            }
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        sink.write(&mut out, &mut entries)?;
    }
    // Whatever the end, flush the connections: every entry decoded so far is printed.
    pipeline.finish(&mut entries);
    sink.write(&mut out, &mut entries)?;
    if !sink.header_done && !args.json {
        sink.header(&mut out)?;
    }
    out.flush().context("writing entries to stdout")?;
    drop(out);

    if !args.quiet {
        summary(
            &pipeline.stats(),
            file.offset(),
            started.elapsed().as_secs_f64(),
        );
    }
    if let Some(e) = failure {
        eprintln!("kubetap: {e}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `read FILE --serve`: the hub's API on 127.0.0.1:PORT, filled from the file
/// while it is read, served until Ctrl-C.
fn serve(args: &ReadArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (hub, listener, addr) =
        crate::local::hub(&runtime, args.memory_budget.as_u64(), args.port)?;
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

    let mut config = PipelineConfig {
        node: args.node.clone(),
        ..Default::default()
    };
    config.dissect.max_body = args.max_body;
    let mut pipeline = Pipeline::new(config);
    let mut file = CaptureFile::open(&args.file)?;
    // The file's packets answer PCAP exports, as a worker's ring would.
    if let Some(e) = tap_worker::ring::budget_error(args.pcap_ring.as_u64()) {
        anyhow::bail!("--pcap-ring: {e}");
    }
    let ring = Arc::new(Mutex::new(PacketRing::new(
        usize::try_from(args.pcap_ring.as_u64()).unwrap_or(usize::MAX),
    )));
    let answer = ring.clone();
    hub.set_source(
        &args.node,
        tap_hub::hub::PacketSource::Local(Arc::new(move |req: &PcapRequest| {
            vec![answer.lock().unwrap_or_else(|e| e.into_inner()).answer(req)]
        })),
    );
    let mut entries = Vec::new();
    let mut failure = None;
    loop {
        match file.next_packet() {
            Ok(Some(pkt)) => {
                if let Some(flow) = pipeline.packet(&pkt, &mut entries) {
                    ring.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(&pkt, flow);
                }
            }
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        if entries.len() >= 1024 {
            store(&hub, &mut entries);
        }
    }
    pipeline.finish(&mut entries);
    store(&hub, &mut entries);
    if !args.quiet {
        summary(
            &pipeline.stats(),
            file.offset(),
            started.elapsed().as_secs_f64(),
        );
    }
    if let Some(e) = &failure {
        eprintln!("kubetap: {e} (serving what was read before it)");
    }
    eprintln!("kubetap: all entries loaded; serving at http://{addr}/ until Ctrl-C");
    runtime
        .block_on(server)
        .context("the API server stopped")??;
    Ok(if failure.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn store(hub: &tap_hub::Hub, entries: &mut Vec<Entry>) {
    if entries.is_empty() {
        return;
    }
    if let Err(e) = hub.insert(&entries[0].node.clone(), std::mem::take(entries)) {
        eprintln!("kubetap: {e}");
    }
}

struct Sink {
    json: bool,
    header_done: bool,
}

impl Sink {
    fn header(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.header_done = true;
        writeln!(
            out,
            "{:<15} {:<47} {:<5} {:<8} {:<40} {:>6} {:>10}",
            "TIME", "SOURCE -> DESTINATION", "PROTO", "METHOD", "PATH", "STATUS", "ELAPSED"
        )
    }

    fn write(&mut self, out: &mut impl Write, entries: &mut Vec<Entry>) -> anyhow::Result<()> {
        for e in entries.drain(..) {
            if self.json {
                serde_json::to_writer(&mut *out, &EntryJson(&e))
                    .context("writing entries to stdout")?;
                out.write_all(b"\n").context("writing entries to stdout")?;
            } else {
                if !self.header_done {
                    self.header(out).context("writing entries to stdout")?;
                }
                table_row(out, &e).context("writing entries to stdout")?;
            }
        }
        Ok(())
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
}
