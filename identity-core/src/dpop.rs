//! DPoP proofs (RFC 9449): a client proves possession of a key with a short JWT per
//! request, and tokens issued to it are bound to that key's thumbprint (`cnf.jkt`), so a
//! stolen token is useless without the key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::digest;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Algorithms a proof may use (the same as client assertions).
pub const DPOP_ALGS: [&str; 3] = ["ES256", "PS256", "EdDSA"];

/// How old a proof may be, and how far in the future its `iat` may be.
pub const MAX_AGE: i64 = 60;
/// Clock skew allowed for `iat` in the future (FAPI 2.0: 10 seconds).
pub const SKEW: i64 = 10;

/// A verified proof: the key's thumbprint and the proof's `jti`, to record as used.
#[derive(Debug, Clone)]
pub struct Proof {
    /// RFC 7638 SHA-256 thumbprint of the proof's key, base64url.
    pub jkt: String,
    /// The proof's id.
    pub jti: String,
    /// When it was made.
    pub iat: i64,
    /// The server nonce it carries, if any.
    pub nonce: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<i64>,
    ath: Option<String>,
    nonce: Option<String>,
}

fn bad(why: &str) -> Error {
    Error::InvalidDpopProof(why.to_owned())
}

/// RFC 7638 thumbprint of a public JWK: SHA-256 over its required members in
/// lexicographic order, without whitespace.
pub fn thumbprint(jwk: &Jwk) -> Result<String> {
    let members = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => json!({
            "crv": serde_json::to_value(p.curve.clone()).map_err(Error::internal)?,
            "kty": "EC", "x": p.x, "y": p.y,
        }),
        AlgorithmParameters::OctetKeyPair(p) => json!({
            "crv": serde_json::to_value(p.curve.clone()).map_err(Error::internal)?,
            "kty": "OKP", "x": p.x,
        }),
        AlgorithmParameters::RSA(p) => json!({ "e": p.e, "kty": "RSA", "n": p.n }),
        _ => return Err(bad("the proof's key is not a public EC, OKP or RSA key")),
    };
    // serde_json's map is ordered by key, which is the order RFC 7638 asks for.
    let text = serde_json::to_string(&members).map_err(Error::internal)?;
    Ok(URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, text.as_bytes())))
}

/// `ath`: base64url SHA-256 of the access token.
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// The URL a proof's `htu` is compared with: no query, no fragment.
fn normalize_htu(u: &str) -> Option<String> {
    let mut url = url::Url::parse(u).ok()?;
    url.set_query(None);
    url.set_fragment(None);
    Some(url.as_str().trim_end_matches('/').to_owned())
}

/// Verifies a proof for a request: typed `dpop+jwt`, signed by the public key in its header
/// with an allowed algorithm, for this method and URL, fresh, with a `jti`, and with `ath`
/// of the access token when one is presented. The caller records the `jti`.
pub fn verify(
    proof: &str,
    method: &str,
    url: &str,
    access_token: Option<&str>,
    now: i64,
) -> Result<Proof> {
    let header = jsonwebtoken::decode_header(proof).map_err(|_| bad("the proof is not a JWT"))?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err(bad("the proof's typ must be dpop+jwt"));
    }
    let alg = header.alg;
    if !matches!(alg, Algorithm::ES256 | Algorithm::PS256 | Algorithm::EdDSA) {
        return Err(bad("the proof's algorithm is not allowed"));
    }
    let jwk = header.jwk.ok_or_else(|| bad("the proof carries no jwk"))?;
    let fits = matches!(
        (&jwk.algorithm, alg),
        (AlgorithmParameters::EllipticCurve(_), Algorithm::ES256)
            | (AlgorithmParameters::RSA(_), Algorithm::PS256)
            | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
    );
    if !fits {
        return Err(bad("the proof's key does not fit its algorithm"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("the proof's key is unusable"))?;
    let mut v = Validation::new(alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    let data = jsonwebtoken::decode::<Claims>(proof, &key, &v)
        .map_err(|_| bad("the proof's signature does not verify"))?;
    let c = data.claims;
    if c.htm.as_deref() != Some(method) {
        return Err(bad("the proof is for another method"));
    }
    if c.htu.as_deref().and_then(normalize_htu) != normalize_htu(url) {
        return Err(bad("the proof is for another URL"));
    }
    let iat = c.iat.ok_or_else(|| bad("the proof has no iat"))?;
    if iat > now + SKEW || iat < now - MAX_AGE {
        return Err(bad("the proof is too old or from the future"));
    }
    let jti = c
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| bad("the proof has no jti"))?;
    if let Some(token) = access_token {
        if c.ath.as_deref() != Some(access_token_hash(token).as_str()) {
            return Err(bad("the proof's ath does not match the access token"));
        }
    }
    Ok(Proof {
        jkt: thumbprint(&jwk)?,
        jti,
        iat,
        nonce: c.nonce,
    })
}

/// How a client presented an access token at a protected endpoint.
#[derive(Debug, Clone, Default)]
pub struct Presented {
    /// The token.
    pub token: String,
    /// Whether the `Authorization` scheme was `DPoP` (else `Bearer`).
    pub dpop_scheme: bool,
    /// The `DPoP` header, if any.
    pub proof: Option<String>,
    /// The request's method.
    pub method: String,
    /// The request's URL.
    pub url: String,
}

impl Presented {
    /// A bearer token with no proof (for callers that have nothing else).
    pub fn bearer(token: String) -> Self {
        Presented {
            token,
            ..Default::default()
        }
    }
}

/// The `cnf` claim of a bound access token.
pub fn confirmation(jkt: &str) -> Value {
    json!({ "jkt": jkt })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1's RSA key and thumbprint.
        let jwk: Jwk = serde_json::from_value(json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"
        }))
        .unwrap();
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn urls_compare_without_query() {
        assert_eq!(
            normalize_htu("https://id.example/token?x=1#f"),
            normalize_htu("https://id.example/token")
        );
        assert_ne!(
            normalize_htu("https://id.example/token"),
            normalize_htu("https://id.example/userinfo")
        );
    }
}
