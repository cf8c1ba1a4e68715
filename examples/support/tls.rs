//! The examples' TLS options (`--tls-cert`, `--tls-key`, `--tls-self-signed`;
//! `--tls-ca` for a client), and what they make: a server configuration, or a
//! client one. Without the `tls` feature, asking for TLS is a clear error.
#![allow(dead_code)]

use std::path::PathBuf;

/// TLS options from the command line.
#[derive(Debug, Default)]
pub struct TlsArgs {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub self_signed: bool,
    /// A client's trust: a certificate (a CA's, or the server's own).
    pub ca: Option<PathBuf>,
    /// The name a client checks the server's certificate against (default:
    /// the address it connects to).
    pub name: Option<String>,
}

impl TlsArgs {
    /// Takes the option `--NAME` (one starting with `tls-`).
    pub fn take(&mut self, name: &str, parser: &mut lexopt::Parser) -> Result<(), String> {
        let mut path = || -> Result<Option<PathBuf>, String> {
            let v = parser.value().map_err(|e| format!("--{name}: {e}"))?;
            Ok(Some(PathBuf::from(v)))
        };
        match name {
            "tls-cert" => self.cert = path()?,
            "tls-key" => self.key = path()?,
            "tls-ca" => self.ca = path()?,
            "tls-self-signed" => self.self_signed = true,
            "tls-name" => {
                let v = parser.value().map_err(|e| format!("--{name}: {e}"))?;
                self.name = Some(
                    v.into_string()
                        .map_err(|v| format!("invalid name {v:?} for --tls-name"))?,
                );
            }
            other => return Err(format!("invalid option '--{other}'")),
        }
        Ok(())
    }

    /// Whether a server is to serve TLS.
    pub fn serves(&self) -> bool {
        self.cert.is_some() || self.key.is_some() || self.self_signed
    }

    fn check(&self) -> Result<(), String> {
        if self.ca.is_some() || self.name.is_some() {
            return Err("--tls-ca and --tls-name are a client's options".into());
        }
        match (&self.cert, &self.key, self.self_signed) {
            (Some(_), Some(_), false) | (None, None, _) => Ok(()),
            (_, _, true) => Err("--tls-self-signed makes its own certificate: not with --tls-cert or --tls-key".into()),
            _ => Err("--tls-cert and --tls-key go together".into()),
        }
    }
}

#[cfg(not(feature = "tls"))]
const NO_TLS: &str = "TLS needs the `tls` feature: cargo run --release --example NAME --features tls -- …";

/// The server configuration the options ask for (`None`: plain). A self-signed
/// certificate's fingerprint is printed on stderr, after `program: `.
#[cfg(feature = "tls")]
pub fn server(args: &TlsArgs, program: &str) -> Result<Option<coreloop::TlsAcceptor>, String> {
    use coreloop::rustls::ServerConfig;
    use coreloop::rustls::pki_types::pem::PemObject;
    use coreloop::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    args.check()?;
    let (chain, key) = if args.self_signed {
        let names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        let made = rcgen::generate_simple_self_signed(names).map_err(|e| format!("self-signed certificate: {e}"))?;
        let der = made.cert.der().clone();
        eprintln!(
            "{program}: self-signed certificate for localhost, 127.0.0.1 and ::1; SHA-256 fingerprint {}",
            fingerprint(&der)
        );
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        (vec![der], key)
    } else {
        let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
            return Ok(None);
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("--tls-cert {}: no certificate in it", cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
        (chain, key)
    };
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    Ok(Some(coreloop::TlsAcceptor::new(std::sync::Arc::new(config))))
}

#[cfg(not(feature = "tls"))]
pub fn server(args: &TlsArgs, _program: &str) -> Result<Option<()>, String> {
    args.check()?;
    if args.serves() {
        return Err(NO_TLS.into());
    }
    Ok(None)
}

/// What a client needs for TLS: a configuration, and the name to check the
/// server's certificate against.
#[cfg(feature = "tls")]
pub type ClientTls = (
    std::sync::Arc<coreloop::rustls::ClientConfig>,
    coreloop::rustls::pki_types::ServerName<'static>,
);

/// Without the feature there is never a client configuration.
#[cfg(not(feature = "tls"))]
pub type ClientTls = ();

fn check_client(args: &TlsArgs) -> Result<(), String> {
    if args.serves() {
        return Err("--tls-cert, --tls-key and --tls-self-signed are a server's options".into());
    }
    if args.name.is_some() && args.ca.is_none() {
        return Err("--tls-name goes with --tls-ca".into());
    }
    Ok(())
}

/// A client configuration trusting `--tls-ca`, checking the server's
/// certificate against `--tls-name` or else the address `to` (`None`: plain).
#[cfg(feature = "tls")]
pub fn client(args: &TlsArgs, to: std::net::IpAddr) -> Result<Option<ClientTls>, String> {
    use coreloop::rustls::pki_types::pem::PemObject;
    use coreloop::rustls::pki_types::{CertificateDer, ServerName};
    check_client(args)?;
    let Some(ca) = &args.ca else { return Ok(None) };
    let name = match &args.name {
        Some(name) => ServerName::try_from(name.clone()).map_err(|e| format!("--tls-name {name}: {e}"))?,
        None => ServerName::IpAddress(to.into()),
    };
    let mut roots = coreloop::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("--tls-ca {}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
        roots.add(cert).map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
    }
    let mut config = coreloop::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection a full handshake: what a load generator measures (and
    // the chat client opens one connection anyway).
    config.resumption = coreloop::rustls::client::Resumption::disabled();
    Ok(Some((std::sync::Arc::new(config), name)))
}

#[cfg(not(feature = "tls"))]
pub fn client(args: &TlsArgs, _to: std::net::IpAddr) -> Result<Option<ClientTls>, String> {
    check_client(args)?;
    if args.ca.is_some() {
        return Err(NO_TLS.into());
    }
    Ok(None)
}

/// A certificate's SHA-256 fingerprint, as `openssl x509 -fingerprint` prints it.
#[cfg(feature = "tls")]
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
