//! Document signing for e-services, in the manner of iAM Smart+: the e-service sends a
//! document's hash; the citizen compares a 4-digit identification code and approves with a
//! passkey whose WebAuthn challenge is derived from the request and the hash; the service
//! signs the hash with the citizen's own key (CMS, RFC 5652) under a certificate from its
//! signing CA, and records the approval in the audit log.
//!
//! A password alone can never sign: approval is a passkey assertion over this document.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use diesel::prelude::*;
use identity_sdk::signing_client::reorders_text;
use ring::digest;
use serde_json::{json, Value};
use webauthn_rs::prelude::{Passkey, PasskeyAuthentication, PublicKeyCredential, WebauthnError};

use super::{blocking, Ceremony, Provider};
use crate::audit::{Event, Outcome as Audited};
use crate::crypto::{b64, random_token};
use crate::error::{Error, Result};
use crate::model::check_redirect_uri;
use crate::schema::*;
use crate::signing_cms::{self, CaMaterial, HashAlg};
use crate::storage::DbConnection;

/// How long a citizen has to approve (at most 5 minutes).
pub const SIGNING_TTL: i64 = 300;

/// What an e-service asks to have signed.
#[derive(Clone, Debug, Default)]
pub struct NewSigningRequest {
    /// The citizen, by the pairwise subject this client knows.
    pub subject: String,
    /// `SHA-256` or `SHA-512`.
    pub hash_alg: String,
    /// The document's digest, base64url without padding.
    pub document_hash: String,
    /// The document's name, shown to the citizen.
    pub document_name: String,
    /// An optional description, shown to the citizen.
    pub description: Option<String>,
    /// Where the citizen's browser goes after deciding.
    pub return_uri: Option<String>,
    /// Where the service POSTs `{request_id, state}` once the citizen decided, so the
    /// e-service need not poll; it then fetches the result with its own credentials.
    pub callback_uri: Option<String>,
}

/// What follows a citizen's decision.
#[derive(Clone, Debug, Default)]
pub struct SigningDecision {
    /// Where the citizen's browser goes.
    pub return_uri: Option<String>,
    /// Where to notify the e-service.
    pub callback_uri: Option<String>,
}

/// A signing request as its e-service and the approval page see it.
#[derive(Clone, Debug)]
pub struct SigningRequestView {
    /// Random id; also the approval page's address.
    pub id: String,
    /// The 4-digit identification code the e-service shows beside the document.
    pub code: String,
    /// The citizen, by the client's pairwise subject.
    pub subject: String,
    /// When it expires, Unix seconds.
    pub expires_at: i64,
    /// The e-service's name.
    pub client_name: String,
    /// Its department.
    pub department: String,
    /// The document's name.
    pub document_name: String,
    /// Its description.
    pub description: Option<String>,
    /// `SHA-256` or `SHA-512`.
    pub hash_alg: String,
    /// The first and last characters of the hash, for the citizen to compare.
    pub hash_short: String,
    /// `pending`, `signed`, `rejected` or `expired`.
    pub state: String,
    /// Where the citizen goes afterwards.
    pub return_uri: Option<String>,
}

/// What the requesting client receives.
#[derive(Clone, Debug)]
pub struct SigningResult {
    /// `pending`, `signed`, `rejected` or `expired`.
    pub state: String,
    /// The result, once signed.
    pub signed: Option<Value>,
}

/// The WebAuthn challenge of an approval, derived from the request and the document hash
/// so the assertion is bound to this document; the SDK recomputes it with the same function.
pub use identity_sdk::signing::approval_challenge;

/// The identification code: four digits from the request and the hash, so the page and
/// the e-service show the same code for the same document and request.
fn identification_code(request_id: &str, document_hash: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"identity-service/sign-code/v1");
    ctx.update(request_id.as_bytes());
    ctx.update(document_hash);
    let d = ctx.finish();
    let n = u32::from_be_bytes([d.as_ref()[0], d.as_ref()[1], d.as_ref()[2], d.as_ref()[3]]);
    format!("{:04}", n % 10_000)
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// The approval's audit detail: the SHA-256 of the request id and of the CMS signature, in
/// hex, so the log commits to the exact signature without holding the document or the id,
/// and the SDK can recompute it.
pub fn approval_detail(request_id: &str, cms: &[u8]) -> String {
    format!("{}:{}", hex_sha256(request_id.as_bytes()), hex_sha256(cms))
}

fn short_hash(h: &[u8]) -> String {
    let hex = hex::encode(h);
    format!("{}…{}", &hex[..8], &hex[hex.len() - 8..])
}

fn gone(state: &str) -> Error {
    Error::InvalidRequest(match state {
        "signed" => "this document was already signed".into(),
        "rejected" => "this signing request was rejected".into(),
        _ => "this signing request has expired; ask the e-service to send it again".into(),
    })
}

type RequestRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
);

impl Provider {
    fn load_request(conn: &mut DbConnection, id: &str) -> Result<Option<RequestRow>> {
        Ok(signing_requests::table
            .find(id)
            .select((
                signing_requests::id,
                signing_requests::client_id,
                signing_requests::citizen_id,
                signing_requests::subject,
                signing_requests::hash_alg,
                signing_requests::document_hash,
                signing_requests::document_name,
                signing_requests::description,
                signing_requests::return_uri,
                signing_requests::code,
                signing_requests::state,
                signing_requests::expires_at,
            ))
            .get_result(conn)
            .optional()?)
    }

    fn view(&self, conn: &mut DbConnection, r: RequestRow) -> Result<SigningRequestView> {
        let client = Self::client(conn, &r.1)?.ok_or(Error::NotFound)?;
        let hash = URL_SAFE_NO_PAD.decode(&r.5).map_err(Error::internal)?;
        let now = self.inner.clock.now();
        let state = if r.10 == "pending" && r.11 <= now {
            "expired".to_owned()
        } else {
            r.10
        };
        Ok(SigningRequestView {
            id: r.0,
            code: r.9,
            subject: r.3,
            expires_at: r.11,
            client_name: client.name,
            department: client.department,
            document_name: r.6,
            description: r.7,
            hash_alg: r.4,
            hash_short: short_hash(&hash),
            state,
            return_uri: r.8,
        })
    }

    /// Creates a signing request for a citizen the client knows by its pairwise subject
    /// (`citizen` is set when the caller is the citizen's own access token, which must name
    /// the same citizen). The citizen must have a passkey: a password cannot sign.
    pub async fn create_signing_request(
        &self,
        client_id: &str,
        citizen: Option<String>,
        new: NewSigningRequest,
    ) -> Result<SigningRequestView> {
        let alg = HashAlg::parse(&new.hash_alg)
            .map_err(|_| Error::InvalidRequest("hash_alg must be SHA-256 or SHA-512".into()))?;
        let hash = URL_SAFE_NO_PAD
            .decode(new.document_hash.trim_end_matches('='))
            .map_err(|_| Error::InvalidRequest("document_hash must be base64url".into()))?;
        if hash.len() != alg.digest_len() {
            return Err(Error::InvalidRequest(format!(
                "document_hash must be a {}-byte {} digest",
                alg.digest_len(),
                new.hash_alg
            )));
        }
        let name = new.document_name.trim().to_owned();
        if name.is_empty()
            || name.chars().count() > 200
            || name.chars().any(|c| c.is_control() || reorders_text(c))
        {
            return Err(Error::InvalidRequest(
                "document_name must be 1 to 200 printable characters".into(),
            ));
        }
        if new.description.as_ref().is_some_and(|d| {
            d.chars().count() > 1000
                || d.chars()
                    .any(|c| (c.is_control() && c != '\n') || reorders_text(c))
        }) {
            return Err(Error::InvalidRequest(
                "description must be at most 1000 printable characters".into(),
            ));
        }
        for uri in [&new.return_uri, &new.callback_uri].into_iter().flatten() {
            check_redirect_uri(uri)?;
        }
        let client_id = client_id.to_owned();
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let client = Self::client(conn, &client_id)?.ok_or(Error::InvalidClient)?;
                // Only URIs registered for the client, matched exactly as redirect URIs
                // are: any other would make the service an open redirect (return_uri) or
                // a forger of requests into networks it can reach (callback_uri).
                for (uri, registered, field) in [
                    (&new.return_uri, &client.signing_return_uris, "return_uri"),
                    (&new.callback_uri, &client.signing_callback_uris, "callback_uri"),
                ] {
                    if uri.as_ref().is_some_and(|u| !registered.contains(u)) {
                        return Err(Error::InvalidRequest(format!(
                            "{field} is not registered for this e-service (client add --signing-{}-uri)",
                            field.trim_end_matches("_uri")
                        )));
                    }
                }
                let found: Option<String> = subjects::table
                    .find((&client.sector, &new.subject))
                    .select(subjects::citizen_id)
                    .get_result(conn)
                    .optional()?;
                let citizen_id = match (found, &citizen) {
                    (Some(c), None) => c,
                    (Some(c), Some(own)) if &c == own => c,
                    _ => {
                        return Err(Error::InvalidRequest(
                            "subject is not a citizen known to this e-service".into(),
                        ))
                    }
                };
                let active: i64 = citizens::table
                    .find(&citizen_id)
                    .filter(citizens::status.eq("active"))
                    .count()
                    .get_result(conn)?;
                let keys: i64 = passkeys::table
                    .filter(passkeys::citizen_id.eq(&citizen_id))
                    .count()
                    .get_result(conn)?;
                if active == 0 {
                    return Err(Error::InvalidRequest("the citizen's account is not active".into()));
                }
                if keys == 0 {
                    return Err(Error::InvalidRequest(
                        "the citizen has no passkey, and signing needs one; ask them to add a passkey on their account page".into(),
                    ));
                }
                let id = random_token();
                let now = this.inner.clock.now();
                let code = identification_code(&id, &hash);
                diesel::insert_into(signing_requests::table)
                    .values((
                        signing_requests::id.eq(&id),
                        signing_requests::client_id.eq(&client.id),
                        signing_requests::citizen_id.eq(&citizen_id),
                        signing_requests::subject.eq(&new.subject),
                        signing_requests::hash_alg.eq(alg.name()),
                        signing_requests::document_hash.eq(URL_SAFE_NO_PAD.encode(&hash)),
                        signing_requests::document_name.eq(&name),
                        signing_requests::description.eq(&new.description),
                        signing_requests::return_uri.eq(&new.return_uri),
                        signing_requests::callback_uri.eq(&new.callback_uri),
                        signing_requests::code.eq(&code),
                        signing_requests::state.eq("pending"),
                        signing_requests::created_at.eq(now),
                        signing_requests::expires_at.eq(now + SIGNING_TTL),
                    ))
                    .execute(conn)?;
                ev.push(
                    Event::new("signing.requested", Audited::Success)
                        .client(&client.id)
                        .citizen(&citizen_id)
                        .detail(&id),
                );
                let row = Self::load_request(conn, &id)?.ok_or(Error::NotFound)?;
                this.view(conn, row)
            })
        })
        .await
    }

    /// The approval page's view of a pending request; a clear refusal for any other state.
    pub async fn signing_request(&self, id: String) -> Result<SigningRequestView> {
        let this = self.clone();
        blocking(move || {
            this.inner.db.with(|conn| {
                let row = Self::load_request(conn, &id)?.ok_or_else(|| {
                    Error::InvalidRequest("there is no such signing request".into())
                })?;
                let view = this.view(conn, row)?;
                if view.state != "pending" {
                    return Err(gone(&view.state));
                }
                Ok(view)
            })
        })
        .await
    }

    /// Refuses a citizen whose account is not active (suspended, closed, or waiting for
    /// activation after recovery): they cannot sign.
    fn require_active(conn: &mut DbConnection, citizen_id: &str) -> Result<()> {
        let active: i64 = citizens::table
            .find(citizen_id)
            .filter(citizens::status.eq("active"))
            .count()
            .get_result(conn)?;
        if active == 0 {
            return Err(Error::InvalidRequest(
                "this account is not active, so it cannot sign; contact the service desk".into(),
            ));
        }
        Ok(())
    }

    /// Begins the passkey approval of a request: an assertion over a challenge derived from
    /// the request and the hash, by one of the request's citizen's passkeys.
    pub async fn begin_signing_approval(&self, id: String) -> Result<Ceremony> {
        let this = self.clone();
        blocking(move || {
            this.inner.db.tx(|conn| {
                let row = Self::load_request(conn, &id)?.ok_or_else(|| {
                    Error::InvalidRequest("there is no such signing request".into())
                })?;
                let view = this.view(conn, row.clone())?;
                if view.state != "pending" {
                    return Err(gone(&view.state));
                }
                Self::require_active(conn, &row.2)?;
                let keys = this.passkeys_of(conn, &row.2)?;
                if keys.is_empty() {
                    return Err(Error::InvalidRequest(
                        "you have no passkey to sign with".into(),
                    ));
                }
                let (rcr, state) = this
                    .webauthn()
                    .start_passkey_authentication(&keys)
                    .map_err(Error::internal)?;
                let hash = URL_SAFE_NO_PAD.decode(&row.5).map_err(Error::internal)?;
                let challenge = b64(&approval_challenge(&row.0, &row.4, &hash));
                // The challenge webauthn-rs drew is replaced, in the options and in the
                // stored state alike, by the one derived from this document.
                let mut options = serde_json::to_value(&rcr).map_err(Error::internal)?;
                options["publicKey"]["challenge"] = challenge.clone().into();
                let state: &PasskeyAuthentication = &state;
                let mut state = serde_json::to_value(state).map_err(Error::internal)?;
                state["ast"]["challenge"] = challenge.into();
                this.store_signing_ceremony(conn, &row.0, &row.2, state.to_string(), options)
            })
        })
        .await
    }

    /// Approves a request with the passkey's answer: checks it against the derived
    /// challenge, signs the hash with the citizen's key, and records the approval. Returns
    /// where the citizen goes next.
    pub async fn approve_signing(
        &self,
        id: String,
        handle: String,
        answer: &str,
        source: &str,
    ) -> Result<SigningDecision> {
        let cred: PublicKeyCredential = serde_json::from_str(answer).map_err(|_| {
            Error::InvalidRequest("the answer from the passkey was malformed".into())
        })?;
        let taken = self.take_ceremony(handle).await?;
        if taken.purpose != format!("sign:{id}") {
            return Err(Error::InvalidRequest(
                "this approval does not belong to this signing request".into(),
            ));
        }
        let this = self.clone();
        let source = source.to_owned();
        let answer_json = answer.to_owned();
        self.run(move |_, ev| {
            let now = this.inner.clock.now();
            let (row, passkey_row) = this.inner.db.with(|conn| {
                let row = Self::load_request(conn, &id)?.ok_or(Error::NotFound)?;
                let cred_id = b64(cred.get_credential_id());
                let stored: Option<(String, String)> = passkeys::table
                    .find(&cred_id)
                    .select((passkeys::citizen_id, passkeys::credential))
                    .get_result(conn)
                    .optional()?;
                Ok((row, stored))
            })?;
            if row.10 != "pending" || row.11 <= now {
                return Err(gone(if row.10 == "pending" {
                    "expired"
                } else {
                    &row.10
                }));
            }
            let Some((owner, stored)) = passkey_row.filter(|(o, _)| *o == row.2) else {
                return Err(Error::InvalidRequest(
                    "this passkey does not belong to the citizen asked to sign".into(),
                ));
            };
            let state: PasskeyAuthentication =
                serde_json::from_str(&taken.state).map_err(Error::internal)?;
            let mut passkey: Passkey = serde_json::from_str(&stored).map_err(Error::internal)?;
            let result = this
                .webauthn()
                .finish_passkey_authentication(&cred, &state)
                .map_err(|e| match e {
                    WebauthnError::CredentialPossibleCompromise => Error::PasskeyCloned,
                    other => {
                        tracing::info!(error = %other, "signing approval refused");
                        Error::InvalidRequest(
                            "the passkey's approval was not accepted for this document".into(),
                        )
                    }
                })?;
            if !result.user_verified() {
                return Err(Error::InvalidRequest(
                    "the passkey did not verify you".into(),
                ));
            }
            passkey.update_credential(&result);
            let alg = HashAlg::parse(&row.4).map_err(Error::internal)?;
            let hash = URL_SAFE_NO_PAD.decode(&row.5).map_err(Error::internal)?;
            let ca = this.signing_ca()?;
            let key = this.citizen_signing_key(&owner)?;
            let name = this.released_name(&row.1, &owner)?;
            let cert = signing_cms::issue_certificate(&ca, &key, &row.3, name.as_deref(), now)
                .map_err(Error::internal)?;
            let cms = signing_cms::sign_detached(alg, &hash, &key, &cert, &ca.cert_der, now)
                .map_err(Error::internal)?;
            let evidence = json!({
                "credential_id": b64(cred.get_credential_id()),
                "assertion": serde_json::from_str::<Value>(&answer_json).unwrap_or(Value::Null),
                "challenge": b64(&approval_challenge(&row.0, &row.4, &hash)),
                "public_key": super::evidence::passkey_jwk(passkey.get_public_key()),
                "rp_id": this.inner.config.webauthn.rp_id,
                "origin": this.inner.config.webauthn.origin,
            });
            let detail = approval_detail(&row.0, &cms);
            let audit_from = this.inner.audit.size()? as i64;
            let stored_key = serde_json::to_string(&passkey).map_err(Error::internal)?;
            this.audited_tx(ev, |conn, ev| {
                // Checked again in the transaction that signs: an account suspended or
                // closed after the page opened signs nothing.
                Self::require_active(conn, &owner)?;
                // Claiming the request is the single-use check: of two approvals racing,
                // one signs and the other is refused.
                let claimed = diesel::update(signing_requests::table.find(&row.0))
                    .filter(signing_requests::state.eq("pending"))
                    .set((
                        signing_requests::state.eq("signed"),
                        signing_requests::decided_at.eq(now),
                        signing_requests::signature.eq(STANDARD.encode(&cms)),
                        signing_requests::certificate.eq(STANDARD.encode(&cert)),
                        signing_requests::evidence.eq(evidence.to_string()),
                        signing_requests::audit_from.eq(audit_from),
                    ))
                    .execute(conn)?;
                if claimed != 1 {
                    return Err(gone("signed"));
                }
                diesel::update(passkeys::table.find(b64(cred.get_credential_id())))
                    .set((
                        passkeys::credential.eq(&stored_key),
                        passkeys::last_used_at.eq(now),
                    ))
                    .execute(conn)?;
                ev.push(
                    Event::new("signing.approved", Audited::Success)
                        .client(&row.1)
                        .citizen(&owner)
                        .source(&source)
                        .detail(detail),
                );
                Ok(SigningDecision {
                    return_uri: row.8.clone(),
                    callback_uri: Self::callback_of(conn, &row.0)?,
                })
            })
        })
        .await
    }

    fn callback_of(conn: &mut DbConnection, id: &str) -> Result<Option<String>> {
        Ok(signing_requests::table
            .find(id)
            .select(signing_requests::callback_uri)
            .get_result::<Option<String>>(conn)?)
    }

    /// The citizen rejects a request.
    pub async fn reject_signing(&self, id: String) -> Result<SigningDecision> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let now = this.inner.clock.now();
                let row = Self::load_request(conn, &id)?.ok_or(Error::NotFound)?;
                let n = diesel::update(signing_requests::table.find(&id))
                    .filter(signing_requests::state.eq("pending"))
                    .filter(signing_requests::expires_at.gt(now))
                    .set((
                        signing_requests::state.eq("rejected"),
                        signing_requests::decided_at.eq(now),
                    ))
                    .execute(conn)?;
                if n != 1 {
                    return Err(gone(if row.10 == "pending" {
                        "expired"
                    } else {
                        &row.10
                    }));
                }
                ev.push(
                    Event::new("signing.rejected", Audited::Success)
                        .client(&row.1)
                        .citizen(&row.2)
                        .detail(&id),
                );
                Ok(SigningDecision {
                    return_uri: row.8,
                    callback_uri: Self::callback_of(conn, &id)?,
                })
            })
        })
        .await
    }

    /// The state and, once signed, the result of a request, for the client that made it
    /// only (any other client is told there is no such request). The result carries the
    /// CMS signature, the certificate chain, the approval evidence, and the audit-log entry
    /// of the approval with its inclusion proof against a signed checkpoint.
    pub async fn signing_result(&self, client_id: String, id: String) -> Result<SigningResult> {
        let this = self.clone();
        blocking(move || {
            type ResultRow = (
                String,
                String,
                i64,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<i64>,
            );
            let row: Option<ResultRow> = this.inner.db.with(|conn| {
                Ok(signing_requests::table
                    .find(&id)
                    .filter(signing_requests::client_id.eq(&client_id))
                    .select((
                        signing_requests::state,
                        signing_requests::hash_alg,
                        signing_requests::expires_at,
                        signing_requests::signature,
                        signing_requests::certificate,
                        signing_requests::evidence,
                        signing_requests::audit_from,
                    ))
                    .get_result(conn)
                    .optional()?)
            })?;
            let (state, hash_alg, expires_at, sig, cert, evidence, audit_from) =
                row.ok_or(Error::NotFound)?;
            let now = this.inner.clock.now();
            if state == "pending" {
                let state = if expires_at <= now {
                    "expired"
                } else {
                    "pending"
                };
                return Ok(SigningResult {
                    state: state.into(),
                    signed: None,
                });
            }
            if state != "signed" {
                return Ok(SigningResult {
                    state,
                    signed: None,
                });
            }
            let (sig, cert) = (sig.unwrap_or_default(), cert.unwrap_or_default());
            let ca = this.signing_ca()?;
            let audit = this.approval_proof(&id, audit_from.unwrap_or(0) as u64)?;
            Ok(SigningResult {
                state,
                signed: Some(json!({
                    "hash_alg": hash_alg,
                    "signature": sig,
                    "certificate": cert,
                    "ca_certificate": STANDARD.encode(&ca.cert_der),
                    "evidence": evidence
                        .and_then(|e| serde_json::from_str::<Value>(&e).ok())
                        .unwrap_or(Value::Null),
                    "audit": audit,
                })),
            })
        })
        .await
    }

    /// The audit entry of a request's approval, with its inclusion proof against a signed
    /// checkpoint (signing one now if the latest does not cover it yet).
    fn approval_proof(&self, id: &str, from: u64) -> Result<Value> {
        let log = &self.inner.audit;
        log.flush()?;
        let prefix = format!("{}:", hex_sha256(id.as_bytes()));
        let mut start = from;
        let found = loop {
            let size = log.size()?;
            if start >= size {
                break None;
            }
            let page = log.entries(start, size, 1000)?;
            let Some(last) = page.last().map(|r| r.index) else {
                break None;
            };
            if let Some(row) = page.into_iter().find(|r| {
                crate::audit::Entry::decode(&r.entry)
                    .is_some_and(|e| e.event == "signing.approved" && e.detail.starts_with(&prefix))
            }) {
                break Some(row);
            }
            start = last + 1;
        };
        let row =
            found.ok_or_else(|| Error::internal("the approval is missing from the audit log"))?;
        let covered = |note: &Option<String>| {
            note.as_deref()
                .and_then(|n| n.lines().nth(1))
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|s| *s > row.index)
        };
        let mut note = log.latest_checkpoint()?;
        if covered(&note).is_none() {
            log.checkpoint()?;
            note = log.latest_checkpoint()?;
        }
        let size = covered(&note)
            .ok_or_else(|| Error::internal("no checkpoint covers the approval yet"))?;
        let proof = log.inclusion_proof(row.index, size)?;
        Ok(json!({
            "index": row.index,
            "entry": row.entry,
            "checkpoint": note,
            "proof": proof.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>(),
        }))
    }

    /// The name an e-service may see in the certificate: only with the citizen's consent to
    /// `profile` for that client.
    fn released_name(&self, client_id: &str, citizen_id: &str) -> Result<Option<String>> {
        self.inner.db.with(|conn| {
            let scopes: Option<String> = consents::table
                .find((citizen_id, client_id))
                .select(consents::scopes)
                .get_result(conn)
                .optional()?;
            if !scopes.is_some_and(|s| s.split(' ').any(|x| x == "profile")) {
                return Ok(None);
            }
            Ok(citizens::table
                .find(citizen_id)
                .select(citizens::name_en)
                .get_result(conn)
                .optional()?)
        })
    }

    /// The service's signing CA, made on first use. Two replicas racing to make it: the
    /// insert of one wins and the other reads it.
    pub fn signing_ca(&self) -> Result<CaMaterial> {
        let kek = &self.inner.kek;
        let read = |conn: &mut DbConnection| -> Result<Option<CaMaterial>> {
            let row: Option<(String, String)> = signing_ca::table
                .find("current")
                .select((signing_ca::certificate, signing_ca::private_key))
                .get_result(conn)
                .optional()?;
            row.map(|(cert, key)| {
                Ok(CaMaterial {
                    cert_der: STANDARD.decode(cert).map_err(Error::internal)?,
                    key_pkcs8: kek.open("signing-ca", &key)?,
                })
            })
            .transpose()
        };
        if let Some(ca) = self.inner.db.with(read)? {
            return Ok(ca);
        }
        let now = self.inner.clock.now();
        let ca =
            signing_cms::new_ca("Identity Service Signing CA", now).map_err(Error::internal)?;
        let inserted = self.inner.db.with(|conn| {
            Ok(diesel::insert_into(signing_ca::table)
                .values((
                    signing_ca::id.eq("current"),
                    signing_ca::certificate.eq(STANDARD.encode(&ca.cert_der)),
                    signing_ca::private_key.eq(kek.seal("signing-ca", &ca.key_pkcs8)),
                    signing_ca::created_at.eq(now),
                ))
                .execute(conn))
        })?;
        match inserted {
            Ok(_) => Ok(ca),
            Err(_) => self
                .inner
                .db
                .with(read)?
                .ok_or_else(|| Error::internal("no signing CA")),
        }
    }

    fn citizen_signing_key(&self, citizen_id: &str) -> Result<Vec<u8>> {
        let kek = &self.inner.kek;
        let context = format!("citizen-signing-key:{citizen_id}");
        self.inner.db.with(|conn| {
            let sealed: Option<String> = citizen_signing_keys::table
                .find(citizen_id)
                .select(citizen_signing_keys::private_key)
                .get_result(conn)
                .optional()?;
            if let Some(s) = sealed {
                return kek.open(&context, &s);
            }
            let key = signing_cms::new_signing_key().map_err(Error::internal)?;
            diesel::insert_into(citizen_signing_keys::table)
                .values((
                    citizen_signing_keys::citizen_id.eq(citizen_id),
                    citizen_signing_keys::private_key.eq(kek.seal(&context, &key)),
                    citizen_signing_keys::created_at.eq(self.inner.clock.now()),
                ))
                .execute(conn)?;
            Ok(key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_challenges_depend_on_request_and_hash() {
        let h = [7u8; 32];
        let code = identification_code("r1", &h);
        assert_eq!(code.len(), 4);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(code, identification_code("r1", &h));
        assert_ne!(
            approval_challenge("r1", "SHA-256", &h),
            approval_challenge("r2", "SHA-256", &h)
        );
        assert_ne!(
            approval_challenge("r1", "SHA-256", &h),
            approval_challenge("r1", "SHA-256", &[8u8; 32])
        );
    }
}

/// The worked examples of docs/signing.md, checked against the code.
#[cfg(test)]
#[path = "signing_spec_tests.rs"]
mod spec_tests;
