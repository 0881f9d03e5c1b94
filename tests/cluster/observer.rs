//! Tests of the strict observer (tests/support/observer.rs) against the real 3-broker test bed.
//!
//! The observer is the judge of fairlead's "no leadership error reaches the client" claim, so
//! these tests prove the judge: it sees errors the brokers really send (a Produce to a follower
//! answers NOT_LEADER_OR_FOLLOWER), it keeps clients on its own listeners (every broker address
//! is rewritten), it does not alter what it does not rewrite, and it does not stay silent about
//! what it cannot read.

#[path = "../support/bed.rs"]
mod bed;
#[path = "../support/observer.rs"]
mod observer;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, FetchRequest, FindCoordinatorRequest, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use observer::{Observer, LEADERSHIP_CODES};

const PRODUCE: i16 = ApiKey::Produce as i16;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const UNKNOWN_LEADER_EPOCH: i16 = 75;
const UNSUPPORTED_VERSION: i16 = 35;
const PARTITIONS: i32 = 3;

// ---------------------------------------------------------------------------------------------
// The test bed

struct Testbed {
    bootstrap: String,
    /// node id -> "127.0.0.1:1909x", the brokers' real addresses.
    brokers: BTreeMap<i32, String>,
}

/// Starts (or reuses) the cluster once per test binary; a failure fails the test.
fn testbed() -> &'static Testbed {
    static TESTBED: OnceLock<Testbed> = OnceLock::new();
    TESTBED.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testbed/testbed");
        let out = Command::new(script)
            .arg("up")
            .output()
            .expect("cannot run tests/testbed/testbed");
        assert!(
            out.status.success(),
            "testbed up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("testbed up did not print JSON");
        let brokers = json["brokers"]
            .as_object()
            .expect("no brokers in the testbed JSON")
            .iter()
            .map(|(id, addr)| (id.parse().unwrap(), addr.as_str().unwrap().to_owned()))
            .collect();
        Testbed {
            bootstrap: json["bootstrap"].as_str().expect("no bootstrap").to_owned(),
            brokers,
        }
    })
}

fn unique_topic(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "observer-test-{what}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

// ---------------------------------------------------------------------------------------------
// A minimal blocking Kafka client: whole frames, one request at a time.

struct Client {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            next_correlation_id: 1,
        }
    }

    fn send_frame(&mut self, frame: &[u8]) {
        let size = i32::try_from(frame.len()).unwrap().to_be_bytes();
        self.stream.write_all(&size).unwrap();
        self.stream.write_all(frame).unwrap();
    }

    fn receive_frame(&mut self) -> Bytes {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).unwrap();
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame).unwrap();
        Bytes::from(frame)
    }

    fn send<R: Request>(&mut self, request: &R, version: i16) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        self.send_frame(&encode_request(request, version, correlation_id));
        correlation_id
    }

    /// Sends with a chosen correlation id and returns the raw response frame.
    fn call_raw<R: Request>(&mut self, request: &R, version: i16, correlation_id: i32) -> Bytes {
        self.send_frame(&encode_request(request, version, correlation_id));
        self.receive_frame()
    }

    fn call<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        let correlation_id = self.send(request, version);
        let frame = self.receive_frame();
        decode_response::<R>(frame, version, correlation_id)
    }
}

fn encode_request<R: Request>(request: &R, version: i16, correlation_id: i32) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("observer-test")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, R::header_version(version)).unwrap();
    request.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn decode_response<R: Request>(mut frame: Bytes, version: i16, correlation_id: i32) -> R::Response {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
    assert_eq!(header.correlation_id, correlation_id, "correlation id");
    let response = R::Response::decode(&mut frame, version).unwrap();
    assert!(!frame.has_remaining(), "bytes left after the response");
    response
}

// ---------------------------------------------------------------------------------------------
// Requests

fn metadata(client: &mut Client, topic: Option<&str>) -> MetadataResponse {
    let topics =
        topic.map(|name| vec![MetadataRequestTopic::default().with_name(Some(topic_name(name)))]);
    let request = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(false);
    client.call(&request, 12)
}

/// node id -> "host:port" as the response advertises it.
fn brokers(metadata: &MetadataResponse) -> BTreeMap<i32, String> {
    metadata
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect()
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn record_batch(value: &str) -> Bytes {
    producer_batch(-1, value)
}

fn produce(topic: &str, partition: i32, acks: i16, value: &str) -> ProduceRequest {
    let data = PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(record_batch(value)));
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![data])])
}

/// The single partition result of a one-partition Produce.
fn produce_result(
    response: &ProduceResponse,
) -> &kafka_protocol::messages::produce_response::PartitionProduceResponse {
    assert_eq!(response.responses.len(), 1);
    assert_eq!(response.responses[0].partition_responses.len(), 1);
    &response.responses[0].partition_responses[0]
}

fn fetch(topic: &str, partition: i32, offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(1 << 20)])])
}

/// A fresh 3-partition, RF3 topic, created through `client`, with its leaders once every
/// partition has one and accepts writes (checked directly against the brokers, so the observer
/// under test sees none of the warm-up).
struct TestTopic {
    name: String,
    /// partition -> leader node id
    leaders: BTreeMap<i32, i32>,
    topic_id: String,
}

fn create_topic(client: &mut Client, what: &str) -> TestTopic {
    let name = unique_topic(what);
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(15_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(&name))
            .with_num_partitions(PARTITIONS)
            .with_replication_factor(3)]);
    let response = client.call(&request, 7);
    assert_eq!(response.topics.len(), 1);
    assert_eq!(
        response.topics[0].error_code, 0,
        "CreateTopics {name}: {response:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut direct = Client::connect(testbed().bootstrap.split(',').next().unwrap());
    let (leaders, topic_id) = loop {
        let md = metadata(&mut direct, Some(&name));
        let topic = &md.topics[0];
        let leaders: BTreeMap<i32, i32> = topic
            .partitions
            .iter()
            .filter(|p| p.error_code == 0 && p.leader_id.0 >= 0)
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        if topic.error_code == 0 && leaders.len() == PARTITIONS as usize {
            break (leaders, topic.topic_id.to_string());
        }
        assert!(Instant::now() < deadline, "no leaders for {name}: {md:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for (&partition, &leader) in &leaders {
        let mut leader_client = Client::connect(&testbed().brokers[&leader]);
        loop {
            let response = leader_client.call(&produce(&name, partition, 1, "warm-up"), 9);
            if produce_result(&response).error_code == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}/{partition} never writable"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    TestTopic {
        name,
        leaders,
        topic_id,
    }
}

fn follower_of(leader: i32) -> i32 {
    *testbed().brokers.keys().find(|&&id| id != leader).unwrap()
}

/// node id -> the observer's listener for that broker, from Metadata through the observer.
fn observer_brokers(observer: &Observer) -> BTreeMap<i32, String> {
    let mut client = Client::connect(&observer.bootstrap());
    brokers(&metadata(&mut client, None))
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn broker_addresses_are_rewritten_to_observer_listeners() {
    if bed::skip_without_testbed() {
        return;
    }
    let bed = testbed();
    let observer = Observer::start(&bed.bootstrap).unwrap();
    let mut client = Client::connect(&observer.bootstrap());

    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("observer-test"))
        .with_client_software_version(StrBytes::from_static_str("0"));
    let versions = client.call(&request, 3);
    assert_eq!(versions.error_code, 0);
    for api in &versions.api_keys {
        let key = ApiKey::try_from(api.api_key).expect("an api kafka-protocol does not know");
        assert!(
            api.min_version <= api.max_version && api.max_version <= key.valid_versions().max,
            "{key:?} advertised {}..={} beyond kafka-protocol's {:?}",
            api.min_version,
            api.max_version,
            key.valid_versions()
        );
    }
    let produce_max = versions.api_keys.iter().find(|a| a.api_key == PRODUCE);
    assert!(
        produce_max.is_some_and(|a| a.max_version >= 12),
        "{versions:?}"
    );

    let md = metadata(&mut client, None);
    let rewritten = brokers(&md);
    assert_eq!(rewritten.len(), 3, "{md:?}");
    let observer_port = observer.bootstrap().rsplit_once(':').unwrap().1.to_owned();
    let mut ports = BTreeSet::new();
    for b in &md.brokers {
        assert_eq!(b.host.as_str(), "127.0.0.1");
        let addr = format!("{}:{}", b.host.as_str(), b.port);
        assert!(
            !testbed().brokers.values().any(|real| *real == addr),
            "not rewritten: {b:?}"
        );
        assert_ne!(b.port.to_string(), observer_port);
        ports.insert(b.port);
    }
    assert_eq!(ports.len(), 3, "one listener per broker");

    // Each listener reaches its own broker: a broker describes only its own configs.
    for (&node, addr) in &rewritten {
        let mut there = Client::connect(addr);
        assert_eq!(
            brokers(&metadata(&mut there, None)),
            rewritten,
            "stable mapping"
        );
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_string(node.to_string()))
                .with_configuration_keys(Some(vec![StrBytes::from_static_str("node.id")])),
        ]);
        let response = there.call(&request, 4);
        let result = &response.results[0];
        assert_eq!(
            result.error_code, 0,
            "{addr} is not node {node}: {response:?}"
        );
        assert_eq!(
            result.configs[0].value.as_deref(),
            Some(node.to_string().as_str())
        );
    }

    let cluster = client.call(&DescribeClusterRequest::default(), 1);
    assert_eq!(cluster.error_code, 0);
    let described: BTreeMap<i32, String> = cluster
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, format!("{}:{}", b.host, b.port)))
        .collect();
    assert_eq!(described, rewritten, "DescribeCluster brokers");

    // FindCoordinator, old (top-level address) and new (coordinators[]) layouts. The first call
    // on a fresh cluster may answer COORDINATOR_NOT_AVAILABLE while __consumer_offsets is made.
    let group = StrBytes::from_string(unique_topic("group"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v3 = client.call(
            &FindCoordinatorRequest::default().with_key(group.clone()),
            3,
        );
        let v4 = client.call(
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![group.clone()]),
            4,
        );
        if v3.error_code == 0 && v4.coordinators[0].error_code == 0 {
            let old = format!("{}:{}", v3.host, v3.port);
            let new = &v4.coordinators[0];
            assert_eq!(rewritten.get(&v3.node_id.0), Some(&old), "{v3:?}");
            let new_addr = format!("{}:{}", new.host, new.port);
            assert_eq!(rewritten.get(&new.node_id.0), Some(&new_addr), "{v4:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no coordinator: {v3:?} {v4:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    assert!(observer.undecodable().is_empty(), "{}", observer.report());
    let responses = observer.responses();
    for api in [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::DescribeConfigs,
    ] {
        assert!(
            responses.get(&(api as i16)).is_some_and(|&n| n > 0),
            "{api:?}"
        );
    }
    assert_eq!(
        observer.count(&LEADERSHIP_CODES),
        0,
        "{}",
        observer.report()
    );

    // Dropping the observer closes the connections it relays.
    drop(observer);
    let mut byte = [0u8; 1];
    match client.stream.read(&mut byte) {
        Ok(0) | Err(_) => {}
        Ok(_) => panic!("data after the observer was dropped"),
    }
}

#[test]
fn produce_to_a_follower_is_counted_as_not_leader_or_follower() {
    if bed::skip_without_testbed() {
        return;
    }
    let bed = testbed();
    let observer = Observer::start(&bed.bootstrap).unwrap();
    let topic = create_topic(&mut Client::connect(&observer.bootstrap()), "v9");
    let via = observer_brokers(&observer);
    let leader = topic.leaders[&0];
    let follower = follower_of(leader);

    let mut to_follower = Client::connect(&via[&follower]);
    let response = to_follower.call(&produce(&topic.name, 0, 1, "to follower"), 9);
    let result = produce_result(&response);
    assert_eq!(result.error_code, NOT_LEADER_OR_FOLLOWER, "{response:?}");
    assert_eq!(result.base_offset, -1, "nothing written");
    assert_eq!(observer.count_api(PRODUCE, &[NOT_LEADER_OR_FOLLOWER]), 1);
    assert_eq!(
        observer.errors().get(&(PRODUCE, NOT_LEADER_OR_FOLLOWER)),
        Some(&1)
    );
    assert_eq!(
        observer.count(&LEADERSHIP_CODES),
        1,
        "{}",
        observer.report()
    );
    let expected = format!(
        "Produce v9 code=6 topic={} partition=0 upstream={}",
        topic.name, bed.brokers[&follower]
    );
    assert_eq!(observer.leadership_samples(), vec![expected]);

    let mut to_leader = Client::connect(&via[&leader]);
    let response = to_leader.call(&produce(&topic.name, 0, 1, "to leader"), 9);
    assert_eq!(produce_result(&response).error_code, 0, "{response:?}");
    let produce_errors: Vec<_> = observer
        .errors()
        .into_iter()
        .filter(|((key, _), _)| *key == PRODUCE)
        .collect();
    assert_eq!(produce_errors, vec![((PRODUCE, NOT_LEADER_OR_FOLLOWER), 1)]);
    assert!(observer.undecodable().is_empty(), "{}", observer.report());
    let report = observer.report();
    assert!(
        report.contains("Produce (0) NotLeaderOrFollower (6): 1"),
        "{report}"
    );
    println!("{report}");
}

#[test]
fn produce_v12_node_endpoints_point_at_the_observer() {
    if bed::skip_without_testbed() {
        return;
    }
    let bed = testbed();
    let observer = Observer::start(&bed.bootstrap).unwrap();
    let topic = create_topic(&mut Client::connect(&observer.bootstrap()), "v12");
    let via = observer_brokers(&observer);
    let leader = topic.leaders[&1];
    let follower = follower_of(leader);

    // Directly, the broker names the new leader by its real address (KIP-951) ...
    let mut direct = Client::connect(&bed.brokers[&follower]);
    let response = direct.call(&produce(&topic.name, 1, 1, "direct"), 12);
    assert_eq!(produce_result(&response).error_code, NOT_LEADER_OR_FOLLOWER);
    assert_eq!(produce_result(&response).current_leader.leader_id.0, leader);
    let direct_endpoints: BTreeMap<i32, String> = response
        .node_endpoints
        .iter()
        .map(|e| (e.node_id.0, format!("{}:{}", e.host, e.port)))
        .collect();
    assert_eq!(direct_endpoints.get(&leader), Some(&bed.brokers[&leader]));

    // ... and through the observer by the observer's listener for it.
    let mut to_follower = Client::connect(&via[&follower]);
    let response = to_follower.call(&produce(&topic.name, 1, 1, "observed"), 12);
    assert_eq!(produce_result(&response).error_code, NOT_LEADER_OR_FOLLOWER);
    assert!(!response.node_endpoints.is_empty(), "{response:?}");
    for e in &response.node_endpoints {
        let addr = format!("{}:{}", e.host, e.port);
        assert_eq!(via.get(&e.node_id.0), Some(&addr), "{response:?}");
    }
    assert_eq!(observer.count_api(PRODUCE, &[NOT_LEADER_OR_FOLLOWER]), 1);
    let samples = observer.leadership_samples();
    assert_eq!(samples.len(), 1);
    assert!(samples[0].starts_with("Produce v12 code=6 "), "{samples:?}");
    assert!(observer.undecodable().is_empty(), "{}", observer.report());
}

#[test]
fn frames_not_rewritten_pass_byte_identical() {
    if bed::skip_without_testbed() {
        return;
    }
    let bed = testbed();
    let observer = Observer::start(&bed.bootstrap).unwrap();
    let topic = create_topic(&mut Client::connect(&observer.bootstrap()), "bytes");
    let via = observer_brokers(&observer);
    let leader = topic.leaders[&2];
    let follower = follower_of(leader);

    // An ApiVersions version the broker does not know: it answers v0 UNSUPPORTED_VERSION, which
    // the observer counts but must not touch (the client falls back using that list).
    let mut direct = Client::connect(&bed.brokers[&leader]);
    let mut observed = Client::connect(&via[&leader]);
    let mut unknown_version = encode_request(&ApiVersionsRequest::default(), 4, 77).to_vec();
    unknown_version[2..4].copy_from_slice(&5i16.to_be_bytes());
    direct.send_frame(&unknown_version);
    observed.send_frame(&unknown_version);
    let (direct_bytes, observed_bytes) = (direct.receive_frame(), observed.receive_frame());
    assert_eq!(&observed_bytes[4..6], &UNSUPPORTED_VERSION.to_be_bytes());
    assert_eq!(observed_bytes, direct_bytes);
    assert_eq!(
        observer
            .errors()
            .get(&(ApiKey::ApiVersions as i16, UNSUPPORTED_VERSION)),
        Some(&1)
    );

    // A Produce error response (no addresses in v9): the same bytes either way.
    let request = produce(&topic.name, 2, 1, "same bytes");
    let mut direct = Client::connect(&bed.brokers[&follower]);
    let mut observed = Client::connect(&via[&follower]);
    let direct_bytes = direct.call_raw(&request, 9, 4242);
    let observed_bytes = observed.call_raw(&request, 9, 4242);
    assert_eq!(observed_bytes, direct_bytes);
    assert_eq!(observer.count_api(PRODUCE, &[NOT_LEADER_OR_FOLLOWER]), 1);

    // A record written through the observer reads back intact (the broker checks the batch CRC,
    // and the reader compares the value), and the Fetch response is identical both ways.
    let mut observed = Client::connect(&via[&leader]);
    let response = observed.call(&produce(&topic.name, 2, -1, "round trip"), 9);
    let result = produce_result(&response);
    assert_eq!(result.error_code, 0, "{response:?}");
    let offset = result.base_offset;
    let request = fetch(&topic.name, 2, offset);
    let observed_bytes = observed.call_raw(&request, 12, 99);
    let direct_bytes = Client::connect(&bed.brokers[&leader]).call_raw(&request, 12, 99);
    assert_eq!(observed_bytes, direct_bytes);
    let response = decode_response::<FetchRequest>(observed_bytes, 12, 99);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let mut records = partition.records.clone().expect("records");
    let batch = RecordBatchDecoder::decode(&mut records).unwrap();
    assert_eq!(batch.records[0].offset, offset);
    assert_eq!(batch.records[0].value.as_deref(), Some(&b"round trip"[..]));

    // acks=0 gets no response; the next request on the connection is still matched correctly.
    observed.send(&produce(&topic.name, 2, 0, "fire and forget"), 9);
    let md = observed.call(
        &MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(&topic.name)))
            ]))
            .with_allow_auto_topic_creation(false),
        12,
    );
    assert_eq!(md.topics[0].error_code, 0);
    assert!(observer.undecodable().is_empty(), "{}", observer.report());
}

#[test]
fn fetch_samples_name_topics_by_id_where_the_version_has_no_names() {
    if bed::skip_without_testbed() {
        return;
    }
    let bed = testbed();
    let observer = Observer::start(&bed.bootstrap).unwrap();
    let topic = create_topic(&mut Client::connect(&observer.bootstrap()), "fetch");
    let via = observer_brokers(&observer);
    let leader = topic.leaders[&0];

    // Fetch v13+ names topics by id. A leader epoch from the future: UNKNOWN_LEADER_EPOCH.
    let md = metadata(
        &mut Client::connect(&bed.brokers[&leader]),
        Some(&topic.name),
    );
    let topic_id = md.topics[0].topic_id;
    let mut request = fetch("", 0, 0);
    request.topics[0].topic_id = topic_id;
    request.topics[0].partitions[0].current_leader_epoch = 1_000_000;
    let mut observed = Client::connect(&via[&leader]);
    let response = observed.call(&request, 17);
    assert_eq!(
        response.responses[0].partitions[0].error_code, UNKNOWN_LEADER_EPOCH,
        "{response:?}"
    );
    assert_eq!(
        observer.count_api(ApiKey::Fetch as i16, &[UNKNOWN_LEADER_EPOCH]),
        1
    );
    let expected = format!(
        "Fetch v17 code=75 topic={} partition=0 upstream={}",
        topic.topic_id, bed.brokers[&leader]
    );
    assert_eq!(observer.leadership_samples(), vec![expected]);
    assert!(observer.undecodable().is_empty(), "{}", observer.report());
}

/// A fake broker for one connection: answers each of `requests` request frames with the frames
/// `answer` returns, then waits for the client to close.
fn fake_broker(
    requests: usize,
    mut answer: impl FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for _ in 0..requests {
            let mut size = [0u8; 4];
            conn.read_exact(&mut size).unwrap();
            let mut request = vec![0u8; i32::from_be_bytes(size) as usize];
            conn.read_exact(&mut request).unwrap();
            for frame in answer(&request) {
                conn.write_all(&(frame.len() as i32).to_be_bytes()).unwrap();
                conn.write_all(&frame).unwrap();
            }
        }
        let _ = conn.read(&mut [0u8; 1]);
    });
    (addr, server)
}

#[test]
fn an_undecodable_response_is_counted_and_still_forwarded() {
    if bed::skip_without_testbed() {
        return;
    }
    // Garbage under the request's correlation id, then a frame that matches no request at all.
    const UNMATCHED: i32 = 0x7fff_0000;
    let (addr, server) = fake_broker(1, |request| {
        let mut garbage = request[4..8].to_vec();
        garbage.extend_from_slice(&[0xde, 0xad, 0xbe]);
        vec![garbage, UNMATCHED.to_be_bytes().to_vec()]
    });
    let observer = Observer::start(&addr).unwrap();
    let mut client = Client::connect(&observer.bootstrap());
    let correlation_id = client.send(&MetadataRequest::default(), 12);
    let first = client.receive_frame();
    let second = client.receive_frame();
    drop(client);
    server.join().unwrap();

    let mut garbage = correlation_id.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xde, 0xad, 0xbe]);
    assert_eq!(first.as_ref(), garbage.as_slice(), "forwarded unchanged");
    assert_eq!(second.as_ref(), &UNMATCHED.to_be_bytes());
    let expected: BTreeMap<i16, u64> = [(-1, 1), (ApiKey::Metadata as i16, 1)].into();
    assert_eq!(observer.undecodable(), expected, "{}", observer.report());
    assert!(observer.responses().is_empty());
    assert!(observer.errors().is_empty());
    let report = observer.report();
    assert!(report.contains("Metadata (3): 1"), "{report}");
}

/// A record batch of `producer_id` (-1: not idempotent), as a Produce request carries it.
fn producer_batch(producer_id: i64, value: &str) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch: if producer_id < 0 { -1 } else { 0 },
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: if producer_id < 0 { -1 } else { 0 },
        timestamp: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
    buf.freeze()
}

/// The observer names the producers whose batches each connection carried: what tells a test
/// whether two producers' batches shared a broker connection behind fairlead.
#[test]
fn producing_connections_name_the_producer_ids_of_their_batches() {
    if bed::skip_without_testbed() {
        return;
    }
    // acks=0: the fake broker reads the three requests and answers none.
    let (addr, server) = fake_broker(3, |_| Vec::new());
    let observer = Observer::start(&addr).unwrap();
    let mut client = Client::connect(&observer.bootstrap());
    let two_partitions = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("t"))
            .with_partition_data(vec![
                PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(producer_batch(4711, "a"))),
                PartitionProduceData::default()
                    .with_index(1)
                    .with_records(Some(producer_batch(4711, "b"))),
            ])]);
    client.send(&two_partitions, 9);
    let mut other = produce("t", 0, 0, "plain");
    other.topic_data[0].partition_data[0].records = Some(producer_batch(4712, "c"));
    client.send(&other, 9);
    client.send(&produce("t", 0, 0, "plain"), 9);
    // Once the fake has read all three (and seen the connection close), the observer has noted
    // them: it does so before forwarding.
    drop(client);
    server.join().unwrap();

    let conns = observer.producing_connections();
    assert_eq!(conns.len(), 1, "{conns:?}");
    let expected: BTreeMap<i64, u64> = [(-1, 1), (4711, 2), (4712, 1)].into();
    assert_eq!(conns[0].producers, expected, "{conns:?}");
    assert_eq!(conns[0].upstream, addr);
}

#[test]
fn api_versions_are_capped_to_what_the_observer_can_decode() {
    if bed::skip_without_testbed() {
        return;
    }
    // A broker newer than kafka-protocol: a Produce version beyond it, an API key it does not
    // know, and a Fetch whose oldest version is already beyond it.
    let (addr, server) = fake_broker(1, |request| {
        let api = |key, min, max| {
            ApiVersion::default()
                .with_api_key(key)
                .with_min_version(min)
                .with_max_version(max)
        };
        let response = ApiVersionsResponse::default()
            .with_api_keys(vec![
                api(0, 0, 99),
                api(1, 50, 60),
                api(3, 0, 12),
                api(1000, 0, 1),
            ])
            .with_finalized_features_epoch(7);
        let mut frame = request[4..8].to_vec();
        response.encode(&mut frame, 3).unwrap();
        vec![frame]
    });
    let observer = Observer::start(&addr).unwrap();
    let mut client = Client::connect(&observer.bootstrap());
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("observer-test"))
        .with_client_software_version(StrBytes::from_static_str("0"));
    let response = client.call(&request, 3);
    drop(client);
    server.join().unwrap();

    let advertised: Vec<_> = response
        .api_keys
        .iter()
        .map(|a| (a.api_key, a.min_version, a.max_version))
        .collect();
    let produce_max = ApiKey::Produce.valid_versions().max;
    assert_eq!(advertised, vec![(0, 0, produce_max), (3, 0, 12)]);
    assert_eq!(response.finalized_features_epoch, 7, "the rest is kept");
    assert_eq!(
        observer.responses(),
        [(ApiKey::ApiVersions as i16, 1)].into()
    );
    assert!(observer.undecodable().is_empty(), "{}", observer.report());
}
