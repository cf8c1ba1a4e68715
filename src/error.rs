//! The crate's one error type.
//!
//! Every variant carries the context a reader needs to act on it: which option was
//! refused and why, which address failed to bind, which reactor stopped. Causes are
//! chained with `#[source]`, never flattened into the message.

use std::io;

use crate::endpoint::Endpoint;
use crate::id::ConnId;

/// Errors returned by coreloop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder refused a setting; nothing was started.
    #[error("invalid configuration: {option}: {reason}")]
    Config {
        /// The builder option that was refused, e.g. `"reactors"`.
        option: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A listening socket could not be opened (or adopted) on an endpoint.
    #[error("failed to bind {addr}")]
    Bind {
        /// The endpoint that failed.
        addr: Endpoint,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A socket option could not be set on a listener (or on the listener a
    /// connection would inherit it from).
    #[error("failed to set {option} on {addr}")]
    SocketOption {
        /// The option, as the operating system names it, e.g. `"SO_RCVBUF"`.
        option: &'static str,
        /// The listener's endpoint.
        addr: Endpoint,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A resource the server needs at start-up could not be created.
    #[error("failed to create {what}")]
    Setup {
        /// What could not be created (a poll instance, a waker, a thread).
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A reactor thread ended by a panic outside user callbacks (a bug in coreloop,
    /// or a panic in the handler factory's output while it was dropped).
    #[error("reactor {index} stopped unexpectedly")]
    ReactorDied {
        /// The index of the reactor that died.
        index: usize,
    },
    /// The acceptor thread ended by a panic.
    #[error("the acceptor thread stopped unexpectedly")]
    AcceptorDied,
    /// A command named a connection this server never had: the id's reactor
    /// index is beyond this server's reactors (the id came from another server).
    ///
    /// A connection that has closed is not an error here: commands are carried
    /// out asynchronously, so one for a connection that closed — even one whose
    /// slot now holds another connection — is queued, then dropped by its reactor
    /// and counted in [`ReactorStats::stale`](crate::ReactorStats::stale).
    #[error("connection {id} does not belong to this server")]
    NotConnected {
        /// The id that missed.
        id: ConnId,
    },
    /// A reactor's command inbox is full; the command was not queued.
    #[error("reactor {index} inbox is full")]
    InboxFull {
        /// The index of the reactor whose inbox is full.
        index: usize,
    },
    /// A reactor already has as many of the handler's timers armed as
    /// [`Builder::max_timers`](crate::Builder::max_timers) allows.
    #[error("reactor {reactor} has {max} timers armed, its limit (Builder::max_timers)")]
    TimerLimit {
        /// The reactor whose limit was reached.
        reactor: usize,
        /// The limit.
        max: usize,
    },
    /// The connection is closed: a timer cannot be set on it (in
    /// [`Handler::on_close`](crate::Handler::on_close)).
    #[error("connection {id} is closed")]
    ConnectionClosed {
        /// The connection.
        id: ConnId,
    },
    /// A reactor index names no reactor of this server.
    #[error("no reactor {index} (the server has {reactors})")]
    NoReactor {
        /// The index that missed.
        index: usize,
        /// How many reactors the server has.
        reactors: usize,
    },
    /// Taking over the listening sockets of the process serving at `path` (a
    /// zero-downtime restart) failed; nothing was started.
    #[error("handover at {path} failed")]
    Handover {
        /// The handover socket's path.
        path: std::path::PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The server is shutting down or has stopped; the command was not queued.
    #[error("the server is shut down")]
    ShutDown,
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
