//! Malformed, missing, repeated and oversized parameters on every endpoint: always a 4xx
//! with the right error code, never a 5xx.

use identity_core::storage::Backend;
use reqwest::Method;

use crate::util::*;

struct Case {
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    basic: bool,
    /// The OAuth error code expected, for JSON endpoints.
    error: Option<&'static str>,
}

fn case(
    method: Method,
    path: &str,
    body: Option<&[u8]>,
    basic: bool,
    error: Option<&'static str>,
) -> Case {
    Case {
        method,
        path: path.to_owned(),
        body: body.map(<[u8]>::to_vec),
        basic,
        error,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_4xx_with_error_codes_sqlite() {
    bad_input_gets_4xx_with_error_codes(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
async fn bad_input_gets_4xx_with_error_codes_postgres() {
    bad_input_gets_4xx_with_error_codes(Backend::Postgres).await
}

async fn bad_input_gets_4xx_with_error_codes(backend: Backend) {
    let server = Server::start(backend, &[]).await;
    let big = vec![b'a'; 200 * 1024];
    let long_query = format!("/authorize?client_id={}", "x".repeat(6000));
    let mut oversized_form = b"grant_type=client_credentials&scope=".to_vec();
    oversized_form.extend_from_slice(&big);
    let garbage: &[u8] = &[0xff, 0xfe, b'%', b'%', b'=', b'&', 0x00, b'='];
    let cases = vec![
        case(Method::GET, "/authorize", None, false, None),
        case(Method::GET, "/authorize?client_id=demo-eservice", None, false, None),
        case(Method::GET, "/authorize?client_id=demo-eservice&client_id=x", None, false, None),
        case(Method::GET, "/authorize?client_id=unknown&redirect_uri=http://localhost:8081/callback", None, false, None),
        case(Method::GET, "/authorize?%%%&&==&client_id=%ZZ", None, false, None),
        case(Method::GET, &long_query, None, false, None),
        case(Method::POST, "/authorize", Some(garbage), false, None),
        // NUL and other control characters: PostgreSQL refuses NUL in text outright.
        case(Method::GET, "/authorize?client_id=%00", None, false, None),
        case(Method::GET, "/authorize?client_id=demo-eservice&redirect_uri=http%3A%2F%2Flocalhost%3A8081%2Fcallback&response_type=code&scope=openid&state=a%00b", None, false, None),
        case(Method::POST, "/token", Some(b"grant_type=client_credentials&client_id=a%00&client_secret=b"), false, Some("invalid_request")),
        case(Method::POST, "/token", Some(b"grant_type=refresh_token&refresh_token=%00"), true, Some("invalid_request")),
        case(Method::POST, "/token", None, false, Some("invalid_client")),
        case(Method::POST, "/token", Some(b"grant_type=authorization_code"), false, Some("invalid_client")),
        case(Method::POST, "/token", Some(b""), true, Some("invalid_request")),
        case(Method::POST, "/token", Some(b"grant_type=password&username=a&password=b"), true, Some("unsupported_grant_type")),
        case(Method::POST, "/token", Some(b"grant_type=client_credentials&grant_type=client_credentials"), true, Some("invalid_request")),
        case(Method::POST, "/token", Some(b"grant_type=authorization_code"), true, Some("invalid_request")),
        case(Method::POST, "/token", Some(b"grant_type=authorization_code&code=x&redirect_uri=y"), true, Some("invalid_request")),
        case(Method::POST, "/token", Some(b"grant_type=authorization_code&code=nope&redirect_uri=http://localhost:8081/callback&code_verifier=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), true, Some("invalid_grant")),
        case(Method::POST, "/token", Some(b"grant_type=refresh_token"), true, Some("invalid_request")),
        case(Method::POST, "/token", Some(b"grant_type=refresh_token&refresh_token=forged"), true, Some("invalid_grant")),
        case(Method::POST, "/token", Some(b"grant_type=client_credentials&scope=admin"), true, Some("invalid_scope")),
        case(Method::POST, "/token", Some(b"grant_type=client_credentials&client_secret=x"), true, Some("invalid_request")),
        case(Method::POST, "/token", Some(garbage), true, Some("invalid_request")),
        case(Method::POST, "/token", Some(&oversized_form), true, None),
        case(Method::GET, "/token", None, false, None),
        case(Method::POST, "/revoke", Some(b"token=x"), false, Some("invalid_client")),
        case(Method::POST, "/revoke", Some(b""), true, Some("invalid_request")),
        case(Method::POST, "/revoke", Some(b"token=a&token=b"), true, Some("invalid_request")),
        case(Method::POST, "/introspect", Some(b"token=x"), false, Some("invalid_client")),
        case(Method::POST, "/introspect", Some(b"token=%00"), true, Some("invalid_request")),
        case(Method::POST, "/introspect", Some(&oversized_form), true, None),
        case(Method::GET, "/userinfo", None, false, Some("invalid_token")),
        case(Method::POST, "/userinfo", Some(b"access_token=not.a.jwt"), false, Some("invalid_token")),
        case(Method::POST, "/userinfo", Some(&big), false, None),
        case(Method::GET, "/interaction/unknown", None, false, None),
        case(Method::POST, "/interaction/unknown/login", Some(b"username=a&password=b"), false, None),
        case(Method::POST, "/interaction/unknown/consent", Some(b"decision=allow"), false, None),
        case(Method::POST, "/account/login", Some(b"username=demo&password=x"), false, None),
        case(Method::POST, "/account/consents/withdraw", Some(b"client_id=demo-eservice"), false, None),
        case(Method::POST, "/logout", Some(garbage), false, None),
        case(Method::POST, "/webauthn/login/start", Some(garbage), false, Some("invalid_request")),
        case(Method::POST, "/webauthn/login/start", Some(b"username=a%00"), false, Some("invalid_request")),
        case(Method::POST, "/interaction/unknown/passkey", Some(b"ceremony=x&credential=%7B"), false, None),
        case(Method::POST, "/account/passkey-login", Some(b"ceremony=x&credential=%7B"), false, None),
        case(Method::POST, "/account/passkeys/start", Some(b""), false, Some("invalid_request")),
        case(Method::POST, "/account/passkeys", Some(b"ceremony=x&credential=%7B&name=a"), false, None),
        case(Method::POST, "/account/passkeys/rename", Some(b"id=x&name=a"), false, None),
        case(Method::POST, "/account/passkeys/remove", Some(b"id=x"), false, None),
        case(Method::GET, "/lang/klingon", None, false, None),
        case(Method::POST, "/.well-known/openid-configuration", None, false, None),
        case(Method::DELETE, "/jwks", None, false, None),
    ];
    let client = http();
    for c in cases {
        let mut req = client.request(c.method.clone(), server.url(&c.path));
        if c.basic {
            req = req.basic_auth(CLIENT_ID, Some(CLIENT_SECRET));
        }
        if let Some(body) = c.body {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let label = format!("{} {}", c.method, &c.path[..c.path.len().min(80)]);
        assert!(status.is_client_error(), "{label}: {status}");
        if let Some(code) = c.error {
            let body: serde_json::Value = r
                .json()
                .await
                .unwrap_or_else(|e| panic!("{label}: not JSON: {e}"));
            assert_eq!(body["error"], code, "{label}: {body}");
            assert!(body["error_description"].is_string(), "{label}");
        }
    }
    // A bearer token in the header and in the body at once is refused.
    let r = client
        .post(server.url("/userinfo"))
        .bearer_auth("a")
        .form(&[("access_token", "b")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Passkey answers that are malformed, for no ceremony, or for a spent one: a 4xx page
/// that says why, and no passkey stored.
#[tokio::test(flavor = "multi_thread")]
async fn bad_passkey_answers_refused_and_nothing_stored() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let b = browser();
    let page = b.get(server.url("/account")).send().await.unwrap();
    let html = page.text().await.unwrap();
    let r = post_login(&server, &b, &html, "/account/login", USERNAME, PASSWORD).await;
    assert_eq!(r.status(), 303);
    let account = b
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&account, "csrf");
    let begun: serde_json::Value = b
        .post(server.url("/account/passkeys/start"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let handle = begun["ceremony"].as_str().unwrap().to_owned();
    assert!(begun["publicKey"]["challenge"].is_string());
    for (credential, ceremony, says) in [
        ("{", handle.as_str(), "malformed"),
        ("{\"id\":\"AA\",\"rawId\":\"AA\",\"type\":\"public-key\",\"response\":{\"attestationObject\":\"AA\",\"clientDataJSON\":\"AA\"},\"extensions\":{}}", handle.as_str(), "not accepted"),
        // The ceremony was spent by the answer before: a second one is refused as used.
        ("{\"id\":\"AA\",\"rawId\":\"AA\",\"type\":\"public-key\",\"response\":{\"attestationObject\":\"AA\",\"clientDataJSON\":\"AA\"},\"extensions\":{}}", handle.as_str(), "already used"),
        ("{\"id\":\"AA\",\"rawId\":\"AA\",\"type\":\"public-key\",\"response\":{\"attestationObject\":\"AA\",\"clientDataJSON\":\"AA\"},\"extensions\":{}}", "no-such-ceremony", "already used"),
    ] {
        let r = b
            .post(server.url("/account/passkeys"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("ceremony", ceremony),
                ("credential", credential),
                ("name", "Phone"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{credential}");
        let body = r.text().await.unwrap();
        assert!(body.contains(says), "{says}: {body}");
    }
    let account = b
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(account.contains("id=\"no-passkeys\""), "nothing stored");

    // A login answer for an unknown credential: the login page again, with the reason.
    let anon = browser();
    let html = anon
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let begun: serde_json::Value = anon
        .post(server.url("/webauthn/login/start"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = anon
        .post(server.url("/account/passkey-login"))
        .form(&[
            ("csrf", hidden(&html, "csrf").as_str()),
            ("ceremony", begun["ceremony"].as_str().unwrap()),
            ("credential", "{\"id\":\"AAAA\",\"rawId\":\"AAAA\",\"type\":\"public-key\",\"response\":{\"authenticatorData\":\"AA\",\"clientDataJSON\":\"AA\",\"signature\":\"AA\",\"userHandle\":null},\"extensions\":{}}"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("not registered"), "{body}");
    assert!(
        body.contains("id=\"password-form\""),
        "the form is offered again"
    );

    // The language switch only goes back to this site.
    let r = anon
        .get(server.url("/lang/zh-Hant?back=//evil.example/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/account");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
