//! Secure clusters: TLS to brokers and on fairlead's listeners, and SASL with credentials fairlead
//! holds (see `config` for the options): a password (PLAIN, SCRAM) or OAuth tokens it gets
//! itself (OAUTHBEARER, `oauth`). Certificates, keys and secrets read from files are reloaded
//! when the files change or on SIGHUP (`reload`).
//!
//! Two SASL modes, and whose authority each request carries (`router::identity`):
//! * sidecar (default): fairlead authenticates every broker connection it opens, including the
//!   one behind each client connection; clients connect to fairlead without SASL and every
//!   request runs as fairlead's principal. The pod is the trust boundary: fairlead listens on
//!   loopback by default and warns when a sidecar-mode listener is reachable from elsewhere
//!   without client certificates.
//! * passthrough: a client's own SaslHandshake/SaslAuthenticate go to the broker it chose, on
//!   its own connection, and its requests only ever travel on connections authenticated as that
//!   client ([`principal`]): its own, or ones fairlead opens with what it presented (PLAIN
//!   credentials, a bearer token until it expires). fairlead's own credentials serve only its
//!   own requests (Metadata, FindCoordinator, the produce log check). When a client's
//!   authenticated broker connection is lost, fairlead closes the client connection (a new one
//!   would not be authenticated as the client).

pub mod http;
pub mod oauth;
pub mod principal;
pub mod reload;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use oauth::{OAuthError, OAuthSettings, TokenSource};
use sasl::{Credentials, Mechanism, Secret};
use tls::TlsClient;

/// How fairlead authenticates, as configured.
#[derive(Debug, Clone)]
pub enum SaslLogin {
    /// PLAIN or SCRAM; the password is read again from `password_file` when it changes.
    Password {
        credentials: Credentials,
        password_file: Option<PathBuf>,
    },
    OAuthBearer(OAuthSettings),
}

/// How fairlead authenticates, running: what each new broker connection authenticates with.
pub enum Login {
    Password {
        mechanism: Mechanism,
        username: String,
        password: RwLock<Secret>,
        password_file: Option<PathBuf>,
    },
    OAuthBearer(Arc<TokenSource>),
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Login::Password {
                mechanism,
                username,
                ..
            } => write!(f, "Login({} as {username:?})", mechanism.name()),
            Login::OAuthBearer(t) => write!(f, "Login(OAUTHBEARER, {t:?})"),
        }
    }
}

impl Login {
    pub fn new(cfg: &SaslLogin) -> Result<Login, OAuthError> {
        Ok(match cfg {
            SaslLogin::Password {
                credentials,
                password_file,
            } => Login::Password {
                mechanism: credentials.mechanism,
                username: credentials.username.clone(),
                password: RwLock::new(credentials.password.clone()),
                password_file: password_file.clone(),
            },
            SaslLogin::OAuthBearer(s) => Login::OAuthBearer(Arc::new(TokenSource::new(s.clone())?)),
        })
    }

    /// The credentials for one new connection (for OAUTHBEARER, a fresh enough token, fetched
    /// if need be).
    pub async fn credentials(&self) -> Result<Credentials, OAuthError> {
        match self {
            Login::Password {
                mechanism,
                username,
                password,
                ..
            } => Ok(Credentials {
                mechanism: *mechanism,
                username: username.clone(),
                password: password.read().unwrap().clone(),
            }),
            Login::OAuthBearer(src) => {
                let t = src.token().await?;
                Ok(Credentials {
                    mechanism: Mechanism::OAuthBearer,
                    username: t.subject.unwrap_or_else(|| src.client_id().to_string()),
                    password: t.value,
                })
            }
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        match self {
            Login::Password { mechanism, .. } => *mechanism,
            Login::OAuthBearer(_) => Mechanism::OAuthBearer,
        }
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
    Default,
)]
#[serde(rename_all = "lowercase")]
pub enum SaslMode {
    #[default]
    Sidecar,
    Passthrough,
}

/// How fairlead's broker connections are secured.
#[derive(Default, Debug)]
pub struct UpstreamSecurity {
    pub tls: Option<TlsClient>,
    pub sasl: Option<Login>,
    pub sasl_mode: SaslMode,
    /// Re-reads changed files at once when a broker refuses fairlead's password (set once the
    /// reloader exists; weak: the reloader holds this).
    pub reloader: std::sync::OnceLock<std::sync::Weak<reload::Reloader>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

impl UpstreamSecurity {
    /// A broker refused fairlead's credentials: read the password file again (or forget the
    /// token). True if trying again with what that gives may succeed.
    pub fn after_refusal(&self) -> bool {
        match &self.sasl {
            Some(Login::Password {
                password_file: Some(_),
                ..
            }) => {
                if let Some(r) = self.reloader.get().and_then(std::sync::Weak::upgrade) {
                    r.check();
                }
                true
            }
            Some(Login::OAuthBearer(tokens)) => {
                tokens.forget();
                true
            }
            _ => false,
        }
    }

    /// Whether a connection in this role authenticates with fairlead's credentials.
    pub fn authenticates(&self, for_client: bool) -> Option<&Login> {
        match (&self.sasl, for_client, self.sasl_mode) {
            (Some(c), false, _) => Some(c),
            (Some(c), true, SaslMode::Sidecar) => Some(c),
            _ => None,
        }
    }
}
