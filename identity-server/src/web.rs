//! The route table: every path the public listener serves, and the module that answers it.
//! Handlers live by who calls them: `oauth` (e-services and their libraries), `pages` (the
//! citizen's browser), the JSON APIs (`api::signing`, `api::registration`, `api::audit`) and
//! `ops` (operators); what they share is in `plumbing`.

use actix_web::web;

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/openid-configuration",
        web::get().to(crate::oauth::discovery),
    )
    .route("/jwks", web::get().to(crate::oauth::jwks))
    .route("/authorize", web::get().to(crate::oauth::authorize))
    .route("/authorize", web::post().to(crate::oauth::authorize))
    // Routes with a path parameter come after the fixed paths: each one a request passes
    // on its way costs a regular-expression match, and `/token` is the busiest route.
    .route("/token", web::post().to(crate::oauth::token))
    .route("/par", web::post().to(crate::oauth::par))
    .route("/healthz", web::get().to(crate::ops::healthz))
    .route("/openapi.json", web::get().to(crate::openapi::serve))
    .route("/readyz", web::get().to(crate::ops::readyz))
    .route("/revoke", web::post().to(crate::oauth::revoke))
    .route("/introspect", web::post().to(crate::oauth::introspect))
    .route("/userinfo", web::get().to(crate::oauth::userinfo))
    .route("/userinfo", web::post().to(crate::oauth::userinfo))
    .route("/account", web::get().to(crate::pages::account::account))
    .route(
        "/account/login",
        web::post().to(crate::pages::account::account_login),
    )
    .route(
        "/account/consents/withdraw",
        web::post().to(crate::pages::account::withdraw_consent),
    )
    .route(
        "/end-session",
        web::get().to(crate::pages::logout::end_session),
    )
    .route(
        "/end-session",
        web::post().to(crate::pages::logout::end_session),
    )
    .route(
        "/end-session/confirm",
        web::post().to(crate::pages::logout::end_session_confirm),
    )
    .route("/logout", web::get().to(crate::pages::logout::logout_page))
    .route("/logout", web::post().to(crate::pages::logout::logout))
    .route(
        "/interaction/{id}",
        web::get().to(crate::pages::login::interaction),
    )
    .route(
        "/interaction/{id}/login",
        web::post().to(crate::pages::login::interaction_login),
    )
    .route(
        "/interaction/{id}/consent",
        web::post().to(crate::pages::login::interaction_consent),
    )
    .route(
        "/interaction/{id}/passkey",
        web::post().to(crate::pages::login::interaction_passkey),
    )
    .route(
        "/webauthn/login/start",
        web::post().to(crate::pages::login::passkey_login_start),
    )
    .route(
        "/account/passkey-login",
        web::post().to(crate::pages::account::account_passkey_login),
    )
    .route(
        "/account/passkeys/start",
        web::post().to(crate::pages::account::passkey_register_start),
    )
    .route(
        "/account/passkeys",
        web::post().to(crate::pages::account::passkey_register),
    )
    .route(
        "/account/passkeys/rename",
        web::post().to(crate::pages::account::passkey_rename),
    )
    .route(
        "/account/passkeys/remove",
        web::post().to(crate::pages::account::passkey_remove),
    )
    .route(
        "/lang/{tag}",
        web::get().to(crate::pages::account::switch_language),
    )
    .route(
        "/activate",
        web::get().to(crate::pages::activation::activation_page),
    )
    .route(
        "/activate",
        web::post().to(crate::pages::activation::activate),
    )
    .route(
        "/account/password",
        web::post().to(crate::pages::account::set_password),
    )
    .route("/static/site.css", web::get().to(crate::pages::css))
    .route(
        "/static/passkey.js",
        web::get().to(crate::pages::passkey_js),
    )
    .route("/", web::get().to(crate::pages::home));
}
