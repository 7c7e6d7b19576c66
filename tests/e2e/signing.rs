//! The signing API's refusals over HTTP. The successful path (a passkey approval in a real
//! browser, verified by the SDK and by openssl) is in `browser.rs`; the core's tests run it
//! with a software passkey on both backends.

use identity_core::storage::Backend;
use serde_json::{json, Value};

use crate::enrolment::{client_token, SendAs};
use crate::util::*;
use identity_sdk::login::ClientKey;

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
    let auditor = crate::enrolment::service(
        &server,
        "demo-auditor",
        ClientKey::from_pem(crate::enrolment::AUDITOR_KEY).unwrap(),
        "audit",
    )
    .await;
    let r = http()
        .post(server.url("/signing/requests"))
        .json(&good)
        .send_as(&auditor)
        .await;
    assert_eq!(r.status(), 403);
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
        // A right-to-left override would make the name read as another file's.
        (
            "document_name",
            json!("invoice\u{202e}fdp.exe"),
            "printable",
        ),
        ("description", json!("pay \u{2066}999\u{2069}"), "printable"),
        ("subject", json!("unknown-subject"), "not a citizen known"),
        ("return_uri", json!("http://evil.example/x"), "https"),
        // Well-formed but not registered for the client: an open redirect, and a request
        // forged into the operator's network (issue 17).
        (
            "return_uri",
            json!("https://evil.example/x"),
            "not registered",
        ),
        (
            "return_uri",
            json!("http://localhost:8081/other"),
            "not registered",
        ),
        (
            "callback_uri",
            json!("https://10.0.0.1/admin"),
            "not registered",
        ),
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
    // A citizen without a passkey cannot be asked: signing needs one. (The registered
    // return_uri passes its check and meets this one.)
    let mut registered = good.clone();
    registered["return_uri"] = json!("http://localhost:8081/");
    for body in [good.clone(), registered.clone()] {
        let (status, v) = ask(body, Some(token.clone())).await;
        assert_eq!(status, 400);
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .contains("no passkey"),
            "{v}"
        );
    }
    // An operator replaces the registered URIs (a client registered before they were
    // required): the new one passes, the old one no longer does.
    server.cli(&[
        "client",
        "signing-uris",
        "demo-eservice",
        "--signing-return-uri",
        "https://eservice.example/back",
    ]);
    let mut moved = good.clone();
    moved["return_uri"] = json!("https://eservice.example/back");
    let (_, v) = ask(moved, Some(token.clone())).await;
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("no passkey"),
        "{v}"
    );
    let (status, v) = ask(registered, Some(token.clone())).await;
    assert_eq!(status, 400);
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("not registered"),
        "{v}"
    );
    let out = server.cli_output(&["client", "signing-uris", "no-such-client"]);
    assert!(!out.status.success());

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

/// The whole signing path over HTTP, driven by the SDK's signing client, with a software
/// passkey (webauthn-authenticator-rs) answering the real WebAuthn ceremonies in place of
/// the citizen's phone: register a passkey, ask, approve, wait, verify.
async fn signed_through_the_sdk(backend: Backend) {
    use identity_sdk::signing::{verify_signing_result, Expectations};
    use identity_sdk::signing_client::{ClientSecret, DocumentToSign, SigningClient, Status};
    let server = Server::start(backend, &[]).await;

    // The citizen logs in to the e-service (which so learns the subject) and, on the
    // account page, adds a passkey.
    let (verifier, challenge) = pkce();
    let b = browser();
    let back = login_and_consent(
        &server,
        &b,
        &auth_url(&server, &challenge, &[]),
        USERNAME,
        PASSWORD,
    )
    .await;
    let (_, tokens) = exchange(&server, &query(&back, "code").unwrap(), &verifier).await;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let payload = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let subject = serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut phone = add_soft_passkey(&server, &b).await;

    // The e-service asks through the SDK.
    let document = b"Application for a market stall licence\n";
    let digest = ring::digest::digest(&ring::digest::SHA256, document);
    let client = SigningClient::with_client_credentials(
        &server.base,
        CLIENT_ID,
        ClientSecret::new(CLIENT_SECRET),
    )
    .await
    .unwrap();
    let ca = client.ca_certificate().await.unwrap();
    let (callback_uri, seen) = crate::browser::callback_server_seeing();
    // The callback must be registered for the e-service: a second client of the same
    // department (so the same pairwise subject) registers this test's listener.
    let out = server.cli(&[
        "client",
        "add",
        "--name",
        "Stall licensing",
        "--department",
        "Digital Policy Office",
        "--redirect-uri",
        REDIRECT_URI,
        "--scopes",
        "signing",
        "--signing-callback-uri",
        &callback_uri,
    ]);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .to_owned()
    };
    let client = SigningClient::with_client_credentials(
        &server.base,
        &field("client_id: "),
        ClientSecret::new(field("client_secret: ")),
    )
    .await
    .unwrap();
    let mut doc = DocumentToSign::sha256(&subject, digest.as_ref(), "Stall licence.pdf");
    doc.callback_uri = Some(callback_uri);
    let asked = client.ask(&doc).await.unwrap();
    assert!(matches!(
        client.status(&asked.request_id).await.unwrap(),
        Status::Pending
    ));
    // A forged callback claiming the request is signed changes nothing: the SDK asks the
    // service. One naming no well-formed request is refused before any call.
    let forged = json!({"request_id": asked.request_id, "state": "signed"}).to_string();
    let (_, status) = client.on_callback(forged.as_bytes()).await.unwrap();
    assert!(matches!(status, Status::Pending));
    for bad in [&b"not json"[..], br#"{"request_id":"../../token"}"#, b"{}"] {
        assert!(matches!(
            client.on_callback(bad).await,
            Err(identity_sdk::signing_client::ClientError::BadCallback)
        ));
    }

    // The citizen opens the approval page, sees the same code, and approves with the passkey.
    let (r, form) = approve_with(&server, &b, &mut phone, &asked.approval_url, &asked.code).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // The service POSTs to the callback; the SDK takes it from there and fetches the
    // result, which it then verifies all of it offline.
    let mut body = None;
    for _ in 0..100 {
        body = seen
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.strip_prefix("POST /callback ").map(str::to_owned));
        if body.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let body = body.expect("the service called back");
    let (id, status) = client.on_callback(body.as_bytes()).await.unwrap();
    assert_eq!(id, asked.request_id);
    let Status::Signed(result) = status else {
        panic!("not signed")
    };
    // Polling finds the same.
    assert!(matches!(
        client
            .wait(&asked.request_id, std::time::Duration::from_secs(30))
            .await
            .unwrap(),
        Status::Signed(_)
    ));
    let key_text = http()
        .get(server.url("/audit/key"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let audit_key = identity_sdk::audit::VerifierKey::parse(key_text.trim()).unwrap();
    // The passkey's key is a JWK (RFC 7517), not a library's own serialisation.
    let jwk = &result["evidence"]["public_key"];
    assert_eq!(
        (
            jwk["kty"].as_str(),
            jwk["crv"].as_str(),
            jwk["alg"].as_str()
        ),
        (Some("EC"), Some("P-256"), Some("ES256")),
        "{jwk}"
    );
    let verified = verify_signing_result(
        &result,
        &Expectations {
            request_id: &asked.request_id,
            document_digest: digest.as_ref(),
            ca_certificate: &ca,
            subject: &subject,
            origin: &server.base,
            audit_key: &audit_key,
        },
    )
    .unwrap();
    assert_eq!(verified.signature.subject_id, subject);
    // A replay of the same approval is refused with a clear state.
    let approve = format!("/sign/{}/approve", asked.request_id);
    let r = b
        .post(server.url(&approve))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_through_the_sdk_sqlite() {
    signed_through_the_sdk(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
async fn signed_through_the_sdk_postgres() {
    signed_through_the_sdk(Backend::Postgres).await
}

/// Registers a software passkey (webauthn-authenticator-rs) for the citizen logged in with
/// `b`, on the account page, as a phone would.
pub async fn add_soft_passkey(
    server: &Server,
    b: &reqwest::Client,
) -> webauthn_authenticator_rs::softpasskey::SoftPasskey {
    use webauthn_authenticator_rs::WebauthnAuthenticator;
    let mut phone = webauthn_authenticator_rs::softpasskey::SoftPasskey::new(true);
    let origin = url::Url::parse(&server.base).unwrap();
    let account = b
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&account, "csrf");
    let begun: Value = b
        .post(server.url("/account/passkeys/start"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let options: webauthn_rs::prelude::CreationChallengeResponse =
        serde_json::from_value(begun.clone()).unwrap();
    let credential = phone.do_registration(origin, options).unwrap();
    let r = b
        .post(server.url("/account/passkeys"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("ceremony", begun["ceremony"].as_str().unwrap()),
            (
                "credential",
                serde_json::to_string(&credential).unwrap().as_str(),
            ),
            ("name", "Phone"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    phone
}

/// The citizen opens an approval page, checks the code, and approves with the software
/// passkey. Returns the answer and the form that was posted (to replay it).
pub async fn approve_with(
    server: &Server,
    b: &reqwest::Client,
    phone: &mut webauthn_authenticator_rs::softpasskey::SoftPasskey,
    approval_url: &str,
    code: &str,
) -> (reqwest::Response, Vec<(String, String)>) {
    use webauthn_authenticator_rs::WebauthnAuthenticator;
    let page = b
        .get(approval_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(code), "the page shows the e-service's code");
    let path = url::Url::parse(approval_url).unwrap().path().to_owned();
    let begun: Value = b
        .post(server.url(&format!("{path}/start")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let options: webauthn_rs::prelude::RequestChallengeResponse =
        serde_json::from_value(begun.clone()).unwrap();
    let origin = url::Url::parse(&server.base).unwrap();
    let assertion = phone.do_authentication(origin, options).unwrap();
    let form = vec![
        ("csrf".to_owned(), hidden(&page, "csrf")),
        (
            "ceremony".to_owned(),
            begun["ceremony"].as_str().unwrap().to_owned(),
        ),
        (
            "credential".to_owned(),
            serde_json::to_string(&assertion).unwrap(),
        ),
    ];
    let r = b
        .post(server.url(&format!("{path}/approve")))
        .form(&form)
        .send()
        .await
        .unwrap();
    (r, form)
}
