//! The authorization code flow driven by a relying-party library this project did not
//! write: the `openidconnect` crate (discovery, PKCE and nonce, code exchange, ID token
//! verification against the published JWKS, UserInfo).

use identity_core::storage::Backend;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use std::str::FromStr;

use crate::util::*;

async fn openidconnect_flow(backend: Backend) {
    let server = Server::start(backend, &[]).await;
    let http = http();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(server.base.clone()).unwrap(), &http)
            .await
            .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(CLIENT_ID.into()),
        Some(ClientSecret::new(CLIENT_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        // OpenID Connect Core §11: a refresh token only for offline_access.
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();

    let b = browser();
    let back = login_and_consent(&server, &b, url.as_str(), USERNAME, PASSWORD).await;
    assert_eq!(
        query(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(
        query(&back, "iss").as_deref(),
        Some(server.base.as_str()),
        "RFC 9207 iss"
    );
    let code = query(&back, "code").expect("code");

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("ID token verifies");
    assert_eq!(claims.issuer().as_str(), server.base);
    assert!(claims.auth_time().is_some());
    assert_eq!(
        claims.auth_context_ref().map(|a| a.as_str()),
        Some("urn:identity-service:acr:1")
    );
    assert_eq!(
        claims
            .auth_method_refs()
            .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect::<Vec<_>>()),
        Some(vec!["pwd".to_owned()])
    );
    // at_hash binds the access token to the ID token.
    let expected = openidconnect::AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected));

    // A tampered ID token (another subject, same signature) is refused by the verifier.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let raw = id_token.to_string();
    let parts: Vec<&str> = raw.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = serde_json::json!("someone-else");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    let tampered = CoreIdToken::from_str(&forged).expect("still a well-formed JWT");
    assert!(
        tampered.claims(&verifier, &nonce).is_err(),
        "a tampered ID token must not verify"
    );

    let info: CoreUserInfoClaims = client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject(), claims.subject());
    assert_eq!(
        info.email().map(|e| e.as_str()),
        Some("chan.taiman@example.gov.hk")
    );
    let name = info.name().expect("name");
    assert_eq!(name.get(None).map(|n| n.as_str()), Some("CHAN Tai Man"));
    let zh = openidconnect::LanguageTag::new("zh-Hant".into());
    assert_eq!(name.get(Some(&zh)).map(|n| n.as_str()), Some("陳大文"));
    assert!(info.phone_number().is_none(), "phone was not requested");

    // Refresh with rotation through the library too.
    let refreshed = client
        .exchange_refresh_token(&RefreshToken::new(
            tokens.refresh_token().unwrap().secret().clone(),
        ))
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        tokens.refresh_token().unwrap().secret()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openidconnect_flow_sqlite() {
    openidconnect_flow(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
async fn openidconnect_flow_postgres() {
    openidconnect_flow(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_and_jwks_are_complete() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let d: serde_json::Value = reqwest::get(server.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], server.base);
    for k in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
    ] {
        assert!(d[k].as_str().unwrap().starts_with(&server.base), "{k}");
    }
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        d["subject_types_supported"],
        serde_json::json!(["pairwise"])
    );
    assert!(d["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&"openid".into()));
    let r = reqwest::get(server.url("/jwks")).await.unwrap();
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let jwks: serde_json::Value = r.json().await.unwrap();
    let algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    assert!(algs.contains(&"ES256") && algs.contains(&"EdDSA") && algs.contains(&"RS256"));
    assert!(
        jwks.to_string().find("\"d\"").is_none(),
        "no private key material in the JWKS"
    );
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            reqwest::get(server.url(probe)).await.unwrap().status(),
            200,
            "{probe}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn security_headers_on_every_response() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    for path in [
        "/.well-known/openid-configuration",
        "/account",
        "/nowhere",
        "/authorize",
    ] {
        let r = reqwest::get(server.url(path)).await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}"
        );
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS over plain HTTP"
        );
    }
}

/// A legacy relying party registered for RS256 verifies its ID token with the library's
/// default settings (which allow RS256 only).
#[tokio::test(flavor = "multi_thread")]
async fn rs256_client_with_default_verifier() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let out = server.cli(&[
        "client",
        "add",
        "--id",
        "legacy",
        "--name",
        "Legacy Portal",
        "--department",
        "Lands Department",
        "--redirect-uri",
        REDIRECT_URI,
        "--id-token-alg",
        "RS256",
    ]);
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_owned();
    let http = http();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(server.base.clone()).unwrap(), &http)
            .await
            .unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("legacy".into()),
        Some(ClientSecret::new(secret)),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    let back = login_and_consent(&server, &browser(), url.as_str(), USERNAME, PASSWORD).await;
    let tokens = client
        .exchange_code(AuthorizationCode::new(query(&back, "code").unwrap()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = tokens.id_token().unwrap();
    assert_eq!(
        id_token.signing_alg().unwrap(),
        &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
    );
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("RS256 ID token verifies");
    assert_eq!(claims.audiences()[0].as_str(), "legacy");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_request_id() {
    let server = Server::start(
        Backend::Sqlite,
        &[("IDENTITY_LOG_FORMAT", "json"), ("IDENTITY_LOG", "debug")],
    )
    .await;
    let r = reqwest::get(server.url("/.well-known/openid-configuration"))
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let mut found = None;
    for _ in 0..50 {
        found = server
            .log()
            .lines()
            .filter(|l| l.starts_with('{'))
            .find(|l| l.contains(&id) && l.contains("request done"))
            .map(str::to_owned);
        if found.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let line = found.expect("a JSON log line with the request id");
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(v["fields"]["status"], 200);
    assert!(!line.contains("client_secret"));
}
