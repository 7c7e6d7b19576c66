//! Activation of an enrolled account with its one-time code and the date of birth.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use identity_core::crypto::random_token;
use identity_core::Error;

use crate::errors::PageError;
use crate::html::{self, Frame};
use crate::pages::account::login_binding;
use crate::pages::login::logged_in;
use crate::params::Params;
use crate::plumbing::{
    activation_link, cookie, csrf_for, csrf_form, html_response, lang_of, session_cookie,
    source_address, AppState, LOGIN_CSRF_COOKIE,
};

/// The activation page: the one-time code (from the link, or typed) and the date of birth.
pub(crate) async fn activation_page(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let code = Params::parse(req.query_string().as_bytes())?
        .get("code")
        .filter(|c| c.len() <= 64);
    render_activation(&req, &state, code.as_deref(), None, StatusCode::OK)
}

pub(crate) fn render_activation(
    req: &HttpRequest,
    state: &AppState,
    code: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let binding = login_binding(req).unwrap_or_else(random_token);
    // The language switch comes back with the code filled in.
    let here = match code {
        Some(c) => activation_link(state, c)
            .trim_start_matches(state.provider.config().issuer.as_str())
            .to_owned(),
        None => "/activate".to_owned(),
    };
    let frame = Frame {
        lang: lang_of(req, None),
        here: &here,
    };
    let mut resp = html_response(
        status,
        html::activation_page(&frame, &csrf_for(state, "activate", &binding), code, error),
    );
    resp.add_cookie(&cookie(LOGIN_CSRF_COOKIE, binding))
        .map_err(Error::internal)?;
    Ok(resp)
}

pub(crate) async fn activate(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let binding = login_binding(&req).unwrap_or_default();
    let form = csrf_form(&state, "activate", &binding, &body)?;
    let code = form.get("code").unwrap_or_default();
    let result = state
        .provider
        .activate(
            &code,
            &form.get("date_of_birth").unwrap_or_default(),
            &source_address(&req, &state),
            session_cookie(&req),
        )
        .await;
    match result {
        Ok(token) => logged_in("/account", &token),
        Err(e) if !crate::errors::status_of(&e).is_server_error() => {
            let message = crate::errors::describe(&e);
            let mut resp = render_activation(
                &req,
                &state,
                Some(&code),
                Some(&message),
                crate::errors::status_of(&e),
            )?;
            if let Some(s) = crate::errors::retry_after(&e) {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}
