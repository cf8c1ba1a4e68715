//! TLS with rustls (feature `tls`): what a listener is configured with
//! ([`TlsAcceptor`]), what a handler learns of a session ([`TlsInfo`]), why a
//! TLS connection closed ([`TlsError`]), and the session a connection carries
//! between its socket and its handler.
//!
//! # Where the bytes go
//!
//! Reading: the socket is read into the reactor's shared buffer as for a plain
//! connection (one `read`, a short read means drained), the ciphertext is fed
//! to rustls in pieces, and the plaintext it yields goes straight into the
//! input the handler sees. Writing: what a callback staged is handed to rustls,
//! which encrypts it into records, and the records leave in one `writev`.
//! rustls holds at most [`CIPHERTEXT_LIMIT`] bytes of records not yet taken by
//! the socket; the plaintext it has not taken waits in the connection's output
//! queue, where the watermarks and `max_output` count it as for a plain
//! connection. So flow control holds for plaintext and ciphertext alike.
//!
//! # Memory
//!
//! rustls's buffered API keeps, per session, its state (keys, the negotiated
//! parameters) and a receive buffer of 4 KiB that stays allocated while the
//! connection is idle; BENCHMARKS.md has the measured total per idle TLS
//! connection, beside tokio-rustls.

use std::fmt;
use std::io::{self, BufRead};
use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// The most ciphertext a session holds that the socket has not taken (a slow
/// reader's cost on top of its queued plaintext).
pub const CIPHERTEXT_LIMIT: usize = 64 * 1024;

/// A TLS listener's configuration: a `rustls::ServerConfig` that can be
/// replaced while the server runs — a new certificate applies to connections
/// accepted from then on; established ones keep theirs.
///
/// Cloning gives another handle to the same configuration.
///
/// ```
/// use std::sync::Arc;
/// use coreloop::{Listen, TlsAcceptor};
///
/// # fn config() -> rustls::ServerConfig { unimplemented!() }
/// # fn run() {
/// let acceptor = TlsAcceptor::new(Arc::new(config()));
/// let listen = Listen::tcp(([0, 0, 0, 0], 443)).tls(acceptor.clone());
/// // Later, from any thread (a certificate renewed on disk, say):
/// acceptor.set_config(Arc::new(config()));
/// # }
/// ```
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<RwLock<Arc<ServerConfig>>>,
}

impl TlsAcceptor {
    /// An acceptor serving `config`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            config: Arc::new(RwLock::new(config)),
        }
    }

    /// Replaces the configuration for the connections accepted from now on.
    pub fn set_config(&self, config: Arc<ServerConfig>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// The configuration new connections get.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

impl From<Arc<ServerConfig>> for TlsAcceptor {
    fn from(config: Arc<ServerConfig>) -> Self {
        Self::new(config)
    }
}

impl From<ServerConfig> for TlsAcceptor {
    fn from(config: ServerConfig) -> Self {
        Self::new(Arc::new(config))
    }
}

/// Why a TLS connection was closed (in [`CloseReason::Tls`](crate::CloseReason::Tls)),
/// each counted in [`ReactorStats::tls_errors`](crate::ReactorStats::tls_errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsError {
    /// The first bytes on a TLS listener were not a TLS record: plaintext (an
    /// HTTP request, say) or garbage.
    NotTls,
    /// The handshake did not finish within
    /// [`Builder::preamble_timeout`](crate::Builder::preamble_timeout): a
    /// client that sent nothing, or sent too slowly.
    Late,
    /// The handshake failed: a malformed or unexpected message, no protocol
    /// version, cipher suite or ALPN protocol in common.
    Handshake,
    /// A certificate was refused: the peer's (client authentication, or the
    /// server's to an outbound connection) did not verify, or a required one was
    /// not sent.
    Certificate,
    /// The peer sent a fatal alert.
    Alert,
    /// After the handshake, a record that did not decrypt or parse.
    Protocol,
    /// The peer closed its connection without `close_notify`: what it sent last
    /// may have been cut short (a truncation attack, or a careless peer).
    Truncated,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsError::NotTls => "not TLS",
            TlsError::Late => "handshake not done in time",
            TlsError::Handshake => "handshake failed",
            TlsError::Certificate => "certificate refused",
            TlsError::Alert => "fatal alert from the peer",
            TlsError::Protocol => "bad record",
            TlsError::Truncated => "closed without close_notify",
        })
    }
}

impl TlsError {
    /// What a rustls error means for the connection, in the handshake or after.
    fn of(e: &rustls::Error, handshaking: bool) -> Self {
        use rustls::Error as E;
        match e {
            E::InvalidCertificate(_) | E::NoCertificatesPresented | E::InvalidCertRevocationList(_) => {
                TlsError::Certificate
            }
            E::AlertReceived(_) => TlsError::Alert,
            _ if handshaking => TlsError::Handshake,
            _ => TlsError::Protocol,
        }
    }
}

/// What was negotiated on a TLS connection, from
/// [`Context::tls`](crate::Context::tls).
#[derive(Clone, Copy)]
pub struct TlsInfo<'a> {
    conn: &'a Connection,
}

impl<'a> TlsInfo<'a> {
    /// The ALPN protocol agreed on, if any (`b"h2"`, `b"http/1.1"`, …).
    pub fn alpn_protocol(&self) -> Option<&'a [u8]> {
        self.conn.alpn_protocol()
    }

    /// The server name the client asked for (SNI), on a server connection.
    pub fn server_name(&self) -> Option<&'a str> {
        match self.conn {
            Connection::Server(s) => s.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// The protocol version: TLS 1.3 or 1.2.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The cipher suite.
    pub fn cipher_suite(&self) -> Option<rustls::SupportedCipherSuite> {
        self.conn.negotiated_cipher_suite()
    }

    /// The peer's certificate chain, leaf first: the client's when the listener
    /// asks for client certificates, the server's on an outbound connection.
    pub fn peer_certificates(&self) -> Option<&'a [CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }
}

impl fmt::Debug for TlsInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsInfo")
            .field("protocol_version", &self.protocol_version())
            .field("cipher_suite", &self.cipher_suite().map(|s| s.suite()))
            .field("alpn_protocol", &self.alpn_protocol().map(String::from_utf8_lossy))
            .field("server_name", &self.server_name())
            .finish_non_exhaustive()
    }
}

/// How a connection's handshake is to start.
#[derive(Debug, Clone)]
pub(crate) enum TlsStart {
    /// Accepted on a TLS listener.
    Server(TlsAcceptor),
    /// Connected with [`Handle::connect_tls`](crate::Handle::connect_tls).
    Client(Arc<ClientConfig>, ServerName<'static>),
}

impl TlsStart {
    /// The session, ready to handshake (a client's hello queued).
    pub(crate) fn session(&self) -> Result<Session, rustls::Error> {
        let conn = match self {
            TlsStart::Server(acceptor) => Connection::Server(ServerConnection::new(acceptor.config())?),
            TlsStart::Client(config, name) => {
                Connection::Client(ClientConnection::new(Arc::clone(config), name.clone())?)
            }
        };
        Ok(Session::new(conn))
    }
}

/// A connection's TLS session.
#[derive(Debug)]
pub(crate) struct Session {
    conn: Connection,
    /// Our `close_notify` is queued (sent with the rest of the records).
    closing: bool,
    /// Nothing has been fed yet (the first byte is checked for a TLS record).
    fresh: bool,
    /// The peer's `close_notify` arrived.
    peer_closed: bool,
    /// rustls's own words for why the session failed, if it did.
    failure: Option<String>,
}

/// What feeding ciphertext gave.
pub(crate) struct Fed {
    /// Plaintext bytes appended.
    pub(crate) plaintext: usize,
    /// The peer's `close_notify` arrived.
    pub(crate) closed: bool,
}

impl Session {
    fn new(mut conn: Connection) -> Self {
        conn.set_buffer_limit(Some(CIPHERTEXT_LIMIT));
        Self {
            conn,
            closing: false,
            fresh: true,
            peer_closed: false,
            failure: None,
        }
    }

    pub(crate) fn info(&self) -> TlsInfo<'_> {
        TlsInfo { conn: &self.conn }
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Records are waiting for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Feeds ciphertext and appends the plaintext it yields to `plain`. A
    /// server session checks the first byte it ever gets: a TLS connection
    /// starts with a handshake record.
    pub(crate) fn feed(&mut self, mut ciphertext: &[u8], plain: &mut bytes::BytesMut) -> Result<Fed, TlsError> {
        if std::mem::take(&mut self.fresh)
            && matches!(self.conn, Connection::Server(_))
            && ciphertext.first().is_some_and(|&b| b != 0x16)
        {
            return Err(TlsError::NotTls);
        }
        let mut fed = Fed {
            plaintext: 0,
            closed: false,
        };
        while !ciphertext.is_empty() && !fed.closed {
            // Copies at most a few KiB into rustls's receive buffer.
            if let Err(e) = self.conn.read_tls(&mut ciphertext) {
                log::debug!("coreloop: TLS: cannot take more input: {e}");
                return Err(TlsError::Protocol);
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    log::debug!("coreloop: TLS: {e}");
                    let kind = TlsError::of(&e, self.conn.is_handshaking());
                    self.failure = Some(e.to_string());
                    return Err(kind);
                }
            };
            if state.plaintext_bytes_to_read() > 0 {
                // Straight from rustls's buffer into the input: one copy.
                let mut reader = self.conn.reader();
                while let Ok(chunk) = reader.fill_buf()
                    && !chunk.is_empty()
                {
                    let n = chunk.len();
                    plain.extend_from_slice(chunk);
                    reader.consume(n);
                    fed.plaintext += n;
                }
            }
            fed.closed = state.peer_has_closed();
        }
        self.peer_closed |= fed.closed;
        Ok(fed)
    }

    /// Encrypts as much of `plain` as the ciphertext limit allows; returns the
    /// bytes taken.
    pub(crate) fn encrypt(&mut self, plain: &[u8]) -> usize {
        io::Write::write(&mut self.conn.writer(), plain).unwrap_or(0)
    }

    /// Encrypts as much of `plain` (several slices) as the limit allows.
    pub(crate) fn encrypt_vectored(&mut self, plain: &[io::IoSlice<'_>]) -> usize {
        io::Write::write_vectored(&mut self.conn.writer(), plain).unwrap_or(0)
    }

    /// Writes pending records until none is left or the socket is full (one
    /// `writev` each time). Returns the bytes written.
    pub(crate) fn flush(&mut self, socket: &mut dyn io::Write) -> io::Result<usize> {
        let mut written = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Queues our `close_notify`, once.
    pub(crate) fn close_notify(&mut self) {
        if !std::mem::replace(&mut self.closing, true) {
            self.conn.send_close_notify();
        }
    }

    /// rustls's description of the error that ended the session, if one did.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Whether the peer's `close_notify` was received.
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }
}
