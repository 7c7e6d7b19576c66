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
    // The other refusals, on the server's own token.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let wrong_issuer = IdTokenVerifier::new("https://elsewhere.example", CLIENT_ID, &jwks).unwrap();
    assert_eq!(
        wrong_issuer.verify(id, None, None, now).unwrap_err(),
        TokenError::WrongIssuer
    );
    let (signed, sig) = id.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    bytes[10] ^= 1;
    let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&bytes));
    assert_eq!(
        v.verify(&forged, None, None, now).unwrap_err(),
        TokenError::BadSignature
    );
    let no_keys = IdTokenVerifier::new(&server.base, CLIENT_ID, r#"{"keys":[]}"#).unwrap();
    assert_eq!(
        no_keys.verify(id, None, None, now).unwrap_err(),
        TokenError::UnknownKey
    );
    let (header, rest) = id.split_once('.').unwrap();
    let mut h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    h["alg"] = "EdDSA".into();
    let swapped = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(h.to_string()));
    let all_algs = IdTokenVerifier::new(&server.base, CLIENT_ID, &jwks).unwrap();
    assert_eq!(
        all_algs.verify(&swapped, None, None, now).unwrap_err(),
        TokenError::KeyMismatch
    );
    h["alg"] = "HS256".into();
    let hmac = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(h.to_string()));
    assert_eq!(
        all_algs.verify(&hmac, None, None, now).unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
}

/// The SDK's login client through a whole FAPI 2.0 login (PAR, PKCE, DPoP,
/// `private_key_jwt`), then UserInfo, refresh, logout URL and revocation; and a plain
/// client with a secret.
#[tokio::test(flavor = "multi_thread")]
async fn sdk_login_client_fapi_and_secret() {
    use identity_sdk::login::{ClientKey, Credentials, LoginClient};
    use identity_sdk::signing_client::ClientSecret;
    let server = Server::start(Backend::Sqlite, &[]).await;
    let key = ClientKey::generate("k1");
    let dir = identity_core::storage::testing::tempfile_guard::Dir::new();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, key.jwks()).unwrap();
    server.cli(&[
        "client",
        "add",
        "--id",
        "sdk-fapi",
        "--name",
        "SDK FAPI",
        "--department",
        "Dept S",
        "--redirect-uri",
        REDIRECT_URI,
        "--jwks",
        path.to_str().unwrap(),
        "--fapi",
        "--post-logout-redirect-uri",
        "http://localhost:8081/bye",
    ]);
    let client = LoginClient::discover(
        &server.base,
        "sdk-fapi",
        Credentials::PrivateKeyJwt(Box::new(key)),
        REDIRECT_URI,
    )
    .await
    .unwrap()
    .with_dpop();
    let pending = client.start("openid profile offline_access").await.unwrap();
    assert!(pending.url().contains("request_uri="), "pushed");
    assert!(
        !format!("{pending:?}").contains("request_uri"),
        "no secrets in Debug"
    );
    let back = login_and_consent(&server, &browser(), pending.url(), USERNAME, PASSWORD).await;
    let tokens = client.finish(pending, back.as_str()).await.unwrap();
    assert_eq!(tokens.token_type, "DPoP");
    assert!(!tokens.id_token.claims().sub.is_empty());
    let info = client.userinfo(&tokens).await.unwrap();
    assert_eq!(info["name"], "CHAN Tai Man");
    let refresh = tokens
        .refresh_token
        .as_ref()
        .expect("offline_access")
        .expose()
        .to_owned();
    let renewed = client.refresh(&refresh).await.unwrap();
    assert_eq!(renewed["token_type"], "DPoP");
    let logout = client
        .logout_url(&tokens.id_token_raw, "http://localhost:8081/bye", "s1")
        .unwrap();
    assert!(logout.starts_with(&server.url("/end-session")));
    client.revoke(&refresh).await.unwrap();
    assert!(
        client.refresh(&refresh).await.is_err(),
        "revoked with its grant"
    );

    // A state from another login is refused at the callback.
    let pending = client.start("openid").await.unwrap();
    let back = login_and_consent(&server, &browser(), pending.url(), USERNAME, PASSWORD).await;
    let other = client.start("openid").await.unwrap();
    assert!(client.finish(other, back.as_str()).await.is_err());

    // The demo e-service with its secret, no DPoP.
    let plain = LoginClient::discover(
        &server.base,
        CLIENT_ID,
        Credentials::Secret(ClientSecret::new(CLIENT_SECRET)),
        REDIRECT_URI,
    )
    .await
    .unwrap();
    let pending = plain.start("openid email").await.unwrap();
    let back = login_and_consent(&server, &browser(), pending.url(), USERNAME, PASSWORD).await;
    let tokens = plain.finish(pending, back.as_str()).await.unwrap();
    assert_eq!(tokens.token_type, "Bearer");
    assert!(plain.userinfo(&tokens).await.unwrap()["email"].is_string());

    // A simple client without PAR: plain PKCE in the browser's URL, still DPoP-bound.
    let simple = LoginClient::discover(
        &server.base,
        CLIENT_ID,
        Credentials::Secret(ClientSecret::new(CLIENT_SECRET)),
        REDIRECT_URI,
    )
    .await
    .unwrap()
    .without_par()
    .with_dpop();
    let pending = simple.start("openid").await.unwrap();
    assert!(pending.url().contains("code_challenge="));
    assert!(pending.url().contains("dpop_jkt="));
    assert!(!pending.url().contains("request_uri="));
    let back = login_and_consent(&server, &browser(), pending.url(), USERNAME, PASSWORD).await;
    let tokens = simple.finish(pending, back.as_str()).await.unwrap();
    assert_eq!(tokens.token_type, "DPoP");
    assert!(simple.userinfo(&tokens).await.unwrap()["sub"].is_string());

    // A FAPI client may not skip PAR: the provider refuses, and the SDK reports it.
    let fapi_plain = LoginClient::discover(
        &server.base,
        "sdk-fapi",
        Credentials::PrivateKeyJwt(Box::new(ClientKey::generate("k2"))),
        REDIRECT_URI,
    )
    .await
    .unwrap()
    .without_par();
    let pending = fapi_plain.start("openid").await.unwrap();
    let r = browser().get(pending.url()).send().await.unwrap();
    let back = r.headers()["location"].to_str().unwrap().to_owned();
    match fapi_plain.finish(pending, &back).await {
        Err(identity_sdk::login::LoginError::Callback(identity_sdk::Error::Provider {
            error,
            ..
        })) => assert_eq!(error, "invalid_request"),
        other => panic!("{other:?}"),
    }
}

/// The provider replaces its key at once (a compromise): the SDK, holding the old JWKS,
/// meets a token by a key it lacks and fetches the keys again (not more than every 10 s).
#[tokio::test(flavor = "multi_thread")]
async fn sdk_refetches_keys_after_rotation() {
    use identity_sdk::login::{Credentials, LoginClient};
    use identity_sdk::signing_client::ClientSecret;
    let server = Server::start(Backend::Sqlite, &[]).await;
    let client = LoginClient::discover(
        &server.base,
        CLIENT_ID,
        Credentials::Secret(ClientSecret::new(CLIENT_SECRET)),
        REDIRECT_URI,
    )
    .await
    .unwrap();
    let kids = |jwks: &str| -> Vec<String> {
        serde_json::from_str::<Value>(jwks).unwrap()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let before = kids(
        &http()
            .get(server.url("/jwks"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    server.cli(&["keys", "rotate", "--alg", "ES256", "--now"]);
    // Past the server's own key cache and the SDK's refetch limit.
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let pending = client.start("openid").await.unwrap();
    let back = login_and_consent(&server, &browser(), pending.url(), USERNAME, PASSWORD).await;
    let tokens = client.finish(pending, back.as_str()).await.unwrap();
    assert!(!tokens.id_token.claims().sub.is_empty());
    use base64::Engine;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tokens.id_token_raw.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();
    assert!(
        !before.contains(&kid),
        "signed by the new key, which the SDK had to fetch"
    );
}
