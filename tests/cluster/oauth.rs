//! SASL OAUTHBEARER against real brokers that verify JWTs from a real OIDC provider: the test
//! bed's OAUTH listener (Kafka's OAuthBearerValidatorCallbackHandler, keys from Ory Hydra's
//! JWKS, issuer checked) and Hydra issuing tokens that live 25 s (client credentials grant).
//!
//! Sidecar mode (fairlead gets its own tokens) and passthrough (the client logs in with Kafka's
//! own OAuthBearerLoginCallbackHandler and fairlead relays its exchange), each with real
//! clients for longer than two token lifetimes: no client-visible error. A client's malformed
//! exchange, unknown mechanism, expired or forged token gets the broker's own error. fairlead
//! runs at debug level and its log and metrics are searched for every secret of the run.

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use support::raw::Raw;
use support::{ClientKind, ClientProc, Fairlead};

struct OAuthBed {
    /// The brokers' OAUTH listener (SASL_SSL, OAUTHBEARER).
    bootstrap: String,
    /// The plaintext listener, to read topics back as an observer.
    plain_bootstrap: String,
    tls: PathBuf,
    token_url: String,
    ttl: Duration,
    /// name -> (client id, secret): "fairlead", "app", "other".
    clients: BTreeMap<String, (String, String)>,
}

/// The test bed's OAuth side, or None (after saying why) when it has none and the test bed is
/// not required.
fn oauth_bed() -> Option<OAuthBed> {
    support::cluster();
    let v = support::testbed(&["up"]);
    let Some(o) = v.get("oauth").filter(|o| o.is_object()) else {
        let why =
            "the test bed has no OAUTH listener: Ory Hydra is not built (tests/testbed/testbed \
                   fetch builds it with Go)";
        assert!(
            std::env::var("FAIRLEAD_TESTBED").as_deref() != Ok("required"),
            "{why}"
        );
        eprintln!("SKIPPED: {why}");
        return None;
    };
    let s = |k: &str| o[k].as_str().unwrap().to_string();
    Some(OAuthBed {
        bootstrap: s("bootstrap"),
        plain_bootstrap: v["bootstrap"].as_str().unwrap().to_string(),
        tls: PathBuf::from(v["tls_dir"].as_str().unwrap()),
        token_url: s("token"),
        ttl: Duration::from_secs(o["token_ttl_s"].as_u64().unwrap()),
        clients: o["clients"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, c)| {
                let f = |k: &str| c[k].as_str().unwrap().to_string();
                (name.clone(), (f("id"), f("secret")))
            })
            .collect(),
    })
}

impl OAuthBed {
    fn client(&self, name: &str) -> (&str, &str) {
        let (id, secret) = &self.clients[name];
        (id, secret)
    }

    /// fairlead's config: TLS and OAUTHBEARER to the OAUTH listener, as OAuth client
    /// "fairlead" with its secret in a file.
    fn config(&self, dir: &Path, extra: &str) -> PathBuf {
        let (id, secret) = self.client("fairlead");
        let secret_file = dir.join("client-secret");
        std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
        let path = dir.join("fairlead.toml");
        let text = format!(
            "bootstrap = '{}'\nupstream_tls = true\nupstream_tls_ca_file = '{}'\n\
             sasl_mechanism = 'OAUTHBEARER'\nsasl_oauthbearer_token_endpoint_url = '{}'\n\
             sasl_oauthbearer_client_id = '{id}'\nsasl_oauthbearer_client_secret_file = '{}'\n\
             sasl_oauthbearer_scope = 'kafka'\nsasl_oauthbearer_audience = 'kafka'\n{extra}\n",
            self.bootstrap,
            self.tls.join("ca.pem").display(),
            self.token_url,
            secret_file.display(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A token for OAuth client `name`, straight from Hydra.
    fn token(&self, name: &str) -> String {
        let (id, secret) = self.client(name);
        let rest = self.token_url.strip_prefix("http://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        let body = "grant_type=client_credentials&scope=kafka&audience=kafka";
        let mut s = std::net::TcpStream::connect(authority).unwrap();
        write!(
            s,
            "POST /{path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Basic {basic}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let json = &raw[raw.find('{').expect("a JSON body")..raw.rfind('}').unwrap() + 1];
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token from Hydra: {raw}"))
            .to_string()
    }

    /// Every secret of the test bed's OAuth clients.
    fn secrets(&self) -> Vec<&str> {
        self.clients.values().map(|(_, s)| s.as_str()).collect()
    }
}

/// Runs a producer (idempotent, acks=all) through `fairlead` for `run_for` from its first
/// records, then reads the topic back directly: every acknowledged record is there once, in
/// order, and the producer saw no error and retried nothing.
fn produce_through(
    bed: &OAuthBed,
    fairlead: &Fairlead,
    dir: &Path,
    props: &[(&str, &str)],
    env: &[(&str, &str)],
    run_for: Duration,
) -> serde_json::Value {
    let topic = support::unique("oauth");
    let mut all = vec![("acks", "all"), ("enable.idempotence", "true")];
    all.extend_from_slice(props);
    let mut p = ClientProc::producer_with_env(
        ClientKind::Java,
        dir,
        "p",
        &fairlead.bootstrap,
        &topic,
        200,
        &all,
        env,
    );
    // A JVM's start on a busy 2-core machine is slow: the first records may take a while.
    p.wait_records(100, Duration::from_secs(120));
    let t0 = Instant::now();
    while t0.elapsed() < run_for {
        std::thread::sleep(Duration::from_millis(500));
    }
    let acked_file = p.data.clone();
    let summary = p.stop();
    let ctx = format!("{summary}\n{}", support::tail(&fairlead.log, 4000));
    assert_eq!(summary["failed"], serde_json::json!(0), "{ctx}");
    assert_eq!(
        summary["record_retry_total"].as_f64(),
        Some(0.0),
        "a retry is an error the client saw: {ctx}"
    );
    let c = ClientProc::consumer(
        ClientKind::Java,
        dir,
        "c",
        &bed.plain_bootstrap,
        &[&topic],
        None,
        &[("auto.offset.reset", "earliest")],
    );
    let consumed_file = c.data.clone();
    c.stop();
    let v = support::verify(
        &support::read_acked(&acked_file),
        &support::read_consumed(&consumed_file, &topic, "p"),
    );
    assert!(v.acked > 1000, "{v:?}");
    assert!(v.exactly_once_in_order(), "{v:?}");
    summary
}

/// fairlead gets its own tokens; a producer runs through it for more than two token lifetimes.
/// Every broker connection's session ends with its token (KIP-368): fairlead has replaced them
/// all in time, so the client saw nothing.
#[test]
fn sidecar_mode_gets_its_own_tokens_and_outlives_them() {
    if support::skip_without_testbed() {
        return;
    }
    let Some(bed) = oauth_bed() else { return };
    let dir = support::run_dir("oauth-sidecar");
    let cfg = bed.config(&dir, "");
    let fairlead = Fairlead::start(
        &bed.bootstrap,
        &dir,
        &["--config", cfg.to_str().unwrap(), "--log-level", "debug"],
    );
    let run_for = bed.ttl * 5 / 2;
    produce_through(&bed, &fairlead, &dir, &[], &[], run_for);
    let log = fairlead.log_text();
    let refreshed = log.matches("OAuth token refreshed").count();
    assert!(
        refreshed >= 2,
        "{refreshed} refreshes in {run_for:?}:\n{log}"
    );
    let connected = log.matches("upstream connected").count();
    assert!(connected >= 4, "connections were renewed: {connected}");
    let mut secrets = bed.secrets();
    let (_, s) = bed.client("fairlead");
    secrets.push(s);
    support::assert_no_secrets("fairlead's debug log", &log, &secrets);
    support::assert_no_secrets("fairlead's metrics", &fairlead.metrics(), &secrets);
}

/// Passthrough: the client logs in to Hydra itself (Kafka's OAuthBearerLoginCallbackHandler,
/// with the testkit's retriever that asks for the brokers' audience),
/// fairlead relays its SaslHandshake/SaslAuthenticate, and the client re-authenticates on its
/// connection when the broker's session (its token) runs out: more than two lifetimes, no
/// client-visible error.
#[test]
fn passthrough_relays_the_clients_own_oauthbearer_login() {
    if support::skip_without_testbed() {
        return;
    }
    let Some(bed) = oauth_bed() else { return };
    let dir = support::run_dir("oauth-passthrough");
    let cfg = bed.config(&dir, "sasl_mode = 'passthrough'");
    let fairlead = Fairlead::start(
        &bed.bootstrap,
        &dir,
        &["--config", cfg.to_str().unwrap(), "--log-level", "debug"],
    );
    let (id, secret) = bed.client("app");
    let jaas = format!(
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
         clientId=\"{id}\" clientSecret=\"{secret}\" scope=\"kafka\" audience=\"kafka\";"
    );
    let props = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "OAUTHBEARER"),
        (
            "sasl.login.callback.handler.class",
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
        ),
        (
            "sasl.oauthbearer.token.endpoint.url",
            bed.token_url.as_str(),
        ),
        // Kafka's retriever asks for no audience, Hydra then grants none, and the brokers
        // refuse a token without theirs: the testkit's retriever adds `audience`, no more.
        (
            "sasl.oauthbearer.jwt.retriever.class",
            "dev.fairlead.testkit.AudienceJwtRetriever",
        ),
        ("sasl.jaas.config", jaas.as_str()),
    ];
    // Kafka clients only call OAuth URLs listed in this system property (CVE-2025-27817).
    let jvm = format!(
        "-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={}",
        bed.token_url
    );
    produce_through(
        &bed,
        &fairlead,
        &dir,
        &props,
        &[("JDK_JAVA_OPTIONS", &jvm)],
        bed.ttl * 5 / 2,
    );
    let log = fairlead.log_text();
    support::assert_no_secrets("fairlead's debug log", &log, &bed.secrets());
    support::assert_no_secrets("fairlead's metrics", &fairlead.metrics(), &bed.secrets());
}

/// A raw client through fairlead (passthrough) whose SASL exchange is wrong gets exactly what
/// the broker says, and its connection ends: nothing of fairlead's serves it.
#[test]
fn bad_sasl_exchanges_get_the_brokers_own_errors() {
    if support::skip_without_testbed() {
        return;
    }
    let Some(bed) = oauth_bed() else { return };
    let dir = support::run_dir("oauth-bad-input");
    let cfg = bed.config(&dir, "sasl_mode = 'passthrough'");
    let fairlead = Fairlead::start(
        &bed.bootstrap,
        &dir,
        &["--config", cfg.to_str().unwrap(), "--log-level", "debug"],
    );
    let soon_expired = bed.token("other");
    // What passthrough principal rules read of a client's token, on a real one.
    let gs2 = format!("n,,\x01auth=Bearer {soon_expired}\x01\x01");
    let read = fairlead::testing::oauth::parse_initial_response(
        gs2.as_bytes(),
        fairlead::testing::oauth::SUB_CLAIM,
    )
    .unwrap();
    assert_eq!(read.subject, bed.client("other").0);
    let left = read
        .expires
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left <= bed.ttl && left > bed.ttl / 2, "{left:?}");
    let handshake = |raw: &mut Raw, mechanism: &str| -> SaslHandshakeResponse {
        raw.call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_string(mechanism.into())),
        )
    };
    let authenticate = |raw: &mut Raw, bytes: Vec<u8>| -> SaslAuthenticateResponse {
        raw.call(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
        )
    };
    // After a refusal the broker closes the connection, and so does fairlead: a request gets
    // no answer from anyone.
    let closed = |mut raw: Raw| {
        raw.set_read_timeout(Duration::from_secs(10));
        raw.send(ApiKey::Metadata, 4, &MetadataRequest::default());
        assert!(
            raw.recv().is_err(),
            "answered after a failed authentication"
        );
    };

    // Unknown mechanism: UNSUPPORTED_SASL_MECHANISM (33) and the listener's mechanisms.
    let mut raw = Raw::connect(&fairlead.bootstrap);
    let hs = handshake(&mut raw, "NOT-A-MECHANISM");
    assert_eq!(hs.error_code, 33);
    let offered: Vec<String> = hs.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(offered, vec!["OAUTHBEARER"]);
    closed(raw);

    // A malformed initial response: SASL_AUTHENTICATION_FAILED (58) from the broker.
    let mut raw = Raw::connect(&fairlead.bootstrap);
    assert_eq!(handshake(&mut raw, "OAUTHBEARER").error_code, 0);
    let r = authenticate(&mut raw, b"n,,\x01not-kafka\x01\x01".to_vec());
    assert_eq!(r.error_code, 58, "{r:?}");
    closed(raw);

    // A forged token (another subject, the original signature): the broker's RFC 7628 error
    // challenge, then 58 once the client acknowledges it.
    let forged = {
        let parts: Vec<&str> = soon_expired.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = "admin".into();
        format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(claims.to_string()),
            parts[2]
        )
    };
    let refused = |token: &str| {
        let mut raw = Raw::connect(&fairlead.bootstrap);
        assert_eq!(handshake(&mut raw, "OAUTHBEARER").error_code, 0);
        let gs2 = format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes();
        let challenge = authenticate(&mut raw, gs2);
        assert_eq!(challenge.error_code, 0, "{challenge:?}");
        let status = String::from_utf8_lossy(&challenge.auth_bytes).to_string();
        assert!(status.contains("invalid_token"), "{status}");
        let last = authenticate(&mut raw, vec![0x01]);
        assert_eq!(last.error_code, 58, "{last:?}");
        closed(raw);
        last.error_message
            .map(|m| m.to_string())
            .unwrap_or_default()
    };
    refused(&forged);

    // The same token once it has expired.
    std::thread::sleep(bed.ttl + Duration::from_secs(2));
    let message = refused(&soon_expired);
    assert!(!message.is_empty());

    let mut secrets = bed.secrets();
    secrets.push(&soon_expired);
    let log = fairlead.log_text();
    support::assert_no_secrets("fairlead's debug log", &log, &secrets);
}
