//! The e-service's side of document signing over HTTP: ask a citizen to sign a document's
//! hash, wait for the decision, and fetch the result (which
//! [`crate::signing::verify_signing_result`] then checks offline).
//!
//! ```no_run
//! # async fn demo() -> Result<(), identity_sdk::signing_client::ClientError> {
//! use identity_sdk::signing_client::{ClientSecret, SigningClient, DocumentToSign, Status};
//! let client = SigningClient::with_client_credentials(
//!     "https://id.gov.example",
//!     "licensing",
//!     ClientSecret::new("secret from registration"),
//! )
//! .await?;
//! let asked = client
//!     .ask(&DocumentToSign::sha256("SUBJECT", &[0u8; 32], "Licence.pdf"))
//!     .await?;
//! println!("show code {} and send the citizen to {}", asked.code, asked.approval_url);
//! if let Status::Signed(result) = client.wait(&asked.request_id, std::time::Duration::from_secs(300)).await? {
//!     // verify_signing_result(&result, &expectations)?
//!     # let _ = result;
//! }
//! # Ok(()) }
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::fmt;
use std::time::Duration;

/// Whether the identity service refuses `c` in a document's name or description: it reorders
/// or hides text without showing itself (bidirectional embeddings, overrides and isolates,
/// zero-width characters). On the approval page such a character could make
/// `invoice\u{202e}fdp.exe` read as another file. Control characters are refused too.
///
/// ```
/// use identity_sdk::signing_client::reorders_text;
/// let name: String = "invoice\u{202e}fdp.exe".chars().filter(|&c| !reorders_text(c)).collect();
/// assert_eq!(name, "invoicefdp.exe");
/// ```
pub fn reorders_text(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// A client secret; its `Debug` never shows it.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        ClientSecret(s.into())
    }

    /// The secret, to send where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// What went wrong talking to the identity service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The network or TLS failed.
    #[error("request failed: {0}")]
    Http(String),
    /// The service refused, with its OAuth error code and description.
    #[error("the identity service refused: {error}: {description}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// OAuth error code.
        error: String,
        /// Its description.
        description: String,
    },
    /// The answer was not what the API returns.
    #[error("unexpected answer from the identity service")]
    Unexpected,
    /// The citizen did not decide in time.
    #[error("no decision before the timeout")]
    Timeout,
    /// A callback body that is not `{"request_id": ...}` with a well-formed id.
    #[error("the callback is not the service's")]
    BadCallback,
}

/// A document's hash to sign, and what the citizen sees.
#[derive(Debug, Clone)]
pub struct DocumentToSign {
    /// The citizen, by the pairwise `sub` this e-service received at login.
    pub subject: String,
    /// `SHA-256` or `SHA-512`.
    pub hash_alg: &'static str,
    /// The digest.
    pub digest: Vec<u8>,
    /// The document's name, shown to the citizen.
    pub name: String,
    /// A description, shown to the citizen.
    pub description: Option<String>,
    /// Where the citizen's browser returns afterwards.
    pub return_uri: Option<String>,
    /// Where the service POSTs `{request_id, state}` once the citizen decided.
    pub callback_uri: Option<String>,
}

impl DocumentToSign {
    /// A SHA-256 digest to sign, with nothing optional set.
    pub fn sha256(subject: &str, digest: &[u8], name: &str) -> Self {
        DocumentToSign {
            subject: subject.into(),
            hash_alg: "SHA-256",
            digest: digest.to_vec(),
            name: name.into(),
            description: None,
            return_uri: None,
            callback_uri: None,
        }
    }
}

/// A request the service accepted.
#[derive(Debug, Clone)]
pub struct Asked {
    /// Its id, to poll and to verify the result with.
    pub request_id: String,
    /// The 4-digit identification code to show beside the document.
    pub code: String,
    /// Where to send the citizen.
    pub approval_url: String,
    /// When it expires, Unix seconds.
    pub expires_at: i64,
}

/// Where a request stands.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Status {
    /// The citizen has not decided.
    Pending,
    /// Signed: the result, for [`crate::signing::verify_signing_result`].
    Signed(Value),
    /// The citizen rejected it.
    Rejected,
    /// Nobody decided in time.
    Expired,
}

/// An e-service's client of the signing API.
#[derive(Debug, Clone)]
pub struct SigningClient {
    http: reqwest::Client,
    issuer: String,
    token: AccessToken,
}

/// An access token; its `Debug` never shows it.
#[derive(Clone)]
struct AccessToken(String);

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

async fn refused(r: reqwest::Response) -> ClientError {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    ClientError::Refused {
        status,
        error: body["error"].as_str().unwrap_or("").to_owned(),
        description: body["error_description"].as_str().unwrap_or("").to_owned(),
    }
}

fn http_error(e: reqwest::Error) -> ClientError {
    ClientError::Http(e.to_string())
}

impl SigningClient {
    /// Gets an access token with the `signing` scope by client credentials.
    pub async fn with_client_credentials(
        issuer: &str,
        client_id: &str,
        secret: ClientSecret,
    ) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(http_error)?;
        let issuer = issuer.trim_end_matches('/').to_owned();
        let r = http
            .post(format!("{issuer}/token"))
            .basic_auth(client_id, Some(&secret.0))
            .form(&[("grant_type", "client_credentials"), ("scope", "signing")])
            .send()
            .await
            .map_err(http_error)?;
        if !r.status().is_success() {
            return Err(refused(r).await);
        }
        let body: Value = r.json().await.map_err(http_error)?;
        let token = body["access_token"]
            .as_str()
            .ok_or(ClientError::Unexpected)?
            .to_owned();
        Ok(SigningClient {
            http,
            issuer,
            token: AccessToken(token),
        })
    }

    /// Asks the citizen to sign.
    pub async fn ask(&self, doc: &DocumentToSign) -> Result<Asked, ClientError> {
        let r = self
            .http
            .post(format!("{}/signing/requests", self.issuer))
            .bearer_auth(&self.token.0)
            .json(&json!({
                "subject": doc.subject,
                "hash_alg": doc.hash_alg,
                "document_hash": URL_SAFE_NO_PAD.encode(&doc.digest),
                "document_name": doc.name,
                "description": doc.description,
                "return_uri": doc.return_uri,
                "callback_uri": doc.callback_uri,
            }))
            .send()
            .await
            .map_err(http_error)?;
        if r.status().as_u16() != 201 {
            return Err(refused(r).await);
        }
        let v: Value = r.json().await.map_err(http_error)?;
        let text = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .ok_or(ClientError::Unexpected)
        };
        Ok(Asked {
            request_id: text("request_id")?,
            code: text("code")?,
            approval_url: text("approval_url")?,
            expires_at: v["expires_at"].as_i64().ok_or(ClientError::Unexpected)?,
        })
    }

    /// Where a request stands now.
    pub async fn status(&self, request_id: &str) -> Result<Status, ClientError> {
        let r = self
            .http
            .get(format!("{}/signing/requests/{request_id}", self.issuer))
            .bearer_auth(&self.token.0)
            .send()
            .await
            .map_err(http_error)?;
        if !r.status().is_success() {
            return Err(refused(r).await);
        }
        let v: Value = r.json().await.map_err(http_error)?;
        match v["state"].as_str() {
            Some("pending") => Ok(Status::Pending),
            Some("signed") => Ok(Status::Signed(v["signed"].clone())),
            Some("rejected") => Ok(Status::Rejected),
            Some("expired") => Ok(Status::Expired),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Handles the service's callback: the body of the POST that arrived at the request's
    /// `callback_uri`. The callback is only a hint that something changed (anyone can POST
    /// to that URL), so its `state` is ignored and the request's real status is fetched from
    /// the service over the authenticated API. Returns the request id and that status; act
    /// on it only if the id is one of the requests this e-service made.
    ///
    /// ```no_run
    /// # async fn demo(client: identity_sdk::signing_client::SigningClient, body: &[u8]) -> Result<(), identity_sdk::signing_client::ClientError> {
    /// use identity_sdk::signing_client::Status;
    /// // In the e-service's handler of POST /signing-callback:
    /// match client.on_callback(body).await? {
    ///     (request_id, Status::Signed(result)) => { /* verify and store */ let _ = (request_id, result); }
    ///     (request_id, other) => println!("{request_id}: {other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn on_callback(&self, body: &[u8]) -> Result<(String, Status), ClientError> {
        let v: Value = serde_json::from_slice(body).map_err(|_| ClientError::BadCallback)?;
        let id = v["request_id"].as_str().ok_or(ClientError::BadCallback)?;
        // Request ids are base64url; anything else is not from the service and must not
        // reach a URL path.
        if id.is_empty()
            || id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ClientError::BadCallback);
        }
        let status = self.status(id).await?;
        Ok((id.to_owned(), status))
    }

    /// Polls every two seconds until the citizen decides or `timeout` passes.
    pub async fn wait(&self, request_id: &str, timeout: Duration) -> Result<Status, ClientError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.status(request_id).await? {
                Status::Pending if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Status::Pending => return Err(ClientError::Timeout),
                decided => return Ok(decided),
            }
        }
    }

    /// The signing CA's certificate (DER), to pin. Fetch it once, out of band, and keep it:
    /// a CA fetched at verification time proves nothing.
    pub async fn ca_certificate(&self) -> Result<Vec<u8>, ClientError> {
        let pem = self
            .http
            .get(format!("{}/signing/ca", self.issuer))
            .send()
            .await
            .map_err(http_error)?
            .text()
            .await
            .map_err(http_error)?;
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| ClientError::Unexpected)
    }
}
