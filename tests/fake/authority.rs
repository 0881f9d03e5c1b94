//! In SASL passthrough mode, a client's request only ever travels on a broker connection
//! authenticated as that client (issue 23): never on fairlead's own, never before the client
//! authenticated. The fake brokers record who each connection authenticated as.

#[path = "../support/fake.rs"]
mod fake;
#[path = "../support/fake_bed.rs"]
mod fake_bed;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, HeartbeatRequest, HeartbeatResponse, ListOffsetsRequest, ListOffsetsResponse,
    ProduceRequest, ProduceResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use fake::{ProduceAnswer, Received};
use fake_bed::*;

async fn start() -> Bed {
    Bed::start_with(
        |s| {
            standard(s);
            s.users.insert("alice".into(), "alice-secret".into());
            s.users.insert("fairlead".into(), "fairlead-secret".into());
            // u/0 is led by node 2; a client sends it to node 1, which is not its leader.
            s.produce_always(1, "u", 0, ProduceAnswer::error(6, -1));
        },
        plain_passthrough,
    )
    .await
}

fn produce_u0() -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("u")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(fake::batch(-1, -1, &["v"])))])])
}

fn code(r: &ProduceResponse) -> i16 {
    r.responses[0].partition_responses[0].error_code
}

/// The client's requests (not fairlead's own) of `api` the fake brokers received.
fn client_requests(bed: &Bed, api: ApiKey) -> Vec<Received> {
    bed.fake.client_requests_any(api)
}

async fn not_absorbed(bed: &Bed, reason: &str) -> f64 {
    bed.metric("fairlead_errors_not_absorbed_total", &[("reason", reason)])
        .await
}

#[tokio::test]
async fn a_client_that_has_not_authenticated_gets_nothing_routed() {
    let bed = start().await;
    let before = not_absorbed(&bed, "client_not_authenticated").await;
    let mut c = bed.client(Some(1)).await;
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_u0()).await;
    assert_eq!(code(&r), 6, "the broker it chose answers, unabsorbed");
    let sent = client_requests(&bed, ApiKey::Produce);
    assert_eq!(sent.len(), 1, "sent once");
    assert_eq!(
        (sent[0].node, &sent[0].principal),
        (1, &None),
        "on its own, unauthenticated connection"
    );
    assert_eq!(
        not_absorbed(&bed, "client_not_authenticated").await - before,
        1.0
    );
}

#[tokio::test]
async fn a_plain_client_is_rerouted_only_on_connections_authenticated_as_itself() {
    let bed = start().await;
    let mut c = bed.client(Some(1)).await;
    assert_eq!(
        c.authenticate("PLAIN", &[b"\0alice\0alice-secret"]).await,
        0
    );
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_u0()).await;
    assert_eq!(code(&r), 0, "routed to the leader and answered");
    let sent = client_requests(&bed, ApiKey::Produce);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].node, sent[0].principal.as_deref()),
        (2, Some("alice")),
        "on a connection fairlead authenticated with alice's own credentials"
    );
    let own = bed.fake.own_requests(1, ApiKey::Metadata);
    assert!(
        own.iter()
            .all(|r| r.principal.as_deref() == Some("fairlead")),
        "fairlead's own requests run as fairlead"
    );
}

const SCRAM_BOB: [&[u8]; 2] = [b"n,,n=bob,r=abc", b"c=biws,r=abcfake,p=cHJvb2Y="];

/// A SCRAM client's rerouted request travels only on a connection its principal's own clients
/// authenticated to that broker (lent), and never on one whose owner is in the middle of a SASL
/// exchange (KIP-368 re-authentication).
#[tokio::test]
async fn a_scram_client_is_rerouted_only_on_its_principals_own_connections() {
    let bed = start().await;
    let mut on_2 = bed.client(Some(2)).await;
    assert_eq!(on_2.authenticate("SCRAM-SHA-512", &SCRAM_BOB).await, 0);
    let mut on_1 = bed.client(Some(1)).await;
    assert_eq!(on_1.authenticate("SCRAM-SHA-512", &SCRAM_BOB).await, 0);
    let r: ProduceResponse = on_1.call(ApiKey::Produce, 9, &produce_u0()).await;
    assert_eq!(code(&r), 0, "rerouted on bob's own connection to node 2");
    // The owner of that connection starts re-authenticating: it is not lent meanwhile.
    let h: SaslHandshakeResponse = on_2
        .call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512")),
        )
        .await;
    assert_eq!(h.error_code, 0);
    let r: ProduceResponse = on_1.call(ApiKey::Produce, 9, &produce_u0()).await;
    assert_eq!(code(&r), 6, "not sent into another client's SASL exchange");
    for step in SCRAM_BOB {
        let a: SaslAuthenticateResponse = on_2
            .call(
                ApiKey::SaslAuthenticate,
                2,
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(step)),
            )
            .await;
        assert_eq!(a.error_code, 0);
    }
    let r: ProduceResponse = on_1.call(ApiKey::Produce, 9, &produce_u0()).await;
    assert_eq!(code(&r), 0, "lent again once its exchange ended");
    let sent: Vec<(i32, Option<String>)> = client_requests(&bed, ApiKey::Produce)
        .into_iter()
        .map(|r| (r.node, r.principal))
        .collect();
    let bob = Some("bob".to_string());
    assert_eq!(sent, vec![(2, bob.clone()), (1, bob.clone()), (2, bob)]);
}

#[tokio::test]
async fn a_scram_client_is_not_rerouted_and_its_errors_are_counted() {
    let bed = start().await;
    let before = not_absorbed(&bed, "no_connection_as_client").await;
    let mut c = bed.client(Some(1)).await;
    let steps: [&[u8]; 2] = [b"n,,n=bob,r=abc", b"c=biws,r=abcfake,p=cHJvb2Y="];
    assert_eq!(c.authenticate("SCRAM-SHA-512", &steps).await, 0);
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_u0()).await;
    assert_eq!(
        code(&r),
        6,
        "a SCRAM exchange cannot be replayed: no other connection is bob's"
    );
    let sent = client_requests(&bed, ApiKey::Produce);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].node, sent[0].principal.as_deref()),
        (1, Some("bob"))
    );
    assert_eq!(
        not_absorbed(&bed, "no_connection_as_client").await - before,
        1.0
    );
}

/// A partition that goes to the client's own broker after all, for want of a connection of its
/// identity at the leader, is no reroute: the count is of requests that left for the leader.
/// (ListOffsets, which no other test here sends: the counter is the process's, shared by them.)
#[tokio::test]
async fn a_request_kept_on_the_clients_broker_is_not_counted_as_rerouted() {
    let bed = start().await;
    let rerouted = || bed.metric("fairlead_reroutes_total", &[("api", "ListOffsets")]);
    let before = rerouted().await;
    let mut c = bed.client(Some(1)).await;
    assert_eq!(c.authenticate("SCRAM-SHA-512", &SCRAM_BOB).await, 0);
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("u")))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(-1)
                .with_timestamp(-1)])]);
    let _: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 4, &req).await;
    let sent: Vec<i32> = client_requests(&bed, ApiKey::ListOffsets)
        .iter()
        .map(|r| r.node)
        .collect();
    assert_eq!(
        sent,
        vec![1],
        "kept on its own broker: no connection is bob's at node 2"
    );
    assert_eq!(
        rerouted().await - before,
        0.0,
        "nothing left for the leader"
    );
}

#[tokio::test]
async fn a_refused_exchange_lends_no_identity() {
    let bed = start().await;
    let mut c = bed.client(Some(1)).await;
    assert_eq!(
        c.authenticate("PLAIN", &[b"\0alice\0wrong"]).await,
        58,
        "the broker refuses the password"
    );
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_u0()).await;
    assert_eq!(code(&r), 6);
    let sent = client_requests(&bed, ApiKey::Produce);
    assert_eq!(
        sent.iter().map(|r| r.node).collect::<Vec<_>>(),
        vec![1],
        "nothing rerouted with the refused credentials"
    );
}

#[tokio::test]
async fn coordinator_requests_follow_the_same_rule() {
    let bed = start().await;
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(StrBytes::from_static_str("g").into())
        .with_generation_id(7)
        .with_member_id(StrBytes::from_static_str("m-1"));
    // Group g is coordinated by node 1; the client asks node 2.
    let mut anonymous = bed.client(Some(2)).await;
    let h: HeartbeatResponse = anonymous.call(ApiKey::Heartbeat, 4, &heartbeat).await;
    assert_eq!(
        h.error_code, 16,
        "not routed: node 2 answers NOT_COORDINATOR"
    );
    let mut alice = bed.client(Some(2)).await;
    alice
        .authenticate("PLAIN", &[b"\0alice\0alice-secret"])
        .await;
    let h: HeartbeatResponse = alice.call(ApiKey::Heartbeat, 4, &heartbeat).await;
    assert_eq!(h.error_code, 0, "replayed to the coordinator, as alice");
    let sent: Vec<(i32, Option<String>)> = client_requests(&bed, ApiKey::Heartbeat)
        .into_iter()
        .map(|r| (r.node, r.principal))
        .collect();
    assert_eq!(
        sent,
        vec![
            (2, None),
            (2, Some("alice".into())),
            (1, Some("alice".into()))
        ],
        "the anonymous client's request stayed on its connection; alice's went on hers"
    );
}
