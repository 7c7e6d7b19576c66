//! ID token verification per second: the SDK's verifier against the `openidconnect` crate,
//! both verifying the same set of distinct ES256 tokens in the same run (no cache on either
//! side), and ring's raw ES256 signature check alone as the ceiling.
//!
//! Run: `cargo bench -p identity-sdk --bench id_token`

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use identity_sdk::id_token::IdTokenVerifier;
use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{ClientId, IssuerUrl, Nonce};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use std::str::FromStr;

const ISSUER: &str = "https://id.gov.example";
const CLIENT: &str = "licensing";
const TOKENS: usize = 1_000;

struct Fixture {
    jwks: String,
    point: Vec<u8>,
    tokens: Vec<String>,
}

fn fixture() -> Fixture {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}]})
    .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#);
    let tokens = (0..TOKENS)
        .map(|i| {
            // Distinct tokens, shaped like the service's: pairwise sub, acr, amr, nonce.
            let claims = serde_json::json!({"iss": ISSUER, "sub": format!("subject-{i:05}"), "aud": CLIENT,
                "azp": CLIENT, "iat": now, "exp": now + 3600, "auth_time": now, "nonce": "nonce-1",
                "acr": "urn:identity-service:acr:2", "amr": ["hwk", "user", "mfa"]});
            let signing = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
            let sig = pair.sign(&rng, signing.as_bytes()).unwrap();
            format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        })
        .collect();
    Fixture {
        jwks,
        point,
        tokens,
    }
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut group = c.benchmark_group("id_token_verify");
    group.throughput(Throughput::Elements(TOKENS as u64));

    let ours = IdTokenVerifier::new(ISSUER, CLIENT, &f.jwks)
        .unwrap()
        .allow_algorithms(&["ES256"]);
    group.bench_function("identity_sdk", |b| {
        b.iter(|| {
            for t in &f.tokens {
                ours.verify(t, Some("nonce-1"), None, now).unwrap();
            }
        })
    });

    let keys: CoreJsonWebKeySet = serde_json::from_str(&f.jwks).unwrap();
    let theirs = CoreIdTokenVerifier::new_public_client(
        ClientId::new(CLIENT.into()),
        IssuerUrl::new(ISSUER.into()).unwrap(),
        keys,
    )
    .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let nonce = Nonce::new("nonce-1".into());
    group.bench_function("openidconnect", |b| {
        b.iter(|| {
            for t in &f.tokens {
                let token = CoreIdToken::from_str(t).unwrap();
                token.claims(&theirs, &nonce).unwrap();
            }
        })
    });

    // The ceiling: the signature check alone, on the same tokens.
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, f.point.clone());
    group.bench_function("ring_es256_signature_only", |b| {
        b.iter(|| {
            for t in &f.tokens {
                let (signed, sig) = t.rsplit_once('.').unwrap();
                key.verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
                    .unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
