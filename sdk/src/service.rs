//! A back end calling the identity service's APIs in its own name: a registration office's
//! system, an auditor's tool. Such clients authenticate with `private_key_jwt` and hold only
//! DPoP-bound access tokens (RFC 9449), which the service requires for the `registration`
//! and `audit` scopes: a token copied out of a log or a proxy is useless without the key
//! that proves each request, and that key never leaves this process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), identity_sdk::signing_client::ClientError> {
//! use identity_sdk::login::ClientKey;
//! use identity_sdk::service::ServiceClient;
//! let pem = std::fs::read_to_string("office.pem").unwrap();
//! let key = ClientKey::from_pem(&pem).unwrap();
//! let office =
//!     ServiceClient::connect("https://id.gov.example", "office-1", key, "registration").await?;
//! let record = office
//!     .send(office.get("https://id.gov.example/registration/citizens/c-1").header("officer", "lee"))
//!     .await?;
//! println!("{}", record.status());
//! # Ok(()) }
//! ```

use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::login::ClientKey;
use crate::signing_client::{ClientError, ClientSecret};

/// A token is fetched again this long before it expires, so a request never carries one
/// that lapses on the way.
const MARGIN: Duration = Duration::from_secs(30);

/// A client of the service's back-end APIs with its `private_key_jwt` key and a DPoP key
/// of its own, made fresh for this process.
#[derive(Debug)]
pub struct ServiceClient {
    http: reqwest::Client,
    issuer: String,
    token_endpoint: String,
    /// The token endpoint without query or fragment, as a DPoP proof names it.
    token_htu: String,
    client_id: String,
    key: ClientKey,
    dpop: ClientKey,
    scope: String,
    token: tokio::sync::Mutex<Option<(ClientSecret, Instant)>>,
    /// The service's latest DPoP nonce (RFC 9449 §8), sent with every proof once seen.
    nonce: Mutex<Option<String>>,
}

/// A URL as a DPoP proof's `htu` names it: without query and fragment (RFC 9449 §4.2).
fn without_query(url: &url::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

fn http_error(e: reqwest::Error) -> ClientError {
    ClientError::Http(e.to_string())
}

/// `error` and `error_description` of an OAuth error body.
fn refused(status: u16, body: &Value) -> ClientError {
    ClientError::Refused {
        status,
        error: body["error"].as_str().unwrap_or_default().to_owned(),
        description: body["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// Whether a resource's 401 asks for a DPoP nonce (RFC 9449 §9).
fn asks_for_nonce(r: &reqwest::Response) -> bool {
    r.status() == reqwest::StatusCode::UNAUTHORIZED
        && r.headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("use_dpop_nonce"))
}

impl ServiceClient {
    /// Reads the service's discovery document for its token endpoint; tokens for `scope`
    /// are fetched when first needed.
    pub async fn connect(
        issuer: &str,
        client_id: &str,
        key: ClientKey,
        scope: &str,
    ) -> Result<Self, ClientError> {
        let http = crate::http_client(Duration::from_secs(60)).map_err(http_error)?;
        let issuer = issuer.trim_end_matches('/').to_owned();
        let discovery = crate::discovery(&http, &issuer)
            .await
            .map_err(|e| match e {
                crate::DiscoveryError::Http(e) => http_error(e),
                crate::DiscoveryError::OtherIssuer => ClientError::Unexpected,
            })?;
        let token_endpoint = discovery["token_endpoint"]
            .as_str()
            .ok_or(ClientError::Unexpected)?
            .to_owned();
        let token_htu = url::Url::parse(&token_endpoint)
            .map(|u| without_query(&u))
            .map_err(|_| ClientError::Unexpected)?;
        Ok(ServiceClient {
            http,
            issuer,
            token_endpoint,
            token_htu,
            client_id: client_id.to_owned(),
            key,
            dpop: ClientKey::generate("dpop"),
            scope: scope.to_owned(),
            token: tokio::sync::Mutex::new(None),
            nonce: Mutex::new(None),
        })
    }

    /// Fetches a token now, so that a refused credential shows before any work starts.
    pub async fn authenticate(&self) -> Result<(), ClientError> {
        self.token().await.map(drop)
    }

    /// A GET request to `url`, to pass to [`ServiceClient::send`].
    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.http.get(url)
    }

    /// A request of any method to `url`, to pass to [`ServiceClient::send`].
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// Sends `request` with the access token and a DPoP proof for its method and URL,
    /// once more with the service's nonce if it asks for one, and once more with a new
    /// token if the service refuses the one held (revoked, or issued under keys since
    /// replaced). The body must be in memory (JSON, a form, bytes), since the request may
    /// be sent again.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let request = request.build().map_err(http_error)?;
        let mut token = self.token().await?;
        let htu = without_query(request.url());
        let (mut retried, mut renewed) = (false, false);
        loop {
            let mut attempt = request.try_clone().ok_or(ClientError::Unexpected)?;
            let proof = self.dpop.proof(
                request.method().as_str(),
                &htu,
                Some(token.expose()),
                self.current_nonce().as_deref(),
            );
            let headers = attempt.headers_mut();
            for (name, value) in [
                (
                    reqwest::header::AUTHORIZATION,
                    format!("DPoP {}", token.expose()),
                ),
                (reqwest::header::HeaderName::from_static("dpop"), proof),
            ] {
                let value = value.parse().map_err(|_| ClientError::Unexpected)?;
                headers.insert(name, value);
            }
            let r = self.http.execute(attempt).await.map_err(http_error)?;
            if !retried && asks_for_nonce(&r) && self.remember_nonce(&r) {
                retried = true;
                continue;
            }
            if !renewed && r.status() == reqwest::StatusCode::UNAUTHORIZED {
                renewed = true;
                self.forget_token(&token).await;
                token = self.token().await?;
                continue;
            }
            return Ok(r);
        }
    }

    /// Drops the held token if it is still `refused` (another caller may have renewed it).
    async fn forget_token(&self, refused: &ClientSecret) {
        let mut held = self.token.lock().await;
        if held
            .as_ref()
            .is_some_and(|(t, _)| t.expose() == refused.expose())
        {
            *held = None;
        }
    }

    fn current_nonce(&self) -> Option<String> {
        self.nonce.lock().ok().and_then(|n| n.clone())
    }

    /// Keeps the `DPoP-Nonce` of an answer; whether it had one.
    fn remember_nonce(&self, r: &reqwest::Response) -> bool {
        let Some(n) = r.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        if let Ok(mut slot) = self.nonce.lock() {
            *slot = Some(n.to_owned());
        }
        true
    }

    /// The current access token, fetched by client credentials when there is none or it
    /// is about to expire. One caller fetches; the others wait for its token.
    async fn token(&self) -> Result<ClientSecret, ClientError> {
        let mut held = self.token.lock().await;
        if let Some((token, until)) = held.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let mut retried = false;
        let body = loop {
            let form = [
                ("grant_type", "client_credentials".to_owned()),
                ("scope", self.scope.clone()),
                ("client_id", self.client_id.clone()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ),
                (
                    "client_assertion",
                    self.key.assertion(&self.client_id, &self.issuer),
                ),
            ];
            let proof = self.dpop.proof(
                "POST",
                &self.token_htu,
                None,
                self.current_nonce().as_deref(),
            );
            let r = self
                .http
                .post(&self.token_endpoint)
                .header("DPoP", proof)
                .form(&form)
                .send()
                .await
                .map_err(http_error)?;
            let status = r.status().as_u16();
            let fresh_nonce = self.remember_nonce(&r);
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if status == 400 && body["error"] == "use_dpop_nonce" && fresh_nonce && !retried {
                retried = true;
                continue;
            }
            if status != 200 {
                return Err(refused(status, &body));
            }
            break body;
        };
        // A bearer token would be refused by every API this client is for: the service
        // did not bind it, so something between is not the service.
        if body["token_type"] != "DPoP" {
            return Err(ClientError::Unexpected);
        }
        let token = ClientSecret::new(
            body["access_token"]
                .as_str()
                .ok_or(ClientError::Unexpected)?,
        );
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(60));
        // A short-lived token is still kept for half its life, not fetched for every call.
        let until = Instant::now() + lifetime.saturating_sub(MARGIN.min(lifetime / 2));
        *held = Some((token.clone(), until));
        Ok(token)
    }
}
