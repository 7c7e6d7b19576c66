//! The registration officer's JSON interface: enrol a verified citizen, change their
//! attributes, suspend, close or reopen the account, and ask for or approve a recovery.
//! Every call needs an access token with the `registration` scope (client credentials of
//! the registration office's system) and names the officer at the counter in the `Officer`
//! header; the audit log records `client/officer`. A recovery takes two officers: one asks,
//! a different one approves, and only then is the new code issued.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use identity_core::provider::{AccountStatus, ActivationCode, Registration, RegistrationUpdate};
use identity_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::errors::OAuthError;
use crate::plumbing::{api_client, AppState};

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/registration/citizens", web::post().to(enrol))
        .route("/registration/citizens/{id}", web::get().to(show))
        .route("/registration/citizens/{id}", web::patch().to(update))
        .route("/registration/citizens/{id}/status", web::post().to(status))
        .route(
            "/registration/citizens/{id}/recovery",
            web::post().to(recovery),
        )
        .route(
            "/registration/recoveries/{id}/approval",
            web::post().to(approve_recovery),
        );
}

/// The officer identity a call is recorded under: the office system's client id and the
/// officer it names in the `Officer` header (1 to 64 of letters, digits and `._@-`).
async fn officer(req: &HttpRequest, state: &AppState) -> Result<String, Error> {
    let client = api_client(req, state, "registration").await?;
    let named = req
        .headers()
        .get("officer")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
        })
        .ok_or_else(|| {
            Error::InvalidRequest(
                "name the officer in the Officer header (1 to 64 letters, digits, '.', '_', '@' or '-')"
                    .into(),
            )
        })?;
    Ok(format!("{client}/{named}"))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrolBody {
    username: String,
    name_en: String,
    name_zh: String,
    date_of_birth: String,
    gender: Option<String>,
    id_document: String,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBody {
    name_en: Option<String>,
    name_zh: Option<String>,
    date_of_birth: Option<String>,
    gender: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusBody {
    status: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecoveryBody {
    #[serde(default)]
    remove_passkeys: bool,
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        // serde's message names the field and the position, never more of the input.
        Error::InvalidRequest(format!("the body is not the expected JSON: {e}"))
    })
}

/// The activation code as the officer hands it over: the code, a link, and a QR code of
/// the link for the citizen's phone.
fn activation_json(state: &AppState, code: &ActivationCode) -> Value {
    let link = crate::plumbing::activation_link(state, code.expose());
    let qr = qrcode::QrCode::new(link.as_bytes())
        .map(|q| {
            q.render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .build()
        })
        .ok();
    json!({
        "code": code.expose(),
        "url": link,
        "qr_svg": qr,
        "expires_at": code.expires_at,
    })
}

fn no_store(status: StatusCode, value: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(value)
}

#[utoipa::path(post, path = "/registration/citizens", tag = "registration",
    params(("Officer" = String, Header, description = "The officer at the counter, recorded in the audit log")),
    request_body(content = EnrolBody),
    security(("access_token" = [])),
    responses((status = 201, description = "Enrolled; hand the activation code to the citizen", body = crate::wire::EnrolledBody),
        crate::wire::ApiErrors))]
pub(crate) async fn enrol(
    req: HttpRequest,
    bytes: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let officer = officer(&req, &state).await?;
    let b: EnrolBody = body(&bytes)?;
    let (id, code) = state
        .provider
        .enrol(
            &officer,
            Registration {
                username: b.username,
                name_en: b.name_en,
                name_zh: b.name_zh,
                date_of_birth: b.date_of_birth,
                gender: b.gender,
                id_document: b.id_document,
                email: b.email,
                phone: b.phone,
                address: b.address,
            },
        )
        .await?;
    Ok(no_store(
        StatusCode::CREATED,
        &json!({ "citizen_id": id, "activation": activation_json(&state, &code) }),
    ))
}

#[utoipa::path(get, path = "/registration/citizens/{id}", tag = "registration",
    params(("id" = String, Path, description = "The citizen's id"),
        ("Officer" = String, Header, description = "The officer at the counter, recorded in the audit log")),
    security(("access_token" = [])),
    responses((status = 200, description = "The registration", body = crate::wire::CitizenBody),
        crate::wire::ApiErrors))]
pub(crate) async fn show(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let officer = officer(&req, &state).await?;
    let r = state
        .provider
        .registration(&officer, &path.into_inner())
        .await?;
    Ok(no_store(
        StatusCode::OK,
        &json!({
            "citizen_id": r.id,
            "username": r.username,
            "name_en": r.name_en,
            "name_zh": r.name_zh,
            "date_of_birth": r.date_of_birth,
            "gender": r.gender,
            "id_document": r.id_document_masked,
            "email": r.email,
            "phone": r.phone,
            "address": r.address,
            "status": r.status,
            "passkeys": r.passkeys,
            "has_password": r.has_password,
        }),
    ))
}

#[utoipa::path(patch, path = "/registration/citizens/{id}", tag = "registration",
    params(("id" = String, Path, description = "The citizen's id"),
        ("Officer" = String, Header, description = "The officer at the counter, recorded in the audit log")),
    request_body(content = UpdateBody),
    security(("access_token" = [])),
    responses((status = 204, description = "Changed"),
        crate::wire::ApiErrors))]
pub(crate) async fn update(
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let officer = officer(&req, &state).await?;
    let b: UpdateBody = body(&bytes)?;
    state
        .provider
        .update_registration(
            &officer,
            &path.into_inner(),
            RegistrationUpdate {
                name_en: b.name_en,
                name_zh: b.name_zh,
                date_of_birth: b.date_of_birth,
                gender: b.gender,
                email: b.email,
                phone: b.phone,
                address: b.address,
            },
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/registration/citizens/{id}/status", tag = "registration",
    params(("id" = String, Path, description = "The citizen's id"),
        ("Officer" = String, Header, description = "The officer at the counter, recorded in the audit log")),
    request_body(content = StatusBody),
    security(("access_token" = [])),
    responses((status = 204, description = "Changed"),
        crate::wire::ApiErrors))]
pub(crate) async fn status(
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let officer = officer(&req, &state).await?;
    let b: StatusBody = body(&bytes)?;
    let status = AccountStatus::parse(&b.status)?;
    state
        .provider
        .set_account_status(&officer, &path.into_inner(), status)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/registration/citizens/{id}/recovery", tag = "registration",
    params(("id" = String, Path, description = "The citizen's id"),
        ("Officer" = String, Header, description = "The officer at the counter, recorded in the audit log")),
    request_body(content = RecoveryBody),
    security(("access_token" = [])),
    responses((status = 202, description = "Asked for; nothing changes until a different officer approves", body = crate::wire::RecoveryRequestedBody),
        crate::wire::ApiErrors))]
pub(crate) async fn recovery(
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let officer = officer(&req, &state).await?;
    let b: RecoveryBody = body(&bytes)?;
    let request = state
        .provider
        .request_recovery(&officer, &path.into_inner(), b.remove_passkeys)
        .await?;
    Ok(no_store(
        StatusCode::ACCEPTED,
        &json!({
            "recovery_request": request,
            "approval": format!("/registration/recoveries/{request}/approval"),
        }),
    ))
}

#[utoipa::path(post, path = "/registration/recoveries/{id}/approval", tag = "registration",
    params(("id" = String, Path, description = "The recovery request's id"),
        ("Officer" = String, Header, description = "The approving officer: not the one who asked")),
    security(("access_token" = [])),
    responses((status = 200, description = "Approved: sessions ended, grants revoked, the password removed; a new activation code", body = crate::wire::RecoveryStartedBody),
        crate::wire::ApiErrors))]
pub(crate) async fn approve_recovery(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let officer = officer(&req, &state).await?;
    let code = state
        .provider
        .approve_recovery(&officer, &path.into_inner())
        .await?;
    Ok(no_store(
        StatusCode::OK,
        &json!({ "activation": activation_json(&state, &code) }),
    ))
}
