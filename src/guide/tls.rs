//! # TLS
//!
//! With the cargo feature `tls`, coreloop speaks TLS on its own reactors, with
//! [rustls](https://docs.rs/rustls) and its ring provider: no proxy in front,
//! no second runtime. A listener given a `rustls::ServerConfig` runs each
//! connection's handshake on that connection's reactor, before `on_open`; the
//! handler then reads and writes plaintext through the same `on_data` and
//! `write` as on a plain connection. Outbound connections can speak TLS too.
//!
//! ```toml
//! [dependencies]
//! coreloop = { version = "0.1", features = ["tls"] }
//! ```
//!
//! coreloop re-exports the rustls it was built with as `coreloop::rustls`:
//! build configurations from it, and the versions always match.
//!
//! ## A TLS listener
//!
//! A certificate chain and its key, in PEM files as most tools write them,
//! make a `ServerConfig`; [`Listen::tls`](crate::Listen::tls) turns a TCP or
//! Unix listener into a TLS one:
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use coreloop::rustls::ServerConfig;
//! use coreloop::rustls::pki_types::pem::PemObject;
//! use coreloop::rustls::pki_types::{CertificateDer, PrivateKeyDer};
//! use coreloop::{Context, Handler, Listen, Server};
//! # use bytes::BytesMut;
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type Conn = ();
//!     fn on_open(&mut self, _cx: &mut Context<'_>) {}
//!     fn on_data(&mut self, _: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
//!         cx.write(input); // plaintext in, plaintext out
//!         input.clear();
//!     }
//! }
//!
//! let chain = CertificateDer::pem_file_iter("cert.pem")?.collect::<Result<Vec<_>, _>>()?;
//! let key = PrivateKeyDer::from_pem_file("key.pem")?;
//! let config = ServerConfig::builder()
//!     .with_no_client_auth()
//!     .with_single_cert(chain, key)?;
//! let server = Server::builder()
//!     .listen(Listen::tcp(([0, 0, 0, 0], 8443)).tls(config))
//!     .start(|_| Echo)?;
//! server.join()?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tls"))]
//! # fn main() {}
//! ```
//!
//! A listener can carry both a PROXY protocol header and TLS (a balancer in
//! TCP mode in front, TLS end to end): the header is read first, then the
//! handshake runs, all in the preamble. The echo example does all of this from
//! the command line: `--tls-cert PEM --tls-key PEM`, or `--tls-self-signed` to
//! try it at once (it prints the certificate's fingerprint for `openssl
//! s_client` to check):
//!
//! ```text
//! cargo run --release --example echo --features tls -- --tls-self-signed
//! openssl s_client -connect 127.0.0.1:7878 -quiet
//! ```
//!
//! ## What the handler sees
//!
//! `on_open` runs once the handshake is done; a connection whose handshake
//! fails never reaches the handler. [`Context::tls`](crate::Context::tls) then
//! says what was negotiated — `None` on a plain connection:
//!
//! ```
//! # #[cfg(feature = "tls")]
//! # mod example {
//! use coreloop::{Context, Handler};
//! # use bytes::BytesMut;
//!
//! struct Router;
//!
//! impl Handler for Router {
//!     type Conn = bool; // speaks HTTP/2?
//!     fn on_open(&mut self, cx: &mut Context<'_>) -> bool {
//!         let Some(tls) = cx.tls() else { return false };
//!         log::info!(
//!             "{:?} {:?} for {:?}, client certificate: {}",
//!             tls.protocol_version(),
//!             tls.cipher_suite().map(|s| s.suite()),
//!             tls.server_name(),
//!             tls.peer_certificates().is_some(),
//!         );
//!         tls.alpn_protocol() == Some(b"h2")
//!     }
//!     fn on_data(&mut self, _h2: &mut bool, _cx: &mut Context<'_>, input: &mut BytesMut) {
//!         input.clear();
//!     }
//! }
//! # }
//! ```
//!
//! - **ALPN**: set `config.alpn_protocols` (in order of preference);
//!   [`TlsInfo::alpn_protocol`](crate::TlsInfo::alpn_protocol) is what was
//!   agreed. A client offering none of them fails the handshake, as RFC 7301
//!   asks.
//! - **SNI**: [`TlsInfo::server_name`](crate::TlsInfo::server_name) is the name
//!   the client asked for. To serve a certificate per name, give the config a
//!   `rustls::server::ResolvesServerCertUsingSni` as its `cert_resolver`.
//! - **Client certificates**: build the config with
//!   `rustls::server::WebPkiClientVerifier::builder(roots)` — `.build()` to
//!   require one, `.allow_unauthenticated().build()` to ask for one — and read
//!   the chain from
//!   [`TlsInfo::peer_certificates`](crate::TlsInfo::peer_certificates). A
//!   certificate that does not verify, or a missing required one, closes the
//!   connection with [`TlsError::Certificate`](crate::TlsError::Certificate).
//!
//! ## Replacing the certificate without a restart
//!
//! A [`TlsAcceptor`](crate::TlsAcceptor) holds the configuration a listener
//! serves, and [`set_config`](crate::TlsAcceptor::set_config) replaces it from
//! any thread: connections accepted from then on get the new certificate,
//! established ones keep the session they have. Renew on a timer, or on a
//! signal:
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use coreloop::{Context, Handler, Listen, Server};
//! # use bytes::BytesMut;
//! # struct Echo;
//! # impl Handler for Echo {
//! #     type Conn = ();
//! #     fn on_open(&mut self, _: &mut Context<'_>) {}
//! #     fn on_data(&mut self, _: &mut (), _: &mut Context<'_>, _: &mut BytesMut) {}
//! # }
//! # fn load() -> Result<coreloop::rustls::ServerConfig, Box<dyn std::error::Error>> { unimplemented!() }
//! use std::sync::Arc;
//! use coreloop::TlsAcceptor;
//! use signal_hook::{consts::SIGHUP, iterator::Signals};
//!
//! let acceptor = TlsAcceptor::new(Arc::new(load()?));
//! let server = Server::builder()
//!     .listen(Listen::tcp(([0, 0, 0, 0], 8443)).tls(acceptor.clone()))
//!     .start(|_| Echo)?;
//! for _ in Signals::new([SIGHUP])?.forever() {
//!     match load() {
//!         Ok(config) => acceptor.set_config(Arc::new(config)),
//!         Err(e) => log::error!("certificate not reloaded, the old one stays: {e}"),
//!     }
//! }
//! # server.join()?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tls"))]
//! # fn main() {}
//! ```
//!
//! ## Outbound TLS
//!
//! [`Handle::connect_tls`](crate::Handle::connect_tls) (and `connect_tls` on
//! [`Context`](crate::Context) and [`ReactorContext`](crate::ReactorContext),
//! for the reactor the call is made on) connects with a `rustls::ClientConfig`
//! and the server name to verify. `on_open` runs after the handshake; one that
//! fails (a certificate that does not verify, say) reaches `on_connect_error`
//! as an error of kind `InvalidData` naming the reason, in rustls's words too
//! (`TLS: certificate refused (invalid peer certificate: UnknownIssuer)`). The chat example's
//! client (`chat --connect ADDR --tls-ca PEM`) is one.
//!
//! ## Limits, and clients that misbehave
//!
//! - The handshake must finish within
//!   [`Builder::preamble_timeout`](crate::Builder::preamble_timeout) (5 s by
//!   default; with a PROXY header, the two together): a client that connects
//!   and sends nothing, or a ClientHello a byte a second, is closed at it with
//!   [`TlsError::Late`](crate::TlsError::Late).
//! - At most [`Builder::max_handshakes`](crate::Builder::max_handshakes)
//!   handshakes (64 by default) run at once on a reactor; more connections
//!   wait, unread, in order, and start as places free. A burst of new clients
//!   cannot starve the established ones of the reactor's time.
//! - A first byte that cannot start a TLS record (an HTTP request on the TLS
//!   port, garbage) closes the connection at once with
//!   [`TlsError::NotTls`](crate::TlsError::NotTls); a handshake that fails
//!   sends rustls's alert first. Each such close is counted in
//!   [`ReactorStats::tls_errors`](crate::ReactorStats::tls_errors);
//!   [`ReactorStats::tls_handshakes`](crate::ReactorStats::tls_handshakes)
//!   counts the handshakes done.
//! - Flow control is unchanged: what the handler writes is plaintext queued
//!   for the connection, counted by the watermarks and by `max_output` exactly
//!   as on a plain connection. rustls holds at most
//!   [`TLS_CIPHERTEXT_LIMIT`](crate::TLS_CIPHERTEXT_LIMIT) (64 KiB) of records
//!   the socket has not taken; only when those are out is more plaintext
//!   encrypted. A client that never reads costs its queue and 64 KiB.
//!
//! ## Closing
//!
//! A graceful close ([`Context::close`](crate::Context::close), a half-close
//! with [`Context::shutdown_write`](crate::Context::shutdown_write), the
//! server's shutdown) sends `close_notify` after the queued output and before
//! the FIN. The peer's `close_notify` is its end of stream: `on_eof` runs, as
//! after a FIN on a plain connection. A peer that closes its socket without
//! one may have had its last bytes cut short (a truncation attack, or only a
//! careless client — many HTTP/1.1 clients never send it): the connection
//! closes with [`TlsError::Truncated`](crate::TlsError::Truncated), distinct
//! from a clean close, and the handler decides what that means for the
//! request it was reading.
//!
//! ## Cost
//!
//! A message costs the same system calls as on a plain connection: one `read`
//! into the reactor's shared buffer (up to 64 KiB of records at once, where
//! a socket-reading TLS stream reads 4 KiB at a time), one `writev` of the
//! records. BENCHMARKS.md ("TLS") compares coreloop with tokio + tokio-rustls
//! from the same `ServerConfig` and crypto provider. Measured there: a 64-byte
//! message costs 0.70× tokio-rustls's instructions with the same three system
//! calls, a 16 KiB message a third of its system calls and 0.69× its CPU time,
//! a handshake the same (0.99× the instructions: the crypto is the cost), an
//! idle connection 0.53× the memory (about 8 KB against 15 KB).
//!
//! An idle TLS connection holds what rustls's buffered API keeps per session —
//! its keys and state, and a receive buffer of about 4 KiB that it keeps
//! allocated — on top of a plain connection's slab entry; BENCHMARKS.md has
//! the measured total. rustls's unbuffered API would let that buffer go too
//! (records decrypted in place, in the reactor's shared buffer); coreloop
//! does not use it yet.

// Built without the feature, the TLS items this chapter links to do not exist.
#![cfg_attr(not(feature = "tls"), allow(rustdoc::broken_intra_doc_links))]
