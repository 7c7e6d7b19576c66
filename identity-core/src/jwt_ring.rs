//! A [`CryptoProvider`] for `jsonwebtoken` 11 backed by `ring` 0.17.
//!
//! `jsonwebtoken` 11 no longer hard-codes its cryptography: every signature is
//! produced or checked by the process-wide [`CryptoProvider`]. The crate ships
//! providers for `aws-lc-rs` and RustCrypto behind cargo features; we depend on
//! it with `default-features = false` and plug in `ring` instead, so the
//! service links a single, audited crypto library.
//!
//! # Algorithms
//!
//! | `alg`                     | status    | signing key (`EncodingKey`)            |
//! |---------------------------|-----------|----------------------------------------|
//! | `ES256`, `ES384`          | supported | `from_ec_der(pkcs8)`                   |
//! | `EdDSA` (Ed25519 only)    | supported | `from_ed_der(pkcs8 v1 or v2)`          |
//! | `RS256/384/512`           | supported | `from_rsa_der(pkcs8 or pkcs1)`         |
//! | `PS256/384/512`           | supported | `from_rsa_der(pkcs8 or pkcs1)`         |
//! | `HS256/384/512`           | **refused** | —                                    |
//!
//! HMAC is refused for both signing and verification: a shared-secret JWT can
//! be minted by anyone who can verify it, which an OpenID provider must never
//! accept. Refusing it inside the provider means no `Validation` mistake can
//! re-enable it. RSA verification requires a modulus of 2048..=8192 bits
//! (ring's `RSA_*_2048_8192_*` parameters).
//!
//! # Installation
//!
//! Call [`install`] once at start-up, **before** any `jsonwebtoken` call that
//! needs crypto (`encode`, `decode`, `crypto::sign/verify`, `Jwk::thumbprint`,
//! `Jwk::from_encoding_key`). `jsonwebtoken` lazily locks in a placeholder
//! provider that panics on first use if nothing was installed, and after that
//! nothing can be installed any more.

use std::fmt;
use std::ptr;
use std::sync::{Arc, Mutex};

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{new_error, ErrorKind, Result as JwtResult};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, OctetKeyPairParameters,
    OctetKeyPairType, ThumbprintHash,
};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{
    self as rsig, EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, Ed25519KeyPair,
    KeyPair as _, RsaEncoding, RsaKeyPair, RsaParameters, RsaPublicKeyComponents,
    UnparsedPublicKey,
};

/// The ring-backed provider. Install it with [`install`]; it is public so it
/// can also be passed to APIs that take a `&'static CryptoProvider`.
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key,
        ed_pub_components_from_private_key,
        compute_digest,
    },
};

/// Returned by [`install`] when a *different* provider already is the process
/// default (another provider was installed first, or `jsonwebtoken` was used
/// before [`install`] and locked in its panicking placeholder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderConflict;

impl fmt::Display for ProviderConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a different jsonwebtoken CryptoProvider is already the process default; \
             call ring_provider::install() before any other jsonwebtoken use",
        )
    }
}

impl std::error::Error for ProviderConflict {}

/// Installs [`RING_PROVIDER`] as the process-wide `jsonwebtoken` provider.
///
/// Idempotent and thread-safe: the default lives in a `std::sync::OnceLock`
/// inside `jsonwebtoken` (`CryptoProvider::install_default` is
/// `OnceLock::set`), so exactly one install ever succeeds. Every later call
/// gets the already-installed provider back, and we report success only when
/// that provider is ours (`RING_PROVIDER` is a `static`, so its address is
/// stable). A second `OnceLock` here would add nothing, and caching an
/// earlier result would hide a conflict from a caller that checks it later.
pub fn install() -> Result<(), ProviderConflict> {
    match RING_PROVIDER.install_default() {
        Ok(()) => Ok(()),
        Err(current) if ptr::eq(current, &RING_PROVIDER) => Ok(()),
        Err(_) => Err(ProviderConflict),
    }
}

/// Builds the public JWK (for a JWKS document) for a signing key.
///
/// Prefer this to `Jwk::from_encoding_key`, which (1) rejects Ed25519 keys
/// unless their PKCS#8 is exactly 48 bytes (v1), so keys from ring's
/// `Ed25519KeyPair::generate_pkcs8` (v2, 83 bytes) fail, and (2) for HMAC keys
/// would put the *secret* into the JWK. Here HMAC is refused and Ed25519
/// works for both PKCS#8 versions. Other families delegate to
/// `Jwk::from_encoding_key`, which calls back into this provider.
pub fn public_jwk(key: &EncodingKey, alg: Algorithm) -> JwtResult<Jwk> {
    if scheme_for(alg)?.family() != key.family() {
        return Err(new_error(ErrorKind::InvalidAlgorithm));
    }
    match key.family() {
        AlgorithmFamily::Ed => {
            let x = ed_pub_components_from_private_key(key.as_bytes(), &EllipticCurve::Ed25519)?;
            Ok(Jwk {
                common: CommonParameters {
                    key_algorithm: Some(alg.into()),
                    ..Default::default()
                },
                algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: URL_SAFE_NO_PAD.encode(x),
                }),
            })
        }
        _ => Jwk::from_encoding_key(key, alg),
    }
}

// ---------------------------------------------------------------------------
// Algorithm table: the single place that decides what is supported.
// ---------------------------------------------------------------------------

/// How one JWS `alg` maps onto ring primitives.
#[derive(Clone, Copy)]
enum Scheme {
    Ecdsa {
        signing: &'static EcdsaSigningAlgorithm,
        verification: &'static EcdsaVerificationAlgorithm,
    },
    Ed25519,
    Rsa {
        padding: &'static dyn RsaEncoding,
        verification: &'static RsaParameters,
    },
}

impl Scheme {
    fn family(self) -> AlgorithmFamily {
        match self {
            Scheme::Ecdsa { .. } => AlgorithmFamily::Ec,
            Scheme::Ed25519 => AlgorithmFamily::Ed,
            Scheme::Rsa { .. } => AlgorithmFamily::Rsa,
        }
    }

    fn verification(self) -> &'static dyn rsig::VerificationAlgorithm {
        match self {
            Scheme::Ecdsa { verification, .. } => verification,
            Scheme::Ed25519 => &rsig::ED25519,
            Scheme::Rsa { verification, .. } => verification,
        }
    }
}

/// Maps `alg` to ring. JWS ECDSA signatures are the fixed-size `r || s`
/// (RFC 7518 §3.4), hence the `*_FIXED` variants rather than ASN.1/DER.
/// HMAC (and any algorithm added to `jsonwebtoken` later) is refused.
fn scheme_for(alg: Algorithm) -> JwtResult<Scheme> {
    let scheme = match alg {
        Algorithm::ES256 => Scheme::Ecdsa {
            signing: &rsig::ECDSA_P256_SHA256_FIXED_SIGNING,
            verification: &rsig::ECDSA_P256_SHA256_FIXED,
        },
        Algorithm::ES384 => Scheme::Ecdsa {
            signing: &rsig::ECDSA_P384_SHA384_FIXED_SIGNING,
            verification: &rsig::ECDSA_P384_SHA384_FIXED,
        },
        Algorithm::EdDSA => Scheme::Ed25519,
        Algorithm::RS256 => Scheme::Rsa {
            padding: &rsig::RSA_PKCS1_SHA256,
            verification: &rsig::RSA_PKCS1_2048_8192_SHA256,
        },
        Algorithm::RS384 => Scheme::Rsa {
            padding: &rsig::RSA_PKCS1_SHA384,
            verification: &rsig::RSA_PKCS1_2048_8192_SHA384,
        },
        Algorithm::RS512 => Scheme::Rsa {
            padding: &rsig::RSA_PKCS1_SHA512,
            verification: &rsig::RSA_PKCS1_2048_8192_SHA512,
        },
        Algorithm::PS256 => Scheme::Rsa {
            padding: &rsig::RSA_PSS_SHA256,
            verification: &rsig::RSA_PSS_2048_8192_SHA256,
        },
        Algorithm::PS384 => Scheme::Rsa {
            padding: &rsig::RSA_PSS_SHA384,
            verification: &rsig::RSA_PSS_2048_8192_SHA384,
        },
        Algorithm::PS512 => Scheme::Rsa {
            padding: &rsig::RSA_PSS_SHA512,
            verification: &rsig::RSA_PSS_2048_8192_SHA512,
        },
        // HS256/HS384/HS512 deliberately, plus future variants
        // (`Algorithm` is #[non_exhaustive]).
        _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(scheme)
}

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

/// A parsed ring private key.
enum SigningKey {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
}

struct RingSigner {
    alg: Algorithm,
    key: Arc<SigningKey>,
    /// ECDSA nonces and PSS salts need randomness; ring takes it explicitly.
    rng: SystemRandom,
}

/// How many parsed keys are kept: a few per algorithm covers the active, pre-published and
/// recently retired keys of a rotation.
const PARSED_KEYS: usize = 16;

/// Keys already parsed, by algorithm and the SHA-256 of their DER (the hash, not the key
/// bytes, so no second copy of the DER outlives its `EncodingKey`). `encode` asks for a new
/// signer for every token, and parsing is not cheap: ring checks a P-256 key by computing its
/// public point, as costly as the signature itself, and an RSA key by far more.
static PARSED: Mutex<Vec<ParsedKey>> = Mutex::new(Vec::new());

/// A parsed key: its algorithm, the SHA-256 of its DER, and the key.
type ParsedKey = (Algorithm, [u8; 32], Arc<SigningKey>);

fn parse_signing_key(scheme: &Scheme, der: &[u8], rng: &SystemRandom) -> JwtResult<SigningKey> {
    Ok(match scheme {
        Scheme::Ecdsa { signing, .. } => SigningKey::Ecdsa(
            EcdsaKeyPair::from_pkcs8(signing, der, rng)
                .map_err(|_| new_error(ErrorKind::InvalidEcdsaKey))?,
        ),
        Scheme::Ed25519 => SigningKey::Ed25519(parse_ed25519_pkcs8(der)?),
        Scheme::Rsa { padding, .. } => SigningKey::Rsa(parse_rsa_private_key(der)?, *padding),
    })
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> JwtResult<Box<dyn JwtSigner>> {
    let scheme = scheme_for(*alg)?;
    // `encode` checks this too, but `crypto::sign` does not.
    if key.family() != scheme.family() {
        return Err(new_error(ErrorKind::InvalidKeyFormat));
    }
    let rng = SystemRandom::new();
    let der = key.as_bytes();
    let mut id = [0u8; 32];
    id.copy_from_slice(digest::digest(&digest::SHA256, der).as_ref());
    let cached = PARSED.lock().ok().and_then(|keys| {
        keys.iter()
            .find(|(a, h, _)| a == alg && *h == id)
            .map(|(_, _, k)| k.clone())
    });
    let parsed = match cached {
        Some(k) => k,
        None => {
            // Parsed outside the lock; a key that does not parse is not remembered.
            let k = Arc::new(parse_signing_key(&scheme, der, &rng)?);
            if let Ok(mut keys) = PARSED.lock() {
                if keys.len() >= PARSED_KEYS {
                    keys.remove(0);
                }
                keys.push((*alg, id, k.clone()));
            }
            k
        }
    };
    Ok(Box::new(RingSigner {
        alg: *alg,
        key: parsed,
        rng,
    }))
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        match &*self.key {
            SigningKey::Ecdsa(pair) => pair
                .sign(&self.rng, msg)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            SigningKey::Ed25519(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
            SigningKey::Rsa(pair, padding) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(*padding, &self.rng, msg, &mut sig)
                    .map_err(|_| signature::Error::new())?;
                Ok(sig)
            }
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// Ed25519 PKCS#8, v1 (OpenSSL, `jsonwebtoken`'s PEM loader) or v2 (ring's
/// `generate_pkcs8`). `from_pkcs8` would reject v1; the `maybe_unchecked`
/// variant still checks the public key against the seed whenever v2 carries it.
fn parse_ed25519_pkcs8(der: &[u8]) -> JwtResult<Ed25519KeyPair> {
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
        .map_err(|_| new_error(ErrorKind::InvalidEddsaKey))
}

/// RSA private keys as PKCS#8 (what we store and what ring generates) or
/// PKCS#1 `RSAPrivateKey` (what `EncodingKey::from_rsa_pem` extracts and the
/// built-in providers expect), so keys built either way sign here.
fn parse_rsa_private_key(der: &[u8]) -> JwtResult<RsaKeyPair> {
    RsaKeyPair::from_pkcs8(der).or_else(|pkcs8_err| {
        RsaKeyPair::from_der(der).map_err(|pkcs1_err| {
            new_error(ErrorKind::InvalidRsaKey(format!(
                "neither PKCS#8 ({pkcs8_err}) nor PKCS#1 ({pkcs1_err})"
            )))
        })
    })
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

struct RingVerifier {
    alg: Algorithm,
    scheme: Scheme,
    /// Public material only; cloned because the verifier must be `'static`.
    key: DecodingKey,
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> JwtResult<Box<dyn JwtVerifier>> {
    let scheme = scheme_for(*alg)?;
    // Key/alg family confusion (e.g. an RSA key offered for ES256) is an error,
    // never a fallback.
    if key.family() != scheme.family() {
        return Err(new_error(ErrorKind::InvalidKeyFormat));
    }
    Ok(Box::new(RingVerifier {
        alg: *alg,
        scheme,
        key: key.clone(),
    }))
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let outcome = match (self.key.kind(), self.scheme) {
            // EC: uncompressed SEC1 point (`from_ec_components`/`from_ec_der`).
            // Ed: raw 32-byte key (`from_ed_components`/`from_ed_der`).
            // RSA: PKCS#1 `RSAPublicKey` DER (`from_rsa_der`).
            (DecodingKeyKind::SecretOrDer(public), scheme) => {
                UnparsedPublicKey::new(scheme.verification(), public).verify(msg, sig)
            }
            (DecodingKeyKind::RsaModulusExponent { n, e }, Scheme::Rsa { verification, .. }) => {
                RsaPublicKeyComponents {
                    n: strip_leading_zeros(n),
                    e: strip_leading_zeros(e),
                }
                .verify(verification, msg, sig)
            }
            (DecodingKeyKind::RsaModulusExponent { .. }, _) => Err(ring::error::Unspecified),
        };
        // ring's errors are deliberately opaque (and only `std::error::Error`
        // with ring's `std` feature); `decode` reports `InvalidSignature` anyway.
        outcome.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// ring rejects big-endian integers with leading zero bytes; some JWKS
/// publishers (wrongly, per RFC 7518 §6.3.1.1) emit them in `n`.
fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

// ---------------------------------------------------------------------------
// KeyUtils: used by `Jwk::from_encoding_key`, `Jwk::from_decoding_key`,
// `Jwk::thumbprint`.
// ---------------------------------------------------------------------------

fn rsa_pub_components_from_private_key(der: &[u8]) -> JwtResult<(Vec<u8>, Vec<u8>)> {
    let pair = parse_rsa_private_key(der)?;
    let components = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((components.n, components.e))
}

/// ring cannot hand back the components of a DER public key, so parse the
/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`
/// here (strict DER; only used to export JWKs, never to verify).
fn rsa_pub_components_from_public_key(der: &[u8]) -> JwtResult<(Vec<u8>, Vec<u8>)> {
    let invalid = || {
        new_error(ErrorKind::InvalidRsaKey(
            "malformed PKCS#1 RSAPublicKey".into(),
        ))
    };
    let (body, rest) = der::read(der, der::SEQUENCE).ok_or_else(invalid)?;
    let (n, body) = der::read(body, der::INTEGER).ok_or_else(invalid)?;
    let (e, body) = der::read(body, der::INTEGER).ok_or_else(invalid)?;
    if !rest.is_empty() || !body.is_empty() {
        return Err(invalid());
    }
    let n = der::positive_integer(n).ok_or_else(invalid)?;
    let e = der::positive_integer(e).ok_or_else(invalid)?;
    Ok((n.to_vec(), e.to_vec()))
}

fn ec_pub_components_from_private_key(
    der: &[u8],
    alg: Algorithm,
) -> JwtResult<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let invalid = || new_error(ErrorKind::InvalidEcdsaKey);
    let (signing, curve) = match alg {
        Algorithm::ES256 => (&rsig::ECDSA_P256_SHA256_FIXED_SIGNING, EllipticCurve::P256),
        Algorithm::ES384 => (&rsig::ECDSA_P384_SHA384_FIXED_SIGNING, EllipticCurve::P384),
        _ => return Err(invalid()),
    };
    let pair =
        EcdsaKeyPair::from_pkcs8(signing, der, &SystemRandom::new()).map_err(|_| invalid())?;
    // Uncompressed SEC1 point: 0x04 || x || y, coordinates of equal length.
    match pair.public_key().as_ref().split_first() {
        Some((0x04, xy)) if !xy.is_empty() && xy.len() % 2 == 0 => {
            let (x, y) = xy.split_at(xy.len() / 2);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(invalid()),
    }
}

fn ed_pub_components_from_private_key(der: &[u8], curve: &EllipticCurve) -> JwtResult<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => Ok(parse_ed25519_pkcs8(der)?.public_key().as_ref().to_vec()),
        _ => Err(new_error(ErrorKind::InvalidAlgorithm)),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> JwtResult<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        // `ThumbprintHash` is #[non_exhaustive].
        _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

/// Just enough DER to read an `RSAPublicKey`. Returns `None` on anything that
/// is not minimal, definite-length DER; never panics.
mod der {
    pub(super) const SEQUENCE: u8 = 0x30;
    pub(super) const INTEGER: u8 = 0x02;

    /// Reads one TLV with the given tag; returns `(value, remaining input)`.
    pub(super) fn read(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&actual, rest) = input.split_first()?;
        if actual != tag {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            // Long form: 1 or 2 length bytes cover every RSA key ring accepts.
            let (len_bytes, rest) = rest.split_at_checked(usize::from(first & 0x7f))?;
            let len = match *len_bytes {
                [a] if a >= 0x80 => usize::from(a),
                [a, b] if a != 0 => (usize::from(a) << 8) | usize::from(b),
                _ => return None,
            };
            (len, rest)
        };
        rest.split_at_checked(len)
    }

    /// A non-negative INTEGER's magnitude without its sign-padding zero.
    pub(super) fn positive_integer(value: &[u8]) -> Option<&[u8]> {
        match value {
            [0, rest @ ..] if rest.first().is_some_and(|b| b & 0x80 != 0) => Some(rest),
            [first, ..] if first & 0x80 == 0 && *first != 0 => Some(value),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::errors::Error;
    use jsonwebtoken::{decode, decode_header, encode, Header, Validation};
    use ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    use serde::{Deserialize, Serialize};

    const RSA_PKCS8: &[u8] = include_bytes!("../tests/fixtures/rsa2048.pk8.der");
    const RSA_PKCS1: &[u8] = include_bytes!("../tests/fixtures/rsa2048.pkcs1.der");
    const RSA_PUB_PKCS1: &[u8] = include_bytes!("../tests/fixtures/rsa2048.pub.pkcs1.der");
    const ED25519_V1: &[u8] = include_bytes!("../tests/fixtures/ed25519.v1.pk8.der");

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Claims {
        sub: String,
        aud: String,
        exp: u64,
    }

    fn claims() -> Claims {
        Claims {
            sub: "user-1".into(),
            aud: "client-a".into(),
            exp: jsonwebtoken::get_current_timestamp() + 600,
        }
    }

    fn validation(alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.set_audience(&["client-a"]);
        v
    }

    fn setup() {
        install().expect("ring provider must be the process default");
    }

    fn kind(err: Error) -> ErrorKind {
        err.into_kind()
    }

    fn sign(alg: Algorithm, key: &EncodingKey) -> String {
        encode(&Header::new(alg), &claims(), key).expect("encode")
    }

    fn roundtrip(alg: Algorithm, enc: &EncodingKey, dec: &DecodingKey) -> String {
        let token = sign(alg, enc);
        let data = decode::<Claims>(&token, dec, &validation(alg)).expect("decode");
        assert_eq!(data.claims.sub, "user-1");
        assert_eq!(data.header.alg, alg);
        token
    }

    fn ring_p256() -> (EncodingKey, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        (
            EncodingKey::from_ec_der(pkcs8.as_ref()),
            pair.public_key().as_ref().to_vec(),
        )
    }

    fn ring_ed25519() -> (EncodingKey, Vec<u8>) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        (
            EncodingKey::from_ed_der(pkcs8.as_ref()),
            pair.public_key().as_ref().to_vec(),
        )
    }

    fn decoding_key_from_jwk(jwk: &Jwk) -> DecodingKey {
        // Round-trip through JSON as a relying party would see it in the JWKS.
        let json = serde_json::to_string(jwk).unwrap();
        DecodingKey::from_jwk(&serde_json::from_str(&json).unwrap()).unwrap()
    }

    /// Replaces one character of the given segment (0 header, 1 payload, 2 signature).
    fn tamper(token: &str, segment: usize) -> String {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let s = &mut parts[segment];
        let c = if s.starts_with('A') { "B" } else { "A" };
        s.replace_range(0..1, c);
        parts.join(".")
    }

    #[test]
    fn install_is_idempotent_across_threads() {
        let handles: Vec<_> = (0..8).map(|_| std::thread::spawn(install)).collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), Ok(()));
        }
        assert_eq!(install(), Ok(()));
    }

    #[test]
    fn es256_roundtrip_ring_key() {
        setup();
        let (enc, point) = ring_p256();
        let token = roundtrip(Algorithm::ES256, &enc, &DecodingKey::from_ec_der(&point));
        // JWS wants fixed-size r||s, not ASN.1.
        let sig = URL_SAFE_NO_PAD
            .decode(token.rsplit('.').next().unwrap())
            .unwrap();
        assert_eq!(sig.len(), 64);
        // And via the published JWK (x/y components).
        let jwk = public_jwk(&enc, Algorithm::ES256).unwrap();
        assert_eq!(jwk, Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap());
        roundtrip(Algorithm::ES256, &enc, &decoding_key_from_jwk(&jwk));
    }

    #[test]
    fn remembered_keys_never_sign_for_another_key() {
        setup();
        // More keys than are remembered, used in turns twice: each signature comes from
        // its own key, whether parsed now, remembered, or parsed again after eviction.
        let keys: Vec<_> = (0..PARSED_KEYS + 4).map(|_| ring_p256()).collect();
        for _ in 0..2 {
            for (i, (enc, point)) in keys.iter().enumerate() {
                let token = roundtrip(Algorithm::ES256, enc, &DecodingKey::from_ec_der(point));
                let (_, other) = &keys[(i + 1) % keys.len()];
                let v = validation(Algorithm::ES256);
                assert!(decode::<Claims>(&token, &DecodingKey::from_ec_der(other), &v).is_err());
            }
        }
        // The same DER under another algorithm is not taken from memory: P-256 is no
        // P-384 key.
        let (enc, _) = &keys[0];
        sign(Algorithm::ES256, enc);
        assert!(encode(&Header::new(Algorithm::ES384), &claims(), enc).is_err());
    }

    #[test]
    fn es384_roundtrip_ring_key() {
        setup();
        let rng = SystemRandom::new();
        let alg = &rsig::ECDSA_P384_SHA384_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let enc = EncodingKey::from_ec_der(pkcs8.as_ref());
        let jwk = public_jwk(&enc, Algorithm::ES384).unwrap();
        let token = roundtrip(Algorithm::ES384, &enc, &decoding_key_from_jwk(&jwk));
        let sig = URL_SAFE_NO_PAD
            .decode(token.rsplit('.').next().unwrap())
            .unwrap();
        assert_eq!(sig.len(), 96);
    }

    #[test]
    fn eddsa_roundtrip_ring_key() {
        setup();
        let (enc, public) = ring_ed25519();
        roundtrip(Algorithm::EdDSA, &enc, &DecodingKey::from_ed_der(&public));
        let jwk = public_jwk(&enc, Algorithm::EdDSA).unwrap();
        roundtrip(Algorithm::EdDSA, &enc, &decoding_key_from_jwk(&jwk));
        // Upstream helper only accepts 48-byte (v1) Ed25519 PKCS#8.
        assert_eq!(
            kind(Jwk::from_encoding_key(&enc, Algorithm::EdDSA).unwrap_err()),
            ErrorKind::InvalidEddsaKey
        );
    }

    #[test]
    fn eddsa_roundtrip_openssl_v1_key() {
        setup();
        let enc = EncodingKey::from_ed_der(ED25519_V1);
        let jwk = Jwk::from_encoding_key(&enc, Algorithm::EdDSA).unwrap();
        assert_eq!(jwk, public_jwk(&enc, Algorithm::EdDSA).unwrap());
        roundtrip(Algorithm::EdDSA, &enc, &decoding_key_from_jwk(&jwk));
    }

    #[test]
    fn rs256_and_ps256_roundtrip() {
        setup();
        for alg in [
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::RS512,
            Algorithm::PS384,
        ] {
            for private in [RSA_PKCS8, RSA_PKCS1] {
                let enc = EncodingKey::from_rsa_der(private);
                roundtrip(alg, &enc, &DecodingKey::from_rsa_der(RSA_PUB_PKCS1));
                let jwk = public_jwk(&enc, alg).unwrap();
                roundtrip(alg, &enc, &decoding_key_from_jwk(&jwk));
            }
        }
    }

    #[test]
    fn rsa_jwk_with_leading_zero_modulus_still_verifies() {
        setup();
        let enc = EncodingKey::from_rsa_der(RSA_PKCS8);
        let (n, e) = rsa_pub_components_from_private_key(RSA_PKCS8).unwrap();
        let padded: Vec<u8> = std::iter::once(0).chain(n.iter().copied()).collect();
        roundtrip(
            Algorithm::RS256,
            &enc,
            &DecodingKey::from_rsa_raw_components(&padded, &e),
        );
    }

    #[test]
    fn rsa_public_der_components_match_private() {
        let from_private = rsa_pub_components_from_private_key(RSA_PKCS1).unwrap();
        assert_eq!(
            rsa_pub_components_from_public_key(RSA_PUB_PKCS1).unwrap(),
            from_private
        );
        assert_eq!(from_private.1, vec![1, 0, 1]);
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x81, 0x01, 0x00],
            &RSA_PUB_PKCS1[..100],
        ] {
            assert!(rsa_pub_components_from_public_key(bad).is_err());
        }
        setup();
        let jwk = Jwk::from_decoding_key(&DecodingKey::from_rsa_der(RSA_PUB_PKCS1), None).unwrap();
        assert_eq!(
            jwk,
            Jwk {
                common: Default::default(),
                ..public_jwk(&EncodingKey::from_rsa_der(RSA_PKCS8), Algorithm::RS256).unwrap()
            }
        );
    }

    #[test]
    fn tampered_tokens_fail() {
        setup();
        let (enc, point) = ring_p256();
        let dec = DecodingKey::from_ec_der(&point);
        let token = sign(Algorithm::ES256, &enc);
        for segment in [1, 2] {
            let err =
                decode::<Claims>(tamper(&token, segment), &dec, &validation(Algorithm::ES256));
            assert_eq!(
                kind(err.unwrap_err()),
                ErrorKind::InvalidSignature,
                "segment {segment}"
            );
        }
        let (other, _) = ring_p256();
        let foreign = sign(Algorithm::ES256, &other);
        let err = decode::<Claims>(&foreign, &dec, &validation(Algorithm::ES256)).unwrap_err();
        assert_eq!(kind(err), ErrorKind::InvalidSignature);

        let (ed_enc, ed_pub) = ring_ed25519();
        let ed_token = sign(Algorithm::EdDSA, &ed_enc);
        let err = decode::<Claims>(
            tamper(&ed_token, 1),
            &DecodingKey::from_ed_der(&ed_pub),
            &validation(Algorithm::EdDSA),
        );
        assert_eq!(kind(err.unwrap_err()), ErrorKind::InvalidSignature);
    }

    #[test]
    fn hmac_is_refused() {
        setup();
        let secret = b"shared-secret-shared-secret-1234";
        // Signing.
        let err = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(secret),
        );
        assert_eq!(kind(err.unwrap_err()), ErrorKind::UnsupportedAlgorithm);
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let err = jsonwebtoken::crypto::sign(b"x", &EncodingKey::from_secret(secret), alg);
            assert_eq!(kind(err.unwrap_err()), ErrorKind::UnsupportedAlgorithm);
        }
        // Verification of a genuine HS256 token (built with ring's HMAC).
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
        let message = format!("{header}.{payload}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, message.as_bytes()));
        let token = format!("{message}.{tag}");
        assert_eq!(decode_header(&token).unwrap().alg, Algorithm::HS256);

        let dec = DecodingKey::from_secret(secret);
        let err = decode::<Claims>(&token, &dec, &validation(Algorithm::HS256)).unwrap_err();
        assert_eq!(kind(err), ErrorKind::UnsupportedAlgorithm);
        // With an asymmetric-only Validation it is stopped even earlier.
        let (_, point) = ring_p256();
        let err = decode::<Claims>(
            &token,
            &DecodingKey::from_ec_der(&point),
            &validation(Algorithm::ES256),
        );
        assert_eq!(kind(err.unwrap_err()), ErrorKind::InvalidAlgorithm);
    }

    #[test]
    fn alg_swap_fails() {
        setup();
        let (enc, point) = ring_p256();
        let (_, ed_pub) = ring_ed25519();
        let token = sign(Algorithm::ES256, &enc);
        // ES256 token, EdDSA policy: header alg not allowed.
        let err = decode::<Claims>(
            &token,
            &DecodingKey::from_ed_der(&ed_pub),
            &validation(Algorithm::EdDSA),
        );
        assert_eq!(kind(err.unwrap_err()), ErrorKind::InvalidAlgorithm);
        // ES256 token, ES256 policy, but an Ed key: family mismatch in the provider.
        let err = decode::<Claims>(
            &token,
            &DecodingKey::from_ed_der(&ed_pub),
            &validation(Algorithm::ES256),
        );
        assert_eq!(kind(err.unwrap_err()), ErrorKind::InvalidKeyFormat);
        // Header rewritten to EdDSA (signature kept) against an EdDSA policy.
        let forged_header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"EdDSA"}"#);
        let rest = token.split_once('.').unwrap().1;
        let forged = format!("{forged_header}.{rest}");
        let err = decode::<Claims>(
            &forged,
            &DecodingKey::from_ed_der(&ed_pub),
            &validation(Algorithm::EdDSA),
        );
        assert_eq!(kind(err.unwrap_err()), ErrorKind::InvalidSignature);
        // ES256 key used with ES384 parameters / RS256 signature checked as PS256.
        let err = decode::<Claims>(
            &token.replacen(
                &token[..token.find('.').unwrap()],
                &URL_SAFE_NO_PAD.encode(br#"{"alg":"ES384"}"#),
                1,
            ),
            &DecodingKey::from_ec_der(&point),
            &validation(Algorithm::ES384),
        );
        assert_eq!(kind(err.unwrap_err()), ErrorKind::InvalidSignature);
        let rsa = EncodingKey::from_rsa_der(RSA_PKCS8);
        let rs = sign(Algorithm::RS256, &rsa);
        let (msg, sig) = rs.rsplit_once('.').unwrap();
        let pubkey = DecodingKey::from_rsa_der(RSA_PUB_PKCS1);
        assert!(
            jsonwebtoken::crypto::verify(sig, msg.as_bytes(), &pubkey, Algorithm::RS256).unwrap()
        );
        assert!(
            !jsonwebtoken::crypto::verify(sig, msg.as_bytes(), &pubkey, Algorithm::PS256).unwrap()
        );
    }

    #[test]
    fn bad_keys_error_instead_of_panicking() {
        setup();
        let garbage = b"not a key";
        let cases = [
            (
                Algorithm::ES256,
                EncodingKey::from_ec_der(garbage),
                ErrorKind::InvalidEcdsaKey,
            ),
            (
                Algorithm::EdDSA,
                EncodingKey::from_ed_der(garbage),
                ErrorKind::InvalidEddsaKey,
            ),
            (
                Algorithm::ES256,
                EncodingKey::from_ed_der(garbage),
                ErrorKind::InvalidAlgorithm,
            ),
        ];
        for (alg, key, expected) in cases {
            assert_eq!(
                kind(encode(&Header::new(alg), &claims(), &key).unwrap_err()),
                expected
            );
        }
        let err = encode(
            &Header::new(Algorithm::RS256),
            &claims(),
            &EncodingKey::from_rsa_der(garbage),
        );
        assert!(matches!(
            kind(err.unwrap_err()),
            ErrorKind::InvalidRsaKey(_)
        ));
        // P-256 key presented as ES384.
        let (p256, point) = ring_p256();
        let err = encode(&Header::new(Algorithm::ES384), &claims(), &p256).unwrap_err();
        assert_eq!(kind(err), ErrorKind::InvalidEcdsaKey);
        assert!(public_jwk(&p256, Algorithm::EdDSA).is_err());
        assert!(public_jwk(&EncodingKey::from_secret(b"s"), Algorithm::HS256).is_err());
        // Garbage public keys just fail verification.
        let token = sign(Algorithm::ES256, &p256);
        for dec in [
            DecodingKey::from_ec_der(garbage),
            DecodingKey::from_ec_der(&point[..10]),
        ] {
            let err = decode::<Claims>(&token, &dec, &validation(Algorithm::ES256)).unwrap_err();
            assert_eq!(kind(err), ErrorKind::InvalidSignature);
        }
    }

    #[test]
    fn thumbprint_matches_rfc7638() {
        setup();
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"RSA","e":"AQAB","kid":"2011-04-29","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}"#,
        )
        .unwrap();
        assert_eq!(
            jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let (ed, _) = ring_ed25519();
        let tp = public_jwk(&ed, Algorithm::EdDSA)
            .unwrap()
            .thumbprint(ThumbprintHash::SHA512)
            .unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(tp).unwrap().len(), 64);
    }
}
