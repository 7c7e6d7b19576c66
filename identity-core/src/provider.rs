//! The OpenID Connect provider's domain logic: authorization, login, consent, codes,
//! tokens, UserInfo and the administration of clients and citizens.
//!
//! This file holds the `Provider` itself, the types its flows take and give, and what they
//! all share; each flow is a submodule (an `impl Provider` block), listed below.
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

// One module per flow; each is an `impl Provider` block (or a type the provider holds).
mod access;
mod activation;
mod authentication;
mod authorize;
mod citizen_admin;
mod client_admin;
mod client_credentials;
mod code_grant;
mod consent;
mod enrolment;
mod evidence;
mod housekeeping;
mod login;
mod logout;
mod passkey_login;
mod passkeys;
mod recovery;
mod refresh_grant;
mod revocation;
mod signing;
mod token;
use authorize::Decision;
pub use enrolment::{
    check_date, mask_document, normalize_document, AccountStatus, ActivationCode, CitizenRecord,
    Registration, RegistrationUpdate,
};
pub use logout::{EndSession, EndSessionInput, LogoutNotice};
pub use passkeys::{Ceremony, PasskeyView, WebauthnConfig, CEREMONY_TTL, REGISTRATION_FRESHNESS};
pub use signing::{
    NewSigningRequest, SigningDecision, SigningRequestView, SigningResult, SIGNING_TTL,
};
use token::Outcome;

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
    _keys_set_at: Option<i64>,
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
}
