//! The login interaction: the page an authorization request leads to, password and passkey
//! login, and consent.

use actix_web::cookie::Cookie;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use identity_core::password::Password;
use identity_core::provider::{Interaction, SessionToken};
use identity_core::Error;

use crate::errors::{OAuthError, PageError};
use crate::html::{self, Frame};
use crate::params::Params;
use crate::plumbing::{
    allow_forms_to, cookie, csrf_for, csrf_form, html_response, json_no_store, lang_of, see_other,
    session_cookie, source_address, AppState, INTERACTIONS_KEPT, INTERACTION_COOKIE,
    SESSION_COOKIE,
};

/// The interaction cookie's value with `id` first: the newest few ids, dot-separated
/// (interaction ids are base64url, which has no dot).
pub(crate) fn interactions_with(current: Option<&Cookie<'_>>, id: &str) -> String {
    let older = current
        .map(|c| c.value())
        .unwrap_or_default()
        .split('.')
        .filter(|v| !v.is_empty() && *v != id);
    std::iter::once(id)
        .chain(older)
        .take(INTERACTIONS_KEPT)
        .collect::<Vec<_>>()
        .join(".")
}

pub(crate) fn bound_interaction(req: &HttpRequest, id: &str) -> Result<(), Error> {
    match req.cookie(INTERACTION_COOKIE) {
        Some(c) if c.value().split('.').any(|v| v == id) => Ok(()),
        _ => Err(Error::InvalidRequest(
            "this sign-in was started in another browser or has expired; return to the e-service and start again".into(),
        )),
    }
}

pub(crate) async fn interaction(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    bound_interaction(&req, &id)?;
    let view = state
        .provider
        .interaction(id.clone(), session_cookie(&req))
        .await?;
    Ok(render_interaction(&req, &state, &id, view))
}

pub(crate) fn render_interaction(
    req: &HttpRequest,
    state: &AppState,
    id: &str,
    view: Interaction,
) -> HttpResponse {
    let here = format!("/interaction/{id}");
    match view {
        Interaction::Redirect(url) => see_other(&url),
        Interaction::Login {
            client_name,
            department,
            login_hint,
            ui_locales,
            passkey_required,
            redirect_uri,
        } => {
            let frame = Frame {
                lang: lang_of(req, ui_locales.as_deref()),
                here: &here,
            };
            let page = html_response(
                StatusCode::OK,
                html::login_page(
                    &frame,
                    &html::LoginView {
                        action: &format!("/interaction/{id}/login"),
                        passkey_action: &format!("/interaction/{id}/passkey"),
                        csrf: &csrf_for(state, "login", id),
                        client: Some((&client_name, &department)),
                        username: login_hint.as_deref(),
                        error: None,
                        passkey_required,
                    },
                ),
            );
            allow_forms_to(page, [redirect_uri.as_str()])
        }
        Interaction::Consent {
            client_name,
            department,
            scopes,
            ui_locales,
            redirect_uri,
        } => {
            let frame = Frame {
                lang: lang_of(req, ui_locales.as_deref()),
                here: &here,
            };
            let page = html_response(
                StatusCode::OK,
                html::consent_page(
                    &frame,
                    &format!("/interaction/{id}/consent"),
                    &csrf_for(state, "consent", id),
                    &client_name,
                    &department,
                    &scopes,
                ),
            );
            allow_forms_to(page, [redirect_uri.as_str()])
        }
    }
}

/// Where a failed login shows its form again.
pub(crate) struct LoginAgain<'a> {
    pub(crate) req: &'a HttpRequest,
    pub(crate) here: &'a str,
    pub(crate) action: &'a str,
    pub(crate) passkey_action: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) username: &'a str,
    /// Where the pending request's answer goes, for the page's CSP.
    pub(crate) redirect_uri: Option<&'a str>,
}

/// A failed login shows the form again with the reason, under the error's status. A
/// server fault is not the citizen's to retry on this form: it gets the error page.
pub(crate) fn login_failure_page(at: &LoginAgain<'_>, e: Error) -> Result<HttpResponse, PageError> {
    if crate::errors::status_of(&e).is_server_error() && !matches!(e, Error::Busy { .. }) {
        return Err(PageError(e));
    }
    let message = crate::errors::describe(&e);
    let frame = Frame {
        lang: lang_of(at.req, None),
        here: at.here,
    };
    let body = html::login_page(
        &frame,
        &html::LoginView {
            action: at.action,
            passkey_action: at.passkey_action,
            csrf: at.csrf,
            client: None,
            username: Some(at.username),
            error: Some(&message),
            passkey_required: false,
        },
    );
    let mut resp = html_response(crate::errors::status_of(&e), body);
    if let Some(uri) = at.redirect_uri {
        resp = allow_forms_to(resp, [uri]);
    }
    if let Some(s) = crate::errors::retry_after(&e) {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    Ok(resp)
}

pub(crate) async fn interaction_login(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    bound_interaction(&req, &id)?;
    let form = csrf_form(&state, "login", &id, &body)?;
    let redirect_uri = state.provider.check_pending(id.clone()).await?;
    let username = form.get("username").unwrap_or_default();
    let password = Password::new(form.get("password").unwrap_or_default());
    let result = state
        .provider
        .login_for(
            &username,
            &password,
            &source_address(&req, &state),
            session_cookie(&req),
            Some(id.clone()),
        )
        .await;
    state.metrics.login("password", result.is_ok());
    match result {
        Ok(token) => logged_in(&format!("/interaction/{id}"), &token),
        Err(e) => login_failure_page(
            &LoginAgain {
                req: &req,
                here: &format!("/interaction/{id}"),
                action: &format!("/interaction/{id}/login"),
                passkey_action: &format!("/interaction/{id}/passkey"),
                csrf: &csrf_for(&state, "login", &id),
                username: &username,
                redirect_uri: Some(&redirect_uri),
            },
            e,
        ),
    }
}

/// The passkey's answer for a pending request: a session at the passkey level, then on
/// with the request.
pub(crate) async fn interaction_passkey(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    bound_interaction(&req, &id)?;
    let form = csrf_form(&state, "login", &id, &body)?;
    let redirect_uri = state.provider.check_pending(id.clone()).await?;
    let result = state
        .provider
        .finish_passkey_login(
            form.get("ceremony").unwrap_or_default(),
            &form.get("credential").unwrap_or_default(),
            &source_address(&req, &state),
            session_cookie(&req),
            Some(id.clone()),
        )
        .await;
    state.metrics.login("passkey", result.is_ok());
    match result {
        Ok(token) => logged_in(&format!("/interaction/{id}"), &token),
        Err(e) => login_failure_page(
            &LoginAgain {
                req: &req,
                here: &format!("/interaction/{id}"),
                action: &format!("/interaction/{id}/login"),
                passkey_action: &format!("/interaction/{id}/passkey"),
                csrf: &csrf_for(&state, "login", &id),
                username: "",
                redirect_uri: Some(&redirect_uri),
            },
            e,
        ),
    }
}

/// Sets the session cookie and goes on.
pub(crate) fn logged_in(next: &str, token: &SessionToken) -> Result<HttpResponse, PageError> {
    let mut resp = see_other(next);
    resp.add_cookie(&cookie(SESSION_COOKIE, token.expose().to_owned()))
        .map_err(Error::internal)?;
    Ok(resp)
}

/// Begins a passkey login: the options for `navigator.credentials.get`, and the handle
/// that the answer must come back with. The answer has the same shape whether or not the
/// username has an account or passkeys.
pub(crate) async fn passkey_login_start(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = Params::parse(&body)?;
    let begun = state
        .provider
        .begin_passkey_login(form.get("username"), &source_address(&req, &state))
        .await?;
    Ok(json_no_store(&ceremony_json(begun)))
}

pub(crate) fn ceremony_json(begun: identity_core::provider::Ceremony) -> serde_json::Value {
    let mut options = begun.options;
    options["ceremony"] = begun.handle.into();
    options
}

pub(crate) async fn interaction_consent(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    bound_interaction(&req, &id)?;
    let form = csrf_form(&state, "consent", &id, &body)?;
    let allow = match form.get("decision").as_deref() {
        Some("allow") => true,
        Some("deny") => false,
        _ => return Err(Error::InvalidRequest("choose Allow or Deny".into()).into()),
    };
    let url = state
        .provider
        .consent(id, session_cookie(&req), allow)
        .await?;
    Ok(see_other(&url))
}
