//! The server's side of SCRAM-SHA-256 (RFC 5802, RFC 7677) against a
//! stored verifier: the password proof is checked with `StoredKey`, and
//! the server proves itself with `ServerKey`, so the server never holds
//! anything a client could log in with.
//!
//! A name with no user or no verifier gets a made-up salt (the same one
//! every time for that name) and fails at the proof, as PostgreSQL does,
//! so the exchange does not tell which names exist.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::users::{ITERATIONS, Verifier, hmac, sha256};

/// The mechanism the server offers.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// Why an exchange failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The client's message is not SCRAM as RFC 5802 writes it.
    Malformed(String),
    /// The proof does not match (wrong password, unknown user, or a user
    /// without a verifier).
    Refused,
}

/// An exchange after the server's first message.
#[derive(Debug)]
pub struct Exchange {
    verifier: Option<Verifier>,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// Answers the client's first message: the exchange and the server's
/// first message. `verifier` is `None` for an unknown user or one without
/// a verifier; `secret` makes its salt.
pub fn server_first(
    client_first: &str,
    verifier: Option<Verifier>,
    user: &str,
    secret: &[u8],
    server_nonce: &str,
) -> Result<(Exchange, String), Failure> {
    let malformed = |what: &str| Failure::Malformed(format!("client-first-message: {what}"));
    // gs2-header: a channel-binding flag and an optional authzid.
    let (flag, rest) = client_first
        .split_once(',')
        .ok_or_else(|| malformed("no gs2 header"))?;
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| malformed("no gs2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(Failure::Malformed(
                "channel binding was asked for, and this server offers SCRAM-SHA-256 without it"
                    .into(),
            ));
        }
        _ => return Err(malformed("bad channel-binding flag")),
    }
    if !authzid.is_empty() && !authzid.starts_with("a=") {
        return Err(malformed("bad authzid"));
    }
    let gs2_header = format!("{flag},{authzid},");
    // client-first-message-bare: [reserved-mext ","] username "," nonce.
    // PostgreSQL ignores the username here (the startup message names the
    // user), and so does this server.
    let mut nonce = None;
    for attr in bare.split(',') {
        if let Some(n) = attr.strip_prefix("r=") {
            nonce = Some(n);
        } else if attr.starts_with("m=") {
            return Err(malformed("mandatory extension not supported"));
        }
    }
    let client_nonce = nonce
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b','))
        .ok_or_else(|| malformed("no nonce"))?;
    let nonce = format!("{client_nonce}{server_nonce}");
    let (salt, iterations) = match &verifier {
        Some(v) => (v.salt.clone(), v.iterations),
        None => (hmac(secret, user.as_bytes())[..16].to_vec(), ITERATIONS),
    };
    let server_first = format!("r={nonce},s={},i={iterations}", STANDARD.encode(&salt));
    Ok((
        Exchange {
            verifier,
            gs2_header,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        },
        server_first,
    ))
}

impl Exchange {
    /// Checks the client's final message; on success, the server's final
    /// message.
    pub fn finish(&self, client_final: &str) -> Result<String, Failure> {
        let malformed = |what: &str| Failure::Malformed(format!("client-final-message: {what}"));
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(c) = attr.strip_prefix("c=") {
                binding = Some(c);
            } else if let Some(r) = attr.strip_prefix("r=") {
                nonce = Some(r);
            }
        }
        if binding != Some(STANDARD.encode(&self.gs2_header).as_str()) {
            return Err(malformed(
                "channel binding does not match the first message",
            ));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(malformed("nonce does not match"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| malformed("proof is not base64"))?;
        let Some(verifier) = &self.verifier else {
            return Err(Failure::Refused);
        };
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac(&verifier.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(Failure::Refused);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if !same_bytes(&sha256(&client_key), &verifier.stored_key) {
            return Err(Failure::Refused);
        }
        let server_signature = hmac(&verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their
/// lengths.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3, end to end.
    #[test]
    fn the_rfc_7677_exchange() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = Verifier::with_salt("pencil", salt, 4096);
        let (exchange, first) = server_first(
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            Some(verifier),
            "user",
            b"secret",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(
            first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let last = exchange
            .finish("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(last, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    fn client_final(password: &str, exchange_first: &str, client_first_bare: &str) -> String {
        // A client's side, from the RFC's formulas.
        let attrs: Vec<&str> = exchange_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = STANDARD
            .decode(attrs[1].strip_prefix("s=").unwrap())
            .unwrap();
        let iterations: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let salted = super::super::users::salted_password(password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{exchange_first},{without_proof}");
        let signature = hmac(&sha256(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", STANDARD.encode(proof))
    }

    #[test]
    fn wrong_passwords_unknown_users_and_tampering_are_refused() {
        let verifier = Verifier::new("s3cret").unwrap();
        let start =
            |v: Option<Verifier>| server_first("n,,n=,r=abc", v, "ann", b"k", "XYZ").unwrap();
        let (ok, first) = start(Some(verifier.clone()));
        assert!(
            ok.finish(&client_final("s3cret", &first, "n=,r=abc"))
                .is_ok()
        );
        let (wrong, first) = start(Some(verifier.clone()));
        assert_eq!(
            wrong.finish(&client_final("s3cret!", &first, "n=,r=abc")),
            Err(Failure::Refused)
        );
        // Unknown: a salt all the same, and refused whatever the password.
        let (unknown, first) = start(None);
        let (_, again) = start(None);
        assert_eq!(first, again);
        assert_eq!(
            unknown.finish(&client_final("s3cret", &first, "n=,r=abc")),
            Err(Failure::Refused)
        );
        // A proof for another nonce.
        let (ok, first) = start(Some(verifier));
        let tampered = client_final("s3cret", &first, "n=,r=abc").replace("XYZ", "XYW");
        assert!(matches!(ok.finish(&tampered), Err(Failure::Malformed(_))));
    }

    #[test]
    fn channel_binding_is_refused_plainly() {
        let e = server_first("p=tls-server-end-point,,n=,r=abc", None, "a", b"k", "X").unwrap_err();
        assert!(matches!(e, Failure::Malformed(m) if m.contains("channel binding")));
    }
}
