//! The acceptor: one thread that owns every listener, accepts in batches and hands
//! each connection to a reactor.
//!
//! It decides admission (the connection cap, back-off when descriptors run out) and
//! placement (round-robin over live reactors). It never reads or writes connection
//! data. Listeners are edge-triggered, so whenever accepting stops early (cap,
//! back-off) the listener stays marked pending and is retried without a new event.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::handle::Handle;
use crate::inbox::Inbox;
use crate::net::{ListenOptions, Listener};
use crate::reactor::Command;

/// The acceptor's waker token; listener tokens are their indexes.
pub(crate) const WAKER: Token = Token(usize::MAX);

/// At most one accept-failure log line per this interval.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Commands the acceptor takes from handles and reactors.
#[derive(Debug)]
pub(crate) enum AcceptorCommand {
    /// Close every listener, then tell every reactor to shut down by `deadline`.
    Shutdown { deadline: Instant },
}

/// How an accept error is handled.
#[derive(Debug, PartialEq, Eq)]
enum AcceptError {
    /// The listener is drained: wait for its next edge.
    Drained,
    /// One connection failed before we got it (aborted, reset, interrupted): go on.
    Skip,
    /// The process or system is out of descriptors or memory, or the error is
    /// unknown: stop accepting for the back-off, without spinning.
    BackOff,
}

fn classify(e: &io::Error) -> AcceptError {
    if e.kind() == io::ErrorKind::WouldBlock {
        return AcceptError::Drained;
    }
    match e.raw_os_error() {
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::ECONNRESET | libc::EPERM) => AcceptError::Skip,
        _ => AcceptError::BackOff,
    }
}

pub(crate) struct Acceptor {
    poll: Poll,
    listeners: Vec<Listener>,
    /// Per listener: may have connections waiting (no `WouldBlock` seen since its
    /// last edge).
    pending: Vec<bool>,
    inbox: Arc<Inbox<AcceptorCommand>>,
    handle: Handle,
    opts: ListenOptions,
    /// Accepted connections per reactor, handed over once per batch.
    batches: Vec<Vec<Command>>,
    next: usize,
    backoff: Duration,
    paused_until: Option<Instant>,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl Acceptor {
    pub(crate) fn new(
        poll: Poll,
        listeners: Vec<Listener>,
        inbox: Arc<Inbox<AcceptorCommand>>,
        handle: Handle,
        opts: ListenOptions,
        backoff: Duration,
    ) -> Self {
        let reactors = handle.reactors();
        Self {
            poll,
            pending: vec![false; listeners.len()],
            listeners,
            inbox,
            handle,
            opts,
            batches: (0..reactors).map(|_| Vec::new()).collect(),
            next: 0,
            backoff,
            paused_until: None,
            last_log: None,
            suppressed: 0,
        }
    }

    /// Runs until shutdown. On the way out, whatever the cause, listeners are closed
    /// first and then every reactor is told to shut down.
    pub(crate) fn run(mut self) {
        let deadline = self.serve();
        self.inbox.close();
        // syscall: close every listening socket; new connects are refused from here
        self.listeners.clear();
        self.handle.shutdown_reactors(deadline);
    }

    fn serve(&mut self) -> Instant {
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if let Err(e) = self.poll.registry().register(l, Token(i), Interest::READABLE) {
                log::error!("coreloop: cannot register listener {i}: {e}; stopping");
                return Instant::now();
            }
        }
        let mut events = Events::with_capacity(64);
        let mut commands = Vec::new();
        loop {
            let timeout = self.paused_until.map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("coreloop: acceptor poll failed: {e}; stopping");
                return Instant::now();
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    self.inbox.drain_into(&mut commands);
                    if let Some(AcceptorCommand::Shutdown { deadline }) = commands.pop() {
                        return deadline;
                    }
                } else if let Some(p) = self.pending.get_mut(ev.token().0) {
                    *p = true;
                }
            }
            if let Some(t) = self.paused_until {
                if Instant::now() < t {
                    continue;
                }
                self.paused_until = None;
            }
            self.accept_pending();
            self.dispatch();
            if self.handle.shared().reactors.iter().all(|r| r.is_closed()) {
                log::error!("coreloop: every reactor has stopped; the acceptor stops too");
                return Instant::now();
            }
        }
    }

    /// Accepts from every pending listener until each is drained, the cap is reached
    /// or accepting must back off.
    fn accept_pending(&mut self) {
        for i in 0..self.listeners.len() {
            while self.pending[i] {
                if !self.room_for_one() {
                    return;
                }
                // syscall: accept4, one per connection, until WouldBlock
                match self.listeners[i].accept(self.opts) {
                    Ok((stream, peer)) => {
                        self.handle.shared().live.fetch_add(1, Ordering::SeqCst);
                        match self.pick() {
                            Some(r) => self.batches[r].push(Command::Open(stream, peer)),
                            None => {
                                // No reactor is left: drop it (closing the socket).
                                self.handle.connection_closed();
                            }
                        }
                    }
                    Err(e) => match classify(&e) {
                        AcceptError::Drained => self.pending[i] = false,
                        AcceptError::Skip => log::debug!("coreloop: accept skipped a failed connection: {e}"),
                        AcceptError::BackOff => {
                            self.log_rate_limited(&e);
                            self.paused_until = Some(Instant::now() + self.backoff);
                            return;
                        }
                    },
                }
            }
        }
    }

    /// Whether one more connection fits under the cap. At the cap, marks the
    /// acceptor as waiting so the next close wakes it.
    fn room_for_one(&self) -> bool {
        let s = self.handle.shared();
        if s.live.load(Ordering::SeqCst) < s.max_connections {
            return true;
        }
        s.at_cap.store(true, Ordering::SeqCst);
        // Re-check: a close between the load above and the store would not wake us.
        if s.live.load(Ordering::SeqCst) < s.max_connections {
            s.at_cap.store(false, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// Round-robin over reactors that are still running.
    fn pick(&mut self) -> Option<usize> {
        let reactors = &self.handle.shared().reactors;
        for _ in 0..reactors.len() {
            let r = self.next;
            self.next = (self.next + 1) % reactors.len();
            if !reactors[r].is_closed() {
                return Some(r);
            }
        }
        None
    }

    /// Hands each reactor its batch with one lock and one wake.
    fn dispatch(&mut self) {
        for r in 0..self.batches.len() {
            if self.batches[r].is_empty() {
                continue;
            }
            let inbox = &self.handle.shared().reactors[r];
            if !inbox.push_batch(&mut self.batches[r]) {
                log::error!(
                    "coreloop: reactor {r} has stopped; dropping {} connection(s)",
                    self.batches[r].len()
                );
                for _ in self.batches[r].drain(..) {
                    self.handle.connection_closed();
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
