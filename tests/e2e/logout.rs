//! RP-initiated and back-channel logout against the real server.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use identity_core::storage::Backend;
use serde_json::Value;

use crate::browser::callback_server_seeing;
use crate::util::*;

const LOGGED_OUT: &str = "http://localhost:8081/logged-out";

fn payload(jwt: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

async fn logged_in(b: &reqwest::Client, server: &Server) -> bool {
    let page = b
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.contains("id=\"logout\"")
}

#[tokio::test(flavor = "multi_thread")]
async fn rp_initiated_and_back_channel_logout() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (backchannel, seen) = callback_server_seeing();
    server.cli(&[
        "client",
        "add",
        "--id",
        "bc-rp",
        "--name",
        "Back-channel RP",
        "--department",
        "Dept B",
        "--redirect-uri",
        REDIRECT_URI,
        "--backchannel-logout-uri",
        &backchannel,
    ]);
    let b = browser();
    // The citizen uses two e-services: the demo one (whose ID token will be the hint) and
    // one that asked to hear of logouts.
    let (verifier, challenge) = pkce();
    let back = login_and_consent(
        &server,
        &b,
        &auth_url(&server, &challenge, &[]),
        USERNAME,
        PASSWORD,
    )
    .await;
    let (_, tokens) = exchange(&server, &query(&back, "code").unwrap(), &verifier).await;
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let (_, challenge2) = pkce();
    let bc_url = auth_url(&server, &challenge2, &[]).replace("demo-eservice", "bc-rp");
    let mut next = absolute(&server, &location(&b.get(&bc_url).send().await.unwrap()));
    for _ in 0..5 {
        let r = b.get(&next).send().await.unwrap();
        if r.status() == 303 {
            next = absolute(&server, &location(&r));
            if next.starts_with(REDIRECT_URI) {
                break;
            }
            continue;
        }
        let html = r.text().await.unwrap();
        let r = b
            .post(server.url(&action(&html)))
            .form(&[
                ("csrf", hidden(&html, "csrf").as_str()),
                ("decision", "allow"),
            ])
            .send()
            .await
            .unwrap();
        next = absolute(&server, &location(&r));
        if next.starts_with(REDIRECT_URI) {
            break;
        }
    }
    assert!(next.starts_with(REDIRECT_URI), "consented to bc-rp: {next}");

    // Refusals first: an unregistered return address, a forged hint.
    let end = |q: &[(&str, &str)]| {
        let mut u = url::Url::parse(&server.url("/end-session")).unwrap();
        for (k, v) in q {
            u.query_pairs_mut().append_pair(k, v);
        }
        u.to_string()
    };
    let r = b
        .get(end(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = b
        .get(end(&[("id_token_hint", "forged.jwt.here")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Without a hint the citizen is asked, and stays logged in until they confirm.
    let r = b.get(end(&[])).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("id=\"confirm-logout\""));
    assert!(logged_in(&b, &server).await);

    // With the hint: logged out at once, back to the registered address with the state.
    let r = b
        .get(end(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "bye-123"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), format!("{LOGGED_OUT}?state=bye-123"));
    assert!(!logged_in(&b, &server).await);

    // The other e-service heard of it: a signed logout token for its own subject.
    let mut token = None;
    for _ in 0..100 {
        if let Some(line) = seen
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.starts_with("POST /callback logout_token="))
        {
            token = Some(line["POST /callback logout_token=".len()..].to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let token = token.expect("a back-channel logout token");
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "logout+jwt");
    let claims = payload(&token);
    assert_eq!(claims["aud"], "bc-rp");
    assert_eq!(claims["iss"], server.base.as_str());
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());
    assert_ne!(
        claims["sub"],
        payload(&id_token)["sub"],
        "pairwise: each e-service its own sub"
    );
}
