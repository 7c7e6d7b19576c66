//! Operations: liveness, readiness and the metrics (whose counters are `metrics.rs`); the
//! OpenAPI document has its own module.

use actix_web::http::header::{self};
use actix_web::{web, HttpResponse};
use identity_core::Error;

use crate::errors::OAuthError;
use crate::plumbing::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Readiness: the database answers and its schema is current; otherwise 503.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "The database answers and its schema is current", body = String, content_type = "text/plain"),
        crate::wire::ApiErrors))]
pub(crate) async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    let provider = state.provider.clone();
    let unready = web::block(move || provider.ready().map(|()| provider.unready_reason()))
        .await
        .map_err(Error::internal)??;
    // The reason is ours (never the database's text): the operator's probe shows it.
    Ok(match unready {
        Some(reason) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .insert_header((header::RETRY_AFTER, "5"))
            .body(format!("not ready: {reason}\n")),
        None => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
    })
}

/// The metrics in Prometheus' text format (on the metrics listener only).
pub(crate) async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    let body = web::block(move || state.metrics.render(&state.provider))
        .await
        .map_err(identity_core::Error::internal)??;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body))
}
