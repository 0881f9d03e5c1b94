//! Secure clusters: fairlead in front of the test bed's SASL_SSL listener (TLS with a CA made at
//! start-up, SCRAM and PLAIN users), clients connecting to fairlead in plaintext (sidecar mode)
//! or authenticating themselves (passthrough), and every misconfiguration failing clearly.

#[path = "../support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::scenario::{self, Plan};
use support::{ClientKind, ClientProc, Fairlead};

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

/// A config file for fairlead in front of the SASL_SSL listener.
fn config(
    dir: &std::path::Path,
    s: &Secure,
    mechanism: &str,
    user: &str,
    password: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join("fairlead.toml");
    let text = format!(
        "bootstrap = '{}'\nupstream_tls = true\nupstream_tls_ca_file = '{}'\nsasl_mechanism = '{mechanism}'\nsasl_username = '{user}'\nsasl_password = '{password}'\n{extra}\n",
        s.bootstrap,
        s.tls.join("ca.pem").display()
    );
    std::fs::write(&path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn fairlead_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fairlead"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FAIRLEAD_")) {
        c.env_remove(k);
    }
    c.env("NO_COLOR", "1");
    c
}

/// Start-up against the secure listener with `cfg` fails; returns the message.
fn start_fails(cfg: &std::path::Path) -> String {
    let out = fairlead_cmd()
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{}", support::free_port_block(8)),
            "--admin",
            "127.0.0.1:0",
            "--startup-timeout-ms",
            "20000",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "start-up should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn the_acceptance_scenario_passes_against_sasl_ssl_with_scram() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let s = secure();
    let dir = support::run_dir("secure-acceptance");
    let cfg = config(&dir, &s, "SCRAM-SHA-512", "alice", "alice-secret", "");
    let fairlead = Fairlead::start(
        &s.bootstrap,
        &dir,
        &["--config", cfg.to_str().unwrap(), "--log-level", "debug"],
    );
    let mut plan = Plan::new("secure-acceptance", ClientKind::Java);
    plan.move_rounds = 12;
    plan.move_interval = Duration::from_millis(1000);
    plan.reassignments = 1;
    plan.idempotent_producer = true;
    let out = scenario::run(&plan, &fairlead.bootstrap, dir);
    let ctx = format!("{}\n{}", out.summary(), support::tail(&fairlead.log, 4000));
    assert_eq!(out.leadership_errors_seen, 0, "{ctx}");
    for (name, s) in out.legacy.iter().chain(&out.idempotent) {
        assert_eq!(scenario::num(&s["failed"]), 0.0, "{name}\n{ctx}");
        assert_eq!(
            scenario::num(&s["record_retry_total"]),
            0.0,
            "{name}\n{ctx}"
        );
    }
    for (run, topic, v) in &out.verdicts {
        if run.starts_with("idem") {
            assert!(v.exactly_once_in_order(), "{run} {topic} {v:?}");
        } else {
            assert!(v.lossless(), "{run} {topic} {:?}", v.missing);
        }
    }
    // The scenario outlived the brokers' 20 s SASL sessions: connections were renewed in time.
    assert!(out.elapsed > Duration::from_secs(20), "{:?}", out.elapsed);
    // Secrets never show: not in logs (even at debug), not in metrics.
    let log = fairlead.log_text();
    assert!(
        !log.contains("alice-secret"),
        "the password leaked into the log"
    );
    assert!(!fairlead.metrics().contains("alice-secret"));
}

#[test]
fn plain_and_scram_sha_256_work_too() {
    if support::skip_without_testbed() {
        return;
    }
    let s = secure();
    for (mech, user, pw) in [
        ("PLAIN", "bob", "bob-secret"),
        ("SCRAM-SHA-256", "alice", "alice-secret"),
    ] {
        let dir = support::run_dir(&format!("secure-{mech}"));
        let cfg = config(&dir, &s, mech, user, pw, "");
        let fairlead = Fairlead::start(&s.bootstrap, &dir, &["--config", cfg.to_str().unwrap()]);
        let topic = support::unique(&format!("secure-{}", mech.to_lowercase()));
        let mut p = ClientProc::producer(
            ClientKind::Java,
            &dir,
            "p",
            &fairlead.bootstrap,
            &topic,
            100,
            &[("acks", "all")],
        );
        p.wait_records(20, Duration::from_secs(60));
        let summary = p.stop();
        assert_eq!(summary["failed"], serde_json::json!(0), "{mech}: {summary}");
    }
}

#[test]
fn a_wrong_password_fails_start_up_clearly_without_showing_the_password() {
    if support::skip_without_testbed() {
        return;
    }
    let s = secure();
    let dir = support::run_dir("secure-wrong-password");
    let cfg = config(&dir, &s, "SCRAM-SHA-512", "alice", "not-the-password", "");
    let err = start_fails(&cfg);
    assert!(
        err.contains("SASL authentication failed")
            && err.contains("alice")
            && err.contains("SCRAM-SHA-512"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-password"),
        "the password leaked: {err}"
    );
}

#[test]
fn an_untrusted_certificate_fails_start_up_clearly() {
    if support::skip_without_testbed() {
        return;
    }
    let s = secure();
    let dir = support::run_dir("secure-untrusted");
    let path = config(&dir, &s, "SCRAM-SHA-512", "alice", "alice-secret", "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("ca.pem", "other-ca.pem");
    std::fs::write(&path, text).unwrap();
    let err = start_fails(&path);
    assert!(
        err.contains("TLS handshake")
            && (err.contains("UnknownIssuer") || err.contains("unknown issuer")),
        "{err}"
    );
}

#[test]
fn a_hostname_mismatch_fails_start_up_clearly() {
    if support::skip_without_testbed() {
        return;
    }
    let s = secure();
    let dir = support::run_dir("secure-hostname");
    let cfg = config(
        &dir,
        &s,
        "SCRAM-SHA-512",
        "alice",
        "alice-secret",
        "upstream_tls_server_name = 'kafka.example.com'",
    );
    let err = start_fails(&cfg);
    assert!(
        err.contains("kafka.example.com") && err.contains("not valid for name"),
        "{err}"
    );
}

#[test]
fn a_config_file_with_a_secret_readable_by_others_draws_a_warning() {
    if support::skip_without_testbed() {
        return;
    }
    let s = secure();
    let dir = support::run_dir("secure-perms");
    let cfg = config(&dir, &s, "SCRAM-SHA-512", "alice", "alice-secret", "");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let fairlead = Fairlead::start(&s.bootstrap, &dir, &["--config", cfg.to_str().unwrap()]);
    let log = fairlead.log_text();
    assert!(log.contains("readable by other users"), "{log}");
    assert!(!log.contains("alice-secret"));
}

#[test]
fn sasl_passthrough_lets_clients_authenticate_themselves() {
    if support::skip_without_testbed() {
        return;
    }
    let s = secure();
    let dir = support::run_dir("secure-passthrough");
    let cfg = config(
        &dir,
        &s,
        "SCRAM-SHA-512",
        "alice",
        "alice-secret",
        "sasl_mode = 'passthrough'",
    );
    let fairlead = Fairlead::start(&s.bootstrap, &dir, &["--config", cfg.to_str().unwrap()]);
    let topic = support::unique("passthrough");
    // The client speaks SASL (inside the Kafka protocol) to fairlead in plaintext; fairlead's
    // broker connections are TLS.
    let props = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"alice-secret\";"),
        ("acks", "all"),
    ];
    let mut p = ClientProc::producer(
        ClientKind::Java,
        &dir,
        "p",
        &fairlead.bootstrap,
        &topic,
        100,
        &props,
    );
    p.wait_records(20, Duration::from_secs(60));
    let summary = p.stop();
    assert_eq!(
        summary["failed"],
        serde_json::json!(0),
        "{summary}\n{}",
        support::tail(&fairlead.log, 3000)
    );
}

#[test]
fn clients_can_reach_fairlead_over_tls() {
    if support::skip_without_testbed() {
        return;
    }
    let s = secure();
    let dir = support::run_dir("secure-listener-tls");
    let extra = format!(
        "listener_tls_cert_file = '{}'\nlistener_tls_key_file = '{}'",
        s.tls.join("listener.pem").display(),
        s.tls.join("listener.key").display()
    );
    let cfg = config(&dir, &s, "SCRAM-SHA-512", "alice", "alice-secret", &extra);
    let fairlead = Fairlead::start(&s.bootstrap, &dir, &["--config", cfg.to_str().unwrap()]);
    let topic = support::unique("listener-tls");
    let ca = s.tls.join("ca.pem").display().to_string();
    let props = [
        ("security.protocol", "SSL"),
        ("ssl.truststore.type", "PEM"),
        ("ssl.truststore.location", ca.as_str()),
        ("acks", "all"),
    ];
    let mut p = ClientProc::producer(
        ClientKind::Java,
        &dir,
        "p",
        &fairlead.bootstrap,
        &topic,
        100,
        &props,
    );
    p.wait_records(20, Duration::from_secs(60));
    let summary = p.stop();
    assert_eq!(summary["failed"], serde_json::json!(0), "{summary}");
}

/// With a client CA configured, fairlead's listener requires a client certificate chaining to it.
#[test]
fn the_listener_can_require_client_certificates() {
    if support::skip_without_testbed() {
        return;
    }
    let s = secure();
    let dir = support::run_dir("secure-listener-mtls");
    let t = &s.tls;
    let extra = format!(
        "listener_tls_cert_file = '{}'\nlistener_tls_key_file = '{}'\nlistener_tls_client_ca_file = '{}'",
        t.join("listener.pem").display(),
        t.join("listener.key").display(),
        t.join("ca.pem").display()
    );
    let cfg = config(&dir, &s, "SCRAM-SHA-512", "alice", "alice-secret", &extra);
    let fairlead = Fairlead::start(&s.bootstrap, &dir, &["--config", cfg.to_str().unwrap()]);
    let handshake = |cert: bool| {
        let mut c = Command::new("openssl");
        c.args([
            "s_client",
            "-connect",
            &fairlead.bootstrap,
            "-CAfile",
            t.join("ca.pem").to_str().unwrap(),
        ]);
        if cert {
            c.args([
                "-cert",
                t.join("client.pem").to_str().unwrap(),
                "-key",
                t.join("client.key").to_str().unwrap(),
            ]);
        }
        // s_client sends a TLS 1.3 close after stdin ends; give the server time to judge.
        let out = c.stdin(std::process::Stdio::null()).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    let with = handshake(true);
    assert!(with.contains("Verify return code: 0 (ok)"), "{with}");
    let _ = handshake(false);
    std::thread::sleep(Duration::from_millis(300));
    let log = fairlead.log_text();
    assert!(
        log.contains("TLS handshake with client failed") && log.contains("no certificates"),
        "{log}"
    );
}
