//! Any text as an ID token or a logout token: an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let v = identity_sdk::id_token::IdTokenVerifier::new("https://id.example", "app", JWKS)
            .unwrap();
        assert!(v.verify(text, Some("n"), Some("at"), 1_000).is_err());
        assert!(v.verify_logout_token(text, 1_000).is_err());
    }
});
