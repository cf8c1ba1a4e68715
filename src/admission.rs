//! Admission: whether a connection may be accepted, and accepting it.
//!
//! - [`Admission`] is the connection cap, one count for the whole server. A place
//!   under the cap is reserved *before* `accept` is called, atomically (a
//!   compare-and-swap that never takes the count past the cap), so any number of
//!   accepting threads — the acceptor, or every reactor in reuse-port mode — can
//!   never hold more than the cap between them. The reservation is a [`Slot`]: it
//!   travels with the connection (into the reactor's inbox, then its slab entry)
//!   and gives the place back when it is dropped, on every path: the connection
//!   closes, a reactor refuses it or dies, an inbox is closed with it inside, or
//!   `accept` found nothing after all.
//! - [`AcceptLoop`] accepts from a set of listeners until each is drained, within
//!   the cap, and backs off — without spinning — when the process runs out of
//!   descriptors or memory. Listeners are edge-triggered, so whenever accepting
//!   stops early (cap, back-off) a listener stays marked pending and is retried
//!   without a new event.
//!
//! This file decides when to accept, never where a connection goes (the acceptor
//! does) or what is done with it (the reactors do).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::endpoint::PeerAddr;
use crate::net::{ListenOptions, Listener, Stream};
use crate::timer::deadline_after;

/// Something to wake when room appears under the cap: a thread that stopped
/// accepting at the cap sleeps in its poll until then.
pub(crate) trait Wake: Send + Sync {
    fn wake(&self);
}

/// The connection cap, shared by every thread that accepts.
pub(crate) struct Admission {
    /// Places reserved: connections accepted and not yet closed, plus accepts in
    /// progress. Never above `max`.
    reserved: AtomicUsize,
    max: usize,
    /// Some accepting thread found no room and waits to be woken.
    waiting: AtomicBool,
    /// The threads that accept: the acceptor, or every reactor in reuse-port mode.
    acceptors: Vec<Arc<dyn Wake>>,
    /// Times accepting paused for lack of descriptors or memory.
    backoffs: AtomicU64,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("reserved", &self.reserved.load(Ordering::Relaxed))
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// One place under the cap, held by one connection (or one accept in progress);
/// dropping it gives the place back and wakes an acceptor waiting for room.
#[derive(Debug)]
#[must_use = "dropping a slot gives its place under the cap back at once"]
pub(crate) struct Slot(Arc<Admission>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Admission {
    pub(crate) fn new(max: usize, acceptors: Vec<Arc<dyn Wake>>) -> Self {
        Self {
            reserved: AtomicUsize::new(0),
            max,
            waiting: AtomicBool::new(false),
            acceptors,
            backoffs: AtomicU64::new(0),
        }
    }

    /// Reserves one place under the cap, or returns `None` at the cap; then the
    /// next place given back wakes the accepting threads.
    pub(crate) fn reserve(self: &Arc<Self>) -> Option<Slot> {
        if self.try_take() {
            return Some(Slot(Arc::clone(self)));
        }
        self.waiting.store(true, Ordering::SeqCst);
        // Again: a place given back between the failed take and the store above
        // saw no waiter and woke no one.
        self.try_take().then(|| Slot(Arc::clone(self)))
    }

    fn try_take(&self) -> bool {
        let max = self.max;
        self.reserved
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    fn release(&self) {
        self.reserved.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) && self.waiting.swap(false, Ordering::SeqCst) {
            // Every accepting thread retries; one that finds its listeners drained
            // gives its reservation back without waking anyone (no one waits).
            self.acceptors.iter().for_each(|a| a.wake());
        }
    }

    /// Connections accepted and not yet closed, plus accepts in progress.
    pub(crate) fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Times accepting paused for lack of descriptors or memory.
    pub(crate) fn backoffs(&self) -> u64 {
        self.backoffs.load(Ordering::Relaxed)
    }
}

/// At most one accept-failure log line per this interval.
const LOG_EVERY: Duration = Duration::from_secs(5);

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

/// Accepting from a set of listeners, for the acceptor thread or (reuse-port
/// mode) one reactor.
#[derive(Debug)]
pub(crate) struct AcceptLoop {
    pub(crate) listeners: Vec<Listener>,
    /// Per listener: may have connections waiting (no `WouldBlock` since its edge).
    pending: Vec<bool>,
    opts: ListenOptions,
    admission: Arc<Admission>,
    backoff: Duration,
    paused_until: Option<Instant>,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl AcceptLoop {
    pub(crate) fn new(
        listeners: Vec<Listener>,
        opts: ListenOptions,
        admission: Arc<Admission>,
        backoff: Duration,
    ) -> Self {
        Self {
            pending: vec![false; listeners.len()],
            listeners,
            opts,
            admission,
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
    /// reached or a back-off starts, handing each connection, with its place
    /// under the cap and the index of its listener, to `take`.
    pub(crate) fn accept(&mut self, mut take: impl FnMut(Stream, PeerAddr, Slot, usize)) {
        if let Some(t) = self.paused_until {
            if Instant::now() < t {
                return;
            }
            self.paused_until = None;
        }
        for i in 0..self.listeners.len() {
            while self.pending[i] {
                let Some(slot) = self.admission.reserve() else {
                    return; // at the cap: woken when a place is given back
                };
                // syscall: accept4, one per connection, until WouldBlock
                match self.listeners[i].accept(&self.opts) {
                    Ok((stream, peer)) => take(stream, peer, slot, i),
                    Err(e) => match classify(&e) {
                        AcceptError::Drained => self.pending[i] = false,
                        AcceptError::Skip => log::debug!("coreloop: accept skipped a failed connection: {e}"),
                        AcceptError::BackOff => {
                            self.admission.backoffs.fetch_add(1, Ordering::Relaxed);
                            self.log_rate_limited(&e);
                            self.paused_until = Some(deadline_after(Instant::now(), self.backoff));
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

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_cap_is_never_passed_and_a_given_back_place_wakes_the_waiter() {
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let admission = Arc::new(Admission::new(2, vec![woken.clone() as Arc<dyn Wake>]));
        let a = admission.reserve().unwrap();
        let _b = admission.reserve().unwrap();
        assert!(admission.reserve().is_none());
        assert_eq!(admission.reserved(), 2);
        drop(a);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "the waiting acceptor is woken");
        let _c = admission.reserve().unwrap();
        assert_eq!(admission.reserved(), 2);
    }

    #[test]
    fn concurrent_reservations_stop_exactly_at_the_cap() {
        let admission = Arc::new(Admission::new(1000, Vec::new()));
        let held: Vec<Vec<Slot>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| std::iter::from_fn(|| admission.reserve()).take(1000).collect()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert_eq!(held.iter().map(Vec::len).sum::<usize>(), 1000);
        assert_eq!(admission.reserved(), 1000);
        drop(held);
        assert_eq!(admission.reserved(), 0);
    }
}
