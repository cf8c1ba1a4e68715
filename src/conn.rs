//! One connection inside a reactor's slab: its socket, the user's state, the input
//! it has not consumed, the output the socket has not taken — and where it is in
//! its life, as types.
//!
//! # The lifecycle
//!
//! ```text
//!         Preamble (a PROXY header to read; later, a TLS handshake)
//!            │ done: the handler's `on_open` runs
//!            ▼
//!            ┌──────────── Open { read, write } ────────────┐
//!            │ read:  Reading ⇄ Paused (output above high)   │
//!            │        Reading/Paused → Eof (peer's FIN read) │
//!            │ write: Open → ShutRequested → Shut (our FIN)  │
//!            └───────┬────────────────────────┬─────────────┘
//!     close, output  │                        │ close, nothing queued
//!     still queued   ▼                        │
//!       Flushing { reason, eof }              │
//!            │ queue drained                  │
//!            ▼                                ▼
//!       Lingering { reason }  ◄───── our FIN sent (unless the peer's came first,
//!            │                       or lingering is off: then closed at once)
//!            │ peer's end of stream, or the linger time
//!            ▼
//!         closed (removed from the slab; `on_close`)
//! ```
//!
//! Each state holds only what is true in it: a flushing connection cannot be
//! paused or half-closed by us (it is not read, and its FIN has not been sent), a
//! lingering one has sent its FIN and only reads to drop. Functions that may end a
//! connection return a [`Verdict`], which the caller must act on; only the reactor's
//! `close` removes a connection, so none is used after it was decided closed.
//!
//! # The preamble, and room for a transport
//!
//! - **The preamble** is the work done before the handler's `on_open`, bounded
//!   in bytes and time: reading a PROXY-protocol header (`Phase::Preamble`, its
//!   progress boxed: only connections of listeners that ask for it pay for it;
//!   the TLS handshake will join it). The handler never sees a connection in it
//!   — its state does not exist yet — and a failed preamble closes with a reason
//!   of its own.
//! - **A transport** between the socket and the handler's bytes: plain (the
//!   identity, what exists today, costing nothing) or TLS (decrypting into `input`,
//!   encrypting what the handler staged). It becomes a field beside `stream`; the
//!   read and write paths go through it, and `input`/`output` keep holding the
//!   handler's bytes, so the watermarks and limits count what the handler sees.
//!
//! Buffers here exist only while needed: an idle connection holds neither an input
//! buffer nor an output queue. This file moves bytes to the socket; it never calls
//! the handler (the reactor does).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::ops::ControlFlow;

use bytes::{Buf, Bytes, BytesMut};

use crate::admission::Slot;
use crate::context::{ConnRef, Origin};
use crate::endpoint::PeerAddr;
use crate::id::ConnId;
use crate::net::Stream;
use crate::outbuf::MAX_IOV;
use crate::proxy::{ProxyHeader, ProxyProtocol};
use crate::reason::CloseReason;
use crate::timer::{TimerId, TimerList};

/// What an operation on a connection decided: `Continue(())` to keep serving it,
/// `Break(reason)` to close it for `reason`. `#[must_use]` (as `ControlFlow` is),
/// and `?` passes a `Break` up to the one place that closes.
pub(crate) type Verdict = ControlFlow<CloseReason>;

/// Where a connection is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Before `on_open`: reading a PROXY header.
    Preamble(Box<Preamble>),
    /// Serving: the handler sees its input and writes its output.
    Open { read: Read, write: Write },
    /// A close was decided while output was queued: the queue drains first; input
    /// waits in the socket unread (no CPU spent on a peer that floods).
    Flushing {
        reason: CloseReason,
        /// The peer's end of stream was read before the close was decided.
        eof: bool,
    },
    /// Our FIN is sent; input is read and dropped until the peer's end of stream
    /// or the linger time, so the kernel never resets what we sent.
    Lingering { reason: CloseReason },
}

/// A connection's progress through its preamble.
#[derive(Debug)]
pub(crate) struct Preamble {
    /// The PROXY header still to read (`Off` once read, or if none is expected).
    pub(crate) proxy: ProxyProtocol,
    /// What was read so far: the header, perhaps followed by the client's first
    /// bytes.
    pub(crate) buf: BytesMut,
    /// The deadline for the preamble, once armed.
    pub(crate) timer: Option<TimerId>,
    /// A TLS handshake follows the header (if any): how it starts.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsStart>,
    /// Where that handshake is: not started, waiting for a place under the
    /// reactor's limit, or running (its session is the connection's).
    #[cfg(feature = "tls")]
    pub(crate) handshake: Handshake,
}

/// How an outbound connection's TLS starts (feature `tls`; nothing without it).
#[cfg(feature = "tls")]
pub(crate) type ClientTls = Option<crate::tls::TlsStart>;
/// How an outbound connection's TLS starts (feature `tls`; nothing without it).
#[cfg(not(feature = "tls"))]
pub(crate) type ClientTls = ();

impl Preamble {
    /// What a connection does before `on_open`: read a PROXY header, handshake
    /// TLS — or nothing (`None`).
    pub(crate) fn needed(proxy: ProxyProtocol, #[cfg(feature = "tls")] tls: ClientTls) -> Option<Box<Self>> {
        #[cfg(feature = "tls")]
        let needed = proxy != ProxyProtocol::Off || tls.is_some();
        #[cfg(not(feature = "tls"))]
        let needed = proxy != ProxyProtocol::Off;
        needed.then(|| {
            Box::new(Preamble {
                proxy,
                buf: BytesMut::new(),
                timer: None,
                #[cfg(feature = "tls")]
                tls,
                #[cfg(feature = "tls")]
                handshake: Handshake::NotStarted,
            })
        })
    }
}

/// A TLS handshake's place under the reactor's limit on handshakes in progress.
#[cfg(feature = "tls")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handshake {
    NotStarted,
    /// In the reactor's queue for a place.
    Waiting,
    /// Holds a place.
    Running,
}

/// The receiving direction of an open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    Reading,
    /// Output passed the high watermark: not read until it drains to the low one.
    Paused,
    /// The peer's end of stream was read: nothing more will come.
    Eof,
}

/// The sending direction of an open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    Open,
    /// The handler asked for a half-close: our FIN goes once the queue drains;
    /// later writes are discarded.
    ShutRequested,
    /// Our FIN is sent: writes are discarded.
    Shut,
}

#[derive(Debug)]
pub(crate) struct Conn<S> {
    pub(crate) stream: Stream,
    pub(crate) peer: PeerAddr,
    pub(crate) origin: Origin,
    pub(crate) generation: u64,
    /// Its place under the connection cap (accepted connections only); given
    /// back when the connection is dropped.
    pub(crate) slot: Option<Slot>,
    /// The handler's state: `None` until `on_open` has returned it (in the
    /// preamble, or if `on_open` panicked).
    pub(crate) state: Option<S>,
    pub(crate) phase: Phase,
    /// What a PROXY header said, when one was received (`peer` is then the
    /// client it named).
    pub(crate) proxy: Option<Box<ProxyHeader>>,
    /// Input the handler left unconsumed (a partial frame). Unallocated when empty.
    pub(crate) input: BytesMut,
    /// Output the socket has not taken yet. Unallocated when empty.
    pub(crate) output: VecDeque<Bytes>,
    /// Bytes in `output`.
    pub(crate) queued: usize,
    /// Every timer armed for this connection (idle, linger, the handler's),
    /// cancelled together when it closes.
    pub(crate) timers: TimerList,
    /// The tick of the last byte read or written (idle timeout).
    pub(crate) last_active: u64,
    /// The TLS session between the socket and the handler's bytes, on a TLS
    /// connection (from the start of its handshake).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Box<crate::tls::Session>>,
    /// Output passed the high watermark and has not yet drained to the low one
    /// (flow control: [`Context::is_writable`](crate::Context::is_writable) says
    /// no; reading is paused).
    pub(crate) over_high: bool,
    /// Hints, not states: a readiness event reported the peer's FIN (read on to
    /// the end of stream: it raises no further edge) …
    pub(crate) fin_seen: bool,
    /// … the connection waits in the reactor's ready list for a read turn …
    pub(crate) in_ready: bool,
    /// … the handler is to hear `on_writable` on its next turn (output drained,
    /// or it was told it could not write and the socket then took everything) …
    pub(crate) wake_writable: bool,
    /// … its unconsumed input is to be handed to the handler again before the
    /// next read (it held requests back until output drained) …
    pub(crate) redeliver: bool,
    /// … and a reactor-level callback wrote to it (flushed once it returns).
    pub(crate) touched: bool,
}

impl<S> Conn<S> {
    /// A connection just registered, before `on_open`: open, or in its preamble
    /// when `proxy` asks for a header.
    pub(crate) fn new(
        stream: Stream,
        peer: PeerAddr,
        origin: Origin,
        slot: Option<Slot>,
        generation: u64,
        preamble: Option<Box<Preamble>>,
        now: u64,
    ) -> Self {
        let phase = match preamble {
            Some(p) => Phase::Preamble(p),
            None => Phase::Open {
                read: Read::Reading,
                write: Write::Open,
            },
        };
        Self {
            stream,
            peer,
            origin,
            generation,
            slot,
            state: None,
            phase,
            proxy: None,
            input: BytesMut::new(),
            output: VecDeque::new(),
            queued: 0,
            timers: TimerList::default(),
            last_active: now,
            #[cfg(feature = "tls")]
            tls: None,
            over_high: false,
            fin_seen: false,
            in_ready: false,
            wake_writable: false,
            redeliver: false,
            touched: false,
        }
    }

    /// Whether output waits for the socket: queued bytes, or (TLS) records.
    pub(crate) fn has_output(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.as_ref().is_some_and(|t| t.wants_write()) {
            return true;
        }
        !self.output.is_empty()
    }

    /// Whether the connection is serving (not closing).
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open { .. })
    }

    /// The connection as a handler's context sees it, and its state (`None`
    /// before `on_open` has returned it), borrowed together.
    pub(crate) fn split(&mut self, id: ConnId) -> (ConnRef<'_>, Option<&mut S>) {
        let conn = ConnRef {
            id,
            origin: self.origin,
            peer: &self.peer,
            proxy: self.proxy.as_deref(),
            #[cfg(feature = "tls")]
            tls: self.tls.as_deref(),
            socket: &self.stream,
            queued: self.queued,
            over_high: self.over_high,
            timers: &mut self.timers,
        };
        (conn, self.state.as_mut())
    }

    /// Whether bytes the handler writes now are sent (not after our FIN, or once
    /// one was asked for, and never while closing).
    pub(crate) fn accepts_output(&self) -> bool {
        matches!(self.phase, Phase::Open { write: Write::Open, .. })
    }

    /// Writes queued output until it is empty or the socket is full. Returns the
    /// bytes written; on error the connection is unusable.
    pub(crate) fn flush(&mut self) -> io::Result<usize> {
        let mut written = 0;
        while !self.output.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            let mut offered = 0;
            for b in self.output.iter().take(MAX_IOV) {
                iov[n] = IoSlice::new(b);
                offered += b.len();
                n += 1;
            }
            // syscall: one writev for up to MAX_IOV queued buffers
            let w = match self.stream.write_vectored(&iov[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            written += w;
            self.consume(w);
            if w < offered {
                // The socket is full; the writable edge will bring us back.
                break;
            }
        }
        if self.output.is_empty() {
            // Release the queue's memory: an idle connection holds no buffer.
            self.output = VecDeque::new();
        }
        Ok(written)
    }

    fn consume(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let front = self.output.front_mut().expect("consumed bytes were queued");
            if n >= front.len() {
                n -= front.len();
                self.output.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}
