//! `private_key_jwt` client authentication (RFC 7523, OpenID Connect Core §9, FAPI 2.0):
//! the client signs a short-lived JWT with its own key; the provider checks it against the
//! public keys registered for the client.
//!
//! The key decides the algorithm, never the token: only ES256, PS256 and EdDSA are accepted,
//! so `none` and HMAC (a public key misused as a shared secret) are refused before any
//! cryptography runs.

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The `client_assertion_type` of a JWT bearer assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Algorithms a client assertion may use.
pub const ASSERTION_ALGS: [&str; 3] = ["ES256", "PS256", "EdDSA"];

/// How far in the future an assertion's `exp` may be: a few minutes, so a stolen one is of
/// little use (Singpass allows 2 minutes; we allow 5 for clock drift).
pub const MAX_LIFETIME: i64 = 300;

/// How far in the future `iat` and `nbf` may be (FAPI 2.0: 10 seconds of clock skew).
pub const SKEW: i64 = 10;

/// The most keys a client may register, and the largest JWKS text: a JWKS is parsed on
/// every assertion, so an oversized one is refused at registration.
const MAX_KEYS: usize = 10;
const MAX_JWKS_BYTES: usize = 16 * 1024;

/// Parses and checks a client's JWKS: public asymmetric keys only.
pub fn parse_client_jwks(text: &str) -> Result<JwkSet> {
    let bad = |why: &str| Error::InvalidRequest(format!("jwks: {why}"));
    if text.len() > MAX_JWKS_BYTES {
        return Err(bad("too large"));
    }
    // Private members are looked for in the raw JSON: the typed JWK drops what it does not
    // know, and a private key must not be stored even by mistake.
    let raw: serde_json::Value = serde_json::from_str(text).map_err(|_| bad("not a JWK set"))?;
    let private = ["d", "p", "q", "dp", "dq", "qi", "k"];
    if raw["keys"].as_array().is_some_and(|keys| {
        keys.iter()
            .any(|k| private.iter().any(|m| k.get(m).is_some()))
    }) {
        return Err(bad(
            "a private key was registered; register public keys only",
        ));
    }
    let set: JwkSet = serde_json::from_value(raw).map_err(|_| bad("not a JWK set"))?;
    if set.keys.is_empty() || set.keys.len() > MAX_KEYS {
        return Err(bad("must hold 1 to 10 keys"));
    }
    for k in &set.keys {
        match &k.algorithm {
            AlgorithmParameters::EllipticCurve(_) | AlgorithmParameters::OctetKeyPair(_) => {}
            AlgorithmParameters::RSA(rsa) => {
                // FAPI 2.0: RSA keys of at least 2048 bits.
                let n = base64::Engine::decode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    rsa.n.trim_end_matches('='),
                )
                .map_err(|_| bad("an RSA modulus is not base64url"))?;
                let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
                if bits < 2048 {
                    return Err(bad("RSA keys must have at least 2048 bits"));
                }
            }
            _ => return Err(bad("only public EC, OKP and RSA keys")),
        }
        if serde_json::to_value(k)
            .ok()
            .and_then(|v| v.get("d").cloned())
            .is_some()
        {
            return Err(bad(
                "a private key was registered; register public keys only",
            ));
        }
    }
    Ok(set)
}

#[derive(Deserialize)]
struct Claims {
    aud: serde_json::Value,
    iss: String,
    sub: String,
    exp: i64,
    iat: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

/// A checked assertion: its `jti` and `exp`, for the single-use record.
#[derive(Debug, Clone)]
pub struct CheckedAssertion {
    /// The assertion's id.
    pub jti: String,
    /// When it expires; the `jti` record is kept until then.
    pub exp: i64,
}

/// The `iss` of an assertion, read without verifying it, to find the client when the
/// request carries no `client_id`. Verification follows with that client's keys.
pub fn unverified_issuer(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_owned)
}

fn key_matches(jwk: &Jwk, alg: Algorithm) -> bool {
    matches!(
        (&jwk.algorithm, alg),
        (AlgorithmParameters::EllipticCurve(_), Algorithm::ES256)
            | (AlgorithmParameters::RSA(_), Algorithm::PS256)
            | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
    )
}

/// Whom an assertion may be addressed to.
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    /// The issuer identifier.
    pub issuer: &'a str,
    /// The URL of the endpoint the assertion was sent to.
    pub endpoint: &'a str,
    /// A FAPI 2.0 client: the issuer only, as a string.
    pub fapi: bool,
}

impl Audience<'_> {
    /// Whether an assertion's `aud` claim is acceptable. FAPI 2.0 (final, §5.3.2.1) asks
    /// for exactly the issuer as a string. For other clients RFC 7523 allows the issuer or
    /// the endpoint's URL; a one-element array is tolerated, but an array that names any
    /// other party is refused: an assertion made for someone else who listed us too could
    /// otherwise be replayed here (the 2025 audience-injection attacks).
    pub fn accepts(&self, aud: &serde_json::Value) -> bool {
        use serde_json::Value;
        let named = |v: &str| v == self.issuer || (!self.fapi && v == self.endpoint);
        match aud {
            Value::String(v) => named(v),
            Value::Array(items) if !self.fapi => {
                matches!(items.as_slice(), [Value::String(v)] if named(v))
            }
            _ => false,
        }
    }
}

/// Verifies a client assertion for `client_id` against its registered keys: signature by
/// one of them, `iss` = `sub` = client id, `aud` as [`Audience::accepts`] says, `exp` in
/// the future but at most [`MAX_LIFETIME`] ahead, `iat`/`nbf` at most [`SKEW`] ahead, and a
/// `jti`. The caller records the `jti`.
pub fn verify_assertion(
    assertion: &str,
    client_id: &str,
    jwks: &str,
    audience: &Audience<'_>,
    now: i64,
) -> Result<CheckedAssertion> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| Error::InvalidClient)?;
    let alg = header.alg;
    if !matches!(alg, Algorithm::ES256 | Algorithm::PS256 | Algorithm::EdDSA) {
        return Err(Error::InvalidClient);
    }
    let set = parse_client_jwks(jwks).map_err(|_| Error::InvalidClient)?;
    let candidates: Vec<&Jwk> = match &header.kid {
        Some(kid) => set.find(kid).into_iter().collect(),
        None => set.keys.iter().collect(),
    };
    let mut verified = None;
    for jwk in candidates.into_iter().filter(|k| key_matches(k, alg)) {
        let key = DecodingKey::from_jwk(jwk).map_err(|_| Error::InvalidClient)?;
        let mut v = Validation::new(alg);
        // Checked below by our own rule: jsonwebtoken accepts an array naming us anywhere.
        v.validate_aud = false;
        v.set_issuer(&[client_id]);
        v.sub = Some(client_id.to_owned());
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        v.leeway = 0;
        v.validate_nbf = false; // checked below with the skew FAPI allows
        if let Ok(data) = jsonwebtoken::decode::<Claims>(assertion, &key, &v) {
            verified = Some(data.claims);
            break;
        }
    }
    let claims = verified.ok_or(Error::InvalidClient)?;
    if claims.iss != client_id || claims.sub != client_id || !audience.accepts(&claims.aud) {
        return Err(Error::InvalidClient);
    }
    if claims.exp <= now || claims.exp > now + MAX_LIFETIME {
        return Err(Error::InvalidClient);
    }
    if claims.iat.is_some_and(|t| t > now + SKEW) || claims.nbf.is_some_and(|t| t > now + SKEW) {
        return Err(Error::InvalidClient);
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(Error::InvalidClient)?;
    Ok(CheckedAssertion {
        jti,
        exp: claims.exp,
    })
}

/// Fetches a client's published JWKS (blocking, with a timeout); the server provides it,
/// since the core knows nothing of HTTP.
pub trait JwksFetcher: Send + Sync + std::fmt::Debug {
    /// The document at `uri`, or why not.
    fn fetch(&self, uri: &str) -> std::result::Result<String, String>;
}

/// How long a fetched JWKS is used before it is fetched again, in seconds.
const JWKS_TTL: i64 = 300;
/// The least time between two fetches of one URI, so a flood of bad assertions cannot make
/// us hammer a client's server.
const JWKS_MIN_INTERVAL: i64 = 10;

/// Fetched JWKS by URI, safe to be stale for minutes (the design notes allow it for client
/// keys): every replica keeps its own.
pub struct JwksCache {
    fetcher: Option<std::sync::Arc<dyn JwksFetcher>>,
    clock: crate::clock::Clock,
    entries: std::sync::Mutex<std::collections::HashMap<String, (i64, String)>>,
}

impl JwksCache {
    /// A cache over a fetcher, timed by the provider's clock.
    pub fn new(
        fetcher: Option<std::sync::Arc<dyn JwksFetcher>>,
        clock: crate::clock::Clock,
    ) -> Self {
        JwksCache {
            fetcher,
            clock,
            entries: Default::default(),
        }
    }

    /// The JWKS at `uri`: cached unless older than five minutes or `refresh` is asked (and
    /// the last fetch is more than ten seconds old).
    pub fn get(&self, uri: &str, refresh: bool) -> Result<String> {
        let now = self.clock.now();
        if let Some((at, text)) = self.entries.lock().ok().and_then(|e| e.get(uri).cloned()) {
            let age = now - at;
            if age < JWKS_TTL && (!refresh || age < JWKS_MIN_INTERVAL) {
                return Ok(text);
            }
        }
        let fetcher = self.fetcher.as_ref().ok_or(Error::InvalidClient)?;
        let text = fetcher.fetch(uri).map_err(|e| {
            tracing::warn!(error = %e, "fetching a client's JWKS failed");
            Error::InvalidClient
        })?;
        parse_client_jwks(&text).map_err(|_| Error::InvalidClient)?;
        if let Ok(mut e) = self.entries.lock() {
            e.insert(uri.to_owned(), (now, text.clone()));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_must_be_public_asymmetric_keys() {
        assert!(parse_client_jwks(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
        assert!(parse_client_jwks(r#"{"keys":[]}"#).is_err());
        assert!(parse_client_jwks("not json").is_err());
        let ec = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        assert!(parse_client_jwks(ec).is_ok());
        let with_private = ec.replace(
            "\"}]",
            "\",\"d\":\"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI\"}]",
        );
        assert!(parse_client_jwks(&with_private).is_err());
        assert!(parse_client_jwks(&"x".repeat(20_000)).is_err());
    }

    const AUD: Audience<'static> = Audience {
        issuer: "i",
        endpoint: "i/token",
        fapi: false,
    };

    #[test]
    fn audiences() {
        use serde_json::json;
        let fapi = Audience { fapi: true, ..AUD };
        for (aud, plain, strict) in [
            (json!("i"), true, true),
            (json!("i/token"), true, false),
            (json!(["i"]), true, false),
            (json!(["i/token"]), true, false),
            (json!(["evil", "i"]), false, false),
            (json!(["i", "i/token"]), false, false),
            (json!("i/par"), false, false),
            (json!([]), false, false),
            (json!(1), false, false),
            (json!(null), false, false),
        ] {
            assert_eq!(AUD.accepts(&aud), plain, "{aud}");
            assert_eq!(fapi.accepts(&aud), strict, "FAPI {aud}");
        }
    }

    #[test]
    fn none_and_hmac_are_refused_before_any_key_is_tried() {
        let ec = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        // {"alg":"none"} . {"iss":"c","sub":"c","aud":"i","exp":9999999999,"jti":"j"} .
        let none = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJjIiwic3ViIjoiYyIsImF1ZCI6ImkiLCJleHAiOjk5OTk5OTk5OTksImp0aSI6ImoifQ.";
        assert!(matches!(
            verify_assertion(none, "c", ec, &AUD, 0),
            Err(Error::InvalidClient)
        ));
        // {"alg":"HS256"}: the public key's bytes as a shared secret would be an attack.
        let hs = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJjIiwic3ViIjoiYyIsImF1ZCI6ImkiLCJleHAiOjk5OTk5OTk5OTksImp0aSI6ImoifQ.c2ln";
        assert!(matches!(
            verify_assertion(hs, "c", ec, &AUD, 0),
            Err(Error::InvalidClient)
        ));
        assert_eq!(unverified_issuer(none).as_deref(), Some("c"));
    }
}
