//! The OAuth 2.0 and OpenID Connect endpoints: discovery, the JWKS, authorization and PAR,
//! the token endpoint, revocation, introspection and UserInfo.

use actix_web::http::header::{self};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use identity_core::model::{
    ClientSecret, ACR_PASSKEY, ACR_PASSWORD, SUPPORTED_CLAIMS, SUPPORTED_SCOPES,
};
use identity_core::provider::{AuthorizeInput, ClientAuth, Step, TokenInput};
use identity_core::Error;
use serde_json::json;

use crate::errors::{OAuthError, PageError};
use crate::pages::login::interactions_with;
use crate::params::Params;
use crate::plumbing::{
    cookie, dpop_header, presented, see_other, session_cookie, AppState, INTERACTION_COOKIE,
};

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
    responses((status = 200, description = "The signing keys", body = crate::wire::JwksBody, content_type = "application/jwk-set+json"),
        crate::wire::ApiErrors))]
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

pub(crate) async fn authorize(
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
pub(crate) fn authorize_input(p: &Params) -> AuthorizeInput {
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
    request_body(content = crate::wire::ParForm, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = []), ()),
    responses((status = 201, description = "Pushed", body = crate::wire::ParBody),
        crate::wire::ApiErrors))]
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

/// The client authentication of a request to `endpoint` (its path, such as `/token`).
pub(crate) fn client_auth(
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
    request_body(content = crate::wire::TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = []), ()),
    responses((status = 200, description = "Tokens", body = crate::wire::TokenBody),
        crate::wire::ApiErrors))]
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
pub(crate) fn token_request(
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
    request_body(content = crate::wire::TokenParameterForm, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = []), ()),
    responses((status = 200, description = "Revoked, or the token was not known"),
        crate::wire::ApiErrors))]
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
    request_body(content = crate::wire::TokenParameterForm, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = []), ()),
    responses((status = 200, description = "Whether the token is active, and its claims", body = crate::wire::IntrospectionBody),
        crate::wire::ApiErrors))]
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

#[utoipa::path(method(get, post), path = "/userinfo", tag = "oidc",
    security(("access_token" = [])),
    responses((status = 200, description = "The claims the citizen consented to release", body = Object),
        crate::wire::ApiErrors))]
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

/// One half of HTTP Basic client credentials, which RFC 6749 §2.3.1 form-urlencodes. A raw
/// `&` (from a client that did not encode) is a literal `&`, not the end of the value.
pub(crate) fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('&', "%26")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::form_decode;

    #[test]
    fn basic_credentials_are_form_decoded_whole() {
        assert_eq!(form_decode("a%26b"), "a&b");
        assert_eq!(form_decode("a&b=c"), "a&b=c");
        assert_eq!(form_decode("a+b%2Bc"), "a b+c");
        assert_eq!(form_decode(""), "");
    }
}
