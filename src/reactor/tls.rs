//! TLS on a connection (feature `tls`): the handshake in the preamble, under
//! the reactor's limit on handshakes in progress; then the transport, decrypting
//! what is read into the handler's input and encrypting what it staged.
//!
//! Reads go through the reactor's shared buffer as for a plain connection — one
//! `read`, a short read means drained — and the ciphertext is fed to rustls from
//! there. Writes hand the staged plaintext to rustls and send the records with
//! one `writev`; plaintext rustls cannot take yet (it holds at most
//! [`CIPHERTEXT_LIMIT`](crate::tls::CIPHERTEXT_LIMIT) of records the socket has
//! not taken) waits in the connection's queue, where the watermarks count it.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::ops::ControlFlow::{Break, Continue};

use bytes::Buf;

use crate::conn::{Conn, Handshake, Phase, Read, Verdict, Write};
use crate::handler::Handler;
use crate::outbuf::MAX_IOV;
use crate::reason::CloseReason;
use crate::stats::bump;
use crate::tls::TlsError;

use super::Core;

/// The reactor's handshakes in progress, and the connections waiting to start
/// theirs.
#[derive(Debug, Default)]
pub(crate) struct Handshakes {
    /// Places taken (running handshakes, and places granted to a waiting
    /// connection that has not had its turn yet).
    taken: usize,
    /// Connections waiting for a place, oldest first: `(slot, generation)`.
    waiting: VecDeque<(usize, u64)>,
    /// Waiting connections given a place, before their turn comes.
    granted: Vec<(usize, u64)>,
}

impl<H: Handler<M>, M: Send + 'static> Core<H, M> {
    /// The TLS handshake of a connection in its preamble (its PROXY header, if
    /// any, is read): starts it when the reactor has room, feeds it what was
    /// read with the header and what the socket has, and opens the connection
    /// once it is done. `read`: whether the socket may hold more.
    pub(super) fn handshake(&mut self, key: usize, c: &mut Conn<H::Conn>, mut read: bool) -> Verdict {
        let Phase::Preamble(p) = &mut c.phase else {
            return Continue(());
        };
        let Some(start) = &p.tls else { return Continue(()) };
        match p.handshake {
            Handshake::Running => {}
            Handshake::NotStarted | Handshake::Waiting => {
                let me = (key, c.generation);
                let granted = self.handshakes.granted.iter().position(|g| *g == me);
                if let Some(i) = granted {
                    self.handshakes.granted.swap_remove(i);
                } else if self.handshakes.taken < self.config.max_handshakes {
                    self.handshakes.taken += 1;
                } else {
                    if p.handshake == Handshake::NotStarted {
                        p.handshake = Handshake::Waiting;
                        self.handshakes.waiting.push_back(me);
                    }
                    return Continue(()); // its turn comes when a place frees
                }
                p.handshake = Handshake::Running;
                match start.session() {
                    Ok(session) => c.tls = Some(Box::new(session)),
                    Err(e) => {
                        log::warn!("coreloop: cannot start a TLS session: {e}");
                        return Break(CloseReason::Tls(TlsError::Handshake));
                    }
                }
                // Bytes may have arrived while it waited: their edge is spent.
                read = true;
            }
        }
        let (Phase::Preamble(p), Some(tls)) = (&mut c.phase, c.tls.as_mut()) else {
            return Continue(());
        };
        // What came with the PROXY header; plaintext after the handshake's last
        // message is kept for the handler.
        if !p.buf.is_empty() {
            let buf = mem::take(&mut p.buf);
            if let Err(e) = tls.feed(&buf, &mut c.input) {
                return Break(self.refuse(c, e));
            }
        }
        loop {
            let Some(tls) = c.tls.as_mut() else { return Continue(()) };
            if !tls.is_handshaking() {
                // What the handshake still has to send (a server's session
                // tickets) goes with the handler's first reply.
                return self.handshake_done(key, c, read);
            }
            // syscall: writev of the handshake's records, when it has some to send
            match tls.flush(&mut c.stream) {
                Ok(n) => bump(&self.counters.bytes_out, n as u64),
                Err(e) => return Break(CloseReason::Io(e.kind())),
            }
            if !read {
                return Continue(());
            }
            // syscall: read into the reactor's shared buffer, as for any connection
            let n = match c.stream.read(&mut self.scratch) {
                Ok(0) => return Break(CloseReason::Tls(TlsError::Handshake)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Continue(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Break(CloseReason::Io(e.kind())),
            };
            bump(&self.counters.bytes_in, n as u64);
            read = n == self.scratch.len() || c.fin_seen;
            if let Err(e) = tls.feed(&self.scratch[..n], &mut c.input) {
                return Break(self.refuse(c, e));
            }
        }
    }

    /// A handshake failed: rustls's alert goes out if the socket takes it.
    fn refuse(&mut self, c: &mut Conn<H::Conn>, e: TlsError) -> CloseReason {
        if let Some(tls) = c.tls.as_mut()
            && let Ok(n) = tls.flush(&mut c.stream)
        {
            bump(&self.counters.bytes_out, n as u64);
        }
        CloseReason::Tls(e)
    }

    /// The handshake is done: its place goes to the next waiting connection,
    /// the handler's `on_open` runs, and plaintext that came with the
    /// handshake's last message is handed over.
    fn handshake_done(&mut self, key: usize, c: &mut Conn<H::Conn>, read: bool) -> Verdict {
        let open = Phase::Open {
            read: Read::Reading,
            write: Write::Open,
        };
        let Phase::Preamble(p) = mem::replace(&mut c.phase, open) else {
            return Continue(());
        };
        if let Some(timer) = p.timer {
            self.timers.remove(timer, Some(&mut c.timers));
        }
        self.release_handshake();
        bump(&self.counters.tls_handshakes, 1);
        self.start(key, c)?;
        if c.is_open() && !c.input.is_empty() {
            self.deliver(key, c, 0)?;
        }
        // The handshake's last records, when no reply took them along.
        // syscall: writev, only then
        if c.is_open()
            && let Some(tls) = c.tls.as_mut()
            && tls.wants_write()
            && let Err(e) = self.flush_tls(c)
        {
            return Break(CloseReason::Io(e.kind()));
        }
        if read { self.read(key, c) } else { Continue(()) }
    }

    /// A place under the limit is free: it goes to the oldest waiting
    /// connection, which is read on its next turn.
    pub(super) fn release_handshake(&mut self) {
        match self.handshakes.waiting.pop_front() {
            Some(next) => {
                self.handshakes.granted.push(next);
                self.ready.push(next);
            }
            None => self.handshakes.taken -= 1,
        }
    }

    /// A connection in its preamble closes: a place it held or was granted is
    /// given on; a place it waited for is no longer wanted.
    pub(super) fn handshake_closed(&mut self, key: usize, generation: u64, handshake: Handshake) {
        let me = (key, generation);
        match handshake {
            Handshake::NotStarted => {}
            Handshake::Running => self.release_handshake(),
            Handshake::Waiting => {
                if let Some(i) = self.handshakes.granted.iter().position(|g| *g == me) {
                    self.handshakes.granted.swap_remove(i);
                    self.release_handshake();
                } else {
                    self.handshakes.waiting.retain(|w| *w != me);
                }
            }
        }
    }

    /// `n` bytes of ciphertext are in the shared buffer: their plaintext goes to
    /// the handler (with what it left last time); a `close_notify` among them is
    /// the peer's end of stream.
    pub(super) fn deliver_tls(&mut self, key: usize, c: &mut Conn<H::Conn>, n: usize) -> Verdict {
        let Some(tls) = c.tls.as_mut() else { return Continue(()) };
        let stashed = !c.input.is_empty();
        let mut input = if stashed {
            mem::take(&mut c.input)
        } else {
            mem::take(&mut self.input)
        };
        let fed = tls.feed(&self.scratch[..n], &mut input);
        // Records of its own to send (a key update's answer, say).
        let flushed = tls.flush(&mut c.stream);
        let fed = match fed {
            Ok(fed) => fed,
            Err(e) => {
                input.clear();
                if !stashed {
                    self.input = input;
                }
                return Break(self.refuse(c, e));
            }
        };
        match flushed {
            Ok(w) => bump(&self.counters.bytes_out, w as u64),
            Err(e) => return Break(CloseReason::Io(e.kind())),
        }
        if fed.plaintext > 0 {
            self.deliver_input(key, c, input, stashed)?;
        } else if stashed {
            c.input = input;
        } else {
            self.input = input;
        }
        if fed.closed && c.is_open() {
            return self.end_of_stream(key, c);
        }
        Continue(())
    }

    /// The peer's end of stream on a TLS connection: clean after its
    /// `close_notify` (already handled), a truncation without one.
    pub(super) fn tls_end_of_stream(&mut self, key: usize, c: &mut Conn<H::Conn>) -> Verdict {
        match &c.tls {
            Some(tls) if !tls.peer_closed() && c.is_open() => Break(CloseReason::Tls(TlsError::Truncated)),
            _ => self.end_of_stream(key, c),
        }
    }

    /// Writes what the last callback staged through TLS: rustls encrypts what it
    /// can take, one `writev` sends the records; plaintext it could not take is
    /// queued.
    pub(super) fn send_staged_tls(&mut self, key: usize, c: &mut Conn<H::Conn>) -> Verdict {
        let total = self.out.len();
        let Some(tls) = c.tls.as_mut() else { return Continue(()) };
        // Records waiting in rustls (a handshake's last ones, say) are no
        // reason to queue: rustls appends after them, within its limit.
        let taken = if c.output.is_empty() {
            match self.out.as_contiguous() {
                Some(buf) => tls.encrypt(buf),
                None => {
                    let mut iov = [io::IoSlice::new(&[]); MAX_IOV];
                    let n = self.out.slices(0, &mut iov);
                    tls.encrypt_vectored(&iov[..n])
                }
            }
        } else {
            0 // plaintext waits already: queue behind it, in order
        };
        if taken == total {
            self.out.clear();
        } else {
            self.out.queue_rest(taken, &mut c.output);
            c.queued += total - taken;
        }
        // syscall: one writev of the records (more while the socket takes them
        // and plaintext waits: no edge would come to send it)
        if let Err(e) = self.flush_tls(c) {
            return Break(CloseReason::Io(e.kind()));
        }
        self.check_output(key, c)
    }

    /// The socket can take more: send the records rustls holds, then encrypt
    /// queued plaintext and send that, until the socket is full or all is sent.
    pub(super) fn flush_tls(&mut self, c: &mut Conn<H::Conn>) -> io::Result<()> {
        let Some(tls) = c.tls.as_mut() else { return Ok(()) };
        loop {
            let w = tls.flush(&mut c.stream)?;
            bump(&self.counters.bytes_out, w as u64);
            if tls.wants_write() || c.output.is_empty() {
                break;
            }
            // Only once the records are out is more encrypted: rustls never
            // holds more than its limit, the rest stays counted in the queue.
            let mut taken = 0;
            while let Some(front) = c.output.front_mut() {
                let n = tls.encrypt(front);
                if n == 0 {
                    break;
                }
                taken += n;
                if n == front.len() {
                    c.output.pop_front();
                } else {
                    front.advance(n);
                    break;
                }
            }
            c.queued -= taken;
            if taken == 0 {
                break;
            }
        }
        if c.output.is_empty() {
            c.output = VecDeque::new();
        }
        c.last_active = self.timers.now;
        Ok(())
    }

    /// Before our FIN: `close_notify`, after everything else. `false` while its
    /// records wait for the socket (the FIN must follow them).
    pub(super) fn tls_close_notify(&mut self, c: &mut Conn<H::Conn>) -> Result<bool, CloseReason> {
        let Some(tls) = c.tls.as_mut() else { return Ok(true) };
        if matches!(c.phase, Phase::Preamble(_)) {
            return Ok(true);
        }
        tls.close_notify();
        match tls.flush(&mut c.stream) {
            Ok(w) => bump(&self.counters.bytes_out, w as u64),
            Err(e) => return Err(CloseReason::Io(e.kind())),
        }
        Ok(!tls.wants_write())
    }
}
