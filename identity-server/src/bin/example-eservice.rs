//! An example e-service built on the SDK only: what a department copies. A login button,
//! the citizen's released claims, "sign a document" (upload it, hash it, ask the citizen,
//! fetch and verify the signature, download it), checking a downloaded signature against
//! its document, and logout.
//!
//! Run against the demo server (`identity-server demo` on :8080):
//! `cargo run -p identity-server --bin example-eservice`, then open <http://localhost:8081>.
//! Settings from the environment: `EXAMPLE_ISSUER` (http://localhost:8080),
//! `EXAMPLE_LISTEN` (127.0.0.1:8081), `EXAMPLE_URL` (http://localhost:8081),
//! `EXAMPLE_CLIENT_ID` / `EXAMPLE_CLIENT_SECRET` (the demo e-service's).

use actix_multipart::form::{bytes::Bytes as Upload, MultipartForm, MultipartFormConfig};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use identity_sdk::audit::VerifierKey;
use identity_sdk::login::{Credentials, LoginClient, PendingLogin, Tokens};
use identity_sdk::signing::{verify_signing_result, Expectations};
use identity_sdk::signing_client::{ClientSecret, DocumentToSign, SigningClient, Status};
use std::collections::HashMap;
use std::sync::Mutex;

struct Config {
    issuer: String,
    url: String,
    client_id: String,
    secret: String,
}

/// One browser's state, kept in memory (an example: a real e-service keeps it in its own
/// session store).
#[derive(Default)]
struct Visit {
    pending: Option<PendingLogin>,
    tokens: Option<Tokens>,
    /// Requests made, by id.
    signing: HashMap<String, Asked>,
}

/// A document this visit asked to have signed: its name, its digest, and the CMS signature
/// once it was verified.
type Asked = (String, Vec<u8>, Option<Vec<u8>>);

struct AppState {
    config: Config,
    login: LoginClient,
    signing: SigningClient,
    ca: Vec<u8>,
    audit_key: VerifierKey,
    visits: Mutex<HashMap<String, Visit>>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(body: &str) -> HttpResponse {
    page_with(actix_web::http::StatusCode::OK, body)
}

fn page_with(status: actix_web::http::StatusCode, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Example e-Service</title></head>\
             <body><header><h1>Example e-Service</h1></header><main>{body}</main></body></html>"
        ))
}

/// The visit cookie: `__Host-` and Secure (browsers keep Secure cookies on
/// http://localhost too), HttpOnly, and SameSite=Lax so that another site cannot make the
/// citizen's browser post to /sign.
const VISIT_COOKIE: &str = "__Host-visit";

fn visit_id(req: &HttpRequest) -> Option<String> {
    req.cookie(VISIT_COOKIE).map(|c| c.value().to_owned())
}

fn visit_cookie(id: String) -> actix_web::cookie::Cookie<'static> {
    actix_web::cookie::Cookie::build(VISIT_COOKIE, id)
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(actix_web::cookie::SameSite::Lax)
        .finish()
}

fn random_id() -> String {
    let mut b = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("random");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn see(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", location))
        .finish()
}

async fn home(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let visits = state.visits.lock().expect("lock");
    let Some(tokens) = visit_id(&req)
        .and_then(|v| visits.get(&v))
        .and_then(|v| v.tokens.as_ref())
    else {
        return page("<p>Log in with your city identity.</p><p><a id=\"login\" href=\"/login\">Log in</a></p>");
    };
    let c = tokens.id_token.claims();
    page(&format!(
        "<p id=\"who\">Logged in as <code>{}</code> ({} / {}).</p>\
         <h2>Sign a document</h2>\
         <form method=\"post\" action=\"/sign\" enctype=\"multipart/form-data\">\
         <p><label for=\"document\">Document (at most 10 MiB)</label> <input type=\"file\" id=\"document\" name=\"document\" required></p>\
         <p><button type=\"submit\" id=\"sign\">Ask to sign</button></p></form>\
         <h2>Check a signature</h2>\
         <form method=\"post\" action=\"/verify\" enctype=\"multipart/form-data\">\
         <p><label for=\"v-document\">Document</label> <input type=\"file\" id=\"v-document\" name=\"document\" required></p>\
         <p><label for=\"v-signature\">Signature (.p7s)</label> <input type=\"file\" id=\"v-signature\" name=\"signature\" required></p>\
         <p><button type=\"submit\" id=\"verify\">Check</button></p></form>\
         <p><a id=\"logout\" href=\"/logout\">Log out</a></p>",
        esc(&c.sub),
        esc(c.acr.as_deref().unwrap_or("-")),
        esc(&c.amr.clone().unwrap_or_default().join(" "))
    ))
}

async fn login(state: web::Data<AppState>) -> HttpResponse {
    let pending = match state.login.start("openid profile").await {
        Ok(p) => p,
        Err(e) => {
            return page(&format!(
                "<p>Could not start the login: {}</p>",
                esc(&e.to_string())
            ))
        }
    };
    let url = pending.url().to_owned();
    let id = random_id();
    state.visits.lock().expect("lock").insert(
        id.clone(),
        Visit {
            pending: Some(pending),
            ..Default::default()
        },
    );
    let mut resp = see(&url);
    let _ = resp.add_cookie(&visit_cookie(id));
    resp
}

async fn callback(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(id) = visit_id(&req) else {
        return see("/");
    };
    let pending = state
        .visits
        .lock()
        .expect("lock")
        .get_mut(&id)
        .and_then(|v| v.pending.take());
    let Some(pending) = pending else {
        return see("/");
    };
    let url = format!("{}{}", state.config.url, req.uri());
    match state.login.finish(pending, &url).await {
        Ok(tokens) => {
            // A new visit id at login: an id someone planted or saw before the login
            // (session fixation) is worth nothing after it.
            let fresh = random_id();
            let mut visits = state.visits.lock().expect("lock");
            visits.remove(&id);
            visits.insert(
                fresh.clone(),
                Visit {
                    tokens: Some(tokens),
                    ..Default::default()
                },
            );
            let mut resp = see("/");
            let _ = resp.add_cookie(&visit_cookie(fresh));
            resp
        }
        Err(e) => page(&format!(
            "<p id=\"error\">Login failed: {}</p>",
            esc(&e.to_string())
        )),
    }
}

/// The upload of a document to sign.
#[derive(MultipartForm)]
struct ToSign {
    #[multipart(limit = "10MiB")]
    document: Upload,
}

/// A document and the signature downloaded for it, to check offline.
#[derive(MultipartForm)]
struct ToCheck {
    #[multipart(limit = "10MiB")]
    document: Upload,
    #[multipart(limit = "64KiB")]
    signature: Upload,
}

/// The file's own name without any path, printable, at most 200 characters (what the
/// identity service accepts as a document name).
fn document_name(upload: &Upload) -> String {
    let raw = upload.file_name.as_deref().unwrap_or("document");
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    // The identity service refuses control characters and those that reorder text.
    let name: String = base
        .chars()
        .filter(|&c| !c.is_control() && !identity_sdk::signing_client::reorders_text(c))
        .take(200)
        .collect();
    if name.trim().is_empty() {
        "document".into()
    } else {
        name
    }
}

async fn sign(
    req: HttpRequest,
    MultipartForm(form): MultipartForm<ToSign>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(id) = visit_id(&req) else {
        return see("/");
    };
    let subject = {
        let visits = state.visits.lock().expect("lock");
        match visits.get(&id).and_then(|v| v.tokens.as_ref()) {
            Some(t) => t.id_token.claims().sub.clone(),
            None => return see("/"),
        }
    };
    let name = document_name(&form.document);
    // The document stays here: only its hash goes to the identity service.
    let digest = ring::digest::digest(&ring::digest::SHA256, &form.document.data)
        .as_ref()
        .to_vec();
    let mut doc = DocumentToSign::sha256(&subject, &digest, &name);
    doc.return_uri = Some(format!("{}/", state.config.url));
    let asked = match state.signing.ask(&doc).await {
        Ok(a) => a,
        Err(e) => {
            return page(&format!(
                "<p id=\"error\">{}</p><p><a href=\"/\">Back</a></p>",
                esc(&e.to_string())
            ))
        }
    };
    if let Some(v) = state.visits.lock().expect("lock").get_mut(&id) {
        v.signing
            .insert(asked.request_id.clone(), (name.clone(), digest, None));
    }
    page(&format!(
        "<p>Check that the identity service shows this code: <strong id=\"code\">{}</strong></p>\
         <p><a id=\"approve\" href=\"{}\">Approve it with your passkey</a>, then \
         <a id=\"result\" href=\"/signed/{}\">fetch the signature</a>.</p>",
        esc(&asked.code),
        esc(&asked.approval_url),
        esc(&asked.request_id)
    ))
}

async fn signed(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let request_id = path.into_inner();
    let Some(id) = visit_id(&req) else {
        return see("/");
    };
    let (name, digest, subject) = {
        let visits = state.visits.lock().expect("lock");
        let Some(v) = visits.get(&id) else {
            return see("/");
        };
        let Some((name, digest, _)) = v.signing.get(&request_id) else {
            return see("/");
        };
        let Some(t) = &v.tokens else { return see("/") };
        (
            name.clone(),
            digest.clone(),
            t.id_token.claims().sub.clone(),
        )
    };
    let status = match state.signing.status(&request_id).await {
        Ok(s) => s,
        Err(e) => return page(&format!("<p id=\"error\">{}</p>", esc(&e.to_string()))),
    };
    let Status::Signed(result) = status else {
        return page(&format!("<p id=\"state\">Not signed yet ({status:?}).</p><p><a href=\"/signed/{}\">Try again</a></p>", esc(&request_id)));
    };
    let expect = Expectations {
        request_id: &request_id,
        document_digest: &digest,
        ca_certificate: &state.ca,
        subject: &subject,
        origin: &state.config.issuer,
        audit_key: &state.audit_key,
    };
    match verify_signing_result(&result, &expect) {
        Ok(v) => {
            if let Some(visit) = state.visits.lock().expect("lock").get_mut(&id) {
                if let Some(entry) = visit.signing.get_mut(&request_id) {
                    entry.2 = Some(v.cms.clone());
                }
            }
            page(&format!(
                "<p id=\"verified\">{} is signed by {} (verified: signature, certificate, passkey approval, audit log entry {}).</p>\
                 <p><a id=\"download\" href=\"/signed/{}/p7s\">Download the signature (.p7s)</a></p><p><a href=\"/\">Back</a></p>",
                esc(&name),
                esc(&v.signature.subject_id),
                v.audit_index,
                esc(&request_id)
            ))
        }
        Err(e) => page(&format!(
            "<p id=\"error\">The signature did not verify: {}</p>",
            esc(&e.to_string())
        )),
    }
}

async fn download(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let request_id = path.into_inner();
    let cms = visit_id(&req).and_then(|id| {
        state
            .visits
            .lock()
            .expect("lock")
            .get(&id)
            .and_then(|v| v.signing.get(&request_id))
            .and_then(|e| e.2.clone())
    });
    match cms {
        Some(cms) => HttpResponse::Ok()
            .content_type("application/pkcs7-signature")
            .insert_header((
                "Content-Disposition",
                "attachment; filename=\"signature.p7s\"",
            ))
            .body(cms),
        None => see("/"),
    }
}

/// Checks a signature against its document offline, with nothing but the pinned CA: what
/// anyone holding the two files can do.
async fn verify(
    MultipartForm(form): MultipartForm<ToCheck>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let digest = ring::digest::digest(&ring::digest::SHA256, &form.document.data);
    match identity_sdk::signature::verify_detached(
        &form.signature.data,
        digest.as_ref(),
        &state.ca,
        None,
    ) {
        Ok(v) => page(&format!(
            "<p id=\"checked\">{} was signed by {}{} at {} (Unix time).</p><p><a href=\"/\">Back</a></p>",
            esc(&document_name(&form.document)),
            esc(&v.subject_id),
            v.subject_name
                .map(|n| format!(" ({})", esc(&n)))
                .unwrap_or_default(),
            v.signing_time
        )),
        Err(e) => page_with(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "<p id=\"error\">This signature does not hold for this document: {}</p><p><a href=\"/\">Back</a></p>",
                esc(&e.to_string())
            ),
        ),
    }
}

async fn logout(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let tokens = visit_id(&req)
        .and_then(|id| state.visits.lock().expect("lock").remove(&id))
        .and_then(|v| v.tokens);
    match tokens {
        Some(t) => match state.login.logout_url(
            &t.id_token_raw,
            &format!("{}/logged-out", state.config.url),
            "bye",
        ) {
            Ok(url) => see(&url),
            Err(_) => see("/logged-out"),
        },
        None => see("/logged-out"),
    }
}

async fn logged_out() -> HttpResponse {
    page("<p id=\"logged-out\">You have logged out.</p><p><a href=\"/\">Home</a></p>")
}

fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let config = Config {
        issuer: env("EXAMPLE_ISSUER", "http://localhost:8080"),
        url: env("EXAMPLE_URL", "http://localhost:8081"),
        client_id: env("EXAMPLE_CLIENT_ID", "demo-eservice"),
        secret: env("EXAMPLE_CLIENT_SECRET", "demo-eservice-secret"),
    };
    let listen = env("EXAMPLE_LISTEN", "127.0.0.1:8081");
    let fail = |what: &str, e: String| std::io::Error::other(format!("{what}: {e}"));
    let login_client = LoginClient::discover(
        &config.issuer,
        &config.client_id,
        Credentials::Secret(ClientSecret::new(config.secret.clone())),
        &format!("{}/callback", config.url),
    )
    .await
    .map_err(|e| fail("discovery", e.to_string()))?;
    let signing = SigningClient::with_client_credentials(
        &config.issuer,
        &config.client_id,
        ClientSecret::new(config.secret.clone()),
    )
    .await
    .map_err(|e| fail("signing client", e.to_string()))?;
    // Pinned at start for the example; a department pins them from its registration papers.
    let ca = signing
        .ca_certificate()
        .await
        .map_err(|e| fail("signing CA", e.to_string()))?;
    let key_text = reqwest::get(format!("{}/audit/key", config.issuer))
        .await
        .map_err(|e| fail("audit key", e.to_string()))?
        .text()
        .await
        .map_err(|e| fail("audit key", e.to_string()))?;
    let audit_key =
        VerifierKey::parse(key_text.trim()).map_err(|e| fail("audit key", e.to_string()))?;
    println!(
        "Example e-service on {} (identity service {})",
        config.url, config.issuer
    );
    let state = web::Data::new(AppState {
        config,
        login: login_client,
        signing,
        ca,
        audit_key,
        visits: Mutex::new(HashMap::new()),
    });
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            // Files are held in memory (10 MiB at most): the e-service only hashes them.
            .app_data(
                MultipartFormConfig::default()
                    .total_limit(11 << 20)
                    .memory_limit(11 << 20)
                    .error_handler(|e, _| {
                        let status = actix_web::ResponseError::status_code(&e);
                        let resp = page_with(
                            status,
                            "<p id=\"error\">The upload was refused: choose a file of at most 10 MiB.</p><p><a href=\"/\">Back</a></p>",
                        );
                        actix_web::error::InternalError::from_response(e, resp).into()
                    }),
            )
            .route("/", web::get().to(home))
            .route("/login", web::get().to(login))
            .route("/callback", web::get().to(callback))
            .route("/sign", web::post().to(sign))
            .route("/verify", web::post().to(verify))
            .route("/signed/{id}", web::get().to(signed))
            .route("/signed/{id}/p7s", web::get().to(download))
            .route("/logout", web::get().to(logout))
            .route("/logged-out", web::get().to(logged_out))
    })
    .workers(1)
    .bind(listen)?
    .run()
    .await
}
