//! Logout: the citizen's own, RP-initiated (`/end-session`), and back-channel delivery.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use identity_core::provider::SessionToken;
use identity_core::Error;

use crate::errors::PageError;
use crate::html::{self, Frame};
use crate::pages::account::account_form;
use crate::params::Params;
use crate::plumbing::{
    allow_forms_to, cookie, csrf_for, html_response, lang_of, post_in_background, see_other,
    session_cookie, AppState, SESSION_COOKIE,
};

pub(crate) async fn logout_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let frame = Frame {
        lang: lang_of(&req, None),
        here: "/logout",
    };
    let t = frame.lang.texts();
    match session_cookie(&req) {
        Some(s) => html_response(
            StatusCode::OK,
            html::account_page(
                &frame,
                &html::AccountView {
                    csrf: &csrf_for(&state, "account", s.expose()),
                    logged_in_with: "password",
                    passkeys: &[],
                    consents: &[],
                    events: &[],
                },
            ),
        ),
        None => html_response(
            StatusCode::OK,
            html::notice_page(&frame, t.logged_out_title, t.not_logged_in),
        ),
    }
}

pub(crate) async fn logout(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let (session, _) = account_form(&req, &state, &body)?;
    let notices = state.provider.logout(session).await?;
    deliver_logout(&state, notices);
    let frame = Frame {
        lang: lang_of(&req, None),
        here: "/account",
    };
    let t = frame.lang.texts();
    let mut resp = html_response(
        StatusCode::OK,
        html::notice_page(&frame, t.logged_out_title, t.logged_out),
    );
    let mut gone = cookie(SESSION_COOKIE, String::new());
    gone.make_removal();
    resp.add_cookie(&gone).map_err(Error::internal)?;
    Ok(resp)
}

/// Back-channel logout: each e-service's `logout_token` is POSTed as a form (Back-Channel
/// Logout §2.5), retried with backoff, in the background.
pub(crate) fn deliver_logout(
    state: &AppState,
    notices: Vec<identity_core::provider::LogoutNotice>,
) {
    for n in notices {
        let form = vec![("logout_token".to_owned(), n.logout_token)];
        post_in_background(state, n.uri, "back-channel logout", move |r| r.form(&form));
    }
}

pub(crate) fn end_session_input(
    p: &Params,
    confirmed: bool,
) -> identity_core::provider::EndSessionInput {
    identity_core::provider::EndSessionInput {
        id_token_hint: p.get("id_token_hint"),
        client_id: p.get("client_id"),
        post_logout_redirect_uri: p.get("post_logout_redirect_uri"),
        state: p.get("state"),
        confirmed,
    }
}

/// RP-initiated logout (`end_session_endpoint`), by GET or POST.
pub(crate) async fn end_session(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let p = Params::of_request(&req, &body)?;
    let session = session_cookie(&req);
    let outcome = state
        .provider
        .end_session(end_session_input(&p, false), session.clone())
        .await?;
    ended(&req, &state, outcome, &p, session)
}

/// The citizen confirmed the logout on our page.
pub(crate) async fn end_session_confirm(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let (session, p) = account_form(&req, &state, &body)?;
    let outcome = state
        .provider
        .end_session(end_session_input(&p, true), Some(session))
        .await?;
    ended(&req, &state, outcome, &p, None)
}

pub(crate) fn ended(
    req: &HttpRequest,
    state: &AppState,
    outcome: identity_core::provider::EndSession,
    p: &Params,
    session: Option<SessionToken>,
) -> Result<HttpResponse, PageError> {
    let frame = Frame {
        lang: lang_of(req, p.get("ui_locales").as_deref()),
        here: "/account",
    };
    let t = frame.lang.texts();
    match outcome {
        identity_core::provider::EndSession::Done { redirect, notices } => {
            deliver_logout(state, notices);
            let mut resp = match redirect {
                Some(uri) => see_other(&uri),
                None => html_response(
                    StatusCode::OK,
                    html::notice_page(&frame, t.logged_out_title, t.logged_out),
                ),
            };
            let mut gone = cookie(SESSION_COOKIE, String::new());
            gone.make_removal();
            resp.add_cookie(&gone).map_err(Error::internal)?;
            Ok(resp)
        }
        identity_core::provider::EndSession::Confirm { client_name } => {
            let token = session.map(|s| s.expose().to_owned()).unwrap_or_default();
            let keep: Vec<(&str, String)> = [
                "id_token_hint",
                "client_id",
                "post_logout_redirect_uri",
                "state",
            ]
            .into_iter()
            .filter_map(|k| p.get(k).map(|v| (k, v)))
            .collect();
            let page = html_response(
                StatusCode::OK,
                html::end_session_page(
                    &frame,
                    &csrf_for(state, "account", &token),
                    client_name.as_deref(),
                    &keep,
                ),
            );
            // The confirmation may lead to the post-logout URI, if the core finds it
            // registered; allowing its origin here decides nothing about that.
            let back = p.get("post_logout_redirect_uri");
            Ok(allow_forms_to(page, back.as_deref()))
        }
    }
}
