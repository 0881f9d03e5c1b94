//! The operational surface, on the real binary against the real cluster: metrics of reroutes,
//! health and readiness, configuration precedence and errors, logs, status, graceful shutdown.

#[path = "../support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port_block, http_get, metric_sum, Admin, ClientKind, ClientProc, Fairlead};

fn fairlead_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fairlead"));
    // Tests must not inherit someone's FAIRLEAD_* settings.
    for (k, _) in std::env::vars() {
        if k.starts_with("FAIRLEAD_") {
            c.env_remove(k);
        }
    }
    c.env("NO_COLOR", "1");
    c
}

#[test]
fn every_listed_series_is_exported_at_zero_from_start_up() {
    if support::skip_without_testbed() {
        return;
    }
    let cluster = support::cluster();
    let fairlead = Fairlead::start(&cluster.bootstrap, &support::run_dir("metrics-zero"), &[]);
    let m = fairlead.metrics();
    for api in [
        "Produce",
        "Fetch",
        "ListOffsets",
        "OffsetsForLeaderEpoch",
        "DeleteRecords",
    ] {
        for code in ["5", "6", "74", "75"] {
            for name in [
                "fairlead_errors_absorbed_total",
                "fairlead_errors_passed_through_total",
            ] {
                let line = format!("{name}{{api=\"{api}\",code=\"{code}\"}} 0");
                assert!(m.contains(&line), "missing `{line}`:\n{m}");
            }
        }
        assert!(
            m.contains(&format!("fairlead_reroutes_total{{api=\"{api}\"}} 0")),
            "reroutes {api}"
        );
        for outcome in ["ok", "gave_up", "failed"] {
            assert!(m.contains(&format!(
                "fairlead_replays_total{{api=\"{api}\",outcome=\"{outcome}\"}} 0"
            )));
        }
    }
    for line in [
        "fairlead_leader_changes_total 0",
        "fairlead_client_connections 0",
        "fairlead_broker_ports_unbound 0",
        "fairlead_broker_port_bind_failures_total 0",
    ] {
        assert!(m.contains(line), "missing `{line}`");
    }
    for name in [
        "fairlead_metadata_refreshes_total",
        "fairlead_bytes_total",
        "fairlead_upstream_connections",
        "fairlead_request_duration_seconds_bucket",
        "fairlead_absorb_duration_seconds_bucket",
        "fairlead_produce_outcome_checks_total",
    ] {
        assert!(
            m.lines().any(|l| l.starts_with(name)),
            "missing {name}:\n{m}"
        );
    }
    assert_eq!(
        metric_sum(
            &m,
            "fairlead_metadata_refreshes_total",
            &[("trigger", "startup")]
        ),
        1.0
    );
}

#[test]
fn absorbed_errors_and_reroutes_rise_with_their_labels_while_leadership_moves() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let dir = support::run_dir("metrics-under-moves");
    let fairlead = Fairlead::start(&cluster.bootstrap, &dir, &[]);
    let mut admin = Admin::connect(&cluster.bootstrap);
    let topic = support::unique("metrics");
    admin.create_topic(&topic, 6, 3);
    let legacy = [
        ("acks", "all"),
        ("retries", "0"),
        ("enable.idempotence", "false"),
        ("metadata.max.age.ms", "3600000"),
    ];
    let mut p = ClientProc::producer(
        ClientKind::Java,
        &dir,
        "p",
        &fairlead.bootstrap,
        &topic,
        200,
        &legacy,
    );
    let mut c = ClientProc::consumer(
        ClientKind::Java,
        &dir,
        "c",
        &fairlead.bootstrap,
        &[&topic],
        Some(&support::unique("g")),
        &[("metadata.max.age.ms", "3600000")],
    );
    p.wait_records(50, Duration::from_secs(60));
    c.wait_records(50, Duration::from_secs(60));
    let before = fairlead.metrics();
    for _ in 0..4 {
        admin.move_all(&topic);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let after = fairlead.metrics();
    let s = p.stop();
    c.stop();
    let rise = |name: &str, labels: &[(&str, &str)]| {
        metric_sum(&after, name, labels) - metric_sum(&before, name, labels)
    };
    assert!(
        rise(
            "fairlead_errors_absorbed_total",
            &[("api", "Produce"), ("code", "6")]
        ) > 0.0,
        "Produce code 6 absorbed:\n{after}"
    );
    assert!(
        rise(
            "fairlead_errors_absorbed_total",
            &[("api", "Fetch"), ("code", "74")]
        ) > 0.0,
        "Fetch code 74 absorbed:\n{after}"
    );
    assert!(rise("fairlead_reroutes_total", &[("api", "Produce")]) > 0.0);
    assert!(rise("fairlead_reroutes_total", &[("api", "Fetch")]) > 0.0);
    assert!(rise("fairlead_replays_total", &[("outcome", "ok")]) > 0.0);
    assert!(
        rise("fairlead_leader_changes_total", &[]) >= 24.0,
        "4 rounds x 6 partitions"
    );
    assert!(
        rise(
            "fairlead_absorb_duration_seconds_count",
            &[("api", "Produce")]
        ) > 0.0
    );
    assert_eq!(
        metric_sum(
            &after,
            "fairlead_errors_passed_through_total",
            &[("code", "6")]
        ),
        0.0
    );
    assert_eq!(s["failed"], serde_json::json!(0), "{s}");
    // one INFO line per absorbed leadership change, naming topic, partition and leaders
    let log = fairlead.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("leadership change absorbed") && l.contains(&topic))
        .unwrap_or_else(|| panic!("no leadership change line:\n{log}"));
    for field in [
        "partition=",
        "old_leader=",
        "new_leader=",
        "requests_rerouted=",
        "took_ms=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(
        !log.lines()
            .any(|l| l.contains(" INFO ") && l.contains("absorbed leadership errors")),
        "no per-request INFO lines"
    );
}

/// A TCP forwarder that starts refusing (nothing bound) and forwards once opened.
fn forward_later(to: &'static str) -> (u16, impl FnOnce()) {
    let port = free_port_block(0);
    let open = move || {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let up = TcpStream::connect(to).unwrap();
                for (mut a, mut b) in [(c.try_clone().unwrap(), up.try_clone().unwrap()), (up, c)] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        while let Ok(n) = a.read(&mut buf) {
                            if n == 0 || b.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = b.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
    };
    (port, open)
}

#[test]
fn ready_only_once_metadata_is_loaded() {
    if support::skip_without_testbed() {
        return;
    }
    let (port, open) = forward_later(&support::cluster().brokers[&1]);
    let admin = format!("127.0.0.1:{}", free_port_block(0));
    let listen = free_port_block(8);
    let dir = support::run_dir("readiness");
    let log = std::fs::File::create(dir.join("fairlead.log")).unwrap();
    let mut child = fairlead_bin()
        .args([
            "--bootstrap",
            &format!("127.0.0.1:{port}"),
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--admin",
            &admin,
        ])
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(&admin, "/healthz").is_err() {
        assert!(Instant::now() < deadline, "admin endpoint never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        http_get(&admin, "/healthz").unwrap().0,
        200,
        "alive while waiting for the cluster"
    );
    let (code, body) = http_get(&admin, "/readyz").unwrap();
    assert_eq!(code, 503, "not ready without metadata: {body}");
    assert!(
        body.contains("metadata") || body.contains("listeners"),
        "{body}"
    );
    open();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = http_get(&admin, "/readyz").unwrap();
        if code == 200 {
            assert!(body.starts_with("ready"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "never became ready: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn an_unreachable_cluster_fails_start_up_with_a_clear_message() {
    if support::skip_without_testbed() {
        return;
    }
    let dead = free_port_block(0);
    let out = fairlead_bin()
        .args([
            "--bootstrap",
            &format!("127.0.0.1:{dead}"),
            "--listen",
            &format!("127.0.0.1:{}", free_port_block(8)),
            "--admin",
            "127.0.0.1:0",
            "--startup-timeout-ms",
            "1500",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the Kafka cluster") && err.contains(&dead.to_string()),
        "{err}"
    );
}

#[test]
fn config_precedence_is_file_then_environment_then_flags() {
    if support::skip_without_testbed() {
        return;
    }
    let cluster = support::cluster();
    let dir = support::run_dir("config-precedence");
    let (a, b, c) = (free_port_block(0), free_port_block(0), free_port_block(0));
    let file = dir.join("fairlead.toml");
    std::fs::write(&file, format!("bootstrap = '{}'\nadmin = '127.0.0.1:{a}'\nlisten = '127.0.0.1:{}'\nlog_format = 'json'\n", cluster.bootstrap, free_port_block(8))).unwrap();
    let start = |env: Option<(&str, String)>, flag: Option<String>| {
        let mut cmd = fairlead_bin();
        cmd.arg("--config").arg(&file).stderr(Stdio::null());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        if let Some(f) = flag {
            cmd.args(["--admin", &f]);
        }
        cmd.spawn().unwrap()
    };
    let answers = |port: u16| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if http_get(&format!("127.0.0.1:{port}"), "/healthz").is_ok_and(|(c, _)| c == 200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    // file only
    let mut p = start(None, None);
    assert!(answers(a), "the file's admin address");
    let _ = p.kill();
    let _ = p.wait();
    // environment over file
    let mut p = start(Some(("FAIRLEAD_ADMIN", format!("127.0.0.1:{b}"))), None);
    assert!(answers(b), "FAIRLEAD_ADMIN overrides the file");
    let _ = p.kill();
    let _ = p.wait();
    // flag over environment
    let mut p = start(
        Some(("FAIRLEAD_ADMIN", format!("127.0.0.1:{b}"))),
        Some(format!("127.0.0.1:{c}")),
    );
    assert!(answers(c), "--admin overrides FAIRLEAD_ADMIN");
    let _ = p.kill();
    let _ = p.wait();
}

#[test]
fn each_class_of_bad_value_fails_start_up_naming_option_value_and_what_is_allowed() {
    if support::skip_without_testbed() {
        return;
    }
    let dir = support::run_dir("config-errors");
    let bad_file = dir.join("bad.toml");
    // (arguments, environment, config file contents, what the message must say)
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![],
            vec![],
            "",
            vec!["missing required option `bootstrap`"],
        ),
        (
            vec!["--bootstrap".into(), "kafka".into()],
            vec![],
            "",
            vec!["`bootstrap`", "\"kafka\"", "HOST:PORT"],
        ),
        (
            vec![
                "--bootstrap".into(),
                "k:1".into(),
                "--listen".into(),
                "nowhere".into(),
            ],
            vec![],
            "",
            vec!["`listen`", "\"nowhere\"", "IP:PORT"],
        ),
        (
            vec![
                "--bootstrap".into(),
                "k:1".into(),
                "--max-frame-bytes".into(),
                "10".into(),
            ],
            vec![],
            "",
            vec!["`max_frame_bytes`", "\"10\"", "from 1024"],
        ),
        (
            vec!["--bootstrap".into(), "k:1".into()],
            vec![("FAIRLEAD_ABSORB_TIMEOUT_MS", "99999999999")],
            "",
            vec!["`absorb_timeout_ms`", "99999999999"],
        ),
        (
            vec![
                "--bootstrap".into(),
                "k:1".into(),
                "--log-level".into(),
                "loud!!".into(),
            ],
            vec![],
            "",
            vec!["`log_level`", "loud!!"],
        ),
        (
            vec![
                "--bootstrap".into(),
                "k:1".into(),
                "--metadata-max-age-ms".into(),
                "200000".into(),
            ],
            vec![],
            "",
            vec![
                "`ready_max_metadata_age_ms`",
                "more than metadata_max_age_ms",
            ],
        ),
        (
            vec!["--config".into(), bad_file.display().to_string()],
            vec![],
            "bootstrap = 'k:1'\nlisten_port = 1\n",
            vec!["bad.toml", "unknown field `listen_port`"],
        ),
        (
            vec!["--config".into(), bad_file.display().to_string()],
            vec![],
            "bootstrap = 'k:1'\nmax_connections = 'many'\n",
            vec!["bad.toml", "max_connections"],
        ),
        (
            vec![
                "--config".into(),
                dir.join("missing.toml").display().to_string(),
            ],
            vec![],
            "",
            vec!["cannot read config file", "missing.toml"],
        ),
        (
            vec![
                "--bootstrap".into(),
                "k:1".into(),
                "--log-format".into(),
                "xml".into(),
            ],
            vec![],
            "",
            vec!["xml", "text", "json"],
        ),
    ];
    for (args, env, file, expect) in cases {
        std::fs::write(&bad_file, file).unwrap();
        let out = fairlead_bin()
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        for e in expect {
            assert!(
                err.contains(e),
                "{args:?} {env:?}: expected {e:?} in:\n{err}"
            );
        }
    }
}

#[test]
fn json_logs_and_status_table() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let dir = support::run_dir("status");
    let fairlead = Fairlead::start(&cluster.bootstrap, &dir, &["--log-format", "json"]);
    let mut admin = Admin::connect(&cluster.bootstrap);
    let topic = support::unique("status");
    admin.create_topic(&topic, 3, 3);
    // fairlead tracks the topics its clients use: ask for it by name through fairlead, as a
    // client about to use it does (an answer for every topic would not make it tracked).
    let mut c = support::raw::Raw::connect(&fairlead.bootstrap);
    let _: kafka_protocol::messages::MetadataResponse = c.call(
        kafka_protocol::messages::ApiKey::Metadata,
        12,
        &kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(
                Some(kafka_protocol::messages::TopicName(topic.clone().into())),
            ),
        ])),
    );
    let out = fairlead_bin()
        .args(["status", "--admin", &fairlead.admin])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("BROKER") && table.contains(support::cluster().brokers[&1].as_str()),
        "{table}"
    );
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with(&topic)).collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows.iter().all(|r| r.ends_with("ok")), "{table}");
    let urp = fairlead_bin()
        .args(["status", "--admin", &fairlead.admin, "--under-replicated"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&urp.stdout).contains(&topic),
        "a healthy topic is not under-replicated"
    );
    let (code, json) = http_get(&fairlead.admin, "/leadership").unwrap();
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["topic"] == topic.as_str()
            && p["leader"].as_i64().unwrap() > 0
            && p["isr"].as_array().unwrap().len() == 3));
    // every log line is a JSON object
    let log = fairlead.log_text();
    assert!(log.lines().count() > 3);
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

#[test]
fn sigterm_during_load_exits_zero_within_the_drain_bound_and_loses_no_acknowledged_record() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let dir = support::run_dir("sigterm");
    let mut fairlead = Fairlead::start(&cluster.bootstrap, &dir, &["--drain-timeout-ms", "5000"]);
    let mut admin = Admin::connect(&cluster.bootstrap);
    let topic = support::unique("sigterm");
    admin.create_topic(&topic, 6, 3);
    let mut p = ClientProc::producer(
        ClientKind::Java,
        &dir,
        "p",
        &fairlead.bootstrap,
        &topic,
        500,
        &[
            ("acks", "all"),
            ("retries", "0"),
            ("delivery.timeout.ms", "10000"),
            ("request.timeout.ms", "5000"),
        ],
    );
    p.wait_records(500, Duration::from_secs(60));
    let t0 = Instant::now();
    let status = fairlead.terminate();
    let took = t0.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_millis(5000 + 2000),
        "took {took:?}, drain bound 5 s"
    );
    let summary = p.stop();
    // Everything the producer was told was written is in the log.
    let mut c = ClientProc::consumer(
        ClientKind::Java,
        &dir,
        "c",
        &cluster.bootstrap,
        &[&topic],
        None,
        &[],
    );
    let acked = support::read_acked(&dir.join("p.acked"));
    c.wait_records(acked.len(), Duration::from_secs(60));
    c.stop();
    let v = support::verify(
        &acked,
        &support::read_consumed(&dir.join("c.consumed"), &topic, "p"),
    );
    assert!(
        v.lossless(),
        "acknowledged records missing after SIGTERM: {:?} (producer: {summary})",
        &v.missing[..v.missing.len().min(10)]
    );
    assert!(fairlead.log_text().contains("SIGTERM received"));
    println!("SIGTERM: exited in {took:?}; producer {summary}");
}
