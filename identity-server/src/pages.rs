//! The citizen's pages: login and the interaction (`login`), the account (`account`),
//! activation (`activation`) and logout (`logout`), and their static files.

pub(crate) mod account;
pub(crate) mod activation;
pub(crate) mod login;
pub(crate) mod logout;

use crate::plumbing::see_other;

use actix_web::http::header::{self, HeaderValue};
use actix_web::HttpResponse;

pub(crate) async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        ))
        .body(include_str!("../static/site.css"))
}

pub(crate) async fn passkey_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        ))
        .body(include_str!("../static/passkey.js"))
}

pub(crate) async fn home() -> HttpResponse {
    see_other("/account")
}
