//! Routes and handlers. Each handler extracts, checks, makes one call into the core and
//! maps the result to a response; errors are mapped in `errors.rs`.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use identity_core::crypto::{random_token, KeyedHash};
use identity_core::model::{
    ClientSecret, ACR_PASSKEY, ACR_PASSWORD, SUPPORTED_CLAIMS, SUPPORTED_SCOPES,
};
use identity_core::password::Password;
use identity_core::provider::{
    AuthorizeInput, ClientAuth, Interaction, SessionToken, Step, TokenInput,
};
use identity_core::{Error, Provider};
use serde_json::json;

use crate::errors::{OAuthError, PageError};
use crate::html;
use crate::params::Params;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The provider.
    pub provider: Provider,
    /// Key of CSRF tokens.
    pub csrf: KeyedHash,
    /// Whether cookies must be `Secure`.
    pub secure_cookies: bool,
}

const SESSION_COOKIE: &str = "idp_session";
const INTERACTION_COOKIE: &str = "idp_interaction";
const LOGIN_CSRF_COOKIE: &str = "idp_csrf";

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/openid-configuration",
        web::get().to(discovery),
    )
    .route("/jwks", web::get().to(jwks))
    .route("/authorize", web::get().to(authorize))
    .route("/authorize", web::post().to(authorize))
    .route("/interaction/{id}", web::get().to(interaction))
    .route("/interaction/{id}/login", web::post().to(interaction_login))
    .route(
        "/interaction/{id}/consent",
        web::post().to(interaction_consent),
    )
    .route("/token", web::post().to(token))
    .route("/healthz", web::get().to(healthz))
    .route("/readyz", web::get().to(readyz))
    .route("/revoke", web::post().to(revoke))
    .route("/introspect", web::post().to(introspect))
    .route("/userinfo", web::get().to(userinfo))
    .route("/userinfo", web::post().to(userinfo))
    .route("/account", web::get().to(account))
    .route("/account/login", web::post().to(account_login))
    .route(
        "/account/consents/withdraw",
        web::post().to(withdraw_consent),
    )
    .route("/logout", web::get().to(logout_page))
    .route("/logout", web::post().to(logout))
    .route("/static/site.css", web::get().to(css))
    .route("/", web::get().to(home));
}

fn session_cookie(req: &HttpRequest) -> Option<SessionToken> {
    req.cookie(SESSION_COOKIE)
        .map(|c| SessionToken::new(c.value()))
        .filter(|t| !t.expose().is_empty() && t.expose().len() <= 64)
}

fn cookie<'a>(state: &AppState, name: &'a str, value: String, path: String) -> Cookie<'a> {
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .secure(state.secure_cookies)
        .same_site(SameSite::Lax)
        .finish()
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn html_response(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

fn csrf_for(state: &AppState, purpose: &str, binding: &str) -> String {
    state.csrf.hash(&[purpose.as_bytes(), binding.as_bytes()])
}

fn check_csrf(state: &AppState, purpose: &str, binding: &str, form: &Params) -> Result<(), Error> {
    match form.get("csrf") {
        Some(t)
            if state
                .csrf
                .verify(&[purpose.as_bytes(), binding.as_bytes()], &t) =>
        {
            Ok(())
        }
        _ => Err(Error::InvalidRequest(
            "the form has expired or did not come from this site; go back and try again".into(),
        )),
    }
}

fn source_address(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

// ----- discovery and keys -----

async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    let iss = &state.provider.config().issuer;
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/authorize"),
            "token_endpoint": format!("{iss}/token"),
            "userinfo_endpoint": format!("{iss}/userinfo"),
            "revocation_endpoint": format!("{iss}/revoke"),
            "introspection_endpoint": format!("{iss}/introspect"),
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "jwks_uri": format!("{iss}/jwks"),
            "scopes_supported": SUPPORTED_SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
            "userinfo_signing_alg_values_supported": [],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": SUPPORTED_CLAIMS,
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "prompt_values_supported": ["none", "login", "consent"],
            "acr_values_supported": [ACR_PASSWORD, ACR_PASSKEY],
            "ui_locales_supported": ["en"],
            "claims_locales_supported": ["en", "zh-Hant"],
        }))
}

async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    let provider = state.provider.clone();
    let body = web::block(move || provider.keys().jwks())
        .await
        .map_err(Error::internal)??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .content_type("application/jwk-set+json")
        .json(body))
}

// ----- authorization -----

async fn authorize(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let p = if req.method() == actix_web::http::Method::POST {
        Params::parse(&body)
    } else {
        Params::parse(req.query_string().as_bytes())
    };
    p.check()?;
    let input = AuthorizeInput {
        client_id: p.get("client_id"),
        redirect_uri: p.get("redirect_uri"),
        response_type: p.get("response_type"),
        scope: p.get("scope"),
        state: p.get("state"),
        nonce: p.get("nonce"),
        code_challenge: p.get("code_challenge"),
        code_challenge_method: p.get("code_challenge_method"),
        prompt: p.get("prompt"),
        max_age: p.get("max_age"),
        login_hint: p.get("login_hint"),
        ui_locales: p.get("ui_locales"),
        acr_values: p.get("acr_values"),
        request: p.get("request"),
        request_uri: p.get("request_uri"),
        repeated: p.repeated().to_vec(),
    };
    match state
        .provider
        .authorize(input, session_cookie(&req))
        .await?
    {
        Step::Redirect(url) => Ok(see_other(&url)),
        Step::Interact(id) => {
            // The pending request is bound to this browser by a cookie scoped to its own
            // path, so a link to someone else's request cannot be completed here.
            let mut resp = see_other(&format!("/interaction/{id}"));
            resp.add_cookie(&cookie(
                &state,
                INTERACTION_COOKIE,
                id.clone(),
                format!("/interaction/{id}"),
            ))
            .map_err(Error::internal)?;
            Ok(resp)
        }
    }
}

fn bound_interaction(req: &HttpRequest, id: &str) -> Result<(), Error> {
    match req.cookie(INTERACTION_COOKIE) {
        Some(c) if c.value() == id => Ok(()),
        _ => Err(Error::InvalidRequest(
            "this sign-in was started in another browser or has expired; return to the e-service and start again".into(),
        )),
    }
}

async fn interaction(
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
    Ok(render_interaction(&state, &id, view, None, StatusCode::OK))
}

fn render_interaction(
    state: &AppState,
    id: &str,
    view: Interaction,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    match view {
        Interaction::Redirect(url) => see_other(&url),
        Interaction::Login {
            client_name,
            department,
            login_hint,
            ..
        } => html_response(
            status,
            html::login_page(&html::LoginView {
                action: &format!("/interaction/{id}/login"),
                csrf: &csrf_for(state, "login", id),
                client: Some((&client_name, &department)),
                username: login_hint.as_deref(),
                error,
            }),
        ),
        Interaction::Consent {
            client_name,
            department,
            scopes,
            ..
        } => html_response(
            status,
            html::consent_page(
                &format!("/interaction/{id}/consent"),
                &csrf_for(state, "consent", id),
                &client_name,
                &department,
                &scopes,
            ),
        ),
    }
}

/// A failed login shows the form again with the reason, under the error's status.
fn login_failure_page(
    action: &str,
    csrf: &str,
    username: &str,
    e: Error,
) -> Result<HttpResponse, PageError> {
    if !matches!(
        e,
        Error::BadCredentials | Error::Throttled { .. } | Error::Locked | Error::Busy { .. }
    ) {
        return Err(PageError(e));
    }
    let message = crate::errors::describe(&e);
    let body = html::login_page(&html::LoginView {
        action,
        csrf,
        client: None,
        username: Some(username),
        error: Some(&message),
    });
    let mut resp = html_response(crate::errors::status_of(&e), body);
    if let Some(s) = crate::errors::retry_after(&e) {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    Ok(resp)
}

async fn interaction_login(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    bound_interaction(&req, &id)?;
    let form = Params::parse(&body);
    form.check()?;
    check_csrf(&state, "login", &id, &form)?;
    state.provider.check_pending(id.clone()).await?;
    let username = form.get("username").unwrap_or_default();
    let password = Password::new(form.get("password").unwrap_or_default());
    let action = format!("/interaction/{id}/login");
    match state
        .provider
        .login_for(
            &username,
            &password,
            &source_address(&req),
            session_cookie(&req),
            Some(id.clone()),
        )
        .await
    {
        Ok(token) => {
            let mut resp = see_other(&format!("/interaction/{id}"));
            resp.add_cookie(&cookie(
                &state,
                SESSION_COOKIE,
                token.expose().to_owned(),
                "/".into(),
            ))
            .map_err(Error::internal)?;
            Ok(resp)
        }
        Err(e) => login_failure_page(&action, &csrf_for(&state, "login", &id), &username, e),
    }
}

async fn interaction_consent(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    bound_interaction(&req, &id)?;
    let form = Params::parse(&body);
    form.check()?;
    check_csrf(&state, "consent", &id, &form)?;
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

// ----- token and userinfo -----

fn client_auth(req: &HttpRequest, form: &Params) -> Result<ClientAuth, Error> {
    let basic = match req.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| Error::InvalidClient)?;
            match v.strip_prefix("Basic ") {
                None => None,
                Some(b64) => {
                    let raw = STANDARD
                        .decode(b64.trim())
                        .map_err(|_| Error::InvalidClient)?;
                    let raw = String::from_utf8(raw).map_err(|_| Error::InvalidClient)?;
                    let (id, secret) = raw.split_once(':').ok_or(Error::InvalidClient)?;
                    // RFC 6749 §2.3.1: both halves are form-urlencoded.
                    let decode = |s: &str| -> String {
                        url::form_urlencoded::parse(format!("x={s}").as_bytes())
                            .next()
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default()
                    };
                    let (id, secret) = (decode(id), decode(secret));
                    if id.chars().chain(secret.chars()).any(char::is_control) {
                        return Err(Error::InvalidClient);
                    }
                    Some((id, secret))
                }
            }
        }
    };
    match (basic, form.get("client_id"), form.get("client_secret")) {
        (Some(_), _, Some(_)) => Err(Error::InvalidRequest(
            "use one client authentication method, not both".into(),
        )),
        (Some((id, _)), Some(body_id), None) if id != body_id => Err(Error::InvalidRequest(
            "client_id does not match the Authorization header".into(),
        )),
        (Some((id, secret)), _, None) => Ok(ClientAuth::Secret {
            id,
            secret: ClientSecret::new(secret),
        }),
        (None, Some(id), Some(secret)) => Ok(ClientAuth::Secret {
            id,
            secret: ClientSecret::new(secret),
        }),
        (None, Some(id), None) => Ok(ClientAuth::None { id }),
        (None, None, _) => Err(Error::InvalidClient),
    }
}

async fn token(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = Params::parse(&body);
    form.check()?;
    if let Some(p) = form.repeated().first() {
        return Err(Error::InvalidRequest(format!("the {p} parameter is repeated")).into());
    }
    let auth = client_auth(&req, &form)?;
    let input = TokenInput {
        grant_type: form.get("grant_type"),
        code: form.get("code"),
        redirect_uri: form.get("redirect_uri"),
        code_verifier: form.get("code_verifier"),
        refresh_token: form.get("refresh_token"),
        scope: form.get("scope"),
    };
    let resp = state.provider.token(auth, input).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(resp))
}

/// The client authentication and the `token` parameter of revocation and introspection.
fn token_request(req: &HttpRequest, body: &[u8]) -> Result<(ClientAuth, String), Error> {
    let form = Params::parse(body);
    form.check()?;
    if let Some(p) = form.repeated().first() {
        return Err(Error::InvalidRequest(format!(
            "the {p} parameter is repeated"
        )));
    }
    let auth = client_auth(req, &form)?;
    let token = form
        .get("token")
        .ok_or_else(|| Error::InvalidRequest("the token parameter is missing".into()))?;
    Ok((auth, token))
}

/// RFC 7009: 200 with an empty body whether or not the token was known.
async fn revoke(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (auth, token) = token_request(&req, &body)?;
    state.provider.revoke(auth, token).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// RFC 7662.
async fn introspect(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (auth, token) = token_request(&req, &body)?;
    let answer = state.provider.introspect(auth, token).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(answer))
}

fn bearer(req: &HttpRequest, body: &[u8]) -> Result<String, Error> {
    let header_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body_token = if req.method() == actix_web::http::Method::POST && is_form {
        Params::parse(body).get("access_token")
    } else {
        None
    };
    match (header_token, body_token) {
        (Some(_), Some(_)) => Err(Error::InvalidRequest("send the access token once".into())),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(Error::InvalidToken),
    }
}

async fn userinfo(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let token = bearer(&req, &body)?;
    let claims = state.provider.userinfo(token).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(claims))
}

// ----- account, logout -----

async fn account(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let session = session_cookie(&req);
    match state.provider.consents(session.clone()).await? {
        Some((_, consents)) => {
            let token = session.map(|s| s.expose().to_owned()).unwrap_or_default();
            let rows: Vec<html::ConsentRow<'_>> = consents
                .iter()
                .map(|c| html::ConsentRow {
                    client_id: &c.client_id,
                    name: &c.client_name,
                    department: &c.department,
                    scopes: &c.scopes,
                })
                .collect();
            Ok(html_response(
                StatusCode::OK,
                html::account_page(&csrf_for(&state, "account", &token), &rows),
            ))
        }
        None => {
            // Before a session exists, the form is bound to a random cookie (signed double submit).
            let binding = req
                .cookie(LOGIN_CSRF_COOKIE)
                .map(|c| c.value().to_owned())
                .filter(|v| v.len() == 43)
                .unwrap_or_else(random_token);
            let mut resp = html_response(
                StatusCode::OK,
                html::login_page(&html::LoginView {
                    action: "/account/login",
                    csrf: &csrf_for(&state, "account-login", &binding),
                    client: None,
                    username: None,
                    error: None,
                }),
            );
            resp.add_cookie(&cookie(
                &state,
                LOGIN_CSRF_COOKIE,
                binding,
                "/account".into(),
            ))
            .map_err(Error::internal)?;
            Ok(resp)
        }
    }
}

async fn account_login(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let form = Params::parse(&body);
    form.check()?;
    let binding = req
        .cookie(LOGIN_CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    check_csrf(&state, "account-login", &binding, &form)?;
    let username = form.get("username").unwrap_or_default();
    let password = Password::new(form.get("password").unwrap_or_default());
    match state
        .provider
        .login(
            &username,
            &password,
            &source_address(&req),
            session_cookie(&req),
        )
        .await
    {
        Ok(token) => {
            let mut resp = see_other("/account");
            resp.add_cookie(&cookie(
                &state,
                SESSION_COOKIE,
                token.expose().to_owned(),
                "/".into(),
            ))
            .map_err(Error::internal)?;
            Ok(resp)
        }
        Err(e) => login_failure_page(
            "/account/login",
            &csrf_for(&state, "account-login", &binding),
            &username,
            e,
        ),
    }
}

fn session_csrf(req: &HttpRequest, state: &AppState, form: &Params) -> Result<SessionToken, Error> {
    let session =
        session_cookie(req).ok_or_else(|| Error::InvalidRequest("you are not logged in".into()))?;
    check_csrf(state, "account", session.expose(), form)?;
    Ok(session)
}

async fn withdraw_consent(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let form = Params::parse(&body);
    form.check()?;
    let session = session_csrf(&req, &state, &form)?;
    let client_id = form
        .get("client_id")
        .ok_or_else(|| Error::InvalidRequest("which e-service?".into()))?;
    state
        .provider
        .withdraw_consent(Some(session), client_id)
        .await?;
    Ok(see_other("/account"))
}

async fn logout_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    match session_cookie(&req) {
        Some(s) => html_response(
            StatusCode::OK,
            html::account_page(&csrf_for(&state, "account", s.expose()), &[]),
        ),
        None => html_response(
            StatusCode::OK,
            html::notice_page("Logged out", "You are not logged in."),
        ),
    }
}

async fn logout(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let form = Params::parse(&body);
    form.check()?;
    let session = session_csrf(&req, &state, &form)?;
    state.provider.logout(session).await?;
    let mut resp = html_response(
        StatusCode::OK,
        html::notice_page("Logged out", "You have logged out."),
    );
    let mut gone = cookie(&state, SESSION_COOKIE, String::new(), "/".into());
    gone.make_removal();
    resp.add_cookie(&gone).map_err(Error::internal)?;
    Ok(resp)
}

/// Liveness: the process answers.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Readiness: the database answers and its schema is current; otherwise 503.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    let provider = state.provider.clone();
    web::block(move || provider.ready())
        .await
        .map_err(Error::internal)??;
    Ok(HttpResponse::Ok()
        .content_type("text/plain")
        .body("ready\n"))
}

async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        ))
        .body(include_str!("../static/site.css"))
}

async fn home() -> HttpResponse {
    see_other("/account")
}
