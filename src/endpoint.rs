//! Where a server listens or connects, and who is at the other end: [`Endpoint`]
//! and [`PeerAddr`], the two addresses users see. Plain values: this file opens no
//! socket.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

    pub(crate) fn from_unix(a: &std::os::unix::net::SocketAddr) -> Self {
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
