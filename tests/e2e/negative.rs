//! One test per rule of the foundation, against the real server over HTTP.

use identity_core::storage::Backend;
use std::time::Duration;

use crate::util::*;

#[tokio::test(flavor = "multi_thread")]
async fn unregistered_redirect_uri_is_an_error_page_not_a_redirect() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (_, challenge) = pkce();
    let url = auth_url(&server, &challenge, &[]).replace("localhost%3A8081", "evil.example");
    let r = browser().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("redirect_uri is not registered"));
}

async fn redirected_error(server: &Server, url: &str) -> (String, url::Url) {
    let r = browser().get(url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let back = url::Url::parse(&location(&r)).unwrap();
    assert!(back.as_str().starts_with(REDIRECT_URI));
    assert_eq!(query(&back, "iss").as_deref(), Some(server.base.as_str()));
    assert_eq!(query(&back, "state").as_deref(), Some("state-123"));
    (query(&back, "error").unwrap_or_default(), back)
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_and_plain_pkce_refused() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (_, challenge) = pkce();
    let missing = auth_url(&server, &challenge, &[]).replace(
        &format!("&code_challenge={challenge}&code_challenge_method=S256"),
        "",
    );
    assert_eq!(
        redirected_error(&server, &missing).await.0,
        "invalid_request"
    );
    let plain = auth_url(&server, &challenge, &[]).replace("method=S256", "method=plain");
    assert_eq!(redirected_error(&server, &plain).await.0, "invalid_request");
    let token =
        auth_url(&server, &challenge, &[]).replace("response_type=code", "response_type=token");
    assert_eq!(
        redirected_error(&server, &token).await.0,
        "unsupported_response_type"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_verifier_refused() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (code, _) = fresh_code(&server).await;
    let (other, _) = pkce();
    let (status, body) = exchange(&server, &code, &other).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reused_code_refused_and_first_tokens_revoked() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (code, verifier) = fresh_code(&server).await;
    let (status, first) = exchange(&server, &code, &verifier).await;
    assert_eq!(status, 200, "{first}");
    let at = first["access_token"].as_str().unwrap().to_owned();
    let ok = http()
        .get(server.url("/userinfo"))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let (status, again) = exchange(&server, &code, &verifier).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let revoked = http()
        .get(server.url("/userinfo"))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);
    let challenge = revoked.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    // The resources take DPoP-bound tokens too (the registration and audit APIs take only
    // those), so the answer names that scheme and its algorithms (RFC 9449 §7.1).
    assert!(
        challenge.contains(r#"DPoP error="invalid_token", algs="ES256 PS256 EdDSA""#),
        "{challenge}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_code_refused() {
    let server = Server::start(Backend::Sqlite, &[("IDENTITY_CODE_SECONDS", "1")]).await;
    let (code, verifier) = fresh_code(&server).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = exchange(&server, &code, &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

async fn refresh(server: &Server, token: &str) -> (u16, serde_json::Value) {
    let r = http()
        .post(server.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn reused_refresh_token_revokes_family() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (code, verifier) = fresh_code(&server).await;
    let (_, first) = exchange(&server, &code, &verifier).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = refresh(&server, &r1).await;
    assert_eq!(status, 200, "client_secret_post works: {second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    let (status, reuse) = refresh(&server, &r1).await;
    assert_eq!(
        (status, reuse["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = refresh(&server, &r2).await;
    assert_eq!(status, 400, "the whole family is revoked");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_client_secret_refused() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let r = http()
        .post(server.url("/token"))
        .basic_auth(CLIENT_ID, Some("not-the-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
}

async fn failed_login(server: &Server, user: &str, pw: &str) -> (u16, String) {
    let (_, challenge) = pkce();
    let b = browser();
    let (html, act) = open_login(server, &b, &auth_url(server, &challenge, &[])).await;
    let r = post_login(server, &b, &html, &act, user, pw).await;
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_user_answered_like_wrong_password() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (s1, wrong_pw) = failed_login(&server, USERNAME, "not-the-password").await;
    let (s2, unknown) = failed_login(&server, "nobody-here", "not-the-password").await;
    assert_eq!(s1, 401);
    assert_eq!(s1, s2);
    let strip = |html: &str, user: &str| {
        // The page differs only by the echoed username, its pending request and its token.
        let html = html.replace(user, "USER");
        let request = action(&html).split('/').nth(2).unwrap().to_owned();
        let html = html.replace(&request, "REQUEST");
        html.replace(&hidden(&html, "csrf"), "CSRF")
    };
    assert_eq!(strip(&wrong_pw, USERNAME), strip(&unknown, "nobody-here"));
    assert!(wrong_pw.contains("Wrong username or password."));
}

#[tokio::test(flavor = "multi_thread")]
async fn lockout_after_consecutive_failures() {
    let server = Server::start(Backend::Sqlite, &[("IDENTITY_LOCKOUT_AFTER", "6")]).await;
    // Open every login page first, so that the attempts themselves follow each other
    // closely and the test does not depend on how fast a loaded machine serves pages.
    let mut pages = Vec::new();
    for _ in 0..8 {
        let (_, challenge) = pkce();
        let b = browser();
        let (html, act) = open_login(&server, &b, &auth_url(&server, &challenge, &[])).await;
        pages.push((b, html, act));
    }
    let mut pages = pages.into_iter();
    let mut attempt = |pw: &'static str| {
        let (b, html, act) = pages.next().unwrap();
        let server = &server;
        async move {
            let r = post_login(server, &b, &html, &act, USERNAME, pw).await;
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    for _ in 0..5 {
        assert_eq!(attempt("not-the-password").await.0, 401);
    }
    // The sixth try comes before the two-second delay has passed.
    let (status, page) = attempt(PASSWORD).await;
    assert_eq!(status, 429, "{page}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(attempt("not-the-password").await.0, 401);
    // Now locked: even the right password is refused.
    let (status, page) = attempt(PASSWORD).await;
    assert_eq!(status, 403);
    assert!(page.contains("locked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn hashing_pool_full_answers_503_at_once() {
    // One worker, no queue, and an expensive hash: concurrent logins overflow the pool.
    let server = Server::start(
        Backend::Sqlite,
        &[
            ("IDENTITY_HASH_WORKERS", "1"),
            ("IDENTITY_HASH_QUEUE", "0"),
            ("IDENTITY_ARGON2_MEMORY_KIB", "262144"),
        ],
    )
    .await;
    let mut forms = Vec::new();
    for _ in 0..6 {
        let (_, challenge) = pkce();
        let b = browser();
        let (html, act) = open_login(&server, &b, &auth_url(&server, &challenge, &[])).await;
        forms.push((b, html, act));
    }
    let mut tasks = Vec::new();
    for (i, (b, html, act)) in forms.into_iter().enumerate() {
        let url = server.url(&act);
        tasks.push(tokio::spawn(async move {
            let user = format!("flood-{i}");
            let r = b
                .post(url)
                .form(&[
                    ("csrf", hidden(&html, "csrf").as_str()),
                    ("username", &user),
                    ("password", "whatever-password"),
                ])
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").is_some(),
            )
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert!(
        results.iter().any(|(s, retry)| *s == 503 && *retry),
        "{results:?}"
    );
    assert!(results.iter().any(|(s, _)| *s == 401), "{results:?}");
    assert!(
        results.iter().all(|(s, _)| *s == 503 || *s == 401),
        "{results:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn interaction_bound_to_its_browser_and_csrf_checked() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (_, challenge) = pkce();
    let b = browser();
    let (html, act) = open_login(&server, &b, &auth_url(&server, &challenge, &[])).await;
    // Another browser cannot use the pending request.
    let r = post_login(&server, &browser(), &html, &act, USERNAME, PASSWORD).await;
    assert_eq!(r.status(), 400);
    // The right browser without the CSRF token is refused too.
    let r = b
        .post(server.url(&act))
        .form(&[("username", USERNAME), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Sessions: __Host- (Secure, Path=/, no Domain), HttpOnly, SameSite=Lax, replaced at
    // every login.
    let r = post_login(&server, &b, &html, &act, USERNAME, PASSWORD).await;
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("__Host-idp_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.split("; ").any(|a| a == "Secure")
            && cookie.split("; ").any(|a| a == "Path=/")
            && !cookie.contains("Domain"),
        "{cookie}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn account_page_lists_and_withdraws_consent_and_logout_ends_session() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (_, challenge) = pkce();
    let b = browser();
    login_and_consent(
        &server,
        &b,
        &auth_url(&server, &challenge, &[]),
        USERNAME,
        PASSWORD,
    )
    .await;
    let page = b
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Demo e-Service"), "{page}");
    let csrf = hidden(&page, "csrf");
    let r = b
        .post(server.url("/account/consents/withdraw"))
        .form(&[("csrf", csrf.as_str()), ("client_id", CLIENT_ID)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let page = b
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Demo e-Service"));
    let r = b
        .post(server.url("/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The back button cannot resume: the account page asks to log in again.
    let page = b
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"password\""));
    // prompt=none now answers login_required.
    let (_, challenge) = pkce();
    let r = b
        .get(auth_url(&server, &challenge, &[("prompt", "none")]))
        .send()
        .await
        .unwrap();
    let back = url::Url::parse(&location(&r)).unwrap();
    assert_eq!(query(&back, "error").as_deref(), Some("login_required"));
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_ends_the_grant_and_introspection_says_so() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (code, verifier) = fresh_code(&server).await;
    let (_, tokens) = exchange(&server, &code, &verifier).await;
    let at = tokens["access_token"].as_str().unwrap();
    let introspect = || async {
        let r = http()
            .post(server.url("/introspect"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("token", at)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.unwrap()["active"].clone()
    };
    assert_eq!(introspect().await, true);
    let r = http()
        .post(server.url("/revoke"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("token", tokens["refresh_token"].as_str().unwrap()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(introspect().await, false);
    let r = http()
        .get(server.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
