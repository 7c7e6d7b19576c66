//! Passkeys: WebAuthn registration, the ceremonies' storage, and the
//! citizen's management of their passkeys; login is in `passkey_login.rs`.
//!
//! Ceremony state lives in `webauthn_ceremonies`, keyed by a hash of a random handle that
//! the browser carries, so any replica can finish a ceremony another began. A ceremony is
//! taken (deleted, in its own transaction) before the browser's answer is checked: a
//! failed or replayed answer can never be tried again against the same challenge.

use diesel::prelude::*;
use serde_json::Value;
use std::time::Duration;
use webauthn_rs::prelude::{
    Passkey, PasskeyRegistration, RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use super::{blocking, Provider, SessionToken};
use crate::audit::{Event, Outcome as Audited};
use crate::crypto::{b64, random_token, token_hash};
use crate::error::{Error, Result};
use crate::schema::*;
use crate::storage::DbConnection;

/// How long a ceremony may take, from the options to the answer.
pub const CEREMONY_TTL: i64 = 300;

/// How recent a login must be to add a passkey: a session left open on a shared computer
/// must not be enough to plant someone else's key in the account.
pub const REGISTRATION_FRESHNESS: i64 = 15 * 60;

/// The longest passkey name a citizen may choose.
const MAX_NAME: usize = 64;

/// Where WebAuthn runs: checked against the public URL when the provider starts.
#[derive(Clone, Debug)]
pub struct WebauthnConfig {
    /// The relying-party id: the public URL's host or a registrable suffix of it.
    pub rp_id: String,
    /// The origin the browser reports: the public URL's scheme, host and port.
    pub origin: String,
    /// The name authenticators show.
    pub rp_name: String,
}

impl WebauthnConfig {
    /// The defaults for an issuer: its host as the relying-party id, its origin.
    pub fn for_issuer(issuer: &str) -> Self {
        let url = Url::parse(issuer).ok();
        WebauthnConfig {
            rp_id: url
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default(),
            origin: url
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default(),
            rp_name: "Identity Service".to_owned(),
        }
    }

    /// Checks the configuration against the public URL, as the provider will at start.
    pub fn check(&self, issuer: &str) -> Result<()> {
        self.build(issuer).map(|_| ())
    }

    /// Builds the WebAuthn relying party, refusing a configuration that browsers would.
    pub(crate) fn build(&self, issuer: &str) -> Result<Webauthn> {
        let bad = |why: &str| Error::InvalidRequest(format!("webauthn: {why}"));
        let origin = Url::parse(&self.origin).map_err(|_| bad("the origin is not a URL"))?;
        let public = Url::parse(issuer).map_err(|_| bad("the public URL is not a URL"))?;
        if origin.origin() != public.origin() {
            return Err(bad(
                "the origin must be the public URL's scheme, host and port",
            ));
        }
        if origin.domain().is_none() {
            return Err(bad(
                "passkeys need a host name, not an IP address, in the public URL (use localhost)",
            ));
        }
        WebauthnBuilder::new(&self.rp_id, &origin)
            .map_err(|_| {
                bad("the relying-party id must be the public URL's host or a suffix of it")
            })?
            .rp_name(&self.rp_name)
            .timeout(Duration::from_secs(CEREMONY_TTL as u64 - 60))
            .build()
            .map_err(|_| bad("cannot build the relying party"))
    }
}

/// A ceremony begun: the handle the browser sends back with its answer, and the options
/// to pass to `navigator.credentials`.
#[derive(Clone, Debug)]
pub struct Ceremony {
    /// Random, single-use; only its hash is stored.
    pub handle: String,
    /// `{ "publicKey": ... }` (and `mediation` for conditional UI), JSON for the browser.
    pub options: Value,
}

/// A passkey as the account page lists it.
#[derive(Clone, Debug)]
pub struct PasskeyView {
    /// The credential id, base64url.
    pub id: String,
    /// The citizen's name for it.
    pub name: String,
    /// When it was registered.
    pub created_at: i64,
    /// When it last logged in.
    pub last_used_at: Option<i64>,
    /// Whether its provider may copy it to other devices (synced) or it is bound to one.
    pub synced: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Register,
    Login,
    Discover,
}

impl Purpose {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::Login => "login",
            Purpose::Discover => "discover",
        }
    }
}

/// A taken ceremony.
pub(super) struct Taken {
    pub(super) purpose: String,
    pub(super) citizen_id: Option<String>,
    pub(super) state: String,
}

pub(super) fn expired() -> Error {
    Error::InvalidRequest("this passkey request has expired or was already used; try again".into())
}

pub(super) fn refused() -> Error {
    Error::InvalidRequest(
        "the passkey was not accepted; try again or use another way to log in".into(),
    )
}

pub(super) fn malformed() -> Error {
    Error::InvalidRequest("the answer from the passkey was malformed".into())
}

pub(super) fn internal_json(e: serde_json::Error) -> Error {
    Error::internal(format!("webauthn state: {e}"))
}

/// `amr` of a passkey login (RFC 8176): the key (hardware-bound or synced by its
/// provider), the user verification, and together more than one factor.
pub(super) fn passkey_amr(synced: bool) -> &'static str {
    if synced {
        "swk user mfa"
    } else {
        "hwk user mfa"
    }
}

/// Checks a passkey name: trimmed, 1 to 64 characters, no control characters.
fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(format!(
            "give the passkey a name of 1 to {MAX_NAME} characters"
        )));
    }
    Ok(name.to_owned())
}

impl Provider {
    pub(super) fn webauthn(&self) -> &Webauthn {
        &self.inner.webauthn
    }

    pub(super) fn store_ceremony(
        &self,
        conn: &mut DbConnection,
        purpose: Purpose,
        citizen_id: Option<&str>,
        state: String,
        options: Value,
    ) -> Result<Ceremony> {
        self.store_ceremony_as(conn, purpose.as_str(), citizen_id, state, options)
    }

    /// A signing approval's ceremony: its purpose names the request, so an answer cannot
    /// be carried over to another one.
    pub(super) fn store_signing_ceremony(
        &self,
        conn: &mut DbConnection,
        request_id: &str,
        citizen_id: &str,
        state: String,
        options: Value,
    ) -> Result<Ceremony> {
        self.store_ceremony_as(
            conn,
            &format!("sign:{request_id}"),
            Some(citizen_id),
            state,
            options,
        )
    }

    fn store_ceremony_as(
        &self,
        conn: &mut DbConnection,
        purpose: &str,
        citizen_id: Option<&str>,
        state: String,
        options: Value,
    ) -> Result<Ceremony> {
        let handle = random_token();
        diesel::insert_into(webauthn_ceremonies::table)
            .values((
                webauthn_ceremonies::handle_hash.eq(token_hash(&handle)),
                webauthn_ceremonies::purpose.eq(purpose),
                webauthn_ceremonies::citizen_id.eq(citizen_id),
                webauthn_ceremonies::state.eq(state),
                webauthn_ceremonies::expires_at.eq(self.inner.clock.now() + CEREMONY_TTL),
            ))
            .execute(conn)?;
        Ok(Ceremony { handle, options })
    }

    /// Takes a ceremony: deleted in its own transaction, whatever the answer turns out to be.
    pub(super) async fn take_ceremony(&self, handle: String) -> Result<Taken> {
        if handle.is_empty() || handle.len() > 64 {
            return Err(expired());
        }
        let this = self.clone();
        blocking(move || {
            let now = this.inner.clock.now();
            this.inner.db.tx(|conn| {
                let hash = token_hash(&handle);
                let row: Option<(String, Option<String>, String, i64)> = webauthn_ceremonies::table
                    .find(&hash)
                    .select((
                        webauthn_ceremonies::purpose,
                        webauthn_ceremonies::citizen_id,
                        webauthn_ceremonies::state,
                        webauthn_ceremonies::expires_at,
                    ))
                    .get_result(conn)
                    .optional()?;
                // The delete decides: of two answers racing for one ceremony, one wins.
                let n = diesel::delete(webauthn_ceremonies::table.find(&hash)).execute(conn)?;
                match row {
                    Some((purpose, citizen_id, state, expires_at))
                        if n == 1 && expires_at > now =>
                    {
                        Ok(Taken {
                            purpose,
                            citizen_id,
                            state,
                        })
                    }
                    _ => Err(expired()),
                }
            })
        })
        .await
    }

    // ----- registration -----

    /// Begins registering a passkey for the citizen of a fresh session. Passkeys the citizen
    /// already has are excluded, so one authenticator is not registered twice.
    pub async fn begin_passkey_registration(&self, session: SessionToken) -> Result<Ceremony> {
        let this = self.clone();
        blocking(move || {
            this.inner.db.tx(|conn| {
                let s = this
                    .session_blocking(conn, Some(&session))?
                    .ok_or_else(|| Error::InvalidRequest("you are not logged in".into()))?;
                if this.inner.clock.now() - s.auth_time > REGISTRATION_FRESHNESS {
                    return Err(Error::InvalidRequest(
                        "for your safety, log in again before adding a passkey".into(),
                    ));
                }
                let (username, display, handle): (String, String, Option<String>) = citizens::table
                    .find(&s.citizen_id)
                    .select((citizens::username, citizens::name_en, citizens::webauthn_id))
                    .get_result(conn)?;
                let user_id = match handle.and_then(|h| Uuid::parse_str(&h).ok()) {
                    Some(u) => u,
                    None => {
                        let u = Uuid::new_v4();
                        diesel::update(citizens::table.find(&s.citizen_id))
                            .set(citizens::webauthn_id.eq(u.to_string()))
                            .execute(conn)?;
                        u
                    }
                };
                let existing = this.passkeys_of(conn, &s.citizen_id)?;
                let exclude = existing.iter().map(|p| p.cred_id().clone()).collect();
                let (ccr, state) = this
                    .webauthn()
                    .start_passkey_registration(user_id, &username, &display, Some(exclude))
                    .map_err(Error::internal)?;
                let mut options = serde_json::to_value(&ccr).map_err(internal_json)?;
                // A discoverable credential lets the citizen log in without typing a
                // username (and lets the browser offer it in autofill); preferred rather than
                // required, so security keys without storage still work username-first.
                if let Some(sel) = options.pointer_mut("/publicKey/authenticatorSelection") {
                    sel["residentKey"] = "preferred".into();
                }
                let state: &PasskeyRegistration = &state;
                let state = serde_json::to_string(state).map_err(internal_json)?;
                this.store_ceremony(conn, Purpose::Register, Some(&s.citizen_id), state, options)
            })
        })
        .await
    }

    /// Finishes a registration begun by [`Provider::begin_passkey_registration`] in the same
    /// session. Nothing is stored unless the answer verifies and its credential is new.
    pub async fn finish_passkey_registration(
        &self,
        session: SessionToken,
        handle: String,
        answer: &str,
        name: &str,
    ) -> Result<()> {
        let name = check_name(name)?;
        let reg: RegisterPublicKeyCredential =
            serde_json::from_str(answer).map_err(|_| malformed())?;
        let citizen = self
            .session(Some(session))
            .await?
            .ok_or_else(|| Error::InvalidRequest("you are not logged in".into()))?
            .citizen_id;
        let taken = self.take_ceremony(handle).await?;
        if taken.purpose != Purpose::Register.as_str()
            || taken.citizen_id.as_ref() != Some(&citizen)
        {
            return Err(expired());
        }
        let state: PasskeyRegistration =
            serde_json::from_str(&taken.state).map_err(internal_json)?;
        let passkey = self
            .webauthn()
            .finish_passkey_registration(&reg, &state)
            .map_err(|e| {
                tracing::info!(error = %e, "passkey registration refused");
                refused()
            })?;
        let cred_id = b64(passkey.cred_id().as_ref());
        let stored = serde_json::to_string(&passkey).map_err(internal_json)?;
        // webauthn-rs does not expose the backup-eligible flag of a new passkey; the
        // serialised credential carries it.
        let synced = serde_json::from_str::<Value>(&stored)
            .ok()
            .and_then(|v| v.pointer("/cred/backup_eligible").and_then(Value::as_bool))
            .unwrap_or(false);
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let owner: Option<String> = passkeys::table
                    .find(&cred_id)
                    .select(passkeys::citizen_id)
                    .get_result(conn)
                    .optional()?;
                if owner.is_some() {
                    return Err(Error::InvalidRequest(
                        "this passkey is already registered to an account".into(),
                    ));
                }
                let now = this.inner.clock.now();
                diesel::insert_into(passkeys::table)
                    .values((
                        passkeys::cred_id.eq(&cred_id),
                        passkeys::citizen_id.eq(&citizen),
                        passkeys::name.eq(&name),
                        passkeys::credential.eq(&stored),
                        passkeys::synced.eq(i32::from(synced)),
                        passkeys::created_at.eq(now),
                    ))
                    .execute(conn)?;
                ev.push(
                    Event::new("passkey.added", Audited::Success)
                        .citizen(&citizen)
                        .detail(if synced { "synced" } else { "device-bound" }),
                );
                Ok(())
            })
        })
        .await
    }

    pub(super) fn passkeys_of(
        &self,
        conn: &mut DbConnection,
        citizen_id: &str,
    ) -> Result<Vec<Passkey>> {
        let rows: Vec<String> = passkeys::table
            .filter(passkeys::citizen_id.eq(citizen_id))
            .select(passkeys::credential)
            .load(conn)?;
        rows.iter()
            .map(|r| serde_json::from_str(r).map_err(internal_json))
            .collect()
    }

    // ----- management -----

    /// The passkeys of the session's citizen, oldest first; `None` without a session.
    pub async fn passkeys(
        &self,
        session: Option<SessionToken>,
    ) -> Result<Option<Vec<PasskeyView>>> {
        let this = self.clone();
        blocking(move || {
            this.inner.db.with(|conn| {
                let Some(s) = this.session_blocking(conn, session.as_ref())? else {
                    return Ok(None);
                };
                let rows: Vec<(String, String, i64, Option<i64>, i32)> = passkeys::table
                    .filter(passkeys::citizen_id.eq(&s.citizen_id))
                    .order((passkeys::created_at, passkeys::cred_id))
                    .select((
                        passkeys::cred_id,
                        passkeys::name,
                        passkeys::created_at,
                        passkeys::last_used_at,
                        passkeys::synced,
                    ))
                    .load(conn)?;
                Ok(Some(
                    rows.into_iter()
                        .map(|(id, name, created_at, last_used_at, synced)| PasskeyView {
                            id,
                            name,
                            created_at,
                            last_used_at,
                            synced: synced != 0,
                        })
                        .collect(),
                ))
            })
        })
        .await
    }

    /// Renames one of the session citizen's passkeys.
    pub async fn rename_passkey(
        &self,
        session: SessionToken,
        id: String,
        name: &str,
    ) -> Result<()> {
        let name = check_name(name)?;
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let s = this
                    .session_blocking(conn, Some(&session))?
                    .ok_or_else(|| Error::InvalidRequest("you are not logged in".into()))?;
                let n = diesel::update(
                    passkeys::table
                        .find(&id)
                        .filter(passkeys::citizen_id.eq(&s.citizen_id)),
                )
                .set(passkeys::name.eq(&name))
                .execute(conn)?;
                if n == 0 {
                    return Err(Error::NotFound);
                }
                ev.push(Event::new("passkey.renamed", Audited::Success).citizen(&s.citizen_id));
                Ok(())
            })
        })
        .await
    }

    /// Removes one of the session citizen's passkeys, unless it is their last way to log in.
    pub async fn remove_passkey(&self, session: SessionToken, id: String) -> Result<()> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let s = this
                    .session_blocking(conn, Some(&session))?
                    .ok_or_else(|| Error::InvalidRequest("you are not logged in".into()))?;
                let mine = passkeys::table
                    .filter(passkeys::citizen_id.eq(&s.citizen_id))
                    .select(passkeys::cred_id);
                let keys: Vec<String> = mine.load(conn)?;
                if !keys.contains(&id) {
                    return Err(Error::NotFound);
                }
                let has_password: i64 = password_credentials::table
                    .filter(password_credentials::citizen_id.eq(&s.citizen_id))
                    .count()
                    .get_result(conn)?;
                if keys.len() == 1 && has_password == 0 {
                    return Err(Error::InvalidRequest(
                        "this is your only way to log in; add another passkey before removing it"
                            .into(),
                    ));
                }
                diesel::delete(passkeys::table.find(&id)).execute(conn)?;
                let now = this.inner.clock.now();
                Self::end_other_access(
                    conn,
                    &s.citizen_id,
                    Some(&session),
                    now,
                    "passkey-removed",
                )?;
                ev.push(Event::new("passkey.removed", Audited::Success).citizen(&s.citizen_id));
                Ok(())
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("  Phone ").unwrap(), "Phone");
        assert!(check_name("").is_err());
        assert!(check_name("a\u{0}b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name(&"鑰".repeat(64)).is_ok());
    }

    #[test]
    fn relying_party_matches_the_public_url() {
        let ok = WebauthnConfig::for_issuer("https://id.gov.example");
        assert!(ok.build("https://id.gov.example").is_ok());
        let suffix = WebauthnConfig {
            rp_id: "gov.example".into(),
            ..ok.clone()
        };
        assert!(suffix.build("https://id.gov.example").is_ok());
        let foreign = WebauthnConfig {
            rp_id: "evil.example".into(),
            ..ok.clone()
        };
        assert!(foreign.build("https://id.gov.example").is_err());
        let other_origin = WebauthnConfig {
            origin: "https://other.gov.example".into(),
            ..ok
        };
        assert!(other_origin.build("https://id.gov.example").is_err());
        let ip = WebauthnConfig::for_issuer("http://127.0.0.1:8080");
        assert!(ip.build("http://127.0.0.1:8080").is_err());
    }
}
