//! Secure clusters: TLS to brokers and on fairlead's listeners, and SASL with credentials fairlead
//! holds (see `config` for the options).
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

pub mod principal;
pub mod sasl;
pub mod scram;
pub mod tls;

use sasl::Credentials;
use tls::TlsClient;

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
    pub sasl: Option<Credentials>,
    pub sasl_mode: SaslMode,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

impl UpstreamSecurity {
    /// Whether a connection in this role authenticates with fairlead's credentials.
    pub fn authenticates(&self, for_client: bool) -> Option<&Credentials> {
        match (&self.sasl, for_client, self.sasl_mode) {
            (Some(c), false, _) => Some(c),
            (Some(c), true, SaslMode::Sidecar) => Some(c),
            _ => None,
        }
    }
}
