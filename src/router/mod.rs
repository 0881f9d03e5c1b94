//! Deciding what happens to each client request.
//!
//! * Partition-routed APIs (Produce, Fetch, ListOffsets, OffsetsForLeaderEpoch, DeleteRecords)
//!   go through [`partitioned`]: split by leader, send, absorb leadership errors, merge.
//! * Group and transaction coordinator APIs go through [`coordinator`]: sent to the key's
//!   coordinator, replayed there when it moved.
//! * Everything else, including API keys fairlead does not know, is forwarded byte-for-byte on
//!   the client's own upstream connection; the response is forwarded too, with broker
//!   addresses rewritten where the API carries any (see `rewrite`).

pub mod attempt;
pub mod coordinator;
pub mod delete_records;
pub mod fetch;
mod forward;
mod identity;
mod inspect;
pub mod lanes;
pub mod list_offsets;
pub mod offsets_for_leader_epoch;
pub mod partitioned;
pub mod produce;
pub mod retry;
pub mod session;
mod shape;
pub mod written;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::sync::Notify;

use crate::cluster::Cluster;
use crate::codec::frame::OutFrame;
use crate::codec::header::RequestHeader;
use crate::metrics;
use crate::metrics::NotAbsorbed;
use crate::protocol::COORDINATOR_APIS;
use crate::upstream::pool::{self, Lenders, Pool};
use crate::upstream::reroutes::Reroutes;
use crate::upstream::{ReplyRx, Upstream, UpstreamError};
use attempt::Conns;
use forward::Forward;
use lanes::Lanes;
use partitioned::{Dispatched, Job, RoutedApi};
use session::Session;

/// The router's state, shared by every client connection.
pub struct Router {
    pub cluster: Arc<Cluster>,
    /// Per-producer partition order for produce (see `lanes`).
    pub lanes: Arc<Lanes>,
    /// Wakes every request waiting for a broker's answer every [`TICK`], to check whether it
    /// should be given up on (see `partitioned`).
    pub ticks: Arc<Notify>,
    /// SASL passthrough: clients' own authenticated connections (see `identity`).
    pub lenders: Arc<Lenders>,
    /// The connections rerouted and replayed requests go on, shared per identity (see
    /// `upstream::reroutes`).
    pub reroutes: Arc<Reroutes>,
}

/// How often waiting requests are looked at.
pub const TICK: Duration = Duration::from_millis(500);

impl Router {
    pub fn new(cluster: Arc<Cluster>) -> Arc<Router> {
        let ticks = Arc::new(Notify::new());
        start_ticker(&ticks);
        let limits = cluster.cfg.reroute_connections;
        let reroutes = Arc::new(Reroutes::new(
            cluster.upstream_cfg.clone(),
            pool::Limits {
                per_broker: limits.per_broker,
                idle_close: Some(limits.idle_close),
            },
        ));
        Reroutes::start_closing_idle(&reroutes);
        Arc::new(Router {
            cluster,
            lanes: Arc::default(),
            ticks,
            lenders: Arc::default(),
            reroutes,
        })
    }
}

/// One timer for every waiting request rather than one per request: a request's own 500 ms timer
/// is nearly always the runtime's earliest, and registering an earlier timer than the one the
/// runtime sleeps for wakes the runtime through its eventfd (a write and a spurious
/// `epoll_wait` return, per request). Stops when the router is dropped. A router built outside
/// a runtime (the codec benchmarks) has no ticks: its requests wait for an answer or their
/// deadline.
fn start_ticker(ticks: &Arc<Notify>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let ticks = Arc::downgrade(ticks);
    rt.spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match ticks.upgrade() {
                Some(t) => t.notify_waiters(),
                None => return,
            }
        }
    });
}

pub type JobFuture = Pin<Box<dyn Future<Output = Result<Bytes, Unanswerable>> + Send>>;

/// Why a routed request gets no answer (counted where it happened): the client connection is
/// closed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unanswerable(pub String);

/// What the connection's writer waits for, for one request, in request order: the answer the
/// client gets.
pub struct Answer {
    job: Pending,
    pub api_key: i16,
    /// When the request arrived.
    pub started: Instant,
}

/// How the answer completes. A forwarded one (most requests) is awaited in place, in the
/// writer's own future: boxing it would cost an allocation per request (tests/unit/alloc.rs).
enum Pending {
    Forwarded(Forward, ReplyRx),
    Routed(JobFuture),
}

impl Answer {
    /// The answer (forwarded, or routed and merged), inspected and counted.
    pub async fn frame(self) -> Result<OutFrame, Unanswerable> {
        match self.job {
            Pending::Forwarded(forward, rx) => forward.complete(rx).await,
            Pending::Routed(job) => job.await.map(OutFrame::from),
        }
    }
}

/// Who sent a request.
#[derive(Clone, Copy)]
pub struct Client<'a> {
    /// "<client ip>/<client id>" (and its principal in passthrough): a producer, for its
    /// partitions' order (see `lanes`).
    pub name: &'a Arc<str>,
    /// The client connection, for the order of its coordinator requests.
    pub connection: u64,
}

/// Routes one request of a client connection. Returns `None` when no response will come
/// (acks=0 produce); `Err` when its broker is unreachable (the client connection is closed).
/// If the home connection is found gone before anything was sent, it is re-established once
/// and the request routed again.
pub async fn route(
    router: &Arc<Router>,
    session: &Arc<Session>,
    frame: Bytes,
    hdr: RequestHeader,
) -> Result<Option<Answer>, UpstreamError> {
    session.home.pin_if_authenticating(&hdr);
    session.relay_request(&hdr, &frame);
    let name = session.name(&frame, &hdr);
    let client = Client {
        name: &name,
        connection: session.connection,
    };
    let reroutes = session.reroutes();
    let up = session.home.get().await?;
    match route_on(router, session, &up, &reroutes, client, frame.clone(), hdr).await {
        Err(UpstreamError::Closed { .. }) => {
            let up = session.home.get().await?;
            route_on(router, session, &up, &reroutes, client, frame, hdr).await
        }
        other => other,
    }
}

/// Routes one request with `home` as the client's broker connection, and `reroutes` as the
/// connections to other brokers that may carry its requests (`Err`: none may, so it is
/// forwarded on `home`, whatever it is; see `identity`).
async fn route_on(
    router: &Arc<Router>,
    session: &Arc<Session>,
    home: &Arc<Upstream>,
    reroutes: &Result<Arc<Pool>, NotAbsorbed>,
    client: Client<'_>,
    frame: Bytes,
    hdr: RequestHeader,
) -> Result<Option<Answer>, UpstreamError> {
    let started = Instant::now();
    let api_key = hdr.api_key;
    let routed = match reroutes {
        Ok(pool) => {
            let conns = Conns {
                cluster: &router.cluster,
                ticks: &router.ticks,
                home,
                reroutes: pool,
            };
            routed(router, conns, client, &frame, &hdr).await?
        }
        Err(_) => Outcome::Forward,
    };
    let job = match routed {
        Outcome::Job(job) => Pending::Routed(job),
        Outcome::NoResponse => return Ok(None),
        Outcome::Forward => {
            let expect = expects_response(&frame, &hdr);
            let Some(rx) = home.send(frame.clone(), expect)? else {
                return Ok(None);
            };
            let forward = Forward {
                cluster: router.cluster.clone(),
                session: session.clone(),
                hdr,
                frame,
                not_absorbed: reroutes.as_ref().err().copied(),
            };
            Pending::Forwarded(forward, rx)
        }
    };
    Ok(Some(Answer {
        job,
        api_key,
        started,
    }))
}

/// Routes and sends a request of an API fairlead routes (`Outcome::Forward` for the others).
async fn routed(
    router: &Arc<Router>,
    conns: Conns<'_>,
    client: Client<'_>,
    frame: &Bytes,
    hdr: &RequestHeader,
) -> Result<Outcome, UpstreamError> {
    Ok(match hdr.known {
        Some(ApiKey::Produce) => {
            dispatch::<produce::Produce>(conns, Some((&router.lanes, client.name)), frame, hdr)
                .await?
        }
        Some(ApiKey::Fetch) => dispatch::<fetch::Fetch>(conns, None, frame, hdr).await?,
        Some(ApiKey::ListOffsets) => {
            dispatch::<list_offsets::ListOffsets>(conns, None, frame, hdr).await?
        }
        Some(ApiKey::OffsetForLeaderEpoch) => {
            dispatch::<offsets_for_leader_epoch::OffsetsForLeaderEpoch>(conns, None, frame, hdr)
                .await?
        }
        Some(ApiKey::DeleteRecords) => {
            dispatch::<delete_records::DeleteRecords>(conns, None, frame, hdr).await?
        }
        Some(api) if COORDINATOR_APIS.contains(&api) => {
            let dispatched = coordinator::Job::dispatch(
                conns,
                &router.lanes,
                client.connection,
                frame.clone(),
                hdr,
            );
            match dispatched {
                Some(dispatched) => Outcome::Job(Box::pin(async move {
                    let job = match dispatched {
                        coordinator::Dispatched::Job(job) => job,
                        coordinator::Dispatched::Deferred(task) => task.await.map_err(|e| {
                            Unanswerable(format!(
                                "a deferred coordinator request's task failed: {e}"
                            ))
                        })?,
                    };
                    job.complete()
                        .await
                        .map_err(|e| Unanswerable(e.to_string()))
                })),
                None => Outcome::Forward,
            }
        }
        _ => Outcome::Forward,
    })
}

enum Outcome {
    Job(JobFuture),
    NoResponse,
    Forward,
}

async fn dispatch<A: RoutedApi>(
    conns: Conns<'_>,
    lanes: Option<(&Arc<lanes::Lanes>, &Arc<str>)>,
    frame: &Bytes,
    hdr: &RequestHeader,
) -> Result<Outcome, UpstreamError> {
    Ok(
        match Job::<A>::dispatch(conns, lanes, frame.clone(), hdr).await? {
            Dispatched::Job(job) => Outcome::Job(Box::pin(async move {
                job.complete().await.map_err(|e| {
                    metrics::connection_closed(metrics::Closed::MergeFailed);
                    Unanswerable(e.to_string())
                })
            })),
            Dispatched::Deferred(task) => Outcome::Job(Box::pin(async move {
                let job = task.await.map_err(|e| {
                    metrics::connection_closed(metrics::Closed::MergeFailed);
                    Unanswerable(format!("a deferred request's task failed: {e}"))
                })?;
                job.complete().await.map_err(|e| {
                    metrics::connection_closed(metrics::Closed::MergeFailed);
                    Unanswerable(e.to_string())
                })
            })),
            Dispatched::NoResponse => Outcome::NoResponse,
            Dispatched::Forward => Outcome::Forward,
        },
    )
}

/// Whether a forwarded request gets a response: every request does, except a Produce with
/// acks=0. Read from the frame for produce versions fairlead does not decode.
pub fn expects_response(frame: &[u8], hdr: &RequestHeader) -> bool {
    if hdr.known != Some(ApiKey::Produce) {
        return true;
    }
    produce_acks(frame, hdr).is_none_or(|acks| acks != 0)
}

/// acks of a Produce request: the first field before v3, after transactional_id from v3 (a
/// nullable string, compact from v9).
fn produce_acks(frame: &[u8], hdr: &RequestHeader) -> Option<i16> {
    let mut off = hdr.body_offset?;
    if hdr.api_version >= 3 {
        if hdr.api_version >= 9 {
            // compact nullable string: unsigned varint length + 1 (0 = null)
            let mut len: u64 = 0;
            for shift in (0..35).step_by(7) {
                let b = *frame.get(off)?;
                off += 1;
                len |= ((b & 0x7f) as u64) << shift;
                if b & 0x80 == 0 {
                    break;
                }
            }
            off += len.saturating_sub(1) as usize;
        } else {
            let len = i16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
            off += 2 + len.max(0) as usize;
        }
    }
    Some(i16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::header::parse_request;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ProduceRequest, RequestHeader as KpHeader};
    use kafka_protocol::protocol::{encode_request_header_into_buffer, Encodable, StrBytes};

    fn produce_frame(version: i16, acks: i16, txn: Option<&str>) -> Vec<u8> {
        let mut buf = BytesMut::new();
        let h = KpHeader::default()
            .with_request_api_key(0)
            .with_request_api_version(version)
            .with_correlation_id(3)
            .with_client_id(Some(StrBytes::from_static_str("c")));
        encode_request_header_into_buffer(&mut buf, &h).unwrap();
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(1000)
            .with_transactional_id(txn.map(|t| StrBytes::from_string(t.into()).into()));
        req.encode(&mut buf, version).unwrap();
        let mut f = (buf.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&buf);
        f
    }

    #[test]
    fn reads_acks_of_every_produce_version() {
        for version in 3..=13 {
            for acks in [0, 1, -1] {
                for txn in [None, Some("txn-1")] {
                    let f = produce_frame(version, acks, txn);
                    let h = parse_request(&f).unwrap();
                    assert_eq!(produce_acks(&f, &h), Some(acks), "v{version} {txn:?}");
                    assert_eq!(expects_response(&f, &h), acks != 0);
                }
            }
        }
    }
}
