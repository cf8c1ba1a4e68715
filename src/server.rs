//! [`Server`]: starting the threads in order, and joining them into a [`Report`].
//!
//! Start-up order: listeners are bound (a failure names the address), every poll
//! and waker is created, the handlers are made, and only then are threads spawned,
//! so a failure before that point leaves nothing running.

use std::any::TypeId;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mio::{Poll, Waker};

use crate::accept::AcceptLoop;
use crate::acceptor::{self, Acceptor};
use crate::builder::{Builder, Config, Distribution, ListenSpec};
use crate::error::{Error, Result};
use crate::handle::{Handle, Shared};
use crate::handler::Handler;
use crate::inbox::Inbox;
use crate::net::{Endpoint, ListenOptions, Listener};
use crate::reactor::{self, Command, Parts, Reactor, ReactorExit};
use crate::stats::{Counters, ReactorStats, Stats, bump};

/// A running server: an acceptor thread and N reactor threads.
///
/// Keep it for as long as the server should run: dropping it without
/// [`join`](Server::join) starts a shutdown with no grace period.
#[derive(Debug)]
pub struct Server {
    handle: Handle,
    local_addrs: Vec<SocketAddr>,
    endpoints: Vec<Endpoint>,
    acceptor: Option<JoinHandle<()>>,
    reactors: Vec<JoinHandle<ReactorExit>>,
}

/// The outcome of a server's run, from [`Server::join`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Each reactor's final counters, in index order.
    pub reactors: Vec<ReactorStats>,
    /// Whether every connection's queued output was written before the shutdown
    /// deadline (`false`: some connections were closed with output still queued).
    pub completed: bool,
    /// Times accepting paused for lack of descriptors or memory (see
    /// [`Stats::accept_backoffs`]).
    pub accept_backoffs: u64,
}

impl Report {
    /// The final counters as a [`Stats`] (for its totals and table).
    pub fn stats(&self) -> Stats {
        Stats {
            reactors: self.reactors.clone(),
            accept_backoffs: self.accept_backoffs,
        }
    }
}

/// Creates a poll instance and its waker.
fn poll_with_waker(token: mio::Token) -> Result<(Poll, Waker)> {
    let poll = Poll::new().map_err(|source| Error::Setup {
        what: "poll instance",
        source,
    })?;
    let waker = Waker::new(poll.registry(), token).map_err(|source| Error::Setup { what: "waker", source })?;
    Ok((poll, waker))
}

fn spawn<T: Send + 'static>(name: String, f: impl FnOnce() -> T + Send + 'static) -> io::Result<JoinHandle<T>> {
    thread::Builder::new().name(name).spawn(f)
}

impl Server {
    /// Starts configuring a server.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = coreloop::Server::builder().reactors(2).bind(([127, 0, 0, 1], 0));
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn start<H, F>(config: Config, specs: Vec<ListenSpec>, mut factory: F) -> Result<Server>
    where
        H: Handler,
        F: FnMut(usize) -> H,
    {
        let reuse_port = config.distribution == Distribution::ReusePort;
        let opts = config.listen_options();
        let listeners = open_listeners(specs, &opts)?;
        let endpoints = listeners
            .iter()
            .map(Listener::endpoint)
            .collect::<io::Result<Vec<_>>>()
            .map_err(|source| Error::Setup {
                what: "listener address",
                source,
            })?;
        let local_addrs: Vec<SocketAddr> = endpoints
            .iter()
            .filter_map(|e| match e {
                Endpoint::Tcp(a) => Some(*a),
                _ => None,
            })
            .collect();
        // Reuse-port: every reactor gets its own listener on each address (reactor
        // 0 the ones just bound, which fixed any port 0), and there is no acceptor.
        let mut own_listeners: Vec<Option<AcceptLoop>> = (0..config.reactors).map(|_| None).collect();
        let listeners = if reuse_port {
            own_listeners[0] = Some(AcceptLoop::new(listeners, opts.clone(), config.accept_backoff));
            for slot in own_listeners.iter_mut().skip(1) {
                let mine = local_addrs
                    .iter()
                    .map(|&addr| Listener::bind_tcp(addr, &opts))
                    .collect::<Result<Vec<_>>>()?;
                *slot = Some(AcceptLoop::new(mine, opts.clone(), config.accept_backoff));
            }
            Vec::new()
        } else {
            listeners
        };

        let mut polls = Vec::with_capacity(config.reactors);
        let mut inboxes = Vec::with_capacity(config.reactors);
        for _ in 0..config.reactors {
            let (poll, waker) = poll_with_waker(reactor::WAKER)?;
            polls.push(poll);
            inboxes.push(Arc::new(Inbox::new(waker, config.inbox_capacity)));
        }
        let acceptor = if listeners.is_empty() {
            None
        } else {
            let (poll, waker) = poll_with_waker(acceptor::WAKER)?;
            Some((poll, Arc::new(Inbox::new(waker, 1))))
        };
        let counters: Vec<Arc<Counters>> = (0..config.reactors).map(|_| Arc::default()).collect();
        let handle = Handle::new(Shared {
            reactors: inboxes.clone(),
            counters: counters.clone(),
            acceptor: acceptor.as_ref().map(|(_, inbox)| Arc::clone(inbox)),
            live: AtomicUsize::new(0),
            max_connections: config.max_connections,
            at_cap: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            message_type: (TypeId::of::<H::Message>(), std::any::type_name::<H::Message>()),
            accept_backoffs: AtomicU64::new(0),
            next_connect: AtomicUsize::new(0),
        });
        // User code runs before any thread exists: a panicking factory leaves nothing behind.
        let handlers: Vec<H> = (0..config.reactors).map(&mut factory).collect();

        let mut server = Server {
            handle: handle.clone(),
            local_addrs,
            endpoints,
            acceptor: None,
            reactors: Vec::with_capacity(config.reactors),
        };
        let mut cores = if config.pin_cores {
            cores_to_pin(config.reactors)
        } else {
            Vec::new()
        }
        .into_iter();
        for (i, ((poll, handler), accept)) in polls.into_iter().zip(handlers).zip(own_listeners).enumerate() {
            let core = cores.next();
            let guard = StopGuard {
                inbox: Arc::clone(&inboxes[i]),
                counters: Arc::clone(&counters[i]),
                handle: handle.clone(),
            };
            let parts = Parts {
                index: i,
                poll,
                inbox: Arc::clone(&inboxes[i]),
                counters: Arc::clone(&counters[i]),
                accept,
            };
            let (handle, config) = (handle.clone(), config.clone());
            // The reactor is built on its own thread: connection state (`H::Conn`)
            // never crosses threads, so it need not be `Send`.
            let spawned = spawn(format!("coreloop-reactor-{i}"), move || {
                let _guard = guard;
                if let Some(core) = core
                    && !core_affinity::set_for_current(core)
                {
                    log::warn!("coreloop: cannot pin reactor {i} to CPU {}; it runs unpinned", core.id);
                }
                Reactor::new(parts, handler, handle, &config).run()
            });
            match spawned {
                Ok(t) => server.reactors.push(t),
                Err(source) => return Err(server.abort_start("reactor thread", source)),
            }
        }
        if let Some((poll, inbox)) = acceptor {
            let accept = AcceptLoop::new(listeners, opts, config.accept_backoff);
            let acceptor = Acceptor::new(poll, accept, inbox, handle.clone(), config.distribution);
            match spawn("coreloop-acceptor".into(), move || acceptor.run()) {
                Ok(t) => server.acceptor = Some(t),
                Err(source) => return Err(server.abort_start("acceptor thread", source)),
            }
        }
        log::info!(
            "coreloop: started {} reactors ({:?} distribution) on {}",
            config.reactors,
            config.distribution,
            server
                .endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(server)
    }

    /// Stops the reactors already started when a later thread cannot be spawned.
    fn abort_start(mut self, what: &'static str, source: io::Error) -> Error {
        if let Some(acceptor) = &self.handle.shared().acceptor {
            acceptor.close();
        }
        self.handle.shutdown(Duration::ZERO);
        for t in self.reactors.drain(..) {
            let _ = t.join();
        }
        Error::Setup { what, source }
    }

    /// A handle for cross-thread control: shutdown, stats.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The bound address of each TCP listener, in the order they were added (with
    /// the port the OS chose for port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Every listener's endpoint, TCP and Unix, in the order they were added.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Starts a graceful shutdown (see [`Handle::shutdown`]) and waits for it.
    ///
    /// # Errors
    ///
    /// As [`join`](Server::join).
    pub fn shutdown(self, grace: Duration) -> Result<Report> {
        self.handle.shutdown(grace);
        self.join()
    }

    /// Waits until the server has shut down (someone called
    /// [`Handle::shutdown`]) and every thread has ended.
    ///
    /// # Errors
    ///
    /// [`Error::ReactorDied`] if a reactor thread ended by a panic (the others were
    /// still shut down and joined), [`Error::AcceptorDied`] if the acceptor did.
    pub fn join(mut self) -> Result<Report> {
        let acceptor_died = self.acceptor.take().is_some_and(|t| t.join().is_err());
        let mut report = Report {
            reactors: Vec::with_capacity(self.reactors.len()),
            completed: true,
            accept_backoffs: 0,
        };
        let mut died = None;
        for (i, t) in std::mem::take(&mut self.reactors).into_iter().enumerate() {
            match t.join() {
                Ok(exit) => {
                    report.completed &= exit.completed;
                    report.reactors.push(exit.stats);
                }
                Err(_) => {
                    died.get_or_insert(i);
                    report.reactors.push(self.handle.stats().reactors[i]);
                }
            }
        }
        report.accept_backoffs = self.handle.stats().accept_backoffs;
        if let Some(index) = died {
            return Err(Error::ReactorDied { index });
        }
        if acceptor_died {
            return Err(Error::AcceptorDied);
        }
        Ok(report)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.reactors.is_empty() {
            self.handle.shutdown(Duration::ZERO);
        }
    }
}

/// Runs when a reactor thread ends, by return or by panic: refuses further commands
/// (so the acceptor stops routing to it) and releases, from the connection cap, the
/// connections still queued for it and those it still held (a dying reactor's slab
/// is dropped during unwinding, closing their sockets).
struct StopGuard {
    inbox: Arc<Inbox<Command>>,
    counters: Arc<Counters>,
    handle: Handle,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        for cmd in self.inbox.close() {
            if let Command::Open(..) = cmd {
                self.handle.connection_closed();
            }
        }
        let held = self.counters.active.swap(0, std::sync::atomic::Ordering::Relaxed);
        bump(&self.counters.closed, held);
        for _ in 0..held {
            self.handle.connection_closed();
        }
        if thread::panicking() {
            log::error!("coreloop: a reactor thread panicked; it takes no more connections");
            // Let the acceptor notice at once rather than at its next accept.
            if let Some(acceptor) = &self.handle.shared().acceptor {
                acceptor.wake();
            }
        }
    }
}

/// The CPUs to pin reactors 0, 1, … to: the ones this process may run on, in
/// order. With fewer CPUs than reactors, the rest run unpinned (logged).
fn cores_to_pin(reactors: usize) -> Vec<core_affinity::CoreId> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.len() < reactors {
        log::warn!(
            "coreloop: pin_cores: {reactors} reactors but {} CPU(s) to pin them to; reactors {}.. run unpinned",
            cores.len(),
            cores.len()
        );
    }
    cores
}

/// Opens (or adopts) every listener, in order. A failure names the endpoint.
fn open_listeners(specs: Vec<ListenSpec>, opts: &ListenOptions) -> Result<Vec<Listener>> {
    let adopt_fail = |what: String| {
        move |source| Error::Bind {
            addr: Endpoint::Inherited(what),
            source,
        }
    };
    let mut listeners = Vec::with_capacity(specs.len());
    for spec in specs {
        match spec {
            ListenSpec::Tcp(addr) => listeners.push(Listener::bind_tcp(addr, opts)?),
            ListenSpec::Unix(path) => listeners.push(Listener::bind_unix(&path, opts)?),
            ListenSpec::TcpListener(l) => {
                let what = l
                    .local_addr()
                    .map_or("a TCP listener".into(), |a| format!("inherited {a}"));
                listeners.push(Listener::adopt_tcp(l, opts, &what)?);
            }
            ListenSpec::UnixListener(l) => {
                listeners.push(Listener::adopt_unix(l).map_err(adopt_fail("a Unix listener".into()))?);
            }
            ListenSpec::ListenFds => {
                let mut fds = listenfd::ListenFd::from_env();
                if fds.len() == 0 {
                    let e = io::Error::new(io::ErrorKind::NotFound, "LISTEN_FDS passes no socket");
                    return Err(adopt_fail("LISTEN_FDS".into())(e));
                }
                for i in 0..fds.len() {
                    let what = format!("LISTEN_FDS socket {i}");
                    let listener = match fds.take_tcp_listener(i) {
                        Ok(Some(l)) => Listener::adopt_tcp(l, opts, &what)?,
                        _ => match fds.take_unix_listener(i) {
                            Ok(Some(l)) => Listener::adopt_unix(l),
                            Ok(None) => Err(io::Error::new(io::ErrorKind::NotFound, "already taken")),
                            Err(e) => Err(e),
                        }
                        .map_err(adopt_fail(what))?,
                    };
                    listeners.push(listener);
                }
            }
        }
    }
    Ok(listeners)
}
