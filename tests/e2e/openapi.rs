//! The served OpenAPI document, and schemathesis (property-based API testing, from PyPI)
//! run against it on a live server: no 5xx, every status documented, every response in its
//! documented content type and schema.

use identity_core::storage::Backend;
use serde_json::Value;

use crate::enrolment::client_token;
use crate::util::*;

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_is_served_and_names_every_json_api() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let r = http()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/token",
        "/par",
        "/revoke",
        "/introspect",
        "/userinfo",
        "/jwks",
        "/.well-known/openid-configuration",
        "/registration/citizens",
        "/registration/citizens/{id}",
        "/registration/citizens/{id}/status",
        "/registration/citizens/{id}/recovery",
        "/registration/recoveries/{id}/approval",
        "/signing/requests",
        "/signing/requests/{id}",
        "/signing/ca",
        "/audit/checkpoint",
        "/audit/key",
        "/audit/entries",
        "/audit/proof/inclusion",
        "/audit/proof/consistency",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is described");
    }
    assert!(doc["components"]["securitySchemes"]["client_secret_basic"].is_object());
    assert_eq!(
        doc["paths"]["/token"]["post"]["requestBody"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["application/x-www-form-urlencoded"]
    );
}

/// The schemathesis version `.ci/run` installs.
const SCHEMATHESIS: &str = "4.32.5";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs schemathesis from PyPI (pip install schemathesis==4.32.5); .ci/run installs it and runs this with --include-ignored"]
async fn schemathesis_finds_no_5xx_and_no_response_outside_the_schema() {
    let version = std::process::Command::new("schemathesis")
        .arg("--version")
        .output()
        .expect("schemathesis on PATH (pip install schemathesis)");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(SCHEMATHESIS),
        "schemathesis {SCHEMATHESIS}: {}",
        String::from_utf8_lossy(&version.stdout)
    );
    let server = Server::start(Backend::Sqlite, &[]).await;
    let schema = server.url("/openapi.json");
    // Each group of operations with the credential it needs; the rest of the document is
    // filtered out of that run. Unauthenticated variants are generated too.
    let registration = format!(
        "Authorization: Bearer {}",
        client_token(
            &server,
            "demo-registration",
            "demo-registration-secret",
            "registration"
        )
        .await
    );
    let signing = format!(
        "Authorization: Bearer {}",
        client_token(&server, CLIENT_ID, CLIENT_SECRET, "signing").await
    );
    let audit = format!(
        "Authorization: Bearer {}",
        client_token(&server, "demo-auditor", "demo-auditor-secret", "audit").await
    );
    let basic = format!("{CLIENT_ID}:{CLIENT_SECRET}");
    let runs: [(&str, [&str; 2]); 4] = [
        (
            r"^/(token|par|revoke|introspect|jwks|healthz|readyz|\.well-known/openid-configuration|signing/ca|audit/key|audit/checkpoint)$",
            ["--auth", &basic],
        ),
        (r"^/registration/", ["--header", &registration]),
        (r"^/(signing/requests.*|userinfo)$", ["--header", &signing]),
        (r"^/audit/(entries|proof/.*)$", ["--header", &audit]),
    ];
    for (paths, credential) in runs {
        let out = tokio::task::spawn_blocking({
            let schema = schema.clone();
            let (paths, credential) = (paths.to_owned(), credential.map(str::to_owned));
            move || {
                std::process::Command::new("schemathesis")
                    // Its cache of findings goes to the target directory, not the tree.
                    .current_dir(env!("CARGO_TARGET_TMPDIR"))
                    .args(["run", &schema])
                    .args(["--include-path-regex", &paths])
                    .args(&credential)
                    .args([
                        "--checks",
                        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                        "--max-examples",
                        "50",
                        "--seed",
                        "20261125",
                        "--request-timeout",
                        "10",
                        "--no-color",
                    ])
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis on {paths}:\n{text}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
        assert!(text.contains("passed"), "{text}");
    }
    // None of it broke the server.
    let r = http().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
