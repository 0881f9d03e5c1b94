//! SASL authentication of fairlead's own broker connections (KIP-43 handshake, KIP-152
//! SaslAuthenticate framing): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER (KIP-255).
//!
//! Runs on a freshly connected (and, with TLS, encrypted) stream before it becomes an
//! upstream. The password is held in a [`Secret`], which never prints; errors name the user and
//! the mechanism, never the password.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::oauth;
use super::scram::{self, Scram};
use crate::codec::message::{decode_response, encode_own_request};

/// A secret string: never shown by Debug or Display.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    OAuthBearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    pub fn parse(s: &str) -> Option<Mechanism> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(Mechanism::ScramSha512),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            _ => None,
        }
    }
}

/// What one SASL exchange authenticates with. For OAUTHBEARER, `password` is the token and
/// `username` the token's subject (or the OAuth client id), named in error messages.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    #[error("the broker does not enable SASL mechanism {mechanism} (it offers: {offered})")]
    Unsupported {
        mechanism: &'static str,
        offered: String,
    },
    #[error("SASL authentication failed for user {user:?} with {mechanism}: {message}")]
    Failed {
        user: String,
        mechanism: &'static str,
        message: String,
    },
    #[error("SASL exchange failed: {0}")]
    Protocol(String),
    #[error("SASL exchange timed out after {0:?}")]
    Timeout(Duration),
}

/// Authenticates a new connection. Returns the session lifetime the broker set (KIP-368), if
/// any: the connection must be replaced before it ends.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    creds: &Credentials,
    timeout: Duration,
) -> Result<Option<Duration>, SaslError> {
    match tokio::time::timeout(timeout, run(s, creds)).await {
        Ok(r) => r,
        Err(_) => Err(SaslError::Timeout(timeout)),
    }
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    creds: &Credentials,
) -> Result<Option<Duration>, SaslError> {
    let mech = creds.mechanism.name();
    let hs: SaslHandshakeResponse = exchange(
        s,
        ApiKey::SaslHandshake,
        1,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mech)),
    )
    .await?;
    if hs.error_code != 0 {
        let offered = hs
            .mechanisms
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(SaslError::Unsupported {
            mechanism: mech,
            offered,
        });
    }
    let failed = |r: &SaslAuthenticateResponse| SaslError::Failed {
        user: creds.username.clone(),
        mechanism: mech,
        message: r
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| format!("error code {}", r.error_code)),
    };
    let lifetime = match creds.mechanism {
        Mechanism::Plain => {
            let mut token =
                Vec::with_capacity(creds.username.len() + creds.password.expose().len() + 2);
            token.push(0);
            token.extend_from_slice(creds.username.as_bytes());
            token.push(0);
            token.extend_from_slice(creds.password.expose().as_bytes());
            let r = auth_round(s, 2, token).await?;
            if r.error_code != 0 {
                return Err(failed(&r));
            }
            r.session_lifetime_ms
        }
        Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
            let hash = if creds.mechanism == Mechanism::ScramSha256 {
                scram::Hash::Sha256
            } else {
                scram::Hash::Sha512
            };
            let mut scram = Scram::new(hash, &creds.username, creds.password.expose());
            let first = auth_round(s, 2, scram.client_first()).await?;
            if first.error_code != 0 {
                return Err(failed(&first));
            }
            let fin = scram
                .client_final(&first.auth_bytes)
                .map_err(|e| SaslError::Failed {
                    user: creds.username.clone(),
                    mechanism: mech,
                    message: e.to_string(),
                })?;
            let last = auth_round(s, 3, fin).await?;
            if last.error_code != 0 {
                return Err(failed(&last));
            }
            scram
                .verify_server_final(&last.auth_bytes)
                .map_err(|e| SaslError::Failed {
                    user: creds.username.clone(),
                    mechanism: mech,
                    message: e.to_string(),
                })?;
            last.session_lifetime_ms
        }
        Mechanism::OAuthBearer => {
            let r = auth_round(s, 2, oauth::initial_response(creds.password.expose())).await?;
            if r.error_code != 0 {
                return Err(failed(&r));
            }
            if !r.auth_bytes.is_empty() {
                // RFC 7628 3.2.2: a refusal comes as a JSON error challenge; the client answers
                // ^A and the broker then fails the exchange (what OAuthBearerSaslClient does).
                let status = String::from_utf8_lossy(&r.auth_bytes).to_string();
                let last = auth_round(s, 3, vec![0x01]).await?;
                let message = last
                    .error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| format!("error code {}", last.error_code));
                return Err(SaslError::Failed {
                    user: creds.username.clone(),
                    mechanism: mech,
                    message: format!("{message} ({status})"),
                });
            }
            r.session_lifetime_ms
        }
    };
    Ok((lifetime > 0).then(|| Duration::from_millis(lifetime as u64)))
}

async fn auth_round<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    corr: i32,
    token: Vec<u8>,
) -> Result<SaslAuthenticateResponse, SaslError> {
    exchange(
        s,
        ApiKey::SaslAuthenticate,
        2,
        corr,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
    )
    .await
}

async fn exchange<S, Req, Resp>(
    s: &mut S,
    api: ApiKey,
    version: i16,
    corr: i32,
    req: &Req,
) -> Result<Resp, SaslError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Req: Encodable,
    Resp: Decodable,
{
    let io = |e: std::io::Error| SaslError::Protocol(e.to_string());
    let frame = encode_own_request(req, api, version, corr)
        .map_err(|e| SaslError::Protocol(e.to_string()))?;
    s.write_all(&frame).await.map_err(io)?;
    s.flush().await.map_err(io)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.map_err(|e| {
        SaslError::Protocol(format!(
            "the broker closed the connection during SASL ({e}); is this a SASL listener?"
        ))
    })?;
    let len = i32::from_be_bytes(len);
    if !(4..=1024 * 1024).contains(&len) {
        return Err(SaslError::Protocol(format!(
            "implausible response length {len} (is this listener TLS, or not SASL?)"
        )));
    }
    let mut buf = BytesMut::zeroed(4 + len as usize);
    buf[..4].copy_from_slice(&len.to_be_bytes());
    s.read_exact(&mut buf[4..]).await.map_err(io)?;
    decode_response(&buf.freeze(), api, version).map_err(|e| SaslError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let c = Credentials {
            mechanism: Mechanism::Plain,
            username: "alice".into(),
            password: Secret::new("hunter2".into()),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("alice"),
            "{shown}"
        );
    }

    #[test]
    fn mechanisms_parse_case_insensitively() {
        assert_eq!(
            Mechanism::parse("scram-sha-512"),
            Some(Mechanism::ScramSha512)
        );
        assert_eq!(Mechanism::parse("GSSAPI"), None);
    }
}
