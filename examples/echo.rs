//! The echo server: every byte a client sends comes back, byte-exact.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example echo -- [--addr 127.0.0.1:7878] [--reactors N]
//! ```
//!
//! Once listening it prints `listening on ADDR with N reactors` on stdout. SIGINT or
//! SIGTERM shuts it down gracefully; it then prints one line of counters per reactor
//! on stderr and exits with status 0. A bad option prints one line and exits with 2.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::BytesMut;
use coreloop::{Context, Handler, Server};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const USAGE: &str = "\
usage: echo [--addr ADDR] [--reactors N]

Options:
  --addr ADDR      address to listen on (default 127.0.0.1:7878; port 0 picks one)
  --reactors N     reactor threads (default: the CPU count)
  -h, --help       print this help";

/// How long a shutdown may spend flushing output still queued for clients.
const GRACE: Duration = Duration::from_secs(5);

struct Echo;

impl Handler for Echo {
    type Conn = ();

    fn on_open(&mut self, _cx: &mut Context<'_>) {}

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        cx.write(input);
        input.clear();
    }
}

struct Args {
    addr: SocketAddr,
    reactors: usize,
}

fn parse_args() -> Result<Option<Args>, String> {
    use lexopt::prelude::*;
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 7878)),
        reactors: num_cpus::get(),
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("addr") => {
                let v = parser.value().map_err(|e| e.to_string())?;
                let v = v.to_string_lossy();
                args.addr = v.parse().map_err(|_| format!("invalid address '{v}' for --addr"))?;
            }
            Long("reactors") => {
                let v = parser.value().map_err(|e| e.to_string())?;
                let v = v.to_string_lossy();
                args.reactors = v.parse().map_err(|_| format!("invalid number '{v}' for --reactors"))?;
            }
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Some(args))
}

/// The error and its causes on one line: "failed to bind 1.2.3.4:80: permission denied".
fn one_line(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("echo: {e} (try --help)");
            return ExitCode::from(2);
        }
    };
    // Register the signals before listening, so a signal right after the banner is
    // never lost.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::builder()
        .reactors(args.reactors)
        .bind(args.addr)
        .start(|_| Echo)
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "listening on {} with {} reactors",
        server.local_addrs()[0],
        args.reactors
    );
    let _ = stdout.flush();
    drop(stdout);

    let handle = server.handle();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            handle.shutdown(GRACE);
        }
    });
    match server.join() {
        Ok(report) => {
            for r in &report.reactors {
                eprintln!(
                    "reactor {}: accepted={} closed={} bytes_in={} bytes_out={}",
                    r.reactor, r.accepted, r.closed, r.bytes_in, r.bytes_out
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}
