//! Demo and fixture data from `seeds/`.

use identity_core::model::{ClientSecret, NewCitizen, NewClient};
use identity_core::password::Password;
use identity_core::{Error, Provider};
use serde::Deserialize;

/// The demo data, compiled in so `demo` works from any directory.
pub const DEMO: &str = include_str!("../../seeds/demo.toml");

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
            jwks: None,
            fapi: false,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            backchannel_logout_uri: c.backchannel_logout_uri,
            jwks_uri: None,
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
