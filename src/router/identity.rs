//! Whose authority a client connection's requests carry upstream, and so which broker
//! connections may carry them: one model for authority (issue 23) and for the sharing of
//! connections and lanes (issue 20).
//!
//! A broker authorizes a request by the principal its connection authenticated as. So:
//!
//! * Sidecar mode (fairlead holds the credentials), or no SASL: every client acts as fairlead's
//!   own identity ([`Identity::Fairlead`]); any of fairlead's client-side connections may carry
//!   any client's request, and that is the point of a sidecar: the pod is the trust boundary.
//! * SASL passthrough: a client is [`Identity::Anonymous`] until the broker accepted its own
//!   SASL exchange, and nothing of it is routed anywhere but its own broker connection (where
//!   the broker refuses it). Once authenticated it is [`Identity::Client`]: its requests only
//!   travel on its own connection, on connections fairlead opened with what the client
//!   presented (its PLAIN credentials), or on the connections clients of the same principal
//!   authenticated themselves to the broker in question (lent: `upstream::pool::Lenders`; all a
//!   SCRAM or OAUTHBEARER client leaves fairlead). Where none exists, its request stays on its
//!   own connection and the broker's answer reaches it unabsorbed, counted
//!   (`fairlead_errors_not_absorbed_total`). fairlead's own principal is used only for
//!   fairlead's own requests (Metadata, FindCoordinator, the produce log check), never for a
//!   client's.
//!
//! Connections that carry rerouted requests are shared along the same lines
//! (`upstream::reroutes`): in sidecar mode by every client; in passthrough only by clients of
//! one principal that presented the same credentials, or lent among one principal's clients.

use std::sync::Arc;

use crate::metrics;
use crate::security::principal::Principal;

#[derive(Debug, Clone)]
pub enum Identity {
    /// fairlead's own: sidecar mode, or brokers without SASL.
    Fairlead,
    /// SASL passthrough, not (yet) authenticated by the broker.
    Anonymous,
    /// SASL passthrough, authenticated by the broker as this principal.
    Client(Arc<Principal>),
}

impl Identity {
    /// Why fairlead may not route this client's requests to other brokers at all, if it may
    /// not.
    pub fn unroutable(&self) -> Option<metrics::NotAbsorbed> {
        match self {
            Identity::Anonymous => Some(metrics::NotAbsorbed::NotAuthenticated),
            Identity::Fairlead | Identity::Client(_) => None,
        }
    }
}
