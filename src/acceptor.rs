//! The acceptor: one thread that owns every listener, accepts in batches (through
//! [`AcceptLoop`]) and hands each connection to a reactor, round-robin over the
//! reactors still running. It never reads or writes connection data.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use mio::{Events, Interest, Poll, Token};

use crate::accept::AcceptLoop;
use crate::handle::Handle;
use crate::inbox::Inbox;
use crate::reactor::Command;

/// The acceptor's waker token; listener tokens are their indexes.
pub(crate) const WAKER: Token = Token(usize::MAX);

/// Commands the acceptor takes from handles and reactors.
#[derive(Debug)]
pub(crate) enum AcceptorCommand {
    /// Close every listener, then tell every reactor to shut down by `deadline`.
    Shutdown { deadline: Instant },
}

pub(crate) struct Acceptor {
    poll: Poll,
    accept: AcceptLoop,
    inbox: Arc<Inbox<AcceptorCommand>>,
    handle: Handle,
    /// Accepted connections per reactor, handed over once per batch.
    batches: Vec<Vec<Command>>,
    next: usize,
}

impl Acceptor {
    pub(crate) fn new(poll: Poll, accept: AcceptLoop, inbox: Arc<Inbox<AcceptorCommand>>, handle: Handle) -> Self {
        let reactors = handle.reactors();
        Self {
            poll,
            accept,
            inbox,
            handle,
            batches: (0..reactors).map(|_| Vec::new()).collect(),
            next: 0,
        }
    }

    /// Runs until shutdown. On the way out, whatever the cause, listeners are closed
    /// first and then every reactor is told to shut down.
    pub(crate) fn run(mut self) {
        let deadline = self.serve();
        self.inbox.close();
        // syscall: close every listening socket; new connects are refused from here
        self.accept.listeners.clear();
        self.handle.shutdown_reactors(deadline);
    }

    fn serve(&mut self) -> Instant {
        for (i, l) in self.accept.listeners.iter_mut().enumerate() {
            if let Err(e) = self.poll.registry().register(l, Token(i), Interest::READABLE) {
                log::error!("coreloop: cannot register listener {i}: {e}; stopping");
                return Instant::now();
            }
        }
        let mut events = Events::with_capacity(64);
        let mut commands = Vec::new();
        loop {
            let timeout = self
                .accept
                .paused_until()
                .map(|t| t.saturating_duration_since(Instant::now()));
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
                } else {
                    self.accept.mark(ev.token().0);
                }
            }
            let (handle, batches, next) = (&self.handle, &mut self.batches, &mut self.next);
            self.accept.accept(handle, |stream, peer| match pick(handle, next) {
                Some(r) => batches[r].push(Command::Open(stream, peer)),
                // No reactor is left: drop it (closing the socket).
                None => handle.connection_closed(),
            });
            self.dispatch();
            if self.handle.shared().reactors.iter().all(|r| r.is_closed()) {
                log::error!("coreloop: every reactor has stopped; the acceptor stops too");
                return Instant::now();
            }
        }
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
}

/// Round-robin over reactors that are still running.
fn pick(handle: &Handle, next: &mut usize) -> Option<usize> {
    let reactors = &handle.shared().reactors;
    for _ in 0..reactors.len() {
        let r = *next;
        *next = (*next + 1) % reactors.len();
        if !reactors[r].is_closed() {
            return Some(r);
        }
    }
    None
}
