//! [`Handle`]: the cross-thread control surface of a running server.
//!
//! A handle only queues commands into inboxes and reads atomic counters; it never
//! touches a socket or a connection directly, so it is safe from any thread,
//! including from inside a handler on any reactor.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::acceptor::AcceptorCommand;
use crate::error::{Error, Result};
use crate::id::ConnId;
use crate::inbox::{Inbox, Refused};
use crate::reactor::Command;
use crate::stats::{Counters, Stats};

/// A cheap, cloneable handle to a running server, usable from any thread.
///
/// # Examples
///
/// ```
/// # use coreloop::{Context, Handler, Server};
/// # use bytes::BytesMut;
/// # struct Nop;
/// # impl Handler for Nop {
/// #     type Conn = ();
/// #     fn on_open(&mut self, _: &mut Context<'_>) {}
/// #     fn on_data(&mut self, _: &mut (), _: &mut Context<'_>, _: &mut BytesMut) {}
/// # }
/// # fn main() -> coreloop::Result<()> {
/// let server = Server::builder().reactors(1).bind(([127, 0, 0, 1], 0)).start(|_| Nop)?;
/// let handle = server.handle();
/// std::thread::spawn(move || handle.shutdown(std::time::Duration::from_secs(1)));
/// let report = server.join()?;
/// assert!(report.completed);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) reactors: Vec<Arc<Inbox<Command>>>,
    pub(crate) counters: Vec<Arc<Counters>>,
    pub(crate) acceptor: Option<Arc<Inbox<AcceptorCommand>>>,
    /// Connections accepted and not yet closed, across reactors (including those in
    /// flight to a reactor). Written on accept and close only, never per message.
    pub(crate) live: AtomicUsize,
    pub(crate) max_connections: usize,
    /// The acceptor stopped at the connection cap and waits for a close.
    pub(crate) at_cap: AtomicBool,
    pub(crate) shutting_down: AtomicBool,
}

impl Handle {
    pub(crate) fn new(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Starts a graceful shutdown and returns at once: listeners close first (new
    /// connects are refused), then every reactor tells its handlers
    /// ([`Handler::on_shutdown`](crate::Handler::on_shutdown)), writes what is queued
    /// for at most `grace`, and closes every connection. Wait for the end with
    /// [`Server::join`](crate::Server::join). Calling it again has no further effect.
    pub fn shutdown(&self, grace: Duration) {
        if self.shared.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let deadline = Instant::now() + grace;
        if let Some(acceptor) = &self.shared.acceptor {
            // The acceptor closes its listeners, then tells the reactors.
            if acceptor.push_control(AcceptorCommand::Shutdown { deadline }).is_ok() {
                return;
            }
        }
        self.shutdown_reactors(deadline);
    }

    pub(crate) fn shutdown_reactors(&self, deadline: Instant) {
        for inbox in &self.shared.reactors {
            let _ = inbox.push_control(Command::Shutdown { deadline });
        }
    }

    /// Closes the connection `id` gracefully (its queued output is written first),
    /// as [`Context::close`](crate::Context::close) would from inside its reactor.
    ///
    /// The command is carried out asynchronously on the owning reactor. An id whose
    /// connection has already closed is ignored there — even when its slot now holds
    /// another connection, which the generation in the id tells apart — so a stale id
    /// never closes the wrong connection.
    ///
    /// # Errors
    ///
    /// [`Error::NotConnected`] if the id names no reactor of this server,
    /// [`Error::InboxFull`] if the owning reactor's inbox is full,
    /// [`Error::ShutDown`] if that reactor has stopped.
    pub fn close(&self, id: ConnId) -> Result<()> {
        let index = id.reactor();
        let inbox = self.shared.reactors.get(index).ok_or(Error::NotConnected { id })?;
        inbox.push(Command::Close(id)).map_err(|r| match r {
            Refused::Full => Error::InboxFull { index },
            Refused::Closed => Error::ShutDown,
        })
    }

    /// A snapshot of every reactor's counters.
    pub fn stats(&self) -> Stats {
        Stats {
            reactors: self
                .shared
                .counters
                .iter()
                .enumerate()
                .map(|(i, c)| c.snapshot(i))
                .collect(),
        }
    }

    /// The number of reactors.
    pub fn reactors(&self) -> usize {
        self.shared.reactors.len()
    }

    /// Called by a reactor when a connection that counted against the cap is gone.
    pub(crate) fn connection_closed(&self) {
        let s = &self.shared;
        s.live.fetch_sub(1, Ordering::SeqCst);
        if s.at_cap.load(Ordering::SeqCst)
            && s.at_cap.swap(false, Ordering::SeqCst)
            && let Some(acceptor) = &s.acceptor
        {
            acceptor.wake();
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("reactors", &self.shared.reactors.len())
            .field("live", &self.shared.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
