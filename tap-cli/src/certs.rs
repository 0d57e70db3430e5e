//! `kubetap certs generate`: a new CA and the hub's and workers'
//! certificates for mutual TLS on the workers' gRPC stream (`tap_certs`),
//! written as PEM files into one directory for the cluster's Secrets. The
//! CA's key is not kept: renewing is generating a new set.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tap_certs::{CA_CERT, CertSet, HUB_CERT, HUB_KEY, Validity, WORKER_CERT, WORKER_KEY};

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Generate a CA, the hub's server certificate and the workers' client
    /// certificate (ECDSA P-256) into a directory.
    Generate(GenerateArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Directory for ca.pem, hub.pem, hub-key.pem, worker.pem, worker-key.pem
    /// (created with mode 0700; keys 0600).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A name the workers reach the hub by: a DNS name (the hub's Service,
    /// e.g. kubetap-hub.kubetap.svc) or an IP address. Repeat for several.
    #[arg(long = "hub-name", value_name = "NAME", required = true)]
    hub_names: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = tap_certs::DEFAULT_DAYS, value_parser = clap::value_parser!(u32).range(1..=36500))]
    days: u32,
    /// Replace a set already in DIR (the hub and every worker then need the
    /// new files).
    #[arg(long)]
    force: bool,
}

pub fn run(command: &CertsCommand) -> ExitCode {
    match command {
        CertsCommand::Generate(args) => match generate(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kubetap: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let ca = args.out.join(CA_CERT);
    if ca.exists() && !args.force {
        bail!(
            "{} already holds a set of certificates; --force replaces it \
             (the hub and every worker then need the new files)",
            args.out.display()
        );
    }
    let set = CertSet::generate(&args.hub_names, &Validity::days(args.days))
        .context("generating the certificates")?;
    set.write(&args.out)
        .with_context(|| format!("writing the certificates into {}", args.out.display()))?;
    let dir = args.out.display();
    eprintln!(
        "kubetap: certificates in {dir}, valid for {} days; the hub's for {}",
        args.days,
        args.hub_names.join(", ")
    );
    eprintln!("  the hub:     {CA_CERT} {HUB_CERT} {HUB_KEY}   (tap-hub --certs DIR)");
    eprintln!("  the workers: {CA_CERT} {WORKER_CERT} {WORKER_KEY}   (tap-worker --certs DIR)");
    eprintln!("  the CA's private key was not kept: to renew, generate a new set");
    Ok(())
}
