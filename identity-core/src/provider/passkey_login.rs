//! Passkey login: username-first (the citizen's credentials, padded with stand-ins so the
//! answer tells nothing about the account) and discoverable, and its finish, which opens a
//! session at the passkey level.

use diesel::prelude::*;
use serde_json::Value;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PublicKeyCredential, WebauthnError,
};

use super::passkeys::{expired, internal_json, malformed, passkey_amr, refused, Ceremony, Purpose};
use super::{blocking, Provider, SessionToken};
use crate::audit::{Event, Outcome as Audited};
use crate::crypto::b64;
use crate::error::{Error, Result};
use crate::model::ACR_PASSKEY;
use crate::schema::*;

/// How many credentials a username-first passkey start lists, its own and stand-ins.
const LISTED: usize = 4;
/// Credential id lengths (bytes) of common authenticators, which the stand-ins take.
const STAND_IN_LENGTHS: [usize; 3] = [16, 32, 64];

impl Provider {
    /// Begins a passkey login from `source` (at most `per_address_limit` starts per window
    /// and address: each writes a row). With a username that has passkeys, the browser is
    /// told which credentials to use; with a username that has none or is unknown, it is
    /// told the same way of credentials that do not exist (stand-ins derived from the
    /// username by a keyed hash, so the same each time), so the answer never tells whether
    /// the account exists or has a passkey. Without a username the citizen picks a
    /// discoverable passkey, which is also what the username field's autofill offers.
    pub async fn begin_passkey_login(
        &self,
        username: Option<String>,
        source: &str,
    ) -> Result<Ceremony> {
        let this = self.clone();
        let address = self.ceremony_key(source);
        blocking(move || {
            let now = this.inner.clock.now();
            // Counted in its own transaction, so that a refused start stays counted.
            this.inner.db.tx(|conn| {
                this.inner
                    .config
                    .throttle
                    .count_ceremony(conn, &address, now)
            })?;
            this.inner.db.tx(|conn| {
                let username = username
                    .map(|u| super::normalize_username(&u))
                    .filter(|u| !u.is_empty() && u.len() <= 64);
                let citizen: Option<String> = match &username {
                    None => None,
                    Some(u) => citizens::table
                        .filter(citizens::username.eq(u))
                        .filter(citizens::status.eq("active"))
                        .select(citizens::id)
                        .get_result(conn)
                        .optional()?,
                };
                let keys = match &citizen {
                    Some(c) => this.passkeys_of(conn, c)?,
                    None => Vec::new(),
                };
                if let (Some(c), false) = (&citizen, keys.is_empty()) {
                    let (rcr, state) = this
                        .webauthn()
                        .start_passkey_authentication(&keys)
                        .map_err(Error::internal)?;
                    let state: &PasskeyAuthentication = &state;
                    let state = serde_json::to_string(state).map_err(internal_json)?;
                    let mut options = serde_json::to_value(&rcr).map_err(internal_json)?;
                    if let (Some(u), Some(list)) = (
                        &username,
                        options["publicKey"]["allowCredentials"].as_array_mut(),
                    ) {
                        // Without transports, as the stand-ins have none: their presence
                        // would tell a real credential from them.
                        for c in list.iter_mut() {
                            if let Some(c) = c.as_object_mut() {
                                c.remove("transports");
                            }
                        }
                        *list = this.listed_credentials(u, std::mem::take(list));
                    }
                    return this.store_ceremony(conn, Purpose::Login, Some(c), state, options);
                }
                let (rcr, state) = this
                    .webauthn()
                    .start_discoverable_authentication()
                    .map_err(Error::internal)?;
                let state: &DiscoverableAuthentication = &state;
                let state = serde_json::to_string(state).map_err(internal_json)?;
                let mut options = serde_json::to_value(&rcr).map_err(internal_json)?;
                if let Some(u) = &username {
                    // Shaped as a named-credential ceremony is (no autofill mediation, no
                    // extensions). No authenticator holds the stand-in, and the ceremony is
                    // stored as a username-first one naming no citizen, so every answer is
                    // refused: answered with the asker's own passkey it must not log them in,
                    // or its success would tell that the username has no passkey.
                    if let Some(o) = options.as_object_mut() {
                        o.remove("mediation");
                    }
                    if let Some(pk) = options["publicKey"].as_object_mut() {
                        pk.remove("extensions");
                        pk.insert(
                            "allowCredentials".into(),
                            Value::Array(this.listed_credentials(u, Vec::new())),
                        );
                    }
                    return this.store_ceremony(conn, Purpose::Login, None, state, options);
                }
                this.store_ceremony(conn, Purpose::Discover, None, state, options)
            })
        })
        .await
    }

    /// The credentials a username-first start lists for `username`: its own (`real`), then
    /// stand-ins up to [`LISTED`], each of a length real authenticators use, all in an
    /// order fixed by a keyed hash. The same username gets the same list each time, and an
    /// account with one passkey, several, none, or no account at all get lists of the same
    /// length, lengths and order, so neither tells who has an account (issue 17). Only a
    /// citizen with more than [`LISTED`] passkeys shows a longer list.
    fn listed_credentials(&self, username: &str, real: Vec<Value>) -> Vec<Value> {
        let key = &self.inner.throttle_key;
        let u = username.as_bytes();
        let mut list = real;
        let mut i: u8 = 0;
        while list.len() < LISTED {
            let mut id = key.bytes(&[b"decoy-credential", u, &[i]]);
            let len = STAND_IN_LENGTHS[usize::from(id[0]) % STAND_IN_LENGTHS.len()];
            id.extend(key.bytes(&[b"decoy-credential-more", u, &[i]]));
            id.truncate(len);
            list.push(serde_json::json!({"type": "public-key", "id": b64(&id)}));
            i += 1;
        }
        list.sort_by_cached_key(|c| {
            let id = c["id"].as_str().unwrap_or_default();
            key.hash(&[b"decoy-order", u, id.as_bytes()])
        });
        list
    }

    /// Finishes a passkey login and opens a session at the passkey level, replacing `old`.
    /// Every outcome is audited; a signature counter that went backwards refuses the login
    /// and is recorded as a possibly cloned authenticator.
    pub async fn finish_passkey_login(
        &self,
        handle: String,
        answer: &str,
        source: &str,
        old: Option<SessionToken>,
        request_id: Option<String>,
    ) -> Result<SessionToken> {
        let mut citizen = None;
        let result = self
            .passkey_login_checked(handle, answer, source, old, request_id, &mut citizen)
            .await;
        // Success was audited in the transaction that opened the session.
        let detail = match &result {
            Ok(_) => return result,
            Err(Error::PasskeyCloned) => "passkey-counter-went-back",
            Err(Error::InvalidRequest(_)) => "passkey-refused",
            Err(_) => return result,
        };
        self.record_login_failure(source, citizen, detail).await?;
        result
    }

    async fn passkey_login_checked(
        &self,
        handle: String,
        answer: &str,
        source: &str,
        old: Option<SessionToken>,
        request_id: Option<String>,
        citizen: &mut Option<String>,
    ) -> Result<SessionToken> {
        let cred: PublicKeyCredential = serde_json::from_str(answer).map_err(|_| malformed())?;
        let taken = self.take_ceremony(handle).await?;
        let cred_id = b64(cred.get_credential_id());
        let this = self.clone();
        let lookup = cred_id.clone();
        let row: Option<(String, String, Option<String>)> = blocking(move || {
            this.inner.db.with(|conn| {
                Ok(passkeys::table
                    .find(&lookup)
                    .inner_join(citizens::table)
                    .filter(citizens::status.eq("active"))
                    .select((
                        passkeys::citizen_id,
                        passkeys::credential,
                        citizens::webauthn_id,
                    ))
                    .get_result(conn)
                    .optional()?)
            })
        })
        .await?;
        let Some((owner, stored, user_handle)) = row else {
            return Err(Error::InvalidRequest(
                "this passkey is not registered with the identity service; log in another way and add it on your account page".into(),
            ));
        };
        *citizen = Some(owner.clone());
        let mut passkey: Passkey = serde_json::from_str(&stored).map_err(internal_json)?;
        let verified = if taken.purpose == Purpose::Login.as_str() {
            // Username-first: the credential must belong to the citizen the ceremony named.
            if taken.citizen_id.as_deref() != Some(owner.as_str()) {
                return Err(refused());
            }
            let state: PasskeyAuthentication =
                serde_json::from_str(&taken.state).map_err(internal_json)?;
            self.webauthn().finish_passkey_authentication(&cred, &state)
        } else if taken.purpose == Purpose::Discover.as_str() {
            // Discoverable: the user handle the authenticator returns must be this
            // credential's account, or a key could log in as someone else's handle.
            let (uuid, _) = self
                .webauthn()
                .identify_discoverable_authentication(&cred)
                .map_err(|_| refused())?;
            if user_handle.as_deref() != Some(uuid.to_string().as_str()) {
                return Err(refused());
            }
            let state: DiscoverableAuthentication =
                serde_json::from_str(&taken.state).map_err(internal_json)?;
            self.webauthn()
                .finish_discoverable_authentication_v2(&cred, state, &passkey)
        } else {
            return Err(expired());
        };
        let result = verified.map_err(|e| match e {
            WebauthnError::CredentialPossibleCompromise => Error::PasskeyCloned,
            other => {
                tracing::info!(error = %other, "passkey assertion refused");
                refused()
            }
        })?;
        if !result.user_verified() {
            return Err(refused());
        }
        let updated = passkey.update_credential(&result).unwrap_or(false);
        let synced = result.backup_eligible();
        let stored = if updated {
            Some(serde_json::to_string(&passkey).map_err(internal_json)?)
        } else {
            None
        };
        let source = source.to_owned();
        // The success event commits with the session it reports, as a password login's
        // does: no session without its audit entry, no entry for a session that rolled back.
        self.run(move |this, ev| {
            let now = this.inner.clock.now();
            this.audited_tx(ev, |conn, ev| {
                let target = passkeys::table.find(&cred_id);
                match &stored {
                    Some(json) => diesel::update(target)
                        .set((
                            passkeys::credential.eq(json),
                            passkeys::last_used_at.eq(now),
                        ))
                        .execute(conn)?,
                    None => diesel::update(target)
                        .set(passkeys::last_used_at.eq(now))
                        .execute(conn)?,
                };
                ev.push(
                    Event::new("login", Audited::Success)
                        .source(&source)
                        .detail("passkey")
                        .citizen(&owner),
                );
                this.open_session(
                    conn,
                    &owner,
                    passkey_amr(synced),
                    ACR_PASSKEY,
                    old.as_ref(),
                    request_id.as_deref(),
                )
            })
        })
        .await
    }
}
