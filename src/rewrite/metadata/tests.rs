use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use super::*;
use crate::config::Config;

/// Broker ids the generated answers use: 0..NODES, and -1 (no leader, no controller).
const NODES: i32 = 6;

fn advertised(host: &str, bound: &[i32]) -> Advertised {
    Advertised::new(
        StrBytes::from_string(host.into()),
        bound.iter().map(|n| (*n, 9000 + *n as u16)).collect(),
    )
}

fn all_bound() -> Advertised {
    advertised("fl", &(0..NODES).collect::<Vec<_>>())
}

fn frame(r: &MetadataResponse, v: i16) -> Bytes {
    encode_response(r, ApiKey::Metadata, v, 7).unwrap()
}

fn decoded(frame: &Bytes, v: i16) -> MetadataResponse {
    decode_response(frame, ApiKey::Metadata, v).unwrap()
}

fn walk_all(frame: &Bytes, v: i16) -> Result<Walk, Malformed> {
    walk(frame, v, |_| true)
}

/// The splice's answer as the client reads it: its two parts one after the other.
fn spliced(w: &Walk, a: &Advertised, corr: i32) -> Option<Bytes> {
    splice(w, a, corr).map(|out| out.to_bytes())
}

// ---------------------------------------------------------------------------------------------
// Answers of every version
// ---------------------------------------------------------------------------------------------

fn code() -> impl Strategy<Value = i16> {
    prop_oneof![4 => Just(0i16), 1 => any::<i16>()]
}

/// Unknown tagged fields, mostly none (written only from v9; kafka-protocol writes them in
/// ascending order, as brokers do).
fn tags() -> impl Strategy<Value = BTreeMap<i32, Bytes>> {
    prop_oneof![
        4 => Just(BTreeMap::new()),
        1 => btree_map(0..300i32, vec(any::<u8>(), 0..4).prop_map(Bytes::from), 1..3),
    ]
}

/// Broker id lists, mostly of length `usual` (partitions of one layout, which the walk reads
/// by a faster path: `Shape`), else of any length below `max`.
fn ids(usual: usize, max: usize) -> impl Strategy<Value = Vec<BrokerId>> {
    let id = (-1..NODES).prop_map(BrokerId);
    prop_oneof![2 => vec(id.clone(), usual), 1 => vec(id, 0..max)]
}

fn partition() -> impl Strategy<Value = MetadataResponsePartition> {
    (
        code(),
        0..1000i32,
        -1..NODES,
        any::<i32>(),
        ids(3, 5),
        ids(3, 5),
        ids(0, 2),
        tags(),
    )
        .prop_map(|(e, i, leader, epoch, replicas, isr, offline, tags)| {
            MetadataResponsePartition::default()
                .with_error_code(e)
                .with_partition_index(i)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch)
                .with_replica_nodes(replicas)
                .with_isr_nodes(isr)
                .with_offline_replicas(offline)
                .with_unknown_tagged_fields(tags)
        })
}

fn topic(v: i16) -> impl Strategy<Value = MetadataResponseTopic> {
    // Null names where the schema allows them (v12+); any Unicode in the others.
    let name = if v >= 12 {
        proptest::option::weighted(0.8, "\\PC{0,12}").boxed()
    } else {
        "\\PC{0,12}".prop_map(Some).boxed()
    };
    (
        code(),
        name,
        any::<u128>(),
        any::<bool>(),
        vec(partition(), 0..8),
        any::<i32>(),
        tags(),
    )
        .prop_map(move |(e, name, id, internal, partitions, ops, tags)| {
            MetadataResponseTopic::default()
                .with_error_code(e)
                .with_name(name.map(|n| StrBytes::from_string(n).into()))
                .with_topic_id(uuid::Uuid::from_u128(id))
                .with_is_internal(internal)
                .with_partitions(partitions)
                .with_topic_authorized_operations(if v >= 8 { ops } else { i32::MIN })
                .with_unknown_tagged_fields(tags)
        })
}

fn broker() -> impl Strategy<Value = MetadataResponseBroker> {
    (
        -1..NODES,
        "[a-z0-9.-]{0,20}",
        any::<i32>(),
        proptest::option::of("[a-z0-9-]{0,6}"),
        tags(),
    )
        .prop_map(|(id, host, port, rack, tags)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(rack.map(StrBytes::from_string))
                .with_unknown_tagged_fields(tags)
        })
}

/// A version and an answer of it.
fn response() -> impl Strategy<Value = (i16, MetadataResponse)> {
    (0..=13i16).prop_flat_map(|v| {
        (
            Just(v),
            (
                any::<i32>(),
                vec(broker(), 0..5),
                proptest::option::of("[A-Za-z0-9_-]{0,22}"),
                -1..NODES,
                vec(topic(v), 0..5),
                any::<i32>(),
                code(),
                tags(),
            )
                .prop_map(
                    move |(throttle, brokers, cluster, controller, topics, ops, e, tags)| {
                        MetadataResponse::default()
                            .with_throttle_time_ms(throttle)
                            .with_brokers(brokers)
                            .with_cluster_id(cluster.map(StrBytes::from_string))
                            .with_controller_id(BrokerId(controller))
                            .with_topics(topics)
                            .with_cluster_authorized_operations(if (8..=10).contains(&v) {
                                ops
                            } else {
                                i32::MIN
                            })
                            .with_error_code(e)
                            .with_unknown_tagged_fields(tags)
                    },
                ),
        )
    })
}

/// Which brokers have their port bound: often all, often some; with a short or long host.
fn ports() -> impl Strategy<Value = Advertised> {
    (
        prop_oneof![
            Just(vec![true; NODES as usize]),
            vec(any::<bool>(), NODES as usize)
        ],
        prop_oneof![Just("fl"), Just("fairlead.a-namespace.svc.cluster.local")],
    )
        .prop_map(|(bound, host)| {
            let ids: Vec<i32> = (0..NODES).filter(|n| bound[*n as usize]).collect();
            advertised(host, &ids)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Wherever the splice applies it gives the decoding path's bytes, and it applies wherever
    /// no partition's leader needs a stand-in. The walk learns what decoding learns.
    #[test]
    fn the_splice_gives_the_bytes_of_the_decoding_path(
        (v, r) in response(),
        a in ports(),
        corr in any::<i32>(),
    ) {
        let frame = frame(&r, v);
        let reference = by_decoding(&frame, v, corr, &a).unwrap();
        let d = decoded(&frame, v);
        let w = walk_all(&frame, v).unwrap();
        prop_assert_eq!(&w.learned.brokers, &d.brokers);
        prop_assert_eq!(w.learned.controller_id, d.controller_id);
        let named: Vec<_> = d.topics.iter().filter(|t| t.name.is_some()).cloned().collect();
        prop_assert_eq!(&w.learned.topics, &named);

        let stand_in_needed = d
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.leader_id.0 >= 0 && !a.is_bound(p.leader_id.0));
        match spliced(&w, &a, corr) {
            Some(out) => {
                prop_assert!(!stand_in_needed);
                prop_assert_eq!(out, reference);
            }
            None => prop_assert!(stand_in_needed, "a broker's own answer is spliced"),
        }
    }

    /// Only the topics the caller wants are decoded, in the answer's order.
    #[test]
    fn only_wanted_topics_are_learned((v, r) in response()) {
        let frame = frame(&r, v);
        let even = |n: &str| n.len() % 2 == 0;
        let w = walk(&frame, v, even).unwrap();
        let wanted: Vec<_> = decoded(&frame, v)
            .topics
            .into_iter()
            .filter(|t| t.name.as_ref().is_some_and(|n| even(n)))
            .collect();
        prop_assert_eq!(w.learned.topics, wanted);
    }

    /// A frame with any byte changed: the walk refuses it exactly when the decoding path does,
    /// and where both take it and the splice applies, the two give the same bytes.
    #[test]
    fn a_damaged_frame_is_refused_by_both_paths_or_by_neither(
        (v, r) in response(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut damaged = frame(&r, v).to_vec();
        let at = at.index(damaged.len());
        damaged[at] = byte;
        let damaged = Bytes::from(damaged);
        let a = all_bound();
        let reference = by_decoding(&damaged, v, 7, &a);
        match walk_all(&damaged, v) {
            Ok(w) => {
                let reference = reference.expect("the decoding path takes what the walk takes");
                if let Some(out) = spliced(&w, &a, 7) {
                    prop_assert_eq!(out, reference);
                }
            }
            Err(e) => prop_assert!(reference.is_err(), "the walk refused ({e}) what decoding took"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A small v12 answer, laid out by hand
// ---------------------------------------------------------------------------------------------

/// v12: no broker, controller 1, one topic "t" of one partition led by 1, replicas [1]; every
/// other field at its default.
fn small_v12() -> Bytes {
    let r = MetadataResponse::default()
        .with_controller_id(BrokerId(1))
        .with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(StrBytes::from_static_str("t").into()))
            .with_partitions(vec![MetadataResponsePartition::default()
                .with_leader_id(BrokerId(1))
                .with_replica_nodes(vec![BrokerId(1)])
                .with_isr_nodes(vec![BrokerId(1)])])]);
    frame(&r, 12)
}

/// Where the fields of [`small_v12`] are: size 4, correlation id 4, header tags 1; throttle 4,
/// brokers 1, cluster_id 1, controller 4, topics 1; the topic: error 2, name 2, id 16, ...
const BROKERS_AT: usize = 13;
const TOPICS_AT: usize = 19;
const NAME_AT: usize = 22;
const IS_INTERNAL_AT: usize = 40;
const PARTITIONS_AT: usize = 41;
const REPLICAS_AT: usize = 56;
const PARTITION_TAGS_AT: usize = 67;

fn with(frame: &Bytes, at: usize, replaced: usize, by: &[u8]) -> Bytes {
    let mut b = frame[..at].to_vec();
    b.extend_from_slice(by);
    b.extend_from_slice(&frame[at + replaced..]);
    Bytes::from(b)
}

#[test]
fn the_hand_layout_matches_the_encoding() {
    let f = small_v12();
    assert_eq!(f[BROKERS_AT], 1, "no brokers");
    assert_eq!(f[TOPICS_AT], 2, "one topic");
    assert_eq!(&f[NAME_AT..NAME_AT + 2], &[2, b't']);
    assert_eq!(f[IS_INTERNAL_AT], 0);
    assert_eq!(f[PARTITIONS_AT], 2, "one partition");
    assert_eq!(&f[REPLICAS_AT..REPLICAS_AT + 5], &[2, 0, 0, 0, 1]);
    assert_eq!(&f[PARTITION_TAGS_AT..], &[0, 0x80, 0, 0, 0, 0, 0]);
    assert!(walk_all(&f, 12).unwrap().canonical);
}

/// Every way a frame can be broken is refused by the walk, as by the decoding path.
#[test]
fn malformed_frames_are_refused() {
    let f = small_v12();
    let cases: Vec<(&str, Bytes, Malformed)> = vec![
        (
            "a partition count of 2^32 - 2",
            with(&f, PARTITIONS_AT, 1, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Malformed::TooLong {
                field: "partitions",
                at: PARTITIONS_AT,
                len: u32::MAX as u64 - 1,
                left: f.len() - PARTITIONS_AT - 1,
            },
        ),
        (
            "a null broker array",
            with(&f, BROKERS_AT, 1, &[0]),
            Malformed::Null {
                field: "brokers",
                at: BROKERS_AT,
            },
        ),
        (
            "a null replica array",
            with(&f, REPLICAS_AT, 5, &[0]),
            Malformed::Null {
                field: "replica_nodes",
                at: REPLICAS_AT,
            },
        ),
        (
            "more replicas than bytes",
            with(&f, REPLICAS_AT, 1, &[9]),
            Malformed::TooLong {
                field: "replica_nodes",
                at: REPLICAS_AT,
                len: 8,
                left: f.len() - REPLICAS_AT - 1,
            },
        ),
        (
            "a topic name that is not UTF-8",
            with(&f, NAME_AT + 1, 1, &[0xff]),
            Malformed::NotUtf8 {
                field: "name",
                at: NAME_AT,
            },
        ),
        (
            "a tag past i32::MAX",
            with(
                &f,
                PARTITION_TAGS_AT,
                1,
                &[1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0],
            ),
            Malformed::Tag {
                at: PARTITION_TAGS_AT + 1,
                tag: u32::MAX,
            },
        ),
        (
            "a byte after the body",
            Bytes::from([&f[..], &[0]].concat()),
            Malformed::Trailing { left: 1 },
        ),
    ];
    for (what, frame, want) in cases {
        assert_eq!(walk_all(&frame, 12).unwrap_err(), want, "{what}");
        assert!(by_decoding(&frame, 12, 7, &all_bound()).is_err(), "{what}");
    }
    assert_eq!(walk_all(&f, 14).unwrap_err(), Malformed::Version);
    assert_eq!(walk_all(&f, -1).unwrap_err(), Malformed::Version);
}

/// Before v9 lengths are INT16 (strings) and INT32 (arrays), -1 meaning null.
#[test]
fn negative_and_huge_lengths_are_refused_before_v9() {
    let r = MetadataResponse::default().with_topics(vec![MetadataResponseTopic::default()]);
    let f = frame(&r, 1);
    // size 4, correlation id 4; brokers 4, controller 4, topics 4; topic: error 2, name 2 ...
    let (topics, name) = (16, 22);
    for (what, frame, want) in [
        (
            "a topic count of -2",
            with(&f, topics, 4, &(-2i32).to_be_bytes()),
            Malformed::Negative {
                field: "topics",
                at: topics,
                len: -2,
            },
        ),
        (
            "a topic count of i32::MAX",
            with(&f, topics, 4, &i32::MAX.to_be_bytes()),
            Malformed::TooLong {
                field: "topics",
                at: topics,
                len: i32::MAX as u64,
                left: f.len() - topics - 4,
            },
        ),
        (
            "a name length of -3",
            with(&f, name, 2, &(-3i16).to_be_bytes()),
            Malformed::Negative {
                field: "name",
                at: name,
                len: -3,
            },
        ),
    ] {
        assert_eq!(walk_all(&frame, 1).unwrap_err(), want, "{what}");
        assert!(by_decoding(&frame, 1, 7, &all_bound()).is_err(), "{what}");
    }
}

#[test]
fn every_truncation_is_refused_by_both_paths() {
    let r = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(1))
            .with_host("kafka-1".into())
            .with_port(9092)
            .with_rack(Some("r".into()))])
        .with_cluster_id(Some("c".into()))
        .with_controller_id(BrokerId(1));
    for v in 0..=13 {
        let mut r = r.clone();
        r.topics = decoded(&small_v12(), 12).topics;
        if v < 8 {
            r.topics[0].topic_authorized_operations = i32::MIN;
        }
        let f = frame(&r, v);
        for len in 0..f.len() {
            let cut = f.slice(..len);
            assert!(
                walk_all(&cut, v).is_err(),
                "v{v}, {len} of {} bytes",
                f.len()
            );
            assert!(by_decoding(&cut, v, 7, &all_bound()).is_err());
        }
        assert!(walk_all(&f, v).is_ok());
    }
}

// ---------------------------------------------------------------------------------------------
// When the splice gives way to decoding
// ---------------------------------------------------------------------------------------------

/// Frames kafka-protocol reads but would write differently: the splice gives way, and the
/// decoding path's answer is the broker's answer normalized.
#[test]
fn a_frame_not_in_canonical_form_is_not_spliced() {
    let f = small_v12();
    let a = all_bound();
    for (what, frame) in [
        ("a boolean 2", with(&f, IS_INTERNAL_AT, 1, &[2])),
        (
            "a varint longer than needed",
            with(&f, REPLICAS_AT, 1, &[0x82, 0x00]),
        ),
        (
            "tagged fields out of order",
            with(&f, PARTITION_TAGS_AT, 1, &[2, 5, 0, 3, 0]),
        ),
        (
            "a tag repeated",
            with(&f, PARTITION_TAGS_AT, 1, &[2, 3, 1, 0xaa, 3, 0]),
        ),
        (
            "a fifth varint byte with bits beyond 32",
            with(&f, REPLICAS_AT, 1, &[0x82, 0x80, 0x80, 0x80, 0x70]),
        ),
    ] {
        let w = walk_all(&frame, 12).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(!w.canonical, "{what}");
        assert_eq!(spliced(&w, &a, 7), None, "{what}");
        assert!(by_decoding(&frame, 12, 7, &a).is_ok(), "{what}");
    }
    // In order, the same tags are spliced as they came.
    let in_order = with(&f, PARTITION_TAGS_AT, 1, &[2, 3, 1, 0xaa, 5, 0]);
    let w = walk_all(&in_order, 12).unwrap();
    assert_eq!(
        spliced(&w, &a, 7),
        Some(by_decoding(&in_order, 12, 7, &a).unwrap())
    );

    // The brokers array is written anew either way: how the broker wrote it does not matter.
    let mut r = decoded(&f, 12);
    r.brokers = vec![MetadataResponseBroker::default()
        .with_node_id(BrokerId(1))
        .with_host("k".into())];
    let f = frame(&r, 12);
    let host_at = BROKERS_AT + 1 + 4;
    assert_eq!(&f[host_at..host_at + 2], &[2, b'k']);
    for (what, frame) in [
        (
            "a host length longer than needed",
            with(&f, host_at, 1, &[0x82, 0x00]),
        ),
        (
            "broker tags out of order",
            with(&f, host_at + 2 + 4 + 1, 1, &[2, 5, 0, 3, 1, 0xbb]),
        ),
    ] {
        let w = walk_all(&frame, 12).unwrap_or_else(|e| panic!("{what}: {e}"));
        let out = spliced(&w, &a, 7).unwrap_or_else(|| panic!("{what}: not spliced"));
        assert_eq!(out, by_decoding(&frame, 12, 7, &a).unwrap(), "{what}");
    }
}

/// The header's tagged fields are not the client's business: both paths drop them.
#[test]
fn response_header_tags_are_dropped_as_encoding_drops_them() {
    let f = small_v12();
    let frame = with(&f, 8, 1, &[1, 0, 2, 0xab, 0xcd]);
    let w = walk_all(&frame, 12).unwrap();
    let out = spliced(&w, &all_bound(), 7).unwrap();
    assert_eq!(out, f);
    assert_eq!(out, by_decoding(&frame, 12, 7, &all_bound()).unwrap());
}

/// The topics, nearly all of a large answer, reach the client as a view of the broker's frame:
/// only the head (header, brokers, controller id) is written anew.
#[test]
fn the_topics_are_not_copied() {
    let f = small_v12();
    let w = walk_all(&f, 12).unwrap();
    let out = splice(&w, &all_bound(), 7).unwrap();
    let (at, _) = w.controller.unwrap();
    assert_eq!(out.tail, f.slice(at + 4..));
    assert_eq!(
        out.tail.as_ptr(),
        f[at + 4..].as_ptr(),
        "the topics are a view of the frame"
    );
    assert_eq!(out.head.len(), out.len() - (f.len() - (at + 4)));
}

/// Brokers whose port is not bound are left out and a bound broker stands in as controller,
/// without decoding the partitions; a partition led by an unbound broker needs decoding.
#[test]
fn only_an_unbound_leader_stops_the_splice() {
    let r = MetadataResponse::default()
        .with_brokers(
            (1..=3)
                .map(|n| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(n))
                        .with_host("kafka".into())
                        .with_port(9092)
                })
                .collect(),
        )
        .with_controller_id(BrokerId(2))
        .with_topics(decoded(&small_v12(), 12).topics);
    for v in [0, 1, 8, 9, 12, 13] {
        let f = frame(&r, v);
        let w = walk_all(&f, v).unwrap();
        let a = advertised("fl", &[1, 3]);
        let out = spliced(&w, &a, 7).expect("partition 0 is led by 1, bound");
        assert_eq!(out, by_decoding(&f, v, 7, &a).unwrap(), "v{v}");
        let d = decoded(&out, v);
        assert_eq!(
            d.brokers.iter().map(|b| b.node_id.0).collect::<Vec<_>>(),
            vec![1, 3]
        );
        if v >= 1 {
            assert_eq!(d.controller_id.0, 3, "the next bound broker above 2");
        }
        assert_eq!(spliced(&w, &advertised("fl", &[2, 3]), 7), None, "v{v}");
    }
}

#[test]
fn leader_ids_are_collected_whatever_their_size() {
    let mut n = Nodes::default();
    for id in [1, 1001, 4095, 4096, i32::MAX, 1, 4096] {
        n.insert(id);
    }
    let mut seen = Vec::new();
    assert!(n.all(|id| {
        seen.push(id);
        true
    }));
    assert_eq!(seen, vec![1, 1001, 4095, 4096, i32::MAX]);
    assert!(!n.all(|id| id != 4096));
}

#[test]
fn error_codes_are_counted_per_code() {
    let mut r = decoded(&small_v12(), 12);
    r.topics[0].partitions[0].error_code = 9;
    let mut t = r.topics[0].clone();
    t.error_code = 3;
    t.partitions = vec![t.partitions[0].clone(); 3];
    r.topics.push(t);
    let w = walk_all(&frame(&r, 12), 12).unwrap();
    assert_eq!(w.errors, BTreeMap::from([(3, 1), (9, 4)]));
}

// ---------------------------------------------------------------------------------------------
// Through a cluster
// ---------------------------------------------------------------------------------------------

/// A cluster whose node N is served on port N, and two broker ids: one whose port is free (it
/// gets bound when the answer names it) and one whose port another socket holds.
fn cluster_with_a_held_port() -> (Arc<Cluster>, i32, i32, std::net::TcpListener) {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free_node = free.local_addr().unwrap().port() as i32;
    drop(free);
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held_node = held.local_addr().unwrap().port() as i32;
    let mut cfg = Config::with_bootstrap("127.0.0.1:1");
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.node_port_base = 0;
    // What `testing::cluster` does (a floor above this one): ports bound are never served.
    let (to_listener, _) = tokio::sync::mpsc::unbounded_channel();
    let ports = crate::ports::Ports::new(cfg.listen, cfg.node_port_base, to_listener);
    let cluster = Cluster::new(cfg, ports, Arc::default());
    (cluster, free_node, held_node, held)
}

fn answer(brokers: &[i32], leaders: &[i32]) -> MetadataResponse {
    MetadataResponse::default()
        .with_brokers(
            brokers
                .iter()
                .map(|n| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(*n))
                        .with_host("kafka".into())
                        .with_port(9092)
                })
                .collect(),
        )
        .with_controller_id(BrokerId(brokers[0]))
        .with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(StrBytes::from_static_str("t").into()))
            .with_partitions(
                leaders
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        MetadataResponsePartition::default()
                            .with_partition_index(i as i32)
                            .with_leader_id(BrokerId(*l))
                            .with_leader_epoch(3)
                            .with_replica_nodes(brokers.iter().map(|b| BrokerId(*b)).collect())
                    })
                    .collect(),
            )])
}

#[test]
fn an_answer_is_learned_before_it_is_rewritten() {
    let (cluster, free, held, _held) = cluster_with_a_held_port();
    let f = frame(&answer(&[free], &[free]), 12);
    let out = rewrite(&cluster, &f, 12, 7, |_| true, &|_| true)
        .unwrap()
        .to_bytes();
    // The broker heard of here got its port, and the answer names it there.
    let d = decoded(&out, 12);
    assert_eq!(d.brokers.len(), 1);
    assert_eq!((d.brokers[0].node_id.0, d.brokers[0].port), (free, free));
    assert_eq!(
        cluster.leadership.leader("t", 0).map(|l| l.node),
        Some(free)
    );
    let _ = held;
}

#[test]
fn a_partition_led_by_an_unbound_broker_is_rewritten_by_decoding() {
    let (cluster, free, held, _held) = cluster_with_a_held_port();
    let f = frame(&answer(&[free, held], &[free, held]), 12);
    let out = rewrite(&cluster, &f, 12, 7, |_| true, &|_| true)
        .unwrap()
        .to_bytes();
    let a = cluster.advertised();
    assert!(!a.is_bound(held), "its port is held elsewhere");
    assert_eq!(out, by_decoding(&f, 12, 7, &a).unwrap());
    let d = decoded(&out, 12);
    assert_eq!(
        d.brokers.iter().map(|b| b.node_id.0).collect::<Vec<_>>(),
        vec![free]
    );
    let leaders: Vec<i32> = d.topics[0]
        .partitions
        .iter()
        .map(|p| p.leader_id.0)
        .collect();
    assert_eq!(leaders, vec![free, free], "the bound replica stands in");
    // fairlead itself routes by the brokers' own answer.
    assert_eq!(
        cluster.leadership.leader("t", 1).map(|l| l.node),
        Some(held)
    );
}

#[test]
fn topics_not_wanted_are_not_learned() {
    let (cluster, free, _, _held) = cluster_with_a_held_port();
    let f = frame(&answer(&[free], &[free]), 12);
    let out = rewrite(&cluster, &f, 12, 7, |_| false, &|_| true)
        .unwrap()
        .to_bytes();
    assert_eq!(out, by_decoding(&f, 12, 7, &cluster.advertised()).unwrap());
    assert!(cluster.leadership.leader("t", 0).is_none());
    assert!(
        cluster.advertised().is_bound(free),
        "brokers are learned all the same"
    );
}
