//! [`Server`]: starting the threads in order, and joining them into a [`Report`].
//!
//! Start-up order: listeners are bound (a failure names the address), every poll
//! and waker is created, the handlers are made, and only then are threads spawned,
//! so a failure before that point leaves nothing running. `start` is one long
//! function on purpose, so that order reads top to bottom; with the opening of
//! listeners (TCP, Unix, adopted, systemd's) it is most of this file.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mio::{Poll, Waker};

use crate::acceptor::Acceptor;
use crate::admission::{AcceptLoop, Admission, Wake};
use crate::builder::Builder;
use crate::config::{Config, Distribution, Listen, ListenSpec, ListenerPolicy};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::handle::{Handle, Shared};
use crate::handler::Handler;
use crate::handover::{self, HandoverServer, Predecessor};
use crate::inbox::{Command, Inbox};
use crate::net::{ListenOptions, Listener};
use crate::reactor::{Parts, Reactor, ReactorExit};
use crate::stats::{Counters, Stats, bump};
use crate::token;

/// A running server: an acceptor thread and N reactor threads.
///
/// Keep it for as long as the server should run: dropping it without
/// [`join`](Server::join) starts a shutdown with no grace period. `M` is the
/// handler's message type.
#[derive(Debug)]
pub struct Server<M: Send + 'static = ()> {
    handle: Handle<M>,
    local_addrs: Vec<SocketAddr>,
    endpoints: Vec<Endpoint>,
    acceptor: Option<JoinHandle<()>>,
    reactors: Vec<JoinHandle<ReactorExit>>,
    /// Waits for a successor process (zero-downtime restart), when configured.
    handover: Option<HandoverServer>,
}

/// The outcome of a server's run, from [`Server::join`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The final counters: every reactor's, in index order, and the accept
    /// back-offs ([`Stats::total`] sums them; `Display` prints a table).
    pub stats: Stats,
    /// Whether every connection's queued output was written (to its socket)
    /// before the grace ended: `false` if some connection was closed during
    /// shutdown with output still queued — at the deadline, or by an error or
    /// limit on the way. A connection merely lingering at the deadline, its
    /// output written and its FIN sent, does not make it `false` (see
    /// [`Handle::shutdown`] for what shutdown waits for).
    pub completed: bool,
}

/// Creates a poll instance and its waker.
fn poll_with_waker() -> Result<(Poll, Waker)> {
    let poll = Poll::new().map_err(|source| Error::Setup {
        what: "poll instance",
        source,
    })?;
    let waker = Waker::new(poll.registry(), token::WAKER).map_err(|source| Error::Setup { what: "waker", source })?;
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
}

impl<M: Send + 'static> Server<M> {
    pub(crate) fn start<H, F>(mut config: Config, listens: Vec<Listen>, mut factory: F) -> Result<Server<M>>
    where
        H: Handler<M>,
        F: FnMut(usize) -> H,
    {
        let reuse_port = config.distribution == Distribution::ReusePort;
        let opts = config.listen_options();
        // A restart: the running server's listening sockets replace binding.
        let (listens, predecessor) = match &config.handover {
            Some((path, _)) => take_over(path, listens)?,
            None => (listens, None),
        };
        let (listeners, policies) = open_listeners(listens, &opts)?;
        // What each listener expects of its connections, by index: the same for
        // a reactor's own listeners in reuse-port mode (one per address, in order).
        config.policies = Arc::from(policies);
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
        let mut polls = Vec::with_capacity(config.reactors);
        let mut inboxes = Vec::with_capacity(config.reactors);
        for _ in 0..config.reactors {
            let (poll, waker) = poll_with_waker()?;
            polls.push(poll);
            inboxes.push(Arc::new(Inbox::new(waker, config.inbox_capacity)));
        }
        let acceptor = if reuse_port || listeners.is_empty() {
            None
        } else {
            let (poll, waker) = poll_with_waker()?;
            Some((poll, Arc::new(Inbox::new(waker, 1))))
        };
        // Whoever accepts is woken when a place under the cap is given back: the
        // acceptor, or in reuse-port mode every reactor.
        let acceptors: Vec<Arc<dyn Wake>> = match &acceptor {
            Some((_, inbox)) => vec![Arc::clone(inbox) as Arc<dyn Wake>],
            None => inboxes.iter().map(|i| Arc::clone(i) as Arc<dyn Wake>).collect(),
        };
        let admission = Arc::new(Admission::new(config.max_connections, acceptors));
        let accept_loop =
            |listeners| AcceptLoop::new(listeners, opts.clone(), Arc::clone(&admission), config.accept_backoff);
        // Reuse-port: every reactor gets its own listener on each address (reactor
        // 0 the ones just bound, which fixed any port 0), and there is no acceptor.
        let mut own_listeners: Vec<Option<AcceptLoop>> = (0..config.reactors).map(|_| None).collect();
        let listeners = if reuse_port {
            own_listeners[0] = Some(accept_loop(listeners));
            for slot in own_listeners.iter_mut().skip(1) {
                let mine = local_addrs
                    .iter()
                    .map(|&addr| Listener::bind_tcp(addr, &opts))
                    .collect::<Result<Vec<_>>>()?;
                *slot = Some(accept_loop(mine));
            }
            Vec::new()
        } else {
            listeners
        };
        let counters: Vec<Arc<Counters>> = (0..config.reactors).map(|_| Arc::default()).collect();
        let handle = Handle::new(Shared {
            reactors: inboxes.clone(),
            counters: counters.clone(),
            acceptor: acceptor.as_ref().map(|(_, inbox)| Arc::clone(inbox)),
            admission: Arc::clone(&admission),
            shutting_down: AtomicBool::new(false),
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
            handover: None,
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
                acceptor: handle.shared().acceptor.clone(),
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
                Reactor::new(parts, handler, handle, config).run()
            });
            match spawned {
                Ok(t) => server.reactors.push(t),
                Err(source) => return Err(server.abort_start("reactor thread", source)),
            }
        }
        if let Some((poll, inbox)) = acceptor {
            let accept = accept_loop(listeners);
            let acceptor = Acceptor::new(poll, accept, inbox, handle.clone(), config.distribution);
            match spawn("coreloop-acceptor".into(), move || acceptor.run()) {
                Ok(t) => server.acceptor = Some(t),
                Err(source) => return Err(server.abort_start("acceptor thread", source)),
            }
        }
        if let (Some((path, grace)), Some(acceptor)) = (&config.handover, &handle.shared().acceptor) {
            let (drainer, grace) = (handle.clone(), *grace);
            let drain = Box::new(move || drainer.drain(grace));
            match HandoverServer::start(path, Arc::clone(acceptor), drain) {
                Ok(h) => server.handover = Some(h),
                Err(source) => {
                    // The predecessor, never told, serves on.
                    server.abort();
                    return Err(Error::Handover {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        if let Some(predecessor) = predecessor {
            match predecessor.release() {
                Ok(()) => log::info!("coreloop: took over from the running server; it drains"),
                // It is gone already; its connections went with it.
                Err(e) => log::warn!("coreloop: cannot tell the previous server to drain: {e}"),
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
        self.abort();
        Error::Setup { what, source }
    }

    fn abort(&mut self) {
        // With no acceptor thread to take the shutdown, the reactors are told directly.
        if let Some(acceptor) = &self.handle.shared().acceptor
            && self.acceptor.is_none()
        {
            acceptor.close();
        }
        self.handle.shutdown(Duration::ZERO);
        for t in self.reactors.drain(..) {
            let _ = t.join();
        }
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }

    /// A handle for cross-thread control: send, message, close, connect,
    /// shutdown, stats.
    pub fn handle(&self) -> Handle<M> {
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
    /// [`Handle::shutdown`]) and every thread has ended, and returns every
    /// reactor's final counters and whether the shutdown flushed everything.
    ///
    /// # Errors
    ///
    /// [`Error::ReactorDied`] if a reactor thread ended by a panic (the others were
    /// still shut down and joined), [`Error::AcceptorDied`] if the acceptor did.
    ///
    /// # Examples
    ///
    /// A server that runs until another thread (here, right away) shuts it down:
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
    /// use std::time::Duration;
    ///
    /// let server = Server::builder().reactors(2).bind(([127, 0, 0, 1], 0)).start(|_| Nop)?;
    /// let handle = server.handle();
    /// // Typically a signal handler's thread; any thread may call it.
    /// std::thread::spawn(move || handle.shutdown(Duration::from_secs(5)));
    ///
    /// let report = server.join()?;
    /// assert!(report.completed, "every queued byte was written in time");
    /// assert_eq!(report.stats.reactors.len(), 2);
    /// println!("{}", report.stats); // a table: one row per reactor and a total
    /// # Ok(())
    /// # }
    /// ```
    pub fn join(mut self) -> Result<Report> {
        let acceptor_died = self.acceptor.take().is_some_and(|t| t.join().is_err());
        // A successor can take nothing from a stopped server.
        if let Some(mut handover) = self.handover.take() {
            handover.stop();
        }
        let mut completed = true;
        let mut reactors = Vec::with_capacity(self.reactors.len());
        let mut died = None;
        for (i, t) in std::mem::take(&mut self.reactors).into_iter().enumerate() {
            match t.join() {
                Ok(exit) => {
                    completed &= exit.completed;
                    reactors.push(exit.stats);
                }
                Err(_) => {
                    died.get_or_insert(i);
                    reactors.push(self.handle.stats().reactors[i]);
                }
            }
        }
        if let Some(index) = died {
            return Err(Error::ReactorDied { index });
        }
        if acceptor_died {
            return Err(Error::AcceptorDied);
        }
        let accept_backoffs = self.handle.stats().accept_backoffs;
        Ok(Report {
            stats: Stats {
                reactors,
                accept_backoffs,
            },
            completed,
        })
    }
}

impl<M: Send + 'static> Drop for Server<M> {
    fn drop(&mut self) {
        if !self.reactors.is_empty() {
            self.handle.shutdown(Duration::ZERO);
        }
    }
}

/// Runs when a reactor thread ends, by return or by panic: refuses further commands
/// (so the acceptor stops routing to it) and drops those still queued — a
/// connection handed over and not yet taken on gives its place under the cap back
/// as it is dropped, like those a dying reactor still held (its slab is dropped
/// during unwinding, closing their sockets).
struct StopGuard<M> {
    inbox: Arc<Inbox<Command<M>>>,
    counters: Arc<Counters>,
    acceptor: Option<Arc<Inbox<crate::inbox::AcceptorCommand>>>,
}

impl<M> Drop for StopGuard<M> {
    fn drop(&mut self) {
        drop(self.inbox.close());
        let held = self.counters.active.swap(0, std::sync::atomic::Ordering::Relaxed);
        bump(&self.counters.closed, held);
        if thread::panicking() {
            log::error!("coreloop: a reactor thread panicked; it takes no more connections");
            // Let the acceptor notice at once rather than at its next accept.
            if let Some(acceptor) = &self.acceptor {
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

/// Opens (or adopts) every listener, in order, each with its policy. A failure
/// names the endpoint.
fn open_listeners(listens: Vec<Listen>, opts: &ListenOptions) -> Result<(Vec<Listener>, Vec<ListenerPolicy>)> {
    let mut listeners = Vec::with_capacity(listens.len());
    let mut policies = Vec::with_capacity(listens.len());
    for listen in listens {
        open_listener(listen.spec, opts, &mut listeners)?;
        policies.resize(listeners.len(), listen.policy);
    }
    Ok((listeners, policies))
}

fn open_listener(spec: ListenSpec, opts: &ListenOptions, listeners: &mut Vec<Listener>) -> Result<()> {
    let adopt_fail = |what: String| {
        move |source| Error::Bind {
            addr: Endpoint::Inherited(what),
            source,
        }
    };
    {
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
                listeners.push(Listener::adopt_unix(l, None).map_err(adopt_fail("a Unix listener".into()))?);
            }
            ListenSpec::Inherited(fd, Some(path)) => {
                let what = format!("inherited {}", path.display());
                let l = std::os::unix::net::UnixListener::from(fd);
                listeners.push(Listener::adopt_unix(l, Some(path)).map_err(adopt_fail(what))?);
            }
            ListenSpec::Inherited(fd, None) => {
                let l = std::net::TcpListener::from(fd);
                let what = l
                    .local_addr()
                    .map_or("an inherited TCP listener".into(), |a| format!("inherited {a}"));
                listeners.push(Listener::adopt_tcp(l, opts, &what)?);
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
                            Ok(Some(l)) => Listener::adopt_unix(l, None),
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
    Ok(())
}

/// Takes over the listening sockets of the server running at `path`, if any:
/// each of this configuration's `bind` addresses and Unix paths that it serves
/// is inherited rather than bound (port 0 matches any port on the same IP). A
/// socket of the predecessor's that this configuration does not name is not
/// kept; one it names that the predecessor lacks is bound as usual.
fn take_over(path: &std::path::Path, mut listens: Vec<Listen>) -> Result<(Vec<Listen>, Option<Predecessor>)> {
    let fail = |source| Error::Handover {
        path: path.to_path_buf(),
        source,
    };
    let Some((fds, predecessor)) = handover::take_over(path).map_err(fail)? else {
        return Ok((listens, None));
    };
    let mut offered = Vec::with_capacity(fds.len());
    for fd in fds {
        let addr = socket2::SockRef::from(&fd).local_addr().map_err(fail)?;
        offered.push(Some((fd, addr)));
    }
    for listen in &mut listens {
        let found = offered.iter_mut().find(|o| {
            o.as_ref().is_some_and(|(_, addr)| match &listen.spec {
                ListenSpec::Tcp(want) => addr
                    .as_socket()
                    .is_some_and(|have| have == *want || (want.port() == 0 && have.ip() == want.ip())),
                ListenSpec::Unix(want) => addr.as_pathname() == Some(want.as_path()),
                _ => false,
            })
        });
        if let Some((fd, addr)) = found.and_then(Option::take) {
            let owned = addr.as_pathname().map(std::path::Path::to_path_buf);
            listen.spec = ListenSpec::Inherited(fd, owned);
        }
    }
    for (_, addr) in offered.into_iter().flatten() {
        let what = addr
            .as_socket()
            .map(|a| a.to_string())
            .or_else(|| addr.as_pathname().map(|p| p.display().to_string()))
            .unwrap_or_else(|| "an unnamed socket".into());
        log::warn!("coreloop: the previous server listens on {what}, which this configuration does not name");
    }
    Ok((listens, Some(predecessor)))
}
