//! Property tests of the codec and of the split/merge the router does with it, the hostile-length
//! guard (`codec::sanity`), and replays of every fuzz finding (`fuzz/regressions/`).
//!
//! * Frames: any sequence of frames, however the stream is cut, comes back identical.
//! * Request headers encoded by kafka-protocol (v1, v2, any client id, tagged fields) parse to
//!   the same api key, version, correlation id and body offset.
//! * Produce and Fetch: flatten then build gives the request back; a subset keeps its order;
//!   answers to a request split in random ways merge into exactly the partitions asked for, in
//!   the order asked.
//! * ApiVersions `cap` never raises a maximum and never touches an API fairlead does not inspect.
//! * A frame claiming a huge array is refused before decoding, without allocating; without the
//!   guard the same frame aborts the process (shown in a child process under `ulimit -v`).
//! * The Metadata walk (`rewrite::metadata`) allocates nothing per topic or partition it does
//!   not learn, and refuses a huge partition count without allocating for it.
//!
//! Tests that may abort the process (a regression) run their body in a child process: the
//! test binary re-runs itself with `FAIRLEAD_CHILD` naming the body, so an abort fails one test
//! with its stderr, not the whole binary.

#[path = "../../fuzz/src/targets.rs"]
#[allow(dead_code)]
mod targets;

#[path = "../../fuzz/src/seeds.rs"]
mod seeds;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, ProduceRequest,
    ProduceResponse, RequestHeader as KpHeader, TopicName,
};
use kafka_protocol::protocol::{encode_request_header_into_buffer, Decodable, Encodable, StrBytes};
use proptest::prelude::*;
use tokio::io::{AsyncRead, ReadBuf};

use fairlead::testing::metadata;
use fairlead::testing::sanity::{self, Direction, Implausible};
use fairlead::testing::{
    api_versions, decode_body, decode_response, encode_response, parse_request, Fetch, FrameReader,
    Produce, RoutedApi, TopicRef,
};

// ---------------------------------------------------------------------------------------------
// Frames and headers
// ---------------------------------------------------------------------------------------------

/// Hands out the given chunks one read at a time, as TCP may.
struct Chunks(VecDeque<Vec<u8>>);

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(mut chunk) = self.0.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                self.0.push_front(chunk.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #[test]
    fn frames_come_back_identical_however_the_stream_is_cut(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 8..300), 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let wire: Vec<u8> = bodies.iter().flat_map(|b| framed(b)).collect();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = VecDeque::new();
        let mut from = 0;
        for cut in at.into_iter().chain([wire.len()]) {
            if cut > from {
                chunks.push_back(wire[from..cut].to_vec());
                from = cut;
            }
        }
        let got = runtime().block_on(async {
            let mut reader = FrameReader::new(Chunks(chunks), 1 << 20, 8);
            let mut got = Vec::new();
            while let Some(f) = reader.read_frame().await.unwrap() {
                got.push(f[4..].to_vec());
            }
            got
        });
        prop_assert_eq!(got, bodies);
    }

    #[test]
    fn request_headers_parse_as_kafka_protocol_encodes_them(
        key in prop::sample::select(
            ApiKey::iter().filter(|k| k.request_header_version(k.valid_versions().max) >= 1).collect::<Vec<_>>()
        ),
        version_pick in any::<prop::sample::Index>(),
        correlation_id in any::<i32>(),
        client_id in prop::option::of("\\PC{0,40}"),
        tags in prop::collection::btree_map(0i32..200, prop::collection::vec(any::<u8>(), 0..20), 0..4),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let range = key.valid_versions();
        let versions: Vec<i16> = (range.min..=range.max)
            .filter(|v| key.request_header_version(*v) >= 1)
            .collect();
        let version = versions[version_pick.index(versions.len())];
        let flexible = key.request_header_version(version) >= 2;
        let mut h = KpHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(client_id.map(StrBytes::from_string));
        if flexible {
            h.unknown_tagged_fields = tags.into_iter().map(|(t, v)| (t, Bytes::from(v))).collect();
        }
        let mut buf = BytesMut::new();
        encode_request_header_into_buffer(&mut buf, &h).unwrap();
        let header_len = buf.len();
        buf.put_slice(&body);
        let frame = framed(&buf);
        let parsed = parse_request(&frame).unwrap();
        prop_assert_eq!(parsed.api_key, key as i16);
        prop_assert_eq!(parsed.api_version, version);
        prop_assert_eq!(parsed.correlation_id, correlation_id);
        prop_assert_eq!(parsed.known, Some(key));
        prop_assert_eq!(parsed.body_offset, Some(4 + header_len));
    }
}

// ---------------------------------------------------------------------------------------------
// Produce and Fetch: flatten, build, merge
// ---------------------------------------------------------------------------------------------

/// Topics as a request names them: by name up to v12, by id from v13 (Produce and Fetch).
fn topic_fields(version: i16, n: usize) -> (TopicName, uuid::Uuid) {
    if version >= 13 {
        (TopicName::default(), uuid::Uuid::from_u128(n as u128 + 1))
    } else {
        (
            TopicName(StrBytes::from_string(format!("topic-{n}"))),
            uuid::Uuid::nil(),
        )
    }
}

/// A shape: for each topic, its distinct partition numbers.
fn shape() -> impl Strategy<Value = Vec<Vec<i32>>> {
    prop::collection::vec(prop::collection::btree_set(0i32..64, 1..5), 1..5)
        .prop_map(|ts| ts.into_iter().map(|ps| ps.into_iter().collect()).collect())
}

fn produce_request(version: i16, shape: &[Vec<i32>], records: &[Vec<u8>]) -> ProduceRequest {
    let mut r = records.iter().cycle();
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1500)
        .with_topic_data(
            shape
                .iter()
                .enumerate()
                .map(|(t, ps)| {
                    let (name, id) = topic_fields(version, t);
                    TopicProduceData::default()
                        .with_name(name)
                        .with_topic_id(id)
                        .with_partition_data(
                            ps.iter()
                                .map(|p| {
                                    PartitionProduceData::default()
                                        .with_index(*p)
                                        .with_records(Some(Bytes::from(r.next().unwrap().clone())))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

fn fetch_request(version: i16, shape: &[Vec<i32>], offsets: &[i64]) -> FetchRequest {
    let mut o = offsets.iter().cycle();
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_session_epoch(-1)
        .with_topics(
            shape
                .iter()
                .enumerate()
                .map(|(t, ps)| {
                    let (name, id) = topic_fields(version, t);
                    FetchTopic::default()
                        .with_topic(name)
                        .with_topic_id(id)
                        .with_partitions(
                            ps.iter()
                                .map(|p| {
                                    FetchPartition::default()
                                        .with_partition(*p)
                                        .with_fetch_offset(*o.next().unwrap())
                                        .with_partition_max_bytes(1 << 20)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// A broker's answer to a sub-request, built with kafka-protocol directly (not with the code
/// under test), partitions in reverse order: the merge must not depend on the broker's order.
trait Broker: RoutedApi {
    fn answer(version: i16, parts: &[(TopicRef, i32)], seed: i64) -> Self::Resp;
}

fn topic_of(t: &TopicRef) -> (TopicName, uuid::Uuid) {
    match t {
        TopicRef::Name(n) => (TopicName(n.clone()), uuid::Uuid::nil()),
        TopicRef::Id(id) => (TopicName::default(), *id),
    }
}

impl Broker for Produce {
    fn answer(_version: i16, parts: &[(TopicRef, i32)], seed: i64) -> ProduceResponse {
        ProduceResponse::default()
            .with_throttle_time_ms(seed as i32 & 0xff)
            .with_responses(
                parts
                    .iter()
                    .rev()
                    .map(|(t, p)| {
                        let (name, id) = topic_of(t);
                        TopicProduceResponse::default()
                            .with_name(name)
                            .with_topic_id(id)
                            .with_partition_responses(vec![PartitionProduceResponse::default()
                                .with_index(*p)
                                .with_base_offset(seed + i64::from(*p))])
                    })
                    .collect(),
            )
    }
}

impl Broker for Fetch {
    fn answer(_version: i16, parts: &[(TopicRef, i32)], seed: i64) -> FetchResponse {
        FetchResponse::default()
            .with_throttle_time_ms(seed as i32 & 0xff)
            .with_responses(
                parts
                    .iter()
                    .rev()
                    .map(|(t, p)| {
                        let (name, id) = topic_of(t);
                        FetchableTopicResponse::default()
                            .with_topic(name)
                            .with_topic_id(id)
                            .with_partitions(vec![PartitionData::default()
                                .with_partition_index(*p)
                                .with_high_watermark(seed + i64::from(*p))
                                .with_records(Some(Bytes::from(vec![*p as u8; 3])))])
                    })
                    .collect(),
            )
    }
}

/// flatten/build round trip, subsets, and the merge of a request split into `groups`.
fn split_and_merge<A: Broker>(req: A::Req, version: i16, subset: &[bool], groups: &[u8])
where
    A::Req: PartialEq + std::fmt::Debug + Clone,
    A::PartReq: PartialEq + std::fmt::Debug,
{
    let (envelope, parts) = A::flatten(req.clone());
    let refs: Vec<(&TopicRef, &A::PartReq)> = parts.iter().map(|(t, p)| (t, p)).collect();
    assert_eq!(
        A::build(&envelope, &refs),
        req,
        "flatten then build all gives the request"
    );

    let chosen: Vec<(&TopicRef, &A::PartReq)> = refs
        .iter()
        .zip(subset.iter().cycle())
        .filter(|(_, keep)| **keep)
        .map(|(r, _)| *r)
        .collect();
    let (_, again) = A::flatten(A::build(&envelope, &chosen));
    let again: Vec<(&TopicRef, &A::PartReq)> = again.iter().map(|(t, p)| (t, p)).collect();
    assert_eq!(again, chosen, "a subset keeps its order");

    // Split by "leader" (a group per partition), answered per group, merged in request order.
    let mut by_group: HashMap<u8, Vec<usize>> = HashMap::new();
    for (i, g) in (0..parts.len()).zip(groups.iter().cycle()) {
        by_group.entry(*g % 4).or_default().push(i);
    }
    let mut answers: HashMap<(TopicRef, i32), A::PartResp> = HashMap::new();
    let mut envelope_resp: Option<A::Resp> = None;
    for (g, idx) in &by_group {
        let keys: Vec<(TopicRef, i32)> = idx
            .iter()
            .map(|i| (parts[*i].0.clone(), A::partition(&parts[*i].1)))
            .collect();
        let resp = A::answer(version, &keys, i64::from(*g) * 1000);
        // Through the wire, as the broker's answer comes.
        let frame = encode_response(&resp, A::KEY, version, 5).unwrap();
        let resp: A::Resp = decode_response(&frame, A::KEY, version).unwrap();
        let (env, got) = A::flatten_resp(resp);
        for (t, p) in got {
            answers.insert((t, A::resp_partition(&p)), p);
        }
        match &mut envelope_resp {
            None => envelope_resp = Some(env),
            Some(e) => A::merge_envelope(e, &env),
        }
    }
    let wanted: Vec<(TopicRef, i32)> = parts
        .iter()
        .map(|(t, p)| (t.clone(), A::partition(p)))
        .collect();
    let merged_parts: Vec<(TopicRef, A::PartResp)> = wanted
        .iter()
        .map(|k| {
            (
                k.0.clone(),
                answers.remove(k).expect("every partition was answered"),
            )
        })
        .collect();
    let merged = A::build_resp(envelope_resp.unwrap(), merged_parts);
    let frame = encode_response(&merged, A::KEY, version, 5).unwrap();
    let (_, out) = A::flatten_resp(decode_response::<A::Resp>(&frame, A::KEY, version).unwrap());
    let got: Vec<(TopicRef, i32)> = out
        .iter()
        .map(|(t, p)| (t.clone(), A::resp_partition(p)))
        .collect();
    assert_eq!(
        got, wanted,
        "exactly the partitions asked for, in the order asked"
    );
}

proptest! {
    #[test]
    fn produce_requests_split_and_merge(
        version in 3i16..=13,
        shape in shape(),
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 1..6),
        subset in prop::collection::vec(any::<bool>(), 1..16),
        groups in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let req = produce_request(version, &shape, &records);
        // What a client sends comes through fairlead's decoder first.
        let req = through_the_wire(req, ApiKey::Produce, version);
        split_and_merge::<Produce>(req, version, &subset, &groups);
    }

    #[test]
    fn fetch_requests_split_and_merge(
        version in 4i16..=18,
        shape in shape(),
        offsets in prop::collection::vec(any::<i64>(), 1..6),
        subset in prop::collection::vec(any::<bool>(), 1..16),
        groups in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let req = fetch_request(version, &shape, &offsets);
        let req = through_the_wire(req, ApiKey::Fetch, version);
        split_and_merge::<Fetch>(req, version, &subset, &groups);
    }
}

/// Encodes a request as a client would and decodes it with fairlead's `decode_body`; the guard
/// must let every genuine request through.
fn through_the_wire<T: Encodable + Decodable>(req: T, key: ApiKey, version: i16) -> T {
    let mut body = BytesMut::new();
    req.encode(&mut body, version).unwrap();
    assert_eq!(
        sanity::walk(&body, key, version, Direction::Request),
        Ok(Some(body.len())),
        "{key:?} v{version}: a genuine request walks to its end"
    );
    let h = KpHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("proptest")));
    let mut buf = BytesMut::new();
    encode_request_header_into_buffer(&mut buf, &h).unwrap();
    buf.put_slice(&body);
    let frame = Bytes::from(framed(&buf));
    let off = parse_request(&frame).unwrap().body_offset.unwrap();
    decode_body(&frame, off, key, version).unwrap()
}

// ---------------------------------------------------------------------------------------------
// ApiVersions cap
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn api_versions_cap_never_raises_a_maximum_nor_touches_other_apis(
        version in 0i16..=4,
        error_code in prop::sample::select(vec![0i16, 0, 0, 35]),
        keys in prop::collection::vec(
            (prop::sample::select(vec![0i16, 1, 2, 3, 10, 19, 23, 21, 32, 60, 78, 79, 1000, -5]), 0i16..40, 0i16..40),
            0..20,
        ),
    ) {
        let r = ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(
            keys.iter()
                .map(|(k, min, max)| ApiVersion::default().with_api_key(*k).with_min_version(*min).with_max_version(*max))
                .collect(),
        );
        let frame = encode_response(&r, ApiKey::ApiVersions, version, 3).unwrap();
        targets::cap_keeps_its_promises(&frame, version);
        // And the inspected APIs end at most at what fairlead decodes.
        let out = api_versions::cap(&frame, version, 3).unwrap();
        let after: ApiVersionsResponse = decode_response(&out, ApiKey::ApiVersions, version).unwrap();
        if error_code == 0 {
            for k in &after.api_keys {
                if let Ok(key) = ApiKey::try_from(k.api_key) {
                    if api_versions::is_inspected(key) {
                        prop_assert!(k.max_version <= api_versions::max_supported(key));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile lengths
// ---------------------------------------------------------------------------------------------

/// Counts allocations made by a thread that switched counting on. `unsafe` is unavoidable:
/// `GlobalAlloc` is an unsafe trait; this only forwards to the system allocator.
struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // try_with: the thread-locals may be gone while a thread exits.
        let _ = COUNTING.try_with(|c| {
            if c.get() {
                let _ = COUNT.try_with(|n| n.set(n.get() + 1));
                let _ = BYTES.try_with(|n| n.set(n.get() + layout.size() as u64));
            }
        });
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

fn allocations_during<R>(f: impl FnOnce() -> R) -> (R, u64) {
    COUNT.with(|n| n.set(0));
    BYTES.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, COUNT.with(Cell::get))
}

/// A Produce v3 request body (after the header) whose topic array claims `count` topics:
/// transactional id null, acks, timeout, then the count, then one real topic.
fn produce_claiming(count: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend((-1i16).to_be_bytes());
    b.extend((-1i16).to_be_bytes());
    b.extend(1000i32.to_be_bytes());
    b.extend(count.to_be_bytes());
    b.extend(1i16.to_be_bytes());
    b.push(b't');
    b.extend(0i32.to_be_bytes());
    b
}

/// The same as a whole request frame, header included (client id "c").
fn produce_frame_claiming(count: i32) -> (Bytes, usize) {
    let mut f = Vec::new();
    f.extend(0i16.to_be_bytes()); // Produce
    f.extend(3i16.to_be_bytes()); // v3
    f.extend(9i32.to_be_bytes()); // correlation id
    f.extend(1i16.to_be_bytes());
    f.push(b'c');
    let off = 4 + f.len();
    f.extend(produce_claiming(count));
    (Bytes::from(framed(&f)), off)
}

proptest! {
    /// Any array count raised past the bytes that follow it is refused, without allocating.
    #[test]
    fn a_huge_topic_count_is_refused_without_allocating(count in (1i32 << 8)..=i32::MAX) {
        let body = produce_claiming(count);
        let (got, allocations) = allocations_during(|| sanity::check(&body, ApiKey::Produce, 3, Direction::Request));
        prop_assert!(matches!(got, Err(Implausible::Length { field: "topic_data", .. })), "{:?}", got);
        prop_assert_eq!(allocations, 0);
    }
}

#[test]
fn a_genuine_frame_is_walked_without_allocating() {
    let body = produce_claiming(1);
    let (got, allocations) =
        allocations_during(|| sanity::check(&body, ApiKey::Produce, 3, Direction::Request));
    assert_eq!(got, Ok(()));
    assert_eq!(allocations, 0);
}

/// A Metadata v12 answer of 3 brokers and `topics` topics of 10 partitions, RF 3.
fn metadata_frame(topics: usize) -> Bytes {
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::MetadataResponse;
    let r = MetadataResponse::default()
        .with_brokers(
            (1..=3)
                .map(|n| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(n))
                        .with_host(StrBytes::from_string(format!("kafka-{n}")))
                        .with_port(9092)
                })
                .collect(),
        )
        .with_controller_id(BrokerId(1))
        .with_topics(
            (0..topics)
                .map(|t| {
                    MetadataResponseTopic::default()
                        .with_name(Some(StrBytes::from_string(format!("t{t}")).into()))
                        .with_partitions(
                            (0..10)
                                .map(|p| {
                                    let r: Vec<BrokerId> =
                                        (0..3).map(|i| BrokerId((p + i) % 3 + 1)).collect();
                                    MetadataResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_leader_id(r[0])
                                        .with_isr_nodes(r.clone())
                                        .with_replica_nodes(r)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    encode_response(&r, ApiKey::Metadata, 12, 7).unwrap()
}

/// The Metadata walk (`rewrite::metadata`) allocates for the brokers and its own few sets, never
/// per topic or partition: 10,000 partitions cost what 10 do.
#[test]
fn a_metadata_answer_is_walked_without_allocating_per_partition() {
    let (small, big) = (metadata_frame(1), metadata_frame(1000));
    let (w, few) = allocations_during(|| metadata::walk(&small, 12, |_| false));
    assert!(w.is_ok());
    let (w, many) = allocations_during(|| metadata::walk(&big, 12, |_| false));
    assert!(w.is_ok());
    assert_eq!(few, many, "allocations for 10 and 10,000 partitions");
    // What the counter sees once topics are decoded: it counts.
    let (_, learning) = allocations_during(|| metadata::walk(&big, 12, |_| true));
    assert!(learning > 10_000, "{learning}");
}

proptest! {
    /// A partition count raised past the bytes that follow is refused without allocating for it
    /// (a few small allocations for the brokers read before it).
    #[test]
    fn a_huge_metadata_partition_count_is_refused_without_allocating(count in 1000u32..) {
        let f = metadata_frame(1);
        // v12: header 9, throttle 4, brokers, cluster_id 1, controller 4, topics 1, then the
        // topic: error 2, name "t0" 3, id 16, is_internal 1, and the partition count.
        let brokers = metadata::walk(&f, 12, |_| false).unwrap().learned.brokers.len();
        assert_eq!(brokers, 3);
        let at = f.windows(3).position(|w| w == [3, b't', b'0']).unwrap() + 3 + 16 + 1;
        assert_eq!(f[at], 11, "10 partitions, compact");
        let mut count_bytes = Vec::new();
        let mut c = count;
        while c >= 0x80 {
            count_bytes.push(c as u8 | 0x80);
            c >>= 7;
        }
        count_bytes.push(c as u8);
        let damaged = Bytes::from([&f[..at], &count_bytes[..], &f[at + 1..]].concat());
        let (got, allocations) = allocations_during(|| metadata::walk(&damaged, 12, |_| false));
        prop_assert!(
            matches!(got, Err(metadata::Malformed::TooLong { field: "partitions", .. })),
            "{:?}",
            got.map(|_| ())
        );
        let bytes = BYTES.with(Cell::get);
        prop_assert!(allocations < 10 && bytes < 4096, "{} allocations, {} bytes", allocations, bytes);
    }
}

/// Runs the test named `child` in a child process of this test binary, with its address space
/// capped at 2 GiB (as the fuzzer caps RSS) so that a huge allocation fails at once instead
/// of pressing on the machine.
fn in_child(child: &str, extra_env: &[(&str, &str)]) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v 2097152 && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([child, "--exact", "--nocapture", "--test-threads=1"])
        .env("FAIRLEAD_CHILD", child);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn is_child(name: &str) -> bool {
    std::env::var("FAIRLEAD_CHILD").is_ok_and(|c| c == name)
}

#[test]
fn without_the_guard_a_huge_count_aborts_the_process() {
    use std::os::unix::process::ExitStatusExt;
    let out = in_child("child_decodes_without_the_guard", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(6),
        "kafka-protocol alone should abort (SIGABRT) on 2^28 claimed topics; stderr: {stderr}"
    );
    assert!(stderr.contains("memory allocation of"), "{stderr}");
    // And what the guard says about the same bytes.
    let body = produce_claiming(1 << 28);
    assert!(matches!(
        sanity::check(&body, ApiKey::Produce, 3, Direction::Request),
        Err(Implausible::Length { .. })
    ));
}

/// The hazard itself: kafka-protocol's decoder, under the same catch_unwind as `decode_body`,
/// on a frame claiming 2^28 topics. Only does anything in a child process.
#[test]
fn child_decodes_without_the_guard() {
    if !is_child("child_decodes_without_the_guard") {
        return;
    }
    let mut body = Bytes::from(produce_claiming(1 << 28));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ProduceRequest::decode(&mut body, 3)
    }));
    println!("survived: {:?}", r.map(|r| r.is_ok()));
}

#[test]
fn decode_body_refuses_a_huge_count_instead_of_aborting() {
    let out = in_child("child_decode_body_on_a_huge_count", &[]);
    assert!(
        out.status.success(),
        "decode_body on a frame claiming i32::MAX topics: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn child_decode_body_on_a_huge_count() {
    if !is_child("child_decode_body_on_a_huge_count") {
        return;
    }
    for count in [1 << 20, 1 << 28, i32::MAX] {
        let (frame, off) = produce_frame_claiming(count);
        let r = decode_body::<ProduceRequest>(&frame, off, ApiKey::Produce, 3);
        assert!(r.is_err(), "a frame claiming {count} topics decoded");
    }
}

/// A v2 batch of one uncompressed record whose header claims `count` records, CRC valid.
fn batch_claiming(count: i32) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let rec = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1000,
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[rec],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf[57..61].copy_from_slice(&count.to_be_bytes());
    Bytes::from(targets::with_valid_crc(&buf))
}

#[test]
fn a_client_batch_claiming_a_billion_records_is_refused_before_decoding() {
    use std::os::unix::process::ExitStatusExt;
    // What `router::written` decodes of the client's batch when a write's outcome is unknown.
    let out = in_child("child_decodes_a_batch_without_the_guard", &[]);
    assert_eq!(
        out.status.signal(),
        Some(6),
        "kafka-protocol alone should abort on 2^30 claimed records: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(matches!(
        sanity::record_batch(&batch_claiming(1 << 30)),
        Err(Implausible::Length {
            field: "record count",
            ..
        })
    ));
    assert_eq!(sanity::record_batch(&batch_claiming(1)), Ok(()));
}

#[test]
fn child_decodes_a_batch_without_the_guard() {
    if !is_child("child_decodes_a_batch_without_the_guard") {
        return;
    }
    let mut batch = batch_claiming(1 << 30);
    let r = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch);
    println!("survived: {:?}", r.is_ok());
}

// ---------------------------------------------------------------------------------------------
// Fuzz findings
// ---------------------------------------------------------------------------------------------

fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Replays `fuzz/regressions/<target>/*` through the target's function, in a child process.
fn replay(target: &str) {
    if regressions(target).is_empty() {
        return;
    }
    let out = in_child("child_replays_regressions", &[("FAIRLEAD_REPLAY", target)]);
    assert!(
        out.status.success(),
        "fuzz/regressions/{target}: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn child_replays_regressions() {
    if !is_child("child_replays_regressions") {
        return;
    }
    let target = std::env::var("FAIRLEAD_REPLAY").unwrap();
    let run: fn(&[u8]) = match target.as_str() {
        "frame" => targets::frame,
        "request_decode" => targets::request_decode,
        "response_merge" => targets::response_merge,
        "rewrite" => targets::rewrite,
        "written" => |d| targets::written(d, fairlead::testing::same_batch_at),
        other => panic!("no replay for target {other}"),
    };
    for file in regressions(&target) {
        println!("replaying {}", file.display());
        run(&std::fs::read(&file).unwrap());
    }
}

#[test]
fn fuzz_regressions_frame() {
    replay("frame");
}

#[test]
fn fuzz_regressions_request_decode() {
    replay("request_decode");
}

#[test]
fn fuzz_regressions_response_merge() {
    replay("response_merge");
}

#[test]
fn fuzz_regressions_rewrite() {
    replay("rewrite");
}

#[test]
fn fuzz_regressions_written() {
    replay("written");
}

/// Writes `fuzz/seeds/`: run after changing `fuzz/src/seeds.rs`, then commit the files.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    seeds::write_all(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds"));
}
