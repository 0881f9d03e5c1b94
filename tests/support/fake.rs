//! An in-process fake Kafka cluster for fast, deterministic byte-level tests of fairlead.
//!
//! Each fake broker is a TCP server on 127.0.0.1:0 with a node id. All of them answer from one
//! shared [`Script`]: the metadata to give out (the brokers at their real fake addresses,
//! partition leaders with epochs, replicas, ISR, topic ids), per-(node, topic, partition) queues
//! of answers for the partition APIs, and raw answers for frames kafka-protocol cannot decode.
//! Every request a fake receives is recorded ([`Received`]: raw frame, decoded body, the response
//! it got), so a test can assert what reached which broker, on which connection, in what order.
//!
//! Like a real broker, a fake answers the requests of one connection in order (a delayed answer
//! holds back the ones behind it; [`Script::ordered`] = false lets later answers overtake it),
//! never answers an acks=0 produce, and closes the connection on a request it cannot parse.
//! Without a scripted answer a partition gets the boring success: a produce is appended to the
//! fake's per-(node, partition) log end, a fetch finds nothing, a list-offsets finds offset 0.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    fetch_response, produce_response, ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DescribeClusterRequest, DescribeClusterResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, EndTxnRequest, EndTxnResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

/// The client id fairlead puts on its own requests (Metadata, ApiVersions, log checks).
pub const FAIRLEAD_CLIENT_ID: &str = "fairlead";

/// (node, topic name, partition): whose answer queue.
pub type PartKey = (i32, String, i32);

fn key(node: i32, topic: &str, partition: i32) -> PartKey {
    (node, topic.to_string(), partition)
}

// ---------------------------------------------------------------------------------------------
// The script
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct BrokerMeta {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

#[derive(Debug, Clone)]
pub struct PartitionMeta {
    /// -1: no leader (an election is running); the partition is then listed with error 5.
    pub leader: i32,
    pub epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionMeta>,
}

/// A produce partition answer.
#[derive(Debug, Clone)]
pub struct ProduceAnswer {
    pub error: i16,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// KIP-951 CurrentLeader (leader id, epoch); sent from v10 on.
    pub leader_hint: Option<(i32, i32)>,
    /// Node ids whose (real, fake) address goes into the response's node_endpoints (v10+).
    pub endpoints: Vec<i32>,
    pub throttle_ms: i32,
    /// How long the broker "thinks" before answering (the whole response waits for the
    /// slowest partition).
    pub delay: Duration,
}

impl ProduceAnswer {
    pub fn ok(base_offset: i64) -> Self {
        ProduceAnswer {
            error: 0,
            base_offset,
            log_append_time_ms: -1,
            log_start_offset: 0,
            leader_hint: None,
            endpoints: Vec::new(),
            throttle_ms: 0,
            delay: Duration::ZERO,
        }
    }

    /// An error, with the base offset the broker reports (-1: refused before the append).
    pub fn error(code: i16, base_offset: i64) -> Self {
        ProduceAnswer {
            error: code,
            base_offset,
            log_start_offset: -1,
            ..ProduceAnswer::ok(0)
        }
    }

    /// Adds a KIP-951 leader hint and the hinted leader's endpoint.
    pub fn hint(mut self, leader: i32, epoch: i32) -> Self {
        self.leader_hint = Some((leader, epoch));
        if !self.endpoints.contains(&leader) {
            self.endpoints.push(leader);
        }
        self
    }

    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// A fetch partition answer.
#[derive(Debug, Clone)]
pub struct FetchAnswer {
    pub error: i16,
    pub high_watermark: i64,
    pub records: Bytes,
    pub leader_hint: Option<(i32, i32)>,
    /// Node ids for node_endpoints (v16+).
    pub endpoints: Vec<i32>,
    pub throttle_ms: i32,
    pub delay: Duration,
}

impl Default for FetchAnswer {
    fn default() -> Self {
        FetchAnswer {
            error: 0,
            high_watermark: 0,
            records: Bytes::new(),
            leader_hint: None,
            endpoints: Vec::new(),
            throttle_ms: 0,
            delay: Duration::ZERO,
        }
    }
}

impl FetchAnswer {
    pub fn records(records: Bytes, high_watermark: i64) -> Self {
        FetchAnswer {
            records,
            high_watermark,
            ..Default::default()
        }
    }

    pub fn error(code: i16) -> Self {
        FetchAnswer {
            error: code,
            high_watermark: -1,
            ..Default::default()
        }
    }

    /// Adds a KIP-951 leader hint (v12+) and the hinted leader's endpoint (v16+).
    pub fn hint(mut self, leader: i32, epoch: i32) -> Self {
        self.leader_hint = Some((leader, epoch));
        if !self.endpoints.contains(&leader) {
            self.endpoints.push(leader);
        }
        self
    }

    pub fn throttled(mut self, ms: i32) -> Self {
        self.throttle_ms = ms;
        self
    }

    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// A ListOffsets partition answer.
#[derive(Debug, Clone)]
pub struct OffsetAnswer {
    pub error: i16,
    pub offset: i64,
    pub timestamp: i64,
    pub leader_epoch: i32,
    pub delay: Duration,
}

impl OffsetAnswer {
    pub fn ok(offset: i64, leader_epoch: i32) -> Self {
        OffsetAnswer {
            error: 0,
            offset,
            timestamp: -1,
            leader_epoch,
            delay: Duration::ZERO,
        }
    }

    pub fn error(code: i16) -> Self {
        OffsetAnswer {
            error: code,
            offset: -1,
            timestamp: -1,
            leader_epoch: -1,
            delay: Duration::ZERO,
        }
    }
}

/// An OffsetsForLeaderEpoch partition answer.
#[derive(Debug, Clone)]
pub struct EpochAnswer {
    pub error: i16,
    pub leader_epoch: i32,
    pub end_offset: i64,
}

/// A queue of answers; when it runs dry, `then` (if any) is given every time.
#[derive(Debug, Clone)]
struct Answers<T> {
    queue: VecDeque<T>,
    then: Option<T>,
}

impl<T: Clone> Answers<T> {
    fn next(&mut self) -> Option<T> {
        self.queue.pop_front().or_else(|| self.then.clone())
    }
}

impl<T> Default for Answers<T> {
    fn default() -> Self {
        Answers {
            queue: VecDeque::new(),
            then: None,
        }
    }
}

/// An answer given as raw body bytes, for frames kafka-protocol cannot build or decode (unknown
/// API keys, versions below what it supports).
#[derive(Debug, Clone)]
struct RawAnswer {
    node: Option<i32>,
    api_key: i16,
    version: i16,
    /// Header and body after the correlation id (the fake writes length and correlation id).
    after_correlation: Bytes,
}

/// A request as a fake broker decoded it.
#[derive(Debug, Clone)]
pub enum Decoded {
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    Epochs(OffsetForLeaderEpochRequest),
    DeleteRecords(DeleteRecordsRequest),
    Metadata(MetadataRequest),
    /// A group or transaction coordinator API: its key (group or transactional id).
    Coordinator(String),
    FindCoordinator(FindCoordinatorRequest),
    /// Decoded, of an API the tests do not look into.
    Other,
    /// Not decodable (answered from a raw script, or the connection was closed).
    Raw,
}

/// One request a fake broker received.
#[derive(Debug, Clone)]
pub struct Received {
    pub node: i32,
    /// Connection number (unique in the cluster): requests on one connection are ordered.
    pub conn: u64,
    pub at: Instant,
    pub api_key: i16,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The whole frame, length prefix included.
    pub frame: Bytes,
    pub request: Decoded,
    /// The response frame (length prefix included), None for acks=0 or a closed connection.
    pub response: Option<Bytes>,
    /// The user its connection had authenticated as (SASL) when it arrived.
    pub principal: Option<String>,
}

impl Received {
    /// Not one of fairlead's own requests: the client's, or a part or replay of it (fairlead
    /// reuses the client's header, client id included).
    pub fn is_from_client(&self) -> bool {
        self.client_id.as_deref() != Some(FAIRLEAD_CLIENT_ID)
    }

    pub fn produce(&self) -> &ProduceRequest {
        match &self.request {
            Decoded::Produce(r) => r,
            other => panic!("not a produce request: {other:?}"),
        }
    }

    pub fn fetch(&self) -> &FetchRequest {
        match &self.request {
            Decoded::Fetch(r) => r,
            other => panic!("not a fetch request: {other:?}"),
        }
    }

    pub fn epochs(&self) -> &OffsetForLeaderEpochRequest {
        match &self.request {
            Decoded::Epochs(r) => r,
            other => panic!("not an offsets-for-leader-epoch request: {other:?}"),
        }
    }

    pub fn delete_records(&self) -> &DeleteRecordsRequest {
        match &self.request {
            Decoded::DeleteRecords(r) => r,
            other => panic!("not a delete-records request: {other:?}"),
        }
    }

    pub fn list_offsets(&self) -> &ListOffsetsRequest {
        match &self.request {
            Decoded::ListOffsets(r) => r,
            other => panic!("not a list-offsets request: {other:?}"),
        }
    }

    /// Produce: (topic name or id, partition, records) in request order.
    pub fn produce_parts(&self) -> Vec<(String, i32, Bytes)> {
        self.produce()
            .topic_data
            .iter()
            .flat_map(|t| {
                let name = if t.topic_id.is_nil() {
                    t.name.0.to_string()
                } else {
                    t.topic_id.to_string()
                };
                t.partition_data
                    .iter()
                    .map(move |p| (name.clone(), p.index, p.records.clone().unwrap_or_default()))
            })
            .collect()
    }

    /// Fetch: (topic name or id, partition, current leader epoch, fetch offset) in request order.
    pub fn fetch_parts(&self) -> Vec<(String, i32, i32, i64)> {
        self.fetch()
            .topics
            .iter()
            .flat_map(|t| {
                let name = if t.topic_id.is_nil() {
                    t.topic.0.to_string()
                } else {
                    t.topic_id.to_string()
                };
                t.partitions.iter().map(move |p| {
                    (
                        name.clone(),
                        p.partition,
                        p.current_leader_epoch,
                        p.fetch_offset,
                    )
                })
            })
            .collect()
    }
}

/// What the fakes answer, shared by all of them.
pub struct Script {
    pub brokers: Vec<BrokerMeta>,
    pub cluster_id: String,
    pub controller_id: i32,
    pub topics: Vec<TopicMeta>,
    /// (api key, min, max) advertised by ApiVersions.
    pub api_versions: Vec<(i16, i16, i16)>,
    /// FindCoordinator: key -> (node, error code); keys not listed are coordinated by node 1.
    /// The coordinator APIs answer NONE on the key's coordinator and NOT_COORDINATOR (16)
    /// elsewhere, unless [`Script::coordinator_error`] says otherwise.
    pub coordinators: HashMap<String, (i32, i16)>,
    /// The next answers of a coordinator API on a node: these error codes, in turn.
    coordinator_errors: HashMap<(i32, i16), VecDeque<i16>>,
    /// Answer a connection's requests in order (like Kafka). Off: a delayed answer is
    /// overtaken by later ones on the same connection.
    pub ordered: bool,
    produce: HashMap<PartKey, Answers<ProduceAnswer>>,
    fetch: HashMap<PartKey, Answers<FetchAnswer>>,
    list_offsets: HashMap<PartKey, Answers<OffsetAnswer>>,
    epochs: HashMap<PartKey, Answers<EpochAnswer>>,
    delete_records: HashMap<PartKey, Answers<i16>>,
    raw: Vec<RawAnswer>,
    /// Extra delay for the next request of an API on a node (APIs without partition answers).
    delays: Vec<(i32, i16, Duration)>,
    log_end: HashMap<PartKey, i64>,
    next_session: i32,
    received: Vec<Received>,
    /// SASL users and their passwords: a connection that authenticates with another password
    /// is refused (SASL_AUTHENTICATION_FAILED). Users not listed are accepted.
    pub users: HashMap<String, String>,
    /// Who each connection authenticated as.
    principals: HashMap<u64, String>,
    /// SCRAM exchanges half done: the user of a connection's client-first message.
    scram: HashMap<u64, String>,
    /// Connections accepted, by node, and those that have ended since.
    pub connections: Vec<(i32, u64)>,
    pub closed: std::collections::HashSet<u64>,
}

impl Script {
    fn new(brokers: Vec<BrokerMeta>) -> Script {
        let api_versions = ApiKey::iter()
            .map(|k| (k as i16, k.valid_versions().min, k.valid_versions().max))
            .collect();
        Script {
            controller_id: brokers.first().map(|b| b.id).unwrap_or(-1),
            brokers,
            cluster_id: "fake-cluster".into(),
            topics: Vec::new(),
            api_versions,
            coordinators: HashMap::new(),
            coordinator_errors: HashMap::new(),
            ordered: true,
            produce: HashMap::new(),
            fetch: HashMap::new(),
            list_offsets: HashMap::new(),
            epochs: HashMap::new(),
            delete_records: HashMap::new(),
            raw: Vec::new(),
            delays: Vec::new(),
            log_end: HashMap::new(),
            next_session: 1000,
            received: Vec::new(),
            users: HashMap::new(),
            principals: HashMap::new(),
            scram: HashMap::new(),
            connections: Vec::new(),
            closed: std::collections::HashSet::new(),
        }
    }

    /// Adds a topic whose partition i is led by `leaders[i] = (node, epoch)`; replicas and ISR
    /// are every broker, the leader first. Returns its id.
    pub fn topic(&mut self, name: &str, leaders: &[(i32, i32)]) -> Uuid {
        let id = Uuid::from_u128(
            0xfa1_1ead_0000_0000_0000_0000_0000_0000 + self.topics.len() as u128 + 1,
        );
        let all: Vec<i32> = self.brokers.iter().map(|b| b.id).collect();
        let partitions = leaders
            .iter()
            .map(|&(leader, epoch)| {
                let mut replicas = vec![leader];
                replicas.extend(all.iter().filter(|b| **b != leader));
                PartitionMeta {
                    leader,
                    epoch,
                    isr: replicas.clone(),
                    replicas,
                }
            })
            .collect();
        self.topics.retain(|t| t.name != name);
        self.topics.push(TopicMeta {
            name: name.into(),
            id,
            partitions,
        });
        id
    }

    pub fn topic_id(&self, name: &str) -> Uuid {
        self.topics
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.id)
            .unwrap_or_else(|| panic!("no topic {name}"))
    }

    fn topic_name(&self, id: &Uuid) -> Option<String> {
        self.topics
            .iter()
            .find(|t| t.id == *id)
            .map(|t| t.name.clone())
    }

    fn partition_mut(&mut self, topic: &str, partition: i32) -> &mut PartitionMeta {
        let t = self
            .topics
            .iter_mut()
            .find(|t| t.name == topic)
            .unwrap_or_else(|| panic!("no topic {topic}"));
        &mut t.partitions[partition as usize]
    }

    /// Moves a partition's leadership (what the next Metadata answer says).
    pub fn set_leader(&mut self, topic: &str, partition: i32, leader: i32, epoch: i32) {
        let p = self.partition_mut(topic, partition);
        p.leader = leader;
        p.epoch = epoch;
    }

    /// The partition has no leader (an election is running): Metadata lists it with error 5.
    pub fn set_leaderless(&mut self, topic: &str, partition: i32) {
        self.partition_mut(topic, partition).leader = -1;
    }

    pub fn produce(&mut self, node: i32, topic: &str, partition: i32, a: ProduceAnswer) {
        self.produce
            .entry(key(node, topic, partition))
            .or_default()
            .queue
            .push_back(a);
    }

    /// This answer every time the queue is empty.
    pub fn produce_always(&mut self, node: i32, topic: &str, partition: i32, a: ProduceAnswer) {
        self.produce
            .entry(key(node, topic, partition))
            .or_default()
            .then = Some(a);
    }

    pub fn fetch(&mut self, node: i32, topic: &str, partition: i32, a: FetchAnswer) {
        self.fetch
            .entry(key(node, topic, partition))
            .or_default()
            .queue
            .push_back(a);
    }

    pub fn fetch_always(&mut self, node: i32, topic: &str, partition: i32, a: FetchAnswer) {
        self.fetch
            .entry(key(node, topic, partition))
            .or_default()
            .then = Some(a);
    }

    pub fn list_offsets(&mut self, node: i32, topic: &str, partition: i32, a: OffsetAnswer) {
        self.list_offsets
            .entry(key(node, topic, partition))
            .or_default()
            .queue
            .push_back(a);
    }

    pub fn epochs(&mut self, node: i32, topic: &str, partition: i32, a: EpochAnswer) {
        self.epochs
            .entry(key(node, topic, partition))
            .or_default()
            .queue
            .push_back(a);
    }

    /// DeleteRecords: the next answer's error code (0: deleted up to the requested offset).
    pub fn delete_records(&mut self, node: i32, topic: &str, partition: i32, error: i16) {
        self.delete_records
            .entry(key(node, topic, partition))
            .or_default()
            .queue
            .push_back(error);
    }

    pub fn epochs_always(&mut self, node: i32, topic: &str, partition: i32, a: EpochAnswer) {
        self.epochs
            .entry(key(node, topic, partition))
            .or_default()
            .then = Some(a);
    }

    /// The next request of this API key and version (on `node`, or any) is answered with these
    /// bytes after the correlation id, whatever it contains.
    pub fn raw(&mut self, node: Option<i32>, api_key: i16, version: i16, after_correlation: Bytes) {
        self.raw.push(RawAnswer {
            node,
            api_key,
            version,
            after_correlation,
        });
    }

    /// The next request of coordinator API `api` on `node` is answered with error `code`.
    pub fn coordinator_error(&mut self, node: i32, api: ApiKey, code: i16) {
        self.coordinator_errors
            .entry((node, api as i16))
            .or_default()
            .push_back(code);
    }

    /// The error a coordinator API request for `key` gets on `node`.
    fn coordinator_code(&mut self, node: i32, api: ApiKey, key: &str) -> i16 {
        if let Some(code) = self
            .coordinator_errors
            .get_mut(&(node, api as i16))
            .and_then(VecDeque::pop_front)
        {
            return code;
        }
        let coordinator = self.coordinators.get(key).map_or(1, |(n, _)| *n);
        if coordinator == node {
            0
        } else {
            16
        }
    }

    /// The next request of `api` on `node` is answered after `delay`.
    pub fn delay_next(&mut self, node: i32, api: ApiKey, delay: Duration) {
        self.delays.push((node, api as i16, delay));
    }

    pub fn received(&self) -> &[Received] {
        &self.received
    }

    fn broker(&self, id: i32) -> Option<&BrokerMeta> {
        self.brokers.iter().find(|b| b.id == id)
    }

    // -- answering ------------------------------------------------------------------------

    fn handle(&mut self, node: i32, conn: u64, frame: Bytes) -> Action {
        let at = Instant::now();
        let Some(head) = parse_head(&frame) else {
            return Action::Close;
        };
        let mut rec = Received {
            node,
            conn,
            at,
            api_key: head.api_key,
            version: head.version,
            correlation_id: head.correlation_id,
            client_id: head.client_id.clone(),
            frame: frame.clone(),
            request: Decoded::Raw,
            response: None,
            principal: self.principals.get(&conn).cloned(),
        };

        if let Some(out) = head
            .body
            .and_then(|at| self.sasl(conn, &head, frame.slice(at..)))
        {
            rec.response = Some(out.clone());
            self.received.push(rec);
            return Action::Reply(out, Duration::ZERO);
        }

        if let Some(i) = self.raw.iter().position(|r| {
            r.api_key == head.api_key
                && r.version == head.version
                && r.node.is_none_or(|n| n == node)
        }) {
            let raw = self.raw.remove(i);
            let mut out = BytesMut::new();
            out.put_i32((4 + raw.after_correlation.len()) as i32);
            out.put_i32(head.correlation_id);
            out.put_slice(&raw.after_correlation);
            let out = out.freeze();
            rec.response = Some(out.clone());
            self.received.push(rec);
            return Action::Reply(out, Duration::ZERO);
        }

        let answered = match (ApiKey::try_from(head.api_key), head.body) {
            (Ok(api), Some(body_at)) => self.answer(
                node,
                api,
                head.version,
                head.correlation_id,
                frame.slice(body_at..),
            ),
            _ => Err(()),
        };
        let action = match answered {
            Ok((decoded, Some((resp, delay)))) => {
                rec.request = decoded;
                rec.response = Some(resp.clone());
                let extra = self
                    .delays
                    .iter()
                    .position(|(n, k, _)| *n == node && *k == head.api_key)
                    .map(|i| self.delays.remove(i).2)
                    .unwrap_or_default();
                Action::Reply(resp, delay.max(extra))
            }
            Ok((decoded, None)) => {
                rec.request = decoded;
                Action::Silent
            }
            // Kafka closes the connection of a request it cannot parse.
            Err(()) => Action::Close,
        };
        self.received.push(rec);
        action
    }

    /// SaslHandshake and SaslAuthenticate (PLAIN, and SCRAM without checking the proof): the
    /// connection's principal from then on. None: not a SASL request.
    fn sasl(&mut self, conn: u64, head: &Head, body: Bytes) -> Option<Bytes> {
        use kafka_protocol::messages::{
            SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
            SaslHandshakeResponse,
        };
        let (api, v, corr) = (
            ApiKey::try_from(head.api_key).ok()?,
            head.version,
            head.correlation_id,
        );
        match api {
            ApiKey::SaslHandshake => {
                let _: SaslHandshakeRequest = decode(body, v).ok()?;
                let r = SaslHandshakeResponse::default().with_mechanisms(vec![
                    StrBytes::from_static_str("PLAIN"),
                    StrBytes::from_static_str("SCRAM-SHA-512"),
                ]);
                Some(respond(api, v, corr, &r))
            }
            ApiKey::SaslAuthenticate => {
                let req: SaslAuthenticateRequest = decode(body, v).ok()?;
                let text = String::from_utf8_lossy(&req.auth_bytes).to_string();
                let (code, reply) = if let Some(user) = self.scram.remove(&conn) {
                    self.principals.insert(conn, user);
                    (0, "v=cHJvb2Y=".to_string())
                } else if let Some(bare) = text.strip_prefix("n,,n=") {
                    let user = bare.split(',').next().unwrap_or("").to_string();
                    let nonce = bare.split(",r=").nth(1).unwrap_or("");
                    self.scram.insert(conn, user);
                    (0, format!("r={nonce}fake,s=c2FsdA==,i=4096"))
                } else {
                    let mut parts = text.split('\0');
                    let _authzid = parts.next();
                    let user = parts.next().unwrap_or("").to_string();
                    let password = parts.next().unwrap_or("");
                    match self.users.get(&user) {
                        Some(p) if p != password => (58, String::new()),
                        _ => {
                            self.principals.insert(conn, user);
                            (0, String::new())
                        }
                    }
                };
                let r = SaslAuthenticateResponse::default()
                    .with_error_code(code)
                    .with_auth_bytes(Bytes::from(reply));
                Some(respond(api, v, corr, &r))
            }
            _ => None,
        }
    }

    /// Decodes a request and builds its answer: (what was decoded, (response, delay) or none).
    #[allow(clippy::type_complexity)]
    fn answer(
        &mut self,
        node: i32,
        api: ApiKey,
        version: i16,
        corr: i32,
        body: Bytes,
    ) -> Result<(Decoded, Option<(Bytes, Duration)>), ()> {
        Ok(match api {
            ApiKey::ApiVersions => {
                if version > ApiKey::ApiVersions.valid_versions().max {
                    // As Kafka does: UNSUPPORTED_VERSION in a v0 body, naming the versions it knows.
                    let r = ApiVersionsResponse::default()
                        .with_error_code(35)
                        .with_api_keys(vec![ApiVersion::default()
                            .with_api_key(ApiKey::ApiVersions as i16)
                            .with_min_version(0)
                            .with_max_version(ApiKey::ApiVersions.valid_versions().max)]);
                    (
                        Decoded::Raw,
                        Some((respond(api, 0, corr, &r), Duration::ZERO)),
                    )
                } else {
                    decode::<ApiVersionsRequest>(body, version)?;
                    let keys = self
                        .api_versions
                        .iter()
                        .map(|(k, min, max)| {
                            ApiVersion::default()
                                .with_api_key(*k)
                                .with_min_version(*min)
                                .with_max_version(*max)
                        })
                        .collect();
                    let r = ApiVersionsResponse::default().with_api_keys(keys);
                    (
                        Decoded::Other,
                        Some((respond(api, version, corr, &r), Duration::ZERO)),
                    )
                }
            }
            ApiKey::Metadata => {
                let req: MetadataRequest = decode(body, version)?;
                let r = self.metadata(version, &req);
                (
                    Decoded::Metadata(req),
                    Some((respond(api, version, corr, &r), Duration::ZERO)),
                )
            }
            ApiKey::Heartbeat => {
                let req: HeartbeatRequest = decode(body, version)?;
                let key = req.group_id.to_string();
                let code = self.coordinator_code(node, api, &key);
                let r = HeartbeatResponse::default().with_error_code(code);
                (
                    Decoded::Coordinator(key),
                    Some((respond(api, version, corr, &r), Duration::ZERO)),
                )
            }
            ApiKey::JoinGroup => {
                let req: JoinGroupRequest = decode(body, version)?;
                let key = req.group_id.to_string();
                let code = self.coordinator_code(node, api, &key);
                let r = JoinGroupResponse::default()
                    .with_error_code(code)
                    .with_generation_id(if code == 0 { 7 } else { -1 })
                    .with_member_id(req.member_id.clone());
                (
                    Decoded::Coordinator(key),
                    Some((respond(api, version, corr, &r), Duration::ZERO)),
                )
            }
            ApiKey::OffsetCommit => {
                use kafka_protocol::messages::offset_commit_response::{
                    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
                };
                let req: OffsetCommitRequest = decode(body, version)?;
                let key = req.group_id.to_string();
                let code = self.coordinator_code(node, api, &key);
                let topics = req
                    .topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                let r = OffsetCommitResponse::default().with_topics(topics);
                (
                    Decoded::Coordinator(key),
                    Some((respond(api, version, corr, &r), Duration::ZERO)),
                )
            }
            ApiKey::ConsumerGroupHeartbeat => {
                let req: ConsumerGroupHeartbeatRequest = decode(body, version)?;
                let key = req.group_id.to_string();
                let code = self.coordinator_code(node, api, &key);
                let r = ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(code)
                    .with_member_id(Some(req.member_id.clone()))
                    .with_member_epoch(if code == 0 { req.member_epoch + 1 } else { -1 });
                (
                    Decoded::Coordinator(key),
                    Some((respond(api, version, corr, &r), Duration::ZERO)),
                )
            }
            ApiKey::EndTxn => {
                let req: EndTxnRequest = decode(body, version)?;
                let key = req.transactional_id.to_string();
                let code = self.coordinator_code(node, api, &key);
                let r = EndTxnResponse::default().with_error_code(code);
                (
                    Decoded::Coordinator(key),
                    Some((respond(api, version, corr, &r), Duration::ZERO)),
                )
            }
            ApiKey::DescribeGroups => {
                use kafka_protocol::messages::describe_groups_response::DescribedGroup;
                let req: DescribeGroupsRequest = decode(body, version)?;
                let key = req
                    .groups
                    .first()
                    .map(|g| g.to_string())
                    .unwrap_or_default();
                let code = self.coordinator_code(node, api, &key);
                let r = DescribeGroupsResponse::default().with_groups(
                    req.groups
                        .iter()
                        .map(|g| {
                            DescribedGroup::default()
                                .with_group_id(g.clone())
                                .with_error_code(code)
                        })
                        .collect(),
                );
                (
                    Decoded::Coordinator(key),
                    Some((respond(api, version, corr, &r), Duration::ZERO)),
                )
            }
            ApiKey::FindCoordinator => {
                let req: FindCoordinatorRequest = decode(body, version)?;
                let r = self.find_coordinator(version, &req);
                (
                    Decoded::FindCoordinator(req),
                    Some((respond(api, version, corr, &r), Duration::ZERO)),
                )
            }
            ApiKey::DescribeCluster => {
                decode::<DescribeClusterRequest>(body, version)?;
                let brokers = self
                    .brokers
                    .iter()
                    .map(|b| {
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(b.id))
                            .with_host(StrBytes::from_string(b.host.clone()))
                            .with_port(b.port)
                    })
                    .collect();
                let r = DescribeClusterResponse::default()
                    .with_cluster_id(StrBytes::from_string(self.cluster_id.clone()))
                    .with_controller_id(BrokerId(self.controller_id))
                    .with_brokers(brokers)
                    .with_error_message(None);
                (
                    Decoded::Other,
                    Some((respond(api, version, corr, &r), Duration::ZERO)),
                )
            }
            ApiKey::Produce => {
                let req: ProduceRequest = decode(body, version)?;
                let answer = self.produce_answer(node, version, &req);
                let silent = req.acks == 0;
                let out = (!silent).then(|| (respond(api, version, corr, &answer.0), answer.1));
                (Decoded::Produce(req), out)
            }
            ApiKey::Fetch => {
                let req: FetchRequest = decode(body, version)?;
                let (r, delay) = self.fetch_answer(node, version, &req);
                (
                    Decoded::Fetch(req),
                    Some((respond(api, version, corr, &r), delay)),
                )
            }
            ApiKey::ListOffsets => {
                let req: ListOffsetsRequest = decode(body, version)?;
                let (r, delay) = self.list_offsets_answer(node, &req);
                (
                    Decoded::ListOffsets(req),
                    Some((respond(api, version, corr, &r), delay)),
                )
            }
            ApiKey::OffsetForLeaderEpoch => {
                let req: OffsetForLeaderEpochRequest = decode(body, version)?;
                let r = self.epochs_answer(node, &req);
                (
                    Decoded::Epochs(req),
                    Some((respond(api, version, corr, &r), Duration::ZERO)),
                )
            }
            ApiKey::DeleteRecords => {
                use kafka_protocol::messages::delete_records_response::{
                    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
                };
                let req: DeleteRecordsRequest = decode(body, version)?;
                let mut r = DeleteRecordsResponse::default();
                for t in &req.topics {
                    let name = t.name.0.to_string();
                    let ps = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let error = self
                                .delete_records
                                .get_mut(&key(node, &name, p.partition_index))
                                .and_then(Answers::next)
                                .unwrap_or(0);
                            let low_watermark = if error == 0 { p.offset } else { -1 };
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error)
                                .with_low_watermark(low_watermark)
                        })
                        .collect();
                    r.topics.push(
                        DeleteRecordsTopicResult::default()
                            .with_name(t.name.clone())
                            .with_partitions(ps),
                    );
                }
                (
                    Decoded::DeleteRecords(req),
                    Some((respond(api, version, corr, &r), Duration::ZERO)),
                )
            }
            _ => return Err(()),
        })
    }

    pub fn metadata_response(
        &self,
        version: i16,
        requested: Option<&[String]>,
    ) -> MetadataResponse {
        let brokers = self
            .brokers
            .iter()
            .map(|b| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(b.host.clone()))
                    .with_port(b.port)
                    .with_rack(None)
            })
            .collect();
        let topic = |t: &TopicMeta| {
            let partitions = t
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    MetadataResponsePartition::default()
                        .with_error_code(if p.leader < 0 { 5 } else { 0 })
                        .with_partition_index(i as i32)
                        .with_leader_id(BrokerId(p.leader))
                        .with_leader_epoch(p.epoch)
                        .with_replica_nodes(p.replicas.iter().map(|b| BrokerId(*b)).collect())
                        .with_isr_nodes(p.isr.iter().map(|b| BrokerId(*b)).collect())
                })
                .collect();
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
                .with_topic_id(if version >= 10 { t.id } else { Uuid::nil() })
                .with_partitions(partitions)
        };
        let topics = match requested {
            None => self.topics.iter().map(topic).collect(),
            Some(names) => names
                .iter()
                .map(|n| match self.topics.iter().find(|t| &t.name == n) {
                    Some(t) => topic(t),
                    None => MetadataResponseTopic::default()
                        .with_error_code(3)
                        .with_name(Some(TopicName(StrBytes::from_string(n.clone())))),
                })
                .collect(),
        };
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(StrBytes::from_string(self.cluster_id.clone())))
            .with_controller_id(BrokerId(self.controller_id))
            .with_topics(topics)
    }

    fn metadata(&self, version: i16, req: &MetadataRequest) -> MetadataResponse {
        // v0: an empty list means every topic; v1+: null does.
        let names: Option<Vec<String>> = match &req.topics {
            None => None,
            Some(ts) if ts.is_empty() && version == 0 => None,
            Some(ts) => Some(
                ts.iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                    .collect(),
            ),
        };
        self.metadata_response(version, names.as_deref())
    }

    fn find_coordinator(
        &self,
        version: i16,
        req: &FindCoordinatorRequest,
    ) -> FindCoordinatorResponse {
        let lookup = |k: &str| -> (i32, i16, StrBytes, i32) {
            let (node, error) = self.coordinators.get(k).copied().unwrap_or((1, 0));
            match (error, self.broker(node)) {
                (0, Some(b)) => (node, 0, StrBytes::from_string(b.host.clone()), b.port),
                _ => (
                    -1,
                    if error == 0 { 15 } else { error },
                    StrBytes::default(),
                    -1,
                ),
            }
        };
        if version < 4 {
            let (node, error, host, port) = lookup(req.key.as_str());
            let msg = if error != 0 {
                Some(StrBytes::from_static_str(
                    "The coordinator is not available.",
                ))
            } else {
                None
            };
            FindCoordinatorResponse::default()
                .with_error_code(error)
                .with_error_message(msg)
                .with_node_id(BrokerId(node))
                .with_host(host)
                .with_port(port)
        } else {
            let coordinators = req
                .coordinator_keys
                .iter()
                .map(|k| {
                    let (node, error, host, port) = lookup(k.as_str());
                    Coordinator::default()
                        .with_key(k.clone())
                        .with_node_id(BrokerId(node))
                        .with_host(host)
                        .with_port(port)
                        .with_error_code(error)
                })
                .collect();
            FindCoordinatorResponse::default()
                .with_error_message(None)
                .with_coordinators(coordinators)
        }
    }

    fn resolve(&self, name: &TopicName, id: &Uuid) -> String {
        if id.is_nil() {
            name.0.to_string()
        } else {
            self.topic_name(id).unwrap_or_default()
        }
    }

    fn produce_answer(
        &mut self,
        node: i32,
        version: i16,
        req: &ProduceRequest,
    ) -> (ProduceResponse, Duration) {
        let mut resp = ProduceResponse::default();
        let mut delay = Duration::ZERO;
        let mut endpoints: Vec<i32> = Vec::new();
        for t in &req.topic_data {
            let name = self.resolve(&t.name, &t.topic_id);
            let mut parts = Vec::new();
            for p in &t.partition_data {
                let k = key(node, &name, p.index);
                let a = match self.produce.get_mut(&k).and_then(Answers::next) {
                    Some(a) => a,
                    None => {
                        let end = self.log_end.entry(k).or_insert(0);
                        let base = *end;
                        *end += p.records.as_ref().map(record_count).unwrap_or(0);
                        ProduceAnswer::ok(base)
                    }
                };
                delay = delay.max(a.delay);
                resp.throttle_time_ms = resp.throttle_time_ms.max(a.throttle_ms);
                let mut r = PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_error_code(a.error)
                    .with_base_offset(a.base_offset)
                    .with_log_append_time_ms(a.log_append_time_ms)
                    .with_log_start_offset(a.log_start_offset);
                if version >= 8 {
                    r = r.with_error_message(None);
                }
                if version >= 10 {
                    if let Some((leader, epoch)) = a.leader_hint {
                        r.current_leader = produce_response::LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(epoch);
                    }
                    add_endpoints(&mut endpoints, &a.endpoints);
                }
                parts.push(r);
            }
            let tr = if version >= 13 {
                TopicProduceResponse::default().with_topic_id(t.topic_id)
            } else {
                TopicProduceResponse::default().with_name(t.name.clone())
            };
            resp.responses.push(tr.with_partition_responses(parts));
        }
        resp.node_endpoints = endpoints
            .iter()
            .filter_map(|id| self.broker(*id))
            .map(|b| {
                produce_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(b.host.clone()))
                    .with_port(b.port)
                    .with_rack(None)
            })
            .collect();
        (resp, delay)
    }

    fn fetch_answer(
        &mut self,
        node: i32,
        version: i16,
        req: &FetchRequest,
    ) -> (FetchResponse, Duration) {
        let mut resp = FetchResponse::default();
        if version >= 7 {
            // Like a broker: (0, 0) creates a session; (0, -1) is sessionless.
            resp.session_id = if req.session_id == 0 && req.session_epoch == 0 {
                self.next_session += 1;
                self.next_session
            } else {
                req.session_id
            };
        }
        let mut delay = Duration::ZERO;
        let mut endpoints: Vec<i32> = Vec::new();
        for t in &req.topics {
            let name = self.resolve(&t.topic, &t.topic_id);
            let mut parts = Vec::new();
            for p in &t.partitions {
                let a = self
                    .fetch
                    .get_mut(&key(node, &name, p.partition))
                    .and_then(Answers::next)
                    .unwrap_or_default();
                delay = delay.max(a.delay);
                resp.throttle_time_ms = resp.throttle_time_ms.max(a.throttle_ms);
                let mut d = PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_error_code(a.error)
                    .with_high_watermark(a.high_watermark)
                    .with_last_stable_offset(a.high_watermark)
                    .with_log_start_offset(0)
                    .with_records(Some(a.records.clone()));
                if version >= 12 {
                    if let Some((leader, epoch)) = a.leader_hint {
                        d.current_leader = fetch_response::LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(epoch);
                    }
                }
                if version >= 16 {
                    add_endpoints(&mut endpoints, &a.endpoints);
                }
                parts.push(d);
            }
            let tr = if version >= 13 {
                FetchableTopicResponse::default().with_topic_id(t.topic_id)
            } else {
                FetchableTopicResponse::default().with_topic(t.topic.clone())
            };
            resp.responses.push(tr.with_partitions(parts));
        }
        resp.node_endpoints = endpoints
            .iter()
            .filter_map(|id| self.broker(*id))
            .map(|b| {
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(b.host.clone()))
                    .with_port(b.port)
                    .with_rack(None)
            })
            .collect();
        (resp, delay)
    }

    fn list_offsets_answer(
        &mut self,
        node: i32,
        req: &ListOffsetsRequest,
    ) -> (ListOffsetsResponse, Duration) {
        let mut resp = ListOffsetsResponse::default();
        let mut delay = Duration::ZERO;
        for t in &req.topics {
            let name = t.name.0.to_string();
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let a = self
                        .list_offsets
                        .get_mut(&key(node, &name, p.partition_index))
                        .and_then(Answers::next)
                        .unwrap_or(OffsetAnswer::ok(0, p.current_leader_epoch));
                    delay = delay.max(a.delay);
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(a.error)
                        .with_timestamp(a.timestamp)
                        .with_offset(a.offset)
                        .with_leader_epoch(a.leader_epoch)
                })
                .collect();
            resp.topics.push(
                ListOffsetsTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(parts),
            );
        }
        (resp, delay)
    }

    fn epochs_answer(
        &mut self,
        node: i32,
        req: &OffsetForLeaderEpochRequest,
    ) -> OffsetForLeaderEpochResponse {
        let mut resp = OffsetForLeaderEpochResponse::default();
        for t in &req.topics {
            let name = t.topic.0.to_string();
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    // Unscripted: the epoch is unknown to this log (what Kafka answers for an
                    // epoch older than any it has).
                    let a = self
                        .epochs
                        .get_mut(&key(node, &name, p.partition))
                        .and_then(Answers::next)
                        .unwrap_or(EpochAnswer {
                            error: 0,
                            leader_epoch: -1,
                            end_offset: -1,
                        });
                    EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_error_code(a.error)
                        .with_leader_epoch(a.leader_epoch)
                        .with_end_offset(a.end_offset)
                })
                .collect();
            resp.topics.push(
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(parts),
            );
        }
        resp
    }
}

fn add_endpoints(into: &mut Vec<i32>, from: &[i32]) {
    for e in from {
        if !into.contains(e) {
            into.push(*e);
        }
    }
}

enum Action {
    Reply(Bytes, Duration),
    Silent,
    Close,
}

struct Head {
    api_key: i16,
    version: i16,
    correlation_id: i32,
    client_id: Option<String>,
    /// Offset of the body in the frame; None when the header layout is not known.
    body: Option<usize>,
}

/// Reads a request header in place: api key, version, correlation id, client id (header v1/v2),
/// tagged fields (header v2, known APIs only).
fn parse_head(frame: &[u8]) -> Option<Head> {
    let b = frame.get(4..)?;
    if b.len() < 8 {
        return None;
    }
    let api_key = i16::from_be_bytes([b[0], b[1]]);
    let version = i16::from_be_bytes([b[2], b[3]]);
    let correlation_id = i32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    let mut head = Head {
        api_key,
        version,
        correlation_id,
        client_id: None,
        body: None,
    };
    let Some(len) = b.get(8..10).map(|s| i16::from_be_bytes([s[0], s[1]])) else {
        return Some(head);
    };
    let mut off = 10;
    if len >= 0 {
        let Some(s) = b.get(off..off + len as usize) else {
            return Some(head);
        };
        head.client_id = Some(String::from_utf8_lossy(s).into_owned());
        off += len as usize;
    }
    if let Ok(k) = ApiKey::try_from(api_key) {
        if k.request_header_version(version) >= 2 {
            let n = uvarint(b, &mut off)?;
            for _ in 0..n {
                uvarint(b, &mut off)?;
                off += uvarint(b, &mut off)? as usize;
            }
        }
        if off <= b.len() {
            head.body = Some(4 + off);
        }
    }
    Some(head)
}

fn uvarint(b: &[u8], off: &mut usize) -> Option<u32> {
    let mut v = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*off)?;
        *off += 1;
        v |= ((byte & 0x7f) as u32) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn decode<T: Decodable>(mut body: Bytes, version: i16) -> Result<T, ()> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        T::decode(&mut body, version)
    }));
    match r {
        Ok(Ok(v)) if body.is_empty() => Ok(v),
        _ => Err(()),
    }
}

/// A response frame: length, correlation id, (tagged fields for header v1), body.
pub fn respond<T: Encodable>(api: ApiKey, version: i16, corr: i32, msg: &T) -> Bytes {
    let hv = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let mut b = BytesMut::new();
    b.put_i32(0);
    b.put_i32(corr);
    if hv >= 1 {
        b.put_u8(0);
    }
    msg.encode(&mut b, version)
        .unwrap_or_else(|e| panic!("fake {api:?} v{version} response does not encode: {e}"));
    let len = (b.len() - 4) as i32;
    b[0..4].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

// ---------------------------------------------------------------------------------------------
// The brokers
// ---------------------------------------------------------------------------------------------

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A running fake cluster. Dropping it stops every broker and closes their connections.
pub struct FakeCluster {
    script: Arc<Mutex<Script>>,
    addrs: BTreeMap<i32, SocketAddr>,
    /// Each node's accept loop (which owns its connections).
    tasks: Mutex<BTreeMap<i32, JoinHandle<()>>>,
}

impl FakeCluster {
    /// Starts one fake broker per node id, each on 127.0.0.1:0, and no topics.
    pub async fn start(nodes: &[i32]) -> FakeCluster {
        let mut listeners = Vec::new();
        let mut brokers = Vec::new();
        for &id in nodes {
            let l = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a fake broker");
            let addr = l.local_addr().unwrap();
            brokers.push(BrokerMeta {
                id,
                host: addr.ip().to_string(),
                port: addr.port() as i32,
            });
            listeners.push((id, addr, l));
        }
        let script = Arc::new(Mutex::new(Script::new(brokers)));
        let mut addrs = BTreeMap::new();
        let mut tasks = BTreeMap::new();
        for (id, addr, l) in listeners {
            addrs.insert(id, addr);
            tasks.insert(id, tokio::spawn(accept_loop(id, l, script.clone())));
        }
        FakeCluster {
            script,
            addrs,
            tasks: Mutex::new(tasks),
        }
    }

    /// Broker `node` goes down: its connections close and its port refuses new ones.
    pub fn stop_node(&self, node: i32) {
        if let Some(t) = self.tasks.lock().unwrap().remove(&node) {
            t.abort();
        }
    }

    /// Broker `node` comes back on its address.
    pub async fn start_node(&self, node: i32) {
        let addr = self.addrs[&node];
        let mut tries = 0;
        let l = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind fake broker {node} at {addr}: {e}"),
            }
        };
        let t = tokio::spawn(accept_loop(node, l, self.script.clone()));
        self.tasks.lock().unwrap().insert(node, t);
    }

    /// The script, to change what the brokers answer from now on.
    pub fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn addr(&self, node: i32) -> SocketAddr {
        self.addrs[&node]
    }

    /// Every broker's address, comma-separated (fairlead's `bootstrap`).
    pub fn bootstrap(&self) -> String {
        self.addrs
            .values()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn received(&self) -> Vec<Received> {
        self.script().received.clone()
    }

    /// Requests of `api` that `node` received from the client (directly, or split, rerouted or
    /// replayed by fairlead), in arrival order.
    pub fn client_requests(&self, node: i32, api: ApiKey) -> Vec<Received> {
        self.script()
            .received
            .iter()
            .filter(|r| r.node == node && r.api_key == api as i16 && r.is_from_client())
            .cloned()
            .collect()
    }

    /// Requests of `api` from the client, whichever broker received them.
    pub fn client_requests_any(&self, api: ApiKey) -> Vec<Received> {
        self.script()
            .received
            .iter()
            .filter(|r| r.api_key == api as i16 && r.is_from_client())
            .cloned()
            .collect()
    }

    /// Connections to `node` that are open now (accepted and not ended).
    pub fn open_connections(&self, node: i32) -> Vec<u64> {
        let s = self.script();
        s.connections
            .iter()
            .filter(|(n, c)| *n == node && !s.closed.contains(c))
            .map(|(_, c)| *c)
            .collect()
    }

    /// The shared script, for a task that changes it later.
    pub fn script_handle(&self) -> Arc<Mutex<Script>> {
        self.script.clone()
    }

    /// fairlead's own requests of `api` to `node`.
    pub fn own_requests(&self, node: i32, api: ApiKey) -> Vec<Received> {
        self.script()
            .received
            .iter()
            .filter(|r| r.node == node && r.api_key == api as i16 && !r.is_from_client())
            .cloned()
            .collect()
    }

    /// Waits until `pred` holds for the received requests (or panics after `within`).
    pub async fn wait_for(&self, what: &str, within: Duration, pred: impl Fn(&[Received]) -> bool) {
        let end = Instant::now() + within;
        loop {
            if pred(&self.script().received) {
                return;
            }
            assert!(Instant::now() < end, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().values() {
            t.abort();
        }
    }
}

async fn accept_loop(node: i32, listener: TcpListener, script: Arc<Mutex<Script>>) {
    // Connections live in this set: aborting the loop drops the set, which aborts them.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let _ = socket.set_nodelay(true);
                let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                script.lock().unwrap_or_else(|e| e.into_inner()).connections.push((node, conn));
                conns.spawn(serve(node, conn, socket, script.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve(node: i32, conn: u64, socket: TcpStream, script: Arc<Mutex<Script>>) {
    serve_until_closed(node, conn, socket, script.clone()).await;
    script
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .closed
        .insert(conn);
}

async fn serve_until_closed(node: i32, conn: u64, socket: TcpStream, script: Arc<Mutex<Script>>) {
    let (mut rd, mut wr) = socket.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let mut writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut later = JoinSet::new();
    loop {
        let mut len = [0u8; 4];
        if rd.read_exact(&mut len).await.is_err() {
            break;
        }
        let n = i32::from_be_bytes(len);
        if !(0..=64 * 1024 * 1024).contains(&n) {
            break;
        }
        let mut frame = BytesMut::with_capacity(4 + n as usize);
        frame.put_slice(&len);
        frame.resize(4 + n as usize, 0);
        if rd.read_exact(&mut frame[4..]).await.is_err() {
            break;
        }
        let (action, ordered) = {
            let mut s = script.lock().unwrap_or_else(|e| e.into_inner());
            (s.handle(node, conn, frame.freeze()), s.ordered)
        };
        match action {
            Action::Reply(resp, delay) if delay.is_zero() => {
                let _ = tx.send(resp);
            }
            Action::Reply(resp, delay) if ordered => {
                // Kafka reads no further request of a connection until it answered this one.
                tokio::time::sleep(delay).await;
                let _ = tx.send(resp);
            }
            Action::Reply(resp, delay) => {
                let tx = tx.clone();
                later.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(resp);
                });
            }
            Action::Silent => {}
            Action::Close => {
                later.abort_all();
                writer.abort();
                return;
            }
        }
    }
    // The client closed: let delayed answers go, then close.
    while later.join_next().await.is_some() {}
    drop(tx);
    let _ = (&mut writer).await;
}

// ---------------------------------------------------------------------------------------------
// Record batches
// ---------------------------------------------------------------------------------------------

/// A magic-2 record batch, uncompressed, CreateTime. `producer_id` -1 makes it non-idempotent
/// (pass base sequence -1); otherwise records carry sequences from `base_sequence` on.
pub fn batch(producer_id: i64, base_sequence: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: if producer_id >= 0 { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol's encoder starts a new batch wherever offset - sequence changes;
            // a produce request carries one batch (the broker refuses more), so keep it
            // constant. Only the first record's sequence is written: the base sequence.
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode a record batch");
    buf.freeze()
}

/// The batch as a log stores it: base offset and partition leader epoch set by the broker
/// (neither is covered by the CRC).
pub fn stored_at(batch: &Bytes, base_offset: i64, leader_epoch: i32) -> Bytes {
    let mut b = batch.to_vec();
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    b[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    Bytes::from(b)
}

/// The base sequence of the first batch in `records`.
pub fn base_sequence(records: &[u8]) -> i32 {
    i32::from_be_bytes(records[53..57].try_into().unwrap())
}

/// Records in every magic-2 batch of `records` (lastOffsetDelta + 1 each); 1 for anything else.
fn record_count(records: &Bytes) -> i64 {
    let mut off = 0;
    let mut n = 0;
    while off + 61 <= records.len() && records[off + 16] == 2 {
        n += i32::from_be_bytes(records[off + 23..off + 27].try_into().unwrap()) as i64 + 1;
        off +=
            12 + i32::from_be_bytes(records[off + 8..off + 12].try_into().unwrap()).max(0) as usize;
    }
    if n == 0 {
        1
    } else {
        n
    }
}
