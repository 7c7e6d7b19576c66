//! The pages in real headless Chromium with the DevTools WebAuthn virtual authenticator:
//! a citizen logs in with a password, adds a passkey, logs out, and logs in to a relying
//! party (the `openidconnect` crate) with the passkey alone; the ID token must say so.
//! Keyboard order, both languages, and the page without WebAuthn are checked on the way,
//! and every page is saved as a screenshot under `<target>/tmp/screenshots/`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use identity_core::model::ACR_PASSKEY;
use identity_core::storage::Backend;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use crate::cdp::{Browser, Page};
use crate::util::*;

const WAIT: Duration = Duration::from_secs(20);

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A relying party's redirect URI that answers, so the browser lands somewhere readable,
/// and records every request (`METHOD path body`), so a callback can be checked.
pub fn callback_server_seeing() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Default::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            let _ = reader.read_line(&mut line);
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length.min(1 << 16)];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            let mut words = line.split_whitespace();
            record.lock().unwrap().push(format!(
                "{} {} {}",
                words.next().unwrap_or(""),
                words.next().unwrap_or(""),
                String::from_utf8_lossy(&body)
            ));
            let mut out = &stream;
            let _ = out.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n\
                  <!DOCTYPE html><title>callback</title><p>back at the e-service</p>",
            );
        }
    });
    (format!("http://localhost:{port}/callback"), seen)
}

fn callback_server() -> String {
    callback_server_seeing().0
}

/// Saves a screenshot of this page, then switches the language, checks it switched, saves
/// another, and switches back.
fn both_languages(page: &mut Page, name: &str) {
    page.screenshot(&shots().join(format!("{name}-en.png")))
        .unwrap();
    page.click("#switch-language").unwrap();
    // The whole page, its deferred script's handlers included, before anything is clicked.
    page.wait_for(
        "document.documentElement.lang === 'zh-Hant' && document.readyState === 'complete'",
        WAIT,
    )
    .unwrap();
    page.screenshot(&shots().join(format!("{name}-zh-Hant.png")))
        .unwrap();
    page.click("#switch-language").unwrap();
    page.wait_for(
        "document.documentElement.lang === 'en' && document.readyState === 'complete'",
        WAIT,
    )
    .unwrap();
}

fn text(page: &mut Page, selector: &str) -> String {
    page.eval(&format!(
        "(document.querySelector({}) || {{}}).innerText || ''",
        json!(selector)
    ))
    .unwrap()
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

fn visible(page: &mut Page, selector: &str) -> bool {
    page.eval(&format!(
        "(() => {{ const e = document.querySelector({}); return !!e && !e.hidden && e.offsetParent !== null; }})()",
        json!(selector)
    ))
    .unwrap()
    .as_bool()
    .unwrap()
}

/// Registers a relying party whose redirect URI answers; returns its secret.
fn register_rp(server: &Server, callback: &str) -> String {
    let out = server.cli(&[
        "client",
        "add",
        "--id",
        "browser-rp",
        "--name",
        "Browser RP",
        "--department",
        "Test Department",
        "--redirect-uri",
        callback,
        "--scopes",
        "openid profile email signing",
        "--signing-return-uri",
        callback,
        "--signing-callback-uri",
        &format!("{callback}/signing"),
    ]);
    out.lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("a secret")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Debian's chromium (apt-get install chromium); .ci/run installs it and runs this"]
async fn passkey_login_in_a_real_browser() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (callback, seen) = callback_server_seeing();
    let secret = register_rp(&server, &callback);
    let rp_secret = secret.clone();
    let base = server.base.clone();

    // The browser half runs on its own thread: the CDP client blocks.
    let cb = callback.clone();
    let (browser_half, login_url_tx, landed_rx) = {
        let (url_tx, url_rx) = std::sync::mpsc::channel::<String>();
        let (landed_tx, landed_rx) = std::sync::mpsc::channel::<String>();
        let handle = std::thread::spawn(move || drive_browser(&base, &cb, url_rx, landed_tx));
        (handle, url_tx, landed_rx)
    };

    // The relying party: discovery, PKCE, nonce, and a request for the passkey level.
    let http = http();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(server.base.clone()).unwrap(), &http)
            .await
            .unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("browser-rp".into()),
        Some(ClientSecret::new(secret)),
    )
    .set_redirect_uri(RedirectUrl::new(callback.clone()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_auth_context_value(AuthenticationContextClass::new(ACR_PASSKEY.into()))
        .set_pkce_challenge(challenge)
        .url();
    login_url_tx.send(url.to_string()).unwrap();
    let (landed, landed_rx) = tokio::task::spawn_blocking(move || {
        (landed_rx.recv_timeout(Duration::from_secs(120)), landed_rx)
    })
    .await
    .unwrap();
    let Ok(landed) = landed else {
        let e = browser_half.join().err();
        panic!(
            "the browser half failed: {e:?}\nserver log:\n{}",
            server.log()
        );
    };
    let landed = url::Url::parse(&landed).unwrap();
    assert_eq!(
        query(&landed, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    let code = query(&landed, "code").expect("a code");

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&id_verifier, &nonce)
        .expect("the ID token verifies");
    assert_eq!(
        claims.auth_context_ref().map(|a| a.as_str()),
        Some(ACR_PASSKEY),
        "the higher level"
    );
    let amr: Vec<String> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    assert!(
        amr.contains(&"user".to_owned()) && amr.contains(&"mfa".to_owned()),
        "{amr:?}"
    );
    assert!(
        amr.contains(&"hwk".to_owned()) || amr.contains(&"swk".to_owned()),
        "{amr:?}"
    );
    assert!(!amr.contains(&"pwd".to_owned()), "{amr:?}");
    assert!(claims.auth_time().is_some());

    // The e-service asks the citizen to sign a document; the citizen approves in the
    // browser with the passkey; the result verifies offline and with openssl.
    let subject = claims.subject().as_str().to_owned();
    let token = crate::enrolment::client_token(&server, "browser-rp", &rp_secret, "signing").await;
    let document = b"Tenancy agreement, Flat 12A, 1 Harbour Road\n".to_vec();
    let digest = ring::digest::digest(&ring::digest::SHA256, &document);
    let created: serde_json::Value = http
        .post(server.url("/signing/requests"))
        .bearer_auth(&token)
        .json(&json!({
            "subject": subject,
            "hash_alg": "SHA-256",
            "document_hash": URL_SAFE_NO_PAD.encode(digest.as_ref()),
            "document_name": "Tenancy agreement.pdf",
            "return_uri": callback,
            "callback_uri": format!("{callback}/signing"),
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let request_id = created["request_id"]
        .as_str()
        .expect("a request")
        .to_owned();
    login_url_tx
        .send(format!(
            "{}\n{}",
            created["approval_url"].as_str().unwrap(),
            created["code"].as_str().unwrap()
        ))
        .unwrap();
    let done =
        tokio::task::spawn_blocking(move || landed_rx.recv_timeout(Duration::from_secs(120)))
            .await
            .unwrap();
    let join = browser_half.join();
    if join.is_err() || done.is_err() {
        panic!(
            "the browser half failed: {:?}\nserver log:\n{}",
            join.err(),
            server.log()
        );
    }
    let done = url::Url::parse(&done.unwrap()).unwrap();
    assert_eq!(query(&done, "result").as_deref(), Some("signed"));
    // The e-service was also told, by a POST to its callback (the decision, not the result).
    let expected = format!(
        "POST /callback/signing {}",
        json!({"request_id": request_id, "state": "signed"})
    );
    let mut told = false;
    for _ in 0..100 {
        if seen.lock().unwrap().contains(&expected) {
            told = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(told, "no callback among {:?}", seen.lock().unwrap());
    let result: serde_json::Value = http
        .get(server.url(&format!("/signing/requests/{request_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(result["state"], "signed");
    let ca_pem = http
        .get(server.url("/signing/ca"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ca_der = base64::engine::general_purpose::STANDARD
        .decode(
            ca_pem
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let audit_key = identity_sdk::audit::VerifierKey::parse(
        http.get(server.url("/audit/key"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .trim(),
    )
    .unwrap();
    let verified = identity_sdk::signing::verify_signing_result(
        &result["signed"],
        &identity_sdk::signing::Expectations {
            request_id: &request_id,
            document_digest: digest.as_ref(),
            ca_certificate: &ca_der,
            subject: &subject,
            origin: &server.base,
            audit_key: &audit_key,
        },
    )
    .expect("the SDK verifies the signature, the evidence and the audit proof");
    let dir = identity_core::storage::testing::tempfile_guard::Dir::new();
    std::fs::write(dir.path().join("SIG"), &verified.cms).unwrap();
    std::fs::write(dir.path().join("DOC"), &document).unwrap();
    std::fs::write(dir.path().join("CA.pem"), &ca_pem).unwrap();
    let out = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "SIG",
            "-content",
            "DOC",
            "-CAfile",
            "CA.pem",
            "-out",
            "/dev/null",
        ])
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl cms -verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything the citizen does in the browser. Sends where the relying-party flow landed.
fn drive_browser(
    base: &str,
    callback: &str,
    login_url: std::sync::mpsc::Receiver<String>,
    landed: std::sync::mpsc::Sender<String>,
) {
    let browser = Browser::launch().unwrap();
    let mut page = browser.new_page().unwrap();
    // Before any page asks for a passkey: a request made without an authenticator hangs.
    let authenticator = page.add_virtual_authenticator().unwrap();

    // The login page: keyboard order through the landmarks and controls, both languages.
    page.goto(&format!("{base}/account")).unwrap();
    page.wait_for("!document.getElementById('passkey-login').hidden", WAIT)
        .unwrap();
    assert_eq!(
        page.eval("document.querySelectorAll('script:not([src])').length")
            .unwrap(),
        json!(0),
        "no inline script"
    );
    let mut order = Vec::new();
    for _ in 0..6 {
        order.push(page.tab().unwrap());
    }
    assert_eq!(
        order,
        [
            "skip",
            "switch-language",
            "passkey-login",
            "username",
            "password",
            "password-login"
        ]
    );
    assert!(!visible(&mut page, "#passkey-unavailable"));
    both_languages(&mut page, "login");

    // Password login by keyboard alone, then add a passkey.
    page.fill("#username", USERNAME).unwrap();
    page.fill("#password", PASSWORD).unwrap();
    page.eval("document.getElementById('password-login').focus()")
        .unwrap();
    page.enter().unwrap();
    page.wait_for("!!document.getElementById('assurance')", WAIT)
        .unwrap();
    assert!(!text(&mut page, "#no-passkeys").is_empty());
    page.fill("#passkey-name", "Test phone").unwrap();
    page.click("#add-passkey").unwrap();
    page.wait_for("!!document.getElementById('passkeys')", WAIT)
        .unwrap_or_else(|e| panic!("{e}; page: {}", text(&mut page, "main")));
    assert!(text(&mut page, "#passkeys").contains("Test phone"));
    let creds = page.credentials(&authenticator).unwrap();
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0]["isResidentCredential"], json!(true));
    both_languages(&mut page, "account");
    page.click("#logout").unwrap();
    page.wait_for("!document.getElementById('logout')", WAIT)
        .unwrap();
    page.screenshot(&shots().join("logged-out-en.png")).unwrap();

    // A browser without WebAuthn: the page explains itself and offers the password.
    let mut plain = browser.new_page().unwrap();
    plain.call("Page.enable", json!({})).unwrap();
    plain
        .call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "delete window.PublicKeyCredential;"}),
        )
        .unwrap();
    plain.goto(&format!("{base}/account")).unwrap();
    plain
        .wait_for("document.readyState === 'complete'", WAIT)
        .unwrap();
    let seen = plain
        .eval("[typeof window.PublicKeyCredential, location.href, document.getElementById('passkey-unavailable') && document.getElementById('passkey-unavailable').hidden]")
        .unwrap();
    assert!(visible(&mut plain, "#passkey-unavailable"), "{seen}");
    assert!(!visible(&mut plain, "#passkey-login"));
    assert!(visible(&mut plain, "#password-form"));
    plain
        .screenshot(&shots().join("login-without-webauthn-en.png"))
        .unwrap();
    // A tab in the background is not painted: close this one and bring the first back, or
    // its screenshots wait for a frame that never comes.
    let _ = plain.call("Page.close", json!({}));
    drop(plain);
    page.call("Page.bringToFront", json!({})).unwrap();

    // The relying party asks for the passkey level: only the passkey is offered.
    let url = login_url.recv().unwrap();
    page.goto(&url).unwrap();
    page.wait_for("!!document.getElementById('passkey-required')", WAIT)
        .unwrap();
    assert!(!visible(&mut page, "#password-form"));
    page.wait_for("!document.getElementById('passkey-login').hidden", WAIT)
        .unwrap();
    both_languages(&mut page, "login-passkey-required");
    page.click("#passkey-login").unwrap();
    page.wait_for("!!document.getElementById('allow')", WAIT)
        .unwrap_or_else(|e| panic!("{e}; page: {}", text(&mut page, "main")));
    both_languages(&mut page, "consent");
    page.click("#allow").unwrap();
    page.wait_for(
        &format!("location.href.startsWith({})", json!(callback)),
        WAIT,
    )
    .unwrap();
    landed.send(page.url().unwrap()).unwrap();

    // A document to sign: the approval page shows the same code as the e-service.
    let next = login_url.recv().unwrap();
    let (approval, code) = next.split_once('\n').unwrap();
    page.goto(approval).unwrap();
    page.wait_for("!document.getElementById('passkey-approve').hidden", WAIT)
        .unwrap_or_else(|e| panic!("{e}; page: {}", text(&mut page, "main")));
    assert_eq!(text(&mut page, "#sign-code"), code);
    both_languages(&mut page, "sign");
    page.click("#passkey-approve").unwrap();
    page.wait_for(
        &format!("location.href.startsWith({})", json!(callback)),
        WAIT,
    )
    .unwrap_or_else(|e| panic!("{e}; page: {}", text(&mut page, "main")));
    landed.send(page.url().unwrap()).unwrap();

    // The account page now says the session is at the passkey level; an error page too.
    page.goto(&format!("{base}/account")).unwrap();
    assert!(text(&mut page, "#assurance").contains("passkey"));
    page.goto(&format!("{base}/interaction/no-such-request"))
        .unwrap();
    assert!(!text(&mut page, "#error-message").is_empty());
    page.screenshot(&shots().join("error-both.png")).unwrap();
}

/// The whole path of a new citizen: an officer enrols them through the API, they activate
/// in the browser with the code and their date of birth, add a passkey with the virtual
/// authenticator, and log in to an e-service with it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Debian's chromium (apt-get install chromium); .ci/run installs it and runs this"]
async fn enrolment_activation_and_passkey_login_in_a_real_browser() {
    use crate::enrolment::{citizen, enrol, office};
    let server = Server::start(Backend::Sqlite, &[]).await;
    let callback = callback_server();
    let secret = register_rp(&server, &callback);
    let office = office(&server).await;
    let (_, link) = enrol(&server, &office, &citizen("wong", "A123456(7)")).await;
    let (verifier, challenge) = pkce();
    let mut auth = url::Url::parse(&server.url("/authorize")).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", "browser-rp")
        .append_pair("redirect_uri", &callback)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile")
        .append_pair("state", "enrolled")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("acr_values", ACR_PASSKEY);
    let (base, cb, auth) = (server.base.clone(), callback.clone(), auth.to_string());
    let landed = tokio::task::spawn_blocking(move || {
        let browser = Browser::launch().unwrap();
        let mut page = browser.new_page().unwrap();
        let authenticator = page.add_virtual_authenticator().unwrap();
        page.goto(&link).unwrap();
        both_languages(&mut page, "activation");
        page.fill("#date-of-birth", "1990-05-17").unwrap();
        page.click("#activate").unwrap();
        page.wait_for("!!document.getElementById('assurance')", WAIT)
            .unwrap_or_else(|e| panic!("{e}; page: {}", text(&mut page, "main")));
        page.wait_for("!document.getElementById('passkey-register').hidden", WAIT)
            .unwrap();
        page.fill("#passkey-name", "New phone").unwrap();
        page.click("#add-passkey").unwrap();
        page.wait_for("!!document.getElementById('passkeys')", WAIT)
            .unwrap_or_else(|e| panic!("{e}; page: {}", text(&mut page, "main")));
        assert_eq!(page.credentials(&authenticator).unwrap().len(), 1);
        assert!(text(&mut page, "#events").contains("Account activated"));
        page.screenshot(&shots().join("account-after-activation-en.png"))
            .unwrap();
        page.click("#logout").unwrap();
        page.wait_for("!document.getElementById('logout')", WAIT)
            .unwrap();
        let _ = base;
        page.goto(&auth).unwrap();
        page.wait_for("!document.getElementById('passkey-login').hidden", WAIT)
            .unwrap();
        page.click("#passkey-login").unwrap();
        page.wait_for("!!document.getElementById('allow')", WAIT)
            .unwrap_or_else(|e| panic!("{e}; page: {}", text(&mut page, "main")));
        page.click("#allow").unwrap();
        page.wait_for(&format!("location.href.startsWith({})", json!(cb)), WAIT)
            .unwrap();
        page.url().unwrap()
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the browser half failed: {e:?}\nserver log:\n{}",
            server.log()
        )
    });
    let landed = url::Url::parse(&landed).unwrap();
    assert_eq!(query(&landed, "state").as_deref(), Some("enrolled"));
    let tokens: serde_json::Value = http()
        .post(server.url("/token"))
        .basic_auth("browser-rp", Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", query(&landed, "code").unwrap().as_str()),
            ("redirect_uri", callback.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_token = tokens["id_token"].as_str().expect("an ID token");
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["acr"], ACR_PASSKEY);
    assert!(claims["amr"].as_array().unwrap().contains(&json!("user")));
}
