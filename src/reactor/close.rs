//! Closing: the graceful close (flush, FIN, linger), the half-close, and
//! [`Reactor::close`], the one place a connection leaves the slab.
//!
//! Why linger: closing a socket that still has unread input makes the kernel send
//! a reset, which discards whatever of our output it had not yet transmitted — a
//! client still sending would lose the end of its reply. So a graceful close
//! writes every queued byte, sends a FIN (`shutdown(SHUT_WR)`), then reads and
//! drops input until the peer closes, for at most the linger time.

use std::ops::ControlFlow::{Break, Continue};

use crate::conn::{Conn, Phase, Read, Verdict, Write};
use crate::context::{ConnRef, Context};
use crate::handler::Handler;
use crate::id::ConnId;
use crate::reason::CloseReason;
use crate::stats::{bump, drop_one};
use crate::timer::{Due, TimerList};

use super::{Core, Reactor, guarded};

impl<H: Handler<M>, M: Send + 'static> Core<H, M> {
    /// A graceful close: writes what is queued, then lingers. A connection
    /// already closing keeps its first reason.
    pub(super) fn begin_close(&mut self, key: usize, c: &mut Conn<H::Conn>, reason: CloseReason) -> Verdict {
        let Phase::Open { read, .. } = c.phase else {
            return Continue(()); // already closing
        };
        if !c.has_output() {
            return self.linger(key, c, reason);
        }
        c.phase = Phase::Flushing {
            reason,
            eof: read == Read::Eof,
        };
        Continue(())
    }

    /// The last step of a graceful close, once every queued byte is in the
    /// socket: unless the peer has already closed its side (or lingering is off),
    /// send our FIN and wait for the peer's end of stream.
    pub(super) fn linger(&mut self, key: usize, c: &mut Conn<H::Conn>, reason: CloseReason) -> Verdict {
        let (eof, fin_sent) = match c.phase {
            Phase::Open { read, write } => (read == Read::Eof, write == Write::Shut),
            Phase::Flushing { eof, .. } => (eof, false),
            Phase::Lingering { .. } | Phase::Preamble(_) => return Continue(()),
        };
        // TLS: `close_notify` goes before our FIN (or the close). If the socket
        // cannot take it yet, the close waits for the writable edge.
        #[cfg(feature = "tls")]
        if !fin_sent {
            match self.tls_close_notify(c) {
                Ok(true) => {}
                Ok(false) => {
                    c.phase = Phase::Flushing { reason, eof };
                    return Continue(());
                }
                Err(reason) => return Break(reason),
            }
        }
        if eof || self.config.linger.is_zero() {
            // Nothing more can arrive (or lingering is off): a plain close.
            return Break(reason);
        }
        if !fin_sent {
            // syscall: shutdown(SHUT_WR): our FIN follows the queued bytes
            if let Err(e) = c.stream.shutdown_write() {
                return Break(CloseReason::Io(e.kind()));
            }
        }
        c.phase = Phase::Lingering { reason };
        let due = Due::Linger {
            slot: key,
            generation: c.generation,
        };
        self.timers.arm(self.config.linger, due, Some(&mut c.timers));
        // Input that arrived while we flushed raised no new edge: read it now.
        self.read(key, c)
    }

    /// The handler asked for a half-close: our FIN goes once the queue drains.
    pub(super) fn request_shutdown(&mut self, c: &mut Conn<H::Conn>) -> Verdict {
        if let Phase::Open {
            write: write @ Write::Open,
            ..
        } = &mut c.phase
        {
            *write = Write::ShutRequested;
            if !c.has_output() {
                return self.shut_write(c);
            }
        }
        Continue(())
    }

    /// Sends the FIN of a half-close, now that the queue is empty.
    pub(super) fn shut_write(&mut self, c: &mut Conn<H::Conn>) -> Verdict {
        if let Phase::Open { write, .. } = &c.phase
            && *write != Write::Shut
        {
            // TLS: `close_notify` first; the FIN waits for its records.
            #[cfg(feature = "tls")]
            match self.tls_close_notify(c) {
                Ok(true) => {}
                Ok(false) => return Continue(()),
                Err(reason) => return Break(reason),
            }
            if let Phase::Open { write, .. } = &mut c.phase {
                *write = Write::Shut;
            }
            // syscall: shutdown(SHUT_WR), once, when the handler asks for a half-close
            if let Err(e) = c.stream.shutdown_write() {
                return Break(CloseReason::Io(e.kind()));
            }
        }
        Continue(())
    }
}

impl<H: Handler<M>, M: Send + 'static> Reactor<H, M> {
    /// Acts on what an operation on connection `key` decided: on `Break`, closes it.
    pub(super) fn settle(&mut self, key: usize, verdict: Verdict) {
        if let Break(reason) = verdict {
            self.close(key, reason);
        }
    }

    /// Removes the connection, cancels its timers, tells the handler, closes the
    /// socket, and gives its place under the cap back.
    pub(super) fn close(&mut self, key: usize, reason: CloseReason) {
        let Some(c) = self.conns.try_remove(key) else { return };
        let Conn {
            stream,
            peer,
            origin,
            generation,
            state,
            slot,
            mut timers,
            queued,
            proxy,
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "tls")]
            phase,
            ..
        } = c;
        // On Linux, closing the descriptor removes it from the epoll set: no
        // epoll_ctl(DEL) syscall is spent. Other selectors want it explicitly.
        #[cfg(not(target_os = "linux"))]
        let stream = {
            let mut stream = stream;
            let _ = self.poll.registry().deregister(&mut stream);
            stream
        };
        if self.shutdown_deadline.is_some() && queued > 0 {
            self.unflushed = true; // shutdown could not write all it had queued
        }
        let core = &mut self.core;
        core.timers.remove_all(&mut timers);
        bump(&core.counters.closed, 1);
        drop_one(&core.counters.active);
        match reason {
            CloseReason::Proxy(_) => bump(&core.counters.proxy_errors, 1),
            #[cfg(feature = "tls")]
            CloseReason::Tls(_) => bump(&core.counters.tls_errors, 1),
            _ => {}
        }
        #[cfg(feature = "tls")]
        if let Phase::Preamble(p) = &phase {
            core.handshake_closed(key, generation, p.handshake);
        }
        let id = ConnId::new(core.index, key, generation);
        log::trace!("coreloop: closing {id} ({peer}): {reason}");
        // A connection the handler never saw open (its preamble failed, or
        // `on_open` panicked) gets no `on_close`.
        let Some(state) = state else {
            drop(stream);
            drop(slot);
            // An outbound connection that failed its TLS handshake: for the
            // handler, its connect failed.
            #[cfg(feature = "tls")]
            if let (crate::context::Origin::Connected { tag }, Phase::Preamble(_)) = (origin, &phase) {
                let to = match peer {
                    crate::endpoint::PeerAddr::Tcp(a) => crate::endpoint::Endpoint::Tcp(a),
                    crate::endpoint::PeerAddr::Unix(Some(p)) => crate::endpoint::Endpoint::Unix(p),
                    crate::endpoint::PeerAddr::Unix(None) => {
                        crate::endpoint::Endpoint::Inherited("a Unix socket".into())
                    }
                };
                // "TLS: certificate refused (invalid peer certificate: UnknownIssuer)"
                let e = match (reason, tls.as_ref().and_then(|t| t.failure())) {
                    (CloseReason::Io(kind), _) => std::io::Error::from(kind),
                    (other, Some(detail)) => {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{other} ({detail})"))
                    }
                    (other, None) => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
                };
                self.reactor_callback("on_connect_error", |h, cx| h.on_connect_error(cx, tag, &to, e));
            }
            return;
        };
        let mut none = TimerList::default();
        let conn = ConnRef {
            id,
            origin,
            peer: &peer,
            proxy: proxy.as_deref(),
            #[cfg(feature = "tls")]
            tls: tls.as_deref(),
            socket: &stream,
            queued,
            over_high: false,
            timers: &mut none,
        };
        let (handler, counters, scope) = core.lend();
        guarded(counters, "on_close", id, || {
            let mut cx = Context::closed(conn, scope);
            handler.on_close(state, &mut cx, reason);
        });
        core.out.clear();
        // syscall: close(2), as `stream` drops here; only then is the place under
        // the cap given back, so the descriptors held never pass the cap
        drop(stream);
        drop(slot);
    }

    pub(super) fn close_all(&mut self, reason: CloseReason) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close(key, reason);
        }
    }
}
