//! ID token verification as types: a [`VerifiedIdToken`] can only come out of
//! [`IdTokenVerifier::verify`], so code that holds one knows every check passed.
//!
//! Signatures are checked with ring against the provider's JWKS (ES256, EdDSA, RS256 by
//! default; the allow-list comes from discovery), then `iss`, `aud`, `azp`, `exp`, `nbf`,
//! `iat` (with a small skew), `nonce`, `at_hash` and, if asked, a minimum `acr`.
//!
//! ```
//! use identity_sdk::id_token::IdTokenVerifier;
//! let jwks = r#"{"keys":[]}"#;
//! let verifier = IdTokenVerifier::new("https://id.gov.example", "licensing", jwks).unwrap();
//! assert!(verifier.verify("not.a.token", Some("n"), None, 0).is_err());
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Why an ID token was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWS in compact form, or its parts are not base64url JSON.
    #[error("malformed token")]
    Malformed,
    /// The JWKS could not be read.
    #[error("malformed JWKS")]
    MalformedJwks,
    /// The algorithm is not on the allow-list (for instance `none` or HMAC).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// No published key has this `kid` (refetch the JWKS, then try once more).
    #[error("unknown key")]
    UnknownKey,
    /// The key's algorithm is not the token's (an `alg` swap).
    #[error("the key does not fit the algorithm")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `iss` is not the provider's.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not include this client, or `azp` names another.
    #[error("wrong audience")]
    WrongAudience,
    /// `exp` has passed.
    #[error("expired")]
    Expired,
    /// `iat` or `nbf` is in the future.
    #[error("not yet valid")]
    NotYetValid,
    /// `nonce` is missing or not the one this login sent.
    #[error("wrong nonce")]
    WrongNonce,
    /// `at_hash` does not match the access token.
    #[error("wrong at_hash")]
    WrongAtHash,
    /// `acr` is below what this e-service requires.
    #[error("insufficient acr")]
    InsufficientAcr,
    /// The JWT's `typ` is not the one this kind of token must have.
    #[error("wrong token type")]
    WrongType,
    /// The access token is bound to a DPoP key and came without a proof.
    #[error("a DPoP proof is required")]
    DpopRequired,
    /// The DPoP proof is malformed, by another key, or for another request.
    #[error("bad DPoP proof")]
    BadProof,
}

/// The claims of a verified ID token.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    /// Issuer.
    pub iss: String,
    /// The citizen's pairwise subject for this e-service.
    pub sub: String,
    /// Authorized party.
    pub azp: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the citizen authenticated.
    pub auth_time: Option<i64>,
    /// The nonce of the login.
    pub nonce: Option<String>,
    /// Assurance level.
    pub acr: Option<String>,
    /// Authentication methods (RFC 8176).
    pub amr: Option<Vec<String>>,
    #[serde(default)]
    aud: Audience,
    nbf: Option<i64>,
    at_hash: Option<String>,
    /// Every other claim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl Audience {
    fn contains(&self, id: &str) -> bool {
        match self {
            Audience::One(a) => a == id,
            Audience::Many(v) => v.iter().any(|a| a == id),
            Audience::None => false,
        }
    }

    fn len(&self) -> usize {
        match self {
            Audience::One(_) => 1,
            Audience::Many(v) => v.len(),
            Audience::None => 0,
        }
    }
}

/// An ID token whose signature and claims were checked. Only the verifier makes one.
#[derive(Debug, Clone)]
pub struct VerifiedIdToken {
    claims: IdClaims,
}

impl VerifiedIdToken {
    /// The verified claims.
    pub fn claims(&self) -> &IdClaims {
        &self.claims
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Es256,
    EdDsa,
    Rs256,
}

impl Alg {
    fn parse(s: &str) -> Option<Alg> {
        match s {
            "ES256" => Some(Alg::Es256),
            "EdDSA" => Some(Alg::EdDsa),
            "RS256" => Some(Alg::Rs256),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Key {
    /// Uncompressed P-256 point.
    Ec(Vec<u8>),
    /// Ed25519 public key.
    Ed(Vec<u8>),
    /// RSA modulus and exponent.
    Rsa(Vec<u8>, Vec<u8>),
}

impl Key {
    fn alg(&self) -> Alg {
        match self {
            Key::Ec(_) => Alg::Es256,
            Key::Ed(_) => Alg::EdDsa,
            Key::Rsa(..) => Alg::Rs256,
        }
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// Reads the public keys of a JWKS, by `kid`. Keys of other kinds are skipped.
fn parse_jwks(text: &str) -> Result<HashMap<String, Key>, TokenError> {
    let v: Value = serde_json::from_str(text).map_err(|_| TokenError::MalformedJwks)?;
    let keys = v["keys"].as_array().ok_or(TokenError::MalformedJwks)?;
    let mut out = HashMap::new();
    for k in keys {
        let (Some(kid), Some(kty)) = (k["kid"].as_str(), k["kty"].as_str()) else {
            continue;
        };
        let field = |name: &str| k[name].as_str().and_then(b64);
        let key = match (kty, k["crv"].as_str()) {
            ("EC", Some("P-256")) => match (field("x"), field("y")) {
                (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                    Key::Ec([vec![4], x, y].concat())
                }
                _ => return Err(TokenError::MalformedJwks),
            },
            ("OKP", Some("Ed25519")) => Key::Ed(field("x").ok_or(TokenError::MalformedJwks)?),
            ("RSA", _) => match (field("n"), field("e")) {
                (Some(n), Some(e)) => Key::Rsa(n, e),
                _ => return Err(TokenError::MalformedJwks),
            },
            _ => continue,
        };
        out.insert(kid.to_owned(), key);
    }
    Ok(out)
}

/// Verifies ID tokens of one provider for one client.
#[derive(Debug, Clone)]
pub struct IdTokenVerifier {
    issuer: String,
    client_id: String,
    keys: HashMap<String, Key>,
    algs: Vec<Alg>,
    skew: i64,
    acr: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
}

/// A verified back-channel logout token: whose sessions to end.
#[derive(Debug, Clone)]
pub struct VerifiedLogoutToken {
    /// The citizen's pairwise subject for this e-service.
    pub sub: String,
    /// The token's id, to refuse it if it comes again.
    pub jti: String,
}

impl IdTokenVerifier {
    /// A verifier for `client_id`'s ID tokens from `issuer`, with its JWKS.
    pub fn new(issuer: &str, client_id: &str, jwks: &str) -> Result<Self, TokenError> {
        Ok(IdTokenVerifier {
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            keys: parse_jwks(jwks)?,
            algs: vec![Alg::Es256, Alg::EdDsa, Alg::Rs256],
            skew: 30,
            acr: None,
        })
    }

    /// Limits the algorithms to those discovery lists (`id_token_signing_alg_values_supported`)
    /// and the e-service accepts.
    pub fn allow_algorithms(mut self, algs: &[&str]) -> Self {
        self.algs = algs.iter().filter_map(|a| Alg::parse(a)).collect();
        self
    }

    /// Accepts only these `acr` values (for instance the passkey level alone).
    pub fn require_acr(mut self, values: &[&str]) -> Self {
        self.acr = Some(values.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// Replaces the keys with a fresh JWKS (after an [`TokenError::UnknownKey`]).
    pub fn set_jwks(&mut self, jwks: &str) -> Result<(), TokenError> {
        self.keys = parse_jwks(jwks)?;
        Ok(())
    }

    /// Checks the JWS: an allowed algorithm, a published key of that algorithm, the
    /// signature, and `typ` when one is required. Returns the algorithm and the payload
    /// segment.
    fn verify_signature<'t>(
        &self,
        token: &'t str,
        typ: Option<&str>,
    ) -> Result<(Alg, &'t str), TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = b64(h)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if typ.is_some() && header.typ.as_deref() != typ {
            return Err(TokenError::WrongType);
        }
        let alg = Alg::parse(&header.alg)
            .filter(|a| self.algs.contains(a))
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        let key = header
            .kid
            .as_deref()
            .and_then(|k| self.keys.get(k))
            .ok_or(TokenError::UnknownKey)?;
        if key.alg() != alg {
            return Err(TokenError::KeyMismatch);
        }
        let sig = b64(s).ok_or(TokenError::Malformed)?;
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        let ok = match key {
            Key::Ec(point) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, &sig)
                .is_ok(),
            Key::Ed(pk) => UnparsedPublicKey::new(&signature::ED25519, pk)
                .verify(signed, &sig)
                .is_ok(),
            Key::Rsa(n, e) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, &sig)
                .is_ok(),
        };
        if !ok {
            return Err(TokenError::BadSignature);
        }
        Ok((alg, p))
    }

    /// Verifies a back-channel `logout_token` (Back-Channel Logout §2.6): `typ`
    /// `logout+jwt`, signature, `iss`, `aud`, `iat`, a `jti`, the logout event, a `sub`,
    /// and no `nonce`. The e-service then ends that citizen's sessions (and should refuse
    /// the same `jti` twice).
    ///
    /// ```no_run
    /// # fn demo(verifier: &identity_sdk::id_token::IdTokenVerifier, form_logout_token: &str, now: i64) -> Result<(), identity_sdk::id_token::TokenError> {
    /// // The e-service's handler of the back-channel POST (`logout_token=...`).
    /// let logout = verifier.verify_logout_token(form_logout_token, now)?;
    /// println!("end the sessions of {} (event {})", logout.sub, logout.jti);
    /// # Ok(()) }
    /// ```
    pub fn verify_logout_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<VerifiedLogoutToken, TokenError> {
        let (_, p) = self.verify_signature(token, Some("logout+jwt"))?;
        let c: Value = b64(p)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if c["iss"] != self.issuer.as_str() {
            return Err(TokenError::WrongIssuer);
        }
        let aud: Audience = serde_json::from_value(c["aud"].clone()).unwrap_or_default();
        if !aud.contains(&self.client_id) {
            return Err(TokenError::WrongAudience);
        }
        let iat = c["iat"].as_i64().ok_or(TokenError::Malformed)?;
        if iat > now + self.skew || c["exp"].as_i64().is_some_and(|e| e + self.skew <= now) {
            return Err(TokenError::Expired);
        }
        if c.get("nonce").is_some()
            || !c["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object()
        {
            return Err(TokenError::Malformed);
        }
        let (Some(sub), Some(jti)) = (c["sub"].as_str(), c["jti"].as_str()) else {
            return Err(TokenError::Malformed);
        };
        Ok(VerifiedLogoutToken {
            sub: sub.to_owned(),
            jti: jti.to_owned(),
        })
    }

    /// Verifies a token at time `now` (Unix seconds): signature, then claims. `nonce` is the
    /// one this login sent; `access_token`, when given, must match `at_hash`.
    pub fn verify(
        &self,
        token: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
        now: i64,
    ) -> Result<VerifiedIdToken, TokenError> {
        let (alg, p) = self.verify_signature(token, None)?;
        let claims: IdClaims = b64(p)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if !claims.aud.contains(&self.client_id)
            || (claims.aud.len() > 1 && claims.azp.as_deref() != Some(&self.client_id))
            || claims.azp.as_deref().is_some_and(|a| a != self.client_id)
        {
            return Err(TokenError::WrongAudience);
        }
        if claims.exp + self.skew <= now {
            return Err(TokenError::Expired);
        }
        if claims.iat > now + self.skew || claims.nbf.is_some_and(|n| n > now + self.skew) {
            return Err(TokenError::NotYetValid);
        }
        if let Some(n) = nonce {
            if claims.nonce.as_deref() != Some(n) {
                return Err(TokenError::WrongNonce);
            }
        }
        if let Some(at) = access_token {
            let d = match alg {
                Alg::EdDsa => digest::digest(&digest::SHA512, at.as_bytes()),
                _ => digest::digest(&digest::SHA256, at.as_bytes()),
            };
            let half = &d.as_ref()[..d.as_ref().len() / 2];
            if claims.at_hash.as_deref() != Some(URL_SAFE_NO_PAD.encode(half).as_str()) {
                return Err(TokenError::WrongAtHash);
            }
        }
        if let Some(allowed) = &self.acr {
            if !claims.acr.as_ref().is_some_and(|a| allowed.contains(a)) {
                return Err(TokenError::InsufficientAcr);
            }
        }
        Ok(VerifiedIdToken { claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn key() -> (EcdsaKeyPair, String) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let p = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])}]});
        (pair, jwks.to_string())
    }

    fn sign(pair: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let signing = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = pair.sign(&SystemRandom::new(), signing.as_bytes()).unwrap();
        format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    #[test]
    fn every_check_refuses_its_case() {
        let (pair, jwks) = key();
        let v = IdTokenVerifier::new("https://id.example", "app", &jwks).unwrap();
        let h = serde_json::json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
        let good = serde_json::json!({"iss": "https://id.example", "sub": "s", "aud": "app",
            "exp": 1_000, "iat": 900, "nonce": "n", "acr": "urn:identity-service:acr:2"});
        assert!(v
            .verify(&sign(&pair, &h, &good), Some("n"), None, 950)
            .is_ok());
        let with = |k: &str, val: Value| {
            let mut c = good.clone();
            c[k] = val;
            sign(&pair, &h, &c)
        };
        let cases = [
            (
                with("iss", "https://evil.example".into()),
                TokenError::WrongIssuer,
            ),
            (with("aud", "other".into()), TokenError::WrongAudience),
            (
                with("aud", serde_json::json!(["app", "other"])),
                TokenError::WrongAudience,
            ),
            (with("exp", 500.into()), TokenError::Expired),
            (with("iat", 2_000.into()), TokenError::NotYetValid),
            (with("nonce", "m".into()), TokenError::WrongNonce),
        ];
        for (token, err) in cases {
            assert_eq!(v.verify(&token, Some("n"), None, 950).unwrap_err(), err);
        }
        let none = serde_json::json!({"alg": "none", "kid": "k1"});
        assert_eq!(
            v.verify(&sign(&pair, &none, &good), Some("n"), None, 950)
                .unwrap_err(),
            TokenError::AlgorithmNotAllowed
        );
        let swap = serde_json::json!({"alg": "RS256", "kid": "k1"});
        assert_eq!(
            v.verify(&sign(&pair, &swap, &good), Some("n"), None, 950)
                .unwrap_err(),
            TokenError::KeyMismatch
        );
        let unknown = serde_json::json!({"alg": "ES256", "kid": "k9"});
        assert_eq!(
            v.verify(&sign(&pair, &unknown, &good), Some("n"), None, 950)
                .unwrap_err(),
            TokenError::UnknownKey
        );
        let (other, _) = key();
        assert_eq!(
            v.verify(&sign(&other, &h, &good), Some("n"), None, 950)
                .unwrap_err(),
            TokenError::BadSignature
        );
        assert_eq!(
            v.verify(&sign(&pair, &h, &good), Some("n"), Some("token"), 950)
                .unwrap_err(),
            TokenError::WrongAtHash
        );
        let strict = v.clone().require_acr(&["urn:identity-service:acr:3"]);
        assert_eq!(
            strict
                .verify(&sign(&pair, &h, &good), Some("n"), None, 950)
                .unwrap_err(),
            TokenError::InsufficientAcr
        );
    }
}

/// The DPoP proof that came with a request to a resource server.
#[derive(Debug, Clone, Copy)]
pub struct DpopRequest<'a> {
    /// The `DPoP` header.
    pub proof: &'a str,
    /// The request's method.
    pub method: &'a str,
    /// The request's URL (query and fragment are ignored).
    pub url: &'a str,
}

/// A verified access token (RFC 9068), as a resource server sees it.
#[derive(Debug, Clone)]
pub struct VerifiedAccessToken {
    /// The citizen's pairwise subject (or the client, for client credentials).
    pub sub: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Its scopes.
    pub scope: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// The DPoP key it is bound to, if any; the proof was checked.
    pub jkt: Option<String>,
    /// The DPoP proof's `jti`: refuse it if it comes again.
    pub proof_jti: Option<String>,
}

/// Verifies access tokens (RFC 9068 JWTs, `typ` `at+jwt`) for a resource server, with the
/// DPoP proof of a sender-constrained one (RFC 9449 §7).
///
/// ```no_run
/// # fn demo(jwks: &str, authorization: &str, dpop_header: &str, now: i64) -> Result<(), identity_sdk::id_token::TokenError> {
/// use identity_sdk::id_token::{AccessTokenVerifier, DpopRequest};
/// let verifier = AccessTokenVerifier::new("https://id.gov.example", "https://id.gov.example", jwks)?;
/// // From `Authorization: DPoP <token>` and the `DPoP` header of this request.
/// let token = authorization.strip_prefix("DPoP ").unwrap_or_default();
/// let request = DpopRequest { proof: dpop_header, method: "GET", url: "https://records.gov.example/api/records" };
/// let verified = verifier.verify(token, Some(request), now)?;
/// // Keep `proof_jti` for a minute and refuse it if it comes again.
/// println!("{} with {:?}, proof {:?}", verified.sub, verified.scope, verified.proof_jti);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AccessTokenVerifier {
    jws: IdTokenVerifier,
}

fn thumbprint(jwk: &Value) -> Option<String> {
    let canonical = match jwk["kty"].as_str()? {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str()?,
            jwk["x"].as_str()?,
            jwk["y"].as_str()?
        ),
        "OKP" => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            jwk["crv"].as_str()?,
            jwk["x"].as_str()?
        ),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes())))
}

fn without_query(url: &str) -> &str {
    url.split(['?', '#'])
        .next()
        .unwrap_or(url)
        .trim_end_matches('/')
}

impl AccessTokenVerifier {
    /// A verifier of `issuer`'s access tokens meant for `audience`.
    pub fn new(issuer: &str, audience: &str, jwks: &str) -> Result<Self, TokenError> {
        Ok(AccessTokenVerifier {
            jws: IdTokenVerifier::new(issuer, audience, jwks)?,
        })
    }

    /// Verifies a token presented with `dpop` (its proof, method and URL) or without.
    /// A bound token (`cnf.jkt`) needs a proof by that key, for this request, with `ath`.
    pub fn verify(
        &self,
        token: &str,
        dpop: Option<DpopRequest<'_>>,
        now: i64,
    ) -> Result<VerifiedAccessToken, TokenError> {
        let (_, p) = self.jws.verify_signature(token, Some("at+jwt"))?;
        let c: Value = b64(p)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if c["iss"] != self.jws.issuer.as_str() {
            return Err(TokenError::WrongIssuer);
        }
        let aud: Audience = serde_json::from_value(c["aud"].clone()).unwrap_or_default();
        if !aud.contains(&self.jws.client_id) {
            return Err(TokenError::WrongAudience);
        }
        let exp = c["exp"].as_i64().ok_or(TokenError::Malformed)?;
        if exp + self.jws.skew <= now {
            return Err(TokenError::Expired);
        }
        let jkt = c["cnf"]["jkt"].as_str().map(str::to_owned);
        let proof_jti = match (&jkt, dpop) {
            (None, _) => None,
            (Some(_), None) => return Err(TokenError::DpopRequired),
            (Some(jkt), Some(req)) => Some(check_proof(req, token, jkt, now)?),
        };
        Ok(VerifiedAccessToken {
            sub: c["sub"].as_str().ok_or(TokenError::Malformed)?.to_owned(),
            client_id: c["client_id"].as_str().unwrap_or_default().to_owned(),
            scope: c["scope"]
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            exp,
            jkt,
            proof_jti,
        })
    }
}

/// A DPoP proof for a bound token: `typ`, the key in its header (whose thumbprint is the
/// token's `jkt`), the signature, `htm`, `htu`, a fresh `iat`, and `ath`. Returns its `jti`.
fn check_proof(
    req: DpopRequest<'_>,
    token: &str,
    jkt: &str,
    now: i64,
) -> Result<String, TokenError> {
    let bad = TokenError::BadProof;
    let mut parts = req.proof.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad);
    };
    let header: Value = b64(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(bad.clone())?;
    if header["typ"] != "dpop+jwt" {
        return Err(bad);
    }
    let jwk = &header["jwk"];
    if thumbprint(jwk).as_deref() != Some(jkt) {
        return Err(bad);
    }
    let sig = b64(s).ok_or(bad.clone())?;
    let signed = &req.proof.as_bytes()[..h.len() + 1 + p.len()];
    let ok = match (header["alg"].as_str(), jwk["kty"].as_str()) {
        (Some("ES256"), Some("EC")) => {
            let (Some(x), Some(y)) = (
                jwk["x"].as_str().and_then(b64),
                jwk["y"].as_str().and_then(b64),
            ) else {
                return Err(bad);
            };
            UnparsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                [vec![4], x, y].concat(),
            )
            .verify(signed, &sig)
            .is_ok()
        }
        (Some("EdDSA"), Some("OKP")) => {
            let Some(x) = jwk["x"].as_str().and_then(b64) else {
                return Err(bad);
            };
            UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(signed, &sig)
                .is_ok()
        }
        _ => false,
    };
    if !ok {
        return Err(bad);
    }
    let c: Value = b64(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(bad.clone())?;
    let ath = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()));
    let iat = c["iat"].as_i64().ok_or(bad.clone())?;
    if c["htm"] != req.method
        || c["htu"].as_str().map(without_query) != Some(without_query(req.url))
        || c["ath"] != ath.as_str()
        || iat > now + 10
        || iat < now - 60
    {
        return Err(bad);
    }
    c["jti"].as_str().map(str::to_owned).ok_or(bad)
}
