//! Sockets: the listener and stream kinds the server handles, and how listeners are
//! opened (through socket2, so every option is set before `listen`).
//!
//! This file owns socket set-up only; it never reads or writes connection data.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;

use mio::event::Source;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Socket, Type};

use crate::error::Error;

/// The address of a connection's peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
}

impl PeerAddr {
    /// The TCP address, if this is a TCP peer.
    pub fn as_tcp(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Tcp(a) => Some(*a),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(a) => a.fmt(f),
        }
    }
}

/// A listening socket owned by the acceptor.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(mio::net::TcpListener),
}

/// A connected socket owned by a reactor.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(mio::net::TcpStream),
}

/// Options applied to listening sockets (and through inheritance to accepted ones).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenOptions {
    pub(crate) backlog: u32,
    pub(crate) nodelay: bool,
}

impl Listener {
    /// Opens a TCP listener with `SO_REUSEADDR`, the configured backlog and, on
    /// Linux, `TCP_NODELAY` set on the listener so accepted sockets inherit it
    /// (no `setsockopt` per accepted connection).
    pub(crate) fn bind_tcp(addr: SocketAddr, opts: ListenOptions) -> Result<Self, Error> {
        let fail = |source| Error::Bind { addr, source };
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
        socket.set_reuse_address(true).map_err(fail)?;
        if opts.nodelay && cfg!(target_os = "linux") {
            socket.set_tcp_nodelay(true).map_err(fail)?;
        }
        socket.bind(&addr.into()).map_err(fail)?;
        let backlog = i32::try_from(opts.backlog).unwrap_or(i32::MAX);
        socket.listen(backlog).map_err(fail)?;
        socket.set_nonblocking(true).map_err(fail)?;
        let std: std::net::TcpListener = socket.into();
        Ok(Listener::Tcp(mio::net::TcpListener::from_std(std)))
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr(),
        }
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
        }
    }
}

impl Source for Listener {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.deregister(r),
        }
    }
}

impl Stream {
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
        }
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(buf),
        }
    }

    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write_vectored(bufs),
        }
    }

    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
        }
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
        }
    }
}
