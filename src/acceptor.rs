//! The acceptor: one thread that owns every listener, accepts in batches (through
//! [`AcceptLoop`], within the connection cap) and hands each connection to a
//! reactor still running — round-robin, or the one with the fewest connections.
//! It never reads or writes connection data.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::{Events, Interest, Poll};

use crate::admission::AcceptLoop;
use crate::config::Distribution;
use crate::handle::Handle;
use crate::inbox::{AcceptorCommand, Command, Inbox};
use crate::net::Listener;
use crate::token::{self, Source};

/// The acceptor thread's state.
pub(crate) struct Acceptor<M> {
    poll: Poll,
    accept: AcceptLoop,
    inbox: Arc<Inbox<AcceptorCommand>>,
    handle: Handle<M>,
    /// Accepted connections per reactor, handed over once per batch.
    batches: Vec<Vec<Command<M>>>,
    pick: Pick,
}

/// How the next reactor is chosen.
enum Pick {
    /// The position of the round-robin cycle.
    RoundRobin(usize),
    /// Connections handed to each reactor so far: with the reactor's count of
    /// those it has taken on, the ones still in flight to it.
    LeastConnections(Vec<u64>),
}

impl<M: Send + 'static> Acceptor<M> {
    pub(crate) fn new(
        poll: Poll,
        accept: AcceptLoop,
        inbox: Arc<Inbox<AcceptorCommand>>,
        handle: Handle<M>,
        distribution: Distribution,
    ) -> Self {
        let reactors = handle.reactors();
        let pick = match distribution {
            Distribution::LeastConnections => Pick::LeastConnections(vec![0; reactors]),
            // Reuse-port mode starts no acceptor; its arm only keeps the match whole.
            Distribution::RoundRobin | Distribution::ReusePort => Pick::RoundRobin(0),
        };
        Self {
            poll,
            accept,
            inbox,
            handle,
            batches: (0..reactors).map(|_| Vec::new()).collect(),
            pick,
        }
    }

    /// Runs until shutdown. On the way out, whatever the cause, listeners are closed
    /// first and then every reactor is told to shut down.
    pub(crate) fn run(mut self) {
        let (deadline, drain) = self.serve();
        self.inbox.close();
        // syscall: close every listening socket; new connects are refused from
        // here (unless a successor holds them now)
        self.accept.listeners.clear();
        self.handle.shutdown_reactors(deadline, drain);
    }

    /// Serves until told to stop: when, and whether to drain.
    fn serve(&mut self) -> (Instant, bool) {
        for (i, l) in self.accept.listeners.iter_mut().enumerate() {
            if let Err(e) = self.poll.registry().register(l, token::listener(i), Interest::READABLE) {
                log::error!("coreloop: cannot register listener {i}: {e}; stopping");
                return (Instant::now(), false);
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
                return (Instant::now(), false);
            }
            for ev in events.iter() {
                match Source::of(ev.token()) {
                    Source::Waker => {
                        self.inbox.drain_into(&mut commands);
                        for command in commands.drain(..) {
                            match command {
                                AcceptorCommand::Shutdown { deadline, drain } => return (deadline, drain),
                                AcceptorCommand::Handover(reply) => {
                                    let _ = reply.send(self.hand_over());
                                }
                                AcceptorCommand::Disown => {
                                    self.accept.listeners.iter_mut().for_each(Listener::disown_path);
                                }
                            }
                        }
                    }
                    Source::Listener(i) => self.accept.mark(i),
                    Source::Pending(_) | Source::Conn(_) => {} // not registered here
                }
            }
            let (handle, batches, pick) = (&self.handle, &mut self.batches, &mut self.pick);
            self.accept.accept(|stream, peer, slot, listener| {
                // With no reactor left the connection is dropped: its socket
                // closes and its slot gives the place back.
                if let Some(r) = pick.next(handle) {
                    batches[r].push(Command::Open(stream, peer, slot, listener));
                }
            });
            self.dispatch();
            if self.handle.shared().reactors.iter().all(|r| r.is_closed()) {
                log::error!("coreloop: every reactor has stopped; the acceptor stops too");
                return (Instant::now(), false);
            }
        }
    }

    /// Duplicates every listening socket for a successor process.
    fn hand_over(&self) -> std::io::Result<Vec<std::os::fd::OwnedFd>> {
        self.accept.listeners.iter().map(Listener::duplicate).collect()
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
                self.batches[r].clear(); // their slots give their places back
            }
        }
    }
}

impl Pick {
    /// The reactor for the next connection, among those still running; counts
    /// the connection as handed to it.
    fn next<M: Send + 'static>(&mut self, handle: &Handle<M>) -> Option<usize> {
        let shared = handle.shared();
        let reactors = &shared.reactors;
        match self {
            Pick::RoundRobin(next) => {
                for _ in 0..reactors.len() {
                    let r = *next;
                    *next = (*next + 1) % reactors.len();
                    if !reactors[r].is_closed() {
                        return Some(r);
                    }
                }
                None
            }
            Pick::LeastConnections(handed) => {
                // Open connections plus those handed over and not yet taken on
                // (in this batch, or in an earlier one the reactor has not run
                // yet); the lowest index wins a tie. Relaxed loads: a count a
                // moment old only makes the choice a moment old.
                let r = (0..reactors.len())
                    .filter(|&r| !reactors[r].is_closed())
                    .min_by_key(|&r| {
                        let c = &shared.counters[r];
                        let taken = c.handed_over.load(Ordering::Relaxed);
                        c.active.load(Ordering::Relaxed) + handed[r].saturating_sub(taken)
                    })?;
                handed[r] += 1;
                Some(r)
            }
        }
    }
}
