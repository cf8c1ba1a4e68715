//! Certificates made for the tests (rcgen), rustls configurations from them, and
//! a blocking rustls client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use coreloop::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use coreloop::rustls::server::WebPkiClientVerifier;
use coreloop::rustls::{self, ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use super::DEADLINE;

/// A certificate and its key.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
    /// The certificate and the key in PEM, for programs that read files.
    pub cert_pem: String,
    pub key_pem: String,
}

impl Identity {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// A certificate authority, and what it signed: a server certificate for
/// `localhost` and 127.0.0.1, and a client certificate.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    pub ca_pem: String,
    pub server: Identity,
    pub client: Identity,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("coreloop test CA {name}"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |names: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names).unwrap().signed_by(&key, &ca).unwrap();
            Identity {
                cert: cert.der().clone(),
                key: PrivatePkcs8KeyDer::from(key.serialize_der()),
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            }
        };
        Pki {
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            server: leaf(vec!["localhost".into(), "127.0.0.1".into()]),
            client: leaf(vec!["client.test".into()]),
        }
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        Arc::new(roots)
    }

    /// A server configuration: no client authentication.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![self.server.cert.clone()], self.server.key())
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A server configuration asking for client certificates signed by
    /// `clients`' CA: required, or optional.
    pub fn server_config_with_clients(&self, clients: &Pki, required: bool) -> Arc<ServerConfig> {
        let builder = WebPkiClientVerifier::builder(clients.roots());
        let verifier = if required {
            builder.build()
        } else {
            builder.allow_unauthenticated().build()
        }
        .unwrap();
        Arc::new(
            ServerConfig::builder()
                .with_client_cert_verifier(verifier)
                .with_single_cert(vec![self.server.cert.clone()], self.server.key())
                .unwrap(),
        )
    }

    /// A client configuration trusting this CA.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut config = ClientConfig::builder()
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A client configuration trusting this CA and presenting `id`.
    pub fn client_config_with_cert(&self, id: &Identity) -> Arc<ClientConfig> {
        Arc::new(
            ClientConfig::builder()
                .with_root_certificates(self.roots())
                .with_client_auth_cert(vec![id.cert.clone()], id.key())
                .unwrap(),
        )
    }
}

pub type Client = StreamOwned<ClientConnection, TcpStream>;

/// A blocking TLS client for `localhost`, handshake done.
pub fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Client {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    sock.set_write_timeout(Some(DEADLINE)).unwrap();
    sock.set_nodelay(true).unwrap();
    let mut client = StreamOwned::new(conn, sock);
    while client.conn.is_handshaking() {
        client.conn.complete_io(&mut client.sock).expect("the TLS handshake");
    }
    client
}

/// Like [`tls_connect`], returning the handshake's error instead.
pub fn try_tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<Client, std::io::Error> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(DEADLINE))?;
    let mut client = StreamOwned::new(conn, sock);
    while client.conn.is_handshaking() {
        client.conn.complete_io(&mut client.sock)?;
    }
    // TLS 1.3: a refused client certificate shows at the first read.
    client.conn.complete_io(&mut client.sock)?;
    Ok(client)
}

/// Writes `data` in pieces of `piece` bytes (each its own record) and reads
/// the echo, alternating so neither side's buffers fill.
pub fn echo_through(client: &mut Client, data: &[u8], piece: usize) -> Vec<u8> {
    let mut back = Vec::with_capacity(data.len());
    for chunk in data.chunks(64 * 1024) {
        for p in chunk.chunks(piece.max(1)) {
            client.write_all(p).unwrap();
        }
        client.flush().unwrap();
        let mut got = vec![0; chunk.len()];
        client.read_exact(&mut got).expect("read the echo");
        back.extend_from_slice(&got);
    }
    back
}

/// Reads until the peer's `close_notify` (`Ok`), or the error a close without
/// one gives.
pub fn read_to_close(client: &mut Client) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    client.read_to_end(&mut got).map(|_| got)
}

/// The protocol version as the handler reports it.
pub fn tls13() -> rustls::ProtocolVersion {
    rustls::ProtocolVersion::TLSv1_3
}
