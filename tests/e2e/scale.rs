//! Two replicas on one PostgreSQL database, as a government scales out: every piece of
//! state is in the database, so no request needs to come back to the replica that began it.

use identity_core::storage::Backend;
use serde_json::Value;
use std::time::Duration;

use crate::util::*;

fn kid_of(jwt: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn client_credentials(server: &Server) -> String {
    crate::enrolment::client_token(server, CLIENT_ID, CLIENT_SECRET, "").await
}

async fn post(server: &Server, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = http()
        .post(server.url(path))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
async fn two_replicas_share_logins_tokens_keys_and_throttling() {
    let a = Server::start(Backend::Postgres, &[]).await;
    let b = Server::start_on(&a, &[]).await;

    // A login begun on A (the authorization request, the login page) finishes on B (the
    // password, the consent), and its code is redeemed on A.
    let (verifier, challenge) = pkce();
    let browser = browser();
    let (html, act) = open_login(&a, &browser, &auth_url(&a, &challenge, &[])).await;
    let r = post_login(&b, &browser, &html, &act, USERNAME, PASSWORD).await;
    assert_eq!(r.status(), 303, "B accepts the login A began");
    let back = consent_until_redirect(&b, &browser, &location(&r)).await;
    let code = query(&back, "code").unwrap();
    let (status, tokens) = exchange(&a, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");

    // The tokens from A are refreshed on B, introspected on A, revoked on B.
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, renewed) = post(
        &b,
        "/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let at = renewed["access_token"].as_str().unwrap().to_owned();
    let (_, info) = post(&a, "/introspect", &[("token", &at)]).await;
    assert_eq!(info["active"], true);
    let rotated = renewed["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = post(&b, "/revoke", &[("token", &rotated)]).await;
    assert_eq!(status, 200);
    let (_, info) = post(&a, "/introspect", &[("token", &at)]).await;
    assert_eq!(info["active"], false, "revoked on B, seen on A");
    let (status, _) = post(
        &a,
        "/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &rotated)],
    )
    .await;
    assert_eq!(status, 400, "the revoked grant cannot be refreshed on A");
    // The first refresh token was rotated away on B; using it again on A is reuse.
    let (status, body) = post(
        &a,
        "/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");

    // A key rotated through one (an operator's command on the shared database) signs on
    // both, once their key caches expire.
    let before = kid_of(&client_credentials(&a).await);
    assert_eq!(before, kid_of(&client_credentials(&b).await));
    a.cli(&["keys", "rotate", "--alg", "ES256", "--now"]);
    tokio::time::sleep(Duration::from_secs(11)).await;
    let on_a = kid_of(&client_credentials(&a).await);
    let on_b = kid_of(&client_credentials(&b).await);
    assert_ne!(on_a, before, "rotated");
    assert_eq!(on_a, on_b, "both sign with the new key");
    for s in [&a, &b] {
        let jwks = http()
            .get(s.url("/jwks"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(jwks.contains(&on_a) && jwks.contains(&before), "{jwks}");
    }

    // Failed passwords count on both: five free failures spread over A and B, then the
    // next attempt, on either, must wait.
    let mut pages = Vec::new();
    for i in 0..6 {
        let (_, challenge) = pkce();
        let br = crate::util::browser();
        let s = if i % 2 == 0 { &a } else { &b };
        let (html, act) = open_login(s, &br, &auth_url(s, &challenge, &[])).await;
        pages.push((s, br, html, act));
    }
    let last = pages.pop().unwrap();
    for (s, br, html, act) in &pages {
        let r = post_login(s, br, html, act, USERNAME, "not-the-password").await;
        assert_eq!(r.status(), 401);
    }
    let (s, br, html, act) = last;
    let r = post_login(s, &br, &html, &act, USERNAME, PASSWORD).await;
    assert_eq!(
        r.status(),
        429,
        "the sixth attempt waits, whichever replica"
    );
}
