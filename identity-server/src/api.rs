//! The JSON APIs that back ends call with client-credentials tokens: signing requests
//! (`signing`), the registration office's (`registration`) and the auditors' (`audit`).
//! Their schemas are in `wire.rs`; the OpenAPI document (`openapi.rs`) collects both.

pub(crate) mod audit;
pub(crate) mod registration;
pub(crate) mod signing;
