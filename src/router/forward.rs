//! Requests forwarded on the client's own broker connection (everything fairlead does not route,
//! and routed APIs it cannot route: undecodable, a broker's follower fetch, an incremental
//! fetch session), and their answers.
//!
//! An answer is rewritten if it names brokers (`rewrite`), a FindCoordinator answered "no
//! coordinator yet" is asked again (`retry::ask_again`), a request whose connection was lost is
//! sent again on the re-established one if that is harmless (`retry::resend_forwarded`), and
//! whatever answer reaches the client is counted like a routed one (`inspect`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tracing::{debug, warn};

use super::inspect::{self, Tally};
use super::retry::{resend_forwarded, Budget};
use super::session::Session;
use super::{coordinator, Unanswerable};
use crate::cluster::Cluster;
use crate::codec::frame::OutFrame;
use crate::codec::header::RequestHeader;
use crate::metrics::{self, NotAbsorbed};
use crate::protocol;
use crate::rewrite;
use crate::upstream::ReplyRx;

/// A forwarded request, from its send on the home connection to the answer the client gets.
pub struct Forward {
    pub cluster: Arc<Cluster>,
    pub session: Arc<Session>,
    pub hdr: RequestHeader,
    pub frame: Bytes,
    /// Why it was not routed although fairlead routes its API, if that is the reason: only the
    /// client's own connection may carry its requests (`identity`).
    pub not_absorbed: Option<NotAbsorbed>,
}

impl Forward {
    /// The home broker's answer (`reply`), rewritten, asked again or sent again as needed, and
    /// counted.
    pub async fn complete(self, mut reply: ReplyRx) -> Result<OutFrame, Unanswerable> {
        let mut attempts = 0;
        let mut asking_again = None;
        loop {
            let lost = match reply.await {
                Ok(Ok(resp)) => {
                    // A spliced answer (Metadata's) is done: asking again, following SASL and
                    // counting codes concern other APIs, whose answers come whole.
                    let out = match self.rewritten(resp.freeze())?.into_whole() {
                        Ok(whole) => whole,
                        Err(spliced) => return Ok(spliced),
                    };
                    match self.ask_again(out, &mut asking_again).await? {
                        Asked::Done(out) => {
                            self.session.relay_answer(&self.hdr, &out);
                            return inspect::forwarded(
                                &self.cluster,
                                &self.hdr,
                                out,
                                self.not_absorbed,
                            )
                            .map(OutFrame::from);
                        }
                        Asked::Sent(rx) => {
                            reply = rx;
                            continue;
                        }
                        Asked::NotSent => "not sent".to_string(),
                    }
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "response dropped".to_string(),
            };
            reply = self.resend_after_loss(&mut attempts, &lost).await?;
        }
    }

    /// A FindCoordinator answered "no coordinator yet" is asked again for a while (see
    /// `retry::ask_again`); any other answer is done. `asking`: when asking again started (its
    /// budget), and the code first met.
    async fn ask_again(
        &self,
        out: Bytes,
        asking: &mut Option<Asking>,
    ) -> Result<Asked, Unanswerable> {
        let hdr = &self.hdr;
        let code = coordinator::not_found_yet(hdr, &out);
        if code.is_none() && asking.is_none() {
            // Every forwarded answer passes here: no clock read, no budget, for the usual case.
            return Ok(Asked::Done(out));
        }
        let Asking {
            budget,
            first,
            tally,
        } = asking.get_or_insert_with(|| self.asking(code.unwrap_or(0)));
        if code.is_none() || budget.expired() {
            // Asking again began with `first`: the answer now has a coordinator, or time is up.
            // The codes the client gets are counted with every forwarded answer (`inspect`).
            if code.is_none() {
                tally.resent(true);
                tally.answer(Some(*first), true, &[]);
                tally.done();
            } else {
                tally.replay(metrics::Replay::GaveUp);
            }
            return Ok(Asked::Done(out));
        }
        debug!(api = hdr.api_key, "no coordinator yet: asking again");
        budget.back_off().await;
        let up = self
            .session
            .home
            .get()
            .await
            .map_err(|e| Unanswerable(e.to_string()))?;
        Ok(match up.send(self.frame.clone(), true) {
            Ok(Some(rx)) => Asked::Sent(rx),
            _ => Asked::NotSent,
        })
    }

    /// Asking again begins, after `first`.
    fn asking(&self, first: i16) -> Asking {
        let c = &self.cluster.cfg;
        let budget = Budget::new(
            Instant::now(),
            Duration::ZERO,
            c.coordinator_absorb_timeout,
            None,
            c.retry_backoff,
        );
        let mut tally = Tally::new(self.hdr.api_key);
        tally.absorbing();
        Asking {
            budget,
            first,
            tally,
        }
    }

    /// The broker connection went away with this request in flight (`lost`: how): repeats it on a
    /// new one if that is harmless, else closes the client connection as the broker would have.
    async fn resend_after_loss(
        &self,
        attempts: &mut u32,
        lost: &str,
    ) -> Result<ReplyRx, Unanswerable> {
        let (hdr, home) = (&self.hdr, &self.session.home);
        loop {
            *attempts += 1;
            if !resend_forwarded(hdr.known, home.pinned(), *attempts) {
                metrics::connection_closed(metrics::Closed::BrokerLostMidRequest);
                return Err(Unanswerable(format!("broker connection lost with a {} request in flight that is not safe to repeat: {lost}", protocol::api_name(hdr.api_key))));
            }
            let up = home.get().await.map_err(|e| Unanswerable(e.to_string()))?;
            debug!(
                api = hdr.api_key,
                node = up.node(),
                "re-sending a request after losing the broker connection"
            );
            if let Ok(Some(rx)) = up.send(self.frame.clone(), true) {
                return Ok(rx);
            }
        }
    }

    /// The answer with its broker addresses rewritten (`rewrite`). One fairlead cannot decode
    /// passes only if it names no broker (ApiVersions): an address that is not rewritten must
    /// not leak.
    fn rewritten(&self, resp: Bytes) -> Result<OutFrame, Unanswerable> {
        let hdr = &self.hdr;
        rewrite::response(&self.cluster, hdr, &self.frame, resp.clone()).or_else(|e| {
            warn!(api = hdr.api_key, version = hdr.api_version, error = %e, "response not decodable");
            if hdr.known == Some(ApiKey::ApiVersions) {
                metrics::passed_blind(hdr.api_key);
                Ok(resp.into())
            } else {
                metrics::connection_closed(metrics::Closed::UnrewritableAnswer);
                Err(Unanswerable(format!(
                    "cannot rewrite a {} v{} response: {e}",
                    protocol::api_name(hdr.api_key),
                    hdr.api_version
                )))
            }
        })
    }
}

/// A FindCoordinator being asked again: its budget, the code it met first, its count.
struct Asking {
    budget: Budget,
    first: i16,
    tally: Tally,
}

/// What became of a forwarded answer (`ask_again`).
enum Asked {
    /// The answer for the client.
    Done(Bytes),
    /// Asked again: the new answer comes on this.
    Sent(ReplyRx),
    /// Asking again found no connection to send on.
    NotSent,
}
