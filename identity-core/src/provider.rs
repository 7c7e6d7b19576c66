//! The OpenID Connect provider's domain logic: authorization, login, consent, codes,
//! tokens, UserInfo and the administration of clients and citizens.
//!
//! Every method is async and runs its database work on a blocking thread, so the server's
//! handlers make one call each. All state is in the database; nothing here is per-process
//! except caches that may be stale for seconds (signing keys).

use diesel::prelude::*;
use ring::digest;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::fmt;
use std::sync::Arc;

use crate::audit::{AuditLog, Event, Outcome as Audited};
use crate::clock::Clock;
use crate::crypto::{b64, random_id, random_token, token_hash, Kek, KeyedHash, Purpose};
use crate::error::{Error, Result};
use crate::keys::{at_hash, KeyStore, Signer};
use crate::model::*;
use crate::password::{Hasher, HashingConfig, Password, Policy};
use crate::schema::*;
use crate::storage::{Db, DbConnection};
use crate::throttle::ThrottleConfig;

mod client_credentials;
mod enrolment;
mod logout;
mod passkeys;
mod signing;
pub use enrolment::{
    check_date, mask_document, normalize_document, AccountStatus, ActivationCode, CitizenRecord,
    Registration, RegistrationUpdate,
};
pub use logout::{EndSession, EndSessionInput, LogoutNotice};
pub use passkeys::{Ceremony, PasskeyView, WebauthnConfig, CEREMONY_TTL, REGISTRATION_FRESHNESS};
pub use signing::{
    NewSigningRequest, SigningDecision, SigningRequestView, SigningResult, SIGNING_TTL,
};

/// Lifetimes and limits of the provider, validated by the server's configuration.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// The issuer: the public URL, without a trailing slash.
    pub issuer: String,
    /// Authorization code lifetime (at most 60 s).
    pub code_ttl: i64,
    /// Access token lifetime.
    pub access_token_ttl: i64,
    /// ID token lifetime.
    pub id_token_ttl: i64,
    /// Refresh token lifetime.
    pub refresh_token_ttl: i64,
    /// How long a grant's refresh tokens can be refreshed at all, from the first code
    /// exchange; rotation never extends it.
    pub refresh_absolute_ttl: i64,
    /// How long a citizen has to finish logging in.
    pub auth_request_ttl: i64,
    /// Session inactivity timeout.
    pub session_idle: i64,
    /// Session absolute timeout.
    pub session_absolute: i64,
    /// Login throttling.
    pub throttle: ThrottleConfig,
    /// Password policy.
    pub policy: Policy,
    /// Password hashing.
    pub hashing: HashingConfig,
    /// Where this process keeps the last audit checkpoint it signed (outside the database).
    pub audit_witness: Option<std::path::PathBuf>,
    /// The WebAuthn relying party.
    pub webauthn: WebauthnConfig,
    /// How long an activation or recovery code works.
    pub activation_code_ttl: i64,
    /// Fetches clients' published JWKS (the server's HTTP client); none means `jwks_uri`
    /// clients cannot authenticate.
    pub jwks_fetcher: Option<std::sync::Arc<dyn crate::client_auth::JwksFetcher>>,
    /// Whether DPoP proofs must carry a server nonce (RFC 9449 §8), which limits how long a
    /// proof made in advance can be used.
    pub dpop_nonce_required: bool,
    /// How long a pushed request's `request_uri` lives (60 s; FAPI 2.0 asks under 600).
    pub par_ttl: i64,
}

impl ProviderConfig {
    /// The audit log's origin (its C2SP name): the issuer without its scheme, then `/audit`.
    pub fn audit_origin(&self) -> String {
        let host = self
            .issuer
            .split_once("://")
            .map_or(self.issuer.as_str(), |(_, rest)| rest);
        format!("{}/audit", host.trim_end_matches('/'))
    }

    /// Defaults for an issuer.
    pub fn new(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into().trim_end_matches('/').to_owned();
        ProviderConfig {
            webauthn: WebauthnConfig::for_issuer(&issuer),
            issuer,
            code_ttl: 60,
            access_token_ttl: 600,
            id_token_ttl: 600,
            refresh_token_ttl: 30 * 86_400,
            refresh_absolute_ttl: 30 * 86_400,
            auth_request_ttl: 600,
            session_idle: 3_600,
            session_absolute: 12 * 3_600,
            throttle: ThrottleConfig::default(),
            policy: Policy::default(),
            hashing: HashingConfig::default(),
            audit_witness: None,
            activation_code_ttl: 86_400,
            jwks_fetcher: None,
            dpop_nonce_required: false,
            par_ttl: 60,
        }
    }
}

/// A session cookie's value. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// Wraps a cookie value.
    pub fn new(s: impl Into<String>) -> Self {
        SessionToken(s.into())
    }
    /// The cookie value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// A live session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The citizen, by internal id.
    pub citizen_id: String,
    /// When the citizen last authenticated.
    pub auth_time: i64,
    /// Authentication methods (RFC 8176).
    pub amr: String,
    /// Assurance level.
    pub acr: String,
}

/// The parameters of an authorization request, as the server parsed them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuthorizeInput {
    /// `client_id`.
    pub client_id: Option<String>,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `response_type`.
    pub response_type: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `code_challenge`.
    pub code_challenge: Option<String>,
    /// `code_challenge_method`.
    pub code_challenge_method: Option<String>,
    /// `prompt`.
    pub prompt: Option<String>,
    /// `max_age`.
    pub max_age: Option<String>,
    /// `login_hint`.
    pub login_hint: Option<String>,
    /// `ui_locales`.
    pub ui_locales: Option<String>,
    /// `acr_values`.
    pub acr_values: Option<String>,
    /// `request` (JAR); not offered yet.
    pub request: Option<String>,
    /// `request_uri`; not offered yet.
    pub request_uri: Option<String>,
    /// Names of parameters that appeared more than once.
    pub repeated: Vec<String>,
    /// Set when the parameters came from a pushed authorization request.
    #[serde(skip)]
    pub pushed: bool,
    /// `dpop_jkt` (RFC 9449 §10), or the thumbprint of the DPoP proof sent with PAR.
    pub dpop_jkt: Option<String>,
    /// `id_token_hint`: the citizen the client expects (with `prompt=none`, or to check).
    pub id_token_hint: Option<String>,
    /// `claims` (OpenID Connect Core §5.5), JSON.
    pub claims: Option<String>,
}

/// What the browser should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Go back to the client: a code or an error, in the redirect URI.
    Redirect(String),
    /// Show the login or consent page of this pending request.
    Interact(String),
}

/// What the interaction page shows.
#[derive(Clone, Debug)]
pub enum Interaction {
    /// Ask for credentials.
    Login {
        /// The e-service's name.
        client_name: String,
        /// Its department.
        department: String,
        /// `login_hint`, to prefill the username.
        login_hint: Option<String>,
        /// `ui_locales` of the request.
        ui_locales: Option<String>,
        /// The e-service needs the passkey level: a password alone will not do.
        passkey_required: bool,
        /// Where the browser goes once the request is answered (the page's forms lead
        /// there, which its Content-Security-Policy must allow).
        redirect_uri: String,
    },
    /// Ask to release these scopes.
    Consent {
        /// The e-service's name.
        client_name: String,
        /// Its department.
        department: String,
        /// The scopes that need consent.
        scopes: Vec<String>,
        /// `ui_locales` of the request.
        ui_locales: Option<String>,
        /// Where the browser goes once the request is answered.
        redirect_uri: String,
    },
    /// Done: go back to the client.
    Redirect(String),
}

/// How a client authenticated at the token endpoint.
#[derive(Clone)]
pub enum ClientAuth {
    /// `client_secret_basic` or `client_secret_post`.
    Secret {
        /// Client id.
        id: String,
        /// Secret as sent.
        secret: ClientSecret,
    },
    /// A public client: just its id.
    None {
        /// Client id.
        id: String,
    },
    /// `private_key_jwt`: a JWT signed with the client's key.
    Assertion {
        /// `client_id`, if the request carried one (else the assertion's `iss`).
        id: Option<String>,
        /// The `client_assertion`.
        assertion: String,
        /// The path of the endpoint it was sent to (`/token`, `/par`, ...): its URL under
        /// the issuer is an acceptable `aud` for a client that is not FAPI.
        endpoint: &'static str,
    },
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::Secret { id, .. } => write!(f, "Secret({id}, <redacted>)"),
            ClientAuth::None { id } => write!(f, "None({id})"),
            ClientAuth::Assertion { id, .. } => write!(f, "Assertion({id:?}, <redacted>)"),
        }
    }
}

/// A token request after client authentication was parsed.
#[derive(Clone, Debug, Default)]
pub struct TokenInput {
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// `code`.
    pub code: Option<String>,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `code_verifier`.
    pub code_verifier: Option<String>,
    /// `refresh_token`.
    pub refresh_token: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// The `DPoP` header: a proof for this token request.
    pub dpop: Option<String>,
}

/// A successful token response.
#[derive(Clone, Debug, Serialize)]
pub struct TokenResponse {
    /// The JWT access token.
    pub access_token: String,
    /// `DPoP` when the access token is bound to a key, else `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The ID token, for grants made by a citizen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The refresh token, for grants made by a citizen that include `offline_access`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The granted scope.
    pub scope: String,
}

/// A consent as the account page lists it.
#[derive(Clone, Debug)]
pub struct ConsentView {
    /// Client id.
    pub client_id: String,
    /// The e-service's name.
    pub client_name: String,
    /// Its department.
    pub department: String,
    /// Scopes consented to.
    pub scopes: String,
    /// When.
    pub granted_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct AccessClaims {
    iss: String,
    sub: String,
    aud: String,
    client_id: String,
    scope: String,
    iat: i64,
    exp: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amr: Option<Vec<String>>,
    /// The grant (token family) this token belongs to; lets UserInfo refuse tokens of a
    /// revoked grant. Opaque and random.
    #[serde(skip_serializing_if = "Option::is_none")]
    fid: Option<String>,
    /// The key the token is bound to (DPoP, RFC 9449 §6).
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Value>,
}

#[derive(Queryable, Clone)]
struct ClientRow {
    id: String,
    name: String,
    department: String,
    sector: String,
    secret_hash: Option<String>,
    redirect_uris: String,
    scopes: String,
    id_token_alg: String,
    _created_at: i64,
    min_acr: Option<String>,
    jwks: Option<String>,
    fapi: i32,
    post_logout_redirect_uris: Option<String>,
    backchannel_logout_uri: Option<String>,
    jwks_uri: Option<String>,
    signing_return_uris: Option<String>,
    signing_callback_uris: Option<String>,
}

/// A list of URIs stored as a JSON array, NULL when empty.
fn uri_list(stored: Option<String>) -> Result<Vec<String>> {
    match stored {
        Some(s) => serde_json::from_str(&s).map_err(Error::internal),
        None => Ok(Vec::new()),
    }
}

/// The stored form of a list of URIs: NULL when empty.
fn stored_uri_list(uris: &[String]) -> Option<String> {
    (!uris.is_empty()).then(|| serde_json::to_string(uris).unwrap_or_default())
}

impl ClientRow {
    fn into_client(self) -> Result<Client> {
        Ok(Client {
            id: self.id,
            name: self.name,
            department: self.department,
            sector: self.sector,
            secret_hash: self.secret_hash,
            redirect_uris: serde_json::from_str(&self.redirect_uris).map_err(Error::internal)?,
            scopes: Scopes::parse(&self.scopes),
            id_token_alg: SigningAlg::parse(&self.id_token_alg)?,
            min_acr: self.min_acr,
            jwks: self.jwks,
            fapi: self.fapi != 0,
            post_logout_redirect_uris: uri_list(self.post_logout_redirect_uris)?,
            backchannel_logout_uri: self.backchannel_logout_uri,
            jwks_uri: self.jwks_uri,
            signing_return_uris: uri_list(self.signing_return_uris)?,
            signing_callback_uris: uri_list(self.signing_callback_uris)?,
        })
    }
}

#[derive(Queryable, Insertable, Clone, Debug)]
#[diesel(table_name = auth_requests)]
struct AuthRequest {
    id: String,
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    prompt: Option<String>,
    max_age: Option<i64>,
    login_hint: Option<String>,
    ui_locales: Option<String>,
    created_at: i64,
    expires_at: i64,
    acr_required: Option<String>,
    dpop_jkt: Option<String>,
}

#[derive(Queryable, Insertable, Clone, Debug)]
#[diesel(table_name = auth_codes)]
struct CodeRow {
    code_hash: String,
    client_id: String,
    citizen_id: String,
    redirect_uri: String,
    scope: String,
    nonce: Option<String>,
    code_challenge: String,
    auth_time: i64,
    amr: String,
    acr: String,
    family_id: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    dpop_jkt: Option<String>,
}

#[derive(Queryable, Clone, Debug)]
struct RefreshRow {
    _token_hash: String,
    family_id: String,
    scope: String,
    auth_time: i64,
    amr: String,
    acr: String,
    _created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
}

#[derive(Queryable, Clone, Debug)]
struct FamilyRow {
    _id: String,
    client_id: String,
    citizen_id: String,
    created_at: i64,
    revoked_at: Option<i64>,
    _revoked_reason: Option<String>,
    dpop_jkt: Option<String>,
}

/// What a citizen grant carries into its tokens.
struct Grant {
    grant_type: &'static str,
    family_id: String,
    client: Client,
    citizen_id: String,
    scope: Scopes,
    nonce: Option<String>,
    auth_time: i64,
    amr: String,
    acr: String,
    /// The DPoP key the access token (and the grant) is bound to.
    jkt: Option<String>,
    /// A refresh token that stays valid (not rotated): FAPI 2.0 grants bound to a key.
    keep_refresh: Option<String>,
    /// When the grant can no longer be refreshed (`refresh_absolute_ttl` after its first
    /// exchange).
    refresh_until: i64,
}

struct Inner {
    audit: AuditLog,
    db: Db,
    clock: Clock,
    config: ProviderConfig,
    keys: KeyStore,
    hasher: Hasher,
    subjects: KeyedHash,
    secrets: KeyedHash,
    throttle_key: KeyedHash,
    webauthn: webauthn_rs::Webauthn,
    kek: Kek,
    id_docs: KeyedHash,
    client_jwks: crate::client_auth::JwksCache,
    dpop_nonces: KeyedHash,
    /// Secret-authenticated clients as last read, for client_credentials grants.
    client_cache: client_credentials::ClientCache,
    /// client_credentials grants answered from memory (for the metrics).
    grants_from_memory: std::sync::atomic::AtomicU64,
}

/// The provider; cheap to clone.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.inner.config.issuer)
            .finish()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(Error::internal)?
}

fn redirect_with(uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        // Registered URIs were checked to be URLs; this cannot happen for a stored one.
        Err(_) => uri.to_owned(),
    }
}

/// A PKCE value: 43 to 128 characters of the unreserved set (RFC 7636 §4.1).
fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The scopes and the `acr` a `claims` parameter asks for. Claims we do not know are
/// ignored, as OpenID Connect allows; a parameter that is not a JSON object is refused.
fn claims_request(text: &str) -> std::result::Result<(Scopes, Option<&'static str>), &'static str> {
    let v: Value = serde_json::from_str(text).map_err(|_| "the claims parameter is not JSON")?;
    let obj = v
        .as_object()
        .ok_or("the claims parameter must be a JSON object")?;
    let mut scopes = Vec::new();
    let mut acr = None;
    for target in ["userinfo", "id_token"] {
        let Some(claims) = obj.get(target) else {
            continue;
        };
        let claims = claims
            .as_object()
            .ok_or("each member of the claims parameter must be an object")?;
        for (name, request) in claims {
            let scope = match name.as_str() {
                "name" | "name#zh-Hant" | "birthdate" | "gender" => "profile",
                "email" | "email_verified" => "email",
                "phone_number" | "phone_number_verified" => "phone",
                "address" => "address",
                "identity_document_number" => "identity_document",
                "acr" => {
                    let values: Vec<&str> = request
                        .get("values")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .or_else(|| {
                            request
                                .get("value")
                                .and_then(Value::as_str)
                                .map(|v| vec![v])
                        })
                        .unwrap_or_default();
                    acr = stronger_acr(acr, acr_from_values(&values.join(" ")));
                    continue;
                }
                _ => continue,
            };
            scopes.push(scope);
        }
    }
    Ok((Scopes::parse(&scopes.join(" ")), acr))
}

/// The scope a grant asks for, which must lie within `allowed`; all of `allowed` when it
/// asks for none.
fn asked_within(allowed: Scopes, asked: Option<&str>, refusal: &str) -> Result<Scopes> {
    let Some(asked) = asked.map(Scopes::parse) else {
        return Ok(allowed);
    };
    if !allowed.covers(&asked) {
        return Err(Error::InvalidScope(refusal.into()));
    }
    Ok(asked)
}

/// A generated client id: random, and never starting with `-`, which the command line
/// (`client remove ID`) would read as an option.
fn new_client_id() -> String {
    loop {
        let id = random_id();
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn normalize_username(s: &str) -> String {
    s.trim().to_lowercase()
}

impl Provider {
    /// Builds the provider over a migrated database.
    pub fn new(db: Db, kek: Kek, clock: Clock, config: ProviderConfig) -> Result<Self> {
        let keys = KeyStore::new(db.clone(), kek.clone(), clock.clone())?;
        let hasher = Hasher::new(&config.hashing).map_err(Error::Internal)?;
        let webauthn = config.webauthn.build(&config.issuer)?;
        let audit = AuditLog::open_with_witness(
            db.clone(),
            &kek,
            clock.clone(),
            &config.audit_origin(),
            config.audit_witness.clone(),
        )?;
        Ok(Provider {
            inner: Arc::new(Inner {
                audit,
                subjects: kek.derive(Purpose::PairwiseSubject),
                secrets: kek.derive(Purpose::ClientSecret),
                throttle_key: kek.derive(Purpose::Throttle),
                webauthn,
                id_docs: kek.derive(Purpose::IdDocument),
                dpop_nonces: kek.derive(Purpose::DpopNonce),
                client_cache: Default::default(),
                grants_from_memory: Default::default(),
                client_jwks: crate::client_auth::JwksCache::new(
                    config.jwks_fetcher.clone(),
                    clock.clone(),
                ),
                kek: kek.clone(),
                db,
                clock,
                config,
                keys,
                hasher,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ProviderConfig {
        &self.inner.config
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }

    /// How many client_credentials grants this process answered from its memory of the
    /// client, without reading the database.
    pub fn grants_from_memory(&self) -> u64 {
        self.inner
            .grants_from_memory
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs blocking work that may produce audit events; every event is durable before
    /// this returns.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Provider, &mut Vec<Event>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        let request = crate::audit::current_request_id();
        let (done, outcome) = tokio::sync::oneshot::channel();
        // Detached: the result comes back through `done`, straight from this thread when
        // there is nothing to log, else from the audit writer once the events are durable.
        // So the request is woken once, not by this thread and then again by the writer.
        // Work already begun runs to its end even if the client goes away, as before.
        drop(tokio::task::spawn_blocking(move || {
            crate::audit::in_request(request, || {
                let mut events = Vec::new();
                let r = f(&this, &mut events);
                // Events staged inside a transaction committed (or vanished) with it; what
                // is left was observed outside any transaction (a grant, a refusal) and is
                // appended now. The action's result stands only once they are durable.
                if events.is_empty() {
                    let _ = done.send(r);
                } else {
                    this.inner.audit.submit(&events, move |written| {
                        let _ = done.send(written.and(r));
                    });
                }
            })
        }));
        // Dropped unanswered only if the work panicked.
        outcome
            .await
            .map_err(|_| Error::internal("blocking work ended without an answer"))?
    }

    /// A transaction whose audit events are staged in it: they commit with the action or
    /// not at all, so no committed action lacks its event and no event describes an action
    /// that rolled back.
    fn audited_tx<T>(
        &self,
        ev: &mut Vec<Event>,
        f: impl FnOnce(&mut DbConnection, &mut Vec<Event>) -> Result<T>,
    ) -> Result<T> {
        let start = ev.len();
        let result = self.inner.db.tx(|conn| {
            let r = f(conn, ev)?;
            let staged = self.inner.audit.stage(conn, &ev[start..])?;
            Ok((r, staged))
        });
        ev.truncate(start);
        result.map(|(r, staged)| {
            self.inner.audit.committed(staged);
            r
        })
    }

    /// The signing keys.
    pub fn keys(&self) -> &KeyStore {
        &self.inner.keys
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The password hashing pool.
    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// The pairwise subject of a citizen for a client's sector.
    pub fn subject(&self, sector: &str, citizen_id: &str) -> String {
        self.inner
            .subjects
            .hash(&[sector.as_bytes(), citizen_id.as_bytes()])
    }

    // ----- clients -----

    /// Registers an e-service; returns it and, for a confidential client, its secret
    /// (shown once: only a keyed hash is stored).
    pub async fn register_client(&self, new: NewClient) -> Result<(Client, Option<ClientSecret>)> {
        self.run(move |this, ev| {
            let (client, secret) = this.register_client_blocking(new)?;
            ev.push(
                Event::new("client.registered", Audited::Success)
                    .client(&client.id)
                    .detail(if client.is_confidential() {
                        "confidential"
                    } else {
                        "public"
                    }),
            );
            Ok((client, secret))
        })
        .await
    }

    fn register_client_blocking(&self, new: NewClient) -> Result<(Client, Option<ClientSecret>)> {
        if new.name.trim().is_empty() || new.department.trim().is_empty() {
            return Err(Error::InvalidRequest(
                "name and department are required".into(),
            ));
        }
        // A back-end-only client (an auditor, a department's signing back end) needs no
        // redirect URI; one that logs citizens in does.
        let wants_login =
            Scopes::parse(new.scopes.as_deref().unwrap_or(DEFAULT_CLIENT_SCOPES)).has("openid");
        if new.redirect_uris.is_empty() && wants_login {
            return Err(Error::InvalidRequest(
                "at least one redirect URI is required".into(),
            ));
        }
        for uri in new
            .redirect_uris
            .iter()
            .chain(&new.post_logout_redirect_uris)
            .chain(&new.backchannel_logout_uri)
            .chain(&new.signing_return_uris)
            .chain(&new.signing_callback_uris)
        {
            check_redirect_uri(uri)?;
        }
        let alg = SigningAlg::parse(new.id_token_alg.as_deref().unwrap_or("ES256"))?;
        let id = new.id.unwrap_or_else(new_client_id);
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidRequest(
                "client id must be 1-128 visible ASCII characters".into(),
            ));
        }
        if let Some(jwks) = &new.jwks {
            crate::client_auth::parse_client_jwks(jwks)?;
        }
        if let Some(uri) = &new.jwks_uri {
            check_redirect_uri(uri)?;
            if new.jwks.is_some() {
                return Err(Error::InvalidRequest(
                    "register the keys (jwks) or where they are published (jwks_uri), not both"
                        .into(),
                ));
            }
        }
        if new.fapi && new.jwks.is_none() && new.jwks_uri.is_none() {
            return Err(Error::InvalidRequest(
                "a FAPI client authenticates with private_key_jwt: register its public keys (jwks)"
                    .into(),
            ));
        }
        if Scopes::parse(new.scopes.as_deref().unwrap_or_default()).needs_key_binding()
            && new.jwks.is_none()
            && new.jwks_uri.is_none()
        {
            return Err(Error::InvalidRequest(
                "a registration or audit client authenticates with private_key_jwt: register its public keys (jwks)"
                    .into(),
            ));
        }
        // A client with registered keys authenticates with them, never with a secret.
        let secret = (!new.public && new.jwks.is_none() && new.jwks_uri.is_none()).then(|| {
            new.secret
                .clone()
                .unwrap_or_else(|| ClientSecret::new(random_token()))
        });
        let secret_hash = secret.as_ref().map(|s| {
            self.inner
                .secrets
                .hash(&[id.as_bytes(), s.expose().as_bytes()])
        });
        if let Some(acr) = &new.min_acr {
            if acr_rank(acr).is_none() {
                return Err(Error::InvalidRequest(format!(
                    "min_acr must be {ACR_PASSWORD} or {ACR_PASSKEY}"
                )));
            }
        }
        let scopes = Scopes::parse(new.scopes.as_deref().unwrap_or(DEFAULT_CLIENT_SCOPES));
        let sector = new.sector.unwrap_or_else(|| new.department.clone());
        let client = Client {
            id: id.clone(),
            name: new.name,
            department: new.department,
            sector,
            secret_hash,
            redirect_uris: new.redirect_uris,
            scopes,
            id_token_alg: alg,
            min_acr: new.min_acr,
            jwks: new.jwks,
            fapi: new.fapi,
            post_logout_redirect_uris: new.post_logout_redirect_uris,
            backchannel_logout_uri: new.backchannel_logout_uri,
            jwks_uri: new.jwks_uri,
            signing_return_uris: new.signing_return_uris,
            signing_callback_uris: new.signing_callback_uris,
        };
        let now = self.inner.clock.now();
        self.inner.db.with(|conn| {
            diesel::insert_into(clients::table)
                .values((
                    clients::id.eq(&client.id),
                    clients::name.eq(&client.name),
                    clients::department.eq(&client.department),
                    clients::sector.eq(&client.sector),
                    clients::secret_hash.eq(&client.secret_hash),
                    clients::redirect_uris
                        .eq(serde_json::to_string(&client.redirect_uris)
                            .map_err(Error::internal)?),
                    clients::scopes.eq(client.scopes.to_string()),
                    clients::id_token_alg.eq(client.id_token_alg.as_str()),
                    clients::created_at.eq(now),
                    clients::min_acr.eq(&client.min_acr),
                    clients::jwks.eq(&client.jwks),
                    clients::fapi.eq(i32::from(client.fapi)),
                    clients::post_logout_redirect_uris
                        .eq(stored_uri_list(&client.post_logout_redirect_uris)),
                    clients::backchannel_logout_uri.eq(&client.backchannel_logout_uri),
                    clients::jwks_uri.eq(&client.jwks_uri),
                    clients::signing_return_uris.eq(stored_uri_list(&client.signing_return_uris)),
                    clients::signing_callback_uris
                        .eq(stored_uri_list(&client.signing_callback_uris)),
                ))
                .execute(conn)
                .map_err(|e| match Error::from(e) {
                    Error::Conflict(_) => {
                        Error::Conflict(format!("client {} already exists", client.id))
                    }
                    other => other,
                })
        })?;
        Ok((client, secret))
    }

    /// Every registered client.
    pub fn list_clients(&self) -> Result<Vec<Client>> {
        self.inner.db.with(|conn| {
            let rows: Vec<ClientRow> = clients::table.order(clients::id).load(conn)?;
            rows.into_iter().map(ClientRow::into_client).collect()
        })
    }

    /// Replaces where a client's signing requests may send the citizen back and POST their
    /// outcome (for clients registered before these were required, and for changes), each
    /// URI checked as a redirect URI is. Audited.
    pub async fn set_signing_uris(
        &self,
        id: &str,
        return_uris: Vec<String>,
        callback_uris: Vec<String>,
    ) -> Result<()> {
        for uri in return_uris.iter().chain(&callback_uris) {
            check_redirect_uri(uri)?;
        }
        self.update_client(id, "signing-uris", move |conn, id| {
            Ok(diesel::update(clients::table.find(id))
                .set((
                    clients::signing_return_uris.eq(stored_uri_list(&return_uris)),
                    clients::signing_callback_uris.eq(stored_uri_list(&callback_uris)),
                ))
                .execute(conn)?)
        })
        .await
    }

    /// One change to a registered client, `change` returning the rows it updated, and its
    /// `client.updated` event (`what` changed) in the same transaction; `NotFound` for an
    /// unknown id. The copy in memory is dropped (the generation stamp moves as well).
    async fn update_client(
        &self,
        id: &str,
        what: &'static str,
        change: impl FnOnce(&mut DbConnection, &str) -> Result<usize> + Send + 'static,
    ) -> Result<()> {
        let id = id.to_owned();
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                if change(conn, &id)? == 0 {
                    return Err(Error::NotFound);
                }
                this.inner.client_cache.forget(&id);
                ev.push(
                    Event::new("client.updated", Audited::Success)
                        .client(&id)
                        .detail(what),
                );
                Ok(())
            })
        })
        .await
    }

    /// Gives a client public keys in place of its secret (or new keys): from then on it
    /// authenticates only with `private_key_jwt`. This is how a registration or audit
    /// client registered with a secret, before keys were required, is moved over without
    /// being removed. Audited.
    pub async fn set_client_keys(
        &self,
        id: &str,
        jwks: Option<String>,
        jwks_uri: Option<String>,
    ) -> Result<()> {
        match (&jwks, &jwks_uri) {
            (Some(set), None) => {
                crate::client_auth::parse_client_jwks(set)?;
            }
            (None, Some(uri)) => check_redirect_uri(uri)?,
            _ => {
                return Err(Error::InvalidRequest(
                    "give the keys (jwks) or where they are published (jwks_uri), one of them"
                        .into(),
                ))
            }
        }
        self.update_client(id, "keys", move |conn, id| {
            Ok(diesel::update(clients::table.find(id))
                .set((
                    clients::jwks.eq(&jwks),
                    clients::jwks_uri.eq(&jwks_uri),
                    clients::secret_hash.eq(None::<String>),
                ))
                .execute(conn)?)
        })
        .await
    }

    /// Removes a client and, by cascade, its codes, grants and consents.
    pub async fn remove_client(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.run(move |this, ev| {
            let n = this
                .inner
                .db
                .with(|conn| Ok(diesel::delete(clients::table.find(&id)).execute(conn)?))?;
            // Not needed for correctness (the generation has moved), but spares a grant
            // from memory that would only be refused at its commit.
            this.inner.client_cache.forget(&id);
            if n == 0 {
                return Err(Error::NotFound);
            }
            ev.push(Event::new("client.removed", Audited::Success).client(id));
            Ok(())
        })
        .await
    }

    fn client(conn: &mut DbConnection, id: &str) -> Result<Option<Client>> {
        clients::table
            .find(id)
            .get_result::<ClientRow>(conn)
            .optional()?
            .map(ClientRow::into_client)
            .transpose()
    }

    // ----- citizens -----

    /// Adds a citizen with a password, checked against the policy.
    pub async fn add_citizen(&self, new: NewCitizen, password: &Password) -> Result<String> {
        let username = normalize_username(&new.username);
        if username.is_empty() || username.len() > 64 {
            return Err(Error::InvalidRequest(
                "username must be 1-64 characters".into(),
            ));
        }
        let context = [
            username.as_str(),
            new.email.as_deref().unwrap_or(""),
            new.name_en.as_str(),
        ];
        self.inner.config.policy.check(password, &context)?;
        // A taken username is refused before the hash, which costs 19 MiB and tens of
        // milliseconds (the demo's seeding met it at every start). The insert below still
        // refuses one taken in between.
        let name = username.clone();
        let taken = self
            .run(move |this, _| {
                this.inner.db.with(|conn| {
                    Ok(citizens::table
                        .filter(citizens::username.eq(&name))
                        .select(citizens::id)
                        .get_result::<String>(conn)
                        .optional()?
                        .is_some())
                })
            })
            .await?;
        if taken {
            return Err(Error::Conflict(format!("user {username} already exists")));
        }
        let phc = self.inner.hasher.hash(password).await?;
        self.run(move |this, ev| {
            let id = random_id();
            let now = this.inner.clock.now();
            this.audited_tx(ev, |conn, ev| {
                ev.push(Event::new("citizen.registered", Audited::Success).citizen(&id));
                diesel::insert_into(citizens::table)
                    .values((
                        citizens::id.eq(&id),
                        citizens::username.eq(&username),
                        citizens::name_en.eq(&new.name_en),
                        citizens::name_zh.eq(&new.name_zh),
                        citizens::email.eq(&new.email),
                        citizens::email_verified.eq(i32::from(new.email.is_some())),
                        citizens::phone.eq(&new.phone),
                        citizens::phone_verified.eq(i32::from(new.phone.is_some())),
                        citizens::address.eq(&new.address),
                        citizens::status.eq("active"),
                        citizens::created_at.eq(now),
                    ))
                    .execute(conn)
                    .map_err(|e| match Error::from(e) {
                        Error::Conflict(_) => {
                            Error::Conflict(format!("user {username} already exists"))
                        }
                        other => other,
                    })?;
                diesel::insert_into(password_credentials::table)
                    .values((
                        password_credentials::citizen_id.eq(&id),
                        password_credentials::phc.eq(&phc),
                        password_credentials::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                Ok(id)
            })
        })
        .await
    }

    /// Clears the failure counter of a locked account.
    pub async fn unlock(&self, username: &str) -> Result<()> {
        let username = normalize_username(username);
        self.run(move |this, ev| {
            let key = this.account_key(&username);
            this.audited_tx(ev, |conn, ev| {
                this.inner.config.throttle.reset(conn, &key)?;
                let citizen: Option<String> = citizens::table
                    .filter(citizens::username.eq(&username))
                    .select(citizens::id)
                    .get_result(conn)
                    .optional()?;
                let event = Event::new("account.unlocked", Audited::Success);
                ev.push(match citizen {
                    Some(c) => event.citizen(c),
                    None => event.detail("unknown account"),
                });
                Ok(())
            })
        })
        .await
    }

    fn account_key(&self, username: &str) -> String {
        self.inner
            .throttle_key
            .hash(&[b"account", username.as_bytes()])
    }

    fn address_key(&self, address: &str) -> String {
        self.address_key_for(b"address", address)
    }

    /// The counter of unauthenticated passkey ceremonies begun from an address, apart from
    /// its failed logins.
    fn ceremony_key(&self, address: &str) -> String {
        self.address_key_for(b"ceremony", address)
    }

    fn address_key_for(&self, what: &[u8], address: &str) -> String {
        // An IPv6 subscriber is given a whole /64, so counting per address would give one
        // machine 2^64 counters: the /64 is the unit.
        let unit = match address.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                format!("{}/64", std::net::Ipv6Addr::from(octets))
            }
            _ => address.to_owned(),
        };
        self.inner.throttle_key.hash(&[what, unit.as_bytes()])
    }

    // ----- login and sessions -----

    /// Checks a username and password and opens a new session, replacing `old` if given.
    /// A wrong password and an unknown username cost the same and answer the same.
    pub async fn login(
        &self,
        username: &str,
        password: &Password,
        source: &str,
        old: Option<SessionToken>,
    ) -> Result<SessionToken> {
        self.login_for(username, password, source, old, None).await
    }

    /// Like [`Provider::login`], for a pending authorization request: a successful login
    /// satisfies the request's `prompt=login`. Every outcome but a full hashing pool is
    /// audited before the answer goes back.
    pub async fn login_for(
        &self,
        username: &str,
        password: &Password,
        source: &str,
        old: Option<SessionToken>,
        request_id: Option<String>,
    ) -> Result<SessionToken> {
        let mut citizen = None;
        let result = self
            .login_checked(username, password, source, old, request_id, &mut citizen)
            .await;
        let (outcome, detail) = match &result {
            // Its event was staged in the transaction that opened the session.
            Ok(_) => return result,
            Err(Error::BadCredentials) => (Audited::Failure, "bad-credentials"),
            Err(Error::Throttled { .. }) => (Audited::Failure, "throttled"),
            Err(Error::Locked { .. }) => (Audited::Failure, "locked"),
            Err(_) => return result,
        };
        let mut event = Event::new("login", outcome).source(source).detail(detail);
        if let Some(c) = citizen {
            event = event.citizen(c);
        }
        self.inner.audit.record(event).await?;
        result
    }

    async fn login_checked(
        &self,
        username: &str,
        password: &Password,
        source: &str,
        old: Option<SessionToken>,
        request_id: Option<String>,
        citizen: &mut Option<String>,
    ) -> Result<SessionToken> {
        // A place in the hashing pool first: beyond capacity the answer is 503 before any
        // database work, so a flood's refusals are quick and write nothing.
        let admitted = self.inner.hasher.admit()?;
        let username = normalize_username(username);
        let account = self.account_key(&username);
        let address = self.address_key(source);
        let now = self.inner.clock.now();
        let this = self.clone();
        let (acct, addr, user) = (account.clone(), address.clone(), username.clone());
        let stored: Option<(String, String)> = blocking(move || {
            this.inner.db.tx(|conn| {
                this.inner
                    .config
                    .throttle
                    .begin_attempt(conn, &acct, &addr, now)?;
                Ok(citizens::table
                    .inner_join(password_credentials::table)
                    .filter(citizens::username.eq(&user))
                    .filter(citizens::status.eq("active"))
                    .select((citizens::id, password_credentials::phc))
                    .get_result(conn)
                    .optional()?)
            })
        })
        .await?;
        let (citizen_id, phc) = match stored {
            Some((id, phc)) => (Some(id), Some(phc)),
            None => (None, None),
        };
        citizen.clone_from(&citizen_id);
        let checked = match self
            .inner
            .hasher
            .verify_admitted(admitted, phc, password)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                // The attempt was counted but never checked: give it back.
                let this = self.clone();
                let (acct, addr) = (account.clone(), address.clone());
                blocking(move || {
                    this.inner
                        .db
                        .tx(|conn| this.inner.config.throttle.not_checked(conn, &acct, &addr))
                })
                .await?;
                return Err(e);
            }
        };
        let source = source.to_owned();
        self.run(move |this, ev| {
            let now = this.inner.clock.now();
            this.audited_tx(ev, |conn, ev| {
                let throttle = &this.inner.config.throttle;
                // A failure was already counted when the attempt began.
                let Some(citizen_id) = citizen_id.filter(|_| checked.ok) else {
                    return Ok(None);
                };
                throttle.succeeded(conn, &account, &address)?;
                if let Some(phc) = &checked.rehash {
                    diesel::update(password_credentials::table.find(&citizen_id))
                        .set((
                            password_credentials::phc.eq(phc),
                            password_credentials::updated_at.eq(now),
                        ))
                        .execute(conn)?;
                }
                let session = this.open_session(
                    conn,
                    &citizen_id,
                    "pwd",
                    ACR_PASSWORD,
                    old.as_ref(),
                    request_id.as_deref(),
                )?;
                // Committed with the session: no session without its login event.
                ev.push(
                    Event::new("login", Audited::Success)
                        .source(source)
                        .detail("pwd")
                        .citizen(citizen_id),
                );
                Ok(Some(session))
            })
        })
        .await?
        .ok_or(Error::BadCredentials)
    }

    /// Opens a session after a successful login, replacing `old`. A login made for a
    /// pending request satisfies its `prompt=login` and its `max_age`; removing them keeps a
    /// one-second clock from asking twice.
    fn open_session(
        &self,
        conn: &mut DbConnection,
        citizen_id: &str,
        amr: &str,
        acr: &str,
        old: Option<&SessionToken>,
        request_id: Option<&str>,
    ) -> Result<SessionToken> {
        let now = self.inner.clock.now();
        if let Some(old) = old {
            diesel::delete(sessions::table.find(token_hash(old.expose()))).execute(conn)?;
        }
        if let Some(id) = request_id {
            let prompt: Option<Option<String>> = auth_requests::table
                .find(id)
                .select(auth_requests::prompt)
                .get_result(conn)
                .optional()?;
            if let Some(p) = prompt {
                let rest: Vec<&str> = p
                    .as_deref()
                    .unwrap_or("")
                    .split(' ')
                    .filter(|x| !x.is_empty() && *x != "login")
                    .collect();
                diesel::update(auth_requests::table.find(id))
                    .set((
                        auth_requests::prompt.eq((!rest.is_empty()).then(|| rest.join(" "))),
                        auth_requests::max_age.eq(None::<i64>),
                    ))
                    .execute(conn)?;
            }
        }
        let token = random_token();
        diesel::insert_into(sessions::table)
            .values((
                sessions::id_hash.eq(token_hash(&token)),
                sessions::citizen_id.eq(citizen_id),
                sessions::auth_time.eq(now),
                sessions::amr.eq(amr),
                sessions::acr.eq(acr),
                sessions::created_at.eq(now),
                sessions::last_seen_at.eq(now),
                sessions::expires_at.eq(now + self.inner.config.session_absolute),
            ))
            .execute(conn)?;
        Ok(SessionToken(token))
    }

    /// The live session behind a cookie, if any; refreshes its idle timer.
    fn session_blocking(
        &self,
        conn: &mut DbConnection,
        token: Option<&SessionToken>,
    ) -> Result<Option<Session>> {
        let Some(token) = token else { return Ok(None) };
        let hash = token_hash(token.expose());
        let now = self.inner.clock.now();
        let row: Option<(String, i64, String, String, i64, i64)> = sessions::table
            .find(&hash)
            .inner_join(citizens::table)
            .filter(citizens::status.eq("active"))
            .select((
                sessions::citizen_id,
                sessions::auth_time,
                sessions::amr,
                sessions::acr,
                sessions::last_seen_at,
                sessions::expires_at,
            ))
            .get_result(conn)
            .optional()?;
        let Some((citizen_id, auth_time, amr, acr, last_seen, expires)) = row else {
            return Ok(None);
        };
        if now >= expires || now - last_seen >= self.inner.config.session_idle {
            diesel::delete(sessions::table.find(&hash)).execute(conn)?;
            return Ok(None);
        }
        // One write a minute at most keeps logins cheap while the idle timer stays honest.
        if now - last_seen >= 60 {
            diesel::update(sessions::table.find(&hash))
                .set(sessions::last_seen_at.eq(now))
                .execute(conn)?;
        }
        Ok(Some(Session {
            citizen_id,
            auth_time,
            amr,
            acr,
        }))
    }

    /// The live session behind a cookie, if any.
    pub async fn session(&self, token: Option<SessionToken>) -> Result<Option<Session>> {
        let this = self.clone();
        blocking(move || {
            this.inner
                .db
                .with(|conn| this.session_blocking(conn, token.as_ref()))
        })
        .await
    }

    /// Ends a session.
    /// Returns the back-channel logout tokens to deliver to the citizen's e-services.
    pub async fn logout(&self, token: SessionToken) -> Result<Vec<LogoutNotice>> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| this.end_session_blocking(conn, &token, ev))
        })
        .await
    }

    // ----- authorization -----

    /// Validates an authorization request and decides the next step. Errors before the
    /// redirect URI is trusted come back as `Err` (the server shows a page); errors after
    /// it come back as a redirect to the client.
    pub async fn authorize(
        &self,
        input: AuthorizeInput,
        session: Option<SessionToken>,
    ) -> Result<Step> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let input = match &input.request_uri {
                    Some(uri) => this.pushed_request(conn, uri, input.client_id.as_deref())?,
                    None => input,
                };
                this.authorize_blocking(conn, input, session.as_ref(), ev)
            })
        })
        .await
    }

    /// A pushed authorization request (RFC 9126): the client authenticates, the request is
    /// checked exactly as `/authorize` would check it, and its parameters wait under a
    /// single-use `request_uri` bound to the client. Returns it and its lifetime.
    pub async fn push_authorization_request(
        &self,
        auth: ClientAuth,
        input: AuthorizeInput,
        dpop: Option<String>,
    ) -> Result<(String, i64)> {
        self.run(move |this, _| {
            let client = this.inner.db.with(|conn| this.authenticate(conn, &auth))?;
            // A DPoP proof sent with PAR binds the request (and so its code) to that key,
            // as the dpop_jkt parameter does (RFC 9449 §10); the two must agree.
            let mut input = input;
            if let Some(proof) = &dpop {
                let url = format!("{}/par", this.inner.config.issuer);
                let p = this.check_dpop(proof, "POST", &url, None)?;
                if input.dpop_jkt.as_ref().is_some_and(|j| *j != p.jkt) {
                    return Err(Error::InvalidDpopProof(
                        "dpop_jkt does not match the DPoP proof".into(),
                    ));
                }
                input.dpop_jkt = Some(p.jkt);
            }
            if input.client_id.as_deref().is_some_and(|c| c != client.id) {
                return Err(Error::InvalidRequest(
                    "client_id does not match the authenticated client".into(),
                ));
            }
            if input.request_uri.is_some() {
                return Err(Error::InvalidRequest(
                    "request_uri cannot be pushed; push the parameters themselves".into(),
                ));
            }
            let mut input = AuthorizeInput {
                client_id: Some(client.id.clone()),
                ..input
            };
            input.pushed = true;
            // The same checks as /authorize, run in a transaction that is always rolled
            // back: one set of rules, and nothing left behind by the check.
            let mut outcome = None;
            let _ = this.inner.db.tx(|conn| -> Result<()> {
                outcome = Some(this.authorize_blocking(conn, input.clone(), None, &mut Vec::new()));
                Err(Error::internal("validation only"))
            });
            match outcome.ok_or_else(|| Error::internal("PAR validation did not run"))?? {
                Step::Redirect(url) => {
                    let q = |name: &str| {
                        url::Url::parse(&url).ok().and_then(|u| {
                            u.query_pairs()
                                .find(|(k, _)| k == name)
                                .map(|(_, v)| v.into_owned())
                        })
                    };
                    let description = q("error_description").unwrap_or_default();
                    return Err(match q("error").as_deref() {
                        Some("invalid_scope") => Error::InvalidScope(description),
                        _ => Error::InvalidRequest(description),
                    });
                }
                Step::Interact(_) => {}
            }
            let uri = format!("urn:ietf:params:oauth:request_uri:{}", random_token());
            let now = this.inner.clock.now();
            let params = serde_json::to_string(&input).map_err(Error::internal)?;
            this.inner.db.with(|conn| {
                diesel::insert_into(par_requests::table)
                    .values((
                        par_requests::request_uri_hash.eq(token_hash(&uri)),
                        par_requests::client_id.eq(&client.id),
                        par_requests::params.eq(&params),
                        par_requests::expires_at.eq(now + this.inner.config.par_ttl),
                    ))
                    .execute(conn)?;
                Ok(())
            })?;
            Ok((uri, this.inner.config.par_ttl))
        })
        .await
    }

    /// Takes a pushed request for `/authorize`: once, before it expires, and only for the
    /// client that pushed it. Any other parameter of the browser's request is ignored.
    fn pushed_request(
        &self,
        conn: &mut DbConnection,
        uri: &str,
        client_id: Option<&str>,
    ) -> Result<AuthorizeInput> {
        let refused = || {
            Error::InvalidRequest(
                "the request_uri is unknown, expired, already used or not this e-service's; start again at the e-service".into(),
            )
        };
        let hash = token_hash(uri);
        let row: Option<(String, String, i64)> = par_requests::table
            .find(&hash)
            .select((
                par_requests::client_id,
                par_requests::params,
                par_requests::expires_at,
            ))
            .get_result(conn)
            .optional()?;
        let Some((owner, params, expires_at)) = row else {
            return Err(refused());
        };
        if client_id != Some(owner.as_str()) {
            return Err(refused());
        }
        // Single use: deleted whether or not it is still valid.
        let taken = diesel::delete(par_requests::table.find(&hash)).execute(conn)?;
        if taken != 1 || expires_at <= self.inner.clock.now() {
            return Err(refused());
        }
        let mut input: AuthorizeInput = serde_json::from_str(&params).map_err(Error::internal)?;
        input.pushed = true;
        Ok(input)
    }

    fn authorize_blocking(
        &self,
        conn: &mut DbConnection,
        input: AuthorizeInput,
        token: Option<&SessionToken>,
        ev: &mut Vec<Event>,
    ) -> Result<Step> {
        for p in ["client_id", "redirect_uri"] {
            if input.repeated.iter().any(|r| r == p) {
                return Err(Error::InvalidRequest(format!(
                    "the {p} parameter is repeated"
                )));
            }
        }
        let client_id = input
            .client_id
            .ok_or_else(|| Error::InvalidRequest("the client_id parameter is missing".into()))?;
        let client = Self::client(conn, &client_id)?.ok_or_else(|| {
            Error::InvalidRequest("the client_id is not a registered e-service".into())
        })?;
        let redirect_uri = input
            .redirect_uri
            .ok_or_else(|| Error::InvalidRequest("the redirect_uri parameter is missing".into()))?;
        if !client.redirect_uris.contains(&redirect_uri) {
            return Err(Error::InvalidRequest(
                "the redirect_uri is not registered for this e-service".into(),
            ));
        }
        // From here on the redirect URI is trusted: errors go back to the client.
        let state = input.state.clone();
        let fail = |error: &str, description: &str| {
            let mut params = vec![("error", error), ("error_description", description)];
            if let Some(s) = &state {
                params.push(("state", s));
            }
            params.push(("iss", &self.inner.config.issuer));
            Ok(Step::Redirect(redirect_with(&redirect_uri, &params)))
        };
        if input.request.is_some() {
            return fail("request_not_supported", "request objects are not supported");
        }
        if input.request_uri.is_some() {
            return fail("invalid_request_uri", "the request_uri cannot be used here");
        }
        if client.fapi && !input.pushed {
            return fail(
                "invalid_request",
                "this e-service must push its authorization requests (PAR)",
            );
        }
        if let Some(p) = input.repeated.first() {
            return fail("invalid_request", &format!("the {p} parameter is repeated"));
        }
        match input.response_type.as_deref() {
            None => return fail("invalid_request", "the response_type parameter is missing"),
            Some("code") => {}
            Some(_) => {
                return fail(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                )
            }
        }
        let requested = Scopes::parse_supported(input.scope.as_deref().unwrap_or(""));
        if !requested.has("openid") {
            return fail("invalid_scope", "the scope must include openid");
        }
        // The claims parameter asks for claims one by one; each is released under the scope
        // that carries it, so it joins the request's scopes (and so the consent page), and
        // an `acr` it asks for counts like acr_values.
        let (claim_scopes, claims_acr) = match input.claims.as_deref().map(claims_request) {
            None => (Scopes::default(), None),
            Some(Ok(found)) => found,
            Some(Err(why)) => return fail("invalid_request", why),
        };
        let scope = requested.union(&claim_scopes).intersect(&client.scopes);
        if !scope.has("openid") {
            return fail(
                "invalid_scope",
                "this e-service is not registered for openid",
            );
        }
        let Some(challenge) = input.code_challenge else {
            return fail(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            );
        };
        if input.code_challenge_method.as_deref() != Some("S256") {
            return fail(
                "invalid_request",
                "only the S256 code_challenge_method is supported",
            );
        }
        if challenge.len() != 43 || !is_pkce_value(&challenge) {
            return fail(
                "invalid_request",
                "the code_challenge is not a base64url SHA-256 value",
            );
        }
        let prompt = input.prompt.clone().unwrap_or_default();
        let prompts: Vec<&str> = prompt.split(' ').filter(|s| !s.is_empty()).collect();
        if prompts
            .iter()
            .any(|p| !matches!(*p, "none" | "login" | "consent" | "select_account"))
        {
            return fail("invalid_request", "unknown prompt value");
        }
        if prompts.contains(&"none") && prompts.len() > 1 {
            return fail(
                "invalid_request",
                "prompt=none cannot be combined with other values",
            );
        }
        let max_age = match input.max_age.as_deref() {
            None => None,
            Some(s) => match s.parse::<i64>() {
                Ok(v) if v >= 0 => Some(v),
                _ => return fail("invalid_request", "max_age must be a non-negative integer"),
            },
        };
        for (name, value) in [
            ("state", &input.state),
            ("nonce", &input.nonce),
            ("login_hint", &input.login_hint),
            ("ui_locales", &input.ui_locales),
            ("acr_values", &input.acr_values),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > 512) {
                return fail(
                    "invalid_request",
                    &format!("the {name} parameter is too long"),
                );
            }
        }
        let now = self.inner.clock.now();
        let request = AuthRequest {
            id: random_token(),
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.clone(),
            scope: scope.to_string(),
            state: input.state,
            nonce: input.nonce,
            code_challenge: challenge,
            prompt: (!prompts.is_empty()).then(|| prompts.join(" ")),
            max_age,
            login_hint: input.login_hint,
            ui_locales: input.ui_locales,
            created_at: now,
            expires_at: now + self.inner.config.auth_request_ttl,
            acr_required: stronger_acr(
                stronger_acr(
                    client.min_acr.as_deref(),
                    input.acr_values.as_deref().and_then(acr_from_values),
                ),
                claims_acr,
            )
            .map(str::to_owned),
            dpop_jkt: input.dpop_jkt,
        };
        let mut session = self.session_blocking(conn, token)?;
        // id_token_hint names the citizen the client expects: one of our ID tokens (expired
        // ones too) for this client. A session of someone else does not count, so
        // prompt=none answers login_required rather than a code for the wrong person.
        if let Some(hint) = &input.id_token_hint {
            let claims = match self
                .inner
                .keys
                .verify_id_token_hint(hint, &self.inner.config.issuer)
            {
                Ok(c) => c,
                Err(_) => return fail("invalid_request", "the id_token_hint is not valid"),
            };
            if claims.get("aud").and_then(Value::as_str) != Some(client.id.as_str()) {
                return fail(
                    "invalid_request",
                    "the id_token_hint was issued to another client",
                );
            }
            let expected = session
                .as_ref()
                .map(|s| self.subject(&client.sector, &s.citizen_id));
            if expected.as_deref() != claims.get("sub").and_then(Value::as_str) {
                session = None;
            }
        }
        match self.decide(conn, &request, &client, session.as_ref())? {
            Decision::Login | Decision::Consent(_) if prompts.contains(&"none") => {
                let error = match self.decide(conn, &request, &client, session.as_ref())? {
                    Decision::Login => "login_required",
                    _ => "consent_required",
                };
                fail(error, "the citizen must interact with the identity service")
            }
            Decision::Login | Decision::Consent(_) => {
                diesel::insert_into(auth_requests::table)
                    .values(&request)
                    .execute(conn)?;
                Ok(Step::Interact(request.id))
            }
            Decision::Issue(session) => Ok(Step::Redirect(
                self.issue_code(conn, &request, &session, ev)?,
            )),
        }
    }

    fn decide(
        &self,
        conn: &mut DbConnection,
        request: &AuthRequest,
        client: &Client,
        session: Option<&Session>,
    ) -> Result<Decision> {
        let now = self.inner.clock.now();
        let prompt = request.prompt.as_deref().unwrap_or("");
        let Some(session) = session else {
            return Ok(Decision::Login);
        };
        // A login made for this request removes `login` from its prompt (see `login`), so
        // a remaining `login` means the citizen has not logged in since the request began.
        if prompt.split(' ').any(|p| p == "login") {
            return Ok(Decision::Login);
        }
        if request.max_age.is_some_and(|m| now - session.auth_time > m) {
            return Ok(Decision::Login);
        }
        // Step-up: a session below the level this request needs logs in again, stronger.
        if let Some(required) = &request.acr_required {
            if acr_rank(&session.acr) < acr_rank(required) {
                return Ok(Decision::Login);
            }
        }
        let wanted = Scopes::parse(&request.scope);
        let consent: Option<(String, i64)> = consents::table
            .find((&session.citizen_id, &client.id))
            .select((consents::scopes, consents::granted_at))
            .get_result(conn)
            .optional()?;
        let needs = match &consent {
            None => true,
            Some((scopes, granted_at)) => {
                !Scopes::parse(scopes).covers(&wanted)
                    || (prompt.split(' ').any(|p| p == "consent")
                        && *granted_at < request.created_at)
            }
        };
        if needs {
            return Ok(Decision::Consent(
                wanted.iter().map(str::to_owned).collect(),
            ));
        }
        Ok(Decision::Issue(session.clone()))
    }

    fn pending(conn: &mut DbConnection, id: &str, now: i64) -> Result<(AuthRequest, Client)> {
        let request: AuthRequest = auth_requests::table
            .find(id)
            .get_result(conn)
            .optional()?
            .filter(|r: &AuthRequest| r.expires_at > now)
            .ok_or_else(|| {
                Error::InvalidRequest(
                    "this sign-in request has expired or was already used; return to the e-service and start again".into(),
                )
            })?;
        let client = Self::client(conn, &request.client_id)?.ok_or(Error::NotFound)?;
        Ok((request, client))
    }

    /// What the interaction page of a pending request should show.
    pub async fn interaction(
        &self,
        id: String,
        token: Option<SessionToken>,
    ) -> Result<Interaction> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let now = this.inner.clock.now();
                let (request, client) = Self::pending(conn, &id, now)?;
                let session = this.session_blocking(conn, token.as_ref())?;
                Ok(
                    match this.decide(conn, &request, &client, session.as_ref())? {
                        Decision::Login => Interaction::Login {
                            client_name: client.name,
                            department: client.department,
                            login_hint: request.login_hint,
                            ui_locales: request.ui_locales,
                            passkey_required: request.acr_required.as_deref() == Some(ACR_PASSKEY),
                            redirect_uri: request.redirect_uri,
                        },
                        Decision::Consent(scopes) => Interaction::Consent {
                            client_name: client.name,
                            department: client.department,
                            scopes,
                            ui_locales: request.ui_locales,
                            redirect_uri: request.redirect_uri,
                        },
                        Decision::Issue(session) => {
                            Self::claim(conn, &request, now)?;
                            Interaction::Redirect(this.issue_code(conn, &request, &session, ev)?)
                        }
                    },
                )
            })
        })
        .await
    }

    /// Checks that a pending request exists (before a login attempt is counted against it);
    /// returns its redirect URI.
    pub async fn check_pending(&self, id: String) -> Result<String> {
        let this = self.clone();
        blocking(move || {
            this.inner.db.with(|conn| {
                Self::pending(conn, &id, this.inner.clock.now()).map(|(r, _)| r.redirect_uri)
            })
        })
        .await
    }

    /// Records the citizen's answer on the consent page and returns where to go.
    pub async fn consent(
        &self,
        id: String,
        token: Option<SessionToken>,
        allow: bool,
    ) -> Result<String> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let now = this.inner.clock.now();
                let (request, client) = Self::pending(conn, &id, now)?;
                let session = this
                    .session_blocking(conn, token.as_ref())?
                    .ok_or_else(|| Error::InvalidRequest("you are not logged in".into()))?;
                // The session that answers may not be the one the page was shown to (another
                // tab logged in with a weaker method, or time passed): it must still meet the
                // request's max_age, acr_values and min_acr, or no code is issued.
                if allow
                    && matches!(
                        this.decide(conn, &request, &client, Some(&session))?,
                        Decision::Login
                    )
                {
                    return Err(Error::InvalidRequest(
                        "your sign-in no longer meets what the e-service asked for; return to the e-service and log in again".into(),
                    ));
                }
                Self::claim(conn, &request, now)?;
                let outcome = if allow {
                    Audited::Success
                } else {
                    Audited::Failure
                };
                ev.push(
                    Event::new("consent.given", outcome)
                        .client(&client.id)
                        .citizen(&session.citizen_id)
                        .detail(if allow {
                            request.scope.clone()
                        } else {
                            "denied".into()
                        }),
                );
                if !allow {
                    let mut params = vec![
                        ("error", "access_denied"),
                        ("error_description", "the citizen did not consent"),
                    ];
                    if let Some(s) = &request.state {
                        params.push(("state", s));
                    }
                    params.push(("iss", &this.inner.config.issuer));
                    return Ok(redirect_with(&request.redirect_uri, &params));
                }
                let existing: Option<String> = consents::table
                    .find((&session.citizen_id, &client.id))
                    .select(consents::scopes)
                    .get_result(conn)
                    .optional()?;
                let scopes = Scopes::parse(&request.scope)
                    .union(&existing.map(|s| Scopes::parse(&s)).unwrap_or_default());
                diesel::delete(consents::table.find((&session.citizen_id, &client.id)))
                    .execute(conn)?;
                diesel::insert_into(consents::table)
                    .values((
                        consents::citizen_id.eq(&session.citizen_id),
                        consents::client_id.eq(&client.id),
                        consents::scopes.eq(scopes.to_string()),
                        consents::granted_at.eq(now),
                    ))
                    .execute(conn)?;
                this.remember_subject(conn, &client.sector, &session.citizen_id)?;
                this.issue_code(conn, &request, &session, ev)
            })
        })
        .await
    }

    /// Records which citizen a sector's pairwise subject names, so that the sector's
    /// e-services can ask that citizen to sign (they know nothing else of them).
    fn remember_subject(
        &self,
        conn: &mut DbConnection,
        sector: &str,
        citizen_id: &str,
    ) -> Result<()> {
        let subject = self.subject(sector, citizen_id);
        let known: i64 = subjects::table
            .find((sector, &subject))
            .count()
            .get_result(conn)?;
        if known == 0 {
            diesel::insert_into(subjects::table)
                .values((
                    subjects::sector.eq(sector),
                    subjects::subject.eq(&subject),
                    subjects::citizen_id.eq(citizen_id),
                ))
                .execute(conn)?;
        }
        Ok(())
    }

    /// Takes a pending request for this answer, once: of two concurrent answers (a double
    /// click, two replicas) only one deletes the row, and the other is refused cleanly.
    fn claim(conn: &mut DbConnection, request: &AuthRequest, now: i64) -> Result<()> {
        let n = diesel::delete(auth_requests::table.find(&request.id))
            .filter(auth_requests::expires_at.gt(now))
            .execute(conn)?;
        if n != 1 {
            return Err(Error::InvalidRequest(
                "this sign-in request was already answered; return to the e-service and start again".into(),
            ));
        }
        Ok(())
    }

    fn issue_code(
        &self,
        conn: &mut DbConnection,
        request: &AuthRequest,
        session: &Session,
        ev: &mut Vec<Event>,
    ) -> Result<String> {
        ev.push(
            Event::new("code.issued", Audited::Success)
                .client(&request.client_id)
                .citizen(&session.citizen_id)
                .detail(&session.acr),
        );
        let now = self.inner.clock.now();
        let code = random_token();
        diesel::insert_into(auth_codes::table)
            .values(&CodeRow {
                code_hash: token_hash(&code),
                client_id: request.client_id.clone(),
                citizen_id: session.citizen_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                scope: request.scope.clone(),
                nonce: request.nonce.clone(),
                code_challenge: request.code_challenge.clone(),
                auth_time: session.auth_time,
                amr: session.amr.clone(),
                acr: session.acr.clone(),
                family_id: random_id(),
                created_at: now,
                expires_at: now + self.inner.config.code_ttl,
                used_at: None,
                dpop_jkt: request.dpop_jkt.clone(),
            })
            .execute(conn)?;
        let mut params = vec![("code", code.as_str())];
        if let Some(s) = &request.state {
            params.push(("state", s));
        }
        params.push(("iss", &self.inner.config.issuer));
        Ok(redirect_with(&request.redirect_uri, &params))
    }

    // ----- token endpoint -----

    fn authenticate(&self, conn: &mut DbConnection, auth: &ClientAuth) -> Result<Client> {
        let (id, secret) = match auth {
            ClientAuth::Secret { id, secret } => (id, Some(secret)),
            ClientAuth::None { id } => (id, None),
            ClientAuth::Assertion {
                id,
                assertion,
                endpoint,
            } => return self.authenticate_assertion(conn, id.as_deref(), assertion, endpoint),
        };
        // Read before the client, so that a change in between leaves the copy remembered
        // under the older generation, which a grant from memory then finds out of date.
        // Only a client with a secret is ever remembered.
        let generation = match secret {
            Some(_) => crate::storage::clients_generation(conn)?,
            None => None,
        };
        let client = Self::client(conn, id)?.ok_or(Error::InvalidClient)?;
        // A client with registered keys proves itself with them, and only with them.
        if client.uses_keys() {
            return Err(Error::InvalidClient);
        }
        match (&client.secret_hash, secret) {
            (Some(hash), Some(secret)) => {
                if !self
                    .inner
                    .secrets
                    .verify(&[client.id.as_bytes(), secret.expose().as_bytes()], hash)
                {
                    return Err(Error::InvalidClient);
                }
            }
            (None, None) => {}
            _ => return Err(Error::InvalidClient),
        }
        if let Some(generation) = generation {
            self.inner.client_cache.remember(generation, &client);
        }
        Ok(client)
    }

    /// `private_key_jwt`: the assertion verifies with one of the client's keys, and its
    /// `jti` has not been seen before (recorded until the assertion expires, in the database,
    /// so a replay to another replica is refused too).
    fn authenticate_assertion(
        &self,
        conn: &mut DbConnection,
        id: Option<&str>,
        assertion: &str,
        endpoint: &str,
    ) -> Result<Client> {
        let claimed = crate::client_auth::unverified_issuer(assertion);
        let id = match (id, claimed.as_deref()) {
            (Some(id), _) => id,
            (None, Some(iss)) => iss,
            (None, None) => return Err(Error::InvalidClient),
        };
        let client = Self::client(conn, id)?.ok_or(Error::InvalidClient)?;
        let issuer = &self.inner.config.issuer;
        let endpoint = format!("{issuer}{endpoint}");
        let audience = crate::client_auth::Audience {
            issuer,
            endpoint: &endpoint,
            fapi: client.fapi,
        };
        let now = self.inner.clock.now();
        let checked = match (&client.jwks, &client.jwks_uri) {
            (Some(jwks), _) => {
                crate::client_auth::verify_assertion(assertion, &client.id, jwks, &audience, now)?
            }
            (None, Some(uri)) => {
                // Published keys: the cached set first; on failure (a key the client has
                // just added) fetch again, at most every few seconds, and try once more.
                let cached = self.inner.client_jwks.get(uri, false)?;
                match crate::client_auth::verify_assertion(
                    assertion, &client.id, &cached, &audience, now,
                ) {
                    Ok(c) => c,
                    Err(_) => {
                        let fresh = self.inner.client_jwks.get(uri, true)?;
                        crate::client_auth::verify_assertion(
                            assertion, &client.id, &fresh, &audience, now,
                        )?
                    }
                }
            }
            (None, None) => return Err(Error::InvalidClient),
        };
        self.record_jti(
            conn,
            "client-assertion",
            &client.id,
            &checked.jti,
            checked.exp,
        )?;
        Ok(client)
    }

    /// Verifies a DPoP proof for a request and records its `jti`, so it is used once.
    pub(crate) fn check_dpop(
        &self,
        proof: &str,
        method: &str,
        url: &str,
        access_token: Option<&str>,
    ) -> Result<crate::dpop::Proof> {
        let now = self.inner.clock.now();
        let p = crate::dpop::verify(proof, method, url, access_token, now)?;
        if self.inner.config.dpop_nonce_required
            && !p
                .nonce
                .as_deref()
                .is_some_and(|n| self.dpop_nonce_valid(n, now))
        {
            return Err(Error::UseDpopNonce {
                nonce: self.dpop_nonce(now),
                resource: access_token.is_some(),
            });
        }
        let expires = p.iat + crate::dpop::MAX_AGE + crate::dpop::SKEW;
        self.inner
            .db
            .with(|conn| self.record_jti(conn, "dpop", &p.jkt, &p.jti, expires))
            .map_err(|e| match e {
                Error::InvalidClient => {
                    Error::InvalidDpopProof("the proof was already used".into())
                }
                other => other,
            })?;
        Ok(p)
    }

    /// The current DPoP nonce: a keyed hash of the 5-minute window, so every replica makes
    /// and checks the same ones without storing them.
    pub fn dpop_nonce(&self, now: i64) -> String {
        self.inner
            .dpop_nonces
            .hash(&[(now.div_euclid(300)).to_string().as_bytes()])
    }

    /// A nonce of this window or the last one (a proof made just before the turn).
    fn dpop_nonce_valid(&self, nonce: &str, now: i64) -> bool {
        nonce == self.dpop_nonce(now) || nonce == self.dpop_nonce(now - 300)
    }

    /// Records a single-use `jti` until `expires_at`; a second use is refused.
    pub(crate) fn record_jti(
        &self,
        conn: &mut DbConnection,
        kind: &str,
        issuer: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<()> {
        let key = token_hash(&format!("{kind}\0{issuer}\0{jti}"));
        let fresh = jti_records::table
            .find(&key)
            .count()
            .get_result::<i64>(conn)?
            == 0;
        let inserted = fresh
            && diesel::insert_into(jti_records::table)
                .values((
                    jti_records::key.eq(&key),
                    jti_records::expires_at.eq(expires_at),
                ))
                .execute(conn)
                .is_ok();
        if !inserted {
            return Err(Error::InvalidClient);
        }
        Ok(())
    }

    /// The token endpoint: authenticates the client and runs the grant.
    pub async fn token(&self, auth: ClientAuth, input: TokenInput) -> Result<TokenResponse> {
        if let Some(answer) = self.remembered_grant(&auth, &input).await {
            return answer;
        }
        self.run(move |this, ev| this.token_blocking(auth, input, ev))
            .await
    }

    fn token_blocking(
        &self,
        auth: ClientAuth,
        input: TokenInput,
        ev: &mut Vec<Event>,
    ) -> Result<TokenResponse> {
        let claimed_id = match &auth {
            ClientAuth::Secret { id, .. } | ClientAuth::None { id } => id.clone(),
            ClientAuth::Assertion { id, assertion, .. } => id
                .clone()
                .or_else(|| crate::client_auth::unverified_issuer(assertion))
                .unwrap_or_default(),
        };
        let client = match self.inner.db.with(|conn| self.authenticate(conn, &auth)) {
            Ok(c) => c,
            Err(Error::InvalidClient) => {
                // Only a registered id goes into the permanent log; anything else a caller
                // typed stays out of it.
                let known = self
                    .inner
                    .db
                    .with(|conn| Self::client(conn, &claimed_id))?
                    .is_some();
                let event = Event::new("client.authentication", Audited::Failure);
                ev.push(if known {
                    event.client(claimed_id)
                } else {
                    event.detail("unknown client")
                });
                return Err(Error::InvalidClient);
            }
            Err(e) => return Err(e),
        };
        let url = format!("{}/token", self.inner.config.issuer);
        let jkt = match &input.dpop {
            Some(p) => Some(self.check_dpop(p, "POST", &url, None)?.jkt),
            None if client.fapi => {
                return Err(Error::InvalidDpopProof(
                    "this e-service must send a DPoP proof (FAPI 2.0)".into(),
                ))
            }
            None => None,
        };
        let grant_type = input.grant_type.clone().unwrap_or_default();
        let result = match grant_type.as_str() {
            "authorization_code" => self.code_grant(client.clone(), input, jkt, ev),
            "refresh_token" => self.refresh_grant(client.clone(), input, jkt, ev),
            "client_credentials" => self.client_credentials_grant(client.clone(), input, jkt, ev),
            "" => Err(Error::InvalidRequest(
                "the grant_type parameter is missing".into(),
            )),
            _ => Err(Error::UnsupportedGrantType),
        };
        if let Err(Error::InvalidGrant(why)) = &result {
            ev.push(
                Event::new("token.refused", Audited::Failure)
                    .client(&client.id)
                    .detail(format!("{grant_type}: {why}")),
            );
        }
        result
    }

    /// A reused code or refresh token: the whole grant is revoked, and the audit log says so.
    fn revoke_reused(
        conn: &mut DbConnection,
        ev: &mut Vec<Event>,
        kind: &'static str,
        family_id: &str,
        client_id: &str,
        citizen_id: &str,
        now: i64,
    ) -> Result<()> {
        let reason = if kind == "code.reuse" {
            "authorization code reused"
        } else {
            "refresh token reused"
        };
        Self::revoke_family(conn, family_id, now, reason)?;
        ev.push(
            Event::new(kind, Audited::Failure)
                .client(client_id)
                .citizen(citizen_id)
                .detail("grant revoked"),
        );
        Ok(())
    }

    fn revoke_family(
        conn: &mut DbConnection,
        family_id: &str,
        now: i64,
        reason: &str,
    ) -> Result<()> {
        diesel::update(token_families::table.find(family_id))
            .filter(token_families::revoked_at.is_null())
            .set((
                token_families::revoked_at.eq(now),
                token_families::revoked_reason.eq(reason),
            ))
            .execute(conn)?;
        Ok(())
    }

    fn code_grant(
        &self,
        client: Client,
        input: TokenInput,
        jkt: Option<String>,
        ev: &mut Vec<Event>,
    ) -> Result<TokenResponse> {
        let code = input
            .code
            .ok_or_else(|| Error::InvalidRequest("the code parameter is missing".into()))?;
        let redirect_uri = input
            .redirect_uri
            .ok_or_else(|| Error::InvalidRequest("the redirect_uri parameter is missing".into()))?;
        let verifier = input.code_verifier.ok_or_else(|| {
            Error::InvalidRequest(
                "the code_verifier parameter is missing (PKCE is required)".into(),
            )
        })?;
        if !is_pkce_value(&verifier) {
            return Err(Error::InvalidRequest(
                "the code_verifier is malformed".into(),
            ));
        }
        let now = self.inner.clock.now();
        let signers = self.signers(&client)?;
        // Revocation on reuse must commit even though the request fails, so the transaction
        // returns the refusal as a value and the error is raised after it commits. The
        // tokens are made inside it, so a failure there leaves the code unused.
        let outcome = self.audited_tx(ev, |conn, ev| {
            let Some(row) = auth_codes::table
                .find(token_hash(&code))
                .get_result::<CodeRow>(conn)
                .optional()?
            else {
                return Ok(Outcome::Refused("the code is not valid"));
            };
            if row.client_id != client.id {
                return Ok(Outcome::Refused("the code was issued to another client"));
            }
            // Claiming the code is the one reuse check: a code already used, now or by a
            // concurrent request on any replica, is not claimed, and its grant is revoked.
            let claimed = diesel::update(auth_codes::table.find(&row.code_hash))
                .filter(auth_codes::used_at.is_null())
                .set(auth_codes::used_at.eq(now))
                .execute(conn)?;
            if claimed != 1 {
                Self::revoke_reused(
                    conn,
                    ev,
                    "code.reuse",
                    &row.family_id,
                    &row.client_id,
                    &row.citizen_id,
                    now,
                )?;
                return Ok(Outcome::Refused(
                    "the code was already used; its tokens are revoked",
                ));
            }
            if row.expires_at <= now {
                return Ok(Outcome::Refused("the code has expired"));
            }
            if row.redirect_uri != redirect_uri {
                return Ok(Outcome::Refused(
                    "the redirect_uri does not match the authorization request",
                ));
            }
            let computed = b64(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref());
            if computed != row.code_challenge {
                return Ok(Outcome::Refused(
                    "the code_verifier does not match the code_challenge",
                ));
            }
            // A code bound to a key at authorization (dpop_jkt) is redeemed with that key.
            if row.dpop_jkt.is_some() && row.dpop_jkt != jkt {
                return Ok(Outcome::Refused(
                    "the DPoP key is not the one the authorization request was bound to",
                ));
            }
            diesel::insert_into(token_families::table)
                .values((
                    token_families::id.eq(&row.family_id),
                    token_families::client_id.eq(&row.client_id),
                    token_families::citizen_id.eq(&row.citizen_id),
                    token_families::created_at.eq(now),
                    token_families::dpop_jkt.eq(&jkt),
                ))
                .execute(conn)?;
            let grant = Grant {
                grant_type: "authorization_code",
                family_id: row.family_id,
                client: client.clone(),
                citizen_id: row.citizen_id,
                scope: Scopes::parse(&row.scope),
                nonce: row.nonce,
                auth_time: row.auth_time,
                amr: row.amr,
                acr: row.acr,
                jkt,
                keep_refresh: None,
                refresh_until: now + self.inner.config.refresh_absolute_ttl,
            };
            Ok(Outcome::Issued(Box::new(
                self.issue_tokens(conn, &grant, &signers, ev)?,
            )))
        })?;
        outcome.into_result()
    }

    fn refresh_grant(
        &self,
        client: Client,
        input: TokenInput,
        jkt: Option<String>,
        ev: &mut Vec<Event>,
    ) -> Result<TokenResponse> {
        let token = input.refresh_token.ok_or_else(|| {
            Error::InvalidRequest("the refresh_token parameter is missing".into())
        })?;
        let now = self.inner.clock.now();
        let signers = self.signers(&client)?;
        // As for codes: refusals commit their revocation, and the new refresh token is
        // stored in the same transaction that consumes the old one, so a failure in
        // between cannot turn the client's retry into "reuse".
        let outcome = self.audited_tx(ev, |conn, ev| {
            let Some(row) = refresh_tokens::table
                .find(token_hash(&token))
                .get_result::<RefreshRow>(conn)
                .optional()?
            else {
                return Ok(Outcome::Refused("the refresh token is not valid"));
            };
            let family: FamilyRow = token_families::table
                .find(&row.family_id)
                .get_result(conn)?;
            if family.client_id != client.id {
                return Ok(Outcome::Refused(
                    "the refresh token was issued to another client",
                ));
            }
            if family.revoked_at.is_some() {
                return Ok(Outcome::Refused("the refresh token has been revoked"));
            }
            // A grant bound to a key refreshes only with that key: a stolen refresh token
            // is useless without it.
            if family.dpop_jkt.is_some() && family.dpop_jkt != jkt {
                return Ok(Outcome::Refused(
                    "the refresh token is bound to another DPoP key",
                ));
            }
            // A FAPI client's key-bound refresh token is not rotated (FAPI 2.0 §5.3.2.1
            // relies on the binding instead); every other one is, and reuse revokes.
            let rotate = !(client.fapi && family.dpop_jkt.is_some());
            // As for codes, claiming the token is the one reuse check.
            let claimed = if rotate {
                diesel::update(refresh_tokens::table.find(token_hash(&token)))
                    .filter(refresh_tokens::used_at.is_null())
                    .set(refresh_tokens::used_at.eq(now))
                    .execute(conn)?
            } else {
                usize::from(row.used_at.is_none())
            };
            if claimed != 1 {
                Self::revoke_reused(
                    conn,
                    ev,
                    "refresh.reuse",
                    &row.family_id,
                    &family.client_id,
                    &family.citizen_id,
                    now,
                )?;
                return Ok(Outcome::Refused(
                    "the refresh token was already used; its grant is revoked",
                ));
            }
            if row.expires_at <= now {
                return Ok(Outcome::Refused("the refresh token has expired"));
            }
            if family.created_at + self.inner.config.refresh_absolute_ttl <= now {
                return Ok(Outcome::Refused(
                    "the grant has reached its absolute lifetime; the citizen must log in again",
                ));
            }
            let active: i64 = citizens::table
                .find(&family.citizen_id)
                .filter(citizens::status.eq("active"))
                .count()
                .get_result(conn)?;
            if active == 0 {
                return Ok(Outcome::Refused("the account is not active"));
            }
            let scope = asked_within(
                Scopes::parse(&row.scope),
                input.scope.as_deref(),
                "a refresh cannot widen the scope",
            )?;
            let grant = Grant {
                grant_type: "refresh_token",
                family_id: row.family_id,
                client: client.clone(),
                citizen_id: family.citizen_id,
                scope,
                nonce: None,
                auth_time: row.auth_time,
                amr: row.amr,
                acr: row.acr,
                jkt: family.dpop_jkt.clone().or(jkt),
                keep_refresh: (!rotate).then(|| token.clone()),
                refresh_until: family.created_at + self.inner.config.refresh_absolute_ttl,
            };
            Ok(Outcome::Issued(Box::new(
                self.issue_tokens(conn, &grant, &signers, ev)?,
            )))
        })?;
        outcome.into_result()
    }

    /// The keys a client's tokens are signed with, loaded before any transaction so that
    /// signing never waits for a second pooled connection while holding one.
    fn signers(&self, client: &Client) -> Result<Signers> {
        let (access, id) = self
            .inner
            .keys
            .signer_pair(SigningAlg::Es256, client.id_token_alg)?;
        Ok(Signers { access, id })
    }

    fn issue_tokens(
        &self,
        conn: &mut DbConnection,
        grant: &Grant,
        signers: &Signers,
        ev: &mut Vec<Event>,
    ) -> Result<TokenResponse> {
        ev.push(
            Event::new("token.issued", Audited::Success)
                .client(&grant.client.id)
                .citizen(&grant.citizen_id)
                .detail(format!("{} {}", grant.grant_type, grant.scope)),
        );
        let cfg = &self.inner.config;
        let now = self.inner.clock.now();
        let sub = self.subject(&grant.client.sector, &grant.citizen_id);
        let amr: Vec<String> = grant.amr.split(' ').map(str::to_owned).collect();
        let access = AccessClaims {
            iss: cfg.issuer.clone(),
            sub: sub.clone(),
            aud: cfg.issuer.clone(),
            client_id: grant.client.id.clone(),
            scope: grant.scope.to_string(),
            iat: now,
            exp: now + cfg.access_token_ttl,
            jti: random_token(),
            auth_time: Some(grant.auth_time),
            acr: Some(grant.acr.clone()),
            amr: Some(amr.clone()),
            fid: Some(grant.family_id.clone()),
            cnf: grant.jkt.as_deref().map(crate::dpop::confirmation),
        };
        let access_token = signers.access.sign("at+jwt", &access)?;
        let mut id = json!({
            "iss": cfg.issuer,
            "sub": sub,
            "aud": grant.client.id,
            "azp": grant.client.id,
            "iat": now,
            "exp": now + cfg.id_token_ttl,
            "auth_time": grant.auth_time,
            "acr": grant.acr,
            "amr": amr,
            "at_hash": at_hash(grant.client.id_token_alg, &access_token),
        });
        if let Some(n) = &grant.nonce {
            id["nonce"] = json!(n);
        }
        let id_token = signers.id.sign("JWT", &id)?;
        // OpenID Connect Core §11: a refresh token only for offline_access, which the
        // request asked for, the client may have and the citizen consented to (the grant's
        // scope is all three).
        let offline = grant.scope.has("offline_access");
        let refresh = match &grant.keep_refresh {
            _ if !offline => None,
            Some(kept) => Some(kept.clone()),
            None => {
                let refresh = random_token();
                diesel::insert_into(refresh_tokens::table)
                    .values((
                        refresh_tokens::token_hash.eq(token_hash(&refresh)),
                        refresh_tokens::family_id.eq(&grant.family_id),
                        refresh_tokens::scope.eq(grant.scope.to_string()),
                        refresh_tokens::auth_time.eq(grant.auth_time),
                        refresh_tokens::amr.eq(&grant.amr),
                        refresh_tokens::acr.eq(&grant.acr),
                        refresh_tokens::created_at.eq(now),
                        refresh_tokens::expires_at
                            .eq((now + cfg.refresh_token_ttl).min(grant.refresh_until)),
                    ))
                    .execute(conn)?;
                Some(refresh)
            }
        };
        Ok(TokenResponse {
            access_token,
            token_type: if grant.jkt.is_some() {
                "DPoP"
            } else {
                "Bearer"
            },
            expires_in: cfg.access_token_ttl,
            id_token: Some(id_token),
            refresh_token: refresh,
            scope: grant.scope.to_string(),
        })
    }

    // ----- housekeeping -----

    /// Deletes rows that can no longer matter: expired sessions, pending requests, codes
    /// (an hour after expiry, past any reuse check), refresh tokens, WebAuthn ceremonies,
    /// and throttling counters of addresses whose window passed or accounts idle for a day
    /// that are not locked. Returns how many rows went. Blocking: run it on a background thread.
    pub fn purge_expired(&self) -> Result<usize> {
        let now = self.inner.clock.now();
        let cfg = &self.inner.config;
        self.inner.db.with(|conn| {
            let mut n = diesel::delete(
                sessions::table.filter(
                    sessions::expires_at
                        .le(now)
                        .or(sessions::last_seen_at.le(now - cfg.session_idle)),
                ),
            )
            .execute(conn)?;
            n += diesel::delete(auth_requests::table.filter(auth_requests::expires_at.le(now)))
                .execute(conn)?;
            n += diesel::delete(auth_codes::table.filter(auth_codes::expires_at.le(now - 3_600)))
                .execute(conn)?;
            n += diesel::delete(refresh_tokens::table.filter(refresh_tokens::expires_at.le(now)))
                .execute(conn)?;
            n += diesel::delete(
                webauthn_ceremonies::table.filter(webauthn_ceremonies::expires_at.le(now)),
            )
            .execute(conn)?;
            n += diesel::delete(jti_records::table.filter(jti_records::expires_at.le(now)))
                .execute(conn)?;
            n += diesel::delete(par_requests::table.filter(par_requests::expires_at.le(now)))
                .execute(conn)?;
            // A day after the last failure no lock is left (the longest lasts a day), but a
            // locked account's count stays for a week, so that a guesser who comes back
            // meets a longer lock, not a fresh start.
            n += diesel::delete(
                throttles::table
                    .filter(throttles::last_failure_at.le(now - crate::throttle::LONGEST_LOCK))
                    .filter(throttles::window_start.le(now - cfg.throttle.per_address_window))
                    .filter(
                        throttles::failures
                            .lt(cfg.throttle.lockout_after)
                            .or(throttles::last_failure_at.le(now - 7 * 86_400)),
                    ),
            )
            .execute(conn)?;
            Ok(n)
        })
    }

    /// Scheduled key rotation (from housekeeping): rotates every algorithm whose newest key
    /// is older than `max_age`, pre-publishing for `prepublish`, and audits each rotation.
    /// Blocking: run it on a background thread.
    pub fn rotate_due_keys(&self, max_age: i64, prepublish: i64) -> Result<Vec<String>> {
        let rotated = self.inner.keys.rotate_due(max_age, prepublish)?;
        if !rotated.is_empty() {
            let mut ev = Vec::new();
            self.audited_tx(&mut ev, |_, ev| {
                for kid in &rotated {
                    ev.push(
                        Event::new("key.rotated", Audited::Success)
                            .detail(format!("scheduled {kid}")),
                    );
                }
                Ok(())
            })?;
        }
        Ok(rotated)
    }

    /// Revokes signing key `kid` at once ([`KeyStore::revoke`]), with its audit event in the
    /// same transaction. Returns the new key's id if the revoked one was signing.
    pub async fn revoke_key(&self, kid: &str) -> Result<Option<String>> {
        let kid = kid.to_owned();
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let (alg, new) = this.inner.keys.revoke(conn, &kid)?;
                let replaced = new
                    .as_deref()
                    .map_or(String::new(), |n| format!(", {n} signs"));
                ev.push(
                    Event::new("key.revoked", Audited::Success)
                        .detail(format!("{} {kid}{replaced}", alg.as_str())),
                );
                Ok(new)
            })
        })
        .await
    }

    /// The database pool's connections and idle ones (for metrics).
    pub fn db_pool_state(&self) -> (u32, u32) {
        self.inner.db.pool_state()
    }

    /// Whether the database answers and its schema is current.
    pub fn ready(&self) -> Result<()> {
        self.inner.db.ready()
    }

    /// Why this replica must not take requests though its database answers: the audit log
    /// cannot be appended to, so every audited action would be refused. Blocking.
    pub fn unready_reason(&self) -> Option<&'static str> {
        self.inner.audit.unappendable()
    }

    // ----- revocation (RFC 7009) and introspection (RFC 7662) -----

    /// Revokes a refresh token or a citizen's access token of the authenticated client,
    /// with the whole grant it belongs to. Unknown tokens, tokens of other clients and
    /// self-contained client-credentials tokens are answered as success without effect,
    /// as RFC 7009 §2.2 asks.
    pub async fn revoke(&self, auth: ClientAuth, token: String) -> Result<()> {
        self.run(move |this, ev| {
            let client = this.inner.db.with(|conn| this.authenticate(conn, &auth))?;
            let now = this.inner.clock.now();
            let family = this.family_of(&token)?;
            let Some(family) = family else {
                return this.revoke_client_token(&client, &token, ev);
            };
            this.audited_tx(ev, |conn, ev| {
                let owner: Option<(String, String)> = token_families::table
                    .find(&family)
                    .select((token_families::client_id, token_families::citizen_id))
                    .get_result(conn)
                    .optional()?;
                if let Some((client_id, citizen_id)) = owner.filter(|(c, _)| *c == client.id) {
                    Self::revoke_family(conn, &family, now, "revoked by the client")?;
                    ev.push(
                        Event::new("token.revoked", Audited::Success)
                            .client(client_id)
                            .citizen(citizen_id),
                    );
                }
                Ok(())
            })
        })
        .await
    }

    /// RFC 7009 for an access token with no grant behind it (client_credentials): remembered
    /// as revoked until it expires, so the APIs and introspection refuse it; anything else
    /// (another client's token, not ours) is ignored, as the RFC asks.
    fn revoke_client_token(&self, client: &Client, token: &str, ev: &mut Vec<Event>) -> Result<()> {
        let cfg = &self.inner.config;
        let Ok(claims) =
            self.inner
                .keys
                .verify::<AccessClaims>(token, "at+jwt", &cfg.issuer, &cfg.issuer)
        else {
            return Ok(());
        };
        if claims.fid.is_some() || claims.client_id != client.id {
            return Ok(());
        }
        self.audited_tx(ev, |conn, ev| {
            if !Self::access_revoked(conn, &claims.jti)? {
                diesel::insert_into(jti_records::table)
                    .values((
                        jti_records::key.eq(Self::revoked_access_key(&claims.jti)),
                        jti_records::expires_at.eq(claims.exp),
                    ))
                    .execute(conn)?;
                ev.push(
                    Event::new("token.revoked", Audited::Success)
                        .client(&client.id)
                        .detail("client_credentials"),
                );
            }
            Ok(())
        })
    }

    /// The key under which a revoked access token without a grant (a client_credentials
    /// token) is remembered until it expires.
    fn revoked_access_key(jti: &str) -> String {
        token_hash(&format!("revoked-access\0{jti}"))
    }

    /// Whether a client_credentials access token was revoked by its client.
    fn access_revoked(conn: &mut DbConnection, jti: &str) -> Result<bool> {
        let n: i64 = jti_records::table
            .find(Self::revoked_access_key(jti))
            .count()
            .get_result(conn)?;
        Ok(n > 0)
    }

    /// The grant a token belongs to: a refresh token by its hash, an access token by its
    /// verified `fid` claim.
    fn family_of(&self, token: &str) -> Result<Option<String>> {
        let by_refresh: Option<String> = self.inner.db.with(|conn| {
            Ok(refresh_tokens::table
                .find(token_hash(token))
                .select(refresh_tokens::family_id)
                .get_result(conn)
                .optional()?)
        })?;
        if by_refresh.is_some() {
            return Ok(by_refresh);
        }
        let cfg = &self.inner.config;
        match self
            .inner
            .keys
            .verify::<AccessClaims>(token, "at+jwt", &cfg.issuer, &cfg.issuer)
        {
            Ok(claims) => Ok(claims.fid),
            Err(Error::InvalidToken) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// RFC 7662 introspection for the authenticated client: its own tokens only; anything
    /// else is `{"active": false}`.
    pub async fn introspect(&self, auth: ClientAuth, token: String) -> Result<Value> {
        let this = self.clone();
        blocking(move || {
            let client = this.inner.db.with(|conn| this.authenticate(conn, &auth))?;
            let inactive = json!({ "active": false });
            let now = this.inner.clock.now();
            let cfg = &this.inner.config;
            if let Ok(claims) =
                this.inner
                    .keys
                    .verify::<AccessClaims>(&token, "at+jwt", &cfg.issuer, &cfg.issuer)
            {
                if claims.client_id != client.id {
                    return Ok(inactive);
                }
                if claims.fid.is_none()
                    && this
                        .inner
                        .db
                        .with(|conn| Self::access_revoked(conn, &claims.jti))?
                {
                    return Ok(inactive);
                }
                if let Some(fid) = &claims.fid {
                    let revoked: Option<Option<i64>> = this.inner.db.with(|conn| {
                        Ok(token_families::table
                            .find(fid)
                            .select(token_families::revoked_at)
                            .get_result(conn)
                            .optional()?)
                    })?;
                    if !matches!(revoked, Some(None)) {
                        return Ok(inactive);
                    }
                }
                let mut answer = json!({
                    "active": true,
                    "token_type": if claims.cnf.is_some() { "DPoP" } else { "Bearer" },
                    "scope": claims.scope,
                    "client_id": claims.client_id,
                    "sub": claims.sub,
                    "iss": claims.iss,
                    "aud": claims.aud,
                    "iat": claims.iat,
                    "exp": claims.exp,
                });
                // RFC 9449 §6.2: a resource server learns the key the token is bound to.
                if let Some(cnf) = claims.cnf {
                    answer["cnf"] = cnf;
                }
                return Ok(answer);
            }
            let row: Option<(String, i64, Option<i64>, String)> = this.inner.db.with(|conn| {
                Ok(refresh_tokens::table
                    .find(token_hash(&token))
                    .select((
                        refresh_tokens::family_id,
                        refresh_tokens::expires_at,
                        refresh_tokens::used_at,
                        refresh_tokens::scope,
                    ))
                    .get_result(conn)
                    .optional()?)
            })?;
            let Some((family, expires_at, used_at, scope)) = row else {
                return Ok(inactive);
            };
            let fam: Option<FamilyRow> = this.inner.db.with(|conn| {
                Ok(token_families::table
                    .find(&family)
                    .get_result(conn)
                    .optional()?)
            })?;
            match fam {
                Some(f)
                    if f.client_id == client.id
                        && f.revoked_at.is_none()
                        && used_at.is_none()
                        && expires_at > now =>
                {
                    let sub = this.subject(&client.sector, &f.citizen_id);
                    Ok(json!({
                        "active": true,
                        "token_type": "refresh_token",
                        "scope": scope,
                        "client_id": client.id,
                        "sub": sub,
                        "iss": cfg.issuer,
                        "exp": expires_at,
                    }))
                }
                _ => Ok(inactive),
            }
        })
        .await
    }

    // ----- UserInfo and consent -----

    /// The claims UserInfo releases for an access token: only scopes the token carries
    /// and the citizen still consents to.
    pub async fn userinfo(&self, access_token: String) -> Result<Value> {
        self.userinfo_presented(crate::dpop::Presented::bearer(access_token))
            .await
    }

    /// UserInfo for a token as it was presented: a DPoP-bound token needs the `DPoP`
    /// scheme and a proof by its key for this request.
    pub async fn userinfo_presented(&self, presented: crate::dpop::Presented) -> Result<Value> {
        let this = self.clone();
        blocking(move || {
            let cfg = &this.inner.config;
            let claims: AccessClaims =
                this.inner
                    .keys
                    .verify(&presented.token, "at+jwt", &cfg.issuer, &cfg.issuer)?;
            this.check_binding(&claims, &presented)?;
            let fid = claims.fid.ok_or(Error::InvalidToken)?;
            let scope = Scopes::parse(&claims.scope);
            if !scope.has("openid") {
                return Err(Error::InvalidToken);
            }
            this.inner.db.with(|conn| {
                let family: FamilyRow = token_families::table
                    .find(&fid)
                    .get_result(conn)
                    .optional()?
                    .ok_or(Error::InvalidToken)?;
                if family.revoked_at.is_some() {
                    return Err(Error::InvalidToken);
                }
                type Row = (
                    String,
                    String,
                    Option<String>,
                    i32,
                    Option<String>,
                    i32,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                );
                let citizen: Row = citizens::table
                    .find(&family.citizen_id)
                    .filter(citizens::status.eq("active"))
                    .select((
                        citizens::name_en,
                        citizens::name_zh,
                        citizens::email,
                        citizens::email_verified,
                        citizens::phone,
                        citizens::phone_verified,
                        citizens::address,
                        citizens::date_of_birth,
                        citizens::gender,
                    ))
                    .get_result(conn)
                    .optional()?
                    .ok_or(Error::InvalidToken)?;
                let consented: Scopes = consents::table
                    .find((&family.citizen_id, &family.client_id))
                    .select(consents::scopes)
                    .get_result::<String>(conn)
                    .optional()?
                    .map(|s| Scopes::parse(&s))
                    .unwrap_or_default();
                let released = scope.intersect(&consented);
                let (
                    name_en,
                    name_zh,
                    email,
                    email_verified,
                    phone,
                    phone_verified,
                    address,
                    birthdate,
                    gender,
                ) = citizen;
                let mut out = Map::new();
                out.insert("sub".into(), json!(claims.sub));
                if released.has("profile") {
                    out.insert("name".into(), json!(name_en));
                    out.insert("name#zh-Hant".into(), json!(name_zh));
                    if let Some(b) = birthdate {
                        out.insert("birthdate".into(), json!(b));
                    }
                    if let Some(g) = gender {
                        out.insert("gender".into(), json!(g));
                    }
                }
                // Released only to a client registered for it (the token's scope is
                // already limited to the client's) and with the citizen's consent.
                if released.has("identity_document") {
                    if let Some(doc) = this.document_of(conn, &family.citizen_id)? {
                        out.insert("identity_document_number".into(), json!(doc));
                    }
                }
                if released.has("email") {
                    if let Some(e) = email {
                        out.insert("email".into(), json!(e));
                        out.insert("email_verified".into(), json!(email_verified != 0));
                    }
                }
                if released.has("phone") {
                    if let Some(p) = phone {
                        out.insert("phone_number".into(), json!(p));
                        out.insert("phone_number_verified".into(), json!(phone_verified != 0));
                    }
                }
                if released.has("address") {
                    if let Some(a) = address {
                        out.insert("address".into(), json!({ "formatted": a }));
                    }
                }
                Ok(Value::Object(out))
            })
        })
        .await
    }

    /// Checks a bearer access token for an API scope (the auditor's `audit`, later the
    /// signing API's `signing`); returns the client it was issued to.
    pub async fn require_scope(
        &self,
        presented: crate::dpop::Presented,
        scope: &'static str,
    ) -> Result<String> {
        self.api_caller(presented, scope)
            .await
            .map(|(client, _)| client)
    }

    /// A sender-constrained token (`cnf.jkt`) is accepted only with the `DPoP` scheme and a
    /// fresh proof by the same key for this method and URL, carrying the token's `ath`.
    fn check_binding(
        &self,
        claims: &AccessClaims,
        presented: &crate::dpop::Presented,
    ) -> Result<()> {
        let Some(jkt) = claims
            .cnf
            .as_ref()
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str)
        else {
            return Ok(());
        };
        let proof = presented
            .proof
            .as_deref()
            .filter(|_| presented.dpop_scheme)
            .ok_or(Error::InvalidToken)?;
        let p = self
            .check_dpop(
                proof,
                &presented.method,
                &presented.url,
                Some(&presented.token),
            )
            .map_err(|e| match e {
                Error::UseDpopNonce { .. } => e,
                _ => Error::InvalidToken,
            })?;
        if p.jkt != jkt {
            return Err(Error::InvalidToken);
        }
        Ok(())
    }

    /// Like [`Provider::require_scope`], and also the citizen when the token is a citizen's
    /// (issued by a login, not by client credentials); a citizen's token of a revoked grant
    /// or an inactive account is refused.
    pub async fn api_caller(
        &self,
        presented: crate::dpop::Presented,
        scope: &'static str,
    ) -> Result<(String, Option<String>)> {
        let this = self.clone();
        blocking(move || {
            let cfg = &this.inner.config;
            let claims: AccessClaims =
                this.inner
                    .keys
                    .verify(&presented.token, "at+jwt", &cfg.issuer, &cfg.issuer)?;
            this.check_binding(&claims, &presented)?;
            if !Scopes::parse(&claims.scope).has(scope) {
                return Err(Error::InsufficientScope(scope));
            }
            // The client as registered now, not as it was when the token was issued: a
            // removed client, or one that lost the scope, loses access at once on every
            // replica; and a token its client revoked is refused.
            let citizen = this.inner.db.with(|conn| {
                let registered: Option<(String, bool)> = clients::table
                    .find(&claims.client_id)
                    .select((
                        clients::scopes,
                        clients::jwks
                            .is_not_null()
                            .or(clients::jwks_uri.is_not_null()),
                    ))
                    .get_result(conn)
                    .optional()?;
                let Some((scopes, uses_keys)) = registered else {
                    return Err(Error::InvalidToken);
                };
                let scopes = Scopes::parse(&scopes);
                if !scopes.has(scope) {
                    return Err(Error::InvalidToken);
                }
                // A registration or audit token counts only bound to a key (checked above
                // against the proof) and only while its client still proves itself by keys.
                if Scopes::parse(scope).needs_key_binding() && !(claims.cnf.is_some() && uses_keys)
                {
                    return Err(Error::InvalidToken);
                }
                let Some(fid) = &claims.fid else {
                    if Self::access_revoked(conn, &claims.jti)? {
                        return Err(Error::InvalidToken);
                    }
                    return Ok(None);
                };
                let family: FamilyRow = token_families::table
                    .find(&fid)
                    .get_result(conn)
                    .optional()?
                    .ok_or(Error::InvalidToken)?;
                if family.revoked_at.is_some() {
                    return Err(Error::InvalidToken);
                }
                Ok(Some(family.citizen_id))
            })?;
            Ok((claims.client_id, citizen))
        })
        .await
    }

    /// The consents of the session's citizen.
    pub async fn consents(
        &self,
        token: Option<SessionToken>,
    ) -> Result<Option<(Session, Vec<ConsentView>)>> {
        let this = self.clone();
        blocking(move || {
            this.inner.db.with(|conn| {
                let Some(session) = this.session_blocking(conn, token.as_ref())? else {
                    return Ok(None);
                };
                let rows: Vec<(String, String, String, String, i64)> = consents::table
                    .inner_join(clients::table)
                    .filter(consents::citizen_id.eq(&session.citizen_id))
                    .select((
                        clients::id,
                        clients::name,
                        clients::department,
                        consents::scopes,
                        consents::granted_at,
                    ))
                    .order(clients::name)
                    .load(conn)?;
                let views = rows
                    .into_iter()
                    .map(
                        |(client_id, client_name, department, scopes, granted_at)| ConsentView {
                            client_id,
                            client_name,
                            department,
                            scopes,
                            granted_at,
                        },
                    )
                    .collect();
                Ok(Some((session, views)))
            })
        })
        .await
    }

    /// Withdraws the citizen's consent for a client and revokes the grants it covered.
    pub async fn withdraw_consent(
        &self,
        token: Option<SessionToken>,
        client_id: String,
    ) -> Result<()> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let session = this
                    .session_blocking(conn, token.as_ref())?
                    .ok_or_else(|| Error::InvalidRequest("you are not logged in".into()))?;
                let now = this.inner.clock.now();
                let n = diesel::delete(consents::table.find((&session.citizen_id, &client_id)))
                    .execute(conn)?;
                if n == 0 {
                    return Err(Error::NotFound);
                }
                ev.push(
                    Event::new("consent.withdrawn", Audited::Success)
                        .client(&client_id)
                        .citizen(&session.citizen_id),
                );
                // Codes issued under the consent but not yet redeemed go too, or one
                // redeemed after the withdrawal would start a fresh grant.
                diesel::delete(auth_codes::table)
                    .filter(auth_codes::citizen_id.eq(&session.citizen_id))
                    .filter(auth_codes::client_id.eq(&client_id))
                    .filter(auth_codes::used_at.is_null())
                    .execute(conn)?;
                diesel::update(token_families::table)
                    .filter(token_families::citizen_id.eq(&session.citizen_id))
                    .filter(token_families::client_id.eq(&client_id))
                    .filter(token_families::revoked_at.is_null())
                    .set((
                        token_families::revoked_at.eq(now),
                        token_families::revoked_reason.eq("consent withdrawn"),
                    ))
                    .execute(conn)?;
                Ok(())
            })
        })
        .await
    }
}

struct Signers {
    access: Signer,
    id: Signer,
}

/// What a grant's transaction decided. A refusal is a value, not an `Err`, so that the
/// revocation it may have written commits.
enum Outcome {
    Issued(Box<TokenResponse>),
    Refused(&'static str),
}

impl Outcome {
    fn into_result(self) -> Result<TokenResponse> {
        match self {
            Outcome::Issued(t) => Ok(*t),
            Outcome::Refused(why) => Err(Error::InvalidGrant(why)),
        }
    }
}

enum Decision {
    Login,
    Consent(Vec<String>),
    Issue(Session),
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_client_ids_never_look_like_an_option() {
        // A random base64url id starts with '-' once in 64 draws; among 10,000 one would
        // all but surely do so.
        assert!((0..10_000).all(|_| !super::new_client_id().starts_with('-')));
    }
}
