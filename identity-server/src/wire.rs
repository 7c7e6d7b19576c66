//! The wire schemas the OpenAPI document declares: request forms and response bodies that
//! the handlers read with [`crate::params::Params`] or answer with the core's types, so that
//! they are described here, beside the wire. This module imports no handler: the APIs name
//! these types in their `#[utoipa::path]` annotations, and `openapi.rs` collects both.

#![allow(dead_code)] // The types below exist for their schemas; nothing constructs them.

use utoipa::{IntoResponses, ToSchema};

/// Every OAuth and API error: RFC 6749 §5.2's `error` code and a description for people.
#[derive(ToSchema)]
pub struct ErrorBody {
    /// The OAuth error code, e.g. `invalid_request`, `invalid_grant`,
    /// `temporarily_unavailable`.
    error: String,
    /// What went wrong, in words safe to show (never internal detail).
    error_description: String,
}

/// The form of a token request (RFC 6749 §4.1.3, §6, §4.4). Client authentication is HTTP
/// Basic (`client_secret_basic`), the `client_id`/`client_secret` fields
/// (`client_secret_post`), or a `client_assertion` (`private_key_jwt`).
#[derive(ToSchema)]
pub struct TokenForm {
    #[schema(example = "client_credentials")]
    grant_type: GrantType,
    #[schema(nullable = false)]
    code: Option<String>,
    #[schema(nullable = false)]
    redirect_uri: Option<String>,
    #[schema(nullable = false)]
    code_verifier: Option<String>,
    #[schema(nullable = false)]
    refresh_token: Option<String>,
    #[schema(nullable = false)]
    scope: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    #[schema(nullable = false)]
    client_assertion_type: Option<String>,
    #[schema(nullable = false)]
    client_assertion: Option<String>,
}

/// The grants the token endpoint serves.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(ToSchema)]
pub struct TokenBody {
    /// A JWT access token (RFC 9068).
    access_token: String,
    /// `Bearer`, or `DPoP` when the token is bound to the client's key.
    #[schema(example = "Bearer")]
    token_type: String,
    expires_in: i64,
    #[schema(nullable = false)]
    id_token: Option<String>,
    #[schema(nullable = false)]
    refresh_token: Option<String>,
    scope: String,
}

/// A pushed authorization request (RFC 9126): the authorization request's parameters
/// (`response_type`, `redirect_uri`, `scope`, `state`, `nonce`, `code_challenge`, ...) with
/// the client's authentication, as a form.
#[derive(ToSchema)]
pub struct ParForm {
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    response_type: Option<String>,
    #[schema(nullable = false)]
    redirect_uri: Option<String>,
    #[schema(nullable = false)]
    scope: Option<String>,
    #[schema(nullable = false)]
    state: Option<String>,
    #[schema(nullable = false)]
    nonce: Option<String>,
    #[schema(nullable = false)]
    code_challenge: Option<String>,
    #[schema(nullable = false)]
    code_challenge_method: Option<String>,
}

/// The answer to a pushed request.
#[derive(ToSchema)]
pub struct ParBody {
    /// `urn:ietf:params:oauth:request_uri:...`, single-use, for `/authorize`.
    request_uri: String,
    expires_in: i64,
}

/// The token to revoke or introspect, with the client's authentication.
#[derive(ToSchema)]
pub struct TokenParameterForm {
    token: String,
    #[schema(nullable = false)]
    token_type_hint: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// An introspection answer (RFC 7662 §2.2): `active`, and when active the token's claims.
#[derive(ToSchema)]
pub struct IntrospectionBody {
    active: bool,
    #[schema(nullable = false)]
    scope: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    sub: Option<String>,
    #[schema(nullable = false)]
    exp: Option<i64>,
    #[schema(nullable = false)]
    iat: Option<i64>,
    #[schema(nullable = false)]
    token_type: Option<String>,
}

/// The provider's public keys (RFC 7517).
#[derive(ToSchema)]
pub struct JwksBody {
    #[schema(value_type = Vec<Object>)]
    keys: Vec<serde_json::Value>,
}

/// A citizen enrolled, or a recovery started: the activation code as the officer hands it
/// over.
#[derive(ToSchema)]
pub struct ActivationBody {
    /// The one-time activation code.
    code: String,
    /// The activation link.
    url: String,
    /// A QR code of the link, as SVG (`null` if it could not be drawn).
    qr_svg: Option<String>,
    expires_at: i64,
}

/// The answer to an enrolment.
#[derive(ToSchema)]
pub struct EnrolledBody {
    citizen_id: String,
    activation: ActivationBody,
}

/// The answer to an approved recovery.
#[derive(ToSchema)]
pub struct RecoveryStartedBody {
    activation: ActivationBody,
}

/// A recovery asked for, waiting for a second officer.
#[derive(ToSchema)]
pub struct RecoveryRequestedBody {
    recovery_request: String,
    /// Where the approving officer posts.
    approval: String,
}

/// A citizen's registration as the officer sees it; the identity document is masked.
#[derive(ToSchema)]
pub struct CitizenBody {
    citizen_id: String,
    username: String,
    name_en: String,
    name_zh: String,
    date_of_birth: Option<String>,
    gender: Option<String>,
    id_document: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    /// `pending`, `active`, `suspended` or `closed`.
    status: String,
    passkeys: i64,
    has_password: bool,
}

/// A signing request the service accepted.
#[derive(ToSchema)]
pub struct SigningCreatedBody {
    request_id: String,
    /// The identification code the citizen compares on the approval page.
    code: String,
    subject: String,
    approval_url: String,
    expires_at: i64,
    state: String,
}

/// Where a signing request stands; `signed` carries the result once the citizen approved.
#[derive(ToSchema)]
pub struct SigningStatusBody {
    /// `pending`, `signed`, `rejected` or `expired`.
    state: String,
    /// The signature, certificates, WebAuthn evidence and audit proof (docs/signing.md §6).
    #[schema(nullable = false)]
    signed: Option<SignedBody>,
}

/// A signed request's result, which `identity_sdk::signing::verify_signing_result` checks.
#[derive(ToSchema)]
pub struct SignedBody {
    /// `SHA-256` or `SHA-512`.
    hash_alg: String,
    /// The detached CMS SignedData (a DER `ContentInfo`), base64.
    signature: String,
    /// The citizen's certificate for this signature (DER), base64.
    certificate: String,
    /// The signing CA's certificate (DER), base64: compare it with the pinned one.
    ca_certificate: String,
    evidence: EvidenceBody,
    audit: ApprovalAuditBody,
}

/// The passkey's approval.
#[derive(ToSchema)]
pub struct EvidenceBody {
    /// The passkey's credential id, base64url.
    credential_id: String,
    /// The browser's `PublicKeyCredential` answer as posted: `id`, `rawId`, `type`, and
    /// `response` with `authenticatorData`, `clientDataJSON`, `signature` and `userHandle`
    /// (base64url).
    #[schema(value_type = Object)]
    assertion: serde_json::Value,
    /// The WebAuthn challenge derived from the request and the digest, base64url.
    challenge: String,
    public_key: PasskeyJwk,
    /// The WebAuthn relying-party id.
    rp_id: String,
    /// The WebAuthn origin.
    origin: String,
}

/// The passkey's public key as a JWK (RFC 7517): `EC` (`P-256`, `P-384`), `OKP`
/// (`Ed25519`) or `RSA`, with `alg` (`ES256`, `ES384`, `EdDSA`, `RS256`, ...).
#[derive(ToSchema)]
pub struct PasskeyJwk {
    kty: String,
    alg: Option<String>,
    crv: Option<String>,
    /// base64url.
    x: Option<String>,
    /// base64url.
    y: Option<String>,
    /// base64url.
    n: Option<String>,
    /// base64url.
    e: Option<String>,
}

/// The approval's audit entry and its inclusion in a signed checkpoint.
#[derive(ToSchema)]
pub struct ApprovalAuditBody {
    /// The entry's leaf index.
    index: u64,
    /// The entry's text (docs/audit-log.md).
    entry: String,
    /// A signed checkpoint (C2SP signed note) whose tree holds the entry.
    checkpoint: String,
    /// The inclusion proof, leaf first; base64 32-byte hashes.
    proof: Vec<String>,
}

/// An audit-log inclusion proof (RFC 9162 §2.1.3).
#[derive(ToSchema)]
pub struct InclusionBody {
    index: u64,
    size: u64,
    /// Base64 hashes.
    proof: Vec<String>,
}

/// An audit-log consistency proof (RFC 9162 §2.1.4).
#[derive(ToSchema)]
pub struct ConsistencyBody {
    from: u64,
    to: u64,
    /// Base64 hashes.
    proof: Vec<String>,
}

/// The refusals every API operation may answer, declared once for all of them.
#[derive(IntoResponses)]
pub enum ApiErrors {
    /// Refused: the OAuth error
    #[response(status = "4XX")]
    Refused(ErrorBody),
    /// Busy or the database unreachable; see Retry-After
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
