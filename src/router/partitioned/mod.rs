//! The engine shared by the partition-routed APIs (Produce, Fetch, ListOffsets,
//! OffsetsForLeaderEpoch, DeleteRecords): split a request by partition leader, send each part,
//! re-send the partitions that came back with a leadership error, merge one response.
//!
//! Each API describes itself through [`RoutedApi`] (how to flatten its request and response into
//! partitions and build them back); the routing, retry and merge logic lives here once, in the
//! order a request meets it:
//!
//! * [`plan`]: where each partition goes (its leader, with the fresh leader epoch).
//! * [`dispatch`]: decode, plan, take the produce lanes, connect, send. Runs on the connection's
//!   reader, in request order; a request whose lanes are busy, or whose connection must be
//!   opened, waits in its own task so the reader goes on (its place in its lanes' queues is
//!   taken on the reader, so per partition the order of sends is the client's order).
//! * [`absorb`]: on the connection's writer, also in request order: wait for the answers, and
//!   re-send what the rules of `retry` allow until every partition is settled or the budget is
//!   spent. Because completions run one at a time, the replays of a partition happen in the
//!   order of the requests that carried it.
//! * [`merge`]: one response with exactly the partitions asked for, in the order asked; metrics.

mod absorb;
mod dispatch;
mod merge;
mod plan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::attempt::{Attempts, Conns, InFlight};
use super::lanes::{LaneKey, Lanes};
use super::retry::Failure;
use crate::cluster::Cluster;
use crate::codec::endpoints::EndpointList;
use crate::leadership::TopicRef;

pub use dispatch::Dispatched;

/// A partition-routed API, described for the engine.
pub trait RoutedApi: Send + Sync + 'static {
    const KEY: ApiKey;
    type Req: Decodable + Encodable + Send + Sync + 'static;
    type Resp: Decodable + Encodable + Default + Send + Sync + 'static;
    type PartReq: Clone + Send + Sync + 'static;
    type PartResp: Send + Sync + 'static;

    /// Splits a request into its envelope (top-level fields, topics emptied) and its partitions
    /// in request order.
    fn flatten(req: Self::Req) -> (Self::Req, Vec<(TopicRef, Self::PartReq)>);
    /// A request with the envelope's top-level fields and these partitions.
    fn build(envelope: &Self::Req, parts: &[(&TopicRef, &Self::PartReq)]) -> Self::Req;
    fn partition(p: &Self::PartReq) -> i32;
    /// The client's current leader epoch for the partition, if this API carries one.
    fn leader_epoch(_p: &Self::PartReq) -> Option<i32> {
        None
    }
    fn set_leader_epoch(_p: &mut Self::PartReq, _epoch: i32) {}

    fn flatten_resp(resp: Self::Resp) -> (Self::Resp, Vec<(TopicRef, Self::PartResp)>);
    fn build_resp(envelope: Self::Resp, parts: Vec<(TopicRef, Self::PartResp)>) -> Self::Resp;
    fn resp_partition(p: &Self::PartResp) -> i32;
    fn error_code(p: &Self::PartResp) -> i16;
    /// The answer's top-level error code, if the API has one (Fetch).
    fn envelope_code(_resp: &Self::Resp) -> i16 {
        0
    }
    /// Folds another sub-response's top-level fields into the merged one (throttle = max, ...).
    fn merge_envelope(into: &mut Self::Resp, from: &Self::Resp);
    /// A response for a partition that got no answer.
    fn error_part(p: &Self::PartReq, code: i16) -> Self::PartResp;
    /// KIP-951: the (leader id, leader epoch) a broker named along with a leadership error.
    fn leader_hint(_p: &Self::PartResp) -> Option<(i32, i32)> {
        None
    }
    /// KIP-951 node endpoints carried by the response: recorded, then rewritten for the client.
    fn node_endpoints(_resp: &mut Self::Resp) -> Option<&mut dyn EndpointList> {
        None
    }

    /// Adjusts the envelope before anything is sent; returns true if it changed (then the request
    /// is re-encoded even when it all goes to the client's broker). Fetch uses this to go
    /// sessionless upstream.
    fn prepare(_envelope: &mut Self::Req, _version: i16) -> bool {
        false
    }
    /// Adjusts the envelope for a replay (a fetch replay must not long-poll).
    fn for_replay(_envelope: &mut Self::Req) {}
    /// Reads that may be answered with nothing: how long fairlead may hold the request while it
    /// absorbs (from its arrival). Past that, a partition still being rerouted is answered with
    /// [`RoutedApi::nothing_yet`] and the client asks again.
    fn hold_limit(_envelope: &Self::Req) -> Option<Duration> {
        None
    }
    /// The answer "nothing there yet, no error" for a partition, given once the request has
    /// been held as long as it may (see `hold_limit`); None: the client gets the error.
    fn nothing_yet(_p: &Self::PartReq) -> Option<Self::PartResp> {
        None
    }
    /// Whether fairlead may route this request at all (a follower broker's fetch, an
    /// incremental fetch session: no). Unroutable requests are forwarded untouched.
    fn routable(_envelope: &Self::Req, _version: i16) -> bool {
        true
    }
    /// Whether the client's broker may serve a partition it holds a replica of although it does
    /// not lead it (KIP-392 fetch from a follower).
    fn home_may_serve(_envelope: &Self::Req, _version: i16) -> bool {
        false
    }
    /// Produce only: whether every batch of the partition is idempotent (None: not a write).
    fn produce_facts(_p: &Self::PartReq) -> Option<bool> {
        None
    }
    /// Produce only: the producer id and epoch of an idempotent partition's batches.
    fn producer(_p: &Self::PartReq) -> Option<(i64, i16)> {
        None
    }
    fn expects_response(_envelope: &Self::Req) -> bool {
        true
    }
    /// How long the broker may legitimately take to answer (Produce: timeout_ms, waiting for
    /// acks; Fetch: max_wait_ms).
    fn broker_wait(_envelope: &Self::Req) -> Duration {
        Duration::ZERO
    }
    /// Produce only: the base offset in a partition response.
    fn base_offset(_p: &Self::PartResp) -> i64 {
        -1
    }
    /// Produce only: find out whether a partition's batch that a former leader appended
    /// (base offset given) is in the current leader's log (see `written`).
    fn check_written(
        _cluster: Arc<Cluster>,
        _topic: TopicRef,
        _req: Self::PartReq,
        _base_offset: i64,
        _deadline: Instant,
    ) -> Option<BoxFuture<Checked<Self::PartResp>>> {
        None
    }
}

pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// What the current leader's log says about a write of unknown outcome.
pub enum Checked<P> {
    /// It is there: this is the answer the client gets.
    Written(P),
    NotWritten,
    Unknown,
}

/// One partition of a routed request, from the client's request to its final answer.
struct Part<A: RoutedApi> {
    topic: TopicRef,
    req: A::PartReq,
    /// Produce: every batch carries a producer id (idempotent or transactional producer).
    idempotent: bool,
    /// Produce: that producer id and epoch (its lane's key; see `lanes::Producer`).
    producer: Option<(i64, i16)>,
    /// Produce with a response: the lane whose batch this is (released when the job completes).
    lane: Option<LaneKey>,
    /// Where it was last sent.
    node: i32,
    /// Its leader changed a moment ago (see `lanes::SETTLE`); set when it is planned.
    settling: bool,
    answer: Option<A::PartResp>,
    /// Why it has no usable answer (None: answered, or not sent yet).
    failure: Option<Failure>,
    /// The first error it met, for metrics (absorbed if it ends without one).
    first_code: Option<i16>,
    /// Produce: the leader's log proved the last attempt's batch was not written.
    unwritten: bool,
    /// No connection of the client's identity reaches its leader (`identity`): it keeps the
    /// answer of the broker it went to.
    unroutable: bool,
}

impl<A: RoutedApi> Part<A> {
    fn new(topic: TopicRef, req: A::PartReq, node: i32) -> Part<A> {
        let idempotent = A::produce_facts(&req).unwrap_or(false);
        let producer = if idempotent { A::producer(&req) } else { None };
        Part {
            topic,
            req,
            idempotent,
            producer,
            lane: None,
            node,
            settling: false,
            answer: None,
            failure: None,
            first_code: None,
            unwritten: false,
            unroutable: false,
        }
    }

    fn partition(&self) -> i32 {
        A::partition(&self.req)
    }

    /// The error code of its answer, if it has one.
    fn code(&self) -> Option<i16> {
        self.answer.as_ref().map(A::error_code)
    }
}

/// One part of a request in flight.
struct Sent {
    flight: InFlight,
    /// Indices into the job's partitions.
    idx: Vec<usize>,
    /// The original frame went out unchanged (and alone): its answer may be returned as is.
    original: bool,
}

pub struct Job<A: RoutedApi> {
    /// Its attempts: the cluster, the connections, the budget, what the client gets counted.
    at: Attempts,
    version: i16,
    correlation_id: i32,
    /// The client's header bytes (between length prefix and body), reused for every part.
    header: Bytes,
    envelope: A::Req,
    parts: Vec<Part<A>>,
    sent: Vec<Sent>,
    /// Produce ordering: the lanes this request holds, released on completion.
    lanes: Option<Arc<Lanes>>,
    /// Leadership generation the routing was decided with.
    generation: u64,
}

impl<A: RoutedApi> Job<A> {
    /// Waits for the answers, absorbs what the rules allow, and returns the response frame.
    pub async fn complete(mut self) -> Result<Bytes, JobError> {
        self.run().await
    }

    async fn run(&mut self) -> Result<Bytes, JobError> {
        let mut gathered = match self.gather().await? {
            absorb::Gathered::Blind(frame) => return Ok(frame),
            absorb::Gathered::Answers(g) => g,
        };
        self.absorb(&mut gathered).await?;
        self.merge(gathered)
    }
}

/// The lanes a request holds are released when its job ends: completed, or dropped unfinished
/// (its client connection closed, the writer aborted at the drain time). Otherwise the
/// producer's partition would stay busy for its other connections.
impl<A: RoutedApi> Drop for Job<A> {
    fn drop(&mut self) {
        if let Some(lanes) = &self.lanes {
            lanes.release(self.parts.iter().filter_map(|p| p.lane.as_ref()));
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("could not decode or encode a response: {0}")]
    Undecodable(String),
}
