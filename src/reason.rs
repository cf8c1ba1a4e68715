//! Why a connection closed: [`CloseReason`], what every close carries from where
//! it was decided to the handler's `on_close`.

use std::fmt;
use std::io;

use crate::proxy::ProxyError;

/// Why a connection closed, as [`Handler::on_close`](crate::Handler::on_close)
/// sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The handler called [`Context::close`](crate::Context::close) (or kept the
    /// default [`Handler::on_eof`](crate::Handler::on_eof)), or a
    /// [`Handle::close`](crate::Handle::close) asked for it, and the queued output
    /// was written.
    Local,
    /// The peer closed its side and no more output was queued.
    PeerClosed,
    /// A socket error: reset, broken pipe and the like.
    Io(io::ErrorKind),
    /// A handler callback for this connection panicked.
    Panic,
    /// The server shut down.
    Shutdown,
    /// The handler left more than the configured `max_input` bytes unconsumed.
    /// [`Handler::on_limit`](crate::Handler::on_limit) could write a last reply,
    /// and the connection was closed gracefully.
    InputLimit,
    /// No traffic in either direction for the configured idle timeout.
    /// [`Handler::on_limit`](crate::Handler::on_limit) could write a last reply,
    /// and the connection was closed gracefully.
    IdleTimeout,
    /// More output was queued for the connection than the configured
    /// `max_output`: its peer does not read what it is sent.
    OutputLimit,
    /// The connection's PROXY protocol header was missing, malformed, too long,
    /// late or from a peer not trusted to send one. The handler never saw the
    /// connection (no `on_open`, no `on_close`); it is counted in
    /// [`ReactorStats::proxy_errors`](crate::ReactorStats::proxy_errors).
    Proxy(ProxyError),
    /// TLS (feature `tls`): the handshake failed or did not finish in time, the
    /// bytes were not TLS, a record was bad, or the peer closed without
    /// `close_notify` ([`TlsError::Truncated`](crate::TlsError::Truncated)).
    /// Counted in [`ReactorStats::tls_errors`](crate::ReactorStats::tls_errors).
    /// A connection that failed its handshake was never opened (no `on_open`,
    /// no `on_close`).
    #[cfg(feature = "tls")]
    Tls(crate::tls::TlsError),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed by the handler"),
            CloseReason::PeerClosed => f.write_str("closed by the peer"),
            CloseReason::Io(kind) => write!(f, "socket error: {kind}"),
            CloseReason::Panic => f.write_str("a handler callback panicked"),
            CloseReason::Shutdown => f.write_str("server shutdown"),
            CloseReason::InputLimit => f.write_str("unconsumed input over the limit"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::OutputLimit => f.write_str("queued output over the limit"),
            CloseReason::Proxy(e) => write!(f, "PROXY protocol: {e}"),
            #[cfg(feature = "tls")]
            CloseReason::Tls(e) => write!(f, "TLS: {e}"),
        }
    }
}
