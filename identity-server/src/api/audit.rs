//! The auditor's HTTP interface. The checkpoint and the log's key are public; entries
//! and proofs need an access token with the `audit` scope.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use identity_core::Error;
use serde_json::json;

use crate::errors::OAuthError;
use crate::params::Params;
use crate::plumbing::AppState;

/// Most entries one request returns.
const PAGE: u64 = 10_000;

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit/checkpoint", web::get().to(checkpoint))
        .route("/audit/key", web::get().to(key))
        .route("/audit/entries", web::get().to(entries))
        .route("/audit/proof/inclusion", web::get().to(inclusion))
        .route("/audit/proof/consistency", web::get().to(consistency));
}

async fn auditor(req: &HttpRequest, state: &AppState) -> Result<(), Error> {
    crate::plumbing::api_client(req, state, "audit")
        .await
        .map(|_| ())
}

fn number(p: &Params, name: &str) -> Result<u64, Error> {
    p.get(name)
        .ok_or_else(|| Error::InvalidRequest(format!("the {name} parameter is missing")))?
        .parse()
        .map_err(|_| Error::InvalidRequest(format!("{name} must be a non-negative integer")))
}

fn query(req: &HttpRequest) -> Result<Params, Error> {
    Params::parse_strict(req.query_string().as_bytes())
}

#[utoipa::path(get, path = "/audit/checkpoint", tag = "audit",
    responses((status = 200, description = "The newest signed checkpoint (C2SP signed note)", body = String, content_type = "text/plain"),
        crate::wire::ApiErrors))]
pub(crate) async fn checkpoint(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    let provider = state.provider.clone();
    let note = web::block(move || provider.audit().latest_checkpoint())
        .await
        .map_err(Error::internal)??;
    match note {
        Some(n) => Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(n)),
        None => Err(Error::NotFound.into()),
    }
}

#[utoipa::path(get, path = "/audit/key", tag = "audit",
    responses((status = 200, description = "The log's verifier key (C2SP note key)", body = String, content_type = "text/plain")))]
pub(crate) async fn key(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!(
            "{}\n",
            state.provider.audit().verifier_key().to_text()
        ))
}

/// Entries `[start, end)` as lines of `index base64(entry)`.
#[utoipa::path(get, path = "/audit/entries", tag = "audit",
    params(("start" = u64, Query, description = "First index"), ("end" = u64, Query, description = "One past the last index")),
    security(("access_token" = [])),
    responses((status = 200, description = "Lines of `index base64(entry)`", body = String, content_type = "text/plain"),
        crate::wire::ApiErrors))]
pub(crate) async fn entries(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    auditor(&req, &state).await?;
    let p = query(&req)?;
    let (start, end) = (number(&p, "start")?, number(&p, "end")?);
    if end < start {
        return Err(Error::InvalidRequest("end must not be below start".into()).into());
    }
    let provider = state.provider.clone();
    let rows = web::block(move || provider.audit().entries(start, end, PAGE))
        .await
        .map_err(Error::internal)??;
    let mut body = String::with_capacity(rows.len() * 300);
    for r in rows {
        body.push_str(&r.index.to_string());
        body.push(' ');
        body.push_str(&STANDARD.encode(r.entry.as_bytes()));
        body.push('\n');
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(body))
}

fn hashes(proof: &[identity_sdk::audit::Hash]) -> Vec<String> {
    proof.iter().map(|h| STANDARD.encode(h)).collect()
}

#[utoipa::path(get, path = "/audit/proof/inclusion", tag = "audit",
    params(("index" = u64, Query, description = "The entry"), ("size" = u64, Query, description = "The tree size")),
    security(("access_token" = [])),
    responses((status = 200, description = "The proof", body = crate::wire::InclusionBody),
        crate::wire::ApiErrors))]
pub(crate) async fn inclusion(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    auditor(&req, &state).await?;
    let p = query(&req)?;
    let (index, size) = (number(&p, "index")?, number(&p, "size")?);
    let provider = state.provider.clone();
    let proof = web::block(move || provider.audit().inclusion_proof(index, size))
        .await
        .map_err(Error::internal)??;
    Ok(HttpResponse::Ok().json(json!({ "index": index, "size": size, "proof": hashes(&proof) })))
}

#[utoipa::path(get, path = "/audit/proof/consistency", tag = "audit",
    params(("from" = u64, Query, description = "The older size"), ("to" = u64, Query, description = "The newer size")),
    security(("access_token" = [])),
    responses((status = 200, description = "The proof", body = crate::wire::ConsistencyBody),
        crate::wire::ApiErrors))]
pub(crate) async fn consistency(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    auditor(&req, &state).await?;
    let p = query(&req)?;
    let (from, to) = (number(&p, "from")?, number(&p, "to")?);
    let provider = state.provider.clone();
    let proof = web::block(move || provider.audit().consistency_proof(from, to))
        .await
        .map_err(Error::internal)??;
    Ok(HttpResponse::Ok().json(json!({ "from": from, "to": to, "proof": hashes(&proof) })))
}
