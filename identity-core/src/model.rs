//! Domain types: clients, citizens, scopes and the assurance of a login.

use std::collections::BTreeSet;
use std::fmt;

use crate::error::{Error, Result};

/// Assurance level of a password alone.
pub const ACR_PASSWORD: &str = "urn:identity-service:acr:1";
/// Assurance level of a passkey with user verification: something the citizen has (a key
/// that cannot be phished or replayed) and something they are or know (the device's
/// biometric or PIN).
pub const ACR_PASSKEY: &str = "urn:identity-service:acr:2";

/// The rank of an `acr` value we define: higher is stronger. Unknown values have none.
pub fn acr_rank(acr: &str) -> Option<u8> {
    match acr {
        ACR_PASSWORD => Some(1),
        ACR_PASSKEY => Some(2),
        _ => None,
    }
}

/// The stronger of two optional `acr` requirements.
pub fn stronger_acr<'a>(a: Option<&'a str>, b: Option<&'a str>) -> Option<&'a str> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if acr_rank(y) > acr_rank(x) { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// What a space-separated `acr_values` asks for: the weakest level it names that we
/// define, since a login at any listed level satisfies the request. Unknown values are
/// ignored (OpenID Connect Core 3.1.2.1 makes them voluntary).
pub fn acr_from_values(values: &str) -> Option<&'static str> {
    values
        .split(' ')
        .filter_map(|v| match v {
            ACR_PASSWORD => Some(ACR_PASSWORD),
            ACR_PASSKEY => Some(ACR_PASSKEY),
            _ => None,
        })
        .min_by_key(|v| acr_rank(v))
}

/// Scopes the provider knows. Others in a request are ignored, as OpenID Connect allows.
pub const SUPPORTED_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "phone",
    "address",
    "offline_access",
    // Only for clients registered for it: the citizen's identity document number.
    "identity_document",
    // Only for clients registered for it: the e-service may ask the citizen to sign.
    "signing",
];

/// Whether a scope releases citizen data (and so needs a citizen's login): every scope an
/// authorization request may carry except `signing`, which a back end may also hold by
/// client credentials.
pub fn is_citizen_scope(scope: &str) -> bool {
    SUPPORTED_SCOPES.contains(&scope) && scope != "signing"
}

/// Scopes whose tokens open citizens' records (`registration`: enrol, change, recover) or
/// the whole log (`audit`). A client registered for one authenticates with
/// `private_key_jwt` and gets only DPoP-bound tokens: a copied secret or a token lifted
/// from a log or a proxy opens nothing without the private keys.
pub const KEY_BOUND_SCOPES: &[&str] = &["registration", "audit"];

/// Scopes registered for a client when none are given.
pub const DEFAULT_CLIENT_SCOPES: &str = "openid profile email phone address offline_access";

/// Claims the provider can release, for discovery.
pub const SUPPORTED_CLAIMS: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "name",
    "name#zh-Hant",
    "birthdate",
    "gender",
    "identity_document_number",
    "email",
    "email_verified",
    "phone_number",
    "phone_number_verified",
    "address",
];

/// A set of scopes, kept sorted so stored values compare as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Parses a space-separated scope string, keeping only scopes the provider supports.
    pub fn parse_supported(s: &str) -> Self {
        Scopes(
            s.split(' ')
                .filter(|x| SUPPORTED_SCOPES.contains(x))
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Parses a stored or registered scope string as is.
    pub fn parse(s: &str) -> Self {
        Scopes(s.split_whitespace().map(str::to_owned).collect())
    }

    /// Whether the set names this scope.
    pub fn has(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// Whether the set names a scope of [`KEY_BOUND_SCOPES`].
    pub fn needs_key_binding(&self) -> bool {
        KEY_BOUND_SCOPES.iter().any(|s| self.has(s))
    }

    /// Whether every scope of `other` is in this set.
    pub fn covers(&self, other: &Scopes) -> bool {
        other.0.is_subset(&self.0)
    }

    /// The scopes of this set that `allowed` also has.
    pub fn intersect(&self, allowed: &Scopes) -> Scopes {
        Scopes(self.0.intersection(&allowed.0).cloned().collect())
    }

    /// The union of two sets.
    pub fn union(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.union(&other.0).cloned().collect())
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v: Vec<&str> = self.iter().collect();
        f.write_str(&v.join(" "))
    }
}

/// Signing algorithms of ID tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    /// ECDSA P-256 with SHA-256, the default.
    Es256,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048-bit keys): for legacy relying parties, and the
    /// one algorithm OpenID Connect Discovery requires every provider to offer.
    Rs256,
}

impl SigningAlg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
            SigningAlg::Rs256 => "RS256",
        }
    }

    /// Parses a JOSE name; RS256 and others are refused with a reason.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ES256" => Ok(SigningAlg::Es256),
            "EdDSA" => Ok(SigningAlg::EdDsa),
            "RS256" => Ok(SigningAlg::Rs256),
            other => Err(Error::InvalidRequest(format!(
                "unsupported signing algorithm {other:?}: use ES256, EdDSA or RS256"
            ))),
        }
    }

    /// Every algorithm the provider signs with.
    pub const ALL: [SigningAlg; 3] = [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256];
}

/// A registered e-service.
#[derive(Clone, Debug)]
pub struct Client {
    /// The public client id.
    pub id: String,
    /// The e-service's name, shown to citizens.
    pub name: String,
    /// The department that runs it.
    pub department: String,
    /// The pairwise-subject sector: the department unless registered otherwise.
    pub sector: String,
    /// Keyed hash of the secret; `None` for a public client.
    pub secret_hash: Option<String>,
    /// Redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
    /// Scopes this client may ask for.
    pub scopes: Scopes,
    /// Algorithm of its ID tokens.
    pub id_token_alg: SigningAlg,
    /// The lowest assurance it accepts (`acr`), whatever a request asks for.
    pub min_acr: Option<String>,
    /// Its public keys (a JWKS) for `private_key_jwt`.
    pub jwks: Option<String>,
    /// A FAPI 2.0 client: `private_key_jwt` and pushed authorization requests only.
    pub fapi: bool,
    /// Where the browser may go after logout, matched exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// Where a logout token is POSTed when a citizen's session ends.
    pub backchannel_logout_uri: Option<String>,
    /// Where the client publishes its `private_key_jwt` keys, instead of registering them.
    pub jwks_uri: Option<String>,
    /// Where a signing request may send the citizen back, matched exactly.
    pub signing_return_uris: Vec<String>,
    /// Where the outcome of a signing request may be POSTed, matched exactly.
    pub signing_callback_uris: Vec<String>,
}

impl Client {
    /// Whether the client proves itself with keys (registered or published) rather than a
    /// secret.
    pub fn uses_keys(&self) -> bool {
        self.jwks.is_some() || self.jwks_uri.is_some()
    }
}

impl Client {
    /// Whether the client authenticates (with a secret or a key).
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some() || self.uses_keys()
    }
}

/// What a department registers.
#[derive(Clone, Debug)]
pub struct NewClient {
    /// Client id; generated when `None`.
    pub id: Option<String>,
    /// Display name.
    pub name: String,
    /// Department.
    pub department: String,
    /// Sector; the department when `None`.
    pub sector: Option<String>,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Scopes; the defaults when `None`.
    pub scopes: Option<String>,
    /// Public (no secret, PKCE only) or confidential.
    pub public: bool,
    /// ID token algorithm; ES256 when `None`.
    pub id_token_alg: Option<String>,
    /// A fixed secret, for seeded demo data only; generated when `None`.
    pub secret: Option<ClientSecret>,
    /// The lowest `acr` it accepts; one of [`ACR_PASSWORD`] or [`ACR_PASSKEY`].
    pub min_acr: Option<String>,
    /// Public keys (a JWKS, JSON) for `private_key_jwt`; such a client gets no secret.
    pub jwks: Option<String>,
    /// Registered as FAPI 2.0.
    pub fapi: bool,
    /// Post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Back-channel logout URI.
    pub backchannel_logout_uri: Option<String>,
    /// Where the client publishes its keys (https), for `private_key_jwt`.
    pub jwks_uri: Option<String>,
    /// Signing `return_uri`s it may name.
    pub signing_return_uris: Vec<String>,
    /// Signing `callback_uri`s it may name.
    pub signing_callback_uris: Vec<String>,
}

/// A client secret, shown once at registration. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        ClientSecret(s.into())
    }
    /// The secret text, to print once or to check.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// A citizen's verified identity attributes.
#[derive(Clone, Debug, Default)]
pub struct Citizen {
    /// Internal id; never leaves the service.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Name in English.
    pub name_en: String,
    /// Name in Chinese.
    pub name_zh: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// Postal address, formatted.
    pub address: Option<String>,
}

/// What a registration adds.
#[derive(Clone, Debug, Default)]
pub struct NewCitizen {
    /// Login name.
    pub username: String,
    /// Name in English.
    pub name_en: String,
    /// Name in Chinese.
    pub name_zh: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// Postal address.
    pub address: Option<String>,
}

/// Checks a redirect URI at registration: absolute, no fragment, and HTTPS unless it is a
/// loopback address (native apps and local development, RFC 8252).
pub fn check_redirect_uri(uri: &str) -> Result<()> {
    let url = url::Url::parse(uri)
        .map_err(|_| Error::InvalidRequest(format!("redirect URI {uri:?} is not a URL")))?;
    if url.fragment().is_some() {
        return Err(Error::InvalidRequest(format!(
            "redirect URI {uri:?} must not have a fragment"
        )));
    }
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(Error::InvalidRequest(format!(
            "redirect URI {uri:?} must use https (http only on loopback)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_filter_and_cover() {
        let s = Scopes::parse_supported("openid email bogus profile");
        assert_eq!(s.to_string(), "email openid profile");
        assert!(Scopes::parse(DEFAULT_CLIENT_SCOPES).covers(&s));
        assert!(!s.covers(&Scopes::parse("phone")));
    }

    #[test]
    fn acr_levels_order_and_parse() {
        assert!(acr_rank(ACR_PASSKEY) > acr_rank(ACR_PASSWORD));
        assert_eq!(acr_rank("urn:other"), None);
        assert_eq!(
            acr_from_values(&format!("urn:other {ACR_PASSKEY} {ACR_PASSWORD}")),
            Some(ACR_PASSWORD)
        );
        assert_eq!(acr_from_values(ACR_PASSKEY), Some(ACR_PASSKEY));
        assert_eq!(acr_from_values("urn:other"), None);
        assert_eq!(
            stronger_acr(Some(ACR_PASSKEY), Some(ACR_PASSWORD)),
            Some(ACR_PASSKEY)
        );
        assert_eq!(stronger_acr(None, Some(ACR_PASSWORD)), Some(ACR_PASSWORD));
    }

    #[test]
    fn redirect_uris_checked() {
        assert!(check_redirect_uri("https://e.gov.example/cb").is_ok());
        assert!(check_redirect_uri("http://localhost:8081/callback").is_ok());
        assert!(check_redirect_uri("http://e.gov.example/cb").is_err());
        assert!(check_redirect_uri("https://e.gov.example/cb#x").is_err());
        assert!(check_redirect_uri("not a url").is_err());
    }
}
