//! The preamble: what a connection does before the handler's `on_open` — reading
//! a PROXY protocol header, on listeners that expect one.
//!
//! Bytes are read as for any connection (into the reactor's buffer, at most the
//! read budget, never waiting on a socket) and gathered until `proxy::parse`
//! can tell what they are. A header is taken off; whatever the client sent after
//! it, in the same read or not, is handed to `on_data` right after `on_open`, so
//! not a byte is lost and none of the header reaches the handler. When the
//! header and the client's first bytes arrive together, the preamble costs the
//! read that brought them and nothing more.

use std::mem;
use std::ops::ControlFlow::{Break, Continue};

use bytes::{Buf, BytesMut};

use crate::conn::{Conn, Phase, Read, Verdict, Write};
use crate::endpoint::PeerAddr;
use crate::handler::Handler;
use crate::proxy::{self, MAX_HEADER, Parsed, ProxyError, ProxyHeader, ProxyProtocol};
use crate::reason::CloseReason;
use crate::stats::bump;

use super::Core;

impl<H: Handler<M>, M: Send + 'static> Core<H, M> {
    /// Reads a connection's preamble until its PROXY header is complete (or
    /// known to be absent), then opens it.
    pub(super) fn preamble(&mut self, key: usize, c: &mut Conn<H::Conn>) -> Verdict {
        loop {
            let Phase::Preamble(p) = &mut c.phase else {
                return Continue(());
            };
            // The header is read (or none is expected): the TLS handshake.
            #[cfg(feature = "tls")]
            if p.proxy == ProxyProtocol::Off {
                return self.handshake(key, c, true);
            }
            // syscall: read into the reactor's shared buffer, as for any connection
            let n = match c.stream.read(&mut self.scratch) {
                // Gone before a header: a probe that connected and left, or a
                // header cut short.
                Ok(0) if p.buf.is_empty() => return Break(CloseReason::PeerClosed),
                Ok(0) => return Break(CloseReason::Proxy(ProxyError::Malformed)),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Continue(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Break(CloseReason::Io(e.kind())),
            };
            bump(&self.counters.bytes_in, n as u64);
            let drained = n < self.scratch.len() && !c.fin_seen;
            p.buf.extend_from_slice(&self.scratch[..n]);
            match proxy::parse(&p.buf, p.proxy, &c.peer) {
                Parsed::Incomplete if p.buf.len() > MAX_HEADER => {
                    return Break(CloseReason::Proxy(ProxyError::Oversized));
                }
                Parsed::Incomplete if drained => return Continue(()), // the rest will come
                Parsed::Incomplete => continue,
                Parsed::NoHeader => return self.open_after_preamble(key, c, None, 0, drained),
                Parsed::Header { header, len } => return self.open_after_preamble(key, c, Some(header), len, drained),
                Parsed::Error(e) => return Break(CloseReason::Proxy(e)),
            }
        }
    }

    /// The preamble deadline passed. With `Optional`, a connection that has sent
    /// nothing is opened without a header (its protocol may have the server
    /// speak first); otherwise its header is late.
    pub(super) fn preamble_late(&mut self, key: usize, c: &mut Conn<H::Conn>) -> Verdict {
        match &c.phase {
            // The PROXY header is read: the TLS handshake is late.
            #[cfg(feature = "tls")]
            Phase::Preamble(p) if p.proxy == ProxyProtocol::Off => Break(CloseReason::Tls(crate::tls::TlsError::Late)),
            Phase::Preamble(p) if p.proxy == ProxyProtocol::Optional && p.buf.is_empty() => {
                self.open_after_preamble(key, c, None, 0, true)
            }
            Phase::Preamble(_) => Break(CloseReason::Proxy(ProxyError::Late)),
            _ => Continue(()),
        }
    }

    /// Opens a connection whose preamble is done: the header (of `len` bytes)
    /// names the client, `on_open` runs, and what followed the header goes to
    /// `on_data` at once. If the last read did not drain the socket, reading
    /// goes on (the readiness edge it came with is spent).
    fn open_after_preamble(
        &mut self,
        key: usize,
        c: &mut Conn<H::Conn>,
        header: Option<ProxyHeader>,
        len: usize,
        drained: bool,
    ) -> Verdict {
        if let Some(header) = header {
            if let Some(client) = header.source() {
                c.peer = PeerAddr::Tcp(client);
            }
            c.proxy = Some(Box::new(header));
        }
        // A TLS handshake follows: what came after the header is its first bytes.
        #[cfg(feature = "tls")]
        if let Phase::Preamble(p) = &mut c.phase
            && p.tls.is_some()
        {
            p.proxy = ProxyProtocol::Off;
            p.buf.advance(len);
            return self.handshake(key, c, !drained);
        }
        let open = Phase::Open {
            read: Read::Reading,
            write: Write::Open,
        };
        let Phase::Preamble(p) = mem::replace(&mut c.phase, open) else {
            return Continue(());
        };
        let p = *p;
        if let Some(timer) = p.timer {
            self.timers.remove(timer, Some(&mut c.timers));
        }
        let mut rest = p.buf;
        rest.advance(len);
        c.input = if rest.is_empty() { BytesMut::new() } else { rest };
        self.start(key, c)?;
        if c.is_open() && !c.input.is_empty() {
            self.deliver(key, c, 0)?; // the client's first bytes, read with the header
        }
        if drained { Continue(()) } else { self.read(key, c) }
    }
}
