//! The example e-service (`identity-server/src/bin/example-eservice.rs`, built on the SDK
//! only) against the real server: log in, see the claims, upload a document and sign it
//! with a passkey, fetch and verify the signature, download it, check it against the file
//! (and refuse it for another file), log out.

use identity_core::storage::Backend;
use std::process::{Command, Stdio};

use crate::signing::{add_soft_passkey, approve_with};
use crate::util::*;

struct Example {
    child: std::process::Child,
    base: String,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn example_eservice_logs_in_signs_and_logs_out() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // It believes it is at http://localhost:8081 (the demo e-service's registered
    // addresses) and listens on a free port; the test carries the callback over.
    let example = Example {
        child: Command::new(env!("CARGO_BIN_EXE_example-eservice"))
            .env("EXAMPLE_ISSUER", &server.base)
            .env("EXAMPLE_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let at = |p: &str| format!("{}{p}", example.base);
    let b = browser();
    let mut ready = false;
    for _ in 0..100 {
        if b.get(at("/")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the example started");
    assert!(b
        .get(at("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("id=\"login\""));

    // The login button: a pushed request, the identity service's pages, back with a code.
    let r = b.get(at("/login")).send().await.unwrap();
    let visit = |r: &reqwest::Response| -> String {
        let c = set_cookies(r)
            .into_iter()
            .find(|c| c.starts_with("__Host-visit="))
            .expect("a __Host-visit cookie");
        assert!(c.split("; ").any(|a| a == "Secure"), "{c}");
        assert!(c.split("; ").any(|a| a == "HttpOnly"), "{c}");
        c.trim_start_matches("__Host-visit=")
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    };
    let before_login = visit(&r);
    let auth = location(&r);
    assert!(auth.starts_with(&server.url("/authorize")) && auth.contains("request_uri="));
    let back = login_and_consent(&server, &browser(), &auth, USERNAME, PASSWORD).await;
    let r = b
        .get(at(&format!("/callback?{}", back.query().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/");
    // The session cookie is rotated at login: the id from before it is worth nothing.
    let after_login = visit(&r);
    assert_ne!(after_login, before_login);
    let fixed = http()
        .get(at("/"))
        .header("cookie", format!("__Host-visit={before_login}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(fixed.contains("id=\"login\""), "{fixed}");
    let home = b.get(at("/")).send().await.unwrap().text().await.unwrap();
    assert!(
        home.contains("id=\"who\"") && home.contains("pwd"),
        "{home}"
    );

    // The citizen has a passkey; the e-service asks for a signature.
    let citizen = browser();
    let html = citizen
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = post_login(
        &server,
        &citizen,
        &html,
        "/account/login",
        USERNAME,
        PASSWORD,
    )
    .await;
    assert_eq!(r.status(), 303);
    let mut phone = add_soft_passkey(&server, &citizen).await;
    let document = b"I apply for a stall licence.\n".to_vec();
    let file = |bytes: Vec<u8>, name: &str| {
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned())
    };
    let asked = b
        .post(at("/sign"))
        .multipart(
            reqwest::multipart::Form::new()
                .part("document", file(document.clone(), "../Stall licence.txt")),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let code = between(&asked, "id=\"code\">", "<");
    let approval = between(&asked, "id=\"approve\" href=\"", "\"");
    let result_path = between(&asked, "id=\"result\" href=\"", "\"");
    let (r, _) = approve_with(&server, &citizen, &mut phone, &approval, &code).await;
    assert!(
        r.status().is_redirection() || r.status().is_success(),
        "{}",
        r.status()
    );
    let signed = b
        .get(at(&result_path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(signed.contains("id=\"verified\""), "{signed}");
    assert!(signed.contains("Stall licence.txt is signed"), "{signed}");
    let p7s = b
        .get(at(&format!("{result_path}/p7s")))
        .send()
        .await
        .unwrap();
    assert_eq!(p7s.headers()["content-type"], "application/pkcs7-signature");
    let p7s = p7s.bytes().await.unwrap().to_vec();
    assert!(p7s.len() > 500);

    // The downloaded signature checks out against the document, and not against another.
    let check = |doc: Vec<u8>| {
        b.post(at("/verify"))
            .multipart(
                reqwest::multipart::Form::new()
                    .part("document", file(doc, "Stall licence.txt"))
                    .part("signature", file(p7s.clone(), "signature.p7s")),
            )
            .send()
    };
    let r = check(document.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("id=\"checked\""));
    let r = check(b"I apply for ten stall licences.\n".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("id=\"error\""));
    // A file over the limit gets a page saying so, not a broken connection.
    let r = b
        .post(at("/sign"))
        .multipart(
            reqwest::multipart::Form::new()
                .part("document", file(vec![b'x'; (10 << 20) + 1024], "big.bin")),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(r.text().await.unwrap().contains("at most 10 MiB"));
    // A form without the file is refused too.
    let r = b
        .post(at("/sign"))
        .multipart(reqwest::multipart::Form::new().text("other", "x"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());

    // Logout: through the identity service's end-session endpoint, back to the e-service.
    let r = b.get(at("/logout")).send().await.unwrap();
    let end = location(&r);
    assert!(end.starts_with(&server.url("/end-session")), "{end}");
    let r = b.get(&end).send().await.unwrap();
    assert_eq!(location(&r), "http://localhost:8081/logged-out?state=bye");
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {text}"))
        + start.len();
    let to = text[from..].find(end).unwrap() + from;
    text[from..to].replace("&amp;", "&")
}
