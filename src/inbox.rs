//! The inboxes and what they carry: a reactor's (or the acceptor's) bounded queue
//! plus the `mio::Waker` of the thread that owns it, and the commands sent through
//! each ([`Command`] to a reactor, [`AcceptorCommand`] to the acceptor).
//!
//! Senders push under a short lock and wake the owner only when it is not already
//! notified, so a burst of commands costs one wake (one `eventfd` write). The owner
//! swaps the whole queue out in one lock. The queue itself knows nothing of what it
//! carries; the commands are defined here, beside it, because every thread that
//! sends them (handles, the acceptor) and the one that runs them meet here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;

use crate::admission::{Slot, Wake};
use crate::endpoint::{Endpoint, PeerAddr};
use crate::id::ConnId;
use crate::net::Stream;

/// Commands a reactor takes from the acceptor and from handles; `M` is the
/// handler's message type.
#[derive(Debug)]
pub(crate) enum Command<M> {
    /// Take on a newly accepted connection, holding its place under the cap,
    /// from the listener of that index.
    Open(Stream, PeerAddr, Slot, usize),
    /// Write bytes to a connection, if `id` still names it.
    Send(ConnId, Bytes),
    /// Run `on_message` for a connection, if `id` still names it.
    Message(ConnId, M),
    /// Run `on_reactor_message`.
    ReactorMessage(M),
    /// Open an outbound connection.
    Connect {
        to: Endpoint,
        from: Option<SocketAddr>,
        tag: u64,
        /// TLS to start once connected (feature `tls`).
        tls: crate::conn::ClientTls,
    },
    /// Close a connection gracefully, if `id` still names it.
    Close(ConnId),
    /// Notify handlers, flush, close every connection by `deadline`, then exit;
    /// with `drain`, leave connections open until they close on their own (or
    /// the deadline).
    Shutdown { deadline: Instant, drain: bool },
}

/// Commands the acceptor takes from handles.
#[derive(Debug)]
pub(crate) enum AcceptorCommand {
    /// Close every listener, then tell every reactor to shut down (or drain) by
    /// `deadline`.
    Shutdown { deadline: Instant, drain: bool },
    /// Send duplicates of every listening socket (for a successor process).
    Handover(std::sync::mpsc::Sender<std::io::Result<Vec<std::os::fd::OwnedFd>>>),
    /// Stop owning Unix socket paths: a successor serves them now (closing this
    /// process's listeners must leave them reachable).
    Disown,
}

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue holds `capacity` items already.
    Full,
    /// The owner has stopped.
    Closed,
}

#[derive(Debug)]
pub(crate) struct Inbox<T> {
    queue: Mutex<Vec<T>>,
    waker: mio::Waker,
    /// True while a wake is outstanding: senders skip the wake syscall.
    notified: AtomicBool,
    closed: AtomicBool,
    /// Bound on queued items for [`push`](Self::push); control and accept batches
    /// are bounded by their producers instead.
    capacity: usize,
}

impl<T> Inbox<T> {
    pub(crate) fn new(waker: mio::Waker, capacity: usize) -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            waker,
            notified: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // No user code runs under this lock, so poisoning cannot leave it inconsistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one item unless the queue is full or the owner stopped.
    pub(crate) fn push(&self, item: T) -> Result<(), Refused> {
        {
            let mut q = self.lock();
            if self.closed.load(Ordering::Acquire) {
                return Err(Refused::Closed);
            }
            if q.len() >= self.capacity {
                return Err(Refused::Full);
            }
            q.push(item);
        }
        self.wake();
        Ok(())
    }

    /// Queues a control command (shutdown). Refused only once the owner stopped.
    pub(crate) fn push_control(&self, item: T) -> Result<(), T> {
        {
            let mut q = self.lock();
            if self.closed.load(Ordering::Acquire) {
                return Err(item);
            }
            q.push(item);
        }
        self.wake();
        Ok(())
    }

    /// Queues every item of `items` (leaving it empty) with one lock and at most one
    /// wake. Batches are bounded by their producer (the acceptor, by the connection
    /// cap). If the owner stopped, returns `false` and leaves the items in `items`.
    pub(crate) fn push_batch(&self, items: &mut Vec<T>) -> bool {
        {
            let mut q = self.lock();
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            q.append(items);
        }
        self.wake();
        true
    }

    /// Wakes the owner unless a wake is already outstanding.
    pub(crate) fn wake(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            // syscall: one eventfd write per batch of commands
            if let Err(e) = self.waker.wake() {
                log::error!("coreloop: failed to wake a reactor: {e}");
            }
        }
    }

    /// Moves everything queued into `out`. Called by the owner on its waker token.
    pub(crate) fn drain_into(&self, out: &mut Vec<T>) {
        // Clear the flag before taking the queue: a sender that pushes after the swap
        // below sees `false` and wakes us again, so nothing waits unseen.
        self.notified.store(false, Ordering::Release);
        std::sync::atomic::fence(Ordering::SeqCst);
        let mut q = self.lock();
        if out.is_empty() {
            std::mem::swap(&mut *q, out);
        } else {
            out.append(&mut q);
        }
    }

    /// Marks the owner stopped: later pushes are refused. Returns what was queued.
    pub(crate) fn close(&self) -> Vec<T> {
        let mut q = self.lock();
        self.closed.store(true, Ordering::Release);
        std::mem::take(&mut *q)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl<T: Send> Wake for Inbox<T> {
    fn wake(&self) {
        Inbox::wake(self);
    }
}
