//! The per-message path, top to bottom: a readiness event → `writable` (flush the
//! queue) → `read` (into the shared buffer) → `deliver` (to the handler, with
//! what it left last time) → `carry_out` (what the callback asked) → `send_staged`
//! (one `write` for all the callback wrote; the rest queued for the writable edge).
//!
//! Flow control closes the loop: output above the high watermark pauses reading
//! (`check_output`); once it drains to the low watermark `writable` resumes it,
//! tells the handler (`on_writable`) and has `read` hand back the input the
//! handler held back before reading the socket again.
//!
//! Every function here works on one connection and returns a [`Verdict`]; none
//! removes a connection.
//!
//! It passes 400 lines because the whole path, flow control included, is kept in
//! one file to be read in order; the preamble and TLS live apart
//! (`preamble.rs`, `tls.rs`) and only hook in here.

use std::io;
use std::mem;
use std::ops::ControlFlow::{self, Break, Continue};

use bytes::BytesMut;
use mio::event::Event;

use crate::conn::{Conn, Phase, Read, Verdict, Write};
use crate::context::{Context, Requests};
use crate::handler::Handler;
use crate::id::ConnId;
use crate::outbuf::MAX_IOV;
use crate::reason::CloseReason;
use crate::stats::bump;
use crate::timer::Due;

use super::{Core, guarded};

impl<H: Handler<M>, M: Send + 'static> Core<H, M> {
    /// A readiness event for connection `key`.
    pub(super) fn on_event(&mut self, key: usize, c: &mut Conn<H::Conn>, ev: &Event) -> Verdict {
        if ev.is_read_closed() {
            c.fin_seen = true;
        }
        if ev.is_error() {
            // syscall: getsockopt(SO_ERROR), only on an error event
            match c.stream.take_error() {
                Ok(Some(e)) | Err(e) => return Break(CloseReason::Io(e.kind())),
                Ok(None) => {}
            }
        }
        // A writable edge with nothing queued (after every write that emptied
        // the queue, on a busy connection) costs no call.
        if (ev.is_writable() || ev.is_write_closed()) && c.has_output() {
            self.writable(key, c)?;
        }
        if ev.is_readable() || ev.is_read_closed() {
            self.read(key, c)?;
        }
        Continue(())
    }

    /// Reads until the socket is drained (a short read), the read budget is spent,
    /// or the connection stops reading.
    pub(super) fn read(&mut self, key: usize, c: &mut Conn<H::Conn>) -> Verdict {
        let mut reads = 0;
        loop {
            let lingering = match c.phase {
                Phase::Preamble(_) => return self.preamble(key, c),
                Phase::Open {
                    read: Read::Reading, ..
                } => false,
                // After our FIN: read and drop until the peer's end of stream.
                Phase::Lingering { .. } => true,
                // Paused, at end of stream, or flushing before a close (input
                // waits in the socket: no CPU spent on a peer that floods).
                _ => return Continue(()),
            };
            if mem::take(&mut c.redeliver) && !lingering && !c.input.is_empty() {
                // Input held back until output drained: hand it back before
                // reading more (it raised no edge of its own).
                self.deliver(key, c, 0)?;
                continue;
            }
            // syscall: read into the reactor's shared buffer
            let n = match c.stream.read(&mut self.scratch) {
                #[cfg(feature = "tls")]
                Ok(0) if c.tls.is_some() => return self.tls_end_of_stream(key, c),
                Ok(0) => return self.end_of_stream(key, c),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Continue(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Break(CloseReason::Io(e.kind())),
            };
            bump(&self.counters.bytes_in, n as u64);
            c.last_active = self.timers.now;
            // A short read drained the socket: new data raises a new edge, so no
            // read is spent just to see WouldBlock. After a FIN was reported, read
            // on to see the end of stream (it raises no further edge).
            let drained = n < self.scratch.len() && !c.fin_seen;
            if !lingering {
                #[cfg(feature = "tls")]
                if c.tls.is_some() {
                    self.deliver_tls(key, c, n)?;
                } else {
                    self.deliver(key, c, n)?;
                }
                #[cfg(not(feature = "tls"))]
                self.deliver(key, c, n)?;
            }
            if drained {
                return Continue(());
            }
            reads += 1;
            if reads >= self.config.read_budget {
                self.defer(key, c);
                return Continue(());
            }
        }
    }

    /// Hands `n` fresh bytes (in `scratch`; none when input held back is handed
    /// back) to the handler with whatever the connection had left unconsumed.
    pub(super) fn deliver(&mut self, key: usize, c: &mut Conn<H::Conn>, n: usize) -> Verdict {
        let stashed = !c.input.is_empty();
        let mut input = if stashed {
            mem::take(&mut c.input)
        } else {
            mem::take(&mut self.input)
        };
        input.extend_from_slice(&self.scratch[..n]);
        self.deliver_input(key, c, input, stashed)
    }

    /// Hands `input` to the handler: the connection's own buffer (`stashed`), or
    /// the reactor's, which is given back emptied.
    pub(super) fn deliver_input(
        &mut self,
        key: usize,
        c: &mut Conn<H::Conn>,
        mut input: BytesMut,
        stashed: bool,
    ) -> Verdict {
        let asked = self.run(key, c, "on_data", |h, state, cx| h.on_data(state, cx, &mut input));
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
        let asked = asked?;
        self.carry_out(key, c, &asked, CloseReason::Local)?;
        if !c.is_open() {
            return Continue(()); // it closed: what it left is never delivered
        }
        if c.input.len() > self.config.max_input {
            log::debug!(
                "coreloop: {} left {} bytes unconsumed, over the limit of {}; closing",
                ConnId::new(self.index, key, c.generation),
                c.input.len(),
                self.config.max_input
            );
            return self.limit(key, c, CloseReason::InputLimit);
        }
        Continue(())
    }

    /// A limit closes the connection: unconsumed input is dropped, the handler
    /// may write last words, then a graceful close.
    pub(super) fn limit(&mut self, key: usize, c: &mut Conn<H::Conn>, why: CloseReason) -> Verdict {
        c.input = BytesMut::new();
        self.callback(key, c, "on_limit", why, |h, state, cx| h.on_limit(state, cx, why))?;
        self.begin_close(key, c, why)
    }

    /// The peer's end of stream was read.
    pub(super) fn end_of_stream(&mut self, key: usize, c: &mut Conn<H::Conn>) -> Verdict {
        match &mut c.phase {
            // The peer has everything we sent and closed: close cleanly.
            Phase::Lingering { reason } => Break(*reason),
            Phase::Flushing { eof, .. } => {
                *eof = true; // not read while flushing; kept for completeness
                Continue(())
            }
            Phase::Preamble(_) => Break(CloseReason::PeerClosed), // read by `preamble`
            Phase::Open { read, .. } => {
                *read = Read::Eof;
                c.input = BytesMut::new();
                self.callback(key, c, "on_eof", CloseReason::PeerClosed, |h, state, cx| {
                    h.on_eof(state, cx)
                })
            }
        }
    }

    /// Runs handler callback `f` (named `name` in a panic's log line) for
    /// connection `key` under `catch_unwind`, then carries out what it asked; a
    /// close it asks for closes with `reason`, a panic with `Panic`.
    pub(super) fn callback(
        &mut self,
        key: usize,
        c: &mut Conn<H::Conn>,
        name: &str,
        reason: CloseReason,
        f: impl FnOnce(&mut H, &mut H::Conn, &mut Context<'_, M>),
    ) -> Verdict {
        let asked = self.run(key, c, name, f)?;
        self.carry_out(key, c, &asked, reason)
    }

    /// Runs handler callback `f` for connection `key` under `catch_unwind`:
    /// what it asked for, or `Break(Panic)`.
    fn run(
        &mut self,
        key: usize,
        c: &mut Conn<H::Conn>,
        name: &str,
        f: impl FnOnce(&mut H, &mut H::Conn, &mut Context<'_, M>),
    ) -> ControlFlow<CloseReason, Requests> {
        let id = ConnId::new(self.index, key, c.generation);
        let (conn, state) = c.split(id);
        let state = state.expect("callbacks run only once on_open has returned the state");
        let (handler, counters, scope) = self.lend();
        let asked = guarded(counters, name, id, || {
            let mut cx = Context::new(conn, scope);
            f(handler, state, &mut cx);
            cx.requests()
        });
        match asked {
            Some(asked) => Continue(asked),
            None => {
                self.out.clear();
                Break(CloseReason::Panic)
            }
        }
    }

    /// Runs `on_open` for a connection just registered (or done with its
    /// preamble), keeps the state it returns, starts its idle timeout and
    /// carries out what it asked.
    pub(super) fn start(&mut self, key: usize, c: &mut Conn<H::Conn>) -> Verdict {
        let id = ConnId::new(self.index, key, c.generation);
        let (conn, _) = c.split(id);
        let (handler, counters, scope) = self.lend();
        let opened = guarded(counters, "on_open", id, || {
            let mut cx = Context::new(conn, scope);
            let state = handler.on_open(&mut cx);
            (state, cx.requests())
        });
        let Some((state, asked)) = opened else {
            self.out.clear();
            return Break(CloseReason::Panic); // never opened: no `on_close`
        };
        c.state = Some(state);
        log::trace!("coreloop: opened {id} ({})", c.peer);
        if let Some(ms) = self.idle_ms {
            let due = Due::Idle {
                slot: key,
                generation: c.generation,
            };
            self.timers
                .arm(std::time::Duration::from_millis(ms), due, Some(&mut c.timers));
            c.last_active = self.timers.now;
        }
        self.carry_out(key, c, &asked, CloseReason::Local)?;
        match self.stopping {
            // Its preamble was under way when the server began shutting down.
            Some(drain) if c.is_open() => self.tell_shutdown(key, c, drain),
            _ => Continue(()),
        }
    }

    /// Carries out what a callback asked for: sends its output, then closes
    /// gracefully (as `reason`) or half-closes on request.
    pub(super) fn carry_out(
        &mut self,
        key: usize,
        c: &mut Conn<H::Conn>,
        asked: &Requests,
        reason: CloseReason,
    ) -> Verdict {
        if !self.out.is_empty() {
            self.send_staged(key, c)?;
        }
        if asked.close {
            return self.begin_close(key, c, reason);
        }
        if asked.shutdown_write {
            self.request_shutdown(c)?;
        }
        if asked.held_back.get() && !c.over_high && c.is_open() {
            // Told it could not write, but the socket took everything at once:
            // nothing will drain, so it hears that it may go on next turn.
            c.wake_writable = true;
            self.defer(key, c);
        }
        Continue(())
    }

    /// A connection's turn from the ready list: tells the handler it may write
    /// again if it was waiting for that (then hands back the input it held
    /// back), and reads what arrived meanwhile.
    pub(super) fn resume(&mut self, key: usize, c: &mut Conn<H::Conn>) -> Verdict {
        if mem::take(&mut c.wake_writable) && c.is_open() {
            self.callback(key, c, "on_writable", CloseReason::Local, |h, state, cx| {
                h.on_writable(state, cx)
            })?;
            c.redeliver = !c.input.is_empty();
        }
        self.read(key, c)
    }

    /// Writes what the last callback staged: one `write` (or `writev`) call; what
    /// the socket does not take is queued for the writable edge.
    pub(super) fn send_staged(&mut self, key: usize, c: &mut Conn<H::Conn>) -> Verdict {
        let total = self.out.len();
        if !c.accepts_output() {
            // Writing was shut down (or a close is under way): the bytes are dropped.
            self.out.clear();
            return Continue(());
        }
        #[cfg(feature = "tls")]
        if c.tls.is_some() {
            return self.send_staged_tls(key, c);
        }
        if !c.output.is_empty() {
            // The socket was full at the last attempt and no writable edge has come
            // since: a write now would only see EAGAIN. Queue behind, in order.
            self.out.queue_rest(0, &mut c.output);
            c.queued += total;
            return self.check_output(key, c);
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
                Ok(w) if w > 0 => {
                    sent += w;
                    if w < offered {
                        break; // the socket is full
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                failed => {
                    bump(&self.counters.bytes_out, sent as u64);
                    self.out.clear();
                    let kind = failed.map_or_else(|e| e.kind(), |_| io::ErrorKind::WriteZero);
                    return Break(CloseReason::Io(kind));
                }
            }
        }
        bump(&self.counters.bytes_out, sent as u64);
        c.last_active = self.timers.now;
        if sent == total {
            self.out.clear();
            return Continue(());
        }
        self.out.queue_rest(sent, &mut c.output);
        c.queued += total - sent;
        self.check_output(key, c)
    }

    /// The socket can take more: flush the queue; once it drains, go on with a
    /// close or half-close waiting for it, and resume reading below the low
    /// watermark.
    pub(super) fn writable(&mut self, key: usize, c: &mut Conn<H::Conn>) -> Verdict {
        #[cfg(feature = "tls")]
        if c.tls.is_some() {
            if let Err(e) = self.flush_tls(c) {
                return Break(CloseReason::Io(e.kind()));
            }
            return self.drained(key, c);
        }
        if c.output.is_empty() {
            return Continue(());
        }
        match c.flush() {
            Ok(n) => {
                bump(&self.counters.bytes_out, n as u64);
                c.last_active = self.timers.now;
            }
            Err(e) => return Break(CloseReason::Io(e.kind())),
        }
        self.drained(key, c)
    }

    /// After a flush: once nothing waits for the socket, a close or half-close
    /// waiting for that goes on; below the low watermark, reading resumes.
    fn drained(&mut self, key: usize, c: &mut Conn<H::Conn>) -> Verdict {
        if !c.has_output() {
            match c.phase {
                Phase::Flushing { reason, .. } => return self.linger(key, c, reason),
                Phase::Open {
                    write: Write::ShutRequested,
                    ..
                } => self.shut_write(c)?,
                _ => {}
            }
        }
        if c.over_high && c.queued <= self.config.low_watermark {
            c.over_high = false;
            if let Phase::Open { read, .. } = &mut c.phase {
                if *read == Read::Paused {
                    *read = Read::Reading;
                }
                // Next turn: `on_writable`, the input held back, then what
                // arrived while paused (it raised no new edge).
                c.wake_writable = true;
                self.defer(key, c);
            }
        }
        Continue(())
    }

    /// Stops reading a connection whose queued output passed the high watermark,
    /// so a peer that sends without reading cannot grow our memory; closes one
    /// whose queue passed `max_output` (output that does not come from its own
    /// input — `Handle::send`, a handler writing on its own — is not held back by
    /// pausing reads).
    pub(super) fn check_output(&mut self, key: usize, c: &mut Conn<H::Conn>) -> Verdict {
        if c.queued > self.config.max_output {
            log::debug!(
                "coreloop: {} has {} bytes queued, over the limit of {}; closing",
                ConnId::new(self.index, key, c.generation),
                c.queued,
                self.config.max_output
            );
            return Break(CloseReason::OutputLimit);
        }
        if c.queued > self.config.high_watermark && !c.over_high {
            c.over_high = true;
            bump(&self.counters.pauses, 1);
            if let Phase::Open {
                read: read @ Read::Reading,
                ..
            } = &mut c.phase
            {
                *read = Read::Paused;
            }
        }
        Continue(())
    }

    /// Queues a connection for a read next turn, without waiting for an edge.
    pub(super) fn defer(&mut self, key: usize, c: &mut Conn<H::Conn>) {
        if !c.in_ready {
            c.in_ready = true;
            self.ready.push((key, c.generation));
        }
    }
}
