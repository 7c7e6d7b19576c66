//! The account page: the citizen's passkeys, password, consents and security events, the
//! login it asks for, and the language switch.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use identity_core::crypto::random_token;
use identity_core::model::ACR_PASSKEY;
use identity_core::password::Password;
use identity_core::provider::SessionToken;
use identity_core::Error;

use crate::errors::{OAuthError, PageError};
use crate::html::{self, Frame};
use crate::i18n::Lang;
use crate::pages::login::{ceremony_json, logged_in, login_failure_page, LoginAgain};
use crate::params::Params;
use crate::plumbing::{
    check_csrf, cookie, csrf_for, csrf_form, html_response, json_no_store, lang_of, see_other,
    session_cookie, source_address, AppState, LANG_COOKIE, LOGIN_CSRF_COOKIE,
};

/// The random binding of the login form before a session exists (signed double submit).
pub(crate) fn login_binding(req: &HttpRequest) -> Option<String> {
    req.cookie(LOGIN_CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 43)
}

pub(crate) async fn account(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let session = session_cookie(&req);
    let frame = Frame {
        lang: lang_of(&req, None),
        here: "/account",
    };
    let Some((level, consents)) = state.provider.consents(session.clone()).await? else {
        let binding = login_binding(&req).unwrap_or_else(random_token);
        let mut resp = html_response(
            StatusCode::OK,
            html::login_page(
                &frame,
                &html::LoginView {
                    action: "/account/login",
                    passkey_action: "/account/passkey-login",
                    csrf: &csrf_for(&state, "account-login", &binding),
                    client: None,
                    username: None,
                    error: None,
                    passkey_required: false,
                },
            ),
        );
        resp.add_cookie(&cookie(LOGIN_CSRF_COOKIE, binding))
            .map_err(Error::internal)?;
        return Ok(resp);
    };
    let passkeys = state
        .provider
        .passkeys(session.clone())
        .await?
        .unwrap_or_default();
    let events = state
        .provider
        .security_events(session.clone())
        .await?
        .unwrap_or_default();
    let event_rows: Vec<html::EventRow<'_>> = events
        .iter()
        .map(|e| html::EventRow {
            time_ms: e.time_ms,
            event: &e.event,
            success: e.outcome == "success",
            about: release_of(e),
        })
        .collect();
    let token = session.map(|s| s.expose().to_owned()).unwrap_or_default();
    let consent_rows: Vec<html::ConsentRow<'_>> = consents
        .iter()
        .map(|c| html::ConsentRow {
            client_id: &c.client_id,
            name: &c.client_name,
            department: &c.department,
            scopes: &c.scopes,
        })
        .collect();
    let passkey_rows: Vec<html::PasskeyRow<'_>> = passkeys
        .iter()
        .map(|p| html::PasskeyRow {
            id: &p.id,
            name: &p.name,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
            synced: p.synced,
        })
        .collect();
    Ok(html_response(
        StatusCode::OK,
        html::account_page(
            &frame,
            &html::AccountView {
                csrf: &csrf_for(&state, "account", &token),
                logged_in_with: if level.acr == ACR_PASSKEY {
                    "passkey"
                } else if level.amr == "otp" {
                    "code"
                } else {
                    "password"
                },
                passkeys: &passkey_rows,
                consents: &consent_rows,
                events: &event_rows,
            },
        ),
    ))
}

pub(crate) fn account_login_again<'a>(
    req: &'a HttpRequest,
    csrf: &'a str,
    username: &'a str,
) -> LoginAgain<'a> {
    LoginAgain {
        req,
        here: "/account",
        action: "/account/login",
        passkey_action: "/account/passkey-login",
        csrf,
        username,
        redirect_uri: None,
    }
}

/// For a release of the citizen's data, who received it and what (claim names only, as
/// the log holds them); `None` for other events.
fn release_of(e: &identity_core::audit::Entry) -> Option<String> {
    use identity_core::audit::unescape;
    let who = unescape(&e.client)?;
    match e.event.as_str() {
        "data.released" => {
            let detail = unescape(&e.detail).unwrap_or_default();
            let claims = detail
                .split_once(':')
                .map_or(detail.as_str(), |(_, c)| c)
                .replace('+', ", ");
            Some(format!("{who} ({claims})"))
        }
        "citizen.read" => Some(who),
        _ => None,
    }
}

pub(crate) async fn account_login(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let binding = login_binding(&req).unwrap_or_default();
    let form = csrf_form(&state, "account-login", &binding, &body)?;
    let username = form.get("username").unwrap_or_default();
    let password = Password::new(form.get("password").unwrap_or_default());
    let result = state
        .provider
        .login(
            &username,
            &password,
            &source_address(&req, &state),
            session_cookie(&req),
        )
        .await;
    state.metrics.login("password", result.is_ok());
    match result {
        Ok(token) => logged_in("/account", &token),
        Err(e) => login_failure_page(
            &account_login_again(
                &req,
                &csrf_for(&state, "account-login", &binding),
                &username,
            ),
            e,
        ),
    }
}

pub(crate) async fn account_passkey_login(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let binding = login_binding(&req).unwrap_or_default();
    let form = csrf_form(&state, "account-login", &binding, &body)?;
    let result = state
        .provider
        .finish_passkey_login(
            form.get("ceremony").unwrap_or_default(),
            &form.get("credential").unwrap_or_default(),
            &source_address(&req, &state),
            session_cookie(&req),
            None,
        )
        .await;
    state.metrics.login("passkey", result.is_ok());
    match result {
        Ok(token) => logged_in("/account", &token),
        Err(e) => login_failure_page(
            &account_login_again(&req, &csrf_for(&state, "account-login", &binding), ""),
            e,
        ),
    }
}

pub(crate) fn session_csrf(
    req: &HttpRequest,
    state: &AppState,
    form: &Params,
) -> Result<SessionToken, Error> {
    let session =
        session_cookie(req).ok_or_else(|| Error::InvalidRequest("you are not logged in".into()))?;
    check_csrf(state, "account", session.expose(), form)?;
    Ok(session)
}

/// A checked form of the account page: its session, after the CSRF check.
pub(crate) fn account_form(
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<(SessionToken, Params), Error> {
    let form = Params::parse(body)?;
    let session = session_csrf(req, state, &form)?;
    Ok((session, form))
}

/// Begins adding a passkey: the options for `navigator.credentials.create`.
pub(crate) async fn passkey_register_start(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (session, _) = account_form(&req, &state, &body)?;
    let begun = state.provider.begin_passkey_registration(session).await?;
    Ok(json_no_store(&ceremony_json(begun)))
}

pub(crate) async fn passkey_register(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let (session, form) = account_form(&req, &state, &body)?;
    state
        .provider
        .finish_passkey_registration(
            session,
            form.get("ceremony").unwrap_or_default(),
            &form.get("credential").unwrap_or_default(),
            &form.get("name").unwrap_or_default(),
        )
        .await?;
    Ok(see_other("/account"))
}

pub(crate) async fn passkey_rename(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let (session, form) = account_form(&req, &state, &body)?;
    state
        .provider
        .rename_passkey(
            session,
            form.get("id").unwrap_or_default(),
            &form.get("name").unwrap_or_default(),
        )
        .await?;
    Ok(see_other("/account"))
}

pub(crate) async fn passkey_remove(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let (session, form) = account_form(&req, &state, &body)?;
    state
        .provider
        .remove_passkey(session, form.get("id").unwrap_or_default())
        .await?;
    Ok(see_other("/account"))
}

pub(crate) async fn withdraw_consent(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let (session, form) = account_form(&req, &state, &body)?;
    let client_id = form
        .get("client_id")
        .ok_or_else(|| Error::InvalidRequest("which e-service?".into()))?;
    state
        .provider
        .withdraw_consent(Some(session), client_id)
        .await?;
    Ok(see_other("/account"))
}

pub(crate) async fn set_password(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let (session, form) = account_form(&req, &state, &body)?;
    let password = Password::new(form.get("new_password").unwrap_or_default());
    state.provider.set_password(session, &password).await?;
    Ok(see_other("/account"))
}

/// The language switch: remembers the choice for a year and goes back to the page. Only a
/// path on this site is a valid way back, so the switch cannot redirect elsewhere.
pub(crate) async fn switch_language(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let lang = Lang::from_tag(&path.into_inner())
        .ok_or_else(|| Error::InvalidRequest("that language is not offered".into()))?;
    let back = Params::parse(req.query_string().as_bytes())?
        .get("back")
        .and_then(|b| same_origin_path(&state.provider.config().issuer, &b))
        .unwrap_or_else(|| "/account".into());
    let mut resp = see_other(&back);
    let mut c = cookie(LANG_COOKIE, lang.tag().to_owned());
    c.set_max_age(actix_web::cookie::time::Duration::days(365));
    resp.add_cookie(&c).map_err(Error::internal)?;
    Ok(resp)
}

/// `back` read as a browser would read it, relative to the issuer: its path and query if it
/// stays on the issuer's origin, else `None`. Parsing rather than pattern-matching the text
/// matters because browsers strip tabs and newlines and read `\\` as `/`. A path that
/// itself begins with `//` (`/.//x`, or `//x` after this origin) is refused: sent as a
/// relative `Location` it is a network-path reference to the host `x`.
pub(crate) fn same_origin_path(issuer: &str, back: &str) -> Option<String> {
    let base = url::Url::parse(issuer).ok()?;
    let to = base.join(back).ok()?;
    (to.origin() == base.origin() && !to.path().starts_with("//"))
        .then(|| to[url::Position::BeforePath..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::same_origin_path;

    #[test]
    fn the_way_back_stays_on_the_site() {
        let issuer = "http://localhost:8080";
        for bad in [
            "//evil.example",
            "/.//evil.example",
            "/a/..//evil.example",
            "http://localhost:8080//evil.example",
            "/\t/evil.example",
            "https://evil.example/",
        ] {
            assert_eq!(same_origin_path(issuer, bad), None, "{bad}");
        }
        assert_eq!(
            same_origin_path(issuer, "/activate?code=1").as_deref(),
            Some("/activate?code=1")
        );
        assert_eq!(
            same_origin_path(issuer, "http://localhost:8080/account").as_deref(),
            Some("/account")
        );
    }
}
