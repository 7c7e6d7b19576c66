//! The registration officer's API and the citizen's activation pages, against the real
//! server: enrol, activate with the code and the date of birth, set a password, suspend,
//! recover; and every refusal an officer or a guesser meets.

use identity_core::storage::Backend;
use serde_json::{json, Value};

use crate::util::*;

pub const OFFICE_ID: &str = "demo-registration";
pub const OFFICE_SECRET: &str = "demo-registration-secret";

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
pub async fn enrol(server: &Server, token: &str, body: &Value) -> (String, String) {
    let r = http()
        .post(server.url("/registration/citizens"))
        .bearer_auth(token)
        .header("officer", "officer-1")
        .json(body)
        .send()
        .await
        .unwrap();
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
    let office = client_token(&server, OFFICE_ID, OFFICE_SECRET, "registration").await;
    let (id, link) = enrol(&server, &office, &citizen("wong", "A123456(7)")).await;

    // The officer's view: the document number masked, the account pending.
    let record: Value = http()
        .get(server.url(&format!("/registration/citizens/{id}")))
        .bearer_auth(&office)
        .header("officer", "officer-1")
        .send()
        .await
        .unwrap()
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
                .bearer_auth(office)
                .header("officer", "officer-1")
                .json(&json!({ "status": s }))
                .send()
                .await
                .unwrap()
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
        .bearer_auth(&office)
        .header("officer", "officer-1")
        .json(&json!({ "remove_passkeys": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let asked: Value = r.json().await.unwrap();
    assert!(
        asked.get("activation").is_none(),
        "no code before the approval"
    );
    let approval = server.url(asked["approval"].as_str().unwrap());
    let approve = |token: String, officer: &'static str| {
        let approval = approval.clone();
        async move {
            http()
                .post(approval)
                .bearer_auth(token)
                .header("officer", officer)
                .send()
                .await
                .unwrap()
        }
    };
    // Through the same credential, no officer it names can approve: only its word.
    for officer in ["officer-1", "officer-2"] {
        assert_eq!(approve(office.clone(), officer).await.status(), 400);
    }
    // A second officer has a credential of their own (another registration client).
    let out = server.cli(&[
        "client",
        "add",
        "--name",
        "Counter 2",
        "--department",
        "Immigration Department",
        "--redirect-uri",
        REDIRECT_URI,
        "--scopes",
        "registration",
    ]);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .to_owned()
    };
    let second = client_token(
        &server,
        &field("client_id: "),
        &field("client_secret: "),
        "registration",
    )
    .await;
    let r: Value = approve(second, "officer-2").await.json().await.unwrap();
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
    let office = client_token(&server, OFFICE_ID, OFFICE_SECRET, "registration").await;
    enrol(&server, &office, &citizen("wong", "A123456(7)")).await;
    let send = |token: Option<String>, body: Vec<u8>| {
        let server = &server;
        async move {
            let mut r = http()
                .post(server.url("/registration/citizens"))
                .header("content-type", "application/json")
                .body(body);
            if let Some(t) = token {
                r = r.bearer_auth(t).header("officer", "officer-1");
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let body = |v: Value| serde_json::to_vec(&v).unwrap();
    // No credential, and an e-service's credential without the registration scope.
    let (s, v) = send(None, body(citizen("x1", "B1111111"))).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_token")));
    let eservice = client_token(&server, CLIENT_ID, CLIENT_SECRET, "").await;
    let (s, _) = send(Some(eservice), body(citizen("x2", "B2222222"))).await;
    assert_eq!(s, 403);
    // One account per document, however it is written.
    let (s, v) = send(Some(office.clone()), body(citizen("other", "a 123456 (7)"))).await;
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
        let (s, v) = send(Some(office.clone()), bad.clone()).await;
        assert_eq!(s, 400, "{}: {v}", String::from_utf8_lossy(&bad));
        assert_eq!(v["error"], "invalid_request");
    }
    // Unknown citizens and statuses.
    let r = http()
        .post(server.url("/registration/citizens/nobody/status"))
        .bearer_auth(&office)
        .header("officer", "officer-1")
        .json(&json!({"status": "deleted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http()
        .get(server.url("/registration/citizens/nobody"))
        .bearer_auth(&office)
        .header("officer", "officer-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Every call names the officer at the counter (issue 17).
    let long = "x".repeat(65);
    for officer in [None, Some(""), Some("two words"), Some(long.as_str())] {
        let mut r = http()
            .get(server.url("/registration/citizens/nobody"))
            .bearer_auth(&office);
        if let Some(o) = &officer {
            r = r.header("officer", *o);
        }
        let r = r.send().await.unwrap();
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
