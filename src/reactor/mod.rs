//! A reactor: one thread, one `mio::Poll`, one slab of connections, one handler.
//!
//! The reactor owns every connection it is given for that connection's whole life,
//! so nothing here is locked. It moves bytes between sockets and the handler under
//! edge-triggered readiness; it does not accept (the acceptor does, except in
//! reuse-port mode) and it does not decide what the bytes mean (the handler does).
//!
//! - `mod.rs` (this file): the loop, token dispatch, taking on a connection;
//! - `io.rs`: the per-message path — read, deliver to the handler, send its output;
//! - `close.rs`: graceful close, linger, and the one place a connection is removed;
//! - `connect.rs`: outbound connects until they complete;
//! - `commands.rs`: what handles and the acceptor ask for, and shutdown;
//! - `timers.rs`: timers falling due — the handler's, idle timeouts, linger and
//!   connect deadlines — and reactor-level callbacks.
//!
//! The reactor is split in two: the slab of connections, and the [`Core`] —
//! everything else the per-connection path needs. Per-connection functions are
//! methods of `Core` taking one `&mut Conn`; they never remove a connection but
//! return a [`Verdict`], and the reactor closes on a `Break` in one place
//! ([`Reactor::settle`]).
//!
//! This file passes 400 lines by the `Core` and `Reactor` definitions with a doc
//! line per field, and the loop with its dispatch kept whole.

mod close;
mod commands;
mod connect;
mod io;
mod preamble;
mod timers;
#[cfg(feature = "tls")]
mod tls;

use std::fmt;
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::{Events, Interest, Poll};
use slab::Slab;

use crate::admission::{AcceptLoop, Slot};
use crate::config::Config;
use crate::conn::Conn;
use crate::context::{Origin, Scope};
use crate::endpoint::PeerAddr;
use crate::handle::Handle;
use crate::handler::Handler;
use crate::inbox::{Command, Inbox};
use crate::local::Touch;
use crate::net::Stream;
use crate::outbuf::OutBuf;
use crate::proxy::{ProxyError, ProxyProtocol};
use crate::reason::CloseReason;
use crate::stats::{Counters, ReactorStats, bump};
use crate::timer::{Due, TimerId, Timers, ceil_ms};
use crate::token::{self, Source};

use connect::Connects;

/// Readiness events taken per `poll`: more wait for the next turn.
const EVENTS_PER_POLL: usize = 1024;

/// What a reactor thread returns when it ends.
#[derive(Debug)]
pub(crate) struct ReactorExit {
    pub(crate) stats: ReactorStats,
    /// Every connection's output was written before the deadline.
    pub(crate) completed: bool,
}

/// What the server hands one reactor at start: its place in the server and the
/// resources made for it before any thread started.
#[derive(Debug)]
pub(crate) struct Parts<M> {
    pub(crate) index: usize,
    pub(crate) poll: Poll,
    pub(crate) inbox: Arc<Inbox<Command<M>>>,
    pub(crate) counters: Arc<Counters>,
    /// Reuse-port mode: this reactor's own listeners.
    pub(crate) accept: Option<AcceptLoop>,
}

/// One event loop: its poll, its connections and what serves them.
pub(crate) struct Reactor<H: Handler<M>, M: Send + 'static> {
    /// Open connections by slab slot, which is also their token.
    conns: Slab<Conn<H::Conn>>,
    /// Everything the per-connection path needs besides the connection.
    core: Core<H, M>,
    poll: Poll,
    inbox: Arc<Inbox<Command<M>>>,
    /// Commands taken from the inbox in one swap per wake (allocation kept).
    commands: Vec<Command<M>>,
    /// Outbound connects in progress.
    connects: Connects,
    /// Reuse-port mode: this reactor's own listeners.
    accept: Option<AcceptLoop>,
    /// Connections accepted this turn (with their listener's index), opened
    /// once the accept loop is done.
    accepted: Vec<(Stream, PeerAddr, Slot, usize)>,
    /// The generation of the next connection or connect: an id is never reused.
    next_generation: u64,
    /// Set by shutdown: when connections still open are closed regardless.
    shutdown_deadline: Option<Instant>,
    /// A connection closed during shutdown with output still queued.
    unflushed: bool,
    /// Draining a batch of commands: output queued on connections is flushed
    /// once the batch is done.
    batching: bool,
}

/// The reactor minus its slab: the handler, the buffers every read and write
/// goes through, the counters and the timers of the per-connection path.
pub(crate) struct Core<H: Handler<M>, M: Send + 'static> {
    index: usize,
    handler: H,
    handle: Handle<M>,
    counters: Arc<Counters>,
    config: Config,
    /// Every read lands here first: one buffer per reactor, allocated once.
    scratch: Box<[u8]>,
    /// The input handed to the handler when its connection has nothing stashed.
    input: BytesMut,
    /// Where a callback's writes collect before the one write after it.
    out: OutBuf,
    /// Connections to read again without waiting for an edge: read budget spent,
    /// reading resumed after back-pressure, input to deliver again.
    /// `(slot, generation)`.
    ready: Vec<(usize, u64)>,
    /// Every timer of the reactor: idle, linger, connect, the handler's.
    timers: Timers,
    /// Timers handed out by the wheel this turn (allocation kept).
    fired: Vec<TimerId>,
    /// Connections a reactor-level callback wrote to or closed (allocation kept).
    touched: Vec<Touch>,
    /// The idle timeout in milliseconds, when on.
    idle_ms: Option<u64>,
    /// Once the reactor shuts down: whether it drains (connections opened from
    /// then on — their preamble was under way — hear `on_shutdown` too).
    stopping: Option<bool>,
    /// TLS handshakes in progress, and the connections waiting for a place.
    #[cfg(feature = "tls")]
    handshakes: tls::Handshakes,
}

impl<H: Handler<M>, M: Send + 'static> Reactor<H, M> {
    pub(crate) fn new(parts: Parts<M>, handler: H, handle: Handle<M>, config: Config) -> Self {
        let Parts {
            index,
            poll,
            inbox,
            counters,
            accept,
        } = parts;
        Self {
            conns: Slab::new(),
            poll,
            inbox,
            commands: Vec::new(),
            connects: Connects::new(config.connect_timeout, config.socket_options()),
            accept,
            accepted: Vec::new(),
            next_generation: 0,
            shutdown_deadline: None,
            unflushed: false,
            batching: false,
            core: Core {
                index,
                handler,
                handle,
                counters,
                scratch: vec![0; config.read_buffer].into_boxed_slice(),
                input: BytesMut::with_capacity(config.read_buffer),
                out: OutBuf::default(),
                ready: Vec::new(),
                timers: Timers::new(config.max_timers),
                fired: Vec::new(),
                touched: Vec::new(),
                idle_ms: config.idle_timeout.map(ceil_ms),
                stopping: None,
                #[cfg(feature = "tls")]
                handshakes: tls::Handshakes::default(),
                config,
            },
        }
    }

    /// The event loop. Returns when shutdown completes or its deadline passes.
    pub(crate) fn run(mut self) -> ReactorExit {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        self.register_own_listeners();
        self.reactor_callback("on_start", |h, cx| h.on_start(cx));
        let completed = loop {
            let timeout = self.poll_timeout();
            // syscall: the one wait per loop turn
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!(
                    "coreloop: reactor {} poll failed: {e}; closing its connections",
                    self.core.index
                );
                self.close_all(CloseReason::Shutdown);
                break false;
            }
            bump(&self.core.counters.polls, 1);
            // One clock read per turn while timers are armed (vDSO, no syscall);
            // connections record this tick as their last activity.
            self.core.timers.read_clock();
            let mut woken = false;
            let mut n = 0;
            for ev in events.iter() {
                n += 1;
                match Source::of(ev.token()) {
                    Source::Waker => woken = true,
                    Source::Pending(slot) => self.pending_event(slot),
                    Source::Listener(i) => {
                        if let Some(accept) = &mut self.accept {
                            accept.mark(i);
                        }
                    }
                    Source::Conn(key) => {
                        let Some(c) = self.conns.get_mut(key) else {
                            continue; // closed earlier in this batch
                        };
                        let verdict = self.core.on_event(key, c, ev);
                        self.settle(key, verdict);
                    }
                }
            }
            bump(&self.core.counters.events, n);
            self.serve_ready();
            self.expire_timers();
            // New connections are registered after the batch, so no event of this
            // batch (for a socket closed in it) can reach a connection reusing its slot.
            if woken {
                self.run_commands();
            }
            self.accept_own();
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() && self.connects.is_empty() {
                    break true;
                }
                if Instant::now() >= deadline {
                    // Whether output was left behind is counted by `close`.
                    self.close_all(CloseReason::Shutdown);
                    break true;
                }
            }
        };
        ReactorExit {
            stats: self.core.counters.snapshot(self.core.index),
            completed: completed && !self.unflushed,
        }
    }

    /// Wait no longer than: zero while connections wait in the ready list, else
    /// until the wheel's next timer (counted in ticks, no clock read), the end of
    /// an accept back-off or the shutdown deadline.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.core.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let timers = &self.core.timers;
        let timer = timers
            .wheel
            .next_expiration()
            .map(|tick| Duration::from_millis(tick.saturating_sub(timers.now)));
        let backoff = self.accept.as_ref().and_then(AcceptLoop::paused_until);
        let instant = match (backoff, self.shutdown_deadline) {
            (None, None) => None,
            (a, b) => a
                .into_iter()
                .chain(b)
                .min()
                .map(|t| t.saturating_duration_since(Instant::now())),
        };
        timer.into_iter().chain(instant).min()
    }

    /// Reuse-port mode: registers this reactor's own listeners.
    fn register_own_listeners(&mut self) {
        let Some(accept) = &mut self.accept else { return };
        for (i, l) in accept.listeners.iter_mut().enumerate() {
            if let Err(e) = self.poll.registry().register(l, token::listener(i), Interest::READABLE) {
                log::error!(
                    "coreloop: reactor {} cannot register its listener {i}: {e}",
                    self.core.index
                );
            }
        }
    }

    /// Reuse-port mode: accepts what waits on this reactor's own listeners (after a
    /// listener edge, a back-off, or a close that made room under the cap).
    fn accept_own(&mut self) {
        let Some(accept) = &mut self.accept else { return };
        let accepted = &mut self.accepted;
        accept.accept(|stream, peer, slot, listener| accepted.push((stream, peer, slot, listener)));
        let mut batch = mem::take(&mut self.accepted);
        for (stream, peer, slot, listener) in batch.drain(..) {
            bump(&self.core.counters.accepted, 1);
            self.open(stream, peer, Via::Listener { slot, listener });
        }
        self.accepted = batch;
    }

    /// Reads, without waiting for an edge, the connections queued for it.
    fn serve_ready(&mut self) {
        if self.core.ready.is_empty() {
            return;
        }
        let mut list = mem::take(&mut self.core.ready);
        for &(key, generation) in &list {
            if let Some(c) = self.conns.get_mut(key).filter(|c| c.generation == generation) {
                c.in_ready = false;
                let verdict = self.core.resume(key, c);
                self.settle(key, verdict);
            }
        }
        list.clear();
        if self.core.ready.is_empty() {
            self.core.ready = list; // keep the allocation
        }
    }

    /// Takes on a connected socket: registers it once and keeps it in the slab,
    /// then starts its preamble (a PROXY header, a TLS handshake) if it has
    /// one, else runs `on_open` at once.
    fn open(&mut self, mut stream: Stream, peer: PeerAddr, via: Via) {
        let (origin, slot, listener, handed_over, client_tls) = match via {
            Via::Acceptor { slot, listener } => {
                (Origin::Accepted, Some(slot), Some(listener), true, Default::default())
            }
            Via::Listener { slot, listener } => {
                (Origin::Accepted, Some(slot), Some(listener), false, Default::default())
            }
            Via::Connect { tag, tls } => (Origin::Connected { tag }, None, None, false, tls),
        };
        // A connection the acceptor handed over counts, for its least-connections
        // choice, as handed over until it counts as active here: `handed_over`
        // moves right after `active`, before any handler runs, so the acceptor
        // may count it twice for a moment, never not at all.
        let taken = |counters: &Counters| {
            if handed_over {
                bump(&counters.handed_over, 1);
            }
        };
        if self.shutdown_deadline.is_some() {
            // Shutting down: take no new connection (dropping `slot` gives its place back).
            bump(&self.core.counters.closed, 1);
            return taken(&self.core.counters);
        }
        let key = self.conns.vacant_key();
        // syscall: the one registration this socket gets, edge-triggered, both ways
        // (a connected outbound socket moves here from the pending range: one MOD)
        let interest = Interest::READABLE | Interest::WRITABLE;
        let registry = self.poll.registry();
        let registered = match origin {
            Origin::Accepted => registry.register(&mut stream, token::conn(key), interest),
            Origin::Connected { .. } => registry.reregister(&mut stream, token::conn(key), interest),
        };
        if let Err(e) = registered {
            log::warn!(
                "coreloop: reactor {} cannot register a connection with {peer}: {e}",
                self.core.index
            );
            bump(&self.core.counters.closed, 1);
            return taken(&self.core.counters);
        }
        // What the listener expects first. A peer it does not trust to send a
        // PROXY header: with `Optional` its bytes are its own (no header is even
        // looked for), with `Required` it is refused.
        let policy = listener.and_then(|i| self.core.config.policies.get(i));
        #[cfg(feature = "tls")]
        let tls = match policy.and_then(|p| p.tls.clone()) {
            Some(acceptor) => Some(crate::tls::TlsStart::Server(acceptor)),
            None => client_tls,
        };
        #[cfg(not(feature = "tls"))]
        let () = client_tls;
        let (mut proxy, mut refused) = (ProxyProtocol::Off, false);
        if let Some(policy) = policy.map(|p| &p.proxy)
            && policy.mode != ProxyProtocol::Off
        {
            match (policy.trusts(&peer), policy.mode) {
                (true, mode) => proxy = mode,
                (false, ProxyProtocol::Required) => refused = true,
                (false, _) => {}
            }
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        bump(&self.core.counters.active, 1);
        taken(&self.core.counters);
        let now = self.core.timers.now;
        #[cfg(feature = "tls")]
        let client = matches!(tls, Some(crate::tls::TlsStart::Client(..)));
        let preamble = crate::conn::Preamble::needed(
            proxy,
            #[cfg(feature = "tls")]
            tls,
        );
        let c = self
            .conns
            .vacant_entry()
            .insert(Conn::new(stream, peer, origin, slot, generation, preamble, now));
        let verdict = if refused {
            std::ops::ControlFlow::Break(CloseReason::Proxy(ProxyError::Untrusted))
        } else if let crate::conn::Phase::Preamble(p) = &mut c.phase {
            let due = Due::Preamble { slot: key, generation };
            let timer = self
                .core
                .timers
                .arm(self.core.config.preamble_timeout, due, Some(&mut c.timers));
            p.timer = Some(timer);
            // A TLS client speaks first: its hello goes now. Otherwise the
            // peer's bytes will come as events.
            #[cfg(feature = "tls")]
            if client {
                let verdict = self.core.handshake(key, c, false);
                return self.settle(key, verdict);
            }
            std::ops::ControlFlow::Continue(())
        } else {
            self.core.start(key, c)
        };
        self.settle(key, verdict);
    }
}

/// How a connection came: accepted (with its place under the cap and its
/// listener's index) by the acceptor, which handed it over, or by this
/// reactor's own listener; or connected out, with the handler's tag.
#[derive(Debug)]
pub(super) enum Via {
    Acceptor { slot: Slot, listener: usize },
    Listener { slot: Slot, listener: usize },
    Connect { tag: u64, tls: crate::conn::ClientTls },
}

impl<H: Handler<M>, M: Send + 'static> Core<H, M> {
    /// What a connection callback borrows of the reactor: the handler, the
    /// counters its panic is counted in, and the scope its `Context` is built
    /// on (staging buffer, handle, timers) — put together here only.
    fn lend(&mut self) -> (&mut H, &Counters, Scope<'_, M>) {
        let scope = Scope {
            out: &mut self.out,
            handle: &self.handle,
            timers: &mut self.timers,
            high_watermark: self.config.high_watermark,
        };
        (&mut self.handler, &self.counters, scope)
    }
}

/// Runs user code under `catch_unwind`. A panic is counted and logged — naming
/// the callback and what it ran for — and comes back as `None`.
fn guarded<R>(counters: &Counters, callback: &str, subject: impl fmt::Display, f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(_) => {
            bump(&counters.panics, 1);
            log::warn!("coreloop: handler panicked in {callback} for {subject}");
            None
        }
    }
}

impl<H: Handler<M>, M: Send + 'static> fmt::Debug for Reactor<H, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("index", &self.core.index)
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}
