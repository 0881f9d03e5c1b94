//! SASL passthrough on the real brokers' own authorizer (StandardAuthorizer, ACLs made with the
//! Admin API): fairlead never acts with more authority than its client (issue 23). A client's
//! request sent to the port of a broker that does not lead its partition is rerouted only on a
//! connection authenticated as that client, so the brokers' ACLs apply to it as if it had gone
//! directly; a client that never authenticated gets nothing routed at all.

#[path = "../support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
    MetadataRequest, MetadataResponse, ProduceResponse, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;
use support::raw::{self, Raw};
use support::{Admin, Fairlead};

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
fn passthrough(dir: &std::path::Path, s: &Secure) -> Fairlead {
    let path = dir.join("fairlead.toml");
    let text = format!(
        "bootstrap = '{}'\nupstream_tls = true\nupstream_tls_ca_file = '{}'\nsasl_mechanism = 'PLAIN'\nsasl_username = 'fairlead'\nsasl_password = 'fairlead-secret'\nsasl_mode = 'passthrough'\n",
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
                    .with_operation(1)
                    .with_permission_type(1),
            );
            let n: usize = d.resources.iter().map(|r| r.acls.len()).sum();
            if n == want {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "ACLs on {addr}: {n} of {want}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A client of fairlead's port for broker `node` that authenticates with PLAIN (None: not at
/// all) and asks for metadata, as clients do. Returns it and the SaslAuthenticate code.
fn client(fairlead: &Fairlead, node: i32, user: Option<(&str, &str)>) -> (Raw, i16) {
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
        let _: MetadataResponse = c.call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        );
    }
    (c, code)
}

/// Every value in partition 0 of `topic`, read as the PLAINTEXT super user from its leader.
fn values(leader: &str, topic: &str) -> Vec<String> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::records::RecordBatchDecoder;
    let mut c = Raw::connect(leader);
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
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)
                    .with_current_leader_epoch(-1)])]),
    );
    let mut records = resp.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    let mut out = Vec::new();
    while !records.is_empty() {
        for r in RecordBatchDecoder::decode(&mut records).unwrap().records {
            out.push(String::from_utf8_lossy(&r.value.unwrap_or_default()).to_string());
        }
    }
    out
}

#[test]
fn passthrough_reroutes_only_as_the_client_itself() {
    if support::skip_without_testbed() {
        return;
    }
    let s = secure();
    let dir = support::run_dir("authority-raw");
    let fairlead = passthrough(&dir, &s);
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
            ("fairlead", &[READ, DESCRIBE]),
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
    let (mut bob, code) = client(&fairlead, other, Some(("bob", "bob-secret")));
    assert_eq!(code, 0);
    assert_eq!(
        produce(&mut bob, "from-bob"),
        TOPIC_AUTHORIZATION_FAILED,
        "{}",
        support::tail(&fairlead.log, 3000)
    );
    // alice may: rerouted as alice, and written.
    let (mut alice, code) = client(&fairlead, other, Some(("alice", "alice-secret")));
    assert_eq!(code, 0);
    assert_eq!(
        produce(&mut alice, "from-alice"),
        0,
        "{}",
        support::tail(&fairlead.log, 3000)
    );
    // A client that never authenticated: its request goes to the broker it chose, which
    // refuses it (the SASL listener closes a connection that skips authentication).
    let (mut nobody, _) = client(&fairlead, other, None);
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
        values(broker, &t),
        vec!["from-alice".to_string()],
        "only the authorized client's record is in the topic"
    );
}
