//! The `Handler`: commands, publish/subscribe, and the expiry sweep.
//!
//! - **Framing**: `on_data` parses requests out of `input` and leaves a partial
//!   one there (resumed on the next call). Before each request it asks
//!   `cx.is_writable()`: a client that pipelines thousands of `GET`s of large
//!   values and reads late gets its replies as fast as it reads them, and the
//!   server holds about a high watermark of output for it, not the replies to
//!   every request it sent.
//! - **Publish/subscribe**: each reactor keeps its own subscribers; `PUBLISH`
//!   encodes the message once and broadcasts it, one cross-thread message per
//!   reactor, each writing it to its local subscribers (the frame is shared, not
//!   copied). `--fanout send` does it the other way, one `Handle::send` per
//!   subscriber, for comparison.
//! - **Expiry**: every reactor sweeps its share of the keyspace every 100 ms on a
//!   reactor timer; reads check expiry themselves, so a key is never seen after
//!   its time.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use coreloop::{CloseReason, ConnId, Context, Handler, ReactorContext};

use crate::resp::{self, Limits, Request};
use crate::store::{Condition, IncrError, Store, Ttl};

/// How a `PUBLISH` reaches the subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanout {
    /// One message per reactor (`Handle::broadcast`); each writes to its own.
    Broadcast,
    /// One `Handle::send` per subscriber, from the publishing reactor.
    Send,
}

/// Messages between reactors.
#[derive(Debug, Clone)]
pub enum Msg {
    /// Write `frame` to this reactor's subscribers of `channel`.
    Publish { channel: Bytes, frame: Bytes },
}

/// Subscribers per channel, across reactors: counted for `PUBLISH`'s reply, and
/// listed in `--fanout send` mode.
#[derive(Debug, Default)]
struct Channel {
    subscribers: usize,
    members: Vec<ConnId>,
}

/// What every reactor's handler shares.
#[derive(Debug)]
pub struct Shared {
    pub store: Store,
    pub limits: Limits,
    pub fanout: Fanout,
    pub reactors: usize,
    channels: Mutex<HashMap<Bytes, Channel>>,
    next_client: AtomicU64,
}

impl Shared {
    pub fn new(store: Store, limits: Limits, fanout: Fanout, reactors: usize) -> Self {
        Self {
            store,
            limits,
            fanout,
            reactors,
            channels: Mutex::default(),
            next_client: AtomicU64::new(1),
        }
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, Channel>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One per reactor.
pub struct Kv {
    shared: Arc<Shared>,
    /// This reactor's subscribers, by channel.
    local: HashMap<Bytes, Vec<ConnId>>,
}

/// Per connection.
#[derive(Debug, Default)]
pub struct Client {
    id: u64,
    req: Request,
    /// Channels subscribed to. Boxed on purpose: most connections never
    /// subscribe, and 8 bytes per connection beat a 48-byte empty set.
    #[allow(clippy::box_collection)]
    subscriptions: Option<Box<HashSet<Bytes>>>,
    name: Option<Bytes>,
}

/// How often each reactor sweeps its share of the keyspace for expired keys.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// Keys deleted per shard per sweep at most: the rest wait for the next one.
const SWEEP_BUDGET: usize = 1000;

impl Kv {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            local: HashMap::new(),
        }
    }
}

/// A request's arguments, as slices of the input.
struct Args<'a> {
    buf: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    fn len(&self) -> usize {
        self.ranges.len()
    }
    fn get(&self, i: usize) -> &'a [u8] {
        &self.buf[self.ranges[i].clone()]
    }
    fn from(&self, i: usize) -> impl Iterator<Item = &'a [u8]> + '_ {
        (i..self.len()).map(move |j| self.get(j))
    }
}

type Cx<'c, 'a> = &'c mut Context<'a, Msg>;

/// What a command asks of the connection.
enum After {
    Continue,
    Quit,
}

impl Handler<Msg> for Kv {
    type Conn = Client;

    fn on_start(&mut self, cx: &mut ReactorContext<'_, Client, Msg>) {
        // A failure only leaves expired keys to the readers, who check anyway.
        let _ = cx.set_timer(SWEEP_EVERY, 0);
    }

    fn on_reactor_timer(&mut self, cx: &mut ReactorContext<'_, Client, Msg>, _tag: u64) {
        let shared = &self.shared;
        shared
            .store
            .sweep(cx.reactor(), shared.reactors, SWEEP_BUDGET, Instant::now());
        let _ = cx.set_timer(SWEEP_EVERY, 0);
    }

    fn on_open(&mut self, _cx: &mut Context<'_, Msg>) -> Client {
        Client {
            id: self.shared.next_client.fetch_add(1, Ordering::Relaxed),
            ..Client::default()
        }
    }

    fn on_data(&mut self, c: &mut Client, cx: &mut Context<'_, Msg>, input: &mut BytesMut) {
        // One clock read for all the requests of this call, as Redis caches its
        // time per loop turn.
        let now = Instant::now();
        // Flow control: a request is taken only while the connection can take
        // its reply; the rest waits in `input` and comes back when output drains.
        while !input.is_empty() && cx.is_writable() {
            match c.req.parse(input, &self.shared.limits) {
                Ok(false) => return, // a partial request: more bytes will come
                Ok(true) => {
                    let len = c.req.len();
                    let ranges = std::mem::take(&mut c.req.args);
                    let after = if ranges.is_empty() {
                        After::Continue // `*0` or a blank line: nothing to run
                    } else {
                        let args = Args {
                            buf: input,
                            ranges: &ranges,
                        };
                        self.execute(c, cx, &args, now)
                    };
                    c.req.args = ranges;
                    c.req.clear();
                    input.advance(len);
                    if let After::Quit = after {
                        input.clear();
                        return cx.close();
                    }
                }
                Err(e) => {
                    e.write_to(cx);
                    input.clear();
                    return cx.close();
                }
            }
        }
    }

    fn on_reactor_message(&mut self, cx: &mut ReactorContext<'_, Client, Msg>, msg: Msg) {
        let Msg::Publish { channel, frame } = msg;
        if let Some(ids) = self.local.get(&channel) {
            for &id in ids {
                cx.write_bytes(id, frame.clone());
            }
        }
    }

    fn on_limit(&mut self, _c: &mut Client, cx: &mut Context<'_, Msg>, why: CloseReason) {
        if why == CloseReason::InputLimit {
            resp::error(cx, "ERR Protocol error: request too large");
        }
    }

    fn on_close(&mut self, c: Client, cx: &mut Context<'_, Msg>, _why: CloseReason) {
        if let Some(channels) = c.subscriptions {
            for channel in channels.iter() {
                self.leave(channel, cx.id());
            }
        }
    }
}

impl Kv {
    fn execute(&mut self, c: &mut Client, cx: Cx<'_, '_>, a: &Args<'_>, now: Instant) -> After {
        let name = a.get(0);
        let mut lower = [0u8; 16];
        let cmd = if name.len() <= lower.len() {
            lower[..name.len()].copy_from_slice(name);
            lower[..name.len()].make_ascii_lowercase();
            &lower[..name.len()]
        } else {
            b"" // no command name is that long
        };
        if c.subscriptions.is_some() && !matches!(cmd, b"subscribe" | b"unsubscribe" | b"ping" | b"quit") {
            write!(
                cx,
                "-ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
                String::from_utf8_lossy(cmd)
            );
            return After::Continue;
        }
        // Arity as Redis states it: n exactly, or -n at least n.
        let arity: i32 = match cmd {
            b"get" | b"incr" | b"decr" | b"ttl" | b"pttl" | b"persist" | b"echo" => 2,
            b"incrby" | b"decrby" | b"expire" | b"pexpire" | b"publish" => 3,
            b"set" | b"mset" => -3,
            b"del" | b"exists" | b"mget" | b"subscribe" | b"config" | b"client" => -2,
            b"ping" | b"quit" | b"unsubscribe" | b"command" | b"hello" | b"flushall" => -1,
            b"dbsize" => 1,
            _ => return unknown(cx, a),
        };
        let n = a.len() as i32;
        let mset_pairs = cmd == b"mset" && n % 2 == 0;
        if (arity > 0 && n != arity) || (arity < 0 && n < -arity) || mset_pairs || (cmd == b"ping" && n > 2) {
            write!(
                cx,
                "-ERR wrong number of arguments for '{}' command\r\n",
                String::from_utf8_lossy(cmd)
            );
            return After::Continue;
        }
        let store = &self.shared.store;
        match cmd {
            b"get" => store.read(a.get(1), now, |v| resp::bulk_or_nil(cx, v)),
            b"set" => self.set(cx, a, now),
            b"del" => resp::int(cx, store.del(a.from(1), now)),
            b"exists" => resp::int(cx, store.exists(a.from(1), now)),
            b"incr" => incr(cx, store.incr_by(a.get(1), 1, now)),
            b"decr" => incr(cx, store.incr_by(a.get(1), -1, now)),
            b"incrby" | b"decrby" => match resp::parse_i64(a.get(2)) {
                Some(d) if cmd == b"incrby" => incr(cx, store.incr_by(a.get(1), d, now)),
                Some(d) => match d.checked_neg() {
                    Some(d) => incr(cx, store.incr_by(a.get(1), d, now)),
                    None => resp::error(cx, "ERR decrement would overflow"),
                },
                None => resp::error(cx, "ERR value is not an integer or out of range"),
            },
            b"mget" => {
                resp::array(cx, a.len() - 1);
                for key in a.from(1) {
                    store.read(key, now, |v| resp::bulk_or_nil(cx, v));
                }
            }
            b"mset" => {
                for i in (1..a.len()).step_by(2) {
                    if store.set(a.get(i), a.get(i + 1), None, Condition::Always, now).is_err() {
                        return oom(cx);
                    }
                }
                resp::ok(cx);
            }
            b"expire" | b"pexpire" => {
                let unit = if cmd == b"expire" { 1000 } else { 1 };
                let Some(n) = resp::parse_i64(a.get(2)) else {
                    resp::error(cx, "ERR value is not an integer or out of range");
                    return After::Continue;
                };
                let Some(at) = deadline(now, n, unit) else {
                    write!(
                        cx,
                        "-ERR invalid expire time in '{}' command\r\n",
                        String::from_utf8_lossy(cmd)
                    );
                    return After::Continue;
                };
                resp::int(cx, i64::from(store.expire(a.get(1), Some(at), now)));
            }
            b"ttl" | b"pttl" => match store.ttl(a.get(1), now) {
                Ttl::NoKey => resp::int(cx, -2),
                Ttl::Forever => resp::int(cx, -1),
                Ttl::Left(d) if cmd == b"ttl" => resp::int(cx, ((d.as_millis() + 500) / 1000) as i64),
                Ttl::Left(d) => resp::int(cx, d.as_millis() as i64),
            },
            b"persist" => resp::int(cx, i64::from(store.persist(a.get(1), now))),
            b"dbsize" => resp::int(cx, store.len() as i64),
            b"flushall" => {
                store.clear();
                resp::ok(cx);
            }
            b"echo" => resp::bulk_slice(cx, a.get(1)),
            b"ping" => match (c.subscriptions.is_some(), a.len()) {
                (false, 1) => cx.write(b"+PONG\r\n"),
                (false, _) => resp::bulk_slice(cx, a.get(1)),
                (true, n) => {
                    cx.write(b"*2\r\n$4\r\npong\r\n");
                    resp::bulk_slice(cx, if n > 1 { a.get(1) } else { b"" });
                }
            },
            b"publish" => self.publish(cx, a.get(1), a.get(2)),
            b"subscribe" => self.subscribe(c, cx, a),
            b"unsubscribe" => self.unsubscribe(c, cx, a),
            b"quit" => {
                resp::ok(cx);
                return After::Quit;
            }
            b"command" => resp::array(cx, 0), // no command docs: clients do without
            b"config" => config(cx, a),
            b"client" => client(c, cx, a),
            b"hello" => hello(c, cx, a),
            _ => unreachable!("every command with an arity is handled"),
        }
        After::Continue
    }

    /// `SET key value [NX|XX] [EX seconds|PX milliseconds|KEEPTTL]`.
    fn set(&mut self, cx: Cx<'_, '_>, a: &Args<'_>, now: Instant) {
        let (mut cond, mut expires, mut keep_ttl, mut seen_expiry) = (Condition::Always, None, false, false);
        let mut i = 3;
        while i < a.len() {
            let opt = a.get(i);
            let next = (i + 1 < a.len()).then(|| a.get(i + 1));
            if opt.eq_ignore_ascii_case(b"nx") && cond != Condition::IfPresent {
                cond = Condition::IfAbsent;
            } else if opt.eq_ignore_ascii_case(b"xx") && cond != Condition::IfAbsent {
                cond = Condition::IfPresent;
            } else if opt.eq_ignore_ascii_case(b"keepttl") && !seen_expiry {
                keep_ttl = true;
                seen_expiry = true;
            } else if (opt.eq_ignore_ascii_case(b"ex") || opt.eq_ignore_ascii_case(b"px"))
                && !seen_expiry
                && next.is_some()
            {
                seen_expiry = true;
                let unit = if opt.eq_ignore_ascii_case(b"ex") { 1000 } else { 1 };
                let Some(n) = next.and_then(resp::parse_i64) else {
                    return resp::error(cx, "ERR value is not an integer or out of range");
                };
                match deadline(now, n, unit) {
                    Some(at) if n > 0 => expires = Some(at),
                    _ => return resp::error(cx, "ERR invalid expire time in 'set' command"),
                }
                i += 1;
            } else {
                return resp::error(cx, "ERR syntax error");
            }
            i += 1;
        }
        let store = &self.shared.store;
        if keep_ttl && let Ttl::Left(d) = store.ttl(a.get(1), now) {
            expires = Some(now + d);
        }
        match store.set(a.get(1), a.get(2), expires, cond, now) {
            Ok(true) => resp::ok(cx),
            Ok(false) => resp::nil(cx),
            Err(_) => {
                oom(cx);
            }
        }
    }

    fn publish(&mut self, cx: Cx<'_, '_>, channel: &[u8], payload: &[u8]) {
        let frame = resp::message_frame(channel, payload);
        let (count, members) = {
            let channels = self.shared.channels();
            match channels.get(channel) {
                Some(ch) => (
                    ch.subscribers,
                    (self.shared.fanout == Fanout::Send).then(|| ch.members.clone()),
                ),
                None => (0, None),
            }
        };
        if count > 0 {
            match members {
                // One cross-thread message per reactor; each writes to its own.
                None => {
                    let channel = Bytes::copy_from_slice(channel);
                    let _ = cx.handle().broadcast(Msg::Publish { channel, frame });
                }
                Some(ids) => {
                    for id in ids {
                        let _ = cx.handle().send(id, frame.clone());
                    }
                }
            }
        }
        resp::int(cx, count as i64);
    }

    fn subscribe(&mut self, c: &mut Client, cx: Cx<'_, '_>, a: &Args<'_>) {
        let subs = c.subscriptions.get_or_insert_with(Box::default);
        for channel in a.from(1) {
            if !subs.contains(channel) {
                let channel = Bytes::copy_from_slice(channel);
                subs.insert(channel.clone());
                self.local.entry(channel.clone()).or_default().push(cx.id());
                let mut channels = self.shared.channels();
                let ch = channels.entry(channel).or_default();
                ch.subscribers += 1;
                if self.shared.fanout == Fanout::Send {
                    ch.members.push(cx.id());
                }
            }
            cx.write(b"*3\r\n$9\r\nsubscribe\r\n");
            resp::bulk_slice(cx, channel);
            resp::int(cx, subs.len() as i64);
        }
    }

    fn unsubscribe(&mut self, c: &mut Client, cx: Cx<'_, '_>, a: &Args<'_>) {
        let named: Vec<Bytes> = if a.len() > 1 {
            a.from(1).map(Bytes::copy_from_slice).collect()
        } else {
            c.subscriptions.iter().flat_map(|s| s.iter().cloned()).collect()
        };
        if named.is_empty() {
            cx.write(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
        }
        for channel in named {
            if let Some(subs) = &mut c.subscriptions
                && subs.remove(&channel)
            {
                self.leave(&channel, cx.id());
            }
            let left = c.subscriptions.as_ref().map_or(0, |s| s.len());
            cx.write(b"*3\r\n$11\r\nunsubscribe\r\n");
            resp::bulk_slice(cx, &channel);
            resp::int(cx, left as i64);
        }
        if c.subscriptions.as_ref().is_some_and(|s| s.is_empty()) {
            c.subscriptions = None; // back to normal commands
        }
    }

    /// Connection `id` no longer listens on `channel`.
    fn leave(&mut self, channel: &Bytes, id: ConnId) {
        if let Some(ids) = self.local.get_mut(channel) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.local.remove(channel);
            }
        }
        let mut channels = self.shared.channels();
        if let Some(ch) = channels.get_mut(channel) {
            ch.subscribers -= 1;
            ch.members.retain(|&i| i != id);
            if ch.subscribers == 0 {
                channels.remove(channel);
            }
        }
    }
}

/// An expiry time `n` units (1000: seconds, 1: milliseconds) from now; `None`
/// when it overflows, as Redis refuses it. A time in the past deletes the key.
fn deadline(now: Instant, n: i64, unit: i64) -> Option<Instant> {
    let ms = n.checked_mul(unit)?;
    if ms <= 0 {
        return Some(now); // already due
    }
    now.checked_add(Duration::from_millis(ms as u64))
}

fn incr(cx: Cx<'_, '_>, result: Result<i64, IncrError>) {
    match result {
        Ok(n) => resp::int(cx, n),
        Err(IncrError::NotAnInteger) => resp::error(cx, "ERR value is not an integer or out of range"),
        Err(IncrError::Overflow) => resp::error(cx, "ERR increment or decrement would overflow"),
        Err(IncrError::OutOfMemory) => {
            oom(cx);
        }
    }
}

fn oom(cx: Cx<'_, '_>) -> After {
    resp::error(cx, "OOM command not allowed when used memory > 'maxmemory'.");
    After::Continue
}

/// Redis's reply to a command it does not know: the name as sent, and the
/// beginning of the arguments.
fn unknown(cx: Cx<'_, '_>, a: &Args<'_>) -> After {
    let mut args = String::new();
    for arg in a.from(1) {
        if args.len() >= 128 {
            break;
        }
        args.push('\'');
        args.push_str(&String::from_utf8_lossy(arg));
        args.push_str("' ");
    }
    write!(
        cx,
        "-ERR unknown command '{}', with args beginning with: {args}\r\n",
        String::from_utf8_lossy(a.get(0))
    );
    After::Continue
}

/// `CONFIG GET` for what `redis-benchmark` asks on start (persistence is off).
fn config(cx: Cx<'_, '_>, a: &Args<'_>) {
    if !a.get(1).eq_ignore_ascii_case(b"get") || a.len() != 3 {
        write!(
            cx,
            "-ERR unknown subcommand '{}'. Try CONFIG HELP.\r\n",
            String::from_utf8_lossy(a.get(1))
        );
        return;
    }
    let param = a.get(2).to_ascii_lowercase();
    let value: Option<&[u8]> = match &param[..] {
        b"save" => Some(b""),
        b"appendonly" => Some(b"no"),
        _ => None,
    };
    match value {
        Some(v) => {
            resp::array(cx, 2);
            resp::bulk_slice(cx, &param);
            resp::bulk_slice(cx, v);
        }
        None => resp::array(cx, 0),
    }
}

/// `CLIENT SETNAME`, `GETNAME`, `ID`.
fn client(c: &mut Client, cx: Cx<'_, '_>, a: &Args<'_>) {
    let sub = a.get(1).to_ascii_lowercase();
    match (&sub[..], a.len()) {
        (b"setname", 3) if !a.get(2).iter().any(|b| b.is_ascii_whitespace()) => {
            c.name = (!a.get(2).is_empty()).then(|| Bytes::copy_from_slice(a.get(2)));
            resp::ok(cx);
        }
        (b"setname", 3) => resp::error(
            cx,
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ),
        (b"getname", 2) => resp::bulk_or_nil(cx, c.name.as_ref()),
        (b"id", 2) => resp::int(cx, c.id as i64),
        _ => write!(
            cx,
            "-ERR unknown subcommand '{}'. Try CLIENT HELP.\r\n",
            String::from_utf8_lossy(a.get(1))
        ),
    }
}

/// `HELLO [protover]`: only RESP2 is spoken, so `HELLO 3` is refused the way
/// Redis refuses an unsupported version, and clients settle on RESP2.
fn hello(c: &mut Client, cx: Cx<'_, '_>, a: &Args<'_>) {
    if a.len() > 1 {
        match resp::parse_i64(a.get(1)) {
            Some(2) => {}
            // Redis's refusal of a version it does not speak (3 included here).
            Some(_) => return resp::error(cx, "NOPROTO unsupported protocol version"),
            None => return resp::error(cx, "ERR Protocol version is not an integer or out of range"),
        }
    }
    resp::array(cx, 14);
    for (k, v) in [("server", "coreloop-kv"), ("version", "7.0.0")] {
        resp::bulk_slice(cx, k.as_bytes());
        resp::bulk_slice(cx, v.as_bytes());
    }
    resp::bulk_slice(cx, b"proto");
    resp::int(cx, 2);
    resp::bulk_slice(cx, b"id");
    resp::int(cx, c.id as i64);
    for (k, v) in [("mode", "standalone"), ("role", "master")] {
        resp::bulk_slice(cx, k.as_bytes());
        resp::bulk_slice(cx, v.as_bytes());
    }
    resp::bulk_slice(cx, b"modules");
    resp::array(cx, 0);
}
