//! The one error type of the core. The server maps each kind to HTTP in one place.

use std::fmt;

/// What went wrong, in terms the protocol layer can map to a response.
///
/// `Internal` carries text for the log only; it is never shown to a caller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request parameter is missing, repeated or malformed (OAuth `invalid_request`).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Client authentication failed (OAuth `invalid_client`).
    #[error("client authentication failed")]
    InvalidClient,
    /// A code, refresh token or verifier is wrong, expired, used or not this client's.
    #[error("invalid grant: {0}")]
    InvalidGrant(&'static str),
    /// The client may not use this grant type.
    #[error("unauthorized client: {0}")]
    UnauthorizedClient(&'static str),
    /// The grant type is not one we offer.
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// The requested scope is not allowed.
    #[error("invalid scope: {0}")]
    InvalidScope(String),
    /// A DPoP proof is missing, malformed, replayed or for another request (RFC 9449).
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(String),
    /// The DPoP proof must carry this server nonce (RFC 9449 §8); `resource` is set at a
    /// protected resource (401 there, 400 at the token endpoint).
    #[error("use the DPoP nonce")]
    UseDpopNonce {
        /// The nonce to use.
        nonce: String,
        /// Whether a protected resource (not the token endpoint) asked.
        resource: bool,
    },
    /// A bearer token is missing, invalid, expired or revoked.
    #[error("invalid token")]
    InvalidToken,
    /// The token is valid but lacks this scope.
    #[error("insufficient scope: {0}")]
    InsufficientScope(&'static str),
    /// The username or password is wrong. Deliberately one variant for both.
    #[error("wrong username or password")]
    BadCredentials,
    /// Too many failures for this account: wait this many seconds.
    #[error("too many attempts; retry after {retry_after} s")]
    Throttled { retry_after: u64 },
    /// The account's password is locked after too many failures, for `retry_after`
    /// seconds (passkeys still log in).
    #[error("account locked")]
    Locked {
        /// Seconds until the lock ends.
        retry_after: u64,
    },
    /// A passkey's signature counter went backwards: it may have been cloned. Refused.
    #[error("passkey counter went backwards")]
    PasskeyCloned,
    /// The password does not meet the policy; the text is safe to show the citizen.
    #[error("password refused: {0}")]
    WeakPassword(String),
    /// The hashing pool is full: the caller should answer 503 with this `Retry-After`.
    #[error("busy")]
    Busy { retry_after: u64 },
    /// A name that must be unique is taken.
    #[error("already exists: {0}")]
    Conflict(String),
    /// A thing looked up by id does not exist.
    #[error("not found")]
    NotFound,
    /// The database cannot be reached right now.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else; the text goes to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with the core's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An internal error from anything displayable.
    pub fn internal(e: impl fmt::Display) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as D};
        match e {
            D::NotFound => Error::NotFound,
            // The database's own text names tables and constraints: log it, never show it.
            D::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                tracing::debug!(detail = info.message(), "unique violation");
                Error::Conflict("already exists".to_owned())
            }
            D::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                Error::Unavailable(info.message().to_owned())
            }
            // diesel reports a connection that PostgreSQL ended (a restart, a failover) as
            // an unknown error and does not expose the SQLSTATE; libpq's wording is stable,
            // and taking it for an internal error would answer 500 where 503 is the truth.
            // The wording is English unless the server's lc_messages says otherwise; with a
            // translated server a lost connection is a 500 until the next checkout, where
            // the pool's own check finds it.
            D::DatabaseError(_, info) if connection_lost(info.message()) => {
                Error::Unavailable(info.message().to_owned())
            }
            other => Error::Internal(other.to_string()),
        }
    }
}

/// Whether a database error's text says the connection itself failed.
fn connection_lost(message: &str) -> bool {
    [
        "terminating connection",
        "server closed the connection",
        "connection to server",
        "no connection to the server",
        "could not receive data",
        "could not send data",
        "the database system is",
        "SSL connection has been closed",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Error::Unavailable(e.to_string())
    }
}
