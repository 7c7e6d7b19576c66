//! The SDK's ID token verifier against tokens of the real server.

use identity_core::storage::Backend;
use identity_sdk::id_token::{IdTokenVerifier, TokenError};
use serde_json::Value;

use crate::util::*;

#[tokio::test(flavor = "multi_thread")]
async fn sdk_verifies_the_servers_id_tokens() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (verifier, challenge) = pkce();
    let back = login_and_consent(
        &server,
        &browser(),
        &auth_url(&server, &challenge, &[]),
        USERNAME,
        PASSWORD,
    )
    .await;
    let (_, tokens) = exchange(&server, &query(&back, "code").unwrap(), &verifier).await;
    let jwks = http()
        .get(server.url("/jwks"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v = IdTokenVerifier::new(&server.base, CLIENT_ID, &jwks)
        .unwrap()
        .allow_algorithms(&["ES256"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let id = tokens["id_token"].as_str().unwrap();
    let at = tokens["access_token"].as_str().unwrap();
    let ok = v.verify(id, Some("nonce-123"), Some(at), now).unwrap();
    assert_eq!(
        ok.claims().acr.as_deref(),
        Some("urn:identity-service:acr:1")
    );
    assert_eq!(ok.claims().amr.as_deref(), Some(&["pwd".to_owned()][..]));
    assert_eq!(
        v.verify(id, Some("another"), None, now).unwrap_err(),
        TokenError::WrongNonce
    );
    assert_eq!(
        v.verify(id, None, None, now + 3600).unwrap_err(),
        TokenError::Expired
    );
    let other = IdTokenVerifier::new(&server.base, "another-client", &jwks).unwrap();
    assert_eq!(
        other.verify(id, None, None, now).unwrap_err(),
        TokenError::WrongAudience
    );
    let passkey_only = v.clone().require_acr(&["urn:identity-service:acr:2"]);
    assert_eq!(
        passkey_only.verify(id, None, None, now).unwrap_err(),
        TokenError::InsufficientAcr
    );
    let _: Value = serde_json::from_str(&jwks).unwrap();
}
