//! The signing API's refusals over HTTP. The successful path (a passkey approval in a real
//! browser, verified by the SDK and by openssl) is in `browser.rs`; the core's tests run it
//! with a software passkey on both backends.

use identity_core::storage::Backend;
use serde_json::{json, Value};

use crate::enrolment::client_token;
use crate::util::*;

#[tokio::test(flavor = "multi_thread")]
async fn signing_api_refusals() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    // The demo citizen logs in to the demo e-service, which so learns their subject.
    let (verifier, challenge) = pkce();
    let back = login_and_consent(
        &server,
        &browser(),
        &auth_url(&server, &challenge, &[]),
        USERNAME,
        PASSWORD,
    )
    .await;
    let (status, tokens) = exchange(&server, &query(&back, "code").unwrap(), &verifier).await;
    assert_eq!(status, 200);
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let payload = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let subject = claims["sub"].as_str().unwrap().to_owned();

    let token = client_token(&server, CLIENT_ID, CLIENT_SECRET, "signing").await;
    let ask = |body: Value, bearer: Option<String>| {
        let server = &server;
        async move {
            let mut r = http().post(server.url("/signing/requests")).json(&body);
            if let Some(t) = bearer {
                r = r.bearer_auth(t);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let good = json!({
        "subject": subject,
        "hash_alg": "SHA-256",
        "document_hash": URL_SAFE_NO_PAD.encode([7u8; 32]),
        "document_name": "Form.pdf",
    });
    // No token; a token without the signing scope.
    assert_eq!(ask(good.clone(), None).await.0, 401);
    let auditor = client_token(&server, "demo-auditor", "demo-auditor-secret", "audit").await;
    assert_eq!(ask(good.clone(), Some(auditor)).await.0, 403);
    // Bad bodies: a clear 400 with the reason.
    for (field, value, says) in [
        ("hash_alg", json!("MD5"), "hash_alg"),
        ("document_hash", json!("not base64!"), "base64url"),
        (
            "document_hash",
            json!(URL_SAFE_NO_PAD.encode([1u8; 20])),
            "32-byte",
        ),
        ("document_name", json!(""), "document_name"),
        ("subject", json!("unknown-subject"), "not a citizen known"),
        ("return_uri", json!("http://evil.example/x"), "https"),
    ] {
        let mut body = good.clone();
        body[field] = value;
        let (status, v) = ask(body, Some(token.clone())).await;
        assert_eq!(status, 400, "{field}: {v}");
        assert!(
            v["error_description"].as_str().unwrap().contains(says),
            "{field}: {v}"
        );
    }
    let (status, _) = ask(json!({"nonsense": true}), Some(token.clone())).await;
    assert_eq!(status, 400);
    // A citizen without a passkey cannot be asked: signing needs one.
    let (status, v) = ask(good.clone(), Some(token.clone())).await;
    assert_eq!(status, 400);
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("no passkey"),
        "{v}"
    );

    // Results and pages of requests that do not exist.
    let r = http()
        .get(server.url("/signing/requests/nope"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for path in ["/sign/nope", "/sign/nope/start"] {
        let req = if path.ends_with("start") {
            http().post(server.url(path))
        } else {
            http().get(server.url(path))
        };
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
    }
    let r = http()
        .post(server.url("/sign/nope/approve"))
        .form(&[("ceremony", "x"), ("credential", "{")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no CSRF token");
    // The CA is public, for e-services to pin.
    let pem = http()
        .get(server.url("/signing/ca"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
