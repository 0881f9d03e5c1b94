//! SCRAM-SHA-256 / SCRAM-SHA-512 client (RFC 5802, RFC 7677), as Kafka speaks it (KIP-84).
//!
//! Hand-written on RustCrypto primitives (hmac, sha2, pbkdf2): the mechanism is two message
//! exchanges and a handful of hashes; no maintained crate does the client side for an async
//! transport that is not fairlead's own.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha512,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed server message: {0}")]
    Malformed(&'static str),
    #[error("the server's nonce does not extend ours")]
    Nonce,
    #[error("iteration count {0} below the minimum of 4096")]
    Iterations(u32),
    #[error("the server reported: {0}")]
    Server(String),
    #[error("the server's signature does not verify: not the broker we think")]
    ServerSignature,
}

/// One SCRAM conversation.
pub struct Scram {
    hash: Hash,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    /// Set after the server's first message: what the final signature must be.
    expected_server_signature: Option<Vec<u8>>,
}

impl Scram {
    pub fn new(hash: Hash, username: &str, password: &str) -> Scram {
        let nonce: [u8; 24] = rand::random();
        Self::with_nonce(hash, username, password, &B64.encode(nonce))
    }

    fn with_nonce(hash: Hash, username: &str, password: &str, nonce: &str) -> Scram {
        let user = username.replace('=', "=3D").replace(',', "=2C");
        Scram {
            hash,
            password: password.to_string(),
            client_nonce: nonce.to_string(),
            client_first_bare: format!("n={user},r={nonce}"),
            expected_server_signature: None,
        }
    }

    /// client-first-message
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Takes server-first-message, returns client-final-message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let server_first =
            std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => {
                    salt = Some(
                        B64.decode(v)
                            .map_err(|_| ScramError::Malformed("salt is not base64"))?,
                    )
                }
                Some(("i", v)) => {
                    iterations = Some(
                        v.parse::<u32>()
                            .map_err(|_| ScramError::Malformed("iteration count"))?,
                    )
                }
                Some(("e", v)) => return Err(ScramError::Server(v.to_string())),
                _ => {}
            }
        }
        let nonce = nonce.ok_or(ScramError::Malformed("no nonce"))?;
        let salt = salt.ok_or(ScramError::Malformed("no salt"))?;
        let iterations = iterations.ok_or(ScramError::Malformed("no iteration count"))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError::Nonce);
        }
        if iterations < 4096 {
            return Err(ScramError::Iterations(iterations));
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let (proof, server_signature) = match self.hash {
            Hash::Sha256 => proofs_sha256(&self.password, &salt, iterations, &auth_message),
            Hash::Sha512 => proofs_sha512(&self.password, &salt, iterations, &auth_message),
        };
        self.expected_server_signature = Some(server_signature);
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final-message.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let s =
            std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Some(e) = s.strip_prefix("e=") {
            return Err(ScramError::Server(e.to_string()));
        }
        let v = s
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .ok_or(ScramError::Malformed("no verifier"))?;
        let got = B64
            .decode(v)
            .map_err(|_| ScramError::Malformed("verifier is not base64"))?;
        match &self.expected_server_signature {
            Some(want) if *want == got => Ok(()),
            _ => Err(ScramError::ServerSignature),
        }
    }
}

/// (ClientProof, ServerSignature) for one exchange, for one hash.
macro_rules! proofs_with {
    ($name:ident, $d:ty) => {
        fn $name(
            password: &str,
            salt: &[u8],
            iterations: u32,
            auth_message: &str,
        ) -> (Vec<u8>, Vec<u8>) {
            type H = Hmac<$d>;
            let mut salted = vec![0u8; <$d as Digest>::output_size()];
            pbkdf2::pbkdf2::<H>(password.as_bytes(), salt, iterations, &mut salted)
                .expect("HMAC takes any key length");
            let hmac = |key: &[u8], msg: &[u8]| -> Vec<u8> {
                let mut m = <H as Mac>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            };
            let client_key = hmac(&salted, b"Client Key");
            let stored_key = <$d>::digest(&client_key).to_vec();
            let client_signature = hmac(&stored_key, auth_message.as_bytes());
            let proof = client_key
                .iter()
                .zip(&client_signature)
                .map(|(a, b)| a ^ b)
                .collect();
            let server_key = hmac(&salted, b"Server Key");
            (proof, hmac(&server_key, auth_message.as_bytes()))
        }
    };
}

proofs_with!(proofs_sha256, Sha256);
proofs_with!(proofs_sha512, Sha512);

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: the SCRAM-SHA-256 example conversation.
    #[test]
    fn rfc7677_example() {
        let mut s = Scram::with_nonce(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(s.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = s.client_final(server_first).unwrap();
        assert_eq!(
            std::str::from_utf8(&fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert_eq!(
            s.verify_server_final(b"v=AAAA"),
            Err(ScramError::ServerSignature)
        );
    }

    #[test]
    fn refuses_a_server_that_does_not_extend_our_nonce_or_iterates_too_little() {
        let mut s = Scram::with_nonce(Hash::Sha512, "u", "p", "abc");
        assert_eq!(
            s.client_final(b"r=xyz123,s=AAAA,i=4096"),
            Err(ScramError::Nonce)
        );
        assert_eq!(
            s.client_final(b"r=abc123,s=AAAA,i=10"),
            Err(ScramError::Iterations(10))
        );
        assert_eq!(
            s.client_final(b"e=invalid-proof"),
            Err(ScramError::Server("invalid-proof".into()))
        );
    }

    #[test]
    fn usernames_are_escaped() {
        let s = Scram::with_nonce(Hash::Sha256, "a=b,c", "p", "n");
        assert_eq!(s.client_first(), b"n,,n=a=3Db=2Cc,r=n");
    }
}
