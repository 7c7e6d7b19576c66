//! The passkey's public key in a signing approval's evidence, as a JSON Web Key (RFC 7517,
//! RFC 7518 §6, RFC 8037 for Ed25519): a standard form any verifier can read, instead of a
//! WebAuthn library's own serialisation, which could change with the library.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use webauthn_rs::prelude::{COSEAlgorithm, COSEKey, COSEKeyType, ECDSACurve, EDDSACurve};

/// The JWK of a passkey's COSE public key, with `alg` as JOSE names the passkey's
/// algorithm (left out for one JOSE does not name).
pub(super) fn passkey_jwk(key: &COSEKey) -> Value {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    // A coordinate is the full size of its curve's field, zeros on the left (RFC 7518
    // §6.2.1.2); an integer has no leading zero octets, and zero is one zero octet
    // (Base64urlUInt, RFC 7518 §2).
    let coordinate = |c: &[u8], size: usize| {
        let mut full = vec![0u8; size.saturating_sub(c.len())];
        full.extend_from_slice(c);
        b64(&full)
    };
    let uint = |n: &[u8]| {
        let digits: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
        b64(if digits.is_empty() { &[0] } else { &digits })
    };
    let mut jwk = match &key.key {
        COSEKeyType::EC_EC2(ec) => {
            let (crv, size) = match ec.curve {
                ECDSACurve::SECP256R1 => ("P-256", 32),
                ECDSACurve::SECP384R1 => ("P-384", 48),
                ECDSACurve::SECP521R1 => ("P-521", 66),
            };
            json!({"kty": "EC", "crv": crv,
                   "x": coordinate(&ec.x, size), "y": coordinate(&ec.y, size)})
        }
        COSEKeyType::EC_OKP(okp) => {
            let crv = match okp.curve {
                EDDSACurve::ED25519 => "Ed25519",
                EDDSACurve::ED448 => "Ed448",
            };
            json!({"kty": "OKP", "crv": crv, "x": b64(&okp.x)})
        }
        COSEKeyType::RSA(rsa) => json!({"kty": "RSA", "n": uint(&rsa.n), "e": uint(&rsa.e)}),
    };
    let alg = match key.type_ {
        COSEAlgorithm::ES256 => Some("ES256"),
        COSEAlgorithm::ES384 => Some("ES384"),
        COSEAlgorithm::ES521 => Some("ES512"),
        COSEAlgorithm::RS256 => Some("RS256"),
        COSEAlgorithm::RS384 => Some("RS384"),
        COSEAlgorithm::RS512 => Some("RS512"),
        COSEAlgorithm::PS256 => Some("PS256"),
        COSEAlgorithm::PS384 => Some("PS384"),
        COSEAlgorithm::PS512 => Some("PS512"),
        COSEAlgorithm::EDDSA => Some("EdDSA"),
        _ => None,
    };
    if let (Some(alg), Some(map)) = (alg, jwk.as_object_mut()) {
        map.insert("alg".into(), alg.into());
    }
    jwk
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The P-256 generator point as a passkey key: the JWK of RFC 7518 §6.2.1 (the vector of
    /// docs/signing.md §6.2).
    #[test]
    fn an_es256_passkey_is_an_ec_jwk() {
        let x = hex::decode("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296")
            .unwrap();
        let y = hex::decode("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
            .unwrap();
        let key: COSEKey = serde_json::from_value(json!({
            "type_": "ES256",
            "key": {"EC_EC2": {"curve": "SECP256R1", "x": x, "y": y}}
        }))
        .unwrap();
        assert_eq!(
            passkey_jwk(&key),
            json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256",
                "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
                "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"
            })
        );
    }

    #[test]
    fn rsa_integers_lose_their_leading_zeros_and_ed25519_is_okp() {
        let rsa: COSEKey = serde_json::from_value(json!({
            "type_": "RS256",
            "key": {"RSA": {"n": [0, 0xc0, 0x01], "e": [0, 1, 0]}}
        }))
        .unwrap();
        assert_eq!(
            passkey_jwk(&rsa),
            json!({"kty": "RSA", "alg": "RS256", "n": "wAE", "e": "AQA"})
        );
        // A short coordinate is padded to its curve's size.
        let short: COSEKey = serde_json::from_value(json!({
            "type_": "ES256",
            "key": {"EC_EC2": {"curve": "SECP256R1", "x": vec![1u8; 31], "y": vec![2u8; 32]}}
        }))
        .unwrap();
        let x = passkey_jwk(&short)["x"].as_str().unwrap().to_owned();
        let mut padded = vec![0u8];
        padded.extend([1u8; 31]);
        assert_eq!(x, URL_SAFE_NO_PAD.encode(padded));
        let ed: COSEKey = serde_json::from_value(json!({
            "type_": "EDDSA",
            "key": {"EC_OKP": {"curve": "ED25519", "x": [1, 2, 3]}}
        }))
        .unwrap();
        assert_eq!(
            passkey_jwk(&ed),
            json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": "AQID"})
        );
    }
}
