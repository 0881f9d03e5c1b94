//! A seed corpus of valid messages, in the input layouts of `targets.rs`, so the fuzzer starts
//! from frames real clients and brokers send rather than from nothing. Written to
//! `fuzz/seeds/<target>/` by `cargo test --test proptest_codec -- --ignored write_fuzz_seeds`
//! (or `cargo run --manifest-path fuzz/Cargo.toml --example seeds`).

use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{
    NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DeleteRecordsRequest, DescribeClusterResponse,
    FetchRequest, FetchResponse, FindCoordinatorResponse, ListOffsetsRequest, MetadataResponse,
    OffsetForLeaderEpochRequest, ProduceRequest, ProduceResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{encode_request_header_into_buffer, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use fairlead::testing::encode_response;

/// Writes every seed under `root/<target>/`.
pub fn write_all(root: &Path) {
    let mut requests = Vec::new();
    for v in [3, 8, 9, 12, 13] {
        requests.push(request(ApiKey::Produce, v, &produce(v)));
    }
    for v in [4, 11, 12, 15, 18] {
        requests.push(request(ApiKey::Fetch, v, &fetch(v)));
    }
    for v in [1, 6, 10] {
        requests.push(request(
            ApiKey::ListOffsets,
            v,
            &ListOffsetsRequest::default().with_replica_id(BrokerId(-1)),
        ));
    }
    for v in [2, 4] {
        requests.push(request(
            ApiKey::OffsetForLeaderEpoch,
            v,
            &OffsetForLeaderEpochRequest::default(),
        ));
    }
    for v in [0, 2] {
        requests.push(request(
            ApiKey::DeleteRecords,
            v,
            &DeleteRecordsRequest::default(),
        ));
    }
    for (i, r) in requests.iter().enumerate() {
        write(root, "request_decode", i, &r[4..]);
    }
    for seed in 0..4u8 {
        let mut stream = vec![seed * 37];
        for r in requests.iter().skip(seed as usize).step_by(3) {
            stream.extend_from_slice(r);
        }
        write(root, "frame", seed as usize, &stream);
    }

    let mut n = 0;
    for v in [3, 9, 10, 13] {
        response(
            root,
            "response_merge",
            &mut n,
            0,
            ApiKey::Produce,
            v,
            &produce_response(v),
        );
    }
    for v in [4, 12, 13, 16, 18] {
        response(
            root,
            "response_merge",
            &mut n,
            1,
            ApiKey::Fetch,
            v,
            &fetch_response(v),
        );
    }

    let mut n = 0;
    for v in [0, 1, 9, 12, 13] {
        response(
            root,
            "rewrite",
            &mut n,
            0,
            ApiKey::Metadata,
            v,
            &metadata(v),
        );
    }
    for v in [0, 3, 4, 6] {
        let r = if v >= 4 {
            FindCoordinatorResponse::default().with_coordinators(vec![Coordinator::default()
                .with_key(StrBytes::from_static_str("group"))
                .with_node_id(BrokerId(3))
                .with_host(StrBytes::from_static_str("kafka-3"))
                .with_port(9092)])
        } else {
            FindCoordinatorResponse::default()
                .with_node_id(BrokerId(2))
                .with_host(StrBytes::from_static_str("kafka-2"))
                .with_port(9092)
        };
        response(root, "rewrite", &mut n, 1, ApiKey::FindCoordinator, v, &r);
    }
    for v in [0, 2] {
        let r =
            DescribeClusterResponse::default().with_brokers(vec![DescribeClusterBroker::default()
                .with_broker_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("kafka-1"))
                .with_port(9092)]);
        response(root, "rewrite", &mut n, 2, ApiKey::DescribeCluster, v, &r);
    }
    for v in [0, 3, 4] {
        let r = ApiVersionsResponse::default().with_api_keys(
            [
                (0, 3, 99),
                (1, 4, 99),
                (3, 0, 12),
                (19, 0, 7),
                (1000, 0, 1),
                (2, 50, 60),
            ]
            .iter()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(*k)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
        );
        response(root, "rewrite", &mut n, 3, ApiKey::ApiVersions, v, &r);
    }

    let plain = batch(&[b"a", b"b"], 42, Compression::None);
    let gzip = batch(&[b"a", b"b"], 42, Compression::Gzip);
    for (i, (found, sent)) in [(&plain, &plain), (&gzip, &plain), (&plain, &gzip)]
        .iter()
        .enumerate()
    {
        let mut w = 42i64.to_be_bytes().to_vec();
        w.extend((found.len() as u16).to_be_bytes());
        w.extend_from_slice(found);
        w.extend_from_slice(sent);
        write(root, "written", i, &w);
    }
}

fn write(root: &Path, target: &str, i: usize, data: &[u8]) {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{i:03}")), data).unwrap();
}

/// A request frame, length prefix included.
fn request<T: Encodable>(key: ApiKey, v: i16, body: &T) -> Vec<u8> {
    let h = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(v)
        .with_correlation_id(11)
        .with_client_id(Some(StrBytes::from_static_str("seed")));
    let mut buf = BytesMut::new();
    encode_request_header_into_buffer(&mut buf, &h).unwrap();
    body.encode(&mut buf, v).unwrap();
    let mut f = (buf.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&buf);
    f
}

/// `[api selector][version selector][response frame without its length prefix]`.
fn response<T: Encodable>(
    root: &Path,
    target: &str,
    n: &mut usize,
    selector: u8,
    key: ApiKey,
    v: i16,
    body: &T,
) {
    let frame = encode_response(body, key, v, 11).unwrap();
    let mut data = vec![selector, (v - key.valid_versions().min) as u8];
    data.extend_from_slice(&frame[4..]);
    write(root, target, *n, &data);
    *n += 1;
}

fn topic(v: i16, name: &'static str, id: u8) -> (TopicName, uuid::Uuid) {
    if v >= 13 {
        (TopicName::default(), uuid::Uuid::from_bytes([id; 16]))
    } else {
        (
            TopicName(StrBytes::from_static_str(name)),
            uuid::Uuid::nil(),
        )
    }
}

fn produce(v: i16) -> ProduceRequest {
    let records = batch(&[b"x"], 0, Compression::None);
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(
            [("orders", 1), ("events", 2)]
                .iter()
                .map(|(name, id)| {
                    let (name, tid) = topic(v, name, *id);
                    TopicProduceData::default()
                        .with_name(name)
                        .with_topic_id(tid)
                        .with_partition_data(
                            (0..2)
                                .map(|p| {
                                    PartitionProduceData::default()
                                        .with_index(p)
                                        .with_records(Some(records.clone()))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

fn fetch(v: i16) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_session_epoch(-1)
        .with_topics(
            [("orders", 1), ("events", 2)]
                .iter()
                .map(|(name, id)| {
                    let (name, tid) = topic(v, name, *id);
                    FetchTopic::default()
                        .with_topic(name)
                        .with_topic_id(tid)
                        .with_partitions(
                            (0..2)
                                .map(|p| {
                                    FetchPartition::default()
                                        .with_partition(p)
                                        .with_fetch_offset(100)
                                        .with_partition_max_bytes(1 << 20)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

fn produce_response(v: i16) -> ProduceResponse {
    let (name, tid) = topic(v, "orders", 1);
    ProduceResponse::default()
        .with_responses(vec![TopicProduceResponse::default()
            .with_name(name)
            .with_topic_id(tid)
            .with_partition_responses(vec![
                PartitionProduceResponse::default()
                    .with_index(0)
                    .with_base_offset(7),
                PartitionProduceResponse::default()
                    .with_index(1)
                    .with_error_code(6),
            ])])
        .with_node_endpoints(if v >= 10 {
            vec![NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(StrBytes::from_static_str("kafka-2"))
                .with_port(9092)]
        } else {
            vec![]
        })
}

fn fetch_response(v: i16) -> FetchResponse {
    let (name, tid) = topic(v, "orders", 1);
    FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(name)
        .with_topic_id(tid)
        .with_partitions(vec![
            PartitionData::default()
                .with_partition_index(0)
                .with_records(Some(batch(&[b"r"], 100, Compression::None))),
            PartitionData::default()
                .with_partition_index(1)
                .with_error_code(74),
        ])])
}

fn metadata(v: i16) -> MetadataResponse {
    MetadataResponse::default()
        .with_brokers(
            (1..=3)
                .map(|id| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(StrBytes::from_static_str("kafka"))
                        .with_port(9092)
                })
                .collect(),
        )
        .with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
            .with_topic_id(if v >= 10 {
                uuid::Uuid::from_bytes([1; 16])
            } else {
                uuid::Uuid::nil()
            })
            .with_partitions(
                (0..3)
                    .map(|p| {
                        MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_leader_id(BrokerId(p + 1))
                            .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                            .with_isr_nodes(vec![BrokerId(1)])
                    })
                    .collect(),
            )])
}

fn batch(values: &[&'static [u8]], base_offset: i64, compression: Compression) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i as i64,
            sequence: -1,
            timestamp: 1000,
            key: None,
            value: Some(Bytes::from_static(v)),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}
