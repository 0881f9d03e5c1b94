//! Who a client is to the brokers, read from the SASL exchange fairlead relays for it (SASL
//! passthrough), and what of it fairlead may present again on a connection of its own.
//!
//! A broker authorizes every request by the principal its connection authenticated as; nothing
//! in a request names it. So in passthrough mode a client's request may only travel on a
//! connection authenticated as the client itself (see `router::identity`). fairlead learns the
//! principal from the exchange: the PLAIN user, the SCRAM user the broker accepted (its
//! client-first message, RFC 5802 section 5.1), the OAUTHBEARER token's subject (RFC 7628 GS2
//! framing). It may open a connection as the client only with what the client gave it: the PLAIN
//! password, or the bearer token until it expires. A SCRAM exchange cannot be replayed without the
//! password, and nothing is kept of it but the user name.
//!
//! Nothing here is trusted before the broker says the exchange succeeded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

use super::sasl::Secret;

/// A SASL mechanism as a client names it in its SaslHandshake.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientMechanism {
    Plain,
    Scram(String),
    OAuthBearer,
    /// GSSAPI and anything else: its principal cannot be read from the exchange.
    Other(String),
}

impl ClientMechanism {
    pub fn parse(name: &str) -> ClientMechanism {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => ClientMechanism::Plain,
            m @ ("SCRAM-SHA-256" | "SCRAM-SHA-512") => ClientMechanism::Scram(m.to_string()),
            "OAUTHBEARER" => ClientMechanism::OAuthBearer,
            other => ClientMechanism::Other(other.to_string()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            ClientMechanism::Plain => "PLAIN",
            ClientMechanism::Scram(m) | ClientMechanism::Other(m) => m,
            ClientMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// SaslAuthenticate round trips until the broker has authenticated the client (None: not
    /// known for this mechanism).
    fn steps(&self) -> Option<u32> {
        match self {
            ClientMechanism::Plain | ClientMechanism::OAuthBearer => Some(1),
            // client-first, then client-final (RFC 5802).
            ClientMechanism::Scram(_) => Some(2),
            ClientMechanism::Other(_) => None,
        }
    }
}

/// What fairlead may present again to authenticate a connection of its own as the client.
#[derive(Clone, PartialEq, Eq)]
pub enum Presentable {
    /// The client's PLAIN credentials, as the broker accepted them.
    Plain { username: String, password: Secret },
    /// The client's bearer token, until it expires (None: the token names no expiry).
    Bearer {
        token: Secret,
        expires: Option<SystemTime>,
    },
    /// Nothing (SCRAM): only connections the client authenticated itself carry its requests.
    Nothing,
}

impl std::fmt::Debug for Presentable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presentable::Plain { username, .. } => write!(f, "Plain({username})"),
            Presentable::Bearer { expires, .. } => write!(f, "Bearer(expires {expires:?})"),
            Presentable::Nothing => f.write_str("Nothing"),
        }
    }
}

/// A principal as the brokers see it (`User:<name>` for every mechanism here), and what fairlead
/// may present for it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub mechanism: ClientMechanism,
    pub name: String,
    pub presentable: Presentable,
}

/// The client's side of a SASL exchange on its own connection, followed request by request.
#[derive(Debug, Default)]
pub struct Exchange {
    mechanism: Option<ClientMechanism>,
    /// SaslAuthenticate requests answered without error so far.
    steps_done: u32,
    /// What the first SaslAuthenticate of the exchange said (who, and what may be presented).
    claimed: Option<(String, Presentable)>,
}

/// What one answer of the exchange means.
#[derive(Debug)]
pub enum Outcome {
    /// Not finished yet.
    Continuing,
    /// The broker authenticated the client as this principal.
    Authenticated(Principal),
    /// The broker refused, or the exchange cannot be read: the client has no identity to lend.
    Unknown,
}

impl Exchange {
    /// The client's SaslHandshake named `mechanism` (a new exchange begins: KIP-368
    /// re-authentication starts one on an authenticated connection too).
    pub fn handshake(&mut self, mechanism: &str) {
        *self = Exchange {
            mechanism: Some(ClientMechanism::parse(mechanism)),
            ..Exchange::default()
        };
    }

    /// The client's SaslAuthenticate carried `auth_bytes`.
    pub fn authenticate(&mut self, auth_bytes: &[u8]) {
        if self.steps_done > 0 || self.claimed.is_some() {
            return;
        }
        self.claimed = match &self.mechanism {
            Some(ClientMechanism::Plain) => plain(auth_bytes).map(|(user, password)| {
                let p = Presentable::Plain {
                    username: user.clone(),
                    password,
                };
                (user, p)
            }),
            Some(ClientMechanism::Scram(_)) => {
                scram_user(auth_bytes).map(|u| (u, Presentable::Nothing))
            }
            Some(ClientMechanism::OAuthBearer) => bearer(auth_bytes).map(|b| {
                let p = Presentable::Bearer {
                    token: b.token,
                    expires: b.expires,
                };
                (b.subject, p)
            }),
            _ => None,
        };
    }

    /// The broker answered a SaslAuthenticate with `error_code`.
    pub fn answered(&mut self, error_code: i16) -> Outcome {
        if error_code != 0 {
            *self = Exchange::default();
            return Outcome::Unknown;
        }
        self.steps_done += 1;
        let Some(steps) = self.mechanism.as_ref().and_then(ClientMechanism::steps) else {
            return Outcome::Unknown;
        };
        if self.steps_done < steps {
            return Outcome::Continuing;
        }
        match (self.mechanism.clone(), self.claimed.take()) {
            (Some(mechanism), Some((name, presentable))) => Outcome::Authenticated(Principal {
                mechanism,
                name,
                presentable,
            }),
            _ => Outcome::Unknown,
        }
    }
}

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`. Kafka accepts an authzid only if it
/// equals the user, and the principal is the user.
fn plain(auth: &[u8]) -> Option<(String, Secret)> {
    let mut parts = auth.split(|b| *b == 0);
    let authzid = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?;
    let password = std::str::from_utf8(parts.next()?).ok()?;
    if parts.next().is_some()
        || user.is_empty()
        || (!authzid.is_empty() && authzid != user.as_bytes())
    {
        return None;
    }
    Some((user.to_string(), Secret::new(password.to_string())))
}

/// The user of a SCRAM client-first message: `gs2-header n=saslname,r=nonce[,extensions]`,
/// the name with `=2C` for ',' and `=3D` for '=' (RFC 5802 section 5.1).
fn scram_user(auth: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(auth).ok()?;
    // gs2-header: "n," or "y," then an optional "a=authzid", then ",".
    let mut fields = text.splitn(3, ',');
    let flag = fields.next()?;
    let authzid = fields.next()?;
    if !matches!(flag, "n" | "y") || !(authzid.is_empty() || authzid.starts_with("a=")) {
        return None;
    }
    let bare = fields.next()?;
    let name = bare.split(',').next()?.strip_prefix("n=")?;
    if name.is_empty() {
        return None;
    }
    let user = name.replace("=2C", ",").replace("=3D", "=");
    // An authzid other than the user is refused by Kafka's SCRAM server.
    if let Some(a) = authzid.strip_prefix("a=") {
        if a.replace("=2C", ",").replace("=3D", "=") != user {
            return None;
        }
    }
    Some(user)
}

/// A client's OAUTHBEARER initial response, read without checking the token's signature (the
/// broker does that; fairlead only uses what the broker then accepted).
pub struct Bearer {
    pub token: Secret,
    /// The JWT's `sub` claim: the principal Kafka's default validator makes of it.
    pub subject: String,
    /// The JWT's `exp` claim.
    pub expires: Option<SystemTime>,
}

/// RFC 7628: `gs2-header %x01 *(key=value %x01) %x01`, the token in `auth=Bearer <token>`.
pub fn bearer(auth: &[u8]) -> Option<Bearer> {
    let text = std::str::from_utf8(auth).ok()?;
    let mut kv = text.split('\u{1}');
    let gs2 = kv.next()?;
    if !(gs2.starts_with("n,") || gs2.starts_with("y,")) {
        return None;
    }
    let token = kv
        .filter_map(|f| f.strip_prefix("auth="))
        .find_map(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })?
        .trim();
    let claims = jwt_claims(token)?;
    let subject = claims.get("sub")?.as_str()?.to_string();
    let expires = claims
        .get("exp")
        .and_then(serde_json::Value::as_f64)
        .filter(|e| *e > 0.0)
        .map(|e| UNIX_EPOCH + Duration::from_secs_f64(e));
    Some(Bearer {
        token: Secret::new(token.to_string()),
        subject,
        expires,
    })
}

/// The claims of a JWT (its middle part, base64url without padding).
fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(mechanism: &str, first: &[u8], answers: &[i16]) -> Vec<String> {
        let mut x = Exchange::default();
        x.handshake(mechanism);
        x.authenticate(first);
        answers
            .iter()
            .map(|code| match x.answered(*code) {
                Outcome::Continuing => "continuing".to_string(),
                Outcome::Unknown => "unknown".to_string(),
                Outcome::Authenticated(p) => format!("{}:{:?}", p.name, p.presentable),
            })
            .collect()
    }

    fn jwt(claims: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b(r#"{"alg":"RS256"}"#), b(claims))
    }

    #[test]
    fn plain_names_its_user_and_may_be_presented_again() {
        assert_eq!(
            exchange("PLAIN", b"\0alice\0alice-secret", &[0]),
            ["alice:Plain(alice)"]
        );
        assert_eq!(
            exchange("PLAIN", b"alice\0alice\0pw", &[0]),
            ["alice:Plain(alice)"]
        );
        // An authzid other than the user: Kafka refuses it, and so does fairlead.
        assert_eq!(exchange("PLAIN", b"bob\0alice\0pw", &[0]), ["unknown"]);
        assert_eq!(exchange("PLAIN", b"\0alice\0pw", &[58]), ["unknown"]);
        assert_eq!(exchange("PLAIN", b"garbage", &[0]), ["unknown"]);
    }

    #[test]
    fn scram_names_its_user_after_the_second_step_and_cannot_be_presented() {
        assert_eq!(
            exchange("SCRAM-SHA-512", b"n,,n=alice,r=abc", &[0, 0]),
            ["continuing", "alice:Nothing"]
        );
        assert_eq!(
            exchange("SCRAM-SHA-256", b"n,,n=a=2Cb=3Dc,r=abc", &[0, 0]),
            ["continuing", "a,b=c:Nothing"]
        );
        // The broker refused the proof.
        assert_eq!(
            exchange("SCRAM-SHA-512", b"n,,n=alice,r=abc", &[0, 58]),
            ["continuing", "unknown"]
        );
        assert_eq!(
            exchange("SCRAM-SHA-512", b"n,a=bob,n=alice,r=x", &[0, 0]),
            ["continuing", "unknown"]
        );
    }

    #[test]
    fn oauthbearer_names_the_token_subject_until_it_expires() {
        let token = jwt(r#"{"sub":"svc-a","exp":4102444800}"#);
        let auth = format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}");
        let out = exchange("OAUTHBEARER", auth.as_bytes(), &[0]);
        assert_eq!(out.len(), 1);
        assert!(out[0].starts_with("svc-a:Bearer(expires Some("), "{out:?}");
        let b = bearer(auth.as_bytes()).unwrap();
        assert_eq!(
            b.expires,
            Some(UNIX_EPOCH + Duration::from_secs(4_102_444_800))
        );
        // No subject: no principal.
        let anon = format!("n,,\u{1}auth=Bearer {}\u{1}\u{1}", jwt(r#"{"exp":1}"#));
        assert_eq!(exchange("OAUTHBEARER", anon.as_bytes(), &[0]), ["unknown"]);
    }

    #[test]
    fn other_mechanisms_lend_no_identity() {
        assert_eq!(
            exchange("GSSAPI", b"\x60\x82", &[0, 0]),
            ["unknown", "unknown"]
        );
    }

    #[test]
    fn a_password_never_prints() {
        let p = Presentable::Plain {
            username: "alice".into(),
            password: Secret::new("alice-secret".into()),
        };
        assert!(!format!("{p:?}").contains("secret"));
    }
}
