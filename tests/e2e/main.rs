//! End-to-end tests: each starts the real `identity-server` binary (the `demo` command, on
//! a fresh SQLite file or a fresh PostgreSQL database) and talks to it over HTTP.

mod audit;
mod bad_input;
mod browser;
mod cdp;
mod cli;
mod conformance;
mod enrolment;
mod example;
mod fapi;
mod fapi_conformance;
mod hardening;
mod interop;
mod logout;
mod negative;
mod oidc;
mod openapi;
mod ops;
mod scale;
mod sdk;
mod signing;
mod util;
