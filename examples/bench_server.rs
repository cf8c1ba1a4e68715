//! One echo server of a chosen kind, for side-by-side measurements: coreloop, the
//! tokio baseline, or the raw-mio reference (see `benches/support/servers.rs`).
//! `scripts/bench.sh` runs one of each against `examples/loadgen.rs`.
//!
//! ```text
//! cargo run --release --example bench_server -- --kind coreloop|coreloop-leastconn|coreloop-reuseport|tokio|mio [--threads N] [--addr A]
//! ```
//!
//! Prints `listening on ADDR with N reactors` (threads, for tokio and mio), serves
//! until SIGINT or SIGTERM, then exits with status 0.

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

fn parse() -> Result<(servers::Kind, usize, SocketAddr), String> {
    use lexopt::prelude::*;
    let mut kind = servers::Kind::Coreloop;
    let mut threads = num_cpus::get();
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("kind") => {
                let v = value(&mut parser, "--kind")?;
                kind = servers::Kind::parse(&v).ok_or(format!(
                    "unknown kind '{v}' (coreloop, coreloop-leastconn, coreloop-reuseport, tokio, mio)"
                ))?;
            }
            Long("threads") => {
                threads = value(&mut parser, "--threads")?
                    .parse()
                    .map_err(|_| "invalid --threads")?;
            }
            Long("addr") => addr = value(&mut parser, "--addr")?.parse().map_err(|_| "invalid --addr")?,
            Long("help") | Short('h') => {
                println!(
                    "usage: bench_server --kind coreloop|coreloop-leastconn|coreloop-reuseport|tokio|mio [--threads N] [--addr A]"
                );
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok((kind, threads, addr))
}

fn main() -> ExitCode {
    let (kind, threads, addr) = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_server: {e}");
            return ExitCode::from(2);
        }
    };
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
