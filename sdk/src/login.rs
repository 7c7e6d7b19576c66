//! Logging citizens in: discovery, a pushed authorization request with PKCE (and DPoP),
//! the callback, the code exchange with `private_key_jwt` or a client secret, the ID token
//! verified into a [`VerifiedIdToken`], UserInfo, refresh, revocation and a logout URL.
//!
//! ```no_run
//! # async fn demo() -> Result<(), identity_sdk::login::LoginError> {
//! use identity_sdk::login::{ClientKey, Credentials, LoginClient};
//! let key = ClientKey::generate("k1");
//! println!("register this JWKS: {}", key.jwks());
//! let client = LoginClient::discover(
//!     "https://id.gov.example",
//!     "licensing",
//!     Credentials::PrivateKeyJwt(Box::new(key)),
//!     "https://licensing.gov.example/callback",
//! )
//! .await?
//! .with_dpop();
//! let pending = client.start("openid profile").await?;
//! // Redirect the browser to pending.url(); keep `pending` in the e-service's session.
//! # let callback_url = "";
//! let tokens = client.finish(pending, callback_url).await?;
//! println!("citizen {}", tokens.id_token.claims().sub);
//! # Ok(()) }
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::fmt;
use std::time::Duration;

use crate::id_token::{IdTokenVerifier, TokenError, VerifiedIdToken};
use crate::{Callback, Pkce};

/// What went wrong logging a citizen in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The network or TLS failed.
    #[error("request failed: {0}")]
    Http(String),
    /// The provider refused, with its OAuth error.
    #[error("the identity service refused: {error}: {description}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// OAuth error code.
        error: String,
        /// Its description.
        description: String,
    },
    /// The discovery document or an answer was not what the protocol says.
    #[error("unexpected answer from the identity service")]
    Unexpected,
    /// The callback failed its checks (state, issuer, error response).
    #[error("callback: {0}")]
    Callback(#[from] crate::Error),
    /// The ID token failed verification.
    #[error("ID token: {0}")]
    Token(#[from] TokenError),
    /// A client key that cannot be used: what is wrong with it.
    #[error("client key: {0}")]
    BadKey(&'static str),
}

fn http_error(e: reqwest::Error) -> LoginError {
    LoginError::Http(e.to_string())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source works");
    URL_SAFE_NO_PAD.encode(b)
}

/// An ES256 key pair: the e-service's `private_key_jwt` key, or a DPoP key.
pub struct ClientKey {
    pair: EcdsaKeyPair,
    /// The PKCS#8 document, kept to save the key ([`ClientKey::to_pem`]).
    pkcs8: Vec<u8>,
    kid: String,
    jwk: Value,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientKey({}, <private>)", self.kid)
    }
}

impl ClientKey {
    /// A new P-256 key named `kid`.
    pub fn generate(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key generation works");
        Self::from_pkcs8(kid, pkcs8.as_ref()).expect("a key just made is valid")
    }

    /// A key from its PKCS#8 DER (to keep the same key across restarts).
    pub fn from_pkcs8(kid: &str, pkcs8: &[u8]) -> Result<Self, LoginError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|_| LoginError::Unexpected)?;
        let p = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])});
        Ok(ClientKey {
            pair,
            pkcs8: pkcs8.to_vec(),
            kid: kid.to_owned(),
            jwk,
        })
    }

    /// A key from a PEM `PRIVATE KEY` (PKCS#8, as `openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256` writes it, or [`ClientKey::to_pem`]). Its `kid` is its
    /// RFC 7638 thumbprint, so the file alone names the key.
    pub fn from_pem(pem: &str) -> Result<Self, LoginError> {
        let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
            .map_err(|_| LoginError::BadKey("not a PEM file"))?;
        if label != "PRIVATE KEY" {
            return Err(LoginError::BadKey(
                "not an unencrypted PKCS#8 key (PEM label PRIVATE KEY)",
            ));
        }
        let key = Self::from_pkcs8("", &der).map_err(|_| {
            LoginError::BadKey("not a P-256 key, or its PKCS#8 document lacks the public key")
        })?;
        let kid = key.thumbprint();
        Ok(ClientKey { kid, ..key })
    }

    /// A new P-256 key whose `kid` is its thumbprint, as [`ClientKey::from_pem`] reads it.
    pub fn generate_named_by_thumbprint() -> Self {
        let key = Self::generate("");
        let kid = key.thumbprint();
        ClientKey { kid, ..key }
    }

    /// The key as a PEM `PRIVATE KEY` (PKCS#8), to store where only its owner can read it.
    pub fn to_pem(&self) -> String {
        pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, &self.pkcs8)
            .expect("a PKCS#8 document encodes as PEM")
    }

    /// The key's id, as in its JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWKS to register with the identity service.
    pub fn jwks(&self) -> String {
        let mut k = self.jwk.clone();
        k["kid"] = self.kid.clone().into();
        k["alg"] = "ES256".into();
        k["use"] = "sig".into();
        json!({ "keys": [k] }).to_string()
    }

    /// The RFC 7638 thumbprint (what `cnf.jkt` holds for a DPoP key).
    pub fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().unwrap_or_default(),
            self.jwk["y"].as_str().unwrap_or_default()
        );
        URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ))
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let signing = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signing.as_bytes())
            .expect("ECDSA signing works");
        format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// A `private_key_jwt` assertion by `client_id` for `audience`, valid for a minute.
    pub(crate) fn assertion(&self, client_id: &str, audience: &str) -> String {
        let now = now();
        self.sign(
            &json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"}),
            &json!({"iss": client_id, "sub": client_id, "aud": audience,
                    "iat": now, "exp": now + 60, "jti": random(24)}),
        )
    }

    /// A DPoP proof (RFC 9449 §4) for `method url`, for `token` when given.
    pub(crate) fn proof(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        let mut claims = json!({"jti": random(24), "htm": method, "htu": url, "iat": now()});
        if let Some(t) = token {
            claims["ath"] = URL_SAFE_NO_PAD
                .encode(ring::digest::digest(&ring::digest::SHA256, t.as_bytes()))
                .into();
        }
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        self.sign(
            &json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": self.jwk}),
            &claims,
        )
    }
}

/// How the e-service authenticates at the token endpoint.
#[non_exhaustive]
pub enum Credentials {
    /// `private_key_jwt` (required of FAPI clients).
    PrivateKeyJwt(Box<ClientKey>),
    /// `client_secret_basic`.
    Secret(crate::signing_client::ClientSecret),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::PrivateKeyJwt(k) => write!(f, "PrivateKeyJwt({k:?})"),
            Credentials::Secret(s) => write!(f, "Secret({s:?})"),
        }
    }
}

/// A login in progress: keep it in the e-service's session until the callback. Its
/// secrets (PKCE verifier, state, nonce) never show in `Debug`.
pub struct PendingLogin {
    url: String,
    state: String,
    nonce: String,
    pkce: Pkce,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingLogin(<redacted>)")
    }
}

impl PendingLogin {
    /// Where to send the citizen's browser.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// What a finished login gives.
#[derive(Debug)]
pub struct Tokens {
    /// The verified ID token.
    pub id_token: VerifiedIdToken,
    /// The raw ID token, for `id_token_hint` at logout.
    pub id_token_raw: String,
    /// The access token (`DPoP` bound when the client uses DPoP).
    pub access_token: crate::signing_client::ClientSecret,
    /// The refresh token, when `offline_access` was granted.
    pub refresh_token: Option<crate::signing_client::ClientSecret>,
    /// `DPoP` or `Bearer`.
    pub token_type: String,
}

/// An e-service's login client for one identity service.
#[derive(Debug)]
pub struct LoginClient {
    http: reqwest::Client,
    issuer: String,
    client_id: String,
    credentials: Credentials,
    redirect_uri: String,
    discovery: Value,
    keys: std::sync::Mutex<Keys>,
    dpop: Option<ClientKey>,
    pushed: bool,
}

/// The provider's keys as last fetched: refetched when `Cache-Control` says they are stale,
/// or on a token signed by a key not in them (at most every 10 seconds, so a flood of
/// forged tokens cannot make the e-service hammer the provider).
#[derive(Debug)]
struct Keys {
    verifier: IdTokenVerifier,
    fetched: std::time::Instant,
    max_age: Duration,
}

/// `max-age` of a `Cache-Control` header; five minutes when absent.
fn max_age(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|d| d.trim().strip_prefix("max-age="))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .map_or(Duration::from_secs(300), Duration::from_secs)
}

impl LoginClient {
    /// Reads the provider's discovery document and JWKS.
    pub async fn discover(
        issuer: &str,
        client_id: &str,
        credentials: Credentials,
        redirect_uri: &str,
    ) -> Result<Self, LoginError> {
        let http = crate::http_client(Duration::from_secs(10)).map_err(http_error)?;
        let issuer = issuer.trim_end_matches('/').to_owned();
        let discovery = crate::discovery(&http, &issuer)
            .await
            .map_err(|e| match e {
                crate::DiscoveryError::Http(e) => http_error(e),
                crate::DiscoveryError::OtherIssuer => LoginError::Unexpected,
            })?;
        let keys = fetch_keys(&http, &discovery, &issuer, client_id).await?;
        Ok(LoginClient {
            http,
            issuer,
            client_id: client_id.to_owned(),
            credentials,
            redirect_uri: redirect_uri.to_owned(),
            discovery,
            keys: std::sync::Mutex::new(keys),
            dpop: None,
            pushed: true,
        })
    }

    /// Verifies an ID token, refetching the provider's keys when they are stale or the
    /// token names a key they lack (rate-limited).
    async fn verify_id_token(
        &self,
        raw: &str,
        nonce: &str,
        access: &str,
    ) -> Result<VerifiedIdToken, LoginError> {
        let (verifier, stale, recent) = {
            let k = self.keys.lock().map_err(|_| LoginError::Unexpected)?;
            let age = k.fetched.elapsed();
            (
                k.verifier.clone(),
                age >= k.max_age,
                age < Duration::from_secs(10),
            )
        };
        let first = if stale {
            Err(TokenError::UnknownKey)
        } else {
            verifier.verify(raw, Some(nonce), Some(access), now())
        };
        match first {
            Err(TokenError::UnknownKey) if stale || !recent => {
                let fresh =
                    fetch_keys(&self.http, &self.discovery, &self.issuer, &self.client_id).await?;
                let result = fresh.verifier.verify(raw, Some(nonce), Some(access), now());
                if let Ok(mut k) = self.keys.lock() {
                    *k = fresh;
                }
                Ok(result?)
            }
            other => Ok(other?),
        }
    }

    /// Binds this client's tokens to a fresh DPoP key (required of FAPI clients).
    pub fn with_dpop(mut self) -> Self {
        self.dpop = Some(ClientKey::generate("dpop"));
        self
    }

    /// Sends the authorization request in the browser's URL (plain PKCE) instead of
    /// pushing it first. For simple clients only: a FAPI client must push, and the provider
    /// refuses it otherwise. Pushing keeps the request's parameters out of the browser and
    /// the logs, so it stays the default.
    pub fn without_par(mut self) -> Self {
        self.pushed = false;
        self
    }

    fn endpoint(&self, name: &str) -> Result<String, LoginError> {
        self.discovery[name]
            .as_str()
            .map(str::to_owned)
            .ok_or(LoginError::Unexpected)
    }

    /// Posts a form with client authentication (and a DPoP proof, retrying once with the
    /// server's nonce if it asks for one).
    async fn post(
        &self,
        url: &str,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<Value, LoginError> {
        let mut req = self.http.post(url);
        match &self.credentials {
            Credentials::PrivateKeyJwt(key) => {
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push((
                    "client_assertion",
                    key.assertion(&self.client_id, &self.issuer),
                ));
                form.push(("client_id", self.client_id.clone()));
            }
            Credentials::Secret(s) => {
                req = req.basic_auth(&self.client_id, Some(s.expose()));
            }
        }
        let send = |nonce: Option<String>| {
            let mut r = req
                .try_clone()
                .expect("a form body can be cloned")
                .form(&form);
            if let Some(k) = &self.dpop {
                r = r.header("DPoP", k.proof("POST", url, None, nonce.as_deref()));
            }
            r.send()
        };
        let mut r = send(None).await.map_err(http_error)?;
        if r.status().as_u16() == 400 {
            if let Some(n) = r.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()) {
                let n = n.to_owned();
                r = send(Some(n)).await.map_err(http_error)?;
            }
        }
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            return Err(LoginError::Refused {
                status,
                error: body["error"].as_str().unwrap_or("").to_owned(),
                description: body["error_description"].as_str().unwrap_or("").to_owned(),
            });
        }
        Ok(body)
    }

    /// Starts a login: PKCE, state and nonce, pushed to the provider when it offers PAR
    /// (unless [`LoginClient::without_par`]); returns where to send the browser.
    pub async fn start(&self, scope: &str) -> Result<PendingLogin, LoginError> {
        let (pkce, state, nonce) = (Pkce::new(), random(24), random(24));
        let params = vec![
            ("response_type", "code".to_owned()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("scope", scope.to_owned()),
            ("state", state.clone()),
            ("nonce", nonce.clone()),
            ("code_challenge", pkce.challenge().to_owned()),
            ("code_challenge_method", "S256".into()),
        ];
        let authorize = self.endpoint("authorization_endpoint")?;
        let mut url = url::Url::parse(&authorize).map_err(|_| LoginError::Unexpected)?;
        let par = self.discovery["pushed_authorization_request_endpoint"]
            .as_str()
            .filter(|_| self.pushed);
        match par {
            Some(par) => {
                let pushed = self.post(par, params).await?;
                let uri = pushed["request_uri"]
                    .as_str()
                    .ok_or(LoginError::Unexpected)?;
                url.query_pairs_mut()
                    .append_pair("client_id", &self.client_id)
                    .append_pair("request_uri", uri);
            }
            None => {
                let mut q = url.query_pairs_mut();
                q.append_pair("client_id", &self.client_id)
                    .extend_pairs(params);
                // Binds the code to the DPoP key (RFC 9449 §10), as the pushed proof does.
                if let Some(key) = &self.dpop {
                    q.append_pair("dpop_jkt", &key.thumbprint());
                }
            }
        }
        Ok(PendingLogin {
            url: url.to_string(),
            state,
            nonce,
            pkce,
        })
    }

    /// Finishes a login at the callback: checks `state` and `iss`, redeems the code, and
    /// verifies the ID token (signature, issuer, audience, nonce, `at_hash`).
    pub async fn finish(
        &self,
        pending: PendingLogin,
        callback_url: &str,
    ) -> Result<Tokens, LoginError> {
        let cb = Callback::parse(callback_url, &pending.state, &self.issuer)?;
        let body = self
            .post(
                &self.endpoint("token_endpoint")?,
                vec![
                    ("grant_type", "authorization_code".into()),
                    ("code", cb.code().to_owned()),
                    ("redirect_uri", self.redirect_uri.clone()),
                    ("code_verifier", pending.pkce.expose_verifier().to_owned()),
                ],
            )
            .await?;
        let access = body["access_token"]
            .as_str()
            .ok_or(LoginError::Unexpected)?;
        let raw = body["id_token"].as_str().ok_or(LoginError::Unexpected)?;
        let id_token = self.verify_id_token(raw, &pending.nonce, access).await?;
        Ok(Tokens {
            id_token,
            id_token_raw: raw.to_owned(),
            access_token: crate::signing_client::ClientSecret::new(access),
            refresh_token: body["refresh_token"]
                .as_str()
                .map(crate::signing_client::ClientSecret::new),
            token_type: body["token_type"].as_str().unwrap_or("Bearer").to_owned(),
        })
    }

    /// The citizen's released claims (with a DPoP proof when the token is bound).
    pub async fn userinfo(&self, tokens: &Tokens) -> Result<Value, LoginError> {
        let url = self.endpoint("userinfo_endpoint")?;
        let at = tokens.access_token.expose();
        let mut req = self.http.get(&url);
        req = match &self.dpop {
            Some(k) => req
                .header("Authorization", format!("DPoP {at}"))
                .header("DPoP", k.proof("GET", &url, Some(at), None)),
            None => req.bearer_auth(at),
        };
        let r = req.send().await.map_err(http_error)?;
        if !r.status().is_success() {
            return Err(LoginError::Refused {
                status: r.status().as_u16(),
                error: "invalid_token".into(),
                description: String::new(),
            });
        }
        r.json().await.map_err(http_error)
    }

    /// New tokens for a refresh token (the same key proves a DPoP-bound grant). Returns
    /// the token endpoint's answer: `access_token`, `id_token`, and the refresh token to
    /// keep (FAPI grants keep theirs; others rotate).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Value, LoginError> {
        self.post(
            &self.endpoint("token_endpoint")?,
            vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", refresh_token.to_owned()),
            ],
        )
        .await
    }

    /// Revokes a refresh or access token and its whole grant (RFC 7009).
    pub async fn revoke(&self, token: &str) -> Result<(), LoginError> {
        self.post(
            &self.endpoint("revocation_endpoint")?,
            vec![("token", token.to_owned())],
        )
        .await
        .map(|_| ())
    }

    /// The RP-initiated logout URL: the provider ends the citizen's session and sends the
    /// browser to `post_logout_redirect_uri` (registered) with `state`.
    pub fn logout_url(
        &self,
        id_token_hint: &str,
        post_logout_redirect_uri: &str,
        state: &str,
    ) -> Result<String, LoginError> {
        let mut url = url::Url::parse(&self.endpoint("end_session_endpoint")?)
            .map_err(|_| LoginError::Unexpected)?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token_hint)
            .append_pair("post_logout_redirect_uri", post_logout_redirect_uri)
            .append_pair("state", state);
        Ok(url.to_string())
    }
}

async fn fetch_keys(
    http: &reqwest::Client,
    discovery: &Value,
    issuer: &str,
    client_id: &str,
) -> Result<Keys, LoginError> {
    let jwks_uri = discovery["jwks_uri"]
        .as_str()
        .ok_or(LoginError::Unexpected)?;
    let r = http.get(jwks_uri).send().await.map_err(http_error)?;
    let max_age = max_age(r.headers());
    let jwks = r.text().await.map_err(http_error)?;
    let algs: Vec<&str> = discovery["id_token_signing_alg_values_supported"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Ok(Keys {
        verifier: IdTokenVerifier::new(issuer, client_id, &jwks)?.allow_algorithms(&algs),
        fetched: std::time::Instant::now(),
        max_age,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`; a test key.
    const OPENSSL_P256: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQguUsYbiT1NoIt2Dp5
NlFpIVtO+sND35yFCTK11h5vKkChRANCAASBpPnEizhuYMhk0fTp4y/4rS1JpovW
TCejkVnvo7U25yZm18oSZ+JsMntLjT/Y20sU+EzLaCestr6PElL6i8ka
-----END PRIVATE KEY-----
";

    #[test]
    fn client_keys_round_trip_as_pem_named_by_thumbprint() {
        let key = ClientKey::from_pem(OPENSSL_P256).unwrap();
        assert_eq!(key.kid(), key.thumbprint());
        assert_eq!(key.to_pem(), OPENSSL_P256);
        let set: Value = serde_json::from_str(&key.jwks()).unwrap();
        assert_eq!(set["keys"][0]["kid"], key.thumbprint());
        let made = ClientKey::generate_named_by_thumbprint();
        let again = ClientKey::from_pem(&made.to_pem()).unwrap();
        assert_eq!((again.kid(), again.jwks()), (made.kid(), made.jwks()));
        // An Ed25519 key, another label, and no PEM at all are refused.
        for bad in [
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHD09UFRKOJsV02zOEcmYYlBB41HHfqbjiaSoRdI76UF\n-----END PRIVATE KEY-----\n",
            &OPENSSL_P256.replace("PRIVATE KEY", "EC PRIVATE KEY"),
            "not a key",
        ] {
            assert!(
                matches!(ClientKey::from_pem(bad), Err(LoginError::BadKey(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn cache_control_sets_the_keys_lifetime() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(max_age(&h), Duration::from_secs(300));
        h.insert(
            reqwest::header::CACHE_CONTROL,
            "public, max-age=60".parse().unwrap(),
        );
        assert_eq!(max_age(&h), Duration::from_secs(60));
    }
}
