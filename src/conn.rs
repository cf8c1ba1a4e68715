//! One connection's state inside a reactor's slab: its socket, the user's state, the
//! input it has not consumed, and the output the socket has not taken.
//!
//! Buffers here exist only while needed: an idle connection holds neither an input
//! buffer nor an output queue. This file moves bytes to the socket; it never calls
//! the handler (the reactor does).

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};

use crate::context::Origin;
use crate::handler::CloseReason;
use crate::net::{PeerAddr, Stream};
use crate::outbuf::MAX_IOV;

#[derive(Debug)]
pub(crate) struct Conn<S> {
    pub(crate) stream: Stream,
    pub(crate) peer: PeerAddr,
    pub(crate) origin: Origin,
    pub(crate) generation: u64,
    pub(crate) state: S,
    /// Input the handler left unconsumed (a partial frame). Unallocated when empty.
    pub(crate) input: BytesMut,
    /// Output the socket has not taken yet. Unallocated when empty.
    pub(crate) output: VecDeque<Bytes>,
    /// Bytes in `output`.
    pub(crate) queued: usize,
    /// Set once a close was decided; the connection closes when `output` drains.
    pub(crate) closing: Option<CloseReason>,
    /// Reading stopped because `queued` passed the high watermark.
    pub(crate) read_paused: bool,
    /// Waiting in the reactor's ready list for another read turn.
    pub(crate) in_ready: bool,
    /// A readiness event reported the read side closed: read on to end of stream.
    pub(crate) fin_seen: bool,
    /// End of stream was read.
    pub(crate) eof: bool,
    /// The handler asked to shut down writing once `output` drains.
    pub(crate) shutdown_write: bool,
    /// Writing is shut down: output is discarded.
    pub(crate) write_shut: bool,
    /// Our FIN is sent; waiting for the peer's end of stream before closing.
    pub(crate) lingering: bool,
    /// The tick of the last byte read or written (idle timeout).
    pub(crate) last_active: u64,
}

impl<S> Conn<S> {
    pub(crate) fn new(stream: Stream, peer: PeerAddr, origin: Origin, generation: u64, state: S, now: u64) -> Self {
        Self {
            stream,
            peer,
            origin,
            generation,
            state,
            input: BytesMut::new(),
            output: VecDeque::new(),
            queued: 0,
            closing: None,
            read_paused: false,
            in_ready: false,
            fin_seen: false,
            eof: false,
            shutdown_write: false,
            write_shut: false,
            lingering: false,
            last_active: now,
        }
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
