//! A key-value and publish/subscribe server speaking RESP2, the Redis protocol:
//! unmodified Redis clients work with it — `redis-cli` (interactive and
//! `--pipe`), `redis-benchmark`, client libraries.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example kv -- [--addr 127.0.0.1:6379] [--reactors N]
//!     [--maxmemory BYTES] [--max-bulk BYTES] [--max-clients N] [--timeout SECS]
//!     [--fanout broadcast|send] [--log LEVEL]
//! redis-cli -p 6379 set greeting hello
//! ```
//!
//! Commands: PING, ECHO, SET (EX, PX, NX, XX, KEEPTTL), GET, DEL, EXISTS, INCR,
//! INCRBY, DECR, DECRBY, MGET, MSET, EXPIRE, PEXPIRE, TTL, PTTL, PERSIST, DBSIZE,
//! FLUSHALL, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, QUIT, and what clients send on
//! start: COMMAND (answered with no docs), CONFIG GET, CLIENT SETNAME/GETNAME/ID,
//! HELLO (RESP2 only: `HELLO 3` is refused as Redis refuses an unknown version,
//! and clients fall back). Unknown commands and wrong arity get Redis's errors.
//!
//! Bounded like the rest of coreloop: requests (`--max-bulk`, at most 1,048,576
//! arguments, 64 MiB in all; `-ERR Protocol error: …` and a close, as Redis
//! does), the keyspace (`--maxmemory`, default 1 GiB: writes past it get
//! `-OOM`), output held for a subscriber that does not read (32 MiB, then it is
//! disconnected), connections (`--max-clients`).
//!
//! Once listening it prints `listening on ADDR with N reactors`; SIGINT or SIGTERM
//! shuts it down and it exits with status 0. How it is built is the crate
//! documentation's chapter "Writing a protocol".

#[path = "../support/cli.rs"]
mod cli;
mod handler;
mod resp;
mod store;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use coreloop::Server;

use handler::{Fanout, Kv, Shared};

const USAGE: &str = "\
usage: kv [--addr ADDR] [--reactors N] [--maxmemory BYTES] [--max-bulk BYTES]
          [--max-clients N] [--timeout SECS] [--fanout broadcast|send] [--log LEVEL]

Options:
  --addr ADDR         address to listen on (default 127.0.0.1:6379; port 0 picks one)
  --reactors N        reactor threads (default: the CPU count)
  --maxmemory BYTES   keyspace size past which writes get -OOM (default 1073741824)
  --max-bulk BYTES    longest argument accepted (default 16777216)
  --max-clients N     most connections at once; more wait in the backlog (default 10000)
  --timeout SECS      close clients idle this long, 0 = never (default 0, as Redis)
  --fanout MODE       how PUBLISH reaches subscribers: broadcast (one message per
                      reactor, default) or send (one Handle::send per subscriber)
  --log LEVEL         off, error, warn (default), info, debug, trace
  -h, --help          print this help";

struct Args {
    addr: SocketAddr,
    reactors: usize,
    maxmemory: usize,
    max_bulk: usize,
    max_clients: usize,
    timeout: u64,
    fanout: Fanout,
    log: Option<log::LevelFilter>,
}

/// The most arguments in one request (Redis accepts up to 2^31; a bound keeps a
/// hostile header from costing anything).
const MAX_ARGS: usize = 1024 * 1024;
/// The most input one request may take before it is complete.
const MAX_REQUEST: usize = 64 * 1024 * 1024;
/// Output held for a subscriber that does not read before it is disconnected.
const MAX_OUTPUT: usize = 32 * 1024 * 1024;

fn parse_args() -> Result<Option<Args>, String> {
    use lexopt::prelude::*;
    fn value<T: std::str::FromStr>(p: &mut lexopt::Parser, option: &str) -> Result<T, String> {
        let v = p.value().map_err(|e| e.to_string())?;
        let v = v.to_string_lossy();
        v.parse().map_err(|_| format!("invalid value '{v}' for {option}"))
    }
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 6379)),
        reactors: num_cpus::get(),
        maxmemory: 1 << 30,
        max_bulk: 16 << 20,
        max_clients: 10_000,
        timeout: 0,
        fanout: Fanout::Broadcast,
        log: None,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("addr") => args.addr = value(&mut parser, "--addr")?,
            Long("reactors") => args.reactors = value(&mut parser, "--reactors")?,
            Long("maxmemory") => args.maxmemory = value(&mut parser, "--maxmemory")?,
            Long("max-bulk") => args.max_bulk = value(&mut parser, "--max-bulk")?,
            Long("max-clients") => args.max_clients = value(&mut parser, "--max-clients")?,
            Long("timeout") => args.timeout = value(&mut parser, "--timeout")?,
            Long("fanout") => {
                args.fanout = match value::<String>(&mut parser, "--fanout")?.as_str() {
                    "broadcast" => Fanout::Broadcast,
                    "send" => Fanout::Send,
                    other => return Err(format!("invalid mode '{other}' for --fanout (broadcast or send)")),
                }
            }
            Long("log") => args.log = Some(value(&mut parser, "--log")?),
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if args.max_bulk == 0 || args.max_bulk > MAX_REQUEST {
        return Err(format!("--max-bulk must be 1 to {MAX_REQUEST}"));
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kv: {e} (try --help)");
            return ExitCode::from(2);
        }
    };
    cli::init_logging(args.log);
    let signals = match cli::signals("kv") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let limits = resp::Limits {
        max_bulk: args.max_bulk,
        max_args: MAX_ARGS,
    };
    let shared = Arc::new(Shared::new(
        store::Store::new(args.maxmemory),
        limits,
        args.fanout,
        args.reactors,
    ));
    let idle = (args.timeout > 0).then(|| Duration::from_secs(args.timeout));
    let started = Server::builder()
        .reactors(args.reactors)
        .max_connections(args.max_clients)
        .max_input(MAX_REQUEST)
        .max_output(MAX_OUTPUT)
        .idle_timeout(idle)
        .bind(args.addr)
        .start(|_| Kv::new(Arc::clone(&shared)));
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kv: {}", cli::one_line(&e));
            return ExitCode::from(2);
        }
    };
    cli::banner(&server.local_addrs()[0].to_string(), args.reactors);
    cli::shutdown_on_signal(signals, server.handle(), Duration::from_secs(5));
    match server.join() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv: {}", cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
