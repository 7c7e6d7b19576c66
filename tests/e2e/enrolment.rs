//! The registration officer's API and the citizen's activation pages, against the real
//! server: enrol, activate with the code and the date of birth, set a password, suspend,
//! recover; and every refusal an officer or a guesser meets.

use identity_core::storage::Backend;
use serde_json::{json, Value};

use identity_sdk::login::ClientKey;
use identity_sdk::service::ServiceClient;

use crate::util::*;

pub const OFFICE_ID: &str = "demo-registration";
/// The demo registration office's private key, published with the demo data.
pub const OFFICE_KEY: &str = include_str!("../../seeds/keys/demo-registration.pem");
/// The demo auditor's.
pub const AUDITOR_KEY: &str = include_str!("../../seeds/keys/demo-auditor.pem");

/// A back-end client of the service's APIs by `private_key_jwt` and DPoP, with its first
/// token already fetched.
pub async fn service(server: &Server, id: &str, key: ClientKey, scope: &str) -> ServiceClient {
    let c = ServiceClient::connect(&server.base, id, key, scope)
        .await
        .unwrap();
    c.authenticate().await.unwrap();
    c
}

/// The demo registration office's system.
pub async fn office(server: &Server) -> ServiceClient {
    let key = ClientKey::from_pem(OFFICE_KEY).unwrap();
    service(server, OFFICE_ID, key, "registration").await
}

/// Registers a registration client with the public keys `jwks` on the command line;
/// returns its id.
pub fn register_office(server: &Server, id: &str, jwks: &str) -> String {
    let dir = identity_core::storage::testing::tempfile_guard::Dir::new();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks).unwrap();
    let jwks = &file;
    let out = server.cli(&[
        "client",
        "add",
        "--id",
        id,
        "--name",
        "Counter",
        "--department",
        "Immigration Department",
        "--scopes",
        "registration",
        "--jwks",
        jwks.to_str().unwrap(),
    ]);
    assert!(out.contains("private_key_jwt"), "{out}");
    id.to_owned()
}

/// Sending a request as a back-end client: its DPoP-bound token and a proof for the
/// request go with it.
pub trait SendAs {
    fn send_as(
        self,
        client: &ServiceClient,
    ) -> impl std::future::Future<Output = reqwest::Response> + Send;
}

impl SendAs for reqwest::RequestBuilder {
    async fn send_as(self, client: &ServiceClient) -> reqwest::Response {
        client.send(self).await.unwrap()
    }
}

/// An access token of a client by client credentials, for one scope.
pub async fn client_token(server: &Server, id: &str, secret: &str, scope: &str) -> String {
    let mut form = vec![("grant_type", "client_credentials")];
    if !scope.is_empty() {
        form.push(("scope", scope));
    }
    let r: Value = http()
        .post(server.url("/token"))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().expect("a token").to_owned()
}

pub fn citizen(username: &str, doc: &str) -> Value {
    json!({
        "username": username,
        "name_en": "WONG Ka Yan",
        "name_zh": "黃嘉欣",
        "date_of_birth": "1990-05-17",
        "gender": "female",
        "id_document": doc,
        "email": "wong@example.hk",
    })
}

/// Enrols a citizen through the API; returns the citizen id and the activation link.
pub async fn enrol(server: &Server, office: &ServiceClient, body: &Value) -> (String, String) {
    let r = http()
        .post(server.url("/registration/citizens"))
        .header("officer", "officer-1")
        .json(body)
        .send_as(office)
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let link = v["activation"]["url"].as_str().unwrap().to_owned();
    assert!(link.starts_with(&server.url("/activate?code=")), "{link}");
    assert!(v["activation"]["qr_svg"].as_str().unwrap().contains("<svg"));
    (v["citizen_id"].as_str().unwrap().to_owned(), link)
}

async fn post_activation(
    b: &reqwest::Client,
    server: &Server,
    link: &str,
    dob: &str,
) -> reqwest::Response {
    let page = b.get(link).send().await.unwrap().text().await.unwrap();
    let code = query(&url::Url::parse(link).unwrap(), "code").unwrap();
    assert!(
        page.contains(&format!("value=\"{code}\"")),
        "the link fills in the code"
    );
    b.post(server.url("/activate"))
        .form(&[
            ("csrf", hidden(&page, "csrf").as_str()),
            ("code", code.as_str()),
            ("date_of_birth", dob),
        ])
        .send()
        .await
        .unwrap()
}

async fn enrolment_path(backend: Backend) {
    let server = Server::start(backend, &[]).await;
    let office = office(&server).await;
    let (id, link) = enrol(&server, &office, &citizen("wong", "A123456(7)")).await;

    // The officer's view: the document number masked, the account pending.
    let record: Value = http()
        .get(server.url(&format!("/registration/citizens/{id}")))
        .header("officer", "officer-1")
        .send_as(&office)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(record["id_document"], "A1*****7");
    assert_eq!(record["status"], "pending");

    // A wrong date of birth: the page again with the reason, nothing activated.
    let b = browser();
    let r = post_activation(&b, &server, &link, "1990-05-18").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("date of birth is wrong"));
    let r = post_activation(&b, &server, &link, "1990-05-17").await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/account");
    let account = b
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        account.contains("Account activated"),
        "the security events show it"
    );
    // And who read the record: the office's credential and the officer it named.
    assert!(
        account.contains("Your record viewed by an officer: demo-registration/officer-1"),
        "{account}"
    );
    // Used once.
    let again = post_activation(&browser(), &server, &link, "1990-05-17").await;
    assert_eq!(again.status(), 400);

    // A password on the account page, then a login with it.
    let r = b
        .post(server.url("/account/password"))
        .form(&[
            ("csrf", hidden(&account, "csrf").as_str()),
            ("new_password", "Sai-Kung-Country-Park-88"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (_, challenge) = pkce();
    let back = login_and_consent(
        &server,
        &browser(),
        &auth_url(&server, &challenge, &[]),
        "wong",
        "Sai-Kung-Country-Park-88",
    )
    .await;
    assert!(query(&back, "code").is_some());

    // Suspended: the session ends and logins are refused; reactivated: they work again.
    let status = |s: &'static str| {
        let (server, office, id) = (&server, &office, &id);
        async move {
            http()
                .post(server.url(&format!("/registration/citizens/{id}/status")))
                .header("officer", "officer-1")
                .json(&json!({ "status": s }))
                .send_as(office)
                .await
                .status()
        }
    };
    assert_eq!(status("suspended").await, 204);
    let page = b
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"password-form\""),
        "logged out by the suspension"
    );
    let (_, challenge) = pkce();
    let (html, act) = open_login(&server, &browser(), &auth_url(&server, &challenge, &[])).await;
    let r = post_login(
        &server,
        &browser(),
        &html,
        &act,
        "wong",
        "Sai-Kung-Country-Park-88",
    )
    .await;
    assert!(r.status().is_client_error());
    assert_eq!(status("active").await, 204);

    // Recovery takes two officers: one asks, the same one cannot approve, a second does;
    // then a new code; the old link stays spent.
    let r = http()
        .post(server.url(&format!("/registration/citizens/{id}/recovery")))
        .header("officer", "officer-1")
        .json(&json!({ "remove_passkeys": true }))
        .send_as(&office)
        .await;
    assert_eq!(r.status(), 202);
    let asked: Value = r.json().await.unwrap();
    assert!(
        asked.get("activation").is_none(),
        "no code before the approval"
    );
    let approval = server.url(asked["approval"].as_str().unwrap());
    let approve = |by, officer| {
        http()
            .post(&approval)
            .header("officer", officer)
            .send_as(by)
    };
    // Through the same credential, no officer it names can approve: only its word.
    for officer in ["officer-1", "officer-2"] {
        assert_eq!(approve(&office, officer).await.status(), 400);
    }
    // A second officer has a credential of their own (another registration client, with
    // its own key).
    let key = ClientKey::generate_named_by_thumbprint();
    let second = register_office(&server, "counter-2", &key.jwks());
    let second = service(&server, &second, key, "registration").await;
    let r: Value = approve(&second, "officer-2").await.json().await.unwrap();
    let recovery = r["activation"]["url"].as_str().unwrap().to_owned();
    let r = post_activation(&browser(), &server, &recovery, "1990-05-17").await;
    assert_eq!(r.status(), 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn enrolment_path_sqlite() {
    enrolment_path(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
async fn enrolment_path_postgres() {
    enrolment_path(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_refusals() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let office = office(&server).await;
    enrol(&server, &office, &citizen("wong", "A123456(7)")).await;
    let post = |body: Vec<u8>| {
        http()
            .post(server.url("/registration/citizens"))
            .header("content-type", "application/json")
            .header("officer", "officer-1")
            .body(body)
    };
    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let send = |body: Vec<u8>| {
        let r = post(body);
        let office = &office;
        async move { answer(r.send_as(office).await).await }
    };
    let body = |v: Value| serde_json::to_vec(&v).unwrap();
    // No credential, and an e-service's credential without the registration scope.
    let (s, v) = answer(post(body(citizen("x1", "B1111111"))).send().await.unwrap()).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_token")));
    let eservice = client_token(&server, CLIENT_ID, CLIENT_SECRET, "").await;
    let r = post(body(citizen("x2", "B2222222")))
        .bearer_auth(eservice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // One account per document, however it is written.
    let (s, v) = send(body(citizen("other", "a 123456 (7)"))).await;
    assert_eq!(s, 409, "{v}");
    // Malformed input: a clear 400.
    for bad in [
        b"not json".to_vec(),
        body(json!({"username": "y"})),
        body(json!({"unknown": 1})),
        body({
            let mut c = citizen("y3", "C3333333");
            c["date_of_birth"] = json!("2999-01-01");
            c
        }),
        body({
            let mut c = citizen("y4", "C4444444");
            c["gender"] = json!("dragon");
            c
        }),
        body({
            let mut c = citizen("y5", "C5555555");
            c["name_en"] = json!("a\u{0}b");
            c
        }),
    ] {
        let (s, v) = send(bad.clone()).await;
        assert_eq!(s, 400, "{}: {v}", String::from_utf8_lossy(&bad));
        assert_eq!(v["error"], "invalid_request");
    }
    // Unknown citizens and statuses.
    let r = http()
        .post(server.url("/registration/citizens/nobody/status"))
        .header("officer", "officer-1")
        .json(&json!({"status": "deleted"}))
        .send_as(&office)
        .await;
    assert_eq!(r.status(), 400);
    let r = http()
        .get(server.url("/registration/citizens/nobody"))
        .header("officer", "officer-1")
        .send_as(&office)
        .await;
    assert_eq!(r.status(), 404);
    // Every call names the officer at the counter (issue 17).
    let long = "x".repeat(65);
    for officer in [None, Some(""), Some("two words"), Some(long.as_str())] {
        let mut r = http().get(server.url("/registration/citizens/nobody"));
        if let Some(o) = &officer {
            r = r.header("officer", *o);
        }
        let r = r.send_as(&office).await;
        assert_eq!(r.status(), 400, "{officer:?}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error_description"].as_str().unwrap().contains("Officer"),
            "{v}"
        );
    }
    // A guessed code: refused like a wrong one.
    let link = server.url("/activate?code=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let r = post_activation(&browser(), &server, &link, "1990-05-17").await;
    assert_eq!(r.status(), 400);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Registration and audit clients over HTTP: no secret, an assertion and a DPoP proof for
/// every token, and the token counts only with a proof; `client keys` moves a client from
/// its secret to keys (issue 17).
#[tokio::test(flavor = "multi_thread")]
async fn registration_clients_need_keys_and_dpop() {
    use crate::fapi::Key;
    let server = Server::start(Backend::Sqlite, &[]).await;
    let token = server.url("/token");
    // The demo office has no secret to guess.
    let r = http()
        .post(&token)
        .basic_auth(OFFICE_ID, Some("demo-registration-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "registration"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Neither registration nor audit clients are registered with a secret.
    for scope in ["registration", "audit"] {
        let out = server.cli_output(&[
            "client",
            "add",
            "--name",
            "Counter",
            "--department",
            "Immigration Department",
            "--scopes",
            scope,
        ]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("private_key_jwt"),
            "{out:?}"
        );
    }

    let key = Key::new();
    let mut jwk = key.jwk.clone();
    jwk["kid"] = "k1".into();
    register_office(&server, "raw-office", &json!({ "keys": [jwk] }).to_string());
    let ask = |proof: Option<String>| {
        let mut r = http().post(&token).form(&[
            ("grant_type", "client_credentials"),
            ("scope", "registration"),
            ("client_id", "raw-office"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            (
                "client_assertion",
                &key.assertion("raw-office", &server.base),
            ),
        ]);
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = ask(None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{v}"
    );
    let dpop = Key::new();
    let (s, v) = ask(Some(dpop.proof("POST", &token, None))).await;
    assert_eq!((s, v["token_type"].as_str()), (200, Some("DPoP")), "{v}");
    let at = v["access_token"].as_str().unwrap();
    let api = server.url("/registration/citizens/nobody");
    let call = |scheme: &str, proof: Option<String>| {
        let mut r = http()
            .get(&api)
            .header("officer", "officer-1")
            .header("authorization", format!("{scheme} {at}"));
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    // As a bearer token (copied out of a log), or with another key's proof: refused.
    assert_eq!(call("Bearer", None).await, 401);
    assert_eq!(
        call("DPoP", Some(Key::new().proof("GET", &api, Some(at)))).await,
        401
    );
    assert_eq!(
        call("DPoP", Some(dpop.proof("GET", &api, Some(at)))).await,
        404
    );

    // `client keys`: the demo e-service moves from its secret to a key.
    let eservice = ClientKey::generate_named_by_thumbprint();
    let dir = identity_core::storage::testing::tempfile_guard::Dir::new();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, eservice.jwks()).unwrap();
    let out = server.cli(&[
        "client",
        "keys",
        CLIENT_ID,
        "--jwks",
        jwks.to_str().unwrap(),
    ]);
    assert!(out.contains("private_key_jwt"), "{out}");
    let r = http()
        .post(&token)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the secret no longer works");
    let c = ServiceClient::connect(&server.base, CLIENT_ID, eservice, "signing")
        .await
        .unwrap();
    c.authenticate().await.unwrap();
    let out = server.cli_output(&["client", "keys", "nobody", "--jwks", jwks.to_str().unwrap()]);
    assert!(!out.status.success());
}
