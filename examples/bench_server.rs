//! One echo server of a chosen kind, for side-by-side measurements: coreloop, the
//! tokio baseline, or the raw-mio reference (see `benches/support/servers.rs`).
//! `scripts/bench.sh` runs one of each against `examples/loadgen.rs`.
//!
//! ```text
//! cargo run --release --example bench_server -- --kind coreloop|coreloop-leastconn|coreloop-reuseport|tokio|mio [--threads N] [--addr A]
//! cargo run --release --example bench_server --features tls -- --kind coreloop-tls|coreloop-tls-reuseport|tokio-tls --tls-ca-out PEM [--threads N] [--addr A]
//! ```
//!
//! Prints `listening on ADDR with N reactors` (threads, for tokio and mio), serves
//! until SIGINT or SIGTERM, then exits with status 0. The TLS kinds serve a
//! self-signed certificate made at start (TLS 1.3, ECDSA P-256), written to the
//! `--tls-ca-out` file for the client (`loadgen --tls-ca PEM`).

#[path = "support/cli.rs"]
mod cli;
#[path = "../benches/support/servers.rs"]
mod servers;

use std::net::SocketAddr;
use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn value(parser: &mut lexopt::Parser, name: &str) -> Result<String, String> {
    let v = parser.value().map_err(|e| e.to_string())?;
    v.into_string().map_err(|_| format!("invalid {name}"))
}

struct Args {
    kind: servers::Kind,
    threads: usize,
    addr: SocketAddr,
    /// Where the TLS kinds write their certificate.
    ca_out: Option<std::path::PathBuf>,
}

const USAGE: &str =
    "usage: bench_server --kind coreloop|coreloop-leastconn|coreloop-reuseport|tokio|mio [--threads N] [--addr A]
       bench_server --kind coreloop-tls|coreloop-tls-reuseport|tokio-tls --tls-ca-out PEM [--threads N] [--addr A]   (feature tls)";

fn parse() -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut ca_out = None;
    let mut kind = servers::Kind::Coreloop;
    let mut threads = num_cpus::get();
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("kind") => {
                let v = value(&mut parser, "--kind")?;
                kind = servers::Kind::parse(&v).ok_or(format!(
                    "unknown kind '{v}' (coreloop, coreloop-leastconn, coreloop-reuseport, tokio, mio, coreloop-tls, coreloop-tls-reuseport, tokio-tls)"
                ))?;
            }
            Long("threads") => {
                threads = value(&mut parser, "--threads")?
                    .parse()
                    .map_err(|_| "invalid --threads")?;
            }
            Long("addr") => addr = value(&mut parser, "--addr")?.parse().map_err(|_| "invalid --addr")?,
            Long("tls-ca-out") => ca_out = Some(value(&mut parser, "--tls-ca-out")?.into()),
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if kind.is_tls() != ca_out.is_some() {
        return Err(
            "--tls-ca-out goes with the TLS kinds (coreloop-tls, coreloop-tls-reuseport, tokio-tls), and they need it"
                .into(),
        );
    }
    Ok(Args {
        kind,
        threads,
        addr,
        ca_out,
    })
}

/// Writes the TLS servers' certificate where the client will read it.
#[cfg(feature = "tls")]
fn write_ca(path: &std::path::Path) -> Result<(), String> {
    std::fs::write(path, servers::tls::cert_pem()).map_err(|e| format!("--tls-ca-out {}: {e}", path.display()))
}

#[cfg(not(feature = "tls"))]
fn write_ca(_: &std::path::Path) -> Result<(), String> {
    Err("the TLS kinds need the `tls` feature: cargo run --release --example bench_server --features tls -- …".into())
}

fn main() -> ExitCode {
    let Args {
        kind,
        threads,
        addr,
        ca_out,
    } = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = ca_out
        && let Err(e) = write_ca(&path)
    {
        eprintln!("bench_server: {e}");
        return ExitCode::from(2);
    }
    let mut signals = Signals::new([SIGINT, SIGTERM]).expect("install signal handlers");
    let server = match servers::Running::start(kind, threads, addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "bench_server: cannot start the {} server on {addr}: {}",
                kind.name(),
                cli::one_line(&e)
            );
            return ExitCode::from(2);
        }
    };
    println!("listening on {} with {threads} reactors", server.addr());
    signals.forever().next();
    server.stop();
    ExitCode::SUCCESS
}
