//! SASL OAUTHBEARER (KIP-255, RFC 7628): the tokens fairlead gets itself, and reading a
//! client's.
//!
//! Sidecar mode: [`TokenSource`] gets access tokens from an OIDC token endpoint with the client
//! credentials grant (RFC 6749 4.4; what Kafka's OAuthBearerLoginCallbackHandler does, KIP-768),
//! keeps the current one and refreshes it in the background at 80-85% of its lifetime (Kafka's
//! sasl.login.refresh.window.factor 0.8 and .jitter 0.05), retrying a failed refresh with
//! back-off (100 ms doubling to 10 s, Kafka's sasl.login.retry.backoff.ms/.max.ms). A new broker
//! connection never starts with a token that has less than a tenth of its life left: it waits
//! for a fresh one instead, so no session is too short to be useful. Brokers end a session when
//! its token expires (KIP-368); `upstream` retires the connection before that.
//!
//! Passthrough mode: [`parse_initial_response`] reads a client's OAUTHBEARER initial response
//! (token, subject, expiry) without verifying the signature (the broker does that).
//!
//! Secrets (the client secret, tokens) are [`Secret`]s and appear in no error or log line.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::http::{self, HttpsTrust, Url};
use super::sasl::Secret;

/// The claim Kafka's validator takes the principal from by default
/// (sasl.oauthbearer.sub.claim.name).
pub const SUB_CLAIM: &str = "sub";

/// RFC 7628 key/value separator (^A).
const KVSEP: u8 = 0x01;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    #[error("token endpoint {url}: {reason}")]
    Endpoint { url: String, reason: String },
    #[error("token endpoint {url} refused the client {client_id:?}: HTTP {status}: {error}")]
    Refused {
        url: String,
        client_id: String,
        status: u16,
        /// The endpoint's `error` and `error_description` (RFC 6749 5.2): never a secret.
        error: String,
    },
    #[error("malformed OAUTHBEARER client response: {0}")]
    InitialResponse(&'static str),
    #[error("the token is not a JWT fairlead can read: {0}")]
    Jwt(&'static str),
}

/// Where and how to ask for tokens.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Read again when it changes (`security::reload`).
    pub client_secret_file: Option<PathBuf>,
    pub scope: Option<String>,
    pub audience: Option<String>,
    /// CA bundle for an https token endpoint (default: the system's).
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// A token and what fairlead knows of its life (Debug shows no token: it is a [`Secret`]).
#[derive(Clone, Debug)]
pub struct Token {
    pub value: Secret,
    pub subject: Option<String>,
    pub obtained: Instant,
    pub expires: Instant,
    /// When the background refresh replaces it (drawn once, with its jitter).
    refresh: Instant,
}

impl Token {
    fn lifetime(&self) -> Duration {
        self.expires.saturating_duration_since(self.obtained)
    }

    /// Whether a new connection may start with it: it has at least a tenth of its life left.
    pub fn fresh_enough(&self, now: Instant) -> bool {
        now + self.lifetime() / 10 < self.expires
    }

    /// When the background refresh should replace it: 80% of its life plus up to 5% jitter
    /// (`jitter` in 0..=1), so that many fairleads started together do not ask together.
    fn refresh_at(&self, jitter: f64) -> Instant {
        self.obtained + self.lifetime().mul_f64(0.8 + 0.05 * jitter.clamp(0.0, 1.0))
    }
}

/// fairlead's own tokens: fetched, cached and refreshed before they expire.
pub struct TokenSource {
    url: Url,
    settings: OAuthSettings,
    secret: RwLock<Secret>,
    trust: Option<HttpsTrust>,
    current: Mutex<Option<Token>>,
    /// One request to the endpoint at a time.
    fetching: tokio::sync::Mutex<()>,
    /// Wakes the refresh task early (a connection found no usable token).
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenSource({} as {:?})",
            self.settings.token_endpoint, self.settings.client_id
        )
    }
}

impl TokenSource {
    pub fn new(settings: OAuthSettings) -> Result<TokenSource, OAuthError> {
        let endpoint_err = |reason: String| OAuthError::Endpoint {
            url: settings.token_endpoint.clone(),
            reason,
        };
        let url = Url::parse(&settings.token_endpoint).map_err(|e| endpoint_err(e.to_string()))?;
        let trust = if url.tls {
            Some(
                HttpsTrust::new(settings.ca_file.as_deref())
                    .map_err(|e| endpoint_err(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(TokenSource {
            url,
            secret: RwLock::new(settings.client_secret.clone()),
            settings,
            trust,
            current: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.settings.client_id
    }

    pub fn secret_file(&self) -> Option<&std::path::Path> {
        self.settings.client_secret_file.as_deref()
    }

    /// Installs a new client secret (read from its file by `security::reload`): the next token
    /// request uses it; the current token stays valid until it is refreshed.
    pub fn set_secret(&self, secret: Secret) {
        *self.secret.write().unwrap() = secret;
    }

    pub fn current_secret(&self) -> Secret {
        self.secret.read().unwrap().clone()
    }

    /// Drops the current token (a broker refused it): the next connection gets a new one.
    pub fn forget(&self) {
        *self.current.lock().unwrap() = None;
    }

    /// A token for a new broker connection: the current one if it is fresh enough, else a new
    /// one from the endpoint.
    pub async fn token(&self) -> Result<Token, OAuthError> {
        if let Some(t) = self.usable() {
            return Ok(t);
        }
        let _one = self.fetching.lock().await;
        // Someone else may have fetched while we waited.
        if let Some(t) = self.usable() {
            return Ok(t);
        }
        let t = self.fetch().await?;
        self.wake.notify_one();
        Ok(t)
    }

    fn usable(&self) -> Option<Token> {
        let now = Instant::now();
        self.current
            .lock()
            .unwrap()
            .as_ref()
            .filter(|t| t.fresh_enough(now))
            .cloned()
    }

    /// Asks the endpoint for a new token and makes it the current one.
    async fn fetch(&self) -> Result<Token, OAuthError> {
        let s = &self.settings;
        let basic = format!(
            "{}:{}",
            http::form_encode(&s.client_id),
            http::form_encode(self.secret.read().unwrap().expose())
        );
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(basic)
        );
        let mut body = "grant_type=client_credentials".to_string();
        for (k, v) in [("scope", &s.scope), ("audience", &s.audience)] {
            if let Some(v) = v {
                body.push_str(&format!("&{k}={}", http::form_encode(v)));
            }
        }
        let asked = Instant::now();
        let asked_wall = SystemTime::now();
        let endpoint_err = |reason: String| OAuthError::Endpoint {
            url: s.token_endpoint.clone(),
            reason,
        };
        let r = http::post_form(
            &self.url,
            &[("Authorization", &authorization)],
            &body,
            self.trust.as_ref(),
            s.timeout,
        )
        .await
        .map_err(|e| endpoint_err(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if r.status != 200 {
            let field = |k: &str| json.get(k).and_then(|v| v.as_str()).unwrap_or("");
            let error = match (field("error"), field("error_description")) {
                ("", _) => "no OAuth error in the answer".to_string(),
                (e, "") => e.to_string(),
                (e, d) => format!("{e}: {d}"),
            };
            return Err(OAuthError::Refused {
                url: s.token_endpoint.clone(),
                client_id: s.client_id.clone(),
                status: r.status,
                error,
            });
        }
        // The body of a 200 holds the token: it is never quoted in an error.
        let value = json
            .get("access_token")
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| endpoint_err("the answer has no access_token".into()))?
            .to_string();
        let claims = jwt_claims(&value, SUB_CLAIM).ok();
        // expires_in is relative to the answer, so no clock skew; a JWT's exp is the fallback.
        let lifetime = match json.get("expires_in").and_then(|v| v.as_f64()) {
            Some(secs) if secs > 0.0 => Duration::from_secs_f64(secs),
            _ => claims
                .as_ref()
                .and_then(|c| c.expires)
                .and_then(|exp| exp.duration_since(asked_wall).ok())
                .ok_or_else(|| {
                    endpoint_err("the answer has no expires_in and the token no exp claim".into())
                })?,
        };
        let mut token = Token {
            value: Secret::new(value),
            subject: claims.and_then(|c| c.subject),
            obtained: asked,
            expires: asked + lifetime,
            refresh: asked,
        };
        token.refresh = token.refresh_at(rand::random::<f64>());
        debug!(
            client_id = %s.client_id,
            subject = token.subject.as_deref().unwrap_or("?"),
            lifetime_ms = lifetime.as_millis() as u64,
            "OAuth token obtained"
        );
        *self.current.lock().unwrap() = Some(token.clone());
        Ok(token)
    }

    /// Keeps a token ready: the first at once, each next one at 80-85% of the current's life,
    /// failures retried with back-off (the current token stays in use while it is valid).
    pub async fn run_refresh(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        const FIRST_BACKOFF: Duration = Duration::from_millis(100);
        const MAX_BACKOFF: Duration = Duration::from_secs(10);
        let mut backoff = FIRST_BACKOFF;
        let mut due = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
            let current = self.current.lock().unwrap().clone();
            if let Some(t) = current.as_ref().filter(|t| Instant::now() < t.refresh) {
                // Not due (woken by a fetch made for a connection): plan from its token.
                due = t.refresh;
                continue;
            }
            let result = {
                let _one = self.fetching.lock().await;
                self.fetch().await
            };
            match result {
                Ok(t) => {
                    backoff = FIRST_BACKOFF;
                    due = t.refresh;
                    info!(
                        client_id = %self.settings.client_id,
                        next_refresh_in_ms = due.saturating_duration_since(Instant::now()).as_millis() as u64,
                        "OAuth token refreshed"
                    );
                }
                Err(e) => {
                    let left = current
                        .as_ref()
                        .map(|t| t.expires.saturating_duration_since(Instant::now()));
                    warn!(
                        error = %e,
                        retry_in_ms = backoff.as_millis() as u64,
                        current_token_valid_for_ms = left.map(|d| d.as_millis() as u64),
                        "OAuth token refresh failed"
                    );
                    due = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The RFC 7628 initial client response Kafka's OAuthBearerSaslClient sends:
/// `n,[a=authzid],^Aauth=Bearer <token>^A[key=value^A...]^A`.
pub fn initial_response(token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len() + 20);
    out.extend_from_slice(b"n,,\x01auth=Bearer ");
    out.extend_from_slice(token.as_bytes());
    out.extend_from_slice(&[KVSEP, KVSEP]);
    out
}

/// What a passthrough client presented: its token, and the claims fairlead needs from it.
#[derive(Debug, Clone)]
pub struct ClientToken {
    pub token: Secret,
    /// The authorization id of the GS2 header (Kafka requires it to equal the subject).
    pub authzid: Option<String>,
    /// The subject claim: the principal name brokers give the client by default.
    pub subject: String,
    /// The exp claim: the broker ends the client's session then (KIP-368).
    pub expires: SystemTime,
    /// SASL extensions (KIP-342), e.g. a logical cluster id.
    pub extensions: Vec<(String, String)>,
}

/// Reads a client's OAUTHBEARER initial response (the auth_bytes of its first
/// SaslAuthenticate). The signature is NOT verified: the broker does that and refuses a forged
/// token, so what this returns may only be trusted once the broker accepted the exchange.
/// `sub_claim` is the broker's sasl.oauthbearer.sub.claim.name ([`SUB_CLAIM`] by default).
pub fn parse_initial_response(bytes: &[u8], sub_claim: &str) -> Result<ClientToken, OAuthError> {
    let bad = OAuthError::InitialResponse;
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
    // GS2 header: channel binding flag "n" (Kafka supports no channel binding), authzid.
    let rest = text.strip_prefix("n,").ok_or(bad("no GS2 header \"n,\""))?;
    let (authz, rest) = rest
        .split_once(',')
        .ok_or(bad("GS2 header not ended by ','"))?;
    let authzid = match authz {
        "" => None,
        a => Some(
            a.strip_prefix("a=")
                .ok_or(bad("GS2 authorization id without \"a=\""))?
                .replace("=2C", ",")
                .replace("=3D", "="),
        ),
    };
    let kvs = rest
        .strip_prefix('\u{1}')
        .and_then(|r| r.strip_suffix("\u{1}\u{1}"))
        .ok_or(bad("key/value pairs not framed by ^A ... ^A^A"))?;
    let mut auth = None;
    let mut extensions = Vec::new();
    for kv in kvs.split('\u{1}') {
        let (k, v) = kv
            .split_once('=')
            .ok_or(bad("a key/value pair without '='"))?;
        if k == "auth" {
            auth = Some(v);
        } else {
            extensions.push((k.to_string(), v.to_string()));
        }
    }
    let auth = auth.ok_or(bad("no auth key"))?;
    let (scheme, token) = auth
        .split_once(' ')
        .ok_or(bad("auth value is not \"Bearer <token>\""))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(bad("auth scheme is not Bearer"));
    }
    let token = token.trim_start_matches(' ');
    let claims = jwt_claims(token, sub_claim)?;
    Ok(ClientToken {
        token: Secret::new(token.to_string()),
        authzid,
        subject: claims.subject.ok_or(OAuthError::Jwt("no subject claim"))?,
        expires: claims.expires.ok_or(OAuthError::Jwt("no exp claim"))?,
        extensions,
    })
}

/// The claims fairlead reads from a JWT (unverified).
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub subject: Option<String>,
    pub expires: Option<SystemTime>,
}

/// The subject and expiry of a JWS compact serialization (header.payload.signature), without
/// verifying it.
pub fn jwt_claims(token: &str, sub_claim: &str) -> Result<Claims, OAuthError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OAuthError::Jwt("not three dot-separated parts"));
    };
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| OAuthError::Jwt("payload is not base64url"))?;
    let json: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|_| OAuthError::Jwt("payload is not JSON"))?;
    let obj = json
        .as_object()
        .ok_or(OAuthError::Jwt("payload is not a JSON object"))?;
    let subject = match obj.get(sub_claim) {
        None => None,
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(_) => return Err(OAuthError::Jwt("subject claim is not a non-empty string")),
    };
    let expires = match obj.get("exp") {
        None => None,
        // NumericDate: seconds since the epoch, possibly fractional (RFC 7519 2).
        Some(v) => {
            let secs = v
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or(OAuthError::Jwt("exp claim is not a number"))?;
            Some(UNIX_EPOCH + Duration::from_secs_f64(secs))
        }
    };
    Ok(Claims { subject, expires })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn jwt(payload: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.{}",
            b(r#"{"alg":"RS256","kid":"k"}"#),
            b(payload),
            b("sig")
        )
    }

    #[test]
    fn reads_subject_and_expiry_of_what_kafka_clients_send() {
        let token = jwt(r#"{"sub":"svc-orders","exp":1900000000,"iat":1,"scp":["kafka"]}"#);
        // What Kafka's OAuthBearerClientInitialResponse.toBytes() writes, with an extension.
        let bytes = format!("n,,\u{1}auth=Bearer {token}\u{1}logicalCluster=lkc-1\u{1}\u{1}");
        let c = parse_initial_response(bytes.as_bytes(), SUB_CLAIM).unwrap();
        assert_eq!(c.token.expose(), token);
        assert_eq!(c.subject, "svc-orders");
        assert_eq!(c.expires, UNIX_EPOCH + Duration::from_secs(1_900_000_000));
        assert_eq!(c.authzid, None);
        assert_eq!(
            c.extensions,
            vec![("logicalCluster".into(), "lkc-1".into())]
        );
        // Our own initial response reads back.
        let ours = parse_initial_response(&initial_response(&token), SUB_CLAIM).unwrap();
        assert_eq!(
            (ours.subject.as_str(), ours.extensions.len()),
            ("svc-orders", 0)
        );
    }

    #[test]
    fn authzid_custom_subject_claims_and_fractional_exp() {
        let token = jwt(r#"{"client_id":"a,b","exp":1700000000.5}"#);
        let bytes = format!("n,a=a=2Cb,\u{1}auth=bearer {token}\u{1}\u{1}");
        let c = parse_initial_response(bytes.as_bytes(), "client_id").unwrap();
        assert_eq!(
            (c.authzid.as_deref(), c.subject.as_str()),
            (Some("a,b"), "a,b")
        );
        assert_eq!(
            c.expires,
            UNIX_EPOCH + Duration::from_secs_f64(1_700_000_000.5)
        );
    }

    #[test]
    fn malformed_responses_are_refused_without_showing_the_token() {
        let good = jwt(r#"{"sub":"s","exp":2000000000}"#);
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "GS2"),
            (format!("y,,\u{1}auth=Bearer {good}\u{1}\u{1}"), "GS2"),
            (
                format!("n,x,\u{1}auth=Bearer {good}\u{1}\u{1}"),
                "authorization id",
            ),
            (format!("n,,auth=Bearer {good}\u{1}\u{1}"), "framed"),
            (format!("n,,\u{1}auth=Bearer {good}\u{1}"), "framed"),
            ("n,,\u{1}k=v\u{1}\u{1}".into(), "no auth"),
            (format!("n,,\u{1}auth=Basic {good}\u{1}\u{1}"), "Bearer"),
            ("n,,\u{1}auth=Bearer not-a-jwt\u{1}\u{1}".into(), "three"),
            (
                format!(
                    "n,,\u{1}auth=Bearer {}\u{1}\u{1}",
                    jwt(r#"{"exp":2000000000}"#)
                ),
                "subject",
            ),
            (
                format!("n,,\u{1}auth=Bearer {}\u{1}\u{1}", jwt(r#"{"sub":"s"}"#)),
                "exp",
            ),
            (
                format!(
                    "n,,\u{1}auth=Bearer {}\u{1}\u{1}",
                    jwt(r#"{"sub":"s","exp":"soon"}"#)
                ),
                "exp",
            ),
            (
                format!(
                    "n,,\u{1}auth=Bearer {}\u{1}\u{1}",
                    jwt(r#"{"sub":7,"exp":1}"#)
                ),
                "subject",
            ),
            (
                format!("n,,\u{1}auth=Bearer {}\u{1}\u{1}", jwt("[1]")),
                "object",
            ),
        ];
        for (bytes, expect) in cases {
            let e = parse_initial_response(bytes.as_bytes(), SUB_CLAIM)
                .unwrap_err()
                .to_string();
            assert!(e.contains(expect), "{bytes:?}: {e}");
            assert!(!e.contains(&good), "the token leaked: {e}");
        }
        assert!(parse_initial_response(&[0xff, 0xfe], SUB_CLAIM).is_err());
    }

    #[test]
    fn tokens_are_refreshed_at_80_to_85_percent_and_used_until_90() {
        let now = Instant::now();
        let t = Token {
            value: Secret::new("t".into()),
            subject: None,
            obtained: now,
            expires: now + Duration::from_secs(100),
            refresh: now,
        };
        assert_eq!(t.refresh_at(0.0), now + Duration::from_secs(80));
        assert_eq!(t.refresh_at(1.0), now + Duration::from_secs(85));
        assert!(t.fresh_enough(now + Duration::from_secs(89)));
        assert!(!t.fresh_enough(now + Duration::from_secs(91)));
    }

    /// A token endpoint on 127.0.0.1 that answers each request with the next canned answer and
    /// reports the requests it got.
    async fn endpoint(
        answers: Vec<(u16, String)>,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/oauth2/token", l.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for (status, body) in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .parse()
                            .unwrap();
                        if body.len() >= len {
                            let _ = tx.send(text);
                            break;
                        }
                    }
                }
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        (url, rx)
    }

    fn settings(url: &str) -> OAuthSettings {
        OAuthSettings {
            token_endpoint: url.into(),
            client_id: "fairlead client".into(),
            client_secret: Secret::new("s3cr:t".into()),
            client_secret_file: None,
            scope: Some("kafka write".into()),
            audience: Some("kafka".into()),
            ca_file: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn client_credentials_grant_as_kafka_sends_it_and_the_token_is_cached() {
        let token = jwt(r#"{"sub":"fairlead-svc","exp":4000000000}"#);
        let (url, mut seen) = endpoint(vec![(
            200,
            format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":30}}"#),
        )])
        .await;
        let src = TokenSource::new(settings(&url)).unwrap();
        let t = src.token().await.unwrap();
        assert_eq!(t.value.expose(), token);
        assert_eq!(t.subject.as_deref(), Some("fairlead-svc"));
        let life = t.expires - t.obtained;
        assert_eq!(life, Duration::from_secs(30), "expires_in wins over exp");
        let req = seen.recv().await.unwrap();
        // RFC 6749 2.3.1: id and secret form-encoded, then HTTP Basic.
        let basic = base64::engine::general_purpose::STANDARD.encode("fairlead+client:s3cr%3At");
        assert!(req.starts_with("POST /oauth2/token HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains(&format!("Authorization: Basic {basic}\r\n")),
            "{req}"
        );
        assert!(
            req.ends_with("\r\n\r\ngrant_type=client_credentials&scope=kafka+write&audience=kafka"),
            "{req}"
        );
        // Cached: a second connection asks nobody (the endpoint would not answer again).
        let again = src.token().await.unwrap();
        assert_eq!(again.obtained, t.obtained);
    }

    #[tokio::test]
    async fn a_refusal_names_client_and_error_but_not_the_secret() {
        let (url, _seen) = endpoint(vec![(
            401,
            r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#
                .into(),
        )])
        .await;
        let src = TokenSource::new(settings(&url)).unwrap();
        let e = src.token().await.unwrap_err().to_string();
        assert!(
            e.contains("\"fairlead client\"")
                && e.contains("HTTP 401")
                && e.contains("invalid_client: Client authentication failed"),
            "{e}"
        );
        assert!(!e.contains("s3cr"), "{e}");
    }

    #[tokio::test]
    async fn without_expires_in_the_jwt_exp_gives_the_lifetime() {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let token = jwt(&format!(r#"{{"sub":"s","exp":{exp}}}"#));
        let (url, _seen) = endpoint(vec![(200, format!(r#"{{"access_token":"{token}"}}"#))]).await;
        let t = TokenSource::new(settings(&url))
            .unwrap()
            .token()
            .await
            .unwrap();
        let life = (t.expires - t.obtained).as_secs_f64();
        assert!((58.0..=60.0).contains(&life), "{life}");
        // Neither: refused clearly.
        let (url, _seen) = endpoint(vec![(200, r#"{"access_token":"opaque"}"#.into())]).await;
        let e = TokenSource::new(settings(&url))
            .unwrap()
            .token()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no expires_in"), "{e}");
    }

    /// The background refresh replaces the token at 80-85% of its life and retries a failure
    /// with back-off. (Real time, 2 s tokens: paused time would also fire the HTTP timeouts.)
    #[tokio::test]
    async fn the_refresh_runs_before_expiry_and_retries_failures() {
        let tok = |n: u32| jwt(&format!(r#"{{"sub":"s{n}","exp":4000000000}}"#));
        let ok = |n: u32| {
            (
                200,
                format!(r#"{{"access_token":"{}","expires_in":2}}"#, tok(n)),
            )
        };
        let (url, mut seen) = endpoint(vec![
            ok(1),
            (503, r#"{"error":"temporarily_unavailable"}"#.into()),
            ok(2),
        ])
        .await;
        let src = Arc::new(TokenSource::new(settings(&url)).unwrap());
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let t0 = Instant::now();
        tokio::spawn(src.clone().run_refresh(stop_rx));
        seen.recv().await.unwrap();
        let first = src.token().await.unwrap();
        assert_eq!(first.subject.as_deref(), Some("s1"));
        // The refresh comes between 1.6 and 1.7 s; its failure is retried 100 ms later.
        seen.recv().await.unwrap();
        let failed_at = t0.elapsed();
        assert!(
            (Duration::from_millis(1550)..=Duration::from_millis(1800)).contains(&failed_at),
            "{failed_at:?}"
        );
        assert_eq!(
            src.token().await.unwrap().subject.as_deref(),
            Some("s1"),
            "the current token stays in use while the refresh is retried"
        );
        seen.recv().await.unwrap();
        let retried_after = t0.elapsed() - failed_at;
        assert!(
            (Duration::from_millis(90)..=Duration::from_millis(300)).contains(&retried_after),
            "{retried_after:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(src.token().await.unwrap().subject.as_deref(), Some("s2"));
    }

    #[test]
    fn nothing_secret_is_shown_by_debug() {
        let src = TokenSource::new(settings("http://127.0.0.1:1/t")).unwrap();
        let shown = format!("{src:?} {:?}", settings("http://127.0.0.1:1/t"));
        assert!(!shown.contains("s3cr"), "{shown}");
    }
}
