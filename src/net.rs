//! Sockets: the listener and stream kinds the server handles (TCP and Unix domain),
//! how listeners are opened (through socket2, so every option is set before
//! `listen`) and how outbound connections start.
//!
//! This file owns socket set-up only; it never reads or writes connection data.
//! It is a little over 400 lines because every socket kind (TCP, Unix; bound,
//! adopted, connected) needs its own few lines, and splitting them would scatter
//! one concern.

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use mio::event::Source;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Socket, Type};

use crate::endpoint::{Endpoint, PeerAddr};
use crate::error::Error;

/// A listening socket owned by the acceptor.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(mio::net::TcpListener),
    /// With the path to remove when the listener closes, if we created it.
    Unix(mio::net::UnixListener, Option<PathBuf>),
}

/// A connected socket owned by a reactor.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

/// Options for every TCP connection: set on listeners (accepted sockets inherit
/// them on Linux, so an accept costs no `setsockopt`) and on each outbound socket.
#[derive(Debug, Clone, Default)]
pub(crate) struct SocketOptions {
    pub(crate) nodelay: bool,
    /// `SO_SNDBUF`, when set.
    pub(crate) send_buffer: Option<usize>,
    /// `SO_RCVBUF`, when set.
    pub(crate) recv_buffer: Option<usize>,
    /// `SO_KEEPALIVE` with its timings, when set.
    pub(crate) keepalive: Option<socket2::TcpKeepalive>,
}

impl SocketOptions {
    /// Sets every configured option on a TCP socket. On failure, names the option.
    fn apply(&self, socket: &socket2::SockRef<'_>) -> Result<(), (&'static str, io::Error)> {
        if self.nodelay {
            socket.set_tcp_nodelay(true).map_err(|e| ("TCP_NODELAY", e))?;
        }
        self.apply_buffers(socket)?;
        if let Some(k) = &self.keepalive {
            socket.set_tcp_keepalive(k).map_err(|e| ("SO_KEEPALIVE", e))?;
        }
        Ok(())
    }

    /// Sets the configured buffer sizes, the options a Unix stream socket takes too.
    fn apply_buffers(&self, socket: &socket2::SockRef<'_>) -> Result<(), (&'static str, io::Error)> {
        if let Some(n) = self.send_buffer {
            socket.set_send_buffer_size(n).map_err(|e| ("SO_SNDBUF", e))?;
        }
        if let Some(n) = self.recv_buffer {
            socket.set_recv_buffer_size(n).map_err(|e| ("SO_RCVBUF", e))?;
        }
        Ok(())
    }

    fn has_buffers(&self) -> bool {
        self.send_buffer.is_some() || self.recv_buffer.is_some()
    }
}

/// Options applied to listening sockets (and through inheritance to accepted ones).
#[derive(Debug, Clone)]
pub(crate) struct ListenOptions {
    pub(crate) backlog: u32,
    /// Set `SO_REUSEPORT` (one listener per reactor on the same address).
    pub(crate) reuse_port: bool,
    pub(crate) socket: SocketOptions,
}

impl Listener {
    /// Opens a TCP listener with `SO_REUSEADDR` (a restarted server binds again
    /// while connections of the last run sit in `TIME_WAIT`), the connection
    /// options set before `listen` so accepted sockets inherit them (on Linux: no
    /// `setsockopt` per accepted connection; a receive buffer set before `listen`
    /// also sizes the window scale), and the configured backlog.
    pub(crate) fn bind_tcp(addr: SocketAddr, opts: &ListenOptions) -> Result<Self, Error> {
        let endpoint = Endpoint::Tcp(addr);
        let fail = |source| Error::Bind {
            addr: endpoint.clone(),
            source,
        };
        let option_fail = |(option, source)| Error::SocketOption {
            option,
            addr: endpoint.clone(),
            source,
        };
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
        socket
            .set_reuse_address(true)
            .map_err(|e| option_fail(("SO_REUSEADDR", e)))?;
        if opts.reuse_port {
            socket
                .set_reuse_port(true)
                .map_err(|e| option_fail(("SO_REUSEPORT", e)))?;
        }
        Self::inherited_options(&socket, opts).map_err(option_fail)?;
        socket.bind(&addr.into()).map_err(fail)?;
        socket.listen(backlog(opts)).map_err(fail)?;
        socket.set_nonblocking(true).map_err(fail)?;
        Ok(Listener::Tcp(mio::net::TcpListener::from_std(socket.into())))
    }

    /// Adopts a TCP listener someone else opened (already bound and listening; its
    /// backlog stays as it is). The connection options are set on it as on ours.
    pub(crate) fn adopt_tcp(listener: std::net::TcpListener, opts: &ListenOptions, what: &str) -> Result<Self, Error> {
        let endpoint = Endpoint::Inherited(what.to_string());
        let socket = Socket::from(listener);
        Self::inherited_options(&socket, opts).map_err(|(option, source)| Error::SocketOption {
            option,
            addr: endpoint.clone(),
            source,
        })?;
        socket
            .set_nonblocking(true)
            .map_err(|source| Error::Bind { addr: endpoint, source })?;
        Ok(Listener::Tcp(mio::net::TcpListener::from_std(socket.into())))
    }

    /// Sets the connection options on a listener for its accepted sockets to
    /// inherit. Elsewhere than Linux they are set on each accepted socket instead.
    fn inherited_options(socket: &Socket, opts: &ListenOptions) -> Result<(), (&'static str, io::Error)> {
        if cfg!(target_os = "linux") {
            opts.socket.apply(&socket2::SockRef::from(socket))?;
        }
        Ok(())
    }

    /// Opens a Unix listener at `path`. A socket file left by a crashed run (nobody
    /// accepts on it) is removed and the bind retried; a live socket, or a path that
    /// is not a socket at all, is never touched.
    pub(crate) fn bind_unix(path: &Path, opts: &ListenOptions) -> Result<Self, Error> {
        let fail = |source| Error::Bind {
            addr: Endpoint::Unix(path.to_path_buf()),
            source,
        };
        let socket = match bind_unix_socket(path, opts) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                remove_stale_socket(path).map_err(fail)?;
                bind_unix_socket(path, opts).map_err(fail)?
            }
            other => other.map_err(fail)?,
        };
        socket.set_nonblocking(true).map_err(fail)?;
        let std: std::os::unix::net::UnixListener = socket.into();
        Ok(Listener::Unix(
            mio::net::UnixListener::from_std(std),
            Some(path.to_path_buf()),
        ))
    }

    /// Adopts a Unix listener someone else opened; its path is removed when it
    /// closes only if `owned` names it.
    pub(crate) fn adopt_unix(listener: std::os::unix::net::UnixListener, owned: Option<PathBuf>) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Listener::Unix(mio::net::UnixListener::from_std(listener), owned))
    }

    /// A duplicate of the listening socket's descriptor (for a successor
    /// process: the socket, and what waits in its accept queue, lives on).
    pub(crate) fn duplicate(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        match self {
            Listener::Tcp(l) => l.as_fd().try_clone_to_owned(),
            Listener::Unix(l, _) => l.as_fd().try_clone_to_owned(),
        }
    }

    /// Stops owning the Unix socket's path: it is no longer removed when this
    /// listener closes.
    pub(crate) fn disown_path(&mut self) {
        if let Listener::Unix(_, path) = self {
            *path = None;
        }
    }

    pub(crate) fn endpoint(&self) -> io::Result<Endpoint> {
        Ok(match self {
            Listener::Tcp(l) => Endpoint::Tcp(l.local_addr()?),
            Listener::Unix(l, _) => {
                let addr = l.local_addr()?;
                match addr.as_pathname() {
                    Some(p) => Endpoint::Unix(p.to_path_buf()),
                    None => Endpoint::Inherited("unix:(unnamed)".into()),
                }
            }
        })
    }

    /// Accepts one connection (`accept4` with `SOCK_NONBLOCK | SOCK_CLOEXEC`).
    pub(crate) fn accept(&self, opts: &ListenOptions) -> io::Result<(Stream, PeerAddr)> {
        match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept()?;
                // Linux copies the options from the listener; elsewhere set them here.
                if !cfg!(target_os = "linux") {
                    opts.socket.apply(&socket2::SockRef::from(&s)).map_err(|(_, e)| e)?;
                }
                Ok((Stream::Tcp(s), PeerAddr::Tcp(a)))
            }
            Listener::Unix(l, _) => {
                let (s, a) = l.accept()?;
                // A Unix socket does not inherit buffer sizes from its listener: set
                // them here (only when configured). The kernel clamps a size rather
                // than refuse it, so a failure only loses the tuning.
                if opts.socket.has_buffers()
                    && let Err((option, e)) = opts.socket.apply_buffers(&socket2::SockRef::from(&s))
                {
                    log::debug!("coreloop: cannot set {option} on an accepted Unix socket: {e}");
                }
                Ok((Stream::Unix(s), PeerAddr::from_unix(&a)))
            }
        }
    }
}

impl Drop for Listener {
    /// Removes the socket file this listener created, if it is still a socket.
    fn drop(&mut self) {
        if let Listener::Unix(_, Some(path)) = self
            && std::fs::symlink_metadata(&*path).is_ok_and(|m| m.file_type().is_socket())
        {
            let _ = std::fs::remove_file(&*path);
        }
    }
}

fn backlog(opts: &ListenOptions) -> i32 {
    i32::try_from(opts.backlog).unwrap_or(i32::MAX)
}

fn bind_unix_socket(path: &Path, opts: &ListenOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    socket.listen(backlog(opts))?;
    Ok(socket)
}

/// A nonblocking, close-on-exec stream socket (in one syscall on Linux).
fn nonblocking_stream(domain: Domain) -> io::Result<Socket> {
    #[cfg(target_os = "linux")]
    let socket = Socket::new(domain, Type::STREAM.nonblocking(), None)?;
    #[cfg(not(target_os = "linux"))]
    let socket = {
        let socket = Socket::new(domain, Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket
    };
    Ok(socket)
}

/// Removes `path` only if it is a socket that nobody accepts on.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "the path exists and is not a socket; it is left untouched",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is accepting on this socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::warn!("coreloop: removing stale socket file {}", path.display());
            std::fs::remove_file(path)
        }
        Err(e) => Err(e),
    }
}

impl Source for Listener {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.register(r, t, i),
            Listener::Unix(l, _) => l.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.reregister(r, t, i),
            Listener::Unix(l, _) => l.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.deregister(r),
            Listener::Unix(l, _) => l.deregister(r),
        }
    }
}

impl Stream {
    /// Starts a nonblocking connect. TCP connects complete later (the socket turns
    /// writable); Unix ones usually complete or fail at once.
    /// With `from`, a TCP connect first binds that local address (a source
    /// address of the caller's choice). The connection options are set before the
    /// connect, so a receive buffer size also sizes the window scale.
    pub(crate) fn connect(
        to: &Endpoint,
        from: Option<SocketAddr>,
        opts: &SocketOptions,
    ) -> io::Result<(Stream, PeerAddr)> {
        match to {
            Endpoint::Tcp(addr) => {
                let socket = nonblocking_stream(Domain::for_address(*addr))?;
                opts.apply(&socket2::SockRef::from(&socket))
                    .map_err(|(option, e)| io::Error::new(e.kind(), format!("setting {option}: {e}")))?;
                if let Some(local) = from {
                    socket.bind(&local.into())?;
                }
                match socket.connect(&(*addr).into()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    Err(e) => return Err(e),
                }
                let s = mio::net::TcpStream::from_std(socket.into());
                Ok((Stream::Tcp(s), PeerAddr::Tcp(*addr)))
            }
            Endpoint::Unix(_) if from.is_some() => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a source address applies to TCP connections only",
            )),
            Endpoint::Unix(path) => {
                let s = mio::net::UnixStream::connect(path)?;
                opts.apply_buffers(&socket2::SockRef::from(&s))
                    .map_err(|(option, e)| io::Error::new(e.kind(), format!("setting {option}: {e}")))?;
                Ok((Stream::Unix(s), PeerAddr::Unix(Some(path.clone()))))
            }
            Endpoint::Inherited(what) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot connect to an inherited endpoint ({what})"),
            )),
        }
    }

    /// Whether a connect started by [`connect`](Self::connect) has completed:
    /// `Ok(true)` connected, `Ok(false)` still in progress, `Err` failed.
    pub(crate) fn connect_result(&self) -> io::Result<bool> {
        if let Some(e) = self.take_error()? {
            return Err(e);
        }
        let peer = match self {
            Stream::Tcp(s) => s.peer_addr().map(drop),
            Stream::Unix(s) => s.peer_addr().map(drop),
        };
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(buf),
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write_vectored(bufs),
            Stream::Unix(s) => (&*s).write_vectored(bufs),
        }
    }

    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
        }
    }
}

/// For rustls, which writes its records through `io::Write` (one `writev`).
#[cfg(feature = "tls")]
impl io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Stream::write(self, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Stream::write_vectored(self, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl std::os::fd::AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}
