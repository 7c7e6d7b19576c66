//! Routes and handlers. Each handler extracts, checks, makes one call into the core and
//! maps the result to a response; errors are mapped in `errors.rs`.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use identity_core::crypto::{random_token, KeyedHash};
use identity_core::dpop::Presented;
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
use crate::html::{self, Frame};
use crate::i18n::Lang;
use crate::params::Params;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The provider.
    pub provider: Provider,
    /// Key of CSRF tokens.
    pub csrf: KeyedHash,
    /// Outgoing calls on a client's behalf (signing callbacks, back-channel logout):
    /// rustls, short timeouts, no redirects, internal addresses only as `outbound_allow` says.
    pub outbound: crate::outbound::Outbound,
    /// Prometheus metrics.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Reverse proxies whose forwarding header is believed.
    pub trusted_proxies: std::sync::Arc<Vec<ipnet::IpNet>>,
    /// The header they write.
    pub forwarded_header: crate::config::ForwardedHeader,
}

// `__Host-`: the browser accepts these only from this origin, Secure, with `Path=/` and no
// `Domain`, so a sibling subdomain (another department's site) cannot plant one to fix a
// session or a CSRF binding. Browsers keep Secure cookies on http://localhost too.
const SESSION_COOKIE: &str = "__Host-idp_session";
const INTERACTION_COOKIE: &str = "__Host-idp_interaction";
const LOGIN_CSRF_COOKIE: &str = "__Host-idp_csrf";
const LANG_COOKIE: &str = "__Host-idp_lang";
/// Pending sign-ins one browser may have at once (tabs), in the interaction cookie.
const INTERACTIONS_KEPT: usize = 4;

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/openid-configuration",
        web::get().to(discovery),
    )
    .route("/jwks", web::get().to(jwks))
    .route("/authorize", web::get().to(authorize))
    .route("/authorize", web::post().to(authorize))
    // Routes with a path parameter come after the fixed paths: each one a request passes
    // on its way costs a regular-expression match, and `/token` is the busiest route.
    .route("/token", web::post().to(token))
    .route("/par", web::post().to(par))
    .route("/healthz", web::get().to(healthz))
    .route("/openapi.json", web::get().to(crate::openapi::serve))
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
    .route("/end-session", web::get().to(end_session))
    .route("/end-session", web::post().to(end_session))
    .route("/end-session/confirm", web::post().to(end_session_confirm))
    .route("/logout", web::get().to(logout_page))
    .route("/logout", web::post().to(logout))
    .route("/interaction/{id}", web::get().to(interaction))
    .route("/interaction/{id}/login", web::post().to(interaction_login))
    .route(
        "/interaction/{id}/consent",
        web::post().to(interaction_consent),
    )
    .route(
        "/interaction/{id}/passkey",
        web::post().to(interaction_passkey),
    )
    .route("/webauthn/login/start", web::post().to(passkey_login_start))
    .route(
        "/account/passkey-login",
        web::post().to(account_passkey_login),
    )
    .route(
        "/account/passkeys/start",
        web::post().to(passkey_register_start),
    )
    .route("/account/passkeys", web::post().to(passkey_register))
    .route("/account/passkeys/rename", web::post().to(passkey_rename))
    .route("/account/passkeys/remove", web::post().to(passkey_remove))
    .route("/lang/{tag}", web::get().to(switch_language))
    .route("/activate", web::get().to(activation_page))
    .route("/activate", web::post().to(activate))
    .route("/account/password", web::post().to(set_password))
    .route("/static/site.css", web::get().to(css))
    .route("/static/passkey.js", web::get().to(passkey_js))
    .route("/", web::get().to(home));
}

fn session_cookie(req: &HttpRequest) -> Option<SessionToken> {
    req.cookie(SESSION_COOKIE)
        .map(|c| SessionToken::new(c.value()))
        .filter(|t| !t.expose().is_empty() && t.expose().len() <= 64)
}

/// One of our cookies: `__Host-` rules (Secure, `Path=/`, no `Domain`), HttpOnly, Lax.
fn cookie(name: &str, value: String) -> Cookie<'_> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .finish()
}

pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

pub(crate) fn html_response(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// A page whose forms lead, through the answer's redirect, to `uris` (registered redirect,
/// return or logout URIs): its CSP's `form-action` allows their origins besides `'self'`,
/// since browsers apply `form-action` to the redirects after a form's submission. Origins,
/// not the URIs, because a source expression cannot carry every character a path can.
pub(crate) fn allow_forms_to<'a>(
    mut resp: HttpResponse,
    uris: impl IntoIterator<Item = &'a str>,
) -> HttpResponse {
    let mut csp = crate::server::CSP.to_owned();
    for uri in uris {
        let Ok(u) = url::Url::parse(uri) else {
            continue;
        };
        // Only a plain host: the URL parser lets `*`, `;` and `,` into a domain, which in
        // a CSP would widen the list (`https://*`) or start another directive.
        let plain = match u.host() {
            Some(url::Host::Domain(d)) => d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => true,
            None => false,
        };
        let origin = u.origin().ascii_serialization();
        if plain && matches!(u.scheme(), "https" | "http") && origin != "null" {
            csp.push(' ');
            csp.push_str(&origin);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

pub(crate) fn csrf_for(state: &AppState, purpose: &str, binding: &str) -> String {
    state.csrf.hash(&[purpose.as_bytes(), binding.as_bytes()])
}

pub(crate) fn check_csrf(
    state: &AppState,
    purpose: &str,
    binding: &str,
    form: &Params,
) -> Result<(), Error> {
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

/// The page language: the citizen's switch, then the e-service's `ui_locales`, then the
/// browser's `Accept-Language`.
pub(crate) fn lang_of(req: &HttpRequest, ui_locales: Option<&str>) -> Lang {
    let chosen = req.cookie(LANG_COOKIE);
    let accept = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    Lang::pick(chosen.as_ref().map(|c| c.value()), ui_locales, accept)
}

pub(crate) fn json_no_store(body: &serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// The client behind a bearer access token that carries `scope` (the auditor's `audit`,
/// the registration office's `registration`): the identity its calls are audited under.
pub async fn api_client(
    req: &HttpRequest,
    state: &AppState,
    scope: &'static str,
) -> Result<String, Error> {
    state
        .provider
        .require_scope(presented(req, state, None)?, scope)
        .await
}

/// The client (and, for a citizen's token, the citizen) behind a protected API call.
pub async fn api_caller(
    req: &HttpRequest,
    state: &AppState,
    scope: &'static str,
) -> Result<(String, Option<String>), Error> {
    state
        .provider
        .api_caller(presented(req, state, None)?, scope)
        .await
}

/// The link an activation or recovery code is handed over as.
pub fn activation_link(state: &AppState, code: &str) -> String {
    format!(
        "{}/activate?code={}",
        state.provider.config().issuer,
        url::form_urlencoded::byte_serialize(code.as_bytes()).collect::<String>()
    )
}

/// The citizen's address, for throttling and (as a keyed hash) the audit log: the TCP peer,
/// or, when the peer is a trusted proxy, what the proxies say in the configured header.
pub(crate) fn source_address(req: &HttpRequest, state: &AppState) -> String {
    use crate::config::ForwardedHeader;
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return String::new();
    };
    let name = match state.forwarded_header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let values = req.headers().get_all(name).filter_map(|v| v.to_str().ok());
    let hops: Vec<String> = match state.forwarded_header {
        ForwardedHeader::XForwardedFor => values.flat_map(x_forwarded_for).collect(),
        ForwardedHeader::Forwarded => values.flat_map(forwarded_for).collect(),
    };
    client_address(peer, &hops, &state.trusted_proxies).to_string()
}

/// The entries of an `X-Forwarded-For` value, in order.
fn x_forwarded_for(value: &str) -> Vec<String> {
    value.split(',').map(|h| h.trim().to_owned()).collect()
}

/// The `for=` node of each element of an RFC 7239 `Forwarded` value, in order, unquoted
/// (`for="[2001:db8::1]:4711"`). An element without one gives an empty hop, which ends the
/// walk in [`client_address`] like any entry that is not an address.
fn forwarded_for(value: &str) -> Vec<String> {
    // Elements are separated by commas and pairs by semicolons, outside quoted strings.
    let mut elements = vec![Vec::new()];
    let (mut pair, mut quoted, mut escaped) = (String::new(), false, false);
    for c in value.chars() {
        match c {
            _ if escaped => {
                pair.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' | ',' if !quoted => {
                if let Some(e) = elements.last_mut() {
                    e.push(std::mem::take(&mut pair));
                }
                if c == ',' {
                    elements.push(Vec::new());
                }
            }
            _ => pair.push(c),
        }
    }
    if let Some(e) = elements.last_mut() {
        e.push(pair);
    }
    elements
        .into_iter()
        .map(|pairs| {
            pairs
                .iter()
                .find_map(|p| {
                    let (name, node) = p.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| node.trim().to_owned())
                })
                .unwrap_or_default()
        })
        .collect()
}

/// Each proxy appends the address it received from, so only the entries its trusted
/// proxies appended can be believed: the nearest entry, from the right, that is not itself
/// a trusted proxy is the client. Anything left of it may be forged by the client, and a
/// malformed entry ends the walk at the proxy that passed it on.
fn client_address(
    peer: std::net::IpAddr,
    hops: &[String],
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d: compare them as IPv4.
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        let parsed = hop
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
            .map(|ip| ip.to_canonical());
        match parsed {
            Ok(ip) if is_trusted(&ip) => nearest = ip,
            Ok(ip) => return ip,
            Err(_) => return nearest,
        }
    }
    nearest
}

// ----- discovery and keys -----

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "oidc",
    responses((status = 200, description = "OpenID Connect Discovery 1.0 metadata", body = Object)))]
pub(crate) async fn discovery(state: web::Data<AppState>) -> HttpResponse {
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
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "jwks_uri": format!("{iss}/jwks"),
            "scopes_supported": SUPPORTED_SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
            "userinfo_signing_alg_values_supported": [],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": identity_core::client_auth::ASSERTION_ALGS,
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": SUPPORTED_CLAIMS,
            "claims_parameter_supported": true,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "pushed_authorization_request_endpoint": format!("{iss}/par"),
            "end_session_endpoint": format!("{iss}/end-session"),
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": false,
            "dpop_signing_alg_values_supported": identity_core::dpop::DPOP_ALGS,
            "require_pushed_authorization_requests": false,
            "prompt_values_supported": ["none", "login", "consent"],
            "acr_values_supported": [ACR_PASSWORD, ACR_PASSKEY],
            "ui_locales_supported": ["en", "zh-Hant"],
            "claims_locales_supported": ["en", "zh-Hant"],
        }))
}

#[utoipa::path(get, path = "/jwks", tag = "oidc",
    responses((status = 200, description = "The signing keys", body = crate::openapi::JwksBody, content_type = "application/jwk-set+json"),
        (status = "4XX", description = "Refused: the OAuth error", body = crate::openapi::ErrorBody),
        (status = 503, description = "Busy or the database unreachable; see Retry-After", body = crate::openapi::ErrorBody)))]
pub(crate) async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
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
    let p = Params::of_request(&req, &body)?;
    let input = authorize_input(&p);
    match state
        .provider
        .authorize(input, session_cookie(&req))
        .await?
    {
        Step::Redirect(url) => Ok(see_other(&url)),
        Step::Interact(id) => {
            // The pending request is bound to this browser by a cookie that names it (with
            // the few others this browser has open in other tabs), so a link to someone
            // else's request cannot be completed here.
            let mut resp = see_other(&format!("/interaction/{id}"));
            let kept = interactions_with(req.cookie(INTERACTION_COOKIE).as_ref(), &id);
            resp.add_cookie(&cookie(INTERACTION_COOKIE, kept))
                .map_err(Error::internal)?;
            Ok(resp)
        }
    }
}

/// The parameters of an authorization request, at `/authorize` or pushed to `/par`.
fn authorize_input(p: &Params) -> AuthorizeInput {
    AuthorizeInput {
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
        pushed: false,
        dpop_jkt: p.get("dpop_jkt"),
        id_token_hint: p.get("id_token_hint"),
        claims: p.get("claims"),
    }
}

/// RFC 9126: the client pushes its authorization request and gets a `request_uri`.
#[utoipa::path(post, path = "/par", tag = "oauth",
    request_body(content = crate::openapi::ParForm, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = []), ()),
    responses((status = 201, description = "Pushed", body = crate::openapi::ParBody),
        (status = "4XX", description = "Refused: the OAuth error", body = crate::openapi::ErrorBody),
        (status = 503, description = "Busy or the database unreachable; see Retry-After", body = crate::openapi::ErrorBody)))]
pub(crate) async fn par(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = Params::parse_strict(&body)?;
    let auth = client_auth(&req, &form, "/par")?;
    let (request_uri, expires_in) = state
        .provider
        .push_authorization_request(auth, authorize_input(&form), dpop_header(&req))
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "request_uri": request_uri, "expires_in": expires_in })))
}

/// The interaction cookie's value with `id` first: the newest few ids, dot-separated
/// (interaction ids are base64url, which has no dot).
fn interactions_with(current: Option<&Cookie<'_>>, id: &str) -> String {
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

fn bound_interaction(req: &HttpRequest, id: &str) -> Result<(), Error> {
    match req.cookie(INTERACTION_COOKIE) {
        Some(c) if c.value().split('.').any(|v| v == id) => Ok(()),
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
    Ok(render_interaction(&req, &state, &id, view))
}

fn render_interaction(
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
struct LoginAgain<'a> {
    req: &'a HttpRequest,
    here: &'a str,
    action: &'a str,
    passkey_action: &'a str,
    csrf: &'a str,
    username: &'a str,
    /// Where the pending request's answer goes, for the page's CSP.
    redirect_uri: Option<&'a str>,
}

/// A failed login shows the form again with the reason, under the error's status. A
/// server fault is not the citizen's to retry on this form: it gets the error page.
fn login_failure_page(at: &LoginAgain<'_>, e: Error) -> Result<HttpResponse, PageError> {
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

async fn interaction_login(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    bound_interaction(&req, &id)?;
    let form = Params::parse(&body)?;
    check_csrf(&state, "login", &id, &form)?;
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
async fn interaction_passkey(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    bound_interaction(&req, &id)?;
    let form = Params::parse(&body)?;
    check_csrf(&state, "login", &id, &form)?;
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
fn logged_in(next: &str, token: &SessionToken) -> Result<HttpResponse, PageError> {
    let mut resp = see_other(next);
    resp.add_cookie(&cookie(SESSION_COOKIE, token.expose().to_owned()))
        .map_err(Error::internal)?;
    Ok(resp)
}

/// Begins a passkey login: the options for `navigator.credentials.get`, and the handle
/// that the answer must come back with. The answer has the same shape whether or not the
/// username has an account or passkeys.
async fn passkey_login_start(
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

async fn interaction_consent(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    bound_interaction(&req, &id)?;
    let form = Params::parse(&body)?;
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

/// The client authentication of a request to `endpoint` (its path, such as `/token`).
fn client_auth(
    req: &HttpRequest,
    form: &Params,
    endpoint: &'static str,
) -> Result<ClientAuth, Error> {
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
                    let (id, secret) = (form_decode(id), form_decode(secret));
                    if id.chars().chain(secret.chars()).any(char::is_control) {
                        return Err(Error::InvalidClient);
                    }
                    Some((id, secret))
                }
            }
        }
    };
    if let Some(kind) = form.get("client_assertion_type") {
        if kind != identity_core::client_auth::ASSERTION_TYPE {
            return Err(Error::InvalidRequest(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
        }
        let assertion = form
            .get("client_assertion")
            .ok_or_else(|| Error::InvalidRequest("the client_assertion is missing".into()))?;
        if basic.is_some() || form.get("client_secret").is_some() {
            return Err(Error::InvalidRequest(
                "use one client authentication method, not both".into(),
            ));
        }
        return Ok(ClientAuth::Assertion {
            id: form.get("client_id"),
            assertion,
            endpoint,
        });
    }
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

#[utoipa::path(post, path = "/token", tag = "oauth",
    request_body(content = crate::openapi::TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = []), ()),
    responses((status = 200, description = "Tokens", body = crate::openapi::TokenBody),
        (status = "4XX", description = "Refused: the OAuth error", body = crate::openapi::ErrorBody),
        (status = 503, description = "Busy or the database unreachable; see Retry-After", body = crate::openapi::ErrorBody)))]
pub(crate) async fn token(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = Params::parse_strict(&body)?;
    let auth = client_auth(&req, &form, "/token")?;
    let input = TokenInput {
        grant_type: form.get("grant_type"),
        code: form.get("code"),
        redirect_uri: form.get("redirect_uri"),
        code_verifier: form.get("code_verifier"),
        refresh_token: form.get("refresh_token"),
        scope: form.get("scope"),
        dpop: dpop_header(&req),
    };
    let resp = state.provider.token(auth, input).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(resp))
}

/// The client authentication and the `token` parameter of revocation and introspection.
fn token_request(
    req: &HttpRequest,
    body: &[u8],
    endpoint: &'static str,
) -> Result<(ClientAuth, String), Error> {
    let form = Params::parse_strict(body)?;
    let auth = client_auth(req, &form, endpoint)?;
    let token = form
        .get("token")
        .ok_or_else(|| Error::InvalidRequest("the token parameter is missing".into()))?;
    Ok((auth, token))
}

/// RFC 7009: 200 with an empty body whether or not the token was known.
#[utoipa::path(post, path = "/revoke", tag = "oauth",
    request_body(content = crate::openapi::TokenParameterForm, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = []), ()),
    responses((status = 200, description = "Revoked, or the token was not known"),
        (status = "4XX", description = "Refused: the OAuth error", body = crate::openapi::ErrorBody),
        (status = 503, description = "Busy or the database unreachable; see Retry-After", body = crate::openapi::ErrorBody)))]
pub(crate) async fn revoke(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (auth, token) = token_request(&req, &body, "/revoke")?;
    state.provider.revoke(auth, token).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// RFC 7662.
#[utoipa::path(post, path = "/introspect", tag = "oauth",
    request_body(content = crate::openapi::TokenParameterForm, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = []), ()),
    responses((status = 200, description = "Whether the token is active, and its claims", body = crate::openapi::IntrospectionBody),
        (status = "4XX", description = "Refused: the OAuth error", body = crate::openapi::ErrorBody),
        (status = 503, description = "Busy or the database unreachable; see Retry-After", body = crate::openapi::ErrorBody)))]
pub(crate) async fn introspect(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (auth, token) = token_request(&req, &body, "/introspect")?;
    let answer = state.provider.introspect(auth, token).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(answer))
}

/// How the access token of a protected request was presented: `Authorization: Bearer`,
/// `Authorization: DPoP` with its `DPoP` proof header (RFC 9449), or (UserInfo only, RFC
/// 6750 §2.2) a form body's `access_token`.
fn presented(req: &HttpRequest, state: &AppState, body: Option<&[u8]>) -> Result<Presented, Error> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (scheme_dpop, header_token) = match auth {
        Some(v) if v.starts_with("Bearer ") => (false, Some(v[7..].trim().to_owned())),
        Some(v) if v.starts_with("DPoP ") => (true, Some(v[5..].trim().to_owned())),
        _ => (false, None),
    };
    let token = match body {
        Some(body) => bearer(req, body, header_token)?,
        None => header_token.ok_or(Error::InvalidToken)?,
    };
    Ok(Presented {
        token,
        dpop_scheme: scheme_dpop,
        proof: dpop_header(req),
        method: req.method().as_str().to_owned(),
        url: format!("{}{}", state.provider.config().issuer, req.path()),
    })
}

/// The `DPoP` header: one proof, at most.
fn dpop_header(req: &HttpRequest) -> Option<String> {
    let mut values = req.headers().get_all("DPoP");
    let first = values.next()?.to_str().ok()?.to_owned();
    values.next().is_none().then_some(first)
}

fn bearer(req: &HttpRequest, body: &[u8], header_token: Option<String>) -> Result<String, Error> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body_token = if req.method() == actix_web::http::Method::POST && is_form {
        Params::parse(body)?.get("access_token")
    } else {
        None
    };
    match (header_token, body_token) {
        (Some(_), Some(_)) => Err(Error::InvalidRequest("send the access token once".into())),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(Error::InvalidToken),
    }
}

#[utoipa::path(method(get, post), path = "/userinfo", tag = "oidc",
    security(("access_token" = [])),
    responses((status = 200, description = "The claims the citizen consented to release", body = Object),
        (status = "4XX", description = "Refused: the OAuth error", body = crate::openapi::ErrorBody),
        (status = 503, description = "Busy or the database unreachable; see Retry-After", body = crate::openapi::ErrorBody)))]
pub(crate) async fn userinfo(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let presented = presented(&req, &state, Some(&body))?;
    let claims = state.provider.userinfo_presented(presented).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(claims))
}

// ----- account, logout -----

/// The random binding of the login form before a session exists (signed double submit).
fn login_binding(req: &HttpRequest) -> Option<String> {
    req.cookie(LOGIN_CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 43)
}

async fn account(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
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

fn account_login_again<'a>(
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

async fn account_login(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let form = Params::parse(&body)?;
    let binding = login_binding(&req).unwrap_or_default();
    check_csrf(&state, "account-login", &binding, &form)?;
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

async fn account_passkey_login(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let form = Params::parse(&body)?;
    let binding = login_binding(&req).unwrap_or_default();
    check_csrf(&state, "account-login", &binding, &form)?;
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

fn session_csrf(req: &HttpRequest, state: &AppState, form: &Params) -> Result<SessionToken, Error> {
    let session =
        session_cookie(req).ok_or_else(|| Error::InvalidRequest("you are not logged in".into()))?;
    check_csrf(state, "account", session.expose(), form)?;
    Ok(session)
}

/// A checked form of the account page: its session, after the CSRF check.
fn account_form(
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<(SessionToken, Params), Error> {
    let form = Params::parse(body)?;
    let session = session_csrf(req, state, &form)?;
    Ok((session, form))
}

/// Begins adding a passkey: the options for `navigator.credentials.create`.
async fn passkey_register_start(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (session, _) = account_form(&req, &state, &body)?;
    let begun = state.provider.begin_passkey_registration(session).await?;
    Ok(json_no_store(&ceremony_json(begun)))
}

async fn passkey_register(
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

async fn passkey_rename(
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

async fn passkey_remove(
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

async fn withdraw_consent(
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

async fn logout_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
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

async fn logout(
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

async fn set_password(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let (session, form) = account_form(&req, &state, &body)?;
    let password = Password::new(form.get("new_password").unwrap_or_default());
    state.provider.set_password(session, &password).await?;
    Ok(see_other("/account"))
}

/// The activation page: the one-time code (from the link, or typed) and the date of birth.
async fn activation_page(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let code = Params::parse(req.query_string().as_bytes())?
        .get("code")
        .filter(|c| c.len() <= 64);
    render_activation(&req, &state, code.as_deref(), None, StatusCode::OK)
}

fn render_activation(
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

async fn activate(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let form = Params::parse(&body)?;
    let binding = login_binding(&req).unwrap_or_default();
    check_csrf(&state, "activate", &binding, &form)?;
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

/// Back-channel logout: each e-service's `logout_token` is POSTed as a form (Back-Channel
/// Logout §2.5), retried with backoff, in the background.
fn deliver_logout(state: &AppState, notices: Vec<identity_core::provider::LogoutNotice>) {
    for n in notices {
        let form = vec![("logout_token".to_owned(), n.logout_token)];
        post_in_background(state, n.uri, "back-channel logout", move |r| r.form(&form));
    }
}

/// POSTs to an e-service in the background, retried with backoff (after 1, 4 and 9 s), so
/// the citizen's page never waits for the e-service. `body` sets the request's body.
pub(crate) fn post_in_background(
    state: &AppState,
    uri: String,
    what: &'static str,
    body: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Send + 'static,
) {
    let client = state.outbound.clone();
    tokio::spawn(async move {
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt * attempt)))
                    .await;
            }
            let request = match client.post(&uri) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, what, "notification refused by outbound_allow");
                    return;
                }
            };
            match body(request).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => {
                    tracing::warn!(status = %r.status(), attempt, what, "notification refused")
                }
                Err(e) => tracing::warn!(error = %e, attempt, what, "notification failed"),
            }
        }
    });
}

fn end_session_input(p: &Params, confirmed: bool) -> identity_core::provider::EndSessionInput {
    identity_core::provider::EndSessionInput {
        id_token_hint: p.get("id_token_hint"),
        client_id: p.get("client_id"),
        post_logout_redirect_uri: p.get("post_logout_redirect_uri"),
        state: p.get("state"),
        confirmed,
    }
}

/// RP-initiated logout (`end_session_endpoint`), by GET or POST.
async fn end_session(
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
async fn end_session_confirm(
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

fn ended(
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

/// One half of HTTP Basic client credentials, which RFC 6749 §2.3.1 form-urlencodes. A raw
/// `&` (from a client that did not encode) is a literal `&`, not the end of the value.
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('&', "%26")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The language switch: remembers the choice for a year and goes back to the page. Only a
/// path on this site is a valid way back, so the switch cannot redirect elsewhere.
async fn switch_language(
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
fn same_origin_path(issuer: &str, back: &str) -> Option<String> {
    let base = url::Url::parse(issuer).ok()?;
    let to = base.join(back).ok()?;
    (to.origin() == base.origin() && !to.path().starts_with("//"))
        .then(|| to[url::Position::BeforePath..].to_owned())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Readiness: the database answers and its schema is current; otherwise 503.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "The database answers and its schema is current", body = String, content_type = "text/plain"),
        (status = "4XX", description = "Refused: the OAuth error", body = crate::openapi::ErrorBody),
        (status = 503, description = "Busy or the database unreachable; see Retry-After", body = crate::openapi::ErrorBody)))]
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

async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        ))
        .body(include_str!("../static/site.css"))
}

async fn passkey_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        ))
        .body(include_str!("../static/passkey.js"))
}

async fn home() -> HttpResponse {
    see_other("/account")
}

#[cfg(test)]
mod tests {
    use super::{
        allow_forms_to, client_address, form_decode, forwarded_for, same_origin_path,
        x_forwarded_for,
    };

    /// Only plain origins join `form-action`: what the URL parser lets into a host (`*`,
    /// `;`, `,`) would widen the list or start another directive.
    #[test]
    fn form_targets_are_plain_origins() {
        let resp = allow_forms_to(
            actix_web::HttpResponse::Ok().finish(),
            [
                "https://*",
                "https://x;sandbox",
                "https://a,b.example/",
                "javascript:alert(1)",
                "https://eservice.example:8443/cb?x=1",
                "http://127.0.0.1:8081/",
            ],
        );
        let csp = resp
            .headers()
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap();
        let form_action = csp
            .split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix("form-action "))
            .unwrap();
        assert_eq!(
            form_action,
            "'self' https://eservice.example:8443 http://127.0.0.1:8081"
        );
        assert_eq!(
            csp.matches(';').count(),
            crate::server::CSP.matches(';').count()
        );
    }

    #[test]
    fn basic_credentials_are_form_decoded_whole() {
        assert_eq!(form_decode("a%26b"), "a&b");
        assert_eq!(form_decode("a&b=c"), "a&b=c");
        assert_eq!(form_decode("a+b%2Bc"), "a b+c");
        assert_eq!(form_decode(""), "");
    }

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

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    /// The client address for X-Forwarded-For header values.
    fn client(peer: &str, header: &[&str], trusted: &[&str]) -> String {
        let hops: Vec<String> = header.iter().flat_map(|v| x_forwarded_for(v)).collect();
        client_address(peer.parse().unwrap(), &hops, &nets(trusted)).to_string()
    }

    /// The same for RFC 7239 `Forwarded` values.
    fn client_7239(peer: &str, header: &[&str], trusted: &[&str]) -> String {
        let hops: Vec<String> = header.iter().flat_map(|v| forwarded_for(v)).collect();
        client_address(peer.parse().unwrap(), &hops, &nets(trusted)).to_string()
    }

    #[test]
    fn rfc_7239_forwarded_is_read_the_same_way() {
        let lb = ["10.0.0.0/8"];
        assert_eq!(
            forwarded_for(
                r#"for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711""#
            ),
            ["192.0.2.60", "[2001:db8:cafe::17]:4711"]
        );
        // Quoted commas and semicolons stay inside their value; an element without `for`
        // is an empty hop.
        assert_eq!(
            forwarded_for(r#"by="a,b;c";for=198.51.100.7, proto=https"#),
            ["198.51.100.7", ""]
        );
        assert_eq!(
            client_7239("203.0.113.9", &["for=198.51.100.7"], &lb),
            "203.0.113.9"
        );
        assert_eq!(
            client_7239("10.0.0.5", &["for=198.51.100.7"], &lb),
            "198.51.100.7"
        );
        // A client's own element on the left cannot choose its address.
        assert_eq!(
            client_7239(
                "10.0.0.5",
                &["for=1.2.3.4", "for=198.51.100.7;proto=https"],
                &lb
            ),
            "198.51.100.7"
        );
        assert_eq!(
            client_7239(
                "10.0.0.5",
                &[r#"for="[2001:db8::7]:443", for=10.0.0.9"#],
                &lb
            ),
            "2001:db8::7"
        );
        // Obfuscated or unknown nodes, or no `for` at all: the nearest proxy stands in.
        assert_eq!(client_7239("10.0.0.5", &["for=_hidden"], &lb), "10.0.0.5");
        assert_eq!(
            client_7239("10.0.0.5", &["for=unknown, for=10.0.0.9"], &lb),
            "10.0.0.9"
        );
        assert_eq!(client_7239("10.0.0.5", &["proto=https"], &lb), "10.0.0.5");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let lb = ["10.0.0.0/8"];
        // No trusted proxy, or a peer that is not one: the header is ignored.
        assert_eq!(client("203.0.113.9", &["198.51.100.7"], &[]), "203.0.113.9");
        assert_eq!(client("203.0.113.9", &["198.51.100.7"], &lb), "203.0.113.9");
        // Behind the load balancer: the address it appended.
        assert_eq!(client("10.0.0.5", &["198.51.100.7"], &lb), "198.51.100.7");
        // A client that sends its own header cannot choose its address: the nearest
        // untrusted entry from the right is the one the proxy appended.
        assert_eq!(
            client("10.0.0.5", &["1.2.3.4, 198.51.100.7"], &lb),
            "198.51.100.7"
        );
        // Two proxies of ours, as two headers or one list.
        assert_eq!(
            client("10.0.0.5", &["198.51.100.7", "10.0.0.9"], &lb),
            "198.51.100.7"
        );
        assert_eq!(
            client("10.0.0.5", &["198.51.100.7, 10.0.0.9"], &lb),
            "198.51.100.7"
        );
        // A port, IPv6.
        assert_eq!(
            client("10.0.0.5", &["198.51.100.7:4711"], &lb),
            "198.51.100.7"
        );
        assert_eq!(client("::1", &["2001:db8::7"], &["::1/128"]), "2001:db8::7");
        // A dual-stack listener's view of an IPv4 proxy; bracketed IPv6 with and without
        // a port.
        assert_eq!(
            client("::ffff:10.0.0.5", &["198.51.100.7"], &lb),
            "198.51.100.7"
        );
        assert_eq!(
            client("10.0.0.5", &["[2001:db8::7]:443, [2001:db8::8]"], &lb),
            "2001:db8::8"
        );
        assert_eq!(
            client("10.0.0.5", &["[2001:db8::7]:443"], &lb),
            "2001:db8::7"
        );
        // Garbage, or nothing: the nearest proxy stands for the client.
        assert_eq!(client("10.0.0.5", &["unknown"], &lb), "10.0.0.5");
        assert_eq!(
            client("10.0.0.5", &["198.51.100.7, junk, 10.0.0.9"], &lb),
            "10.0.0.9"
        );
        assert_eq!(client("10.0.0.5", &[], &lb), "10.0.0.5");
    }
}
