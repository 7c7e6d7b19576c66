//! Regression tests for the outside security review (issue 17): each one failed on the
//! code before its fix.

use identity_core::storage::Backend;

use crate::util::*;

/// The language switch goes back only to a path of this site, however the way back is
/// spelled: a browser strips tabs and newlines from a URL and reads `\` as `/`, so
/// `/<TAB>/evil.example` is `//evil.example` to it.
#[tokio::test(flavor = "multi_thread")]
async fn language_switch_never_leaves_the_site() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let b = browser();
    let base = url::Url::parse(&server.base).unwrap();
    for back in [
        "/%09/evil.example",
        "/%0A/evil.example",
        "/%0D%0A/evil.example",
        "/%5Cevil.example",
        "%5C%5Cevil.example",
        "//evil.example",
        "/%2F/evil.example",
        "https://evil.example/",
        "http:evil.example",
        "%09//evil.example",
        "/ /evil.example",
        // The path of a same-origin URL may itself start with `//`: sent as a relative
        // Location it is a network-path reference to another host.
        "/.//evil.example",
        "/a/..//evil.example",
        "/%2E//evil.example",
    ] {
        let r = b
            .get(server.url(&format!("/lang/en?back={back}")))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 303 {
            let loc = location(&r);
            // How a browser reads the Location: WHATWG URL parsing against the page.
            let to = base.join(&loc).unwrap();
            assert_eq!(to.origin(), base.origin(), "{back} -> {loc:?}");
            assert!(!loc.chars().any(char::is_control), "{back} -> {loc:?}");
        } else {
            assert_eq!(status, 400, "{back}");
        }
    }
    let own = format!("{}//evil.example", server.base);
    let r = b
        .get(server.url("/lang/en"))
        .query(&[("back", own.as_str())])
        .send()
        .await
        .unwrap();
    if r.status() == 303 {
        let loc = location(&r);
        let to = base.join(&loc).unwrap();
        assert_eq!(to.origin(), base.origin(), "{own} -> {loc:?}");
    } else {
        assert_eq!(r.status(), 400, "{own}");
    }
    // A path on this site, with its query, is kept.
    let r = b
        .get(server.url("/lang/zh-Hant?back=%2Factivate%3Fcode%3Dabc"))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/activate?code=abc");
}

/// Control characters in any parameter are refused with a 4xx, on handlers that read only
/// one parameter too.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_refused_everywhere() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let b = browser();
    for (method, path, body) in [
        ("GET", "/lang/en?back=/account%09", None),
        ("GET", "/activate?code=ab%00c", None),
        ("GET", "/activate?code=ab%1Bc", None),
        ("POST", "/userinfo", Some("access_token=a%00b")),
    ] {
        let mut req = match method {
            "GET" => b.get(server.url(path)),
            _ => b.post(server.url(path)),
        };
        if let Some(body) = body {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 400, "{method} {path}");
    }
}

/// `private_key_jwt` audiences: a FAPI client's `aud` is exactly the issuer, as a string
/// (FAPI 2.0 final); another client's is the issuer or the URL of the endpoint it is sent
/// to, as a string or a one-element array. An array that also names anything else is the
/// 2025 audience-injection attack and is refused.
#[tokio::test(flavor = "multi_thread")]
async fn assertion_audiences_are_exact() {
    use crate::fapi::Key;
    use serde_json::json;
    let server = Server::start(Backend::Sqlite, &[]).await;
    let dir = identity_core::storage::testing::tempfile_guard::Dir::new();
    let key = Key::new();
    let mut jwk = key.jwk.clone();
    jwk["kid"] = "k1".into();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [jwk]}).to_string()).unwrap();
    for (id, fapi) in [("keyed-rp", false), ("fapi-rp", true)] {
        let mut args = vec![
            "client",
            "add",
            "--id",
            id,
            "--name",
            id,
            "--department",
            "Dept A",
            "--redirect-uri",
            REDIRECT_URI,
            "--jwks",
            jwks.to_str().unwrap(),
        ];
        if fapi {
            args.push("--fapi");
        }
        server.cli(&args);
    }
    let revoke = |client: &'static str, aud: serde_json::Value| {
        let assertion = key.assertion_to(client, aud);
        let server = &server;
        async move {
            http()
                .post(server.url("/revoke"))
                .form(&[
                    ("token", "unknown"),
                    (
                        "client_assertion_type",
                        identity_core::client_auth::ASSERTION_TYPE,
                    ),
                    ("client_assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let iss = server.base.clone();
    let at = |path: &str| format!("{iss}{path}");
    for (client, aud, expected) in [
        ("keyed-rp", json!(iss), 200),
        ("keyed-rp", json!([iss]), 200),
        ("keyed-rp", json!(at("/revoke")), 200),
        ("keyed-rp", json!([at("/revoke")]), 200),
        ("keyed-rp", json!(["https://attacker.example", iss]), 401),
        ("keyed-rp", json!([iss, at("/revoke")]), 401),
        ("keyed-rp", json!(at("/token")), 401),
        ("keyed-rp", json!("https://attacker.example"), 401),
        ("fapi-rp", json!(iss), 200),
        ("fapi-rp", json!([iss]), 401),
        ("fapi-rp", json!(at("/revoke")), 401),
        ("fapi-rp", json!(["https://attacker.example", iss]), 401),
    ] {
        assert_eq!(
            revoke(client, aud.clone()).await,
            expected,
            "{client} aud {aud}"
        );
    }
}

/// The demo data (a citizen and an e-service with published passwords) is loaded only
/// where nobody else can reach it: `seed` without a file, and `demo`, refuse a public URL
/// that is not a loopback one.
#[test]
fn demo_data_only_on_a_loopback_url() {
    let dir = identity_core::storage::testing::tempfile_guard::Dir::new();
    let cfg = dir.path().join("identity.toml");
    std::fs::write(dir.path().join("kek.hex"), "ab".repeat(32)).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "kek_file = \"{}\"\ndata_dir = \"{}\"\n",
            dir.path().join("kek.hex").display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let seed_on = |public_url: &str, listen: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_identity-server"));
        cmd.arg("--config")
            .arg(&cfg)
            .arg("seed")
            .env("IDENTITY_PUBLIC_URL", public_url)
            .env("IDENTITY_LISTEN", listen)
            .env_remove("IDENTITY_DATABASE_URL");
        if listen.starts_with("0.0.0.0") {
            // Only the settings are read; seed never opens the certificate.
            cmd.env("IDENTITY_TLS_CERT", dir.path().join("cert.pem"))
                .env("IDENTITY_TLS_KEY", dir.path().join("key.pem"));
        }
        cmd.output().unwrap()
    };
    let seed = |public_url: &str| seed_on(public_url, "127.0.0.1:8080");
    // A loopback public_url on a service that listens on every interface: the published
    // passwords would be reachable from the network through it.
    let out = seed_on("https://localhost:8443", "0.0.0.0:8443");
    assert!(
        !out.status.success(),
        "demo data loaded for a service on 0.0.0.0"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
    for public in ["https://id.example.gov.hk", "https://localhost.example.com"] {
        let out = seed(public);
        assert!(!out.status.success(), "{public}: the demo data was loaded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("loopback"), "{public}: {err}");
    }
    for public in ["http://localhost:8080", "http://localhost:9090"] {
        let out = seed(public);
        assert!(
            out.status.success(),
            "{public}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_identity-server"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("demo"))
        .env("IDENTITY_PUBLIC_URL", "https://id.example.gov.hk")
        .env_remove("IDENTITY_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = demo.kill();
            let _ = demo.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        status.is_some_and(|s| !s.success()),
        "demo on a public URL must refuse to start, not serve"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut demo.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("loopback"),
        "demo refused for another reason: {err}"
    );
}

/// RFC 9110 §9.3.2: HEAD is answered wherever GET is, with GET's status and headers and no
/// body.
#[tokio::test(flavor = "multi_thread")]
async fn head_answered_wherever_get_is() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let client = http();
    for path in [
        "/",
        "/account",
        "/activate",
        "/.well-known/openid-configuration",
        "/jwks",
        "/healthz",
        "/static/site.css",
    ] {
        let get = client.get(server.url(path)).send().await.unwrap();
        let head = client.head(server.url(path)).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {path}"
        );
        // An HTTP client drops a HEAD response's body by itself; read the raw bytes.
        let raw = raw_head(&server, path);
        let end = raw.find("\r\n\r\n").expect("a complete head") + 4;
        assert_eq!(&raw[end..], "", "HEAD {path} sent a body");
    }
}

fn raw_head(server: &Server, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = server
        .base
        .trim_start_matches("http://")
        .replace("localhost", "127.0.0.1");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "HEAD {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `keys revoke KID` from the CLI, beside a running server: the very next request refuses
/// the key's tokens and the JWKS no longer has it (no waiting for the server's key cache),
/// and new tokens are signed by a new key.
#[tokio::test(flavor = "multi_thread")]
async fn revoked_key_refused_at_once() {
    use base64::Engine;
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (code, verifier) = fresh_code(&server).await;
    let (status, tokens) = exchange(&server, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let kid = |jwt: &str| -> String {
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(jwt.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        header["kid"].as_str().unwrap().to_owned()
    };
    let old = kid(&access);
    let userinfo = |token: String| {
        let url = server.url("/userinfo");
        async move {
            http()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(userinfo(access.clone()).await, 200);
    assert!(get_text(&server.url("/jwks")).await.contains(&old));

    let out = server.cli(&["keys", "revoke", "--", &old]);
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(userinfo(access.clone()).await, 401);
    assert!(!get_text(&server.url("/jwks")).await.contains(&old));
    let (code, verifier) = fresh_code(&server).await;
    let (status, tokens) = exchange(&server, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let fresh = tokens["access_token"].as_str().unwrap().to_owned();
    assert_ne!(kid(&fresh), old);
    assert_eq!(userinfo(fresh).await, 200);
    let listed = server.cli(&["keys", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&old) && l.contains("revoked")),
        "{listed}"
    );
}

/// Requests on a client's behalf never reach the operator's own network unless
/// `outbound_allow` says so: a `jwks_uri` on loopback, by name (refused after resolution)
/// or by literal address (refused before any connection), is never fetched, and the client
/// cannot authenticate with it.
#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_refuse_internal_addresses() {
    use crate::fapi::Key;
    let server = Server::start(Backend::Sqlite, &[("IDENTITY_OUTBOUND_ALLOW", "")]).await;
    let key = Key::new();
    let (port, hits) = crate::fapi::serve_jwks(&key);
    for (id, host) in [("by-name", "localhost"), ("by-address", "127.0.0.1")] {
        let uri = format!("http://{host}:{port}/jwks.json");
        server.cli(&[
            "client",
            "add",
            "--id",
            id,
            "--name",
            "Published keys",
            "--department",
            "Dept P",
            "--redirect-uri",
            REDIRECT_URI,
            "--jwks-uri",
            &uri,
            "--scopes",
            "signing",
        ]);
        let status = http()
            .post(server.url("/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    identity_core::client_auth::ASSERTION_TYPE,
                ),
                ("client_assertion", &key.assertion(id, &server.base)),
            ])
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401, "{id}");
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the server connected to a loopback address"
    );
}

/// Every cookie of the service carries the `__Host-` prefix and its rules (Secure, `Path=/`,
/// no `Domain`), on http://localhost too, so a sibling subdomain cannot plant one; a cookie
/// without the prefix (what a sibling could plant) is not read. Two sign-ins pending in one
/// browser (two tabs) both finish.
#[tokio::test(flavor = "multi_thread")]
async fn cookies_are_host_prefixed() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let check = |cookies: &[String]| {
        assert!(!cookies.is_empty());
        for c in cookies {
            assert!(c.starts_with("__Host-"), "{c}");
            assert!(c.split("; ").any(|a| a == "Secure"), "{c}");
            assert!(c.split("; ").any(|a| a == "Path=/"), "{c}");
            assert!(!c.to_ascii_lowercase().contains("domain="), "{c}");
        }
    };
    let raw = http();
    let r = raw.get(server.url("/account")).send().await.unwrap();
    check(&set_cookies(&r));
    let r = raw
        .get(server.url("/lang/zh-Hant?back=/account"))
        .send()
        .await
        .unwrap();
    check(&set_cookies(&r));
    let (_, challenge) = pkce();
    let r = raw
        .get(auth_url(&server, &challenge, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    check(&set_cookies(&r));

    // A session cookie without the prefix (what a sibling subdomain could plant) is not
    // read, even with a valid session in it.
    let b = browser();
    let (html, act) = open_login(&server, &b, &auth_url(&server, &challenge, &[])).await;
    let r = post_login(&server, &b, &html, &act, USERNAME, PASSWORD).await;
    let session = set_cookies(&r)
        .iter()
        .find_map(|c| c.strip_prefix("__Host-idp_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let account = |cookie: String| {
        let url = server.url("/account");
        let raw = raw.clone();
        async move {
            let page = raw
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            !page.contains("name=\"password\"")
        }
    };
    assert!(account(format!("__Host-idp_session={session}")).await);
    assert!(!account(format!("idp_session={session}")).await);

    // Two pending sign-ins in one browser: each tab's form is accepted.
    let b = browser();
    let (_, c1) = pkce();
    let (_, c2) = pkce();
    let (html1, act1) = open_login(&server, &b, &auth_url(&server, &c1, &[])).await;
    let (_html2, _act2) = open_login(&server, &b, &auth_url(&server, &c2, &[])).await;
    let r = post_login(&server, &b, &html1, &act1, USERNAME, PASSWORD).await;
    assert_eq!(
        r.status(),
        303,
        "the first tab's sign-in still belongs to this browser"
    );
}

/// When the audit log cannot be appended to (here its tree's nodes are gone), `/readyz`
/// says so with the reason, audited requests get a clear 503 rather than a 500, the
/// metrics show it, and the log says it once, not once per request (issue 17).
async fn unappendable_audit_log_makes_the_replica_unready(backend: Backend) {
    use diesel::connection::SimpleConnection;
    let server = Server::start(backend, &[]).await;
    let ready = || async {
        let r = http().get(server.url("/readyz")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(ready().await.0, 200);
    let db = identity_core::storage::Db::open(&server.database_url(), 1).unwrap();
    db.with(|c| Ok(c.batch_execute("DELETE FROM audit_nodes")?))
        .unwrap();
    let (status, body) = ready().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("audit tree is damaged"), "{body}");
    // Audited requests: appends that need only nodes written since the damage still go
    // in; the first that needs a lost one is refused with a clear 503 (never a 500), and so
    // is every one after it.
    let grant = || async {
        http()
            .post(server.url("/token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials"), ("scope", "signing")])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let mut first_refusal = None;
    for n in 0..300 {
        match grant().await {
            200 => {}
            503 => {
                first_refusal = Some(n);
                break;
            }
            other => panic!("grant {n}: {other}"),
        }
    }
    assert!(
        first_refusal.is_some(),
        "the damaged tree was never noticed"
    );
    for _ in 0..5 {
        assert_eq!(grant().await, 503);
    }
    assert_eq!(ready().await.0, 503);
    let metrics = get_text(&server.metrics).await;
    assert!(
        metrics.contains("identity_audit_unappendable 1"),
        "{metrics}"
    );
    // The writer reports it on both backends within its next commits.
    let mut logged = 0;
    for _ in 0..50 {
        logged = server.log().matches("audit append failing").count();
        if logged > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(logged, 1, "once, not per request:\n{}", server.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn unappendable_audit_log_sqlite() {
    unappendable_audit_log_makes_the_replica_unready(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
async fn unappendable_audit_log_postgres() {
    unappendable_audit_log_makes_the_replica_unready(Backend::Postgres).await
}

/// Every page's CSP limits where forms go: `form-action 'self'`, plus the e-service's
/// origin on the pages whose forms lead back to it (the browser applies `form-action` to
/// the redirect after the submission). The browser tests follow those redirects in
/// Chromium, which enforces it.
#[tokio::test(flavor = "multi_thread")]
async fn forms_post_only_here_or_back_to_the_eservice() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let csp = |r: &reqwest::Response| -> String {
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let form_action = |csp: &str| -> Vec<String> {
        csp.split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix("form-action "))
            .unwrap_or_else(|| panic!("no form-action in {csp}"))
            .split(' ')
            .map(str::to_owned)
            .collect()
    };
    let account = http().get(server.url("/account")).send().await.unwrap();
    assert_eq!(form_action(&csp(&account)), ["'self'"]);
    let b = browser();
    let (_, challenge) = pkce();
    let r = b
        .get(auth_url(&server, &challenge, &[]))
        .send()
        .await
        .unwrap();
    let login = b
        .get(absolute(&server, &location(&r)))
        .send()
        .await
        .unwrap();
    let rp = url::Url::parse(REDIRECT_URI)
        .unwrap()
        .origin()
        .ascii_serialization();
    assert_eq!(form_action(&csp(&login)), ["'self'".to_owned(), rp]);
}

/// Error pages speak the citizen's language (the choice cookie, then `ui_locales`, then
/// `Accept-Language`), with `<html lang>` to match (issue 17).
#[tokio::test(flavor = "multi_thread")]
async fn error_pages_in_the_citizens_language() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let page = |path: &str, headers: &[(&str, &str)]| {
        let mut r = http().get(server.url(path));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 400);
            r.text().await.unwrap()
        }
    };
    let bad = "/activate?code=ab%00c";
    let zh = page(bad, &[("accept-language", "zh-HK,zh;q=0.9,en;q=0.5")]).await;
    assert!(zh.contains("<html lang=\"zh-Hant\">"), "{zh}");
    assert!(
        zh.contains("發生錯誤") && zh.contains("無法處理此要求"),
        "{zh}"
    );
    assert!(
        zh.contains("<p lang=\"en\">"),
        "the English detail is marked: {zh}"
    );
    let en = page(bad, &[("accept-language", "en-GB")]).await;
    assert!(
        en.contains("<html lang=\"en\">") && !en.contains("發生錯誤"),
        "{en}"
    );
    // The citizen's own choice wins over the browser's.
    let chosen = page(
        bad,
        &[
            ("accept-language", "zh-HK"),
            ("cookie", "__Host-idp_lang=en"),
        ],
    )
    .await;
    assert!(chosen.contains("<html lang=\"en\">"), "{chosen}");
    let asked = page(
        "/activate?code=ab%00c&ui_locales=zh-Hant",
        &[("accept-language", "en")],
    )
    .await;
    assert!(asked.contains("<html lang=\"zh-Hant\">"), "{asked}");
}
