//! Coordinator moves, byte for byte: fairlead in front of fake brokers whose coordinator APIs
//! answer NONE on the key's coordinator and NOT_COORDINATOR elsewhere (tests/support/fake.rs).
//! One test per rule of `router::retry::decide_coordinator` and of the coordinator router.

#[path = "../support/fake.rs"]
mod fake;
#[path = "../support/fake_bed.rs"]
mod fake_bed;

use std::time::Duration;

use bytes::Bytes;
use fake::{Decoded, Received};
use fake_bed::*;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, EndTxnRequest, EndTxnResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse, OffsetCommitRequest,
    OffsetCommitResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const FENCED_MEMBER_EPOCH: i16 = 110;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn heartbeat(group: &str) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(s(group).into())
        .with_generation_id(3)
        .with_member_id(s("member-1"))
}

fn commit(group: &str, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(s(group).into())
        .with_generation_id_or_member_epoch(3)
        .with_member_id(s("member-1"))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])])
}

fn commit_codes(r: &OffsetCommitResponse) -> Vec<i16> {
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// The requests of `api` from clients (and their replays) each node received: (node, key).
fn coordinator_requests(bed: &Bed, api: ApiKey) -> Vec<(i32, String)> {
    bed.fake
        .received()
        .iter()
        .filter(|r| r.api_key == api as i16 && r.is_from_client())
        .map(|r| match &r.request {
            Decoded::Coordinator(k) => (r.node, k.clone()),
            other => panic!("{api:?} not decoded as a coordinator request: {other:?}"),
        })
        .collect()
}

/// fairlead's own FindCoordinator requests, on any node: the keys of each.
fn own_lookups(bed: &Bed) -> Vec<Vec<String>> {
    bed.fake
        .received()
        .iter()
        .filter(|r| r.api_key == ApiKey::FindCoordinator as i16 && !r.is_from_client())
        .map(|r| match &r.request {
            Decoded::FindCoordinator(f) if f.coordinator_keys.is_empty() => vec![f.key.to_string()],
            Decoded::FindCoordinator(f) => {
                f.coordinator_keys.iter().map(|k| k.to_string()).collect()
            }
            other => panic!("FindCoordinator not decoded: {other:?}"),
        })
        .collect()
}

/// The request bytes after the correlation id: equal for a client's request and its replays.
fn after_correlation(r: &Received) -> Bytes {
    r.frame.slice(12..)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_coordinator_is_found_again_and_the_request_replayed_there() {
    let bed = Bed::start(|s| {
        s.coordinators.insert("g".into(), (2, 0));
    })
    .await;
    let absorbed = || {
        bed.metric(
            "fairlead_errors_absorbed_total",
            &[("api", "Heartbeat"), ("code", "16")],
        )
    };
    let replayed = || {
        bed.metric(
            "fairlead_replays_total",
            &[("api", "Heartbeat"), ("outcome", "ok")],
        )
    };
    // Metrics are process-wide: count this test's share.
    let (absorbed_before, replayed_before) = (absorbed().await, replayed().await);
    let mut c = bed.client(Some(1)).await;
    let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, 4, &heartbeat("g")).await;
    assert_eq!(r.error_code, 0, "the client sees no coordinator error");
    assert_eq!(
        coordinator_requests(&bed, ApiKey::Heartbeat),
        vec![(1, "g".to_string()), (2, "g".to_string())],
        "asked where the client sent it, then at the coordinator fairlead found"
    );
    let got = bed.fake.received();
    let sent: Vec<&Received> = got
        .iter()
        .filter(|r| r.api_key == ApiKey::Heartbeat as i16)
        .collect();
    assert_eq!(
        after_correlation(sent[0]),
        after_correlation(sent[1]),
        "the replay is the client's request, byte for byte"
    );
    assert_eq!(own_lookups(&bed), vec![vec!["g".to_string()]]);
    assert_eq!(absorbed().await - absorbed_before, 1.0);
    assert_eq!(replayed().await - replayed_before, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_not_available_is_found_again_too() {
    let bed = Bed::start(|s| {
        s.coordinators.insert("tx".into(), (3, 0));
        s.coordinator_error(1, ApiKey::EndTxn, COORDINATOR_NOT_AVAILABLE);
    })
    .await;
    let mut c = bed.client(Some(1)).await;
    let req = EndTxnRequest::default()
        .with_transactional_id(s("tx").into())
        .with_producer_id(7.into())
        .with_committed(true);
    let r: EndTxnResponse = c.call(ApiKey::EndTxn, 4, &req).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(
        coordinator_requests(&bed, ApiKey::EndTxn),
        vec![(1, "tx".to_string()), (3, "tx".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loading_coordinator_is_asked_again_without_a_lookup() {
    let bed = Bed::start(|s| {
        s.coordinator_error(1, ApiKey::Heartbeat, COORDINATOR_LOAD_IN_PROGRESS);
        s.coordinator_error(1, ApiKey::Heartbeat, COORDINATOR_LOAD_IN_PROGRESS);
    })
    .await;
    let mut c = bed.client(Some(1)).await;
    let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, 4, &heartbeat("g")).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(
        coordinator_requests(&bed, ApiKey::Heartbeat),
        vec![(1, "g".to_string()); 3],
        "the same coordinator, three times"
    );
    assert!(own_lookups(&bed).is_empty(), "no FindCoordinator for a 14");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_coordinator_gets_the_request_wherever_the_client_sent_it() {
    let bed = Bed::start(|s| {
        s.coordinators.insert("g".into(), (2, 0));
    })
    .await;
    // The client's own FindCoordinator (librdkafka's v2: the key is only in the request).
    let mut other = bed.client(None).await;
    let found: FindCoordinatorResponse = other
        .call(
            ApiKey::FindCoordinator,
            2,
            &FindCoordinatorRequest::default().with_key(s("g")),
        )
        .await;
    assert_eq!(
        found.port,
        bed.port(2),
        "rewritten to fairlead's port of node 2"
    );
    // A client with stale metadata commits at node 1's port.
    let rerouted = || bed.metric("fairlead_reroutes_total", &[("api", "OffsetCommit")]);
    let rerouted_before = rerouted().await;
    let mut c = bed.client(Some(1)).await;
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 9, &commit("g", 10)).await;
    assert_eq!(commit_codes(&r), vec![0]);
    assert_eq!(
        coordinator_requests(&bed, ApiKey::OffsetCommit),
        vec![(2, "g".to_string())],
        "node 1 never saw it"
    );
    assert_eq!(rerouted().await - rerouted_before, 1.0);
    assert!(own_lookups(&bed).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_heartbeat_refused_as_a_repeat_gets_the_original_error() {
    let bed = Bed::start(|s| {
        s.coordinators.insert("g".into(), (2, 0));
        // The coordinator had applied the first attempt: the identical replay is fenced.
        s.coordinator_error(2, ApiKey::ConsumerGroupHeartbeat, FENCED_MEMBER_EPOCH);
    })
    .await;
    let steady = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(s("g").into())
        .with_member_id(s("m"))
        .with_member_epoch(5)
        .with_rebalance_timeout_ms(-1);
    let mut c = bed.client(Some(1)).await;
    let r: ConsumerGroupHeartbeatResponse =
        c.call(ApiKey::ConsumerGroupHeartbeat, 0, &steady).await;
    assert_eq!(
        r.error_code, NOT_COORDINATOR,
        "the client gets the original error: its own retry (a full heartbeat) is accepted"
    );
    // A heartbeat with its whole state (its partitions): the replay's answer is the answer.
    let full = steady.with_topic_partitions(Some(vec![TopicPartitions::default()]));
    bed.fake
        .script()
        .coordinator_error(2, ApiKey::ConsumerGroupHeartbeat, FENCED_MEMBER_EPOCH);
    let mut c = bed.client(Some(1)).await;
    let r: ConsumerGroupHeartbeatResponse = c.call(ApiKey::ConsumerGroupHeartbeat, 0, &full).await;
    assert_eq!(r.error_code, FENCED_MEMBER_EPOCH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_group_apis_pass_through() {
    let bed = Bed::start(|s| {
        s.coordinators.insert("g".into(), (2, 0));
    })
    .await;
    let mut c = bed.client(Some(1)).await;
    let r: DescribeGroupsResponse = c
        .call(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default().with_groups(vec![s("g").into()]),
        )
        .await;
    assert_eq!(r.groups[0].error_code, NOT_COORDINATOR);
    assert_eq!(
        coordinator_requests(&bed, ApiKey::DescribeGroups),
        vec![(1, "g".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_coordinator_found_in_time_the_client_gets_the_original_error() {
    let bed = Bed::start(|s| {
        // Node 2 coordinates, but FindCoordinator keeps answering "not available".
        s.coordinators
            .insert("g".into(), (2, COORDINATOR_NOT_AVAILABLE));
    })
    .await;
    let gave_up = || {
        bed.metric(
            "fairlead_replays_total",
            &[("api", "Heartbeat"), ("outcome", "gave_up")],
        )
    };
    let gave_up_before = gave_up().await;
    let mut c = bed.client(Some(1)).await;
    let asked = std::time::Instant::now();
    let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, 4, &heartbeat("g")).await;
    let took = asked.elapsed();
    assert_eq!(r.error_code, NOT_COORDINATOR);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "held for the absorb budget (2 s here), then answered: {took:?}"
    );
    assert!(own_lookups(&bed).len() >= 2, "looked up more than once");
    assert_eq!(gave_up().await - gave_up_before, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_for_many_groups_at_once_are_batched() {
    let bed = Bed::start(|s| {
        for g in ["g1", "g2", "g3", "g4"] {
            s.coordinators.insert(g.into(), (2, 0));
        }
        // The first lookup takes a while, wherever it goes: the other keys queue meanwhile.
        for node in [1, 2, 3] {
            s.delay_next(node, ApiKey::FindCoordinator, Duration::from_millis(400));
        }
    })
    .await;
    let mut clients = Vec::new();
    for g in ["g1", "g2", "g3", "g4"] {
        let mut c = bed.client(Some(1)).await;
        let corr = c.send(ApiKey::Heartbeat, 4, &heartbeat(g)).await;
        clients.push((c, corr));
        if g == "g1" {
            // g1's lookup is out before the others fail.
            bed.fake
                .wait_for("g1's lookup", Duration::from_secs(5), |r| {
                    r.iter()
                        .any(|r| r.api_key == ApiKey::FindCoordinator as i16 && !r.is_from_client())
                })
                .await;
        }
    }
    for (mut c, corr) in clients {
        let (got, r): (i32, HeartbeatResponse) =
            decode_response(&c.recv().await, ApiKey::Heartbeat, 4);
        assert_eq!((got, r.error_code), (corr, 0));
    }
    let mut lookups = own_lookups(&bed);
    for l in &mut lookups {
        l.sort();
    }
    assert_eq!(
        lookups,
        vec![
            vec!["g1".to_string()],
            vec!["g2".into(), "g3".into(), "g4".into()]
        ],
        "one FindCoordinator (v4) for the three keys that came up during the first"
    );
}

/// Sends group g's commit of offset 10 on `c` and waits until a broker has it; its correlation id.
async fn first_commit_reached(bed: &Bed, c: &mut Client) -> i32 {
    let first = c.send(ApiKey::OffsetCommit, 9, &commit("g", 10)).await;
    bed.fake
        .wait_for("the first commit", Duration::from_secs(5), |r| {
            r.iter().any(|r| r.api_key == ApiKey::OffsetCommit as i16)
        })
        .await;
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_sent_again_is_not_overtaken_by_the_next_commit_of_the_connection() {
    let bed = Bed::start_with(
        |s| {
            s.coordinators.insert("g".into(), (2, 0));
            s.coordinator_error(2, ApiKey::OffsetCommit, COORDINATOR_LOAD_IN_PROGRESS);
        },
        |cfg| cfg.retry_backoff = Duration::from_millis(300),
    )
    .await;
    // fairlead knows the coordinator (a FindCoordinator through it), so both commits go there.
    let mut other = bed.client(None).await;
    let _: FindCoordinatorResponse = other
        .call(
            ApiKey::FindCoordinator,
            2,
            &FindCoordinatorRequest::default().with_key(s("g")),
        )
        .await;
    let mut c = bed.client(Some(2)).await;
    let first = first_commit_reached(&bed, &mut c).await;
    // The first was refused (14) and waits 300 ms to be sent again; the second comes now.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = c.send(ApiKey::OffsetCommit, 9, &commit("g", 20)).await;
    for want in [first, second] {
        let (corr, r): (i32, OffsetCommitResponse) =
            decode_response(&c.recv().await, ApiKey::OffsetCommit, 9);
        assert_eq!((corr, commit_codes(&r)), (want, vec![0]));
    }
    let offsets: Vec<i64> = bed
        .fake
        .received()
        .iter()
        .filter(|r| r.api_key == ApiKey::OffsetCommit as i16)
        .map(|r| {
            let mut body = r.frame.slice(4..);
            let h = <kafka_protocol::messages::RequestHeader as Decodable>::decode(
                &mut body,
                ApiKey::OffsetCommit.request_header_version(9),
            )
            .unwrap();
            assert_eq!(h.request_api_version, 9);
            let req = OffsetCommitRequest::decode(&mut body, 9).unwrap();
            req.topics[0].partitions[0].committed_offset
        })
        .collect();
    assert_eq!(
        offsets,
        vec![10, 10, 20],
        "node 2 got the first (refused), the first again, then the second"
    );
}

/// Issue 20, item 5, for coordinators: while a commit is being sent again and the next commit
/// of its group waits for it (their order), the connection reads on: a heartbeat of another
/// group reaches its broker at once, not after the replay. Answers still leave in request order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_waiting_for_its_groups_replay_holds_up_no_other_group() {
    const BACKOFF: Duration = Duration::from_millis(1500);
    let bed = Bed::start_with(
        |s| {
            s.coordinators.insert("g".into(), (2, 0));
            s.coordinators.insert("h".into(), (2, 0));
            s.coordinator_error(2, ApiKey::OffsetCommit, COORDINATOR_LOAD_IN_PROGRESS);
        },
        |cfg| cfg.retry_backoff = BACKOFF,
    )
    .await;
    let mut c = bed.client(Some(2)).await;
    let first = first_commit_reached(&bed, &mut c).await;
    // Refused (14): it is sent again after BACKOFF, and the group's lane is held till then.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = c.send(ApiKey::OffsetCommit, 9, &commit("g", 20)).await;
    let third = c.send(ApiKey::Heartbeat, 4, &heartbeat("h")).await;
    bed.fake
        .wait_for("the heartbeat", Duration::from_secs(5), |r| {
            r.iter().any(|r| r.api_key == ApiKey::Heartbeat as i16)
        })
        .await;
    let order: Vec<(i16, String)> = bed
        .fake
        .received()
        .iter()
        .filter(|r| r.is_from_client())
        .filter_map(|r| match &r.request {
            Decoded::Coordinator(k) => Some((r.api_key, k.clone())),
            _ => None,
        })
        .collect();
    let (commit_g, beat_h) = (
        (ApiKey::OffsetCommit as i16, "g".to_string()),
        (ApiKey::Heartbeat as i16, "h".to_string()),
    );
    assert_eq!(
        order,
        vec![commit_g, beat_h],
        "the heartbeat left before the first commit was sent again"
    );
    let (corr, r): (i32, OffsetCommitResponse) =
        decode_response(&c.recv().await, ApiKey::OffsetCommit, 9);
    assert_eq!((corr, commit_codes(&r)), (first, vec![0]));
    let (corr, r): (i32, OffsetCommitResponse) =
        decode_response(&c.recv().await, ApiKey::OffsetCommit, 9);
    assert_eq!((corr, commit_codes(&r)), (second, vec![0]));
    let (corr, r): (i32, HeartbeatResponse) =
        decode_response(&c.recv().await, ApiKey::Heartbeat, 4);
    assert_eq!((corr, r.error_code), (third, 0), "answers in request order");
    assert_eq!(
        coordinator_requests(&bed, ApiKey::OffsetCommit)
            .iter()
            .map(|(node, _)| *node)
            .collect::<Vec<_>>(),
        vec![2, 2, 2],
        "the first, the first again, then the second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_find_coordinator_answered_not_available_is_asked_again() {
    let bed = Bed::start(|s| {
        s.coordinators
            .insert("g".into(), (2, COORDINATOR_NOT_AVAILABLE));
    })
    .await;
    // The group's coordinator is elected 300 ms from now.
    let script = bed.fake.script_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        script
            .lock()
            .unwrap()
            .coordinators
            .insert("g".into(), (2, 0));
    });
    let mut c = bed.client(None).await;
    let asked = std::time::Instant::now();
    let r: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(s("g")),
        )
        .await;
    assert_eq!(
        r.error_code, 0,
        "the client gets the coordinator, not the error"
    );
    assert_eq!(r.port, bed.port(2));
    assert!(asked.elapsed() >= Duration::from_millis(250));
    let from_client = bed
        .fake
        .received()
        .iter()
        .filter(|r| r.api_key == ApiKey::FindCoordinator as i16 && r.is_from_client())
        .count();
    assert!(from_client >= 2, "asked again: {from_client}");
}
