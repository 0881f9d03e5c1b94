//! TLS with rustls (ring provider, TLS 1.2 and 1.3): to brokers, and optionally on fairlead's
//! own listeners.
//!
//! To brokers: certificates are verified against a CA bundle and the broker's advertised host
//! (or a configured server name). Skipping verification is possible, for labs, and logged
//! loudly at start-up.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no {expected}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("{0:?} is not a valid TLS server name")]
    Name(String),
    #[error("TLS handshake with {host} failed: {source}")]
    Handshake {
        host: String,
        source: std::io::Error,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let f = std::fs::File::open(path).map_err(|source| TlsError::Read {
        what,
        path: path.into(),
        source,
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(f))
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            what,
            path: path.into(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.into(),
            expected: "PEM certificate",
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "private key file";
    let f = std::fs::File::open(path).map_err(|source| TlsError::Read {
        what,
        path: path.into(),
        source,
    })?;
    rustls_pemfile::private_key(&mut BufReader::new(f))
        .map_err(|source| TlsError::Read {
            what,
            path: path.into(),
            source,
        })?
        .ok_or_else(|| TlsError::Empty {
            what,
            path: path.into(),
            expected: "PEM private key",
        })
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs("CA file", ca)? {
        roots
            .add(c)
            .map_err(|e| TlsError::Config(format!("CA file {}: {e}", ca.display())))?;
    }
    Ok(roots)
}

/// How fairlead connects to brokers over TLS.
pub struct TlsClient {
    connector: TlsConnector,
    server_name: Option<String>,
}

pub struct TlsClientSettings<'a> {
    pub ca_file: Option<&'a Path>,
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

impl TlsClient {
    pub fn new(s: TlsClientSettings<'_>) -> Result<TlsClient, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if s.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
        } else {
            let ca = s.ca_file.ok_or_else(|| TlsError::Config("upstream_tls_ca_file is required to verify brokers (or set upstream_tls_insecure_skip_verify)".into()))?;
            builder.with_root_certificates(roots(ca)?)
        };
        let config = match (s.cert_file, s.key_file) {
            (Some(c), Some(k)) => builder
                .with_client_auth_cert(certs("client certificate file", c)?, key(k)?)
                .map_err(|e| TlsError::Config(e.to_string()))?,
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(TlsError::Config(
                "a client certificate needs both upstream_tls_cert_file and upstream_tls_key_file"
                    .into(),
            )),
        };
        if let Some(n) = &s.server_name {
            ServerName::try_from(n.clone()).map_err(|_| TlsError::Name(n.clone()))?;
        }
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: s.server_name,
        })
    }

    /// TLS over a connected socket to `host` (the broker's advertised host, unless a server
    /// name is configured).
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<client::TlsStream<TcpStream>, TlsError> {
        let name = self.server_name.as_deref().unwrap_or(host).to_string();
        let server_name =
            ServerName::try_from(name.clone()).map_err(|_| TlsError::Name(name.clone()))?;
        self.connector
            .connect(server_name, tcp)
            .await
            .map_err(|source| TlsError::Handshake { host: name, source })
    }
}

/// TLS on fairlead's listeners.
pub struct TlsServer {
    pub acceptor: TlsAcceptor,
}

impl TlsServer {
    pub fn new(
        cert_file: &Path,
        key_file: &Path,
        client_ca_file: Option<&Path>,
    ) -> Result<TlsServer, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match client_ca_file {
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca)?),
                    provider(),
                )
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(
                certs("listener certificate file", cert_file)?,
                key(key_file)?,
            )
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(TlsServer {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<server::TlsStream<TcpStream>> {
        self.acceptor.accept(tcp).await
    }
}

/// Accepts any certificate: only with `upstream_tls_insecure_skip_verify`.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
