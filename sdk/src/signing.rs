//! Offline verification of a document-signing result, everything an e-service keeps as
//! proof that a citizen signed a document:
//!
//! 1. the CMS signature over the document's digest, by a certificate from the pinned signing
//!    CA, naming the expected citizen ([`crate::signature::verify_detached`]);
//! 2. the approval evidence: a WebAuthn assertion by the citizen's passkey over a challenge
//!    derived from this request and this digest, from the service's origin, with user
//!    verification;
//! 3. the audit-log entry of the approval, which commits to this exact signature, and its
//!    inclusion proof against a checkpoint signed by the pinned audit key.
//!
//! Nothing here trusts the service's word beyond the two pinned keys (the signing CA and the
//! audit log's key).
//!
//! ```no_run
//! # fn demo(result: serde_json::Value, ca_der: &[u8], audit_key_text: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use identity_sdk::audit::VerifierKey;
//! use identity_sdk::signing::{verify_signing_result, Expectations};
//! let document = std::fs::read("licence.pdf")?;
//! let digest = ring::digest::digest(&ring::digest::SHA256, &document);
//! let audit_key = VerifierKey::parse(audit_key_text)?;
//! // `result` is what `SigningClient::status` returned in `Status::Signed`.
//! let verified = verify_signing_result(
//!     &result,
//!     &Expectations {
//!         request_id: "the id `ask` returned",
//!         document_digest: digest.as_ref(),
//!         ca_certificate: ca_der,
//!         subject: "the citizen's sub at this e-service",
//!         origin: "https://id.gov.example",
//!         audit_key: &audit_key,
//!     },
//! )?;
//! std::fs::write("licence.pdf.p7s", &verified.cms)?;
//! # Ok(()) }
//! ```

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::digest;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde_json::Value;

use crate::audit::{leaf_hash, verify_inclusion, Checkpoint, Hash, VerifierKey};
use crate::signature::{verify_detached, SignatureError, VerifiedSignature};

/// Why a signing result was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The result is not the JSON the service returns, or a field is missing.
    #[error("malformed signing result: {0}")]
    Malformed(&'static str),
    /// The CMS signature or its certificate failed.
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    /// The approval evidence does not show the citizen approving this document.
    #[error("approval evidence: {0}")]
    Evidence(&'static str),
    /// The audit-log proof does not show the approval in the signed log.
    #[error("audit proof: {0}")]
    Audit(&'static str),
}

/// What the pinned keys and the expected values are.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// The request id the e-service got when it asked.
    pub request_id: &'a str,
    /// The document's digest, as the e-service computed it.
    pub document_digest: &'a [u8],
    /// The signing CA's certificate (DER), pinned from the service's published one.
    pub ca_certificate: &'a [u8],
    /// The citizen's pairwise subject.
    pub subject: &'a str,
    /// The identity service's origin, e.g. `https://id.gov.example`.
    pub origin: &'a str,
    /// The audit log's verifier key.
    pub audit_key: &'a VerifierKey,
}

/// A result that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedSigning {
    /// What the CMS signature says.
    pub signature: VerifiedSignature,
    /// The DER CMS signature, to store beside the document.
    pub cms: Vec<u8>,
    /// The approval's index in the audit log.
    pub audit_index: u64,
    /// The checkpoint it was proved against.
    pub checkpoint: Checkpoint,
}

/// The WebAuthn challenge of a request's approval (the service derives the same one).
pub fn approval_challenge(request_id: &str, hash_alg: &str, document_digest: &[u8]) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [
        b"identity-service/sign/v1".as_slice(),
        request_id.as_bytes(),
        hash_alg.as_bytes(),
        document_digest,
    ] {
        ctx.update(&(part.len() as u32).to_be_bytes());
        ctx.update(part);
    }
    ctx.finish().as_ref().to_vec()
}

fn hex_sha256(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn field<'a>(v: &'a Value, path: &str) -> Result<&'a str, SigningError> {
    v.pointer(path)
        .and_then(Value::as_str)
        .ok_or(SigningError::Malformed("a field is missing"))
}

fn b64url(v: &Value, path: &str) -> Result<Vec<u8>, SigningError> {
    let s = field(v, path)?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| SigningError::Malformed("a field is not base64url"))
}

/// Verifies the `signed` object of a signing result (as the service's result endpoint and
/// the SDK's client return it).
pub fn verify_signing_result(
    signed: &Value,
    expect: &Expectations<'_>,
) -> Result<VerifiedSigning, SigningError> {
    let cms = STANDARD
        .decode(field(signed, "/signature")?)
        .map_err(|_| SigningError::Malformed("the signature is not base64"))?;
    let hash_alg = field(signed, "/hash_alg")?;
    let signature = verify_detached(
        &cms,
        expect.document_digest,
        expect.ca_certificate,
        Some(expect.subject),
    )?;
    check_evidence(
        signed
            .get("evidence")
            .ok_or(SigningError::Malformed("no evidence"))?,
        expect,
        hash_alg,
    )?;
    let (audit_index, checkpoint) = check_audit(
        signed
            .get("audit")
            .ok_or(SigningError::Malformed("no audit proof"))?,
        expect,
        &cms,
    )?;
    Ok(VerifiedSigning {
        signature,
        cms,
        audit_index,
        checkpoint,
    })
}

fn check_evidence(
    ev: &Value,
    expect: &Expectations<'_>,
    hash_alg: &str,
) -> Result<(), SigningError> {
    let bad = SigningError::Evidence;
    let challenge = approval_challenge(expect.request_id, hash_alg, expect.document_digest);
    let client_data = b64url(ev, "/assertion/response/clientDataJSON")?;
    let auth_data = b64url(ev, "/assertion/response/authenticatorData")?;
    let sig = b64url(ev, "/assertion/response/signature")?;
    let cd: Value =
        serde_json::from_slice(&client_data).map_err(|_| bad("the client data is not JSON"))?;
    if cd["type"] != "webauthn.get" {
        return Err(bad("not an assertion"));
    }
    let signed_challenge = b64url(&cd, "/challenge")?;
    if signed_challenge != challenge {
        return Err(bad(
            "the passkey approved another request or another document",
        ));
    }
    // Origins compare as scheme://host[:port]; some clients add a trailing slash.
    let origin = cd["origin"].as_str().unwrap_or("").trim_end_matches('/');
    if origin != expect.origin.trim_end_matches('/') {
        return Err(bad("the approval came from another origin"));
    }
    // The relying-party id is the origin's host or a suffix of it; the authenticator data
    // starts with its hash, then the flags: user present (0x01) and verified (0x04).
    let rp_id = field(ev, "/rp_id")?;
    let host = expect
        .origin
        .split_once("://")
        .map(|(_, rest)| rest.split([':', '/']).next().unwrap_or(""))
        .unwrap_or("");
    if !(host == rp_id || host.ends_with(&format!(".{rp_id}"))) {
        return Err(bad("the relying-party id does not belong to the origin"));
    }
    if auth_data.len() < 37
        || auth_data[..32] != *digest::digest(&digest::SHA256, rp_id.as_bytes()).as_ref()
    {
        return Err(bad("the authenticator data is for another relying party"));
    }
    if auth_data[32] & 0x05 != 0x05 {
        return Err(bad("the citizen was not verified by the passkey"));
    }
    let key = ev.pointer("/public_key").ok_or(bad("no public key"))?;
    let mut message = auth_data.clone();
    message.extend_from_slice(digest::digest(&digest::SHA256, &client_data).as_ref());
    verify_passkey_signature(key, &message, &sig).map_err(bad)
}

/// Verifies a WebAuthn assertion signature over `message` (authenticator data ‖ SHA-256 of
/// the client data) with the passkey's public key as a JWK: ES256, ES384 (P-256 and P-384,
/// ASN.1 signatures, as WebAuthn sends them), EdDSA (Ed25519) and RS256.
fn verify_passkey_signature(jwk: &Value, message: &[u8], sig: &[u8]) -> Result<(), &'static str> {
    use ring::signature::{
        RsaPublicKeyComponents, ECDSA_P384_SHA384_ASN1, ED25519, RSA_PKCS1_2048_8192_SHA256,
    };
    let member = |name: &str| -> Result<Vec<u8>, &'static str> {
        jwk[name]
            .as_str()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .ok_or("the passkey's public key is not a JWK")
    };
    let refused = |_| "the passkey's signature does not verify";
    let point = |size: usize| -> Result<Vec<u8>, &'static str> {
        let (x, y) = (member("x")?, member("y")?);
        if x.len() != size || y.len() != size {
            return Err("the passkey's public key is not a point of its curve");
        }
        Ok([&[4u8][..], &x, &y].concat())
    };
    let alg = jwk["alg"].as_str();
    match (jwk["kty"].as_str(), jwk["crv"].as_str(), alg) {
        (Some("EC"), Some("P-256"), Some("ES256")) => {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point(32)?)
                .verify(message, sig)
                .map_err(refused)
        }
        (Some("EC"), Some("P-384"), Some("ES384")) => {
            UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, point(48)?)
                .verify(message, sig)
                .map_err(refused)
        }
        (Some("OKP"), Some("Ed25519"), Some("EdDSA")) => {
            UnparsedPublicKey::new(&ED25519, member("x")?)
                .verify(message, sig)
                .map_err(refused)
        }
        (Some("RSA"), None, Some("RS256")) => RsaPublicKeyComponents {
            n: member("n")?,
            e: member("e")?,
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, message, sig)
        .map_err(refused),
        _ => {
            Err("the passkey's algorithm is not one verified offline (ES256, ES384, EdDSA, RS256)")
        }
    }
}

fn check_audit(
    audit: &Value,
    expect: &Expectations<'_>,
    cms: &[u8],
) -> Result<(u64, Checkpoint), SigningError> {
    let bad = SigningError::Audit;
    let entry = field(audit, "/entry")?;
    let note = field(audit, "/checkpoint")?;
    let index = audit
        .get("index")
        .and_then(Value::as_u64)
        .ok_or(SigningError::Malformed("no audit index"))?;
    let detail = format!(
        "detail={}:{}",
        hex_sha256(expect.request_id.as_bytes()),
        hex_sha256(cms)
    );
    let lines: Vec<&str> = entry.lines().collect();
    if !lines.contains(&"event=signing.approved") || !lines.contains(&detail.as_str()) {
        return Err(bad(
            "the entry is not this request's approval of this signature",
        ));
    }
    let checkpoint = Checkpoint::verify_note(note, expect.audit_key)
        .map_err(|_| bad("the checkpoint is not signed by the pinned audit key"))?;
    let proof: Vec<Hash> = audit
        .get("proof")
        .and_then(Value::as_array)
        .ok_or(SigningError::Malformed("no proof"))?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|s| STANDARD.decode(s).ok())
                .and_then(|b| Hash::try_from(b.as_slice()).ok())
                .ok_or(SigningError::Malformed("a proof hash is malformed"))
        })
        .collect::<Result<_, _>>()?;
    verify_inclusion(
        index,
        checkpoint.size,
        &leaf_hash(entry.as_bytes()),
        &proof,
        &checkpoint.root,
    )
    .map_err(|_| bad("the entry is not in the signed log"))?;
    Ok((index, checkpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_binds_request_algorithm_and_digest() {
        let d = [1u8; 32];
        let c = approval_challenge("r", "SHA-256", &d);
        assert_eq!(c.len(), 32);
        assert_ne!(c, approval_challenge("r", "SHA-512", &d));
        assert_ne!(c, approval_challenge("s", "SHA-256", &d));
    }
}

#[cfg(test)]
mod passkey_key_tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{
        EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
        ECDSA_P384_SHA384_ASN1_SIGNING, RSA_PKCS1_SHA256,
    };
    use serde_json::json;

    const MESSAGE: &[u8] = b"authenticator data and the client data's hash";

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    fn ec(
        alg: &'static ring::signature::EcdsaSigningAlgorithm,
        crv: &str,
        jose: &str,
    ) -> (Value, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let p = pair.public_key().as_ref();
        let n = (p.len() - 1) / 2;
        let jwk = json!({"kty": "EC", "crv": crv, "alg": jose,
            "x": b64(&p[1..=n]), "y": b64(&p[n + 1..])});
        (jwk, pair.sign(&rng, MESSAGE).unwrap().as_ref().to_vec())
    }

    /// Every algorithm a passkey may use here verifies, and a changed message does not.
    #[test]
    fn passkey_signatures_verify_with_their_jwk() {
        let rng = SystemRandom::new();
        let mut cases = vec![
            ec(&ECDSA_P256_SHA256_ASN1_SIGNING, "P-256", "ES256"),
            ec(&ECDSA_P384_SHA384_ASN1_SIGNING, "P-384", "ES384"),
        ];
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        cases.push((
            json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": b64(ed.public_key().as_ref())}),
            ed.sign(MESSAGE).as_ref().to_vec(),
        ));
        let rsa =
            RsaKeyPair::from_pkcs8(include_bytes!("../tests/fixtures/rsa2048.pk8.der")).unwrap();
        let mut sig = vec![0; rsa.public().modulus_len()];
        rsa.sign(&RSA_PKCS1_SHA256, &rng, MESSAGE, &mut sig)
            .unwrap();
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = rsa.public().into();
        cases.push((
            json!({"kty": "RSA", "alg": "RS256", "n": b64(&public.n), "e": b64(&public.e)}),
            sig,
        ));
        for (jwk, sig) in &cases {
            assert_eq!(verify_passkey_signature(jwk, MESSAGE, sig), Ok(()), "{jwk}");
            assert!(
                verify_passkey_signature(jwk, b"another message", sig).is_err(),
                "{jwk}"
            );
        }
        // A key under another algorithm than it names, a P-256 key with a short
        // coordinate, and the old library-specific form are refused.
        let (mut p256, sig) = cases[0].clone();
        p256["alg"] = "ES384".into();
        assert!(verify_passkey_signature(&p256, MESSAGE, &sig).is_err());
        p256["alg"] = "ES256".into();
        p256["x"] = b64(&[1; 31]).into();
        assert!(verify_passkey_signature(&p256, MESSAGE, &sig).is_err());
        let old =
            json!({"key": {"EC_EC2": {"curve": "SECP256R1", "x": "", "y": ""}}, "type_": "ES256"});
        assert!(verify_passkey_signature(&old, MESSAGE, &sig).is_err());
    }
}
