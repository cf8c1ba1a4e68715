//! `loadgen pubsub`: fan-out load on a Redis-protocol server (the kv example).
//!
//! N subscribers on one channel and one publisher. The publisher keeps at most
//! `window` messages published and not yet delivered to every subscriber (so the
//! server's queues stay bounded, and the rate measured is the rate at which the
//! server fans out); every byte a subscriber receives is checked against the
//! frame it must be. Reports messages fanned out per second (each to all N),
//! deliveries per second, and the server's CPU time per message and per delivery.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use coreloop::{CloseReason, ConnId, Context, Endpoint, Handler, Origin, ReactorContext, Server};

const CHANNEL: &str = "bench";
/// The publisher's connect tag; subscribers have 0.
const PUBLISHER: u64 = 1;

#[derive(Debug, Clone)]
pub struct Cfg {
    pub addr: std::net::SocketAddr,
    pub reactors: usize,
    pub subscribers: usize,
    pub window: u64,
    pub size: usize,
    pub duration: f64,
    pub warmup: f64,
    pub server_pid: Option<u32>,
    pub json: bool,
}

#[derive(Default)]
struct Counts {
    subscribed: AtomicU64,
    /// Messages received, over all subscribers.
    delivered: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
    publisher: Mutex<Option<ConnId>>,
}

struct Load {
    counts: Arc<Counts>,
    subscribers: u64,
    window: u64,
    /// The PUBLISH request, the subscription confirmation and the message frame
    /// a subscriber must receive.
    publish: Bytes,
    subscribe: Bytes,
    confirm: Bytes,
    frame: Bytes,
}

enum Role {
    /// Bytes of the expected stream (confirmation, then frames) seen so far.
    Subscriber { offset: u64 },
    /// Messages published so far.
    Publisher { sent: u64 },
}

impl Load {
    /// Publishes while fewer than `window` messages are on their way.
    fn pump(&self, sent: &mut u64, cx: &mut Context<'_>) {
        if self.counts.stop.load(Relaxed) {
            return;
        }
        let complete = self.counts.delivered.load(Relaxed) / self.subscribers;
        while *sent < complete + self.window {
            cx.write(&self.publish);
            *sent += 1;
        }
    }

    /// Checks `input` against the expected stream from `offset`; counts frames.
    fn receive(&self, offset: &mut u64, cx: &mut Context<'_>, input: &[u8]) {
        let (confirm, frame) = (self.confirm.len() as u64, self.frame.len() as u64);
        for &b in input {
            let expected = if *offset < confirm {
                self.confirm[*offset as usize]
            } else {
                self.frame[((*offset - confirm) % frame) as usize]
            };
            if b != expected {
                self.counts.errors.fetch_add(1, Relaxed);
                return cx.close();
            }
            *offset += 1;
            if *offset == confirm {
                self.counts.subscribed.fetch_add(1, Relaxed);
            } else if *offset > confirm && (*offset - confirm).is_multiple_of(frame) {
                let delivered = self.counts.delivered.fetch_add(1, Relaxed) + 1;
                // The delivery that completes a message lets the publisher go on.
                if delivered.is_multiple_of(self.subscribers)
                    && let Some(publisher) = *self.counts.publisher.lock().unwrap()
                {
                    let _ = cx.handle().message(publisher, ());
                }
            }
        }
    }
}

impl Handler for Load {
    type Conn = Role;

    fn on_open(&mut self, cx: &mut Context<'_>) -> Role {
        if cx.origin() == (Origin::Connected { tag: PUBLISHER }) {
            *self.counts.publisher.lock().unwrap() = Some(cx.id());
            let mut sent = 0;
            self.pump(&mut sent, cx);
            return Role::Publisher { sent };
        }
        cx.write(&self.subscribe);
        Role::Subscriber { offset: 0 }
    }

    fn on_data(&mut self, role: &mut Role, cx: &mut Context<'_>, input: &mut BytesMut) {
        match role {
            Role::Subscriber { offset } => self.receive(offset, cx, input),
            Role::Publisher { sent } => {
                if input.first() == Some(&b'-') {
                    self.counts.errors.fetch_add(1, Relaxed);
                }
                self.pump(sent, cx);
            }
        }
        input.clear();
    }

    fn on_message(&mut self, role: &mut Role, cx: &mut Context<'_>, _: ()) {
        if let Role::Publisher { sent } = role {
            self.pump(sent, cx);
        }
    }

    fn on_close(&mut self, _role: Role, _cx: &mut Context<'_>, why: CloseReason) {
        if !matches!(why, CloseReason::Local | CloseReason::Shutdown) {
            self.counts.errors.fetch_add(1, Relaxed);
        }
    }

    fn on_connect_error(
        &mut self,
        _cx: &mut ReactorContext<'_, Role>,
        _tag: u64,
        to: &Endpoint,
        error: std::io::Error,
    ) {
        if !self.counts.stop.load(Relaxed) {
            self.counts.errors.fetch_add(1, Relaxed);
            eprintln!("loadgen: connect to {to} failed: {error}");
        }
    }
}

fn resp(args: &[&[u8]]) -> Bytes {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out.into()
}

/// Runs the load; `Ok(false)` if anything failed.
pub fn run(cfg: Cfg, cpu: impl Fn(u32) -> Option<(u64, u64, u64)>) -> Result<bool, String> {
    let payload: Vec<u8> = (0..cfg.size).map(|i| b'a' + (i % 26) as u8).collect();
    let channel = CHANNEL.as_bytes();
    let counts = Arc::new(Counts::default());
    let n = cfg.subscribers as u64;
    let engine = Server::builder()
        .reactors(cfg.reactors)
        .max_output(64 << 20)
        .start(|_| Load {
            counts: Arc::clone(&counts),
            subscribers: n,
            window: cfg.window,
            publish: resp(&[b"PUBLISH", channel, &payload]),
            subscribe: resp(&[b"SUBSCRIBE", channel]),
            confirm: Bytes::from(format!(
                "*3\r\n$9\r\nsubscribe\r\n${}\r\n{CHANNEL}\r\n:1\r\n",
                channel.len()
            )),
            frame: resp(&[b"message", channel, &payload]),
        })
        .map_err(|e| e.to_string())?;
    let handle = engine.handle();
    let failed = || counts.errors.load(Relaxed) > 0;
    // Subscribe in batches, so the server's backlog is never overrun.
    for start in (0..cfg.subscribers).step_by(500) {
        let end = (start + 500).min(cfg.subscribers);
        for _ in start..end {
            handle.connect(cfg.addr, 0).map_err(|e| e.to_string())?;
        }
        if !crate::wait_until(Duration::from_secs(30), || {
            counts.subscribed.load(Relaxed) >= end as u64 || failed()
        }) {
            return Err(format!(
                "only {} of {end} subscribers confirmed",
                counts.subscribed.load(Relaxed)
            ));
        }
        if failed() {
            return Err("a subscriber failed".into());
        }
    }
    handle.connect(cfg.addr, PUBLISHER).map_err(|e| e.to_string())?;
    crate::wait_until(Duration::from_secs_f64(cfg.warmup), failed);
    let before = cfg.server_pid.and_then(&cpu);
    let (start, delivered0) = (Instant::now(), counts.delivered.load(Relaxed));
    crate::wait_until(Duration::from_secs_f64(cfg.duration), failed);
    let (secs, deliveries) = (
        start.elapsed().as_secs_f64(),
        counts.delivered.load(Relaxed) - delivered0,
    );
    let after = cfg.server_pid.and_then(&cpu);
    counts.stop.store(true, Relaxed);
    engine.shutdown(Duration::from_secs(2)).map_err(|e| e.to_string())?;

    let messages = deliveries as f64 / n as f64;
    let errors = counts.errors.load(Relaxed);
    let server_cpu = match (before, after) {
        (Some(b), Some(a)) if deliveries > 0 => Some(((a.0 + a.1) - (b.0 + b.1)) as f64 * 10_000.0),
        _ => None,
    };
    if cfg.json {
        let cpu_json = server_cpu.map_or(String::new(), |us| {
            format!(
                ",\"server_cpu_us_per_message\":{:.1},\"server_cpu_ns_per_delivery\":{:.1}",
                us / messages,
                us * 1000.0 / deliveries as f64
            )
        });
        println!(
            "{{\"mode\":\"pubsub\",\"subscribers\":{n},\"window\":{},\"size\":{},\"secs\":{secs:.3},\"messages_per_s\":{:.1},\"deliveries_per_s\":{:.0},\"errors\":{errors}{cpu_json}}}",
            cfg.window,
            cfg.size,
            messages / secs,
            deliveries as f64 / secs
        );
    } else {
        println!(
            "mode       pubsub ({n} subscribers, window {}, {} B payload)",
            cfg.window, cfg.size
        );
        println!("window     {secs:.2} s, {messages:.0} messages fanned out, {errors} errors");
        println!(
            "rate       {:.0} messages/s to every subscriber, {:.0} deliveries/s",
            messages / secs,
            deliveries as f64 / secs
        );
        if let Some(us) = server_cpu {
            println!(
                "server     {:.1} us CPU per message, {:.0} ns per delivery",
                us / messages,
                us * 1000.0 / deliveries as f64
            );
        }
    }
    Ok(errors == 0)
}
