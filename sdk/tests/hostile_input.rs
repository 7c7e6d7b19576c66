//! Property tests: whatever bytes arrive where a token, a proof or a signature should be,
//! the verifiers answer with an error and never panic; and a valid ID token never verifies
//! once any byte of its payload is changed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use identity_sdk::id_token::{AccessTokenVerifier, DpopRequest, IdTokenVerifier};
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

const ISSUER: &str = "https://id.example";

fn keyed() -> (EcdsaKeyPair, String) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let p = pair.public_key().as_ref();
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])}]});
    (pair, jwks.to_string())
}

fn token(pair: &EcdsaKeyPair) -> String {
    let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k1"}"#);
    let c = URL_SAFE_NO_PAD.encode(
        r#"{"iss":"https://id.example","sub":"s","aud":"app","exp":2000,"iat":1000,"nonce":"n"}"#,
    );
    let signing = format!("{h}.{c}");
    let sig = pair.sign(&SystemRandom::new(), signing.as_bytes()).unwrap();
    format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_tokens_are_refused_without_panic(s in ".{0,400}") {
        let (_, jwks) = keyed();
        let v = IdTokenVerifier::new(ISSUER, "app", &jwks).unwrap();
        prop_assert!(v.verify(&s, Some("n"), None, 1500).is_err());
        prop_assert!(v.verify_logout_token(&s, 1500).is_err());
        let rs = AccessTokenVerifier::new(ISSUER, ISSUER, &jwks).unwrap();
        let req = DpopRequest { proof: &s, method: "GET", url: "https://rs.example/x" };
        prop_assert!(rs.verify(&s, Some(req), 1500).is_err());
    }

    #[test]
    fn arbitrary_dot_separated_base64_is_refused(
        a in "[A-Za-z0-9_-]{0,60}", b in "[A-Za-z0-9_-]{0,200}", c in "[A-Za-z0-9_-]{0,90}",
    ) {
        let (_, jwks) = keyed();
        let v = IdTokenVerifier::new(ISSUER, "app", &jwks).unwrap();
        let t = format!("{a}.{b}.{c}");
        prop_assert!(v.verify(&t, None, None, 1500).is_err());
    }

    #[test]
    fn arbitrary_bytes_are_not_a_signature(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let r = identity_sdk::signature::verify_detached(&bytes, &[0u8; 32], &bytes, None);
        prop_assert!(r.is_err());
    }

    #[test]
    fn a_changed_payload_byte_never_verifies(index in 0usize..120, flip in 1u8..=255) {
        let (pair, jwks) = keyed();
        let v = IdTokenVerifier::new(ISSUER, "app", &jwks).unwrap();
        let good = token(&pair);
        prop_assert!(v.verify(&good, Some("n"), None, 1500).is_ok());
        let (h, rest) = good.split_once('.').unwrap();
        let (payload, sig) = rest.split_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let i = index % bytes.len();
        bytes[i] ^= flip;
        let changed = [h, &URL_SAFE_NO_PAD.encode(&bytes), sig].join(".");
        prop_assert!(v.verify(&changed, Some("n"), None, 1500).is_err());
    }
}
