//! The replay rules, proved against the real broker (PROTOCOL-NOTES.md, "Produce: when a
//! replay is safe"), then exercised through fairlead.
//!
//! To make a produce wait in the leader's purgatory, one follower is paused (SIGSTOP): with
//! acks=all the leader waits for every in-sync replica. Leadership then moves to the other
//! follower, and the old leader answers the waiting produce with NOT_LEADER_OR_FOLLOWER.

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use serde_json::json;
use support::raw::{self, Raw};
use support::{Admin, Fairlead};

fn broker(node: i32) -> &'static str {
    &support::cluster().brokers[&node]
}

/// Who plays which part: the partition's first leader, the follower that gets paused (never
/// the active KRaft controller, so leadership can still move) and the follower that becomes
/// the new leader.
#[derive(Debug, Clone, Copy)]
struct Roles {
    leader: i32,
    paused: i32,
    target: i32,
}

/// An Admin client that gives up on a paused broker quickly and asks another.
fn admin() -> Admin {
    Admin::connect_with(
        &support::cluster().bootstrap,
        &[
            ("request.timeout.ms", "2000"),
            ("default.api.timeout.ms", "60000"),
        ],
    )
}

/// A 1-partition topic with replicas [leader, paused, target].
fn topic(admin: &mut Admin, name: &str) -> (String, Roles) {
    let controller = admin.call(json!({"op": "quorum"}))["leader"]
        .as_i64()
        .unwrap() as i32;
    let paused = (1..=3).find(|n| *n != controller).unwrap();
    let others: Vec<i32> = (1..=3).filter(|n| *n != paused).collect();
    let roles = Roles {
        leader: others[0],
        paused,
        target: others[1],
    };
    let t = support::unique(name);
    admin.call(json!({"op": "create-topic", "topic": t, "assignment": {"0": [roles.leader, roles.paused, roles.target]}}));
    let parts = admin.describe(&t);
    assert_eq!(parts[0]["leader"], json!(roles.leader), "{parts:?}");
    (t, roles)
}

/// Produces `records` with acks=all to `addr` while the paused follower holds the leader's
/// high watermark back and leadership moves to the target; returns the answer (code, base
/// offset).
fn produce_while_leadership_moves(
    roles: Roles,
    addr: &str,
    topic: &str,
    records: Bytes,
) -> (i16, i64) {
    let mut client = Raw::connect(addr);
    // Metadata first, as clients do (fairlead learns the topic).
    let _: kafka_protocol::messages::MetadataResponse =
        client.call(ApiKey::Metadata, 12, &raw::metadata_for(&[topic]));
    // A first record with acks=all: both followers are replicating before the test starts.
    let warm: ProduceResponse = Raw::connect(broker(roles.leader)).call(
        ApiKey::Produce,
        9,
        &raw::produce(topic, 0, raw::batch(&["warm-up"], -1, -1, -1), -1, 30_000),
    );
    assert_eq!(warm.responses[0].partition_responses[0].error_code, 0);
    let paused = Paused::new(roles.paused);
    let corr = client.send(
        ApiKey::Produce,
        9,
        &raw::produce(topic, 0, records, -1, 30_000),
    );
    std::thread::sleep(Duration::from_millis(300));
    move_leader_avoiding(roles, topic);
    // Let the new leader's high watermark advance again.
    drop(paused);
    let resp: ProduceResponse = raw::decode(
        ApiKey::Produce,
        9,
        corr,
        client.recv().expect("produce answer"),
    );
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Moves partition 0's leadership to `roles.target` by talking to the old leader only (it
/// forwards to the KRaft controller): an Admin client might pick the paused broker and hang.
fn move_leader_avoiding(roles: Roles, topic: &str) {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::*;
    let name = TopicName(StrBytes::from_string(topic.to_string()));
    let mut c = Raw::connect(broker(roles.leader));
    let order = vec![
        BrokerId(roles.target),
        BrokerId(roles.leader),
        BrokerId(roles.paused),
    ];
    let r: AlterPartitionReassignmentsResponse = c.call(
        ApiKey::AlterPartitionReassignments,
        0,
        &AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(name.clone())
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(Some(order))])]),
    );
    assert_eq!(r.error_code, 0, "reorder replicas: {r:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let e: ElectLeadersResponse = c.call(
            ApiKey::ElectLeaders,
            2,
            &ElectLeadersRequest::default()
                .with_election_type(0)
                .with_timeout_ms(5_000)
                .with_topic_partitions(Some(vec![TopicPartitions::default()
                    .with_topic(name.clone())
                    .with_partitions(vec![0])])),
        );
        let md: MetadataResponse = c.call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(name.clone())),
            ])),
        );
        if md.topics[0].partitions[0].leader_id.0 == roles.target {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leadership did not move to {}: {e:?}",
            roles.target
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A paused (SIGSTOP) broker, resumed when dropped whatever happens in the test.
struct Paused(i32);

impl Paused {
    fn new(node: i32) -> Paused {
        support::testbed(&["pause", &node.to_string()]);
        Paused(node)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = std::process::Command::new(support::repo().join("tests/testbed/testbed"))
            .args(["resume", &self.0.to_string()])
            .status();
    }
}

/// A consumer's sessionless Fetch (v12, by topic name) of partition 0.
fn fetch(topic: &str, offset: i64, max_wait_ms: i32, leader_epoch: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)
                .with_current_leader_epoch(leader_epoch)])])
}

/// (offset, value) of every committed record of partition 0, read from its leader.
fn read_log(leader: &str, topic: &str) -> Vec<(i64, String)> {
    let mut c = Raw::connect(leader);
    let mut out = Vec::new();
    let mut offset = 0;
    for _ in 0..50 {
        let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch(topic, offset, 100, -1));
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch from {leader}");
        let mut records = p.records.clone().unwrap_or_default();
        if records.is_empty() {
            if offset >= p.high_watermark {
                break;
            }
            continue;
        }
        while !records.is_empty() {
            let set = RecordBatchDecoder::decode(&mut records).expect("decode batch");
            for r in set.records {
                out.push((
                    r.offset,
                    String::from_utf8_lossy(&r.value.unwrap_or_default()).to_string(),
                ));
                offset = r.offset + 1;
            }
        }
    }
    out
}

fn copies(log: &[(i64, String)], value: &str) -> Vec<i64> {
    log.iter()
        .filter(|(_, v)| v == value)
        .map(|(o, _)| *o)
        .collect()
}

#[test]
fn a_non_leader_refuses_a_produce_before_appending_it() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let mut admin = admin();
    let (t, roles) = topic(&mut admin, "refused");
    let mut c = Raw::connect(broker(roles.target));
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &raw::produce(&t, 0, raw::batch(&["x"], -1, -1, -1), -1, 5000),
    );
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(
        (p.error_code, p.base_offset),
        (6, -1),
        "NOT_LEADER_OR_FOLLOWER before the append: base_offset -1"
    );
    assert!(
        read_log(broker(roles.leader), &t).is_empty(),
        "nothing was written"
    );
}

#[test]
fn a_produce_that_loses_leadership_while_waiting_for_acks_reports_its_offset_and_may_survive() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let mut admin = admin();
    let (t, roles) = topic(&mut admin, "purgatory");
    let value = support::unique("purgatory-direct");
    let (code, base_offset) = produce_while_leadership_moves(
        roles,
        broker(roles.leader),
        &t,
        raw::batch(&[&value], -1, -1, -1),
    );
    assert_eq!(code, 6, "the old leader answers NOT_LEADER_OR_FOLLOWER");
    assert!(base_offset > 0, "... with the offset it had appended at ({base_offset}, after the warm-up record): the records may be in the log");
    // Whether the batch survives depends on whether the new leader had replicated it before the
    // election (both happen on this test bed). If it did, a client retrying on this error would
    // write it twice; if it did not, the error was the truth. Either way it is there at most once,
    // at the offset the old leader reported.
    admin.wait_healthy(&[&t]);
    let log = read_log(broker(roles.target), &t);
    let found = copies(&log, &value);
    assert!(
        found.is_empty() || found == vec![base_offset],
        "log of the new leader: {log:?}"
    );
    println!(
        "the batch {} the leader change",
        if found.is_empty() {
            "did not survive"
        } else {
            "survived"
        }
    );
}

#[test]
fn through_fairlead_a_non_idempotent_write_of_unknown_outcome_is_looked_up_never_blindly_replayed()
{
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let dir = support::run_dir("replay-non-idempotent");
    let fairlead = Fairlead::start(&cluster.bootstrap, &dir, &[]);
    let mut admin = admin();
    let (t, roles) = topic(&mut admin, "via-non-idem");
    let value = support::unique("purgatory-via");
    let checks_before = fairlead.metric("fairlead_produce_outcome_checks_total", &[]);
    // the leader, through fairlead: node N is served on listen port + 1 + N
    let via_leader = format!(
        "127.0.0.1:{}",
        fairlead.listen_port as i32 + 1 + roles.leader
    );
    let (code, base_offset) =
        produce_while_leadership_moves(roles, &via_leader, &t, raw::batch(&[&value], -1, -1, -1));
    // fairlead looked in the new leader's log: the batch was there (answered as written, not
    // sent again) or it was not (replayed): either way the client's answer is the log's truth.
    assert_eq!(code, 0, "absorbed\n{}", support::tail(&fairlead.log, 3000));
    admin.wait_healthy(&[&t]);
    let log = read_log(broker(roles.target), &t);
    assert_eq!(
        copies(&log, &value),
        vec![base_offset],
        "written exactly once, at the offset the client was given: {log:?}"
    );
    assert!(
        fairlead.metric("fairlead_produce_outcome_checks_total", &[]) > checks_before,
        "the outcome was looked up, not guessed"
    );
    for result in ["written", "not_written", "unknown"] {
        println!(
            "outcome checks {result}: {}",
            fairlead.metric(
                "fairlead_produce_outcome_checks_total",
                &[("result", result)]
            )
        );
    }
}

#[test]
fn through_fairlead_an_idempotent_write_is_replayed_and_the_broker_deduplicates_it() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let dir = support::run_dir("replay-idempotent");
    let fairlead = Fairlead::start(&cluster.bootstrap, &dir, &[]);
    let mut admin = admin();
    let (t, roles) = topic(&mut admin, "via-idem");
    let mut c = Raw::connect(&fairlead.bootstrap);
    let pid = loop {
        let pid: InitProducerIdResponse = c.call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        );
        // 14 COORDINATOR_LOAD_IN_PROGRESS, 15 COORDINATOR_NOT_AVAILABLE: retriable
        if pid.error_code != 14 && pid.error_code != 15 {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(pid.error_code, 0, "InitProducerId: {pid:?}");
    let value = support::unique("purgatory-idem");
    let via_leader = format!(
        "127.0.0.1:{}",
        fairlead.listen_port as i32 + 1 + roles.leader
    );
    let (code, base_offset) = produce_while_leadership_moves(
        roles,
        &via_leader,
        &t,
        raw::batch(&[&value], pid.producer_id.0, pid.producer_epoch, 0),
    );
    assert_eq!(
        code,
        0,
        "replayed and answered\n{}",
        support::tail(&fairlead.log, 3000)
    );
    admin.wait_healthy(&[&t]);
    assert_eq!(
        copies(&read_log(broker(roles.target), &t), &value),
        vec![base_offset],
        "the broker de-duplicated the replay"
    );
}

/// A fetch held while fairlead absorbs is answered by the client's max_wait_ms + 500 ms at the
/// latest: here the new leader is frozen (SIGSTOP) when the old one answers NOT_LEADER, so the
/// replay cannot be answered, and the client gets "nothing yet" (no records, no error) instead
/// of waiting for a broker that may answer only after the client has moved on.
#[test]
fn through_fairlead_a_fetch_replayed_to_a_frozen_leader_is_answered_with_nothing_yet() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let dir = support::run_dir("replay-fetch-frozen");
    let fairlead = Fairlead::start(
        &cluster.bootstrap,
        &dir,
        &["--log-level", "info,fairlead::router=debug"],
    );
    let mut admin = admin();
    let (t, roles) = topic(&mut admin, "fetch-frozen");
    let warm: ProduceResponse = Raw::connect(broker(roles.leader)).call(
        ApiKey::Produce,
        9,
        &raw::produce(&t, 0, raw::batch(&["there"], -1, -1, -1), -1, 30_000),
    );
    assert_eq!(warm.responses[0].partition_responses[0].error_code, 0);
    let via_leader = format!(
        "127.0.0.1:{}",
        fairlead.listen_port as i32 + 1 + roles.leader
    );
    let mut client = Raw::connect(&via_leader);
    let md: kafka_protocol::messages::MetadataResponse =
        client.call(ApiKey::Metadata, 12, &raw::metadata_for(&[&t]));
    // The epoch the client knows, as a modern client sends it: the old leader, now a follower,
    // fences it (74) rather than serve the fetch as a follower may since KIP-392.
    let epoch = md
        .topics
        .iter()
        .find(|x| x.name.as_ref().is_some_and(|n| n.0.as_str() == t))
        .expect("the topic in fairlead's metadata")
        .partitions[0]
        .leader_epoch;
    let empty_before = fairlead.metric(
        "fairlead_replays_total",
        &[("api", "Fetch"), ("outcome", "answered_empty")],
    );

    // The follower that is never the controller freezes, then becomes the leader.
    let frozen = roles.paused;
    let paused = Paused::new(frozen);
    move_leader_avoiding(
        Roles {
            leader: roles.leader,
            paused: roles.target,
            target: frozen,
        },
        &t,
    );
    const MAX_WAIT_MS: i32 = 500;
    let req = fetch(&t, 0, MAX_WAIT_MS, epoch);
    let asked = std::time::Instant::now();
    let resp: FetchResponse = client.call(ApiKey::Fetch, 12, &req);
    let took = asked.elapsed();
    drop(paused);
    let p = &resp.responses[0].partitions[0];
    let ctx = support::tail(&fairlead.log, 3000);
    assert_eq!(
        p.error_code, 0,
        "no leadership error reached the client\n{ctx}"
    );
    assert!(
        p.records.as_ref().is_none_or(|r| r.is_empty()),
        "nothing from the frozen leader\n{ctx}"
    );
    assert!(
        took < Duration::from_millis(MAX_WAIT_MS as u64 + 1500),
        "answered at about max_wait_ms + 500 ms, took {took:?}\n{ctx}"
    );
    assert_eq!(
        fairlead.metric(
            "fairlead_replays_total",
            &[("api", "Fetch"), ("outcome", "answered_empty")]
        ),
        empty_before + 1.0,
        "counted as answered_empty\n{ctx}"
    );
    println!("fetch with a frozen new leader answered empty after {took:?}");
    admin.wait_healthy(&[&t]);
}

/// Sets a topic's min.insync.replicas on the broker `via` (IncrementalAlterConfigs).
fn set_min_insync(via: &str, topic: &str, value: &str) {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    };
    let r: IncrementalAlterConfigsResponse = Raw::connect(via).call(
        ApiKey::IncrementalAlterConfigs,
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("min.insync.replicas"))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(value.to_string())))]),
        ]),
    );
    assert_eq!(r.responses[0].error_code, 0, "alter config: {r:?}");
}

/// A 1-partition topic with min.insync.replicas = its replication factor (3), whose paused
/// follower has been fenced and dropped from the in-sync set: no acks=all produce can be
/// satisfied until the follower is back, as during any broker's failure. Returns the topic, its
/// roles, and the paused follower (resumed when dropped).
fn starved_topic(admin: &mut Admin, name: &str) -> (String, Roles, Paused) {
    let (t, roles) = topic(admin, name);
    set_min_insync(broker(roles.leader), &t, "3");
    let paused = Paused::new(roles.paused);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Asked of the leader itself: an Admin client may wait on the paused broker.
        let md: kafka_protocol::messages::MetadataResponse = Raw::connect(broker(roles.leader))
            .call(
                ApiKey::Metadata,
                12,
                &kafka_protocol::messages::MetadataRequest::default().with_topics(None),
            );
        let isr: Vec<i32> = md
            .topics
            .iter()
            .filter(|x| x.name.as_ref().is_some_and(|n| n.0.as_str() == t))
            .flat_map(|x| x.partitions[0].isr_nodes.iter().map(|b| b.0))
            .collect();
        if isr.len() == 2 {
            return (t, roles, paused);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the paused follower never left the in-sync set: {isr:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_produce_without_enough_in_sync_replicas_is_refused_before_the_append() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let mut admin = admin();
    let (t, roles, paused) = starved_topic(&mut admin, "starved");
    // The leader's own in-sync set can trail the metadata that shows the follower gone (seen
    // once: an append, then REQUEST_TIMED_OUT): such an attempt is written down and the next
    // one made, each with its own value, until the leader refuses one.
    let mut c = Raw::connect(broker(roles.leader));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut earlier = Vec::new();
    let refused = loop {
        let value = format!("x{}", earlier.len());
        let resp: ProduceResponse = c.call(
            ApiKey::Produce,
            9,
            &raw::produce(&t, 0, raw::batch(&[&value], -1, -1, -1), -1, 1000),
        );
        let p = &resp.responses[0].partition_responses[0];
        if (p.error_code, p.base_offset) == (19, -1) {
            break value;
        }
        assert!(
            p.error_code == 7 && std::time::Instant::now() < deadline,
            "NOT_ENOUGH_REPLICAS, before the append: got {:?}",
            (p.error_code, p.base_offset)
        );
        earlier.push(value);
    };
    drop(paused);
    admin.wait_healthy(&[&t]);
    let log: Vec<String> = read_log(broker(roles.leader), &t)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert!(
        !log.contains(&refused),
        "the refused batch was not appended (a re-send cannot duplicate it): {log:?}"
    );
    assert!(
        log.iter().all(|v| earlier.contains(v)),
        "only the attempts answered after an append are in the log: {log:?} {earlier:?}"
    );
}

/// A client's produce meets NOT_ENOUGH_REPLICAS while a follower is fenced: fairlead sends it
/// again after a back-off, and once the follower is back the client gets the success, the
/// records written once.
#[test]
fn through_fairlead_not_enough_replicas_is_absorbed_and_written_once() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let dir = support::run_dir("replay-not-enough-replicas");
    let fairlead = Fairlead::start(&cluster.bootstrap, &dir, &[]);
    let mut admin = admin();
    let (t, roles, paused) = starved_topic(&mut admin, "starved-via");
    let via_leader = format!(
        "127.0.0.1:{}",
        fairlead.listen_port as i32 + 1 + roles.leader
    );
    let value = support::unique("starved-value");
    let mut c = Raw::connect(&via_leader);
    let _: kafka_protocol::messages::MetadataResponse =
        c.call(ApiKey::Metadata, 12, &raw::metadata_for(&[&t]));
    let corr = c.send(
        ApiKey::Produce,
        9,
        &raw::produce(&t, 0, raw::batch(&[&value], -1, -1, -1), -1, 5000),
    );
    std::thread::sleep(Duration::from_millis(1500));
    drop(paused);
    let resp: ProduceResponse =
        raw::decode(ApiKey::Produce, 9, corr, c.recv().expect("produce answer"));
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(
        p.error_code,
        0,
        "absorbed\n{}",
        support::tail(&fairlead.log, 3000)
    );
    admin.wait_healthy(&[&t]);
    assert_eq!(
        copies(&read_log(broker(roles.leader), &t), &value),
        vec![p.base_offset],
        "written once, at the offset the client was given"
    );
    assert!(
        fairlead.metric(
            "fairlead_errors_absorbed_total",
            &[("api", "Produce"), ("code", "19")]
        ) >= 1.0,
        "the client's batch met NOT_ENOUGH_REPLICAS first"
    );
}
