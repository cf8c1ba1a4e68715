//! The echo server: every byte a client sends comes back, byte-exact.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example echo -- [--addr 127.0.0.1:7878] [--unix PATH]
//!     [--listen-fds] [--reactors N] [--max-conns N] [--idle-timeout SECS] [--grace SECS]
//!     [--distribution round-robin|least-conn|reuseport] [--backlog N] [--pin-cores]
//!     [--stats-interval SECS] [--proxy-protocol off|optional|required]
//!     [--trusted-proxies CIDR,…] [--handover PATH]
//!     [--tls-cert PEM --tls-key PEM | --tls-self-signed] [--log LEVEL]
//! ```
//!
//! Once listening it prints `listening on ADDR with N reactors` on stdout (several
//! listeners are joined by `, `; a Unix socket shows as `unix:PATH`). SIGINT or
//! SIGTERM shuts it down gracefully (queued output is flushed for up to the grace
//! period); it then prints one line of counters per reactor on stderr and exits with
//! status 0. A bad option prints one line and exits with 2.
//!
//! It is safe to expose as it is: connections are capped, idle ones time out, and
//! the library's back-pressure and input limits are on. Warnings (such as accept
//! back-off when descriptors run out) go to stderr; `--log LEVEL` or `RUST_LOG` sets
//! the level: `info` logs one line per connection naming its client (the one a
//! PROXY header named, behind a load balancer), `trace` every connection's open
//! and close. With `--stats-interval SECS` it prints the per-reactor stats table
//! to stderr every SECS seconds.
//!
//! Behind a load balancer that sends the PROXY protocol (HAProxy `send-proxy-v2`,
//! nginx `proxy_protocol on`), `--proxy-protocol required` (or `optional`) reads
//! the header, and `--trusted-proxies` says which peers may send one.
//!
//! With `--handover PATH`, restarts drop nothing: a new `echo` started with the
//! same `--handover PATH` takes the listening sockets over from the running one
//! (the connections waiting in their accept queue included), and the old one
//! stops accepting, lets its clients finish for up to `--grace` seconds, and
//! exits with status 0.
//!
//! With the `tls` feature, `--tls-cert PEM --tls-key PEM` serves TLS with that
//! certificate chain and key, and `--tls-self-signed` with a certificate made at
//! start for localhost, 127.0.0.1 and ::1, whose SHA-256 fingerprint it prints on
//! stderr (compare it with what `openssl s_client` shows):
//!
//! ```text
//! cargo run --release --example echo --features tls -- --tls-self-signed
//! openssl s_client -connect 127.0.0.1:7878 -quiet
//! ```

#[path = "support/cli.rs"]
mod cli;
#[path = "support/tls.rs"]
mod tls;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::BytesMut;
use std::sync::mpsc::RecvTimeoutError;

use coreloop::{Context, Distribution, Handler, Listen, ProxyProtocol, Server};

const USAGE: &str = "\
usage: echo [--addr ADDR] [--unix PATH] [--listen-fds] [--reactors N] [--max-conns N]
            [--idle-timeout SECS] [--grace SECS] [--distribution STRATEGY] [--backlog N]
            [--pin-cores] [--stats-interval SECS] [--proxy-protocol MODE]
            [--trusted-proxies CIDR,...] [--handover PATH]
            [--tls-cert PEM --tls-key PEM | --tls-self-signed] [--log LEVEL]

Options:
  --addr ADDR          TCP address to listen on (default 127.0.0.1:7878 unless --unix or
                       --listen-fds is given; port 0 picks one)
  --unix PATH          also (or only) listen on a Unix domain socket at PATH
  --listen-fds         also (or only) serve the sockets a service manager passed (LISTEN_FDS)
  --reactors N         reactor threads (default: the CPU count)
  --max-conns N        most connections open at once; more wait in the backlog (default 10000)
  --idle-timeout SECS  close connections idle this long, 0 = never (default 60)
  --grace SECS         on SIGINT/SIGTERM, flush queued output this long at most (default 5)
  --distribution STRATEGY
                       how connections are spread over reactors: round-robin (default),
                       least-conn, or reuseport (one SO_REUSEPORT listener per reactor;
                       TCP --addr only)
  --backlog N          listen backlog (default 1024, capped by net.core.somaxconn)
  --pin-cores          pin reactor i to CPU i (reactors beyond the CPU count run unpinned)
  --stats-interval SECS
                       print the per-reactor stats table to stderr every SECS seconds
  --proxy-protocol MODE
                       connections start with a PROXY protocol header (v1 or v2) from
                       a load balancer: off (default), optional, or required
  --trusted-proxies CIDR,...
                       peers that may send a PROXY header (default: any); with
                       optional, others' bytes are their own; with required, refused
  --tls-cert PEM        serve TLS (feature `tls`) with the certificate chain in PEM …
  --tls-key PEM         … and its private key (PKCS#8, PKCS#1 or SEC1, PEM)
  --tls-self-signed     serve TLS with a certificate made at start for localhost, 127.0.0.1
                       and ::1; its SHA-256 fingerprint is printed on stderr
  --handover PATH      zero-downtime restart: take the listening sockets over from the
                       echo serving at PATH, if any (it then drains for up to --grace
                       seconds and exits), and hand them over in turn to the next
  --log LEVEL          log level: off, error, warn, info (a line per connection, naming
                       its client), debug, trace (default warn; overrides RUST_LOG)
  -h, --help           print this help

Environment: RUST_LOG sets the log level when --log is not given.";

struct Echo;

impl Handler for Echo {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Context<'_>) {
        match cx.proxy() {
            Some(p) => log::info!("echo: {} serves {} (via {})", cx.id(), cx.peer_addr(), p.balancer()),
            None => log::info!("echo: {} serves {}", cx.id(), cx.peer_addr()),
        }
    }

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        cx.write(input);
        input.clear();
    }
}

struct Args {
    addr: Option<SocketAddr>,
    unix: Option<std::path::PathBuf>,
    listen_fds: bool,
    reactors: usize,
    max_conns: usize,
    idle_timeout: u64,
    grace: u64,
    distribution: Distribution,
    backlog: u32,
    pin_cores: bool,
    stats_interval: Option<Duration>,
    log: Option<log::LevelFilter>,
    proxy: ProxyProtocol,
    trusted: Vec<coreloop::ipnet::IpNet>,
    handover: Option<std::path::PathBuf>,
    tls: tls::TlsArgs,
}

fn distribution(parser: &mut lexopt::Parser) -> Result<Distribution, String> {
    let v = parser.value().map_err(|e| e.to_string())?;
    match v.to_string_lossy().as_ref() {
        "round-robin" => Ok(Distribution::RoundRobin),
        "least-conn" => Ok(Distribution::LeastConnections),
        "reuseport" => Ok(Distribution::ReusePort),
        other => Err(format!(
            "invalid strategy '{other}' for --distribution (round-robin, least-conn or reuseport)"
        )),
    }
}

/// Parses an option's value, naming the option in the error.
fn value<T: std::str::FromStr>(parser: &mut lexopt::Parser, option: &str, what: &str) -> Result<T, String> {
    let v = parser.value().map_err(|e| e.to_string())?;
    let v = v.to_string_lossy();
    v.parse().map_err(|_| format!("invalid {what} '{v}' for {option}"))
}

fn parse_args() -> Result<Option<Args>, String> {
    use lexopt::prelude::*;
    let mut args = Args {
        addr: None,
        unix: None,
        listen_fds: false,
        reactors: num_cpus::get(),
        max_conns: 10_000,
        idle_timeout: 60,
        grace: 5,
        distribution: Distribution::RoundRobin,
        backlog: coreloop::Builder::DEFAULT_BACKLOG,
        pin_cores: false,
        stats_interval: None,
        log: None,
        proxy: ProxyProtocol::Off,
        trusted: Vec::new(),
        handover: None,
        tls: tls::TlsArgs::default(),
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long(name) if name.starts_with("tls-") => {
                let name = name.to_string();
                args.tls.take(&name, &mut parser)?;
            }
            Long("addr") => args.addr = Some(value(&mut parser, "--addr", "address")?),
            Long("unix") => args.unix = Some(parser.value().map_err(|e| e.to_string())?.into()),
            Long("listen-fds") => args.listen_fds = true,
            Long("reactors") => args.reactors = value(&mut parser, "--reactors", "number")?,
            Long("max-conns") => args.max_conns = value(&mut parser, "--max-conns", "number")?,
            Long("idle-timeout") => args.idle_timeout = value(&mut parser, "--idle-timeout", "number of seconds")?,
            Long("grace") => args.grace = value(&mut parser, "--grace", "number of seconds")?,
            Long("distribution") => args.distribution = distribution(&mut parser)?,
            Long("backlog") => args.backlog = value(&mut parser, "--backlog", "number")?,
            Long("pin-cores") => args.pin_cores = true,
            Long("stats-interval") => {
                let secs: f64 = value(&mut parser, "--stats-interval", "number of seconds")?;
                if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
                    return Err(format!(
                        "--stats-interval must be more than 0 and at most 86400, not {secs}"
                    ));
                }
                args.stats_interval = Some(Duration::from_secs_f64(secs));
            }
            Long("handover") => args.handover = Some(value(&mut parser, "--handover", "path")?),
            Long("log") => args.log = Some(value(&mut parser, "--log", "level")?),
            Long("proxy-protocol") => {
                let v: String = value(&mut parser, "--proxy-protocol", "mode")?;
                args.proxy = match v.as_str() {
                    "off" => ProxyProtocol::Off,
                    "optional" => ProxyProtocol::Optional,
                    "required" => ProxyProtocol::Required,
                    other => {
                        return Err(format!(
                            "invalid mode '{other}' for --proxy-protocol (off, optional or required)"
                        ));
                    }
                };
            }
            Long("trusted-proxies") => {
                let v: String = value(&mut parser, "--trusted-proxies", "list")?;
                for net in v.split(',').filter(|n| !n.is_empty()) {
                    let parsed = net.parse().or_else(|_| net.parse::<std::net::IpAddr>().map(Into::into));
                    args.trusted
                        .push(parsed.map_err(|_| format!("invalid network '{net}' for --trusted-proxies"))?);
                }
            }
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if args.addr.is_none() && args.unix.is_none() && !args.listen_fds {
        args.addr = Some(SocketAddr::from(([127, 0, 0, 1], 7878)));
    }
    Ok(Some(args))
}

/// A listener with the PROXY protocol settings of the command line.
/// A listener with the PROXY protocol and TLS settings of the command line.
#[cfg_attr(not(feature = "tls"), allow(clippy::let_unit_value, unused_variables))]
fn listen(listen: Listen, args: &Args, tls: Option<&Tls>) -> Listen {
    let listen = listen
        .proxy_protocol(args.proxy)
        .trusted_proxies(args.trusted.iter().copied());
    #[cfg(feature = "tls")]
    if let Some(acceptor) = tls {
        return listen.tls(acceptor.clone());
    }
    listen
}

#[cfg(feature = "tls")]
type Tls = coreloop::TlsAcceptor;
#[cfg(not(feature = "tls"))]
type Tls = ();

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
    cli::init_logging(args.log);
    let serves_tls = args.tls.serves();
    let tls = match tls::server(&args.tls, "echo") {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("echo: {e}");
            return ExitCode::from(2);
        }
    };
    let signals = match cli::signals("echo") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let idle = (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout));
    let mut builder = Server::builder()
        .reactors(args.reactors)
        .max_connections(args.max_conns)
        .idle_timeout(idle)
        .distribution(args.distribution)
        .backlog(args.backlog)
        .pin_cores(args.pin_cores);
    if let Some(path) = &args.handover {
        builder = builder.handover(path, Duration::from_secs(args.grace));
    }
    if let Some(addr) = args.addr {
        builder = builder.listen(listen(Listen::tcp(addr), &args, tls.as_ref()));
    }
    if let Some(path) = &args.unix {
        builder = builder.listen(listen(Listen::unix(path), &args, tls.as_ref()));
    }
    if args.listen_fds {
        builder = builder.listen(listen(Listen::listen_fds(), &args, tls.as_ref()));
    }
    let started = builder.start(|_| Echo);
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: {}", cli::one_line(&e));
            return ExitCode::from(2);
        }
    };
    let endpoints: Vec<String> = server.endpoints().iter().map(ToString::to_string).collect();
    cli::banner(&endpoints.join(", "), args.reactors);
    let stats_handle = server.handle();
    cli::shutdown_on_signal(signals, server.handle(), Duration::from_secs(args.grace));
    // The stats printer ends once the server has stopped (`stop` dropped), before
    // the exit lines are printed.
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let printer = args.stats_interval.map(|every| {
        std::thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                eprint!("{}", stats_handle.stats());
            }
        })
    });
    let joined = server.join();
    drop(stop);
    if let Some(printer) = printer {
        let _ = printer.join();
    }
    match joined {
        Ok(report) => {
            for r in &report.stats.reactors {
                // With TLS, the handshakes done and the TLS errors too.
                let tls = if serves_tls {
                    format!(" tls_handshakes={} tls_errors={}", r.tls_handshakes, r.tls_errors)
                } else {
                    String::new()
                };
                eprintln!(
                    "reactor {}: accepted={} closed={} bytes_in={} bytes_out={} panics={} proxy_errors={}{tls}",
                    r.reactor, r.accepted, r.closed, r.bytes_in, r.bytes_out, r.panics, r.proxy_errors
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo: {}", cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
