//! Admission: accepting from a set of listeners until each is drained, within the
//! connection cap, and backing off — without spinning — when the process runs out
//! of descriptors or memory.
//!
//! Used by the acceptor thread, and in reuse-port mode by each reactor for its own
//! listeners. It decides when to accept, never where a connection goes.
//! Listeners are edge-triggered, so whenever accepting stops early (cap, back-off)
//! a listener stays marked pending and is retried without a new event.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::handle::Handle;
use crate::net::{ListenOptions, Listener, PeerAddr, Stream};

/// At most one accept-failure log line per this interval.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// How an accept error is handled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// The listener is drained: wait for its next edge.
    Drained,
    /// One connection failed before we got it (aborted, reset, interrupted): go on.
    Skip,
    /// The process or system is out of descriptors or memory, or the error is
    /// unknown: stop accepting for the back-off, without spinning.
    BackOff,
}

pub(crate) fn classify(e: &io::Error) -> AcceptError {
    if e.kind() == io::ErrorKind::WouldBlock {
        return AcceptError::Drained;
    }
    match e.raw_os_error() {
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::ECONNRESET | libc::EPERM) => AcceptError::Skip,
        _ => AcceptError::BackOff,
    }
}

#[derive(Debug)]
pub(crate) struct AcceptLoop {
    pub(crate) listeners: Vec<Listener>,
    /// Per listener: may have connections waiting (no `WouldBlock` since its edge).
    pending: Vec<bool>,
    opts: ListenOptions,
    backoff: Duration,
    paused_until: Option<Instant>,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl AcceptLoop {
    pub(crate) fn new(listeners: Vec<Listener>, opts: ListenOptions, backoff: Duration) -> Self {
        Self {
            pending: vec![false; listeners.len()],
            listeners,
            opts,
            backoff,
            paused_until: None,
            last_log: None,
            suppressed: 0,
        }
    }

    /// Listener `i` reported readiness.
    pub(crate) fn mark(&mut self, i: usize) {
        if let Some(p) = self.pending.get_mut(i) {
            *p = true;
        }
    }

    /// When a back-off ends, if one is in force.
    pub(crate) fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Accepts from every pending listener until each is drained, the cap is
    /// reached or a back-off starts, handing each connection to `take`. Each
    /// accepted connection counts against the cap from here on.
    pub(crate) fn accept(&mut self, handle: &Handle, mut take: impl FnMut(Stream, PeerAddr)) {
        if let Some(t) = self.paused_until {
            if Instant::now() < t {
                return;
            }
            self.paused_until = None;
        }
        for i in 0..self.listeners.len() {
            while self.pending[i] {
                if !handle.room_for_one() {
                    return;
                }
                // syscall: accept4, one per connection, until WouldBlock
                match self.listeners[i].accept(&self.opts) {
                    Ok((stream, peer)) => {
                        handle.shared().live.fetch_add(1, Ordering::SeqCst);
                        take(stream, peer);
                    }
                    Err(e) => match classify(&e) {
                        AcceptError::Drained => self.pending[i] = false,
                        AcceptError::Skip => log::debug!("coreloop: accept skipped a failed connection: {e}"),
                        AcceptError::BackOff => {
                            handle.shared().accept_backoffs.fetch_add(1, Ordering::Relaxed);
                            self.log_rate_limited(&e);
                            self.paused_until = Some(Instant::now() + self.backoff);
                            return;
                        }
                    },
                }
            }
        }
    }

    fn log_rate_limited(&mut self, e: &io::Error) {
        let now = Instant::now();
        if self.last_log.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        log::warn!(
            "coreloop: accept failed: {e}; pausing accepts for {:?} ({} similar failures not logged)",
            self.backoff,
            self.suppressed
        );
        self.last_log = Some(now);
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_classified() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(classify(&io::ErrorKind::WouldBlock.into()), AcceptError::Drained);
        assert_eq!(classify(&os(libc::ECONNABORTED)), AcceptError::Skip);
        assert_eq!(classify(&os(libc::EPROTO)), AcceptError::Skip);
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(classify(&os(errno)), AcceptError::BackOff, "errno {errno}");
        }
    }
}
