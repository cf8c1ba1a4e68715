//! A reactor: one thread, one `mio::Poll`, one slab of connections, one handler.
//!
//! The reactor owns every connection it is given for that connection's whole life,
//! so nothing here is locked. It moves bytes between sockets and the handler under
//! edge-triggered readiness; it does not accept (the acceptor does) and it does not
//! decide what the bytes mean (the handler does).
//!
//! The per-event path, top to bottom: `conn_event` → `writable` (flush the queue)
//! → `read_ready` (read, `deliver` to the handler, `send_staged` its output).

use std::any::Any;
use std::collections::VecDeque;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::event::Event;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::accept::AcceptLoop;
use crate::builder::Config;
use crate::conn::Conn;
use crate::context::{Context, Origin, Requests};
use crate::handle::Handle;
use crate::handler::{CloseReason, Handler};
use crate::id::ConnId;
use crate::inbox::Inbox;
use crate::net::{Endpoint, PeerAddr, SocketOptions, Stream};
use crate::outbuf::{MAX_IOV, OutBuf};
use crate::stats::{Counters, ReactorStats, bump, drop_one};
use crate::timer::TimerWheel;

/// The reactor's waker token. Slab keys never reach it.
pub(crate) const WAKER: Token = Token(usize::MAX);

/// Commands a reactor takes from the acceptor and from handles.
#[derive(Debug)]
pub(crate) enum Command {
    /// Take on a newly accepted connection.
    Open(Stream, PeerAddr),
    /// Write bytes to a connection, if `id` still names it.
    Send(ConnId, Bytes),
    /// Run `on_message` for a connection, if `id` still names it.
    Message(ConnId, Box<dyn Any + Send>),
    /// Run `on_reactor_message`.
    ReactorMessage(Box<dyn Any + Send>),
    /// Open an outbound connection.
    Connect {
        to: Endpoint,
        from: Option<SocketAddr>,
        tag: u64,
    },
    /// Close a connection gracefully, if `id` still names it.
    Close(ConnId),
    /// Notify handlers, flush, close every connection by `deadline`, then exit.
    Shutdown { deadline: Instant },
}

/// What a reactor thread returns when it ends.
#[derive(Debug)]
pub(crate) struct ReactorExit {
    pub(crate) stats: ReactorStats,
    /// Every connection's output was written before the deadline.
    pub(crate) completed: bool,
}

/// Settings the reactor reads on its hot path, copied out of the configuration.
#[derive(Debug, Clone, Copy)]
struct Limits {
    read_budget: usize,
    high_watermark: usize,
    low_watermark: usize,
    max_input: usize,
    max_output: usize,
    linger: Duration,
}

/// Idle-timeout bookkeeping: one wheel entry per connection, re-armed lazily.
#[derive(Debug)]
struct Idle {
    wheel: TimerWheel<(usize, u64)>,
    /// The wheel's tick: 1/8 of the timeout, so a connection closes between the
    /// timeout and the timeout + 1/8.
    tick: Duration,
    timeout_ticks: u64,
    start: Instant,
    expired: Vec<(usize, u64)>,
}

/// Ticks per idle timeout: the timeout's resolution is 1/8 of it.
const IDLE_TICKS: u32 = 8;

impl Idle {
    fn new(timeout: Duration) -> Self {
        let tick = (timeout / IDLE_TICKS).max(Duration::from_millis(1));
        Self {
            wheel: TimerWheel::new(64),
            tick,
            timeout_ticks: timeout.as_nanos().div_ceil(tick.as_nanos()) as u64,
            start: Instant::now(),
            expired: Vec::new(),
        }
    }

    fn tick_at(&self, now: Instant) -> u64 {
        (now.duration_since(self.start).as_nanos() / self.tick.as_nanos()) as u64
    }

    /// When the tick after `tick` begins.
    fn next_tick_instant(&self, tick: u64) -> Instant {
        let nanos = self.tick.as_nanos() as u64 * (tick + 1);
        self.start + Duration::from_nanos(nanos)
    }
}

pub(crate) struct Reactor<H: Handler> {
    index: usize,
    poll: Poll,
    conns: Slab<Conn<H::Conn>>,
    handler: H,
    inbox: Arc<Inbox<Command>>,
    commands: Vec<Command>,
    /// Every read lands here first: one buffer per reactor, allocated once.
    scratch: Box<[u8]>,
    /// The input handed to the handler when its connection has nothing stashed.
    input: BytesMut,
    /// Where a callback's writes collect before the one write after it.
    out: OutBuf,
    /// Connections to read again without waiting for an edge: read budget spent,
    /// or reading resumed after back-pressure. `(slot, generation)`.
    ready: Vec<(usize, u64)>,
    counters: Arc<Counters>,
    handle: Handle,
    limits: Limits,
    events: usize,
    next_generation: u64,
    deadline: Option<Instant>,
    idle: Option<Idle>,
    /// Connections waiting, after their FIN, for the peer's end of stream:
    /// `(give up at, slot, generation)`, in deadline order (one linger time for all).
    lingering: VecDeque<(Instant, usize, u64)>,
    /// Outbound connects in progress, with tokens from `PENDING_BASE`.
    pending: Slab<Pending>,
    /// `(give up at, slot, serial)` for each pending connect, in deadline order.
    connect_deadlines: VecDeque<(Instant, usize, u64)>,
    connect_timeout: Duration,
    socket_options: SocketOptions,
    /// Reuse-port mode: this reactor's own listeners (tokens from `LISTENER_BASE`).
    accept: Option<AcceptLoop>,
    /// Connections accepted this turn, opened once the accept loop is done.
    accepted: Vec<(Stream, PeerAddr)>,
    /// The current idle tick (0 when idle timeouts are off): read once per turn.
    now_tick: u64,
}

/// What the server hands one reactor at start: its place in the server and the
/// resources made for it before any thread started.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) index: usize,
    pub(crate) poll: Poll,
    pub(crate) inbox: Arc<Inbox<Command>>,
    pub(crate) counters: Arc<Counters>,
    /// Reuse-port mode: this reactor's own listeners.
    pub(crate) accept: Option<AcceptLoop>,
}

impl<H: Handler> Reactor<H> {
    pub(crate) fn new(parts: Parts, handler: H, handle: Handle, config: &Config) -> Self {
        let Parts {
            index,
            poll,
            inbox,
            counters,
            accept,
        } = parts;
        Self {
            index,
            poll,
            conns: Slab::new(),
            handler,
            inbox,
            commands: Vec::new(),
            scratch: vec![0; config.read_buffer].into_boxed_slice(),
            input: BytesMut::with_capacity(config.read_buffer),
            out: OutBuf::default(),
            ready: Vec::new(),
            counters,
            handle,
            limits: Limits {
                read_budget: config.read_budget,
                high_watermark: config.high_watermark,
                low_watermark: config.low_watermark,
                max_input: config.max_input,
                max_output: config.max_output,
                linger: config.linger,
            },
            events: config.events,
            next_generation: 0,
            deadline: None,
            idle: config.idle_timeout.map(Idle::new),
            lingering: VecDeque::new(),
            pending: Slab::new(),
            connect_deadlines: VecDeque::new(),
            connect_timeout: config.connect_timeout,
            socket_options: config.socket_options(),
            accept,
            accepted: Vec::new(),
            now_tick: 0,
        }
    }

    /// The event loop. Returns when shutdown completes or its deadline passes.
    pub(crate) fn run(mut self) -> ReactorExit {
        let mut events = Events::with_capacity(self.events);
        if let Some(accept) = &mut self.accept {
            for (i, l) in accept.listeners.iter_mut().enumerate() {
                if let Err(e) = self
                    .poll
                    .registry()
                    .register(l, Token(LISTENER_BASE + i), Interest::READABLE)
                {
                    log::error!("coreloop: reactor {} cannot register its listener {i}: {e}", self.index);
                }
            }
        }
        let completed = loop {
            let timeout = self.poll_timeout();
            // syscall: the one wait per loop turn
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!(
                    "coreloop: reactor {} poll failed: {e}; closing its connections",
                    self.index
                );
                self.close_all(CloseReason::Shutdown);
                break false;
            }
            bump(&self.counters.polls, 1);
            if let Some(idle) = &self.idle {
                // One clock read per turn (vDSO, no syscall); events record this tick.
                self.now_tick = idle.tick_at(Instant::now());
            }
            let mut woken = false;
            let mut n = 0;
            for ev in events.iter() {
                n += 1;
                match ev.token() {
                    WAKER => woken = true,
                    Token(t) if t >= PENDING_BASE => self.pending_event(t - PENDING_BASE),
                    Token(t) if t >= LISTENER_BASE => {
                        if let Some(accept) = &mut self.accept {
                            accept.mark(t - LISTENER_BASE);
                        }
                    }
                    Token(key) => self.conn_event(key, ev),
                }
            }
            bump(&self.counters.events, n);
            self.serve_ready();
            self.expire_idle();
            self.expire_lingering();
            self.expire_connects();
            // New connections are registered after the batch, so no event of this
            // batch (for a socket closed in it) can reach a connection reusing its slot.
            if woken {
                self.run_commands();
            }
            self.accept_own();
            if let Some(deadline) = self.deadline {
                if self.conns.is_empty() && self.pending.is_empty() {
                    break true;
                }
                if Instant::now() >= deadline {
                    self.close_all(CloseReason::Shutdown);
                    break false;
                }
            }
        };
        ReactorExit {
            stats: self.counters.snapshot(self.index),
            completed,
        }
    }

    /// Wait no longer than: zero while connections wait in the ready list, the
    /// next idle tick while idle timers are armed, the shutdown deadline.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let tick = self
            .idle
            .as_ref()
            .filter(|idle| !idle.wheel.is_empty())
            .map(|idle| idle.next_tick_instant(self.now_tick));
        let linger = self.lingering.front().map(|&(at, _, _)| at);
        let connect = self.connect_deadlines.front().map(|&(at, _, _)| at);
        let backoff = self.accept.as_ref().and_then(AcceptLoop::paused_until);
        [tick, self.deadline, linger, connect, backoff]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Closes connections idle for the timeout; re-arms the others at their last
    /// activity + timeout. Runs when the wheel's tick moves, not per event.
    fn expire_idle(&mut self) {
        let Some(idle) = &mut self.idle else { return };
        let now = self.now_tick;
        idle.wheel.advance(now, &mut idle.expired);
        if idle.expired.is_empty() {
            return;
        }
        let mut expired = mem::take(&mut idle.expired);
        let timeout_ticks = idle.timeout_ticks;
        for &(key, generation) in &expired {
            let Some(c) = self.conns.get(key).filter(|c| c.generation == generation) else {
                continue; // closed since it was armed
            };
            let due = c.last_active + timeout_ticks;
            if due <= now {
                self.close(key, CloseReason::IdleTimeout);
            } else if let Some(idle) = &mut self.idle {
                idle.wheel.insert(due, (key, generation));
            }
        }
        expired.clear();
        if let Some(idle) = &mut self.idle {
            idle.expired = expired; // keep the allocation
        }
    }

    /// Reuse-port mode: accepts what waits on this reactor's own listeners (after a
    /// listener edge, a back-off, or a close that made room under the cap).
    fn accept_own(&mut self) {
        let Some(accept) = &mut self.accept else { return };
        let accepted = &mut self.accepted;
        accept.accept(&self.handle, |stream, peer| accepted.push((stream, peer)));
        let mut batch = mem::take(&mut self.accepted);
        for (stream, peer) in batch.drain(..) {
            bump(&self.counters.accepted, 1);
            self.open(stream, peer, Origin::Accepted);
        }
        self.accepted = batch;
    }

    /// Closes lingering connections whose peer has not closed in time.
    fn expire_lingering(&mut self) {
        if self.lingering.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(&(at, key, generation)) = self.lingering.front() {
            if at > now {
                break;
            }
            self.lingering.pop_front();
            if let Some(c) = self
                .conns
                .get(key)
                .filter(|c| c.generation == generation && c.lingering)
            {
                let reason = c.closing.unwrap_or(CloseReason::Local);
                self.close(key, reason);
            }
        }
    }

    fn conn_event(&mut self, key: usize, ev: &Event) {
        let Some(c) = self.conns.get_mut(key) else {
            return; // closed earlier in this batch
        };
        let generation = c.generation;
        if ev.is_read_closed() {
            c.fin_seen = true;
        }
        if ev.is_error() {
            // syscall: getsockopt(SO_ERROR), only on an error event
            match c.stream.take_error() {
                Ok(Some(e)) | Err(e) => return self.close(key, CloseReason::Io(e.kind())),
                Ok(None) => {}
            }
        }
        if (ev.is_writable() || ev.is_write_closed()) && !self.writable(key) {
            return;
        }
        if (ev.is_readable() || ev.is_read_closed()) && self.is_current(key, generation) {
            self.read_ready(key);
        }
    }

    fn is_current(&self, key: usize, generation: u64) -> bool {
        self.conns.get(key).is_some_and(|c| c.generation == generation)
    }

    /// The socket can take more: flush the queue. Returns whether the connection is
    /// still open.
    fn writable(&mut self, key: usize) -> bool {
        let c = &mut self.conns[key];
        if c.output.is_empty() {
            return true;
        }
        match c.flush() {
            Ok(n) => {
                bump(&self.counters.bytes_out, n as u64);
                c.last_active = self.now_tick;
            }
            Err(e) => {
                self.close(key, CloseReason::Io(e.kind()));
                return false;
            }
        }
        if c.output.is_empty() {
            if let Some(reason) = c.closing {
                return self.linger(key, reason);
            }
            if c.shutdown_write && !self.shut_write(key) {
                return false;
            }
        }
        let c = &mut self.conns[key];
        if c.read_paused && c.queued <= self.limits.low_watermark {
            c.read_paused = false;
            // What arrived while paused raised no new edge: read it now.
            self.defer(key);
        }
        true
    }

    /// Reads until the socket is drained (a short read), the read budget is spent,
    /// or the connection stops reading.
    fn read_ready(&mut self, key: usize) {
        let mut reads = 0;
        loop {
            let Some(c) = self.conns.get_mut(key) else { return };
            let stopped = match c.closing {
                // Flushing before a close: input waits in the socket (no CPU spent
                // on a peer that floods); lingering after our FIN: read and drop it.
                Some(_) => !c.lingering,
                None => c.read_paused,
            };
            if c.eof || stopped {
                return;
            }
            // syscall: read into the reactor's shared buffer
            let n = match c.stream.read(&mut self.scratch) {
                Ok(0) if c.lingering => {
                    // The peer has everything we sent and closed: close cleanly.
                    let reason = c.closing.unwrap_or(CloseReason::Local);
                    return self.close(key, reason);
                }
                Ok(0) => return self.end_of_stream(key),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.close(key, CloseReason::Io(e.kind())),
            };
            bump(&self.counters.bytes_in, n as u64);
            c.last_active = self.now_tick;
            // A short read drained the socket: new data raises a new edge, so no
            // read is spent just to see WouldBlock. After a FIN was reported, read
            // on to see the end of stream (it raises no further edge).
            let drained = n < self.scratch.len() && !c.fin_seen;
            // A lingering connection's input is read and dropped.
            if c.closing.is_none() && !self.deliver(key, n) {
                return;
            }
            if drained {
                return;
            }
            reads += 1;
            if reads >= self.limits.read_budget {
                return self.defer(key);
            }
        }
    }

    /// Hands `n` fresh bytes (in `scratch`) to the handler with whatever the
    /// connection had left unconsumed. Returns whether it is still open and reading.
    fn deliver(&mut self, key: usize, n: usize) -> bool {
        let c = &mut self.conns[key];
        let stashed = !c.input.is_empty();
        let mut input = if stashed {
            mem::take(&mut c.input)
        } else {
            mem::take(&mut self.input)
        };
        input.extend_from_slice(&self.scratch[..n]);
        let outcome = self.callback(key, |h, conn, cx| h.on_data(conn, cx, &mut input));
        let c = &mut self.conns[key];
        if stashed {
            // Keep the partial frame; free the buffer once it is consumed.
            c.input = if input.is_empty() { BytesMut::new() } else { input };
        } else {
            if !input.is_empty() {
                // Only what the handler left moves into a buffer of the connection's own.
                c.input = BytesMut::from(&input[..]);
            }
            input.clear();
            self.input = input;
        }
        if !self.after_callback(key, outcome, CloseReason::Local) {
            return false;
        }
        let c = &self.conns[key];
        if c.input.len() > self.limits.max_input {
            log::debug!(
                "coreloop: {} left {} bytes unconsumed, over the limit of {}; closing",
                ConnId::new(self.index, key, c.generation),
                c.input.len(),
                self.limits.max_input
            );
            self.close(key, CloseReason::InputLimit);
            return false;
        }
        c.closing.is_none()
    }

    fn end_of_stream(&mut self, key: usize) {
        let c = &mut self.conns[key];
        c.eof = true;
        c.input = BytesMut::new();
        if c.closing.is_some() {
            return; // already closing: it closes once its output drains
        }
        let outcome = self.callback(key, |h, conn, cx| h.on_eof(conn, cx));
        self.after_callback(key, outcome, CloseReason::PeerClosed);
    }

    /// Runs one handler callback for the open connection `key` under
    /// `catch_unwind`. Returns what it asked for, or `None` if it panicked.
    fn callback(&mut self, key: usize, f: impl FnOnce(&mut H, &mut H::Conn, &mut Context<'_>)) -> Option<Requests> {
        let c = &mut self.conns[key];
        let id = ConnId::new(self.index, key, c.generation);
        let mut cx = Context::new(id, c.origin, &c.peer, &c.stream, &mut self.out, &self.handle, true);
        let handler = &mut self.handler;
        let state = &mut c.state;
        match catch_unwind(AssertUnwindSafe(|| f(handler, state, &mut cx))) {
            Ok(()) => Some(cx.requests()),
            Err(_) => None,
        }
    }

    /// Carries out what a callback asked for: sends its output, closes on request
    /// (as `reason`) or on panic. Returns whether the connection is still open.
    fn after_callback(&mut self, key: usize, outcome: Option<Requests>, reason: CloseReason) -> bool {
        let Some(requests) = outcome else {
            bump(&self.counters.panics, 1);
            self.out.clear();
            log::warn!(
                "coreloop: handler panicked on connection {}; closing it",
                ConnId::new(self.index, key, self.conns[key].generation)
            );
            self.close(key, CloseReason::Panic);
            return false;
        };
        if !self.out.is_empty() && !self.send_staged(key) {
            return false;
        }
        if requests.close {
            return self.begin_close(key, reason);
        }
        if requests.shutdown_write {
            let c = &mut self.conns[key];
            c.shutdown_write = true;
            if c.output.is_empty() {
                return self.shut_write(key);
            }
        }
        true
    }

    /// Sends the FIN the handler asked for, now that the queue is empty. Returns
    /// whether the connection is still open.
    fn shut_write(&mut self, key: usize) -> bool {
        let c = &mut self.conns[key];
        c.shutdown_write = false;
        if c.write_shut {
            return true;
        }
        c.write_shut = true;
        // syscall: shutdown(SHUT_WR), once, when the handler asks for a half-close
        if let Err(e) = c.stream.shutdown_write() {
            self.close(key, CloseReason::Io(e.kind()));
            return false;
        }
        true
    }

    /// Writes what the last callback staged: one `write` (or `writev`) call; what
    /// the socket does not take is queued for the writable edge. Returns whether the
    /// connection is still open.
    fn send_staged(&mut self, key: usize) -> bool {
        let c = &mut self.conns[key];
        let total = self.out.len();
        if c.write_shut || c.shutdown_write {
            // The handler shut writing down: what it writes after that is dropped.
            self.out.clear();
            return true;
        }
        if !c.output.is_empty() {
            // The socket was full at the last attempt and no writable edge has come
            // since: a write now would only see EAGAIN. Queue behind, in order.
            self.out.queue_rest(0, &mut c.output);
            c.queued += total;
            return self.check_high_watermark(key);
        }
        let mut sent = 0;
        while sent < total {
            let (res, offered) = match self.out.as_contiguous() {
                // syscall: the one write for this callback's output
                Some(buf) => (c.stream.write(&buf[sent..]), total - sent),
                None => {
                    let mut iov = [io::IoSlice::new(&[]); MAX_IOV];
                    let n = self.out.slices(sent, &mut iov);
                    let offered = iov[..n].iter().map(|s| s.len()).sum();
                    // syscall: one writev when zero-copy buffers were written
                    (c.stream.write_vectored(&iov[..n]), offered)
                }
            };
            match res {
                Ok(0) => return self.fail_write(key, sent, io::ErrorKind::WriteZero),
                Ok(w) => {
                    sent += w;
                    if w < offered {
                        break; // the socket is full
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail_write(key, sent, e.kind()),
            }
        }
        bump(&self.counters.bytes_out, sent as u64);
        self.conns[key].last_active = self.now_tick;
        if sent == total {
            self.out.clear();
            return true;
        }
        let c = &mut self.conns[key];
        self.out.queue_rest(sent, &mut c.output);
        c.queued += total - sent;
        self.check_high_watermark(key)
    }

    fn fail_write(&mut self, key: usize, sent: usize, kind: io::ErrorKind) -> bool {
        bump(&self.counters.bytes_out, sent as u64);
        self.out.clear();
        self.close(key, CloseReason::Io(kind));
        false
    }

    /// Stops reading a connection whose queued output passed the high watermark, so
    /// a peer that sends without reading cannot grow our memory; closes one whose
    /// queue passed `max_output` (output that does not come from its own input —
    /// `Handle::send`, a handler writing on its own — is not held back by pausing
    /// reads). Returns whether the connection is still open.
    fn check_high_watermark(&mut self, key: usize) -> bool {
        let c = &mut self.conns[key];
        if c.queued > self.limits.max_output {
            log::debug!(
                "coreloop: {} has {} bytes queued, over the limit of {}; closing",
                ConnId::new(self.index, key, c.generation),
                c.queued,
                self.limits.max_output
            );
            self.close(key, CloseReason::OutputLimit);
            return false;
        }
        if c.queued > self.limits.high_watermark && !c.read_paused {
            c.read_paused = true;
            bump(&self.counters.pauses, 1);
        }
        true
    }

    /// A graceful close: writes what is queued, then lingers (see [`linger`]).
    /// Returns whether the connection is still open.
    ///
    /// [`linger`]: Self::linger
    fn begin_close(&mut self, key: usize, reason: CloseReason) -> bool {
        let c = &mut self.conns[key];
        let reason = *c.closing.get_or_insert(reason);
        if c.output.is_empty() {
            return self.linger(key, reason);
        }
        true
    }

    /// The last step of a graceful close, once every queued byte is in the socket.
    ///
    /// Closing a socket that still has unread input makes the kernel send a reset,
    /// which discards whatever of our output it had not yet transmitted: a client
    /// still sending would lose the end of its reply. So unless the peer has already
    /// closed its side, send our FIN (`shutdown(SHUT_WR)`), then read and drop input
    /// until the peer closes, for at most the linger time. Returns whether the
    /// connection is still open.
    fn linger(&mut self, key: usize, reason: CloseReason) -> bool {
        let c = &mut self.conns[key];
        c.closing = Some(reason);
        if c.eof || self.limits.linger.is_zero() {
            // Nothing more can arrive (or lingering is off): a plain close.
            self.close(key, reason);
            return false;
        }
        if !c.write_shut {
            c.write_shut = true;
            // syscall: shutdown(SHUT_WR): our FIN follows the queued bytes
            if let Err(e) = c.stream.shutdown_write() {
                self.close(key, CloseReason::Io(e.kind()));
                return false;
            }
        }
        c.lingering = true;
        let generation = c.generation;
        self.lingering
            .push_back((Instant::now() + self.limits.linger, key, generation));
        // Input that arrived while we flushed raised no new edge: read it now.
        self.read_ready(key);
        self.is_current(key, generation)
    }

    /// Removes the connection, tells the handler, closes the socket.
    fn close(&mut self, key: usize, reason: CloseReason) {
        let Conn {
            stream,
            peer,
            origin,
            generation,
            state,
            ..
        } = self.conns.remove(key);
        // On Linux, closing the descriptor removes it from the epoll set: no
        // epoll_ctl(DEL) syscall is spent. Other selectors want it explicitly.
        #[cfg(not(target_os = "linux"))]
        {
            let mut stream = stream;
            let _ = self.poll.registry().deregister(&mut stream);
        }
        bump(&self.counters.closed, 1);
        drop_one(&self.counters.active);
        if origin == Origin::Accepted {
            // Only accepted connections count against the connection cap.
            self.handle.connection_closed();
        }
        let id = ConnId::new(self.index, key, generation);
        log::trace!("coreloop: closing {id} ({peer}): {reason}");
        let mut cx = Context::new(id, origin, &peer, &stream, &mut self.out, &self.handle, false);
        let handler = &mut self.handler;
        if catch_unwind(AssertUnwindSafe(|| handler.on_close(state, &mut cx, reason))).is_err() {
            bump(&self.counters.panics, 1);
            log::warn!("coreloop: handler panicked in on_close for {id}");
        }
        // syscall: close(2), as `stream` drops here
        drop(stream);
        self.compact_timers();
    }

    /// Timer entries of closed connections are skipped when they fall due; compact
    /// them once they outnumber the live ones, so the bookkeeping is bounded by
    /// the open connections, not by connection rate × timeout. Amortized O(1) per
    /// close.
    fn compact_timers(&mut self) {
        let live = self.conns.len();
        let conns = &self.conns;
        let current = |&(key, generation): &(usize, u64)| conns.get(key).is_some_and(|c| c.generation == generation);
        if let Some(idle) = &mut self.idle
            && idle.wheel.len() > 2 * live + 64
        {
            idle.wheel.retain(current);
        }
        if self.lingering.len() > 2 * live + 64 {
            self.lingering.retain(|&(_, key, generation)| {
                conns
                    .get(key)
                    .is_some_and(|c| c.generation == generation && c.lingering)
            });
        }
    }

    fn close_all(&mut self, reason: CloseReason) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close(key, reason);
        }
    }

    /// Queues a connection for a read next turn, without waiting for an edge.
    fn defer(&mut self, key: usize) {
        let c = &mut self.conns[key];
        if !c.in_ready {
            c.in_ready = true;
            self.ready.push((key, c.generation));
        }
    }

    fn serve_ready(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let mut list = mem::take(&mut self.ready);
        for &(key, generation) in &list {
            if let Some(c) = self.conns.get_mut(key).filter(|c| c.generation == generation) {
                c.in_ready = false;
                self.read_ready(key);
            }
        }
        list.clear();
        if self.ready.is_empty() {
            self.ready = list; // keep the allocation
        }
    }

    fn run_commands(&mut self) {
        let mut commands = mem::take(&mut self.commands);
        self.inbox.drain_into(&mut commands);
        for cmd in commands.drain(..) {
            match cmd {
                Command::Open(stream, peer) => {
                    bump(&self.counters.accepted, 1);
                    self.open(stream, peer, Origin::Accepted);
                    // After `open` counted it as active: the acceptor may briefly
                    // count it twice, never not at all.
                    bump(&self.counters.handed_over, 1);
                }
                Command::Close(id) => {
                    if let Some(key) = self.live_slot(id) {
                        self.begin_close(key, CloseReason::Local);
                    }
                }
                Command::Send(id, data) => {
                    if let Some(key) = self.live_slot(id) {
                        self.out.write_bytes(data);
                        self.send_staged(key);
                    }
                }
                Command::Message(id, msg) => {
                    let msg = *msg.downcast::<H::Message>().expect("Handle checks the message type");
                    if let Some(key) = self.live_slot(id) {
                        let outcome = self.callback(key, |h, conn, cx| h.on_message(conn, cx, msg));
                        self.after_callback(key, outcome, CloseReason::Local);
                    }
                }
                Command::ReactorMessage(msg) => {
                    let msg = *msg.downcast::<H::Message>().expect("Handle checks the message type");
                    let (handler, handle, index) = (&mut self.handler, &self.handle, self.index);
                    if catch_unwind(AssertUnwindSafe(|| handler.on_reactor_message(index, handle, msg))).is_err() {
                        bump(&self.counters.panics, 1);
                        log::warn!("coreloop: handler panicked in on_reactor_message on reactor {index}");
                    }
                }
                Command::Connect { to, from, tag } => self.start_connect(to, from, tag),
                Command::Shutdown { deadline } => self.begin_shutdown(deadline),
            }
        }
        self.commands = commands;
    }

    /// The slot of the connection `id` names, if it is still open and not closing;
    /// a miss counts as stale.
    fn live_slot(&mut self, id: ConnId) -> Option<usize> {
        let key = id.slot();
        if self.is_current(key, id.generation()) && self.conns[key].closing.is_none() {
            return Some(key);
        }
        bump(&self.counters.stale, 1);
        log::debug!("coreloop: command for {id} dropped: the connection is gone");
        None
    }

    /// Takes on a connected socket: registers it once and runs `on_open`.
    fn open(&mut self, mut stream: Stream, peer: PeerAddr, origin: Origin) {
        let counted = origin == Origin::Accepted;
        let refuse = |this: &mut Self| {
            bump(&this.counters.closed, 1);
            if counted {
                this.handle.connection_closed();
            }
        };
        if self.deadline.is_some() {
            // Shutting down: take no new connection.
            return refuse(self);
        }
        let key = self.conns.vacant_key();
        // syscall: the one registration this socket gets, edge-triggered, both ways
        // (a connected outbound socket moves here from the pending range: one MOD)
        let interest = Interest::READABLE | Interest::WRITABLE;
        let registered = match origin {
            Origin::Accepted => self.poll.registry().register(&mut stream, Token(key), interest),
            Origin::Connected { .. } => self.poll.registry().reregister(&mut stream, Token(key), interest),
        };
        if let Err(e) = registered {
            log::warn!(
                "coreloop: reactor {} cannot register a connection with {peer}: {e}",
                self.index
            );
            return refuse(self);
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let id = ConnId::new(self.index, key, generation);
        let mut cx = Context::new(id, origin, &peer, &stream, &mut self.out, &self.handle, true);
        let handler = &mut self.handler;
        let opened = catch_unwind(AssertUnwindSafe(|| handler.on_open(&mut cx)));
        let requests = cx.requests();
        let Ok(state) = opened else {
            bump(&self.counters.panics, 1);
            self.out.clear();
            log::warn!("coreloop: handler panicked in on_open for {id}; dropping the connection");
            return refuse(self);
        };
        self.conns
            .insert(Conn::new(stream, peer, origin, generation, state, self.now_tick));
        bump(&self.counters.active, 1);
        if let Some(idle) = &mut self.idle {
            idle.wheel.insert(self.now_tick + idle.timeout_ticks, (key, generation));
        }
        log::trace!("coreloop: opened {id}");
        self.after_callback(key, Some(requests), CloseReason::Local);
    }

    /// Starts a nonblocking connect; the socket waits in the pending range until
    /// it turns writable (connected or failed) or the connect timeout passes.
    fn start_connect(&mut self, to: Endpoint, from: Option<SocketAddr>, tag: u64) {
        if self.deadline.is_some() {
            let e = io::Error::new(io::ErrorKind::ConnectionAborted, "the server is shutting down");
            return self.connect_failed(tag, &to, e);
        }
        // syscall: socket + connect (nonblocking)
        let (mut stream, peer) = match Stream::connect(&to, from, &self.socket_options) {
            Ok(s) => s,
            Err(e) => return self.connect_failed(tag, &to, e),
        };
        let entry = self.pending.vacant_entry();
        let token = Token(PENDING_BASE + entry.key());
        // syscall: registration for the connect's completion (moved, not re-added, on success)
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
            return self.connect_failed(tag, &to, e);
        }
        let serial = self.next_generation;
        self.next_generation += 1;
        let key = entry.key();
        entry.insert(Pending {
            stream,
            peer,
            to,
            tag,
            serial,
        });
        self.connect_deadlines
            .push_back((Instant::now() + self.connect_timeout, key, serial));
    }

    /// A readiness event for a connect in progress.
    fn pending_event(&mut self, key: usize) {
        let Some(p) = self.pending.get(key) else { return };
        match p.stream.connect_result() {
            Ok(false) => {} // spurious: still connecting
            Ok(true) => {
                let p = self.pending.remove(key);
                self.open(p.stream, p.peer, Origin::Connected { tag: p.tag });
            }
            Err(e) => {
                let p = self.pending.remove(key);
                self.connect_failed(p.tag, &p.to, e);
            }
        }
    }

    /// Fails connects still pending past the connect timeout.
    fn expire_connects(&mut self) {
        if self.connect_deadlines.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(&(at, key, serial)) = self.connect_deadlines.front() {
            if at > now {
                break;
            }
            self.connect_deadlines.pop_front();
            if self.pending.get(key).is_some_and(|p| p.serial == serial) {
                let p = self.pending.remove(key);
                self.connect_failed(p.tag, &p.to, io::ErrorKind::TimedOut.into());
            }
        }
        // Connects that completed leave their deadline behind: drop those once they
        // outnumber the pending ones.
        if self.connect_deadlines.len() > 2 * self.pending.len() + 64 {
            let pending = &self.pending;
            self.connect_deadlines
                .retain(|&(_, key, serial)| pending.get(key).is_some_and(|p| p.serial == serial));
        }
    }

    fn connect_failed(&mut self, tag: u64, to: &Endpoint, e: io::Error) {
        log::debug!("coreloop: connect to {to} (tag {tag}) failed: {e}");
        let (handler, handle) = (&mut self.handler, &self.handle);
        if catch_unwind(AssertUnwindSafe(|| handler.on_connect_error(tag, to, e, handle))).is_err() {
            bump(&self.counters.panics, 1);
            log::warn!("coreloop: handler panicked in on_connect_error");
        }
    }

    fn begin_shutdown(&mut self, deadline: Instant) {
        if self.deadline.is_some() {
            return;
        }
        self.deadline = Some(deadline);
        // Reuse-port mode: close this reactor's listeners first.
        self.accept = None;
        let pending: Vec<usize> = self.pending.iter().map(|(k, _)| k).collect();
        for key in pending {
            let p = self.pending.remove(key);
            let e = io::Error::new(io::ErrorKind::ConnectionAborted, "the server is shutting down");
            self.connect_failed(p.tag, &p.to, e);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if self.conns[key].closing.is_some() {
                continue;
            }
            let outcome = self.callback(key, |h, conn, cx| h.on_shutdown(conn, cx));
            if self.after_callback(key, outcome, CloseReason::Shutdown) {
                self.begin_close(key, CloseReason::Shutdown);
            }
        }
    }
}

/// An outbound connection whose connect has not completed.
#[derive(Debug)]
struct Pending {
    stream: Stream,
    peer: PeerAddr,
    to: Endpoint,
    tag: u64,
    /// Tells this connect apart from a later one in the same slot.
    serial: u64,
}

/// Tokens from here up to `PENDING_BASE` name this reactor's own listeners
/// (reuse-port mode).
const LISTENER_BASE: usize = 1 << (usize::BITS - 3);

/// Tokens from here up name pending connects (`PENDING_BASE + slot`); open
/// connections use their slab slot, far below.
const PENDING_BASE: usize = 1 << (usize::BITS - 2);
