//! fairlead's own Metadata requests: single-flight and generation-guarded, naming only the
//! topics fairlead's clients use (see `super::scope`).
//!
//! A leader change typically makes many requests fail at once (every in-flight produce for
//! every moved partition, on every client connection). Each failure calls
//! [`Refresher::refresh`] with the generation it routed by; the first one refreshes, the rest
//! wait for it and then find the generation already moved on, so a storm of errors costs one
//! Metadata round trip.

use std::sync::atomic::{AtomicI16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, warn};

use super::{LeaderChange, Leadership};
use crate::metrics;
use crate::upstream::pool::Pool;
use crate::upstream::RequestError;

/// Metadata v12: leader epochs (v7+) and topic ids (v10+), without the authorized-operations
/// fields removed in v11+. Lowered if a broker does not speak it.
const PREFERRED_METADATA_VERSION: i16 = 12;

/// Why a refresh is asked for (also its metric label).
pub use crate::metrics::RefreshTrigger as Trigger;

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("no broker answered a Metadata request (tried {tried}); last error: {last}")]
    NoBroker {
        tried: usize,
        last: String,
        refused: bool,
    },
}

/// Outcome of a refresh that ran.
#[derive(Debug, Default)]
pub struct Refreshed {
    pub new_brokers: Vec<i32>,
    pub changes: Vec<LeaderChange>,
}

pub struct Refresher {
    leadership: Arc<Leadership>,
    pool: Arc<Pool>,
    bootstrap: Vec<String>,
    timeout: Duration,
    metadata_version: Arc<AtomicI16>,
    /// Held while a refresh runs; waiters queue on it.
    flight: tokio::sync::Mutex<()>,
}

impl Refresher {
    pub fn new(
        leadership: Arc<Leadership>,
        pool: Arc<Pool>,
        bootstrap: Vec<String>,
        timeout: Duration,
    ) -> Self {
        Refresher {
            leadership,
            pool,
            bootstrap,
            timeout,
            metadata_version: Arc::new(AtomicI16::new(-1)),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    /// Refreshes unless a refresh completed after `seen_generation` was read (then the cache is
    /// already newer than what the caller acted on). Returns `None` when it did not run.
    pub async fn refresh(
        &self,
        seen_generation: u64,
        trigger: Trigger,
    ) -> Result<Option<Refreshed>, RefreshError> {
        let _flight = self.flight.lock().await;
        if self.leadership.generation() > seen_generation {
            return Ok(None);
        }
        metrics::metadata_refresh(trigger);
        let resp = self.fetch().await?;
        // Every topic of the answer was asked for (see `fetch_from`).
        let (new_brokers, changes) = self.leadership.apply_metadata(&resp, &|_| true);
        self.leadership.bump_generation();
        debug!(
            trigger = trigger.label(),
            brokers = resp.brokers.len(),
            topics = resp.topics.len(),
            changes = changes.len(),
            "metadata refreshed"
        );
        Ok(Some(Refreshed {
            new_brokers,
            changes,
        }))
    }

    /// Asks brokers for metadata, hedged: if the first does not answer within
    /// [`HEDGE_AFTER`], the next is asked too, and so on; the first answer wins. A broker in
    /// the middle of shutting down can accept a request and never answer it, and every
    /// request waiting on this refresh would wait with it.
    async fn fetch(&self) -> Result<MetadataResponse, RefreshError> {
        let targets = self
            .leadership
            .ask_order(&self.bootstrap, self.leadership.generation());
        // The topics in use only: what fairlead asks must not grow with the cluster.
        let topics: Arc<[String]> = self.leadership.scope_names().into();
        let tried = targets.len();
        let mut pending = targets.into_iter();
        let mut running = tokio::task::JoinSet::new();
        let mut last = String::from("no broker known");
        let mut refused = false;
        loop {
            if let Some((node, addr)) = pending.next() {
                let (pool, timeout, version, topics) = (
                    self.pool.clone(),
                    self.timeout,
                    self.metadata_version.clone(),
                    topics.clone(),
                );
                running.spawn(async move {
                    let r = fetch_from(&pool, node, &addr, timeout, &version, &topics).await;
                    (node, addr, r)
                });
            } else if running.is_empty() {
                return Err(RefreshError::NoBroker {
                    tried,
                    last,
                    refused,
                });
            }
            // Wait for an answer, or for the hedge delay to start the next broker.
            tokio::select! {
                done = running.join_next(), if !running.is_empty() => match done {
                    Some(Ok((_, _, Ok(resp)))) => return Ok(resp),
                    Some(Ok((node, addr, Err(e)))) => {
                        warn!(node, addr = addr.as_str(), error = %e, "metadata request failed");
                        refused |= matches!(e, RequestError::Upstream(crate::upstream::UpstreamError::Refused { .. }));
                        last = e.to_string();
                    }
                    Some(Err(e)) => last = e.to_string(),
                    None => {}
                },
                _ = tokio::time::sleep(HEDGE_AFTER) => {}
            }
        }
    }
}

/// How long to wait for one broker's Metadata answer before also asking the next.
const HEDGE_AFTER: Duration = Duration::from_millis(300);

async fn fetch_from(
    pool: &Pool,
    node: i32,
    addr: &str,
    timeout: Duration,
    version_cache: &AtomicI16,
    topics: &[String],
) -> Result<MetadataResponse, RequestError> {
    let up = pool.get(node, addr, None).await?;
    let mut version = version_cache.load(Ordering::Relaxed);
    if version < 0 {
        version = negotiate(&up, ApiKey::Metadata, PREFERRED_METADATA_VERSION, timeout).await?;
        version_cache.store(version, Ordering::Relaxed);
    }
    let named = topics
        .iter()
        .map(|t| {
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
        })
        .collect();
    // An empty list asks for brokers only, from v1 on (v0 read it as "every topic").
    let topics = (version >= 1).then_some(named);
    let req = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(false);
    up.request(ApiKey::Metadata, version, &req, timeout).await
}

/// The version of `api` to use with this broker: the highest it speaks, at most `preferred`.
pub(super) async fn negotiate(
    up: &crate::upstream::Upstream,
    api: ApiKey,
    preferred: i16,
    timeout: Duration,
) -> Result<i16, RequestError> {
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("fairlead"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    let resp: ApiVersionsResponse = up.request(ApiKey::ApiVersions, 3, &req, timeout).await?;
    let max = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == api as i16)
        .map(|k| k.max_version)
        .unwrap_or(preferred);
    Ok(max.min(preferred))
}
