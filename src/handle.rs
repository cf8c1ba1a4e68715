//! [`Handle`]: the cross-thread control surface of a running server.
//!
//! A handle only queues commands into inboxes and reads atomic counters; it never
//! touches a socket or a connection directly, so it is safe from any thread,
//! including from inside a handler on any reactor.
//!
//! The file passes 400 lines by its documentation: each command says what it
//! guarantees and what it returns, and the common ones carry a doc example.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::admission::Admission;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::id::ConnId;
use crate::inbox::{AcceptorCommand, Command, Inbox, Refused};
use crate::stats::{Counters, Stats};
use crate::timer::deadline_after;

/// A cheap, cloneable handle to a running server, usable from any thread.
///
/// `M` is the handler's message type (`()` for a handler without messages): a
/// message of any other type does not compile.
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
pub struct Handle<M = ()> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

pub(crate) struct Shared<M> {
    pub(crate) reactors: Vec<Arc<Inbox<Command<M>>>>,
    pub(crate) counters: Vec<Arc<Counters>>,
    pub(crate) acceptor: Option<Arc<Inbox<AcceptorCommand>>>,
    /// The connection cap and accept back-offs (read for stats).
    pub(crate) admission: Arc<Admission>,
    pub(crate) shutting_down: AtomicBool,
    /// Round-robin position for `connect`.
    pub(crate) next_connect: AtomicUsize,
}

impl<M: Send + 'static> Handle<M> {
    pub(crate) fn new(shared: Shared<M>) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    pub(crate) fn shared(&self) -> &Shared<M> {
        &self.shared
    }

    /// Starts a graceful shutdown and returns at once: listeners close first (new
    /// connects are refused), then every reactor tells its handlers
    /// ([`Handler::on_shutdown`](crate::Handler::on_shutdown)) and closes every
    /// connection gracefully. Wait for the end with
    /// [`Server::join`](crate::Server::join). Calling it again has no further effect.
    ///
    /// What shutdown waits for, for each connection and never past `grace`:
    /// 1. its queued output (and what `on_shutdown` wrote) to be written to the
    ///    socket;
    /// 2. then, after our FIN, the peer's end of stream — at most the
    ///    [linger time](crate::Builder::linger), so that a peer still sending is
    ///    not reset and does not lose the end of what we sent. A peer that
    ///    neither sends nor closes is waited for that long (or until `grace`).
    ///
    /// At `grace` every connection still open is closed. The
    /// [`Report`](crate::Report)'s `completed` says whether step 1 finished for
    /// every connection; a connection still lingering at `grace` had all its
    /// output written and does not count against it.
    ///
    /// Any `grace` is accepted: one too long for the clock to represent
    /// (`Duration::MAX`) means waiting, in practice, until every queued byte is
    /// written.
    pub fn shutdown(&self, grace: Duration) {
        self.stop(grace, false);
    }

    /// Stops accepting and lets the open connections finish on their own, for at
    /// most `grace`; the server then stops, as after [`shutdown`](Self::shutdown).
    /// What a process hands over to its successor in a restart does
    /// ([`Builder::handover`](crate::Builder::handover)): listeners close first
    /// (in a handover, the successor has them already), every open connection's
    /// handler hears [`Handler::on_shutdown`](crate::Handler::on_shutdown) — a
    /// notice, its cue to finish up (an HTTP server would stop keeping connections
    /// alive) — and connections go on being served until their handler or peer
    /// closes them. At `grace` the rest are closed. Calling it (or `shutdown`)
    /// again has no further effect.
    pub fn drain(&self, grace: Duration) {
        self.stop(grace, true);
    }

    fn stop(&self, grace: Duration, drain: bool) {
        if self.shared.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let deadline = deadline_after(Instant::now(), grace);
        if let Some(acceptor) = &self.shared.acceptor {
            // The acceptor closes its listeners, then tells the reactors.
            if acceptor
                .push_control(AcceptorCommand::Shutdown { deadline, drain })
                .is_ok()
            {
                return;
            }
        }
        self.shutdown_reactors(deadline, drain);
    }

    pub(crate) fn shutdown_reactors(&self, deadline: Instant, drain: bool) {
        for inbox in &self.shared.reactors {
            let _ = inbox.push_control(Command::Shutdown { deadline, drain });
        }
    }

    /// Queues `data` to be written to connection `id`, on whichever reactor owns it.
    ///
    /// Bytes sent from one thread arrive in the order they were sent, after what
    /// the connection's own handler wrote before the command was processed. The
    /// reactor drains its commands in batches and writes what a batch sent to a
    /// connection with one `writev` once the batch is done. Sending
    /// is asynchronous: if the connection has closed by the time its reactor takes
    /// the command — even if its slot now holds another connection, which the id's
    /// generation tells apart — the bytes are dropped and the reactor's
    /// [`stale`](crate::ReactorStats::stale) counter goes up; they never reach
    /// another connection.
    ///
    /// # Errors
    ///
    /// [`Error::NotConnected`] if the id names no reactor of this server,
    /// [`Error::InboxFull`] if the owning reactor's inbox is full (back-pressure:
    /// retry later, or slow down), [`Error::ShutDown`] if that reactor has stopped.
    /// A connection that has closed is not an error (see above).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn push(handle: &coreloop::Handle, id: coreloop::ConnId) -> coreloop::Result<()> {
    /// handle.send(id, &b"server push\n"[..])?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn send(&self, id: ConnId, data: impl Into<Bytes>) -> Result<()> {
        self.to_conn(id, Command::Send(id, data.into()))
    }

    /// Sends an application message to connection `id`: the owning reactor runs
    /// [`Handler::on_message`](crate::Handler::on_message) with the connection's
    /// state, so application logic runs where the connection lives. Like
    /// [`send`](Self::send), a stale id only counts in `stale`. The message moves
    /// through the reactor's inbox as it is: no allocation, no type check.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// A handler taking `String` messages; its handle takes nothing else.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use coreloop::{ConnId, Context, Handler, Server};
    ///
    /// struct Notes;
    ///
    /// impl Handler<String> for Notes {
    ///     type Conn = ();
    ///     fn on_open(&mut self, _cx: &mut Context<'_, String>) {}
    ///     fn on_data(&mut self, _: &mut (), _: &mut Context<'_, String>, input: &mut BytesMut) {
    ///         input.clear();
    ///     }
    ///     fn on_message(&mut self, _: &mut (), cx: &mut Context<'_, String>, note: String) {
    ///         cx.write(note.as_bytes());
    ///     }
    /// }
    ///
    /// # fn main() -> coreloop::Result<()> {
    /// let server = Server::builder().reactors(1).bind(([127, 0, 0, 1], 0)).start(|_| Notes)?;
    /// # let id: Option<ConnId> = None;
    /// # if let Some(id) = id {
    /// server.handle().message(id, "hello\n".to_string())?;
    /// # }
    /// # server.shutdown(std::time::Duration::from_secs(1))?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A message of another type is a compile error, not a run-time one:
    ///
    /// ```compile_fail,E0308
    /// # use bytes::BytesMut;
    /// # use coreloop::{ConnId, Context, Handler, Server};
    /// # struct Notes;
    /// # impl Handler<String> for Notes {
    /// #     type Conn = ();
    /// #     fn on_open(&mut self, _cx: &mut Context<'_, String>) {}
    /// #     fn on_data(&mut self, _: &mut (), _: &mut Context<'_, String>, _: &mut BytesMut) {}
    /// # }
    /// # fn main() -> coreloop::Result<()> {
    /// # let server = Server::builder().reactors(1).bind(([127, 0, 0, 1], 0)).start(|_| Notes)?;
    /// # let id: ConnId = todo!();
    /// server.handle().message(id, 42_u32)?; // expected `String`, found `u32`
    /// # Ok(())
    /// # }
    /// ```
    pub fn message(&self, id: ConnId, msg: M) -> Result<()> {
        self.to_conn(id, Command::Message(id, msg))
    }

    /// Sends an application message to reactor `reactor`'s handler
    /// ([`Handler::on_reactor_message`](crate::Handler::on_reactor_message)),
    /// which can reach every connection of that reactor.
    ///
    /// # Errors
    ///
    /// [`Error::NoReactor`], [`Error::InboxFull`], [`Error::ShutDown`].
    pub fn message_reactor(&self, reactor: usize, msg: M) -> Result<()> {
        self.command(reactor, Command::ReactorMessage(msg))
    }

    /// Sends `msg` to every reactor's handler
    /// ([`Handler::on_reactor_message`](crate::Handler::on_reactor_message)): one
    /// cross-thread message per reactor, each of which then writes to its own
    /// connections — a fan-out to any number of subscribers for the price of a
    /// few messages. Messages broadcast from one thread arrive at each reactor in
    /// the order they were sent.
    ///
    /// # Errors
    ///
    /// [`Error::InboxFull`] or [`Error::ShutDown`] for the first reactor that
    /// could not take it; the others still get it.
    pub fn broadcast(&self, msg: M) -> Result<()>
    where
        M: Clone,
    {
        let mut first_error = None;
        for index in 0..self.shared.reactors.len() {
            if let Err(e) = self.command(index, Command::ReactorMessage(msg.clone())) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Opens an outbound connection to `to` (TCP or Unix) on a reactor chosen
    /// round-robin. The same [`Handler`](crate::Handler) serves it: on success
    /// `on_open` runs with [`Origin::Connected { tag }`](crate::Origin), on failure
    /// (refused, unreachable, timed out) `on_connect_error` gets `tag` and the error.
    ///
    /// # Errors
    ///
    /// [`Error::InboxFull`] or [`Error::ShutDown`] if no reactor could take the
    /// command. Connection failures are not errors here: they reach the handler.
    ///
    /// # Examples
    ///
    /// A server that opens a connection to itself: the handler tells the two
    /// ends apart by [`Context::origin`](crate::Context::origin).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use coreloop::{Context, Handler, Origin, Server};
    /// use std::sync::mpsc;
    ///
    /// struct Probe(mpsc::Sender<Origin>);
    ///
    /// impl Handler for Probe {
    ///     type Conn = ();
    ///     fn on_open(&mut self, cx: &mut Context<'_>) {
    ///         let _ = self.0.send(cx.origin());
    ///     }
    ///     fn on_data(&mut self, _: &mut (), _: &mut Context<'_>, input: &mut BytesMut) {
    ///         input.clear();
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (tx, rx) = mpsc::channel();
    /// let server = Server::builder()
    ///     .reactors(1)
    ///     .bind(([127, 0, 0, 1], 0))
    ///     .start(move |_| Probe(tx.clone()))?;
    /// server.handle().connect(server.local_addrs()[0], 7)?;
    /// let mut seen = vec![rx.recv()?, rx.recv()?];
    /// seen.sort_by_key(|o| *o != Origin::Accepted);
    /// assert_eq!(seen, [Origin::Accepted, Origin::Connected { tag: 7 }]);
    /// server.shutdown(std::time::Duration::from_secs(1))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect(&self, to: impl Into<Endpoint>, tag: u64) -> Result<()> {
        let reactor = self.next_connect_reactor()?;
        self.connect_on(reactor, to, tag)
    }

    /// Round-robin over running reactors, for outbound connections.
    fn next_connect_reactor(&self) -> Result<usize> {
        let n = self.shared.reactors.len();
        let start = self.shared.next_connect.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&r| !self.shared.reactors[r].is_closed())
            .ok_or(Error::ShutDown)
    }

    /// Like [`connect`](Self::connect), on the given reactor (for locality: a proxy
    /// opens the upstream connection on the reactor of the client connection).
    ///
    /// # Errors
    ///
    /// [`Error::NoReactor`], [`Error::InboxFull`], [`Error::ShutDown`].
    pub fn connect_on(&self, reactor: usize, to: impl Into<Endpoint>, tag: u64) -> Result<()> {
        let (to, from) = (to.into(), None);
        #[allow(clippy::let_unit_value)] // nothing without the `tls` feature
        let tls = Default::default();
        self.command(reactor, Command::Connect { to, from, tag, tls })
    }

    /// Like [`connect`](Self::connect), from the local address `from` (bound before
    /// connecting; port 0 lets the OS pick the port). Spreading connections over
    /// several source addresses lifts the one-address limit of about 28,000
    /// ephemeral ports per destination.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect); a failed bind of `from` reaches
    /// [`Handler::on_connect_error`](crate::Handler::on_connect_error).
    pub fn connect_from(&self, to: SocketAddr, from: SocketAddr, tag: u64) -> Result<()> {
        let reactor = self.next_connect_reactor()?;
        let to = Endpoint::Tcp(to);
        self.command(
            reactor,
            Command::Connect {
                to,
                from: Some(from),
                tag,
                tls: Default::default(),
            },
        )
    }

    /// Like [`connect`](Self::connect), speaking TLS (feature `tls`): once the
    /// socket connects, the handshake with `server_name` runs on the reactor
    /// under `config` (its certificate verification, ALPN protocols, client
    /// certificate), and the handler's `on_open` runs once it is done — the
    /// handler then sees plaintext, and [`Context::tls`](crate::Context::tls)
    /// what was negotiated. A failed handshake (a certificate that does not
    /// verify, say) closes the connection before `on_open`, counted in
    /// [`ReactorStats::tls_errors`](crate::ReactorStats::tls_errors), and
    /// reaches [`Handler::on_connect_error`](crate::Handler::on_connect_error)
    /// as an error of kind [`InvalidData`](std::io::ErrorKind::InvalidData)
    /// naming the [`TlsError`](crate::TlsError) and rustls's reason (`TLS:
    /// certificate refused (invalid peer certificate: UnknownIssuer)`);
    /// the handshake must finish within
    /// [`Builder::preamble_timeout`](crate::Builder::preamble_timeout).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    #[cfg(feature = "tls")]
    pub fn connect_tls(
        &self,
        to: impl Into<Endpoint>,
        config: std::sync::Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
        tag: u64,
    ) -> Result<()> {
        let reactor = self.next_connect_reactor()?;
        self.connect_tls_on(reactor, to, config, server_name, tag)
    }

    /// Like [`connect_tls`](Self::connect_tls), on the given reactor.
    ///
    /// # Errors
    ///
    /// As [`connect_on`](Self::connect_on).
    #[cfg(feature = "tls")]
    pub fn connect_tls_on(
        &self,
        reactor: usize,
        to: impl Into<Endpoint>,
        config: std::sync::Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
        tag: u64,
    ) -> Result<()> {
        let tls = Some(crate::tls::TlsStart::Client(config, server_name));
        let (to, from) = (to.into(), None);
        self.command(reactor, Command::Connect { to, from, tag, tls })
    }

    fn to_conn(&self, id: ConnId, cmd: Command<M>) -> Result<()> {
        if id.reactor() >= self.shared.reactors.len() {
            return Err(Error::NotConnected { id });
        }
        self.command(id.reactor(), cmd)
    }

    fn command(&self, index: usize, cmd: Command<M>) -> Result<()> {
        let inbox = self.shared.reactors.get(index).ok_or(Error::NoReactor {
            index,
            reactors: self.shared.reactors.len(),
        })?;
        inbox.push(cmd).map_err(|r| match r {
            Refused::Full => Error::InboxFull { index },
            Refused::Closed => Error::ShutDown,
        })
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
    ///
    /// # Examples
    ///
    /// Closing a connection from outside the reactors, by the id its handler
    /// published:
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use coreloop::{ConnId, Context, Handler, Server};
    /// use std::io::Read;
    /// use std::sync::mpsc;
    ///
    /// struct Publish(mpsc::Sender<ConnId>);
    ///
    /// impl Handler for Publish {
    ///     type Conn = ();
    ///     fn on_open(&mut self, cx: &mut Context<'_>) {
    ///         cx.write(b"welcome\n");
    ///         let _ = self.0.send(cx.id());
    ///     }
    ///     fn on_data(&mut self, _: &mut (), _: &mut Context<'_>, input: &mut BytesMut) {
    ///         input.clear();
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (tx, rx) = mpsc::channel();
    /// let server = Server::builder()
    ///     .reactors(1)
    ///     .bind(([127, 0, 0, 1], 0))
    ///     .start(move |_| Publish(tx.clone()))?;
    /// let mut client = std::net::TcpStream::connect(server.local_addrs()[0])?;
    /// let id = rx.recv()?;
    /// server.handle().close(id)?; // queued output first, then the FIN
    /// let mut all = String::new();
    /// client.read_to_string(&mut all)?; // ends: the server closed
    /// assert_eq!(all, "welcome\n");
    /// server.shutdown(std::time::Duration::from_secs(1))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn close(&self, id: ConnId) -> Result<()> {
        self.to_conn(id, Command::Close(id))
    }

    /// A snapshot of every reactor's counters and the acceptor's back-offs;
    /// [`Stats::total`] sums the reactors, and `Display` prints a table.
    ///
    /// Reads atomics only: cheap enough to call every second from a monitoring
    /// thread, and it never stops a reactor.
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
    /// let server = Server::builder().reactors(2).bind(([127, 0, 0, 1], 0)).start(|_| Nop)?;
    /// let stats = server.handle().stats();
    /// assert_eq!(stats.reactors.len(), 2);
    /// assert_eq!(stats.total().active, 0);
    /// eprint!("{stats}"); // one row per reactor, a total row, the accept back-offs
    /// # server.shutdown(std::time::Duration::from_secs(1))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        Stats {
            reactors: self
                .shared
                .counters
                .iter()
                .enumerate()
                .map(|(i, c)| c.snapshot(i))
                .collect(),
            accept_backoffs: self.shared.admission.backoffs(),
        }
    }

    /// The number of reactors.
    pub fn reactors(&self) -> usize {
        self.shared.reactors.len()
    }
}

impl<M> fmt::Debug for Handle<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("reactors", &self.shared.reactors.len())
            .field("connections", &self.shared.admission.reserved())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    /// `Handle` must stay usable from any thread, and cheap to clone.
    #[test]
    fn handle_is_clone_send_sync() {
        fn assert_traits<T: Clone + Send + Sync + 'static>() {}
        assert_traits::<super::Handle>();
        assert_eq!(std::mem::size_of::<super::Handle>(), std::mem::size_of::<usize>());
    }
}
