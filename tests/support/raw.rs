//! A raw, blocking Kafka protocol client for byte-level tests against real brokers or fairlead.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{encode_request_header_into_buffer, Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

pub struct Raw {
    s: TcpStream,
    next: i32,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s, next: 1 }
    }

    /// Encodes a request frame (length prefix included) with client id "raw-test".
    pub fn frame<Req: Encodable>(
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        req: &Req,
    ) -> Vec<u8> {
        let h = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut buf = BytesMut::new();
        encode_request_header_into_buffer(&mut buf, &h).unwrap();
        req.encode(&mut buf, version).unwrap();
        let mut f = (buf.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&buf);
        f
    }

    pub fn send<Req: Encodable>(&mut self, api: ApiKey, version: i16, req: &Req) -> i32 {
        let corr = self.next;
        self.next += 1;
        self.s
            .write_all(&Self::frame(api, version, corr, req))
            .unwrap();
        corr
    }

    pub fn send_bytes(&mut self, frame: &[u8]) {
        self.s.write_all(frame).unwrap();
    }

    /// The next response frame, length prefix stripped. Err on EOF.
    pub fn recv(&mut self) -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len)?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut body)?;
        Ok(body)
    }

    /// Sends a request and decodes the response (header v0/v1 per the API).
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        let corr = self.send(api, version, req);
        let body = self.recv().expect("response");
        decode(api, version, corr, body)
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.s.set_read_timeout(Some(t)).unwrap();
    }
}

/// Decodes a response body (after the length prefix), checking the correlation id.
pub fn decode<Resp: Decodable>(api: ApiKey, version: i16, corr: i32, body: Vec<u8>) -> Resp {
    assert_eq!(
        i32::from_be_bytes(body[0..4].try_into().unwrap()),
        corr,
        "correlation id"
    );
    let hv = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let mut b = Bytes::from(body).slice(4..);
    if hv >= 1 {
        // tagged fields of the response header: fairlead and brokers send none
        assert_eq!(b[0], 0);
        b = b.slice(1..);
    }
    Resp::decode(&mut b, version).expect("decode response")
}

/// One v2 record batch. `producer_id` -1 makes it non-idempotent.
pub fn batch(values: &[&str], producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Bytes {
    let recs: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if producer_id >= 0 {
                base_sequence + i as i32
            } else {
                -1
            },
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

pub fn produce(
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
    timeout_ms: i32,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// Metadata for these topics by name, as a client about to use them asks (fairlead tracks the
/// topics its clients name; an ask for every topic does not make it track them all).
pub fn metadata_for(topics: &[&str]) -> kafka_protocol::messages::MetadataRequest {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    kafka_protocol::messages::MetadataRequest::default().with_topics(Some(
        topics
            .iter()
            .map(|t| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
            })
            .collect(),
    ))
}
