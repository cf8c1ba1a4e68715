//! Sockets: the endpoint, listener and stream kinds the server handles (TCP and Unix
//! domain), how listeners are opened (through socket2, so every option is set before
//! `listen`) and how outbound connections start.
//!
//! This file owns socket set-up only; it never reads or writes connection data.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use mio::event::Source;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Socket, Type};

use crate::error::Error;

/// Where to listen or connect: a TCP address or a Unix domain socket path.
///
/// # Examples
///
/// ```
/// use coreloop::Endpoint;
/// let tcp = Endpoint::from(([127, 0, 0, 1], 7878));
/// let unix = Endpoint::from(std::path::Path::new("/run/app.sock"));
/// assert_eq!(tcp.to_string(), "127.0.0.1:7878");
/// assert_eq!(unix.to_string(), "unix:/run/app.sock");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix domain socket path.
    Unix(PathBuf),
    /// A listener handed over already open (by the caller, or by a service manager
    /// through `LISTEN_FDS`), named by its descriptor or its position.
    Inherited(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(a) => a.fmt(f),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Inherited(what) => f.write_str(what),
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Self {
        Endpoint::Tcp(a)
    }
}

impl<I: Into<std::net::IpAddr>> From<(I, u16)> for Endpoint {
    fn from(a: (I, u16)) -> Self {
        Endpoint::Tcp(SocketAddr::from(a))
    }
}

impl From<&Path> for Endpoint {
    fn from(p: &Path) -> Self {
        Endpoint::Unix(p.to_path_buf())
    }
}

impl From<PathBuf> for Endpoint {
    fn from(p: PathBuf) -> Self {
        Endpoint::Unix(p)
    }
}

/// The address of a connection's peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix domain socket peer, with its path when it has one (clients usually
    /// do not bind a path).
    Unix(Option<PathBuf>),
}

impl PeerAddr {
    /// The TCP address, if this is a TCP peer.
    pub fn as_tcp(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Tcp(a) => Some(*a),
            PeerAddr::Unix(_) => None,
        }
    }

    fn from_unix(a: &std::os::unix::net::SocketAddr) -> Self {
        PeerAddr::Unix(a.as_pathname().map(Path::to_path_buf))
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(a) => a.fmt(f),
            PeerAddr::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            PeerAddr::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}

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

/// Options applied to listening sockets (and through inheritance to accepted ones).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenOptions {
    pub(crate) backlog: u32,
    pub(crate) nodelay: bool,
    /// Set `SO_REUSEPORT` (one listener per reactor on the same address).
    pub(crate) reuse_port: bool,
}

impl Listener {
    /// Opens a TCP listener with `SO_REUSEADDR`, the configured backlog and, on
    /// Linux, `TCP_NODELAY` set on the listener so accepted sockets inherit it
    /// (no `setsockopt` per accepted connection).
    pub(crate) fn bind_tcp(addr: SocketAddr, opts: ListenOptions) -> Result<Self, Error> {
        let fail = |source| Error::Bind {
            addr: Endpoint::Tcp(addr),
            source,
        };
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
        socket.set_reuse_address(true).map_err(fail)?;
        if opts.reuse_port {
            socket.set_reuse_port(true).map_err(fail)?;
        }
        socket.bind(&addr.into()).map_err(fail)?;
        socket.listen(backlog(opts)).map_err(fail)?;
        Self::from_tcp_socket(socket, opts).map_err(fail)
    }

    /// Adopts a TCP listener someone else opened (already bound and listening).
    pub(crate) fn adopt_tcp(listener: std::net::TcpListener, opts: ListenOptions) -> io::Result<Self> {
        Self::from_tcp_socket(Socket::from(listener), opts)
    }

    fn from_tcp_socket(socket: Socket, opts: ListenOptions) -> io::Result<Self> {
        if opts.nodelay && cfg!(target_os = "linux") {
            socket.set_tcp_nodelay(true)?;
        }
        socket.set_nonblocking(true)?;
        Ok(Listener::Tcp(mio::net::TcpListener::from_std(socket.into())))
    }

    /// Opens a Unix listener at `path`. A socket file left by a crashed run (nobody
    /// accepts on it) is removed and the bind retried; a live socket, or a path that
    /// is not a socket at all, is never touched.
    pub(crate) fn bind_unix(path: &Path, opts: ListenOptions) -> Result<Self, Error> {
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

    /// Adopts a Unix listener someone else opened; its path is left alone.
    pub(crate) fn adopt_unix(listener: std::os::unix::net::UnixListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Listener::Unix(mio::net::UnixListener::from_std(listener), None))
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
    pub(crate) fn accept(&self, opts: ListenOptions) -> io::Result<(Stream, PeerAddr)> {
        match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept()?;
                // Linux copies TCP_NODELAY from the listener; elsewhere set it here.
                if opts.nodelay && !cfg!(target_os = "linux") {
                    s.set_nodelay(true)?;
                }
                Ok((Stream::Tcp(s), PeerAddr::Tcp(a)))
            }
            Listener::Unix(l, _) => {
                let (s, a) = l.accept()?;
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

fn backlog(opts: ListenOptions) -> i32 {
    i32::try_from(opts.backlog).unwrap_or(i32::MAX)
}

fn bind_unix_socket(path: &Path, opts: ListenOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    socket.listen(backlog(opts))?;
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
    /// address of the caller's choice).
    pub(crate) fn connect(to: &Endpoint, from: Option<SocketAddr>, nodelay: bool) -> io::Result<(Stream, PeerAddr)> {
        match to {
            Endpoint::Tcp(addr) => {
                let s = match from {
                    None => mio::net::TcpStream::connect(*addr)?,
                    Some(local) => {
                        let socket = Socket::new(Domain::for_address(*addr), Type::STREAM, None)?;
                        socket.bind(&local.into())?;
                        socket.set_nonblocking(true)?;
                        match socket.connect(&(*addr).into()) {
                            Ok(()) => {}
                            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                            Err(e) => return Err(e),
                        }
                        mio::net::TcpStream::from_std(socket.into())
                    }
                };
                if nodelay {
                    s.set_nodelay(true)?;
                }
                Ok((Stream::Tcp(s), PeerAddr::Tcp(*addr)))
            }
            Endpoint::Unix(_) if from.is_some() => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a source address applies to TCP connections only",
            )),
            Endpoint::Unix(path) => {
                let s = mio::net::UnixStream::connect(path)?;
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
