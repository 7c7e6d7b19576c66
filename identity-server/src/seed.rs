//! Demo and fixture data from `seeds/`.

use identity_core::model::{ClientSecret, NewCitizen, NewClient};
use identity_core::password::Password;
use identity_core::{Error, Provider};
use serde::Deserialize;
use std::net::SocketAddr;

/// The demo data, compiled in so `demo` works from any directory.
const DEMO: &str = include_str!("../../seeds/demo.toml");

/// Loads the demo data, whose citizen and e-service have passwords published in the
/// README, only where nobody else can use them: a service whose public URL is loopback and
/// which listens on a loopback address (a loopback public_url alone is only a name; the
/// listener is what the network reaches).
pub async fn load_demo(provider: &Provider, listen: SocketAddr) -> Result<Vec<String>, String> {
    let issuer = &provider.config().issuer;
    if !is_loopback_url(issuer) {
        return Err(format!(
            "the demo data has published passwords; it is loaded only when public_url is a loopback URL \
             (localhost, 127.0.0.1 or [::1]), and public_url is {issuer}"
        ));
    }
    if !listen.ip().is_loopback() {
        return Err(format!(
            "the demo data has published passwords; it is loaded only when the service listens on a \
             loopback address, and listen is {listen}"
        ));
    }
    load(provider, DEMO).await
}

fn is_loopback_url(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    #[serde(default)]
    clients: Vec<SeedClient>,
    #[serde(default)]
    citizens: Vec<SeedCitizen>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedClient {
    id: String,
    name: String,
    department: String,
    redirect_uris: Vec<String>,
    secret: Option<String>,
    scopes: Option<String>,
    #[serde(default)]
    public: bool,
    /// The lowest `acr` the e-service accepts.
    min_acr: Option<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    backchannel_logout_uri: Option<String>,
    #[serde(default)]
    signing_return_uris: Vec<String>,
    #[serde(default)]
    signing_callback_uris: Vec<String>,
    /// Public keys (a JWKS) for `private_key_jwt`, in place of a secret.
    jwks: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedCitizen {
    username: String,
    password: String,
    name_en: String,
    name_zh: String,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
}

/// Loads seed data; what already exists is left as it is. Returns what was added.
pub async fn load(provider: &Provider, text: &str) -> Result<Vec<String>, String> {
    let seed: SeedFile = toml::from_str(text).map_err(|e| format!("seed file: {e}"))?;
    let mut added = Vec::new();
    for c in seed.clients {
        let new = NewClient {
            id: Some(c.id.clone()),
            name: c.name,
            department: c.department,
            sector: None,
            redirect_uris: c.redirect_uris,
            scopes: c.scopes,
            public: c.public,
            id_token_alg: None,
            secret: c.secret.map(ClientSecret::new),
            min_acr: c.min_acr,
            jwks: c.jwks,
            fapi: false,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            backchannel_logout_uri: c.backchannel_logout_uri,
            jwks_uri: None,
            signing_return_uris: c.signing_return_uris,
            signing_callback_uris: c.signing_callback_uris,
        };
        match provider.register_client(new).await {
            Ok(_) => added.push(format!("client {}", c.id)),
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(format!("client {}: {e}", c.id)),
        }
    }
    for u in seed.citizens {
        let new = NewCitizen {
            username: u.username.clone(),
            name_en: u.name_en,
            name_zh: u.name_zh,
            email: u.email,
            phone: u.phone,
            address: u.address,
        };
        match provider.add_citizen(new, &Password::new(u.password)).await {
            Ok(_) => added.push(format!("citizen {}", u.username)),
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(format!("citizen {}: {e}", u.username)),
        }
    }
    Ok(added)
}
