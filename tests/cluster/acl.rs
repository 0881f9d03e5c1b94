//! SASL passthrough on the real brokers' own authorizer (StandardAuthorizer, ACLs made with the
//! Admin API): fairlead never acts with more authority than its client (issue 23). A client's
//! request sent to the port of a broker that does not lead its partition is rerouted only on a
//! connection authenticated as that client, so the brokers' ACLs apply to it as if it had gone
//! directly; a client that never authenticated gets nothing routed at all. Raw protocol clients,
//! then real ones (the Java testkit, SCRAM-SHA-512 and PLAIN) while leaders move; the whole
//! target takes about 70 s.

#[path = "../support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
    MetadataResponse, ProduceResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;
use support::raw::{self, Raw};
use support::{Admin, ClientKind, ClientProc, Fairlead};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
// AclOperation and AclPermissionType codes of the protocol.
const READ: i8 = 3;
const WRITE: i8 = 4;
const DESCRIBE: i8 = 8;
const ALLOW: i8 = 3;

struct Secure {
    bootstrap: String,
    tls: PathBuf,
}

fn secure() -> Secure {
    support::cluster();
    let v = support::testbed(&["up"]);
    Secure {
        bootstrap: v["secure_bootstrap"].as_str().unwrap().to_string(),
        tls: PathBuf::from(v["tls_dir"].as_str().unwrap()),
    }
}

/// fairlead in passthrough mode in front of the SASL_SSL listener, its own principal `fairlead`.
fn passthrough(dir: &std::path::Path, s: &Secure, extra: &str) -> Fairlead {
    let path = dir.join("fairlead.toml");
    let text = format!(
        "bootstrap = '{}'\nupstream_tls = true\nupstream_tls_ca_file = '{}'\nsasl_mechanism = 'PLAIN'\nsasl_username = 'fairlead'\nsasl_password = 'fairlead-secret'\nsasl_mode = 'passthrough'\n{extra}\n",
        s.bootstrap,
        s.tls.join("ca.pem").display()
    );
    std::fs::write(&path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    Fairlead::start(&s.bootstrap, dir, &["--config", path.to_str().unwrap()])
}

/// ALLOW ACLs for `principal` on topic `topic`, made as the PLAINTEXT listener's super user,
/// and waited for on every broker.
fn allow(topic: &str, grants: &[(&str, &[i8])]) {
    let cluster = support::cluster();
    let creations: Vec<AclCreation> = grants
        .iter()
        .flat_map(|(principal, ops)| {
            ops.iter().map(move |op| {
                AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(topic.to_string()))
                    .with_resource_pattern_type(3)
                    .with_principal(StrBytes::from_string(format!("User:{principal}")))
                    .with_host(StrBytes::from_static_str("*"))
                    .with_operation(*op)
                    .with_permission_type(ALLOW)
            })
        })
        .collect();
    let want = creations.len();
    let any = cluster.brokers.values().next().unwrap();
    let r: CreateAclsResponse = Raw::connect(any).call(
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(creations),
    );
    assert!(r.results.iter().all(|x| x.error_code == 0), "{r:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for addr in cluster.brokers.values() {
        loop {
            let d: DescribeAclsResponse = Raw::connect(addr).call(
                ApiKey::DescribeAcls,
                3,
                &DescribeAclsRequest::default()
                    .with_resource_type_filter(2)
                    .with_resource_name_filter(Some(StrBytes::from_string(topic.to_string())))
                    .with_pattern_type_filter(3)
                    // Null: any (the defaults are empty strings, which match nothing).
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_operation(1)
                    .with_permission_type(1),
            );
            let n: usize = d.resources.iter().map(|r| r.acls.len()).sum();
            if n == want {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "ACLs on {addr}: {n} of {want}: {d:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A client of fairlead's port for broker `node` that authenticates with PLAIN (None: not at
/// all) and asks for `topic`'s metadata, as clients do. Returns it and the SaslAuthenticate code.
fn client(fairlead: &Fairlead, node: i32, user: Option<(&str, &str)>, topic: &str) -> (Raw, i16) {
    let addr = format!("127.0.0.1:{}", fairlead.listen_port as i32 + 1 + node);
    let mut c = Raw::connect(&addr);
    let mut code = 0;
    if let Some((user, password)) = user {
        let h: SaslHandshakeResponse = c.call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        );
        assert_eq!(h.error_code, 0);
        let a: SaslAuthenticateResponse = c.call(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from(format!("\0{user}\0{password}"))),
        );
        code = a.error_code;
        if code != 0 {
            return (c, code);
        }
        let _: MetadataResponse = c.call(ApiKey::Metadata, 12, &raw::metadata_for(&[topic]));
    }
    (c, code)
}

/// Every value in partition `partition` of `topic`, read as the PLAINTEXT super user from its
/// leader, up to the high watermark.
fn values(leader: &str, topic: &str, partition: i32) -> Vec<String> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::records::RecordBatchDecoder;
    let mut c = Raw::connect(leader);
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let resp: FetchResponse = c.call(
            ApiKey::Fetch,
            12,
            &FetchRequest::default()
                .with_max_wait_ms(100)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20)
                        .with_current_leader_epoch(-1)])]),
        );
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch {topic}-{partition} at {offset}");
        let mut records = p.records.clone().unwrap_or_default();
        // The last batch of an answer may be cut short: the next fetch starts at it again.
        while !records.is_empty() {
            let Ok(set) = RecordBatchDecoder::decode(&mut records) else {
                break;
            };
            for r in set.records {
                offset = r.offset + 1;
                out.push(String::from_utf8_lossy(&r.value.unwrap_or_default()).to_string());
            }
        }
        if offset >= p.high_watermark {
            return out;
        }
    }
}

#[test]
fn passthrough_reroutes_only_as_the_client_itself() {
    if support::skip_without_testbed() {
        return;
    }
    let s = secure();
    let dir = support::run_dir("authority-raw");
    let fairlead = passthrough(&dir, &s, "");
    let mut admin = Admin::connect(&support::cluster().bootstrap);
    let t = support::unique("acl");
    admin.call(json!({"op": "create-topic", "topic": t, "assignment": {"0": [1, 2, 3]}}));
    let leader = admin.describe(&t)[0]["leader"].as_i64().unwrap() as i32;
    let other = (1..=3).find(|n| *n != leader).unwrap();
    allow(
        &t,
        &[
            ("alice", &[READ, WRITE, DESCRIBE]),
            ("bob", &[DESCRIBE]),
            // fairlead's own principal may write the topic: were a client's request sent as
            // fairlead, it would be written, and the test would see it.
            ("fairlead", &[READ, WRITE, DESCRIBE]),
        ],
    );
    let produce = |c: &mut Raw, value: &str| -> i16 {
        let r: ProduceResponse = c.call(
            ApiKey::Produce,
            9,
            &raw::produce(&t, 0, raw::batch(&[value], -1, -1, -1), -1, 10_000),
        );
        r.responses[0].partition_responses[0].error_code
    };
    // bob may describe the topic but not write it: sent to a broker that does not lead it,
    // his produce is refused exactly as it would be on the leader.
    let (mut bob, code) = client(&fairlead, other, Some(("bob", "bob-secret")), &t);
    assert_eq!(code, 0);
    assert_eq!(
        produce(&mut bob, "from-bob"),
        TOPIC_AUTHORIZATION_FAILED,
        "{}",
        support::tail(&fairlead.log, 3000)
    );
    // alice may: rerouted as alice, and written.
    let (mut alice, code) = client(&fairlead, other, Some(("alice", "alice-secret")), &t);
    assert_eq!(code, 0);
    assert_eq!(
        produce(&mut alice, "from-alice"),
        0,
        "{}",
        support::tail(&fairlead.log, 3000)
    );
    // A client that never authenticated: its request goes to the broker it chose, which
    // refuses it (the SASL listener closes a connection that skips authentication).
    let (mut nobody, _) = client(&fairlead, other, None, &t);
    nobody.send(
        ApiKey::Produce,
        9,
        &raw::produce(&t, 0, raw::batch(&["from-nobody"], -1, -1, -1), -1, 10_000),
    );
    let answer = nobody.recv();
    if let Ok(frame) = answer {
        let r: ProduceResponse = raw::decode(ApiKey::Produce, 9, 1, frame);
        assert_ne!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let broker = &support::cluster().brokers[&leader];
    assert_eq!(
        values(broker, &t, 0),
        vec!["from-alice".to_string()],
        "only the authorized client's record is in the topic"
    );
}

/// The Java client's SASL settings for `user` (its password is `<user>-secret`) with
/// `mechanism`, speaking SASL to fairlead in plaintext (fairlead's broker connections are TLS).
fn sasl_props(mechanism: &str, user: &str) -> Vec<(String, String)> {
    let module = if mechanism == "PLAIN" {
        "org.apache.kafka.common.security.plain.PlainLoginModule"
    } else {
        "org.apache.kafka.common.security.scram.ScramLoginModule"
    };
    [
        ("security.protocol", "SASL_PLAINTEXT".to_string()),
        ("sasl.mechanism", mechanism.to_string()),
        (
            "sasl.jaas.config",
            format!("{module} required username=\"{user}\" password=\"{user}-secret\";"),
        ),
        ("acks", "all".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A Java producer (unmodified kafka-clients, the testkit) through fairlead, authenticated as
/// `(mechanism, user)`, with these settings besides its SASL ones.
fn producer(
    dir: &std::path::Path,
    run: &str,
    fairlead: &Fairlead,
    topic: &str,
    rate: u32,
    (mechanism, user): (&str, &str),
    extra: &[(&str, &str)],
) -> ClientProc {
    let props = sasl_props(mechanism, user);
    let mut all: Vec<(&str, &str)> = props
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.extend_from_slice(extra);
    ClientProc::producer(
        ClientKind::Java,
        dir,
        run,
        &fairlead.bootstrap,
        topic,
        rate,
        &all,
    )
}

/// Real clients (the Java testkit) through fairlead in passthrough mode while every partition's
/// leader moves, against the brokers' own authorizer (issue 23):
///
/// * alice (DESCRIBE on topic B, no WRITE) produces to B: her requests go to fairlead's port of
///   the broker that led B when her client last read metadata, which no longer leads it once B
///   moved (fairlead absorbs the moves, so her client never refreshes). Every record is refused
///   with TOPIC_AUTHORIZATION_FAILED, and B stays empty, although fairlead's own principal may
///   write B.
/// * alice (WRITE on A) produces to A: absorbed and written, her client sees no error at all.
/// * bob (DESCRIBE on A, no WRITE) produces to A with the same client.id as alice, from the same
///   host, at the same time: every record of his is refused, and A holds alice's records only,
///   each once.
///
/// SCRAM-SHA-512 (a SCRAM client leaves fairlead nothing to present: its reroutes travel on its
/// principal's own connections, lent) and PLAIN (fairlead opens connections with the client's
/// credentials). About 45 s each on an idle 2-core machine.
fn real_clients_act_only_as_themselves(mechanism: &str) {
    let s = secure();
    let _chaos = support::chaos_lock();
    let dir = support::run_dir(&format!("authority-java-{}", mechanism.to_lowercase()));
    let fairlead = passthrough(
        &dir,
        &s,
        "topic_labels = true\nlog_level = 'info,fairlead::router=debug'",
    );
    let mut admin = Admin::connect(&support::cluster().bootstrap);
    let a = support::unique("acl-a");
    let b = support::unique("acl-b");
    // A on every broker, so alice's producer has a connection authenticated as alice to each
    // (what a SCRAM client's reroutes may travel on).
    admin.create_topic(&a, 3, 3);
    admin.create_topic(&b, 1, 3);
    allow(
        &a,
        &[
            ("alice", &[WRITE, DESCRIBE]),
            ("bob", &[DESCRIBE]),
            ("fairlead", &[READ, WRITE, DESCRIBE]),
        ],
    );
    allow(
        &b,
        &[
            ("alice", &[DESCRIBE]),
            ("fairlead", &[READ, WRITE, DESCRIBE]),
        ],
    );
    let shared = [("client.id", "same-client-id")];
    let mut alice_a = producer(
        &dir,
        "alice-a",
        &fairlead,
        &a,
        200,
        (mechanism, "alice"),
        &shared,
    );
    let bob_a = producer(
        &dir,
        "bob-a",
        &fairlead,
        &a,
        200,
        (mechanism, "bob"),
        &shared,
    );
    let alice_b = producer(
        &dir,
        "alice-b",
        &fairlead,
        &b,
        50,
        (mechanism, "alice"),
        &[],
    );
    alice_a.wait_records(50, Duration::from_secs(90));
    // Every producer has read its metadata and sent (its JVM started with alice's).
    std::thread::sleep(Duration::from_secs(3));
    let started = std::time::Instant::now();
    let mut moves = 0;
    for round in 0..8 {
        let topic = if round % 2 == 0 { &b } else { &a };
        let r = admin.move_all(topic);
        moves += r["moves"].as_array().map_or(0, Vec::len);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let moving = started.elapsed();
    let alice_a = alice_a.stop();
    let bob_a = bob_a.stop();
    let alice_b = alice_b.stop();
    let ctx = format!(
        "alice-a {alice_a}\nbob-a {bob_a}\nalice-b {alice_b}\n--- fairlead log tail ---\n{}",
        support::tail(&fairlead.log, 4000)
    );
    let n = |v: &serde_json::Value, k: &str| v[k].as_i64().unwrap_or(-1);
    let refused_all = |v: &serde_json::Value| {
        n(v, "sent") > 0
            && n(v, "acked") == 0
            && n(v, "failed") == n(v, "sent")
            && v["errors"]
                .as_object()
                .is_some_and(|e| e.keys().all(|k| k == "TopicAuthorizationException"))
    };
    // (a) alice may not write B: refused, though sent to a broker that does not lead B.
    assert!(refused_all(&alice_b), "alice's produce to B\n{ctx}");
    // Whether a real client's send reaches a port that does not lead B depends on timing the
    // test does not control: the broker refuses alice on B before it looks at leadership, so
    // neither she nor fairlead learns of B's moves from her answers, only from fairlead's own
    // refreshes (seen: 110 and 182 such sends in two runs, 0 in another). The raw test above
    // sends to a non-leader port on purpose; here the count is reported, and what is asserted
    // holds either way: nothing of alice's is ever written to B.
    let b_rerouted = fairlead.metric("fairlead_topic_reroutes_total", &[("topic", b.as_str())]);
    println!("alice's produce to B routed away from the port it was sent to: {b_rerouted}");
    let b_end = admin.call(json!({"op": "end-offsets", "topic": b}))["offsets"]["0"]
        .as_i64()
        .unwrap();
    assert_eq!(b_end, 0, "records of alice's are in B\n{ctx}");
    // (b) alice's produce to A: absorbed, no error of any kind reached her client.
    for k in ["failed", "record_error_total", "record_retry_total"] {
        assert_eq!(alice_a[k].as_f64(), Some(0.0), "alice-a {k}\n{ctx}");
    }
    let a_rerouted = fairlead.metric("fairlead_topic_reroutes_total", &[("topic", a.as_str())]);
    assert!(a_rerouted > 0.0, "nothing of A was rerouted\n{ctx}");
    // (c) bob, same client.id and host as alice, may not write A: every record refused.
    assert!(refused_all(&bob_a), "bob's produce to A\n{ctx}");
    // A holds exactly alice's acknowledged records, each once, and nothing of bob's.
    let leaders = admin.describe(&a);
    let mut in_a = Vec::new();
    for p in &leaders {
        let leader = p["leader"].as_i64().unwrap() as i32;
        let part = p["partition"].as_i64().unwrap() as i32;
        in_a.extend(values(&support::cluster().brokers[&leader], &a, part));
    }
    let not_alice: Vec<&String> = in_a.iter().filter(|v| !v.starts_with("alice-a:")).collect();
    assert!(
        not_alice.is_empty(),
        "{} records in A are not alice's, e.g. {:?}\n{ctx}",
        not_alice.len(),
        &not_alice[..not_alice.len().min(3)]
    );
    let seqs: std::collections::HashSet<&str> =
        in_a.iter().filter_map(|v| v.split(':').nth(1)).collect();
    assert_eq!(seqs.len(), in_a.len(), "duplicates in A\n{ctx}");
    assert_eq!(
        in_a.len() as i64,
        n(&alice_a, "acked"),
        "A against alice's acks\n{ctx}"
    );
    let not_absorbed = fairlead.metric("fairlead_errors_not_absorbed_total", &[]);
    println!(
        "{mechanism}: {moves} partition moves in {moving:?}; alice sent {} to A (all written), {} to B (all refused); bob sent {} to A (all refused); rerouted A {a_rerouted}, B {b_rerouted}; not absorbed {not_absorbed}",
        n(&alice_a, "sent"),
        n(&alice_b, "sent"),
        n(&bob_a, "sent"),
    );
}

#[test]
fn real_scram_clients_act_only_as_themselves_while_leaders_move() {
    if support::skip_without_testbed() {
        return;
    }
    real_clients_act_only_as_themselves("SCRAM-SHA-512");
}

#[test]
fn real_plain_clients_act_only_as_themselves_while_leaders_move() {
    if support::skip_without_testbed() {
        return;
    }
    real_clients_act_only_as_themselves("PLAIN");
}
