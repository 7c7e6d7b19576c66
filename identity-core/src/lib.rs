//! The identity service's domain and storage. It knows nothing of HTTP: the server crate
//! parses requests into the input types here, makes one call, and renders the result.
//!
//! ```
//! use identity_core::model::Scopes;
//! let s = Scopes::parse_supported("openid email unknown");
//! assert_eq!(s.to_string(), "email openid");
//! ```

pub mod audit;
pub mod client_auth;
pub mod clock;
pub mod crypto;
pub mod dpop;
pub mod error;
pub mod jwt_ring;
pub mod keys;
pub mod model;
pub mod password;
pub mod provider;
pub mod schema;
pub mod signing_cms;
pub mod storage;
pub mod throttle;

pub use clock::Clock;
pub use error::{Error, Result};
pub use provider::Provider;
