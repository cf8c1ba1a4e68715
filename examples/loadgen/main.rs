//! A load generator built on coreloop's own outbound connections.
//!
//! ```text
//! cargo run --release --example loadgen -- echo --addr A [--conns C] [--inflight P]
//!     [--size S] [--duration D] [--warmup W] [--count N]
//! cargo run --release --example loadgen -- connrate --addr A [--clients K] [--duration D] [--warmup W]
//! cargo run --release --example loadgen -- hold --addr A --conns N [--hold T] [--sources K]
//! cargo run --release --example loadgen -- pubsub --addr A --conns N [--inflight W] [--size S]
//!     [--duration D] [--warmup W]
//! common: [--reactors R] [--server-pid PID] [--json] [--proxy-header v1|v2] [--tls-ca PEM]
//! ```
//!
//! - `echo`: C connections, P messages of S bytes in flight on each; every echoed
//!   byte is verified. Measures for D seconds after a W-second warm-up (or sends
//!   exactly N messages per connection with `--count`). Reports msgs/s, MB/s and
//!   p50/p99/p99.9 round-trip latency.
//! - `connrate`: K clients each looping connect → one 64-byte echo → close.
//!   Reports cycles/s and cycle latency.
//! - `hold`: N connections, each verified with one echo, then held idle T seconds;
//!   with `--sources K` they come from K source addresses 127.0.0.1 … 127.0.0.K
//!   (one address reaches one server port from about 28,000 ports at most).
//!   With `--server-pid` reports the server's resident memory per connection.
//! - `pubsub`: against a Redis-protocol server (the kv example): N subscribers on
//!   one channel, one publisher keeping at most W messages (default 8) on their
//!   way to all of them; every delivered byte is checked. Reports messages fanned
//!   out per second and deliveries per second (`pubsub.rs`).
//!
//! With `--tls-ca PEM` (feature `tls`) the echo, connrate and hold modes speak
//! TLS, trusting that certificate: each connect is then a TCP connect and a TLS
//! handshake, and `on_open` runs once the handshake is done.
//!
//! With `--server-pid PID` it also reports that process's CPU time per operation
//! over the measured window (from `/proc/PID/stat`: user + system, and user alone).
//! Output is a table, or one JSON line with `--json`. Exit status 1 if any byte was
//! wrong or any connection failed — the run stops at the first such failure, it
//! does not wait out its window — and 2 for a bad option.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod pubsub;
#[path = "../support/tls.rs"]
mod tls;

use bytes::{Buf, Bytes, BytesMut};
use coreloop::{CloseReason, Context, Endpoint, Handler, ReactorContext, Server};

const USAGE: &str = "\
usage: loadgen echo --addr A [--conns C] [--inflight P] [--size S] [--duration D]
                    [--warmup W] [--count N]
       loadgen connrate --addr A [--clients K] [--duration D] [--warmup W]
       loadgen hold --addr A --conns N [--hold T] [--sources K]
       loadgen pubsub --addr A --conns N [--inflight W] [--size S] [--duration D] [--warmup W]
common options: [--reactors R] [--server-pid PID] [--json] [--proxy-header v1|v2] [--tls-ca PEM]

Modes:
  echo        C connections, P messages of S bytes in flight on each (defaults 1, 1,
              64); every echoed byte is verified; measures D seconds (default 5) after
              a W-second warm-up (default 1), or exactly N messages per connection
  connrate    K clients (default 8) each looping connect, one 64-byte echo, close
  hold        N connections verified with one echo, then held idle T seconds (default
              1), from K source addresses 127.0.0.1..127.0.0.K (default 1)
  pubsub      against a Redis-protocol server (the kv example): N subscribers on one
              channel, one publisher with at most W messages (default 8) of S bytes
              on their way to all of them; reports messages fanned out per second

Options:
  --addr A          the server (default 127.0.0.1:7878)
  --reactors R      client reactor threads (default 1)
  --server-pid PID  also report that process's CPU time (and memory) per operation
  --json            one JSON line instead of a table
  --proxy-header V  open each connection with a PROXY protocol header, v1 or v2 (for a
                    server behind a balancer: `echo --proxy-protocol required`)
  --tls-ca PEM      speak TLS (feature `tls`; echo, connrate, hold), trusting this
                    certificate; --tls-name NAME checks it for NAME, not the address
  -h, --help        print this help

Exit status: 0 clean, 1 a byte was wrong or a connection failed (the run stops at
once), 2 a bad option.";

/// The v2 header HAProxy's `send-proxy-v2` sends for a TCP over IPv4 client
/// (192.0.2.10:40000 to 127.0.0.1:7878), without TLVs: 28 bytes.
const PROXY_V2: &[u8] = &[
    b'\r', b'\n', b'\r', b'\n', 0, b'\r', b'\n', b'Q', b'U', b'I', b'T', b'\n', // signature
    0x21, 0x11, 0, 12, // version 2, PROXY; TCP over IPv4; 12 address bytes
    192, 0, 2, 10, 127, 0, 0, 1, // source, destination
    0x9c, 0x40, 0x1e, 0xc6, // ports 40000, 7878
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Echo,
    ConnRate,
    Hold,
    PubSub,
}

#[derive(Debug, Clone)]
struct Cfg {
    mode: Mode,
    addr: SocketAddr,
    reactors: usize,
    conns: usize,
    inflight: usize,
    size: usize,
    duration: f64,
    warmup: f64,
    count: Option<u64>,
    hold: f64,
    sources: u8,
    server_pid: Option<u32>,
    json: bool,
    /// A PROXY protocol header to open each connection with (connrate), in
    /// the same write as its first message, as a balancer sends it.
    proxy_header: Option<Bytes>,
    /// TLS for every connection (`--tls-ca`).
    tls: Option<tls::ClientTls>,
}

/// Opens one connection on `reactor`: TLS with `--tls-ca`, plain otherwise.
fn dial(cfg: &Cfg, handle: &coreloop::Handle, reactor: usize, tag: u64) -> coreloop::Result<()> {
    #[cfg(feature = "tls")]
    if let Some((config, name)) = &cfg.tls {
        return handle.connect_tls_on(reactor, cfg.addr, Arc::clone(config), name.clone(), tag);
    }
    handle.connect_on(reactor, cfg.addr, tag)
}

/// What every client reactor adds to.
#[derive(Default)]
struct Totals {
    measuring: AtomicBool,
    stop: AtomicBool,
    ops: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    verified: AtomicU64,
    closed: AtomicU64,
    latencies: Mutex<Vec<u32>>,
}

struct Client {
    cfg: Arc<Cfg>,
    totals: Arc<Totals>,
    payload: Bytes,
    base: Instant,
    latencies: Vec<u32>,
}

struct Conn {
    sent_at: VecDeque<Instant>,
    /// Bytes of the current message received so far.
    offset: usize,
    /// Messages still to send (count mode).
    left: u64,
    /// When this connection's connect started (connrate).
    started: Option<Instant>,
}

impl Client {
    fn send(&self, conn: &mut Conn, cx: &mut Context<'_>) {
        cx.write(&self.payload);
        conn.sent_at.push_back(Instant::now());
        conn.left = conn.left.saturating_sub(1);
    }

    fn flush_latencies(&mut self) {
        if !self.latencies.is_empty() {
            let mut all = self.totals.latencies.lock().unwrap();
            all.append(&mut self.latencies);
        }
    }
}

impl Handler for Client {
    type Conn = Conn;

    fn on_open(&mut self, cx: &mut Context<'_>) -> Conn {
        let started = match cx.origin() {
            coreloop::Origin::Connected { tag } if self.cfg.mode == Mode::ConnRate => {
                Some(self.base + Duration::from_nanos(tag))
            }
            _ => None,
        };
        let mut conn = Conn {
            sent_at: VecDeque::with_capacity(self.cfg.inflight),
            offset: 0,
            left: self.cfg.count.unwrap_or(u64::MAX),
            started,
        };
        if let Some(header) = &self.cfg.proxy_header {
            cx.write(header); // goes out with the first message, in one write
        }
        let first = if self.cfg.mode == Mode::Echo {
            self.cfg.inflight
        } else {
            1
        };
        for _ in 0..first {
            self.send(&mut conn, cx);
        }
        conn
    }

    fn on_data(&mut self, conn: &mut Conn, cx: &mut Context<'_>, input: &mut BytesMut) {
        let size = self.payload.len();
        while !input.is_empty() {
            let take = input.len().min(size - conn.offset);
            if input[..take] != self.payload[conn.offset..conn.offset + take] {
                self.totals.errors.fetch_add(1, Relaxed);
                return cx.close();
            }
            conn.offset += take;
            input.advance(take);
            if conn.offset < size {
                break;
            }
            conn.offset = 0;
            let sent = conn.sent_at.pop_front().unwrap_or_else(Instant::now);
            let measuring = self.totals.measuring.load(Relaxed);
            match self.cfg.mode {
                Mode::Echo => {
                    if measuring {
                        self.totals.ops.fetch_add(1, Relaxed);
                        self.totals.bytes.fetch_add(size as u64, Relaxed);
                        self.latencies
                            .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    if conn.left > 0 && !self.totals.stop.load(Relaxed) {
                        self.send(conn, cx);
                    } else if conn.sent_at.is_empty() && self.cfg.count.is_some() {
                        cx.close();
                    }
                }
                Mode::ConnRate => {
                    if measuring {
                        self.totals.ops.fetch_add(1, Relaxed);
                        let since = conn.started.unwrap_or(sent).elapsed();
                        self.latencies.push(since.as_micros().min(u32::MAX as u128) as u32);
                    }
                    cx.close();
                }
                Mode::Hold => {
                    self.totals.verified.fetch_add(1, Relaxed);
                }
                Mode::PubSub => unreachable!("pubsub runs its own client (pubsub.rs)"),
            }
        }
    }

    fn on_close(&mut self, _conn: Conn, cx: &mut Context<'_>, why: CloseReason) {
        self.totals.closed.fetch_add(1, Relaxed);
        if !matches!(why, CloseReason::Local | CloseReason::Shutdown) {
            self.totals.errors.fetch_add(1, Relaxed);
        }
        if self.cfg.mode == Mode::ConnRate && !self.totals.stop.load(Relaxed) {
            let tag = self.base.elapsed().as_nanos() as u64;
            let _ = dial(&self.cfg, cx.handle(), cx.reactor(), tag);
        }
        self.flush_latencies();
    }

    fn on_shutdown(&mut self, _conn: &mut Conn, _cx: &mut Context<'_>) {
        self.flush_latencies();
    }

    fn on_connect_error(
        &mut self,
        cx: &mut ReactorContext<'_, Self::Conn>,
        _tag: u64,
        to: &Endpoint,
        error: std::io::Error,
    ) {
        if self.totals.stop.load(Relaxed) {
            // Our own shutdown ended a connect still in progress (connrate mode):
            // not the server's failure.
            return;
        }
        self.totals.errors.fetch_add(1, Relaxed);
        eprintln!("loadgen: connect to {to} failed: {error}");
        if self.cfg.mode == Mode::ConnRate {
            let _ = dial(
                &self.cfg,
                cx.handle(),
                cx.reactor(),
                self.base.elapsed().as_nanos() as u64,
            );
        }
    }
}

/// CPU ticks (user, system) and resident KiB of a process.
fn proc_sample(pid: u32) -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((f[11].parse().ok()?, f[12].parse().ok()?, rss))
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while !cond() {
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn run(cfg: Cfg) -> Result<bool, String> {
    let cfg = Arc::new(cfg);
    let totals = Arc::new(Totals::default());
    let payload = Bytes::from((0..cfg.size).map(|i| (i * 31 + 7) as u8).collect::<Vec<u8>>());
    let base = Instant::now();
    let engine = Server::builder()
        .reactors(cfg.reactors)
        .start(|_| Client {
            cfg: Arc::clone(&cfg),
            totals: Arc::clone(&totals),
            payload: payload.clone(),
            base,
            latencies: Vec::new(),
        })
        .map_err(|e| e.to_string())?;
    let handle = engine.handle();
    let server_before = cfg.server_pid.and_then(proc_sample);
    let began = Instant::now();

    let conns = cfg.conns;
    // With --count every message counts, the first ones too: measuring starts
    // before the first connect (not after the last, when some connection may
    // have finished already).
    if cfg.count.is_some() {
        totals.measuring.store(true, Relaxed);
    }
    // Connect in batches so the server's backlog is never overrun.
    for start in (0..conns).step_by(500) {
        for i in start..(start + 500).min(conns) {
            let tag = base.elapsed().as_nanos() as u64;
            if cfg.sources > 1 {
                let from = SocketAddr::from(([127, 0, 0, 1 + (i % cfg.sources as usize) as u8], 0));
                handle.connect_from(cfg.addr, from, tag).map_err(|e| e.to_string())?;
            } else {
                dial(&cfg, &handle, i % cfg.reactors, tag).map_err(|e| e.to_string())?;
            }
        }
        if cfg.mode == Mode::Hold {
            let want = (start + 500).min(conns) as u64;
            let t = &totals;
            wait_until(Duration::from_secs(30), || {
                t.verified.load(Relaxed) + t.errors.load(Relaxed) >= want
            });
        }
    }

    let (secs, before, after) = if cfg.mode == Mode::Hold {
        let ok = wait_until(Duration::from_secs(60), || {
            totals.verified.load(Relaxed) + totals.errors.load(Relaxed) >= conns as u64
        });
        if !ok {
            return Err("timed out waiting for every connection to be verified".into());
        }
        let after = cfg.server_pid.and_then(proc_sample);
        std::thread::sleep(Duration::from_secs_f64(cfg.hold));
        (cfg.hold, server_before, after)
    } else if let Some(count) = cfg.count {
        let expect = conns as u64;
        let t = &totals;
        let limit = Duration::from_secs(600);
        if !wait_until(limit, || t.closed.load(Relaxed) >= expect || t.errors.load(Relaxed) > 0) {
            return Err(format!(
                "timed out after {limit:?} sending {count} messages per connection"
            ));
        }
        (
            began.elapsed().as_secs_f64(),
            server_before,
            cfg.server_pid.and_then(proc_sample),
        )
    } else {
        // A failure ends the run at once: its figures would not mean anything.
        let failed = || totals.errors.load(Relaxed) > 0;
        wait_until(Duration::from_secs_f64(cfg.warmup), failed);
        let before = cfg.server_pid.and_then(proc_sample);
        let start = Instant::now();
        totals.measuring.store(true, Relaxed);
        if !failed() {
            wait_until(Duration::from_secs_f64(cfg.duration), failed);
        }
        totals.measuring.store(false, Relaxed);
        let secs = start.elapsed().as_secs_f64();
        (secs, before, cfg.server_pid.and_then(proc_sample))
    };
    totals.stop.store(true, Relaxed);
    let report = engine.shutdown(Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let _ = report;

    let ops = match cfg.mode {
        Mode::Hold => totals.verified.load(Relaxed),
        _ => totals.ops.load(Relaxed),
    };
    let errors = totals.errors.load(Relaxed);
    let mut lat = std::mem::take(&mut *totals.latencies.lock().unwrap());
    lat.sort_unstable();
    let mode = match cfg.mode {
        Mode::Echo => "echo",
        Mode::ConnRate => "connrate",
        Mode::Hold => "hold",
        Mode::PubSub => unreachable!("pubsub reports for itself"),
    };
    let per_sec = ops as f64 / secs;
    let mb = totals.bytes.load(Relaxed) as f64 / secs / 1e6;
    let (p50, p99, p999) = (percentile(&lat, 0.5), percentile(&lat, 0.99), percentile(&lat, 0.999));
    // Server CPU per operation, in microseconds (100 ticks per second).
    let cpu = match (before, after) {
        (Some(b), Some(a)) if ops > 0 => Some((
            ((a.0 + a.1) - (b.0 + b.1)) as f64 * 10_000.0 / ops as f64,
            (a.0 - b.0) as f64 * 10_000.0 / ops as f64,
            (a.2 as f64 - b.2 as f64) * 1024.0 / ops.max(1) as f64,
        )),
        _ => None,
    };
    if cfg.json {
        let cpu_json = cpu.map_or(String::new(), |(t, u, m)| {
            format!(
                ",\"server_cpu_us_per_op\":{t:.3},\"server_user_us_per_op\":{u:.3},\"server_rss_bytes_per_op\":{m:.1}"
            )
        });
        println!(
            "{{\"mode\":\"{mode}\",\"conns\":{},\"inflight\":{},\"size\":{},\"secs\":{secs:.3},\"ops\":{ops},\"ops_per_s\":{per_sec:.1},\"mb_per_s\":{mb:.2},\"p50_us\":{p50},\"p99_us\":{p99},\"p999_us\":{p999},\"errors\":{errors}{cpu_json}}}",
            cfg.conns, cfg.inflight, cfg.size
        );
    } else {
        println!(
            "mode       {mode} (conns {}, in flight {}, size {} B)",
            cfg.conns, cfg.inflight, cfg.size
        );
        println!("window     {secs:.2} s, {ops} operations, {errors} errors");
        println!("rate       {per_sec:.0} ops/s, {mb:.2} MB/s");
        println!("latency    p50 {p50} us, p99 {p99} us, p99.9 {p999} us");
        if let Some((t, u, m)) = cpu {
            if cfg.mode == Mode::Hold {
                println!("server     {m:.0} bytes of RSS per held connection");
            } else {
                println!("server     {t:.2} us CPU per op ({u:.2} us user)");
            }
        }
    }
    Ok(errors == 0)
}

/// The configuration, or `None` when help was asked for.
fn parse() -> Result<Option<Cfg>, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mode = match parser.next().map_err(|e| e.to_string())? {
        Some(Value(v)) => match v.to_string_lossy().as_ref() {
            "echo" => Mode::Echo,
            "connrate" => Mode::ConnRate,
            "hold" => Mode::Hold,
            "pubsub" => Mode::PubSub,
            other => return Err(format!("unknown mode '{other}' (echo, connrate, hold, pubsub)")),
        },
        Some(Short('h') | Long("help")) => return Ok(None),
        _ => return Err("a mode is required: echo, connrate, hold or pubsub".into()),
    };
    let mut cfg = Cfg {
        mode,
        addr: SocketAddr::from(([127, 0, 0, 1], 7878)),
        reactors: 1,
        conns: if mode == Mode::ConnRate { 8 } else { 1 },
        inflight: if mode == Mode::PubSub { 8 } else { 1 },
        size: 64,
        duration: 5.0,
        warmup: 1.0,
        count: None,
        hold: 1.0,
        sources: 1,
        server_pid: None,
        json: false,
        proxy_header: None,
        tls: None,
    };
    let mut tls_args = tls::TlsArgs::default();
    fn num<T: std::str::FromStr>(p: &mut lexopt::Parser, name: &str) -> Result<T, String> {
        let v = p.value().map_err(|e| e.to_string())?;
        let v = v.to_string_lossy();
        v.parse().map_err(|_| format!("invalid value '{v}' for {name}"))
    }
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("addr") => cfg.addr = num(&mut parser, "--addr")?,
            Long("reactors") => cfg.reactors = num(&mut parser, "--reactors")?,
            Long("conns") | Long("clients") => cfg.conns = num(&mut parser, "--conns")?,
            Long("inflight") => cfg.inflight = num(&mut parser, "--inflight")?,
            Long("size") => cfg.size = num(&mut parser, "--size")?,
            Long("duration") => cfg.duration = num(&mut parser, "--duration")?,
            Long("warmup") => cfg.warmup = num(&mut parser, "--warmup")?,
            Long("count") => cfg.count = Some(num(&mut parser, "--count")?),
            Long("hold") => cfg.hold = num(&mut parser, "--hold")?,
            Long("sources") => cfg.sources = num(&mut parser, "--sources")?,
            Long("server-pid") => cfg.server_pid = Some(num(&mut parser, "--server-pid")?),
            Long("json") => cfg.json = true,
            Long("proxy-header") => {
                let v: String = num(&mut parser, "--proxy-header")?;
                cfg.proxy_header = Some(match v.as_str() {
                    "v1" => Bytes::from_static(b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 7878\r\n"),
                    "v2" => Bytes::from_static(PROXY_V2),
                    other => return Err(format!("invalid version '{other}' for --proxy-header (v1 or v2)")),
                });
            }
            Long(name) if name.starts_with("tls-") => {
                let name = name.to_string();
                tls_args.take(&name, &mut parser)?;
            }
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    cfg.tls = tls::client(&tls_args, cfg.addr.ip())?;
    if cfg.tls.is_some() && (cfg.mode == Mode::PubSub || cfg.sources > 1) {
        return Err("--tls-ca is for the echo, connrate and hold modes, from one source address".into());
    }
    if cfg.conns == 0 {
        return Err("--conns (or --clients) must be at least 1".into());
    }
    if cfg.size == 0 || cfg.inflight == 0 || cfg.reactors == 0 || cfg.sources == 0 || cfg.sources > 254 {
        return Err("--size, --inflight, --reactors and --sources (up to 254) must be at least 1".into());
    }
    let seconds = |s: f64| (0.0..=1e6).contains(&s);
    if !(seconds(cfg.duration) && cfg.duration > 0.0 && seconds(cfg.warmup) && seconds(cfg.hold))
        || cfg.count == Some(0)
    {
        return Err(
            "--duration must be more than 0, --warmup and --hold 0 or more (all at most 1e6 seconds); --count at least 1"
                .into(),
        );
    }
    Ok(Some(cfg))
}

fn main() -> ExitCode {
    let cfg = match parse() {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: {e} (try --help)");
            return ExitCode::from(2);
        }
    };
    let result = if cfg.mode == Mode::PubSub {
        pubsub::run(
            pubsub::Cfg {
                addr: cfg.addr,
                reactors: cfg.reactors,
                subscribers: cfg.conns,
                window: cfg.inflight as u64,
                size: cfg.size,
                duration: cfg.duration,
                warmup: cfg.warmup,
                server_pid: cfg.server_pid,
                json: cfg.json,
            },
            proc_sample,
        )
    } else {
        run(cfg)
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
