//! The served OpenAPI document, and schemathesis (property-based API testing, from PyPI)
//! run against it on a live server: no 5xx, every status documented, every response in its
//! documented content type and schema.

use identity_core::storage::Backend;
use serde_json::Value;

use crate::enrolment::{client_token, AUDITOR_KEY, OFFICE_ID, OFFICE_KEY};
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
    // filtered out of that run. Unauthenticated variants are generated too. Registration
    // and audit tokens are DPoP-bound, and schemathesis cannot make a proof per request:
    // those runs go through a proxy that sends each request as the client (a fresh proof
    // for its method and URL) and hands back the server's answer as it came.
    let registration = dpop_proxy(&server, OFFICE_ID, OFFICE_KEY, "registration");
    let audit = dpop_proxy(&server, "demo-auditor", AUDITOR_KEY, "audit");
    let signing = format!(
        "Authorization: Bearer {}",
        client_token(&server, CLIENT_ID, CLIENT_SECRET, "signing").await
    );
    let basic = format!("{CLIENT_ID}:{CLIENT_SECRET}");
    let runs: [(&str, [&str; 2]); 4] = [
        (
            r"^/(token|par|revoke|introspect|jwks|healthz|readyz|\.well-known/openid-configuration|signing/ca|audit/key|audit/checkpoint)$",
            ["--auth", &basic],
        ),
        (r"^/registration/", ["--url", &registration]),
        (r"^/(signing/requests.*|userinfo)$", ["--header", &signing]),
        (r"^/audit/(entries|proof/.*)$", ["--url", &audit]),
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

/// A loopback proxy to `server` that sends every request as the back-end client `id`
/// (its key in PEM `key`, for `scope`): a DPoP-bound token and a fresh proof for the
/// request's method and URL. Returns the proxy's base URL.
fn dpop_proxy(server: &Server, id: &str, key: &str, scope: &str) -> String {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use identity_sdk::service::ServiceClient;
    use std::sync::Arc;

    async fn forward(
        req: HttpRequest,
        body: web::Bytes,
        to: web::Data<(String, Arc<ServiceClient>)>,
    ) -> HttpResponse {
        let (base, client) = (&to.0, &to.1);
        let target = format!(
            "{base}{}",
            req.uri().path_and_query().map_or("/", |p| p.as_str())
        );
        let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
        let mut out = client.request(method, &target).body(body.to_vec());
        for (name, value) in req.headers() {
            // What the proxy sets itself: the target's host, the length, the credential.
            if !matches!(
                name.as_str(),
                "host" | "content-length" | "authorization" | "dpop" | "connection"
            ) {
                out = out.header(name.as_str(), value.as_bytes());
            }
        }
        let answer = client.send(out).await.unwrap();
        let status = actix_web::http::StatusCode::from_u16(answer.status().as_u16()).unwrap();
        let mut back = HttpResponse::build(status);
        for (name, value) in answer.headers() {
            if !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection"
            ) {
                back.append_header((name.as_str(), value.as_bytes()));
            }
        }
        back.body(answer.bytes().await.unwrap())
    }

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (base, id, scope) = (server.base.clone(), id.to_owned(), scope.to_owned());
    let key = identity_sdk::login::ClientKey::from_pem(key).unwrap();
    // Its own runtime, on which the client's connections live too.
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let client = ServiceClient::connect(&base, &id, key, &scope)
                .await
                .unwrap();
            let to = web::Data::new((base, Arc::new(client)));
            HttpServer::new(move || {
                App::new()
                    .app_data(to.clone())
                    .default_service(web::to(forward))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap();
        })
    });
    format!("http://127.0.0.1:{port}")
}
