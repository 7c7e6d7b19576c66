//! Any text as a DPoP proof (with a well-formed bound token's shape around it): refused
//! without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let rs = identity_sdk::id_token::AccessTokenVerifier::new(
            "https://id.example",
            "https://id.example",
            JWKS,
        )
        .unwrap();
        let req = identity_sdk::id_token::DpopRequest {
            proof: text,
            method: "GET",
            url: "https://rs.example/x",
        };
        assert!(rs.verify(text, Some(req), 1_000).is_err());
    }
});
