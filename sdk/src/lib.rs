//! Client library for e-services that log citizens in with the identity service.
//!
//! This first part holds what every integration needs before any network call: a PKCE
//! pair (RFC 7636, S256 only) and the check of the authorization response that comes back
//! to the e-service's redirect URI (`state` and, per RFC 9207, `iss`).
//!
//! ```
//! use identity_sdk::{Pkce, Callback};
//! let pkce = Pkce::new();
//! assert_eq!(pkce.challenge().len(), 43);
//! let cb = Callback::parse(
//!     "https://e.gov.example/cb?code=abc&state=xyz&iss=https%3A%2F%2Fidp.example",
//!     "xyz",
//!     "https://idp.example",
//! )
//! .unwrap();
//! assert_eq!(cb.code(), "abc");
//! ```
#![deny(missing_docs)]

pub mod audit;
pub mod id_token;
pub mod login;
pub mod service;
pub mod signature;
pub mod signing;
pub mod signing_client;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

/// Why the provider's discovery document could not be used.
pub(crate) enum DiscoveryError {
    /// The network, TLS, or a body that is not JSON.
    Http(reqwest::Error),
    /// A document naming another issuer (OpenID Connect Discovery §4.3).
    OtherIssuer,
}

/// An HTTP client that follows no redirects (a token or a proof must not be carried off
/// to wherever a `Location` points), with a timeout.
pub(crate) fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The discovery document of `issuer` (already without its trailing `/`), which must name
/// that issuer.
pub(crate) async fn discovery(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<serde_json::Value, DiscoveryError> {
    let doc: serde_json::Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .map_err(DiscoveryError::Http)?
        .json()
        .await
        .map_err(DiscoveryError::Http)?;
    if doc["issuer"] != issuer {
        return Err(DiscoveryError::OtherIssuer);
    }
    Ok(doc)
}

/// What can go wrong in the SDK.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The callback URL could not be parsed.
    #[error("the callback URL is not a URL")]
    BadCallback,
    /// The `state` did not match the one this login started with (possible CSRF).
    #[error("the state does not match")]
    StateMismatch,
    /// The `iss` is missing or names another provider (possible mix-up attack).
    #[error("the issuer does not match")]
    IssuerMismatch,
    /// The provider answered with an OAuth error.
    #[error("the provider refused: {error}")]
    Provider {
        /// The OAuth error code.
        error: String,
        /// The provider's description, if any.
        description: Option<String>,
    },
    /// The callback carries no code.
    #[error("the callback carries no code")]
    MissingCode,
}

/// A PKCE verifier and its S256 challenge. The verifier is secret: its `Debug` hides it.
pub struct Pkce {
    verifier: String,
    challenge: String,
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

impl Pkce {
    /// A fresh pair: 256 random bits of verifier.
    pub fn new() -> Self {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the operating system's random number generator failed");
        let verifier = URL_SAFE_NO_PAD.encode(bytes);
        let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            verifier.as_bytes(),
        ));
        Pkce {
            verifier,
            challenge,
        }
    }

    /// The `code_challenge` to send with `code_challenge_method=S256`.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }

    /// The `code_verifier` to send with the code; keep it secret until then.
    pub fn expose_verifier(&self) -> &str {
        &self.verifier
    }
}

/// An authorization response whose `state` and `iss` were checked.
#[derive(Debug)]
pub struct Callback {
    code: String,
}

impl Callback {
    /// Checks a callback URL against the `state` this login started with and the expected
    /// issuer, and returns its code. A provider error becomes [`Error::Provider`].
    pub fn parse(url: &str, expected_state: &str, issuer: &str) -> Result<Callback, Error> {
        let url = url::Url::parse(url).map_err(|_| Error::BadCallback)?;
        let get = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if get("state").as_deref() != Some(expected_state) {
            return Err(Error::StateMismatch);
        }
        if get("iss").as_deref() != Some(issuer) {
            return Err(Error::IssuerMismatch);
        }
        if let Some(error) = get("error") {
            return Err(Error::Provider {
                error,
                description: get("error_description"),
            });
        }
        get("code")
            .map(|code| Callback { code })
            .ok_or(Error::MissingCode)
    }

    /// The authorization code.
    pub fn code(&self) -> &str {
        &self.code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://idp.example";

    #[test]
    fn pkce_challenge_is_s256_of_verifier() {
        let p = Pkce::new();
        let expected = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            p.expose_verifier().as_bytes(),
        ));
        assert_eq!(p.challenge(), expected);
        assert_ne!(Pkce::new().expose_verifier(), p.expose_verifier());
        assert!(!format!("{p:?}").contains(p.expose_verifier()));
    }

    #[test]
    fn callback_checks_state_issuer_and_errors() {
        let base = "https://e.example/cb?";
        let ok = format!("{base}code=c&state=s&iss=https%3A%2F%2Fidp.example");
        assert_eq!(Callback::parse(&ok, "s", ISS).unwrap().code(), "c");
        assert_eq!(
            Callback::parse(&ok, "other", ISS).unwrap_err(),
            Error::StateMismatch
        );
        let mixup = format!("{base}code=c&state=s&iss=https%3A%2F%2Fevil.example");
        assert_eq!(
            Callback::parse(&mixup, "s", ISS).unwrap_err(),
            Error::IssuerMismatch
        );
        let no_iss = format!("{base}code=c&state=s");
        assert_eq!(
            Callback::parse(&no_iss, "s", ISS).unwrap_err(),
            Error::IssuerMismatch
        );
        let denied = format!("{base}error=access_denied&state=s&iss=https%3A%2F%2Fidp.example");
        assert!(matches!(
            Callback::parse(&denied, "s", ISS),
            Err(Error::Provider { error, .. }) if error == "access_denied"
        ));
    }
}
