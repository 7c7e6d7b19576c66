//! The e-service's signing API and the citizen's approval page.
//!
//! An e-service with the `signing` scope (by client credentials, or the citizen's own access
//! token) creates a request and polls its result; the citizen opens the approval URL,
//! compares the identification code, and approves with a passkey or rejects.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use identity_core::provider::NewSigningRequest;
use identity_core::Error;
use serde::Deserialize;
use serde_json::json;

use crate::errors::{OAuthError, PageError};
use crate::html::{self, Frame};
use crate::plumbing::AppState;

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/signing/requests", web::post().to(create))
        .route("/signing/requests/{id}", web::get().to(result))
        .route("/signing/ca", web::get().to(ca))
        .route("/sign/{id}", web::get().to(approval_page))
        .route("/sign/{id}/start", web::post().to(start))
        .route("/sign/{id}/approve", web::post().to(approve))
        .route("/sign/{id}/reject", web::post().to(reject));
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    subject: String,
    hash_alg: String,
    document_hash: String,
    document_name: String,
    description: Option<String>,
    return_uri: Option<String>,
    callback_uri: Option<String>,
}

async fn caller(req: &HttpRequest, state: &AppState) -> Result<(String, Option<String>), Error> {
    crate::plumbing::api_caller(req, state, "signing").await
}

#[utoipa::path(post, path = "/signing/requests", tag = "signing",
    request_body(content = CreateBody),
    security(("access_token" = [])),
    responses((status = 201, description = "Asked; show the code and send the citizen to the approval URL", body = crate::wire::SigningCreatedBody),
        crate::wire::ApiErrors))]
pub(crate) async fn create(
    req: HttpRequest,
    bytes: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (client, citizen) = caller(&req, &state).await?;
    let b: CreateBody = serde_json::from_slice(&bytes)
        .map_err(|e| Error::InvalidRequest(format!("the body is not the expected JSON: {e}")))?;
    let v = state
        .provider
        .create_signing_request(
            &client,
            citizen,
            NewSigningRequest {
                subject: b.subject,
                hash_alg: b.hash_alg,
                document_hash: b.document_hash,
                document_name: b.document_name,
                description: b.description,
                return_uri: b.return_uri,
                callback_uri: b.callback_uri,
            },
        )
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "request_id": v.id,
            "code": v.code,
            "subject": v.subject,
            "approval_url": format!("{}/sign/{}", state.provider.config().issuer, v.id),
            "expires_at": v.expires_at,
            "state": v.state,
        })))
}

#[utoipa::path(get, path = "/signing/requests/{id}", tag = "signing",
    params(("id" = String, Path, description = "The request id")),
    security(("access_token" = [])),
    responses((status = 200, description = "Where the request stands", body = crate::wire::SigningStatusBody),
        crate::wire::ApiErrors))]
pub(crate) async fn result(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (client, _) = caller(&req, &state).await?;
    let r = state
        .provider
        .signing_result(client, path.into_inner())
        .await?;
    let mut body = json!({ "state": r.state });
    if let Some(signed) = r.signed {
        body["signed"] = signed;
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// The signing CA's certificate, for e-services to pin and for `openssl cms -verify -CAfile`.
#[utoipa::path(get, path = "/signing/ca", tag = "signing",
    responses((status = 200, description = "The signing CA's certificate, to pin", body = String, content_type = "application/x-pem-file"),
        crate::wire::ApiErrors))]
pub(crate) async fn ca(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    let provider = state.provider.clone();
    let ca = web::block(move || provider.signing_ca())
        .await
        .map_err(Error::internal)??;
    let b64 = STANDARD.encode(&ca.cert_der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    Ok(HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )))
}

fn frame<'a>(req: &HttpRequest, here: &'a str) -> Frame<'a> {
    Frame {
        lang: crate::plumbing::lang_of(req, None),
        here,
    }
}

async fn approval_page(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    let here = format!("/sign/{id}");
    let v = state.provider.signing_request(id.clone()).await?;
    let page = crate::plumbing::html_response(
        StatusCode::OK,
        html::signing_page(
            &frame(&req, &here),
            &html::SigningView {
                id: &v.id,
                csrf: &crate::plumbing::csrf_for(&state, "sign", &v.id),
                client: &v.client_name,
                department: &v.department,
                document: &v.document_name,
                description: v.description.as_deref(),
                hash_alg: &v.hash_alg,
                hash_short: &v.hash_short,
                code: &v.code,
            },
        ),
    );
    // Approving or rejecting leads back to the return_uri, registered for the client.
    Ok(crate::plumbing::allow_forms_to(
        page,
        v.return_uri.as_deref(),
    ))
}

async fn start(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let begun = state
        .provider
        .begin_signing_approval(path.into_inner())
        .await?;
    Ok(crate::plumbing::json_no_store(
        &crate::pages::login::ceremony_json(begun),
    ))
}

/// Tells the e-service that the citizen decided: a POST of `{request_id, state}` (never the
/// result, which it fetches with its own credentials), retried with backoff, in the
/// background so the citizen's page does not wait for the e-service.
fn notify(state: &AppState, uri: Option<String>, id: &str, outcome: &'static str) {
    let Some(uri) = uri else { return };
    let body = json!({ "request_id": id, "state": outcome });
    crate::plumbing::post_in_background(state, uri, "signing callback", move |r| r.json(&body));
}

/// Where the citizen goes after deciding: back to the e-service with the outcome, or a
/// notice when it gave no return address.
fn decided(req: &HttpRequest, id: &str, back: Option<String>, outcome: &str) -> HttpResponse {
    match back {
        Some(uri) => {
            let sep = if uri.contains('?') { '&' } else { '?' };
            crate::plumbing::see_other(&format!("{uri}{sep}signing_request={id}&result={outcome}"))
        }
        None => {
            let here = format!("/sign/{id}");
            let f = frame(req, &here);
            let t = f.lang.texts();
            let text = if outcome == "signed" {
                t.signed_notice
            } else {
                t.rejected_notice
            };
            crate::plumbing::html_response(
                StatusCode::OK,
                html::notice_page(&f, t.sign_title, text),
            )
        }
    }
}

async fn approve(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    let form = crate::plumbing::csrf_form(&state, "sign", &id, &body)?;
    let d = state
        .provider
        .approve_signing(
            id.clone(),
            form.get("ceremony").unwrap_or_default(),
            &form.get("credential").unwrap_or_default(),
            &crate::plumbing::source_address(&req, &state),
        )
        .await?;
    notify(&state, d.callback_uri, &id, "signed");
    Ok(decided(&req, &id, d.return_uri, "signed"))
}

async fn reject(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    crate::plumbing::csrf_form(&state, "sign", &id, &body)?;
    let d = state.provider.reject_signing(id.clone()).await?;
    notify(&state, d.callback_uri, &id, "rejected");
    Ok(decided(&req, &id, d.return_uri, "rejected"))
}
