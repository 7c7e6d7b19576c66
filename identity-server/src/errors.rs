//! The one place where core errors become HTTP: OAuth endpoints answer RFC 6749 JSON,
//! pages answer a rendered error page. Internal text is logged, never sent.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use identity_core::Error;
use serde_json::json;
use std::fmt;

use crate::html;

/// Status, OAuth error code, and a description that is safe to send.
fn classify(e: &Error) -> (StatusCode, &'static str, String) {
    match e {
        Error::InvalidRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
        Error::InvalidClient => (
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed".into(),
        ),
        Error::InvalidGrant(m) => (StatusCode::BAD_REQUEST, "invalid_grant", (*m).into()),
        Error::UnauthorizedClient(m) => (StatusCode::BAD_REQUEST, "unauthorized_client", (*m).into()),
        Error::UnsupportedGrantType => (
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "supported grant types: authorization_code, refresh_token, client_credentials".into(),
        ),
        Error::InvalidScope(m) => (StatusCode::BAD_REQUEST, "invalid_scope", m.clone()),
        Error::InvalidToken => (
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is missing, invalid, expired or revoked".into(),
        ),
        Error::InsufficientScope(scope) => (
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("the access token lacks the {scope} scope"),
        ),
        Error::BadCredentials => (
            StatusCode::UNAUTHORIZED,
            "access_denied",
            "Wrong username or password.".into(),
        ),
        Error::Throttled { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            format!("Too many attempts. Try again in {retry_after} seconds."),
        ),
        Error::Locked { retry_after } => (
            StatusCode::FORBIDDEN,
            "access_denied",
            format!(
                "Password login to this account is locked after too many failed attempts. Try again in {} minutes, or log in with a passkey.",
                retry_after.div_ceil(60)
            ),
        ),
        Error::PasskeyCloned => (
            StatusCode::BAD_REQUEST,
            "access_denied",
            "this passkey was refused because it may have been copied; use another way to log in and check your passkeys on your account page".into(),
        ),
        Error::InvalidDpopProof(m) => (StatusCode::BAD_REQUEST, "invalid_dpop_proof", m.clone()),
        Error::UseDpopNonce { resource, .. } => (
            if *resource {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            },
            "use_dpop_nonce",
            "send the DPoP proof again with the nonce in the DPoP-Nonce header".into(),
        ),
        Error::WeakPassword(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
        Error::Busy { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "The service is busy. Please try again in a moment.".into(),
        ),
        // Every Conflict text is ours (a name that is taken), never the database's.
        Error::Conflict(m) => (StatusCode::CONFLICT, "invalid_request", m.clone()),
        Error::NotFound => (StatusCode::NOT_FOUND, "invalid_request", "not found".into()),
        Error::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "The service is temporarily unavailable. Please try again shortly.".into(),
        ),
        Error::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "An internal error occurred.".into(),
        ),
    }
}

/// The HTTP status of an error.
pub fn status_of(e: &Error) -> StatusCode {
    classify(e).0
}

/// The text a citizen may see for an error.
pub fn describe(e: &Error) -> String {
    classify(e).2
}

/// The `Retry-After` seconds an error carries.
pub fn retry_after(e: &Error) -> Option<u64> {
    match e {
        Error::Throttled { retry_after }
        | Error::Busy { retry_after }
        | Error::Locked { retry_after } => Some(*retry_after),
        Error::Unavailable(_) => Some(2),
        _ => None,
    }
}

fn log(e: &Error, status: StatusCode) {
    match e {
        // Expected back-pressure: a full hashing pool, or a database outage that the
        // storage layer already reported once when it began (a line per refused request
        // would flood the log exactly when operators read it).
        Error::Busy { .. } | Error::Unavailable(_) => {
            tracing::debug!(error = %e, "request refused: unavailable")
        }
        _ if status.is_server_error() => tracing::error!(error = %e, "request failed"),
        _ => tracing::debug!(error = %e, "request refused"),
    }
}

fn finish(mut resp: HttpResponse, e: &Error) -> HttpResponse {
    if let Some(s) = retry_after(e) {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Error::UseDpopNonce { nonce, resource } = e {
        if let Ok(v) = HeaderValue::from_str(nonce) {
            resp.headers_mut()
                .insert(header::HeaderName::from_static("dpop-nonce"), v);
        }
        if *resource {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("DPoP error=\"use_dpop_nonce\""),
            );
        }
    }
    resp
}

/// An error at an OAuth endpoint: RFC 6749 JSON.
#[derive(Debug)]
pub struct OAuthError(pub Error);

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        OAuthError(e)
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        classify(&self.0).0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, description) = classify(&self.0);
        log(&self.0, status);
        let mut resp = HttpResponse::build(status)
            .json(json!({ "error": code, "error_description": description }));
        if matches!(self.0, Error::InvalidClient) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"token\""),
            );
        }
        if matches!(self.0, Error::InvalidToken) {
            // Both schemes the resources accept (RFC 6750 §3, RFC 9449 §7.1): a DPoP client
            // learns the proof algorithms, a bearer client what it always did.
            let challenge = format!(
                "Bearer error=\"invalid_token\", DPoP error=\"invalid_token\", algs=\"{}\"",
                identity_core::dpop::DPOP_ALGS.join(" ")
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        finish(resp, &self.0)
    }
}

/// An error where a person is looking: an HTML page.
#[derive(Debug)]
pub struct PageError(pub Error);

tokio::task_local! {
    /// The language of the request being served (its choice cookie, `ui_locales`, then
    /// `Accept-Language`), set by the request middleware: an error page is rendered where
    /// the request is out of reach.
    static PAGE_LANG: crate::i18n::Lang;
}

/// Runs `fut` (a request's handling) with its language for error pages.
pub async fn with_page_lang<F: std::future::Future>(lang: crate::i18n::Lang, fut: F) -> F::Output {
    PAGE_LANG.scope(lang, fut).await
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(e)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        classify(&self.0).0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, _, description) = classify(&self.0);
        log(&self.0, status);
        let lang = PAGE_LANG.try_with(|l| *l).unwrap_or(crate::i18n::Lang::En);
        let resp = HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html::error_page(lang, status.as_u16(), &description));
        finish(resp, &self.0)
    }
}
