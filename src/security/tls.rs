//! TLS with rustls (ring provider, TLS 1.2 and 1.3): to brokers, and optionally on fairlead's
//! own listeners.
//!
//! To brokers: certificates are verified against a CA bundle and the broker's advertised host
//! (or a configured server name). Skipping verification is possible, for labs, and logged
//! loudly at start-up.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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

/// A client configuration that trusts the CA bundle at `ca` (the https token endpoint).
pub fn client_config_for_ca(ca: &Path) -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth())
}

/// How fairlead connects to brokers over TLS. The configuration is rebuilt from its files when
/// they change (`security::reload`): connections made after that use the new one, established
/// ones keep theirs.
pub struct TlsClient {
    config: RwLock<Arc<ClientConfig>>,
    settings: TlsClientSettings,
}

#[derive(Debug, Clone)]
pub struct TlsClientSettings {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

impl TlsClient {
    pub fn new(s: TlsClientSettings) -> Result<TlsClient, TlsError> {
        if let Some(n) = &s.server_name {
            ServerName::try_from(n.clone()).map_err(|_| TlsError::Name(n.clone()))?;
        }
        Ok(TlsClient {
            config: RwLock::new(Arc::new(client_config(&s)?)),
            settings: s,
        })
    }

    /// The files the configuration is read from.
    pub fn files(&self) -> Vec<PathBuf> {
        let s = &self.settings;
        [&s.ca_file, &s.cert_file, &s.key_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Reads the files again and, if they make a valid configuration, uses it from now on;
    /// otherwise keeps the current one and says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(client_config(&self.settings)?);
        *self.config.write().unwrap() = fresh;
        Ok(())
    }

    /// TLS over a connected socket to `host` (the broker's advertised host, unless a server
    /// name is configured).
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<client::TlsStream<TcpStream>, TlsError> {
        let name = self
            .settings
            .server_name
            .as_deref()
            .unwrap_or(host)
            .to_string();
        let server_name =
            ServerName::try_from(name.clone()).map_err(|_| TlsError::Name(name.clone()))?;
        let config = self.config.read().unwrap().clone();
        TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|source| TlsError::Handshake { host: name, source })
    }
}

fn client_config(s: &TlsClientSettings) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if s.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let ca = s.ca_file.as_deref().ok_or_else(|| TlsError::Config("upstream_tls_ca_file is required to verify brokers (or set upstream_tls_insecure_skip_verify)".into()))?;
        builder.with_root_certificates(roots(ca)?)
    };
    match (&s.cert_file, &s.key_file) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(certs("client certificate file", c)?, key(k)?)
            .map_err(|e| TlsError::Config(format!("{} and {}: {e}", c.display(), k.display()))),
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(TlsError::Config(
            "a client certificate needs both upstream_tls_cert_file and upstream_tls_key_file"
                .into(),
        )),
    }
}

/// TLS on fairlead's listeners; reloadable like [`TlsClient`].
pub struct TlsServer {
    config: RwLock<Arc<ServerConfig>>,
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
}

impl TlsServer {
    pub fn new(
        cert_file: &Path,
        key_file: &Path,
        client_ca_file: Option<&Path>,
    ) -> Result<TlsServer, TlsError> {
        let config = server_config(cert_file, key_file, client_ca_file)?;
        Ok(TlsServer {
            config: RwLock::new(Arc::new(config)),
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            client_ca_file: client_ca_file.map(Into::into),
        })
    }

    pub fn files(&self) -> Vec<PathBuf> {
        let mut f = vec![self.cert_file.clone(), self.key_file.clone()];
        f.extend(self.client_ca_file.clone());
        f
    }

    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config(
            &self.cert_file,
            &self.key_file,
            self.client_ca_file.as_deref(),
        )?;
        *self.config.write().unwrap() = Arc::new(fresh);
        Ok(())
    }

    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<server::TlsStream<TcpStream>> {
        let config = self.config.read().unwrap().clone();
        TlsAcceptor::from(config).accept(tcp).await
    }
}

fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
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
    builder
        .with_single_cert(
            certs("listener certificate file", cert_file)?,
            key(key_file)?,
        )
        .map_err(|e| {
            TlsError::Config(format!(
                "{} and {}: {e}",
                cert_file.display(),
                key_file.display()
            ))
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/security/testdata");

    /// A directory of copies of the test material, to be changed by a test.
    fn files(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fairlead-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["ca.pem", "a.pem", "a.key", "b.pem", "b.key"] {
            std::fs::copy(Path::new(DATA).join(f), d.join(f)).unwrap();
        }
        std::fs::copy(d.join("a.pem"), d.join("cert.pem")).unwrap();
        std::fs::copy(d.join("a.key"), d.join("key.pem")).unwrap();
        d
    }

    fn leaf(d: &Path, name: &str) -> CertificateDer<'static> {
        certs("test", &d.join(format!("{name}.pem")))
            .unwrap()
            .remove(0)
    }

    /// Accepts one connection at a time and echoes; the listener's address.
    async fn echo_server(tls: Arc<TlsServer>) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = tls.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn client_to(addr: std::net::SocketAddr, d: &Path) -> client::TlsStream<TcpStream> {
        let c = TlsClient::new(TlsClientSettings {
            ca_file: Some(d.join("ca.pem")),
            cert_file: None,
            key_file: None,
            server_name: None,
            insecure_skip_verify: false,
        })
        .unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        c.connect("127.0.0.1", tcp).await.unwrap()
    }

    fn presented(s: &client::TlsStream<TcpStream>) -> CertificateDer<'static> {
        s.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned()
    }

    async fn echo(s: &mut client::TlsStream<TcpStream>) {
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }

    /// New certificate and key in the files: new connections get them, the established one
    /// keeps working; bad files are refused and the material in use stays.
    #[tokio::test]
    async fn the_listener_certificate_is_replaced_for_new_connections_only() {
        let d = files("listener");
        let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
        let server = Arc::new(TlsServer::new(&cert, &key, None).unwrap());
        let addr = echo_server(server.clone()).await;
        let mut old = client_to(addr, &d).await;
        assert_eq!(presented(&old), leaf(&d, "a"));

        // A key that does not match the certificate (half of a rotation): refused.
        std::fs::copy(d.join("b.key"), &key).unwrap();
        let e = server.reload().unwrap_err().to_string();
        assert!(
            e.contains("cert.pem") && e.to_lowercase().contains("key"),
            "{e}"
        );
        // An empty certificate file: refused.
        std::fs::write(&cert, "").unwrap();
        let e = server.reload().unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        // Garbage: refused.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        assert!(server.reload().is_err());
        assert_eq!(
            presented(&client_to(addr, &d).await),
            leaf(&d, "a"),
            "old kept"
        );

        std::fs::copy(d.join("b.pem"), &cert).unwrap();
        server.reload().unwrap();
        assert_eq!(presented(&client_to(addr, &d).await), leaf(&d, "b"));
        echo(&mut old).await;
        assert_eq!(presented(&old), leaf(&d, "a"));
    }

    /// The client side: a new CA bundle and client certificate take effect for new connections;
    /// a client key that does not match its certificate is refused.
    #[tokio::test]
    async fn the_upstream_client_certificate_and_ca_are_replaced() {
        let d = files("upstream");
        let client_ca_file = d.join("ca.pem");
        let server = Arc::new(
            TlsServer::new(&d.join("a.pem"), &d.join("a.key"), Some(&client_ca_file)).unwrap(),
        );
        let addr = echo_server(server).await;
        let bundle = d.join("bundle.pem");
        std::fs::copy(d.join("b.pem"), &bundle).unwrap(); // not the CA: no server verifies
        let c = TlsClient::new(TlsClientSettings {
            ca_file: Some(bundle.clone()),
            cert_file: Some(d.join("cert.pem")),
            key_file: Some(d.join("key.pem")),
            server_name: None,
            insecure_skip_verify: false,
        })
        .unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let e = c.connect("127.0.0.1", tcp).await.unwrap_err().to_string();
        assert!(
            e.contains("UnknownIssuer") || e.contains("unknown issuer"),
            "{e}"
        );

        std::fs::copy(&client_ca_file, &bundle).unwrap();
        std::fs::copy(d.join("b.key"), d.join("key.pem")).unwrap();
        let e = c.reload().unwrap_err().to_string();
        assert!(e.to_lowercase().contains("key"), "{e}");
        std::fs::copy(d.join("b.pem"), d.join("cert.pem")).unwrap();
        c.reload().unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut s = c.connect("127.0.0.1", tcp).await.unwrap();
        echo(&mut s).await;
    }
}
