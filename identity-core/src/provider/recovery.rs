//! Recovery of an account: one registration request asks, a second officer, through a
//! credential of their own, approves within a day; only the approval ends every session and
//! grant, removes the password (and, if asked, the passkeys) and issues a new code.

use diesel::prelude::*;

use super::enrolment::{bad, ActivationCode};
use super::Provider;
use crate::audit::{Event, Outcome as Audited};
use crate::crypto::random_name;
use crate::error::{Error, Result};
use crate::schema::*;
use crate::storage::DbConnection;

/// How long a recovery request waits for a second officer's approval.
const RECOVERY_WAITS: i64 = 86_400;

/// The authenticated part of an officer identity `client/officer`: the client (or the
/// command line's operator account); what follows the `/` is the officer that client names.
fn credential_of(officer: &str) -> &str {
    officer
        .split_once('/')
        .map_or(officer, |(client, _)| client)
}

impl Provider {
    /// Asks for a recovery, which a different officer must approve
    /// ([`Provider::approve_recovery`]) before anything happens: a registration credential
    /// alone, stolen or misused, cannot take over an account. Returns the request's id; it
    /// waits a day.
    pub async fn request_recovery(
        &self,
        officer: &str,
        citizen_id: &str,
        remove_passkeys: bool,
    ) -> Result<String> {
        let (officer, citizen_id) = (officer.to_owned(), citizen_id.to_owned());
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let now = this.inner.clock.now();
                Self::recoverable(conn, &citizen_id)?;
                let id = random_name();
                diesel::insert_into(recovery_requests::table)
                    .values((
                        recovery_requests::id.eq(&id),
                        recovery_requests::citizen_id.eq(&citizen_id),
                        recovery_requests::remove_passkeys.eq(i32::from(remove_passkeys)),
                        recovery_requests::requested_by.eq(&officer),
                        recovery_requests::requested_at.eq(now),
                        recovery_requests::expires_at.eq(now + RECOVERY_WAITS),
                    ))
                    .execute(conn)?;
                ev.push(
                    Event::new("citizen.recovery.requested", Audited::Success)
                        .client(&officer)
                        .citizen(&citizen_id)
                        .detail(if remove_passkeys {
                            "passkeys-removed"
                        } else {
                            "passkeys-kept"
                        }),
                );
                Ok(id)
            })
        })
        .await
    }

    /// Approves a recovery asked for by another officer: then every session and grant
    /// ends, the password goes (and the passkeys if asked), and a new one-time code leads
    /// the citizen through activation again. Both officers are in the audit entry.
    pub async fn approve_recovery(
        &self,
        officer: &str,
        request_id: &str,
    ) -> Result<ActivationCode> {
        let (officer, request_id) = (officer.to_owned(), request_id.to_owned());
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let now = this.inner.clock.now();
                let row: Option<(String, i32, String, i64, Option<String>)> =
                    recovery_requests::table
                        .find(&request_id)
                        .select((
                            recovery_requests::citizen_id,
                            recovery_requests::remove_passkeys,
                            recovery_requests::requested_by,
                            recovery_requests::expires_at,
                            recovery_requests::approved_by,
                        ))
                        .get_result(conn)
                        .optional()?;
                let Some((citizen_id, remove, requested_by, expires_at, approved)) = row else {
                    return Err(Error::NotFound);
                };
                if approved.is_some() || expires_at <= now {
                    return Err(bad("this recovery request was already decided or has expired; ask again"));
                }
                // The officer a system names is only its word; the credential is what was
                // proven. So the approval must come through another credential (another
                // registration client, or another operator account on the command line),
                // not merely name another officer.
                if credential_of(&requested_by) == credential_of(&officer) {
                    return Err(bad(
                        "a recovery is approved by a different officer, with a credential of their own, from the one who asked for it",
                    ));
                }
                // Claiming the request is the single-use check.
                let claimed = diesel::update(recovery_requests::table.find(&request_id))
                    .filter(recovery_requests::approved_by.is_null())
                    .set((
                        recovery_requests::approved_by.eq(&officer),
                        recovery_requests::approved_at.eq(now),
                    ))
                    .execute(conn)?;
                if claimed != 1 {
                    return Err(bad("this recovery request was already decided"));
                }
                let remove_passkeys = remove != 0;
                let code = this.recover_in(conn, &officer, &citizen_id, remove_passkeys, now)?;
                ev.push(
                    Event::new("citizen.recovery", Audited::Success)
                        .client(&officer)
                        .citizen(&citizen_id)
                        .detail(format!(
                            "{}+requested-by:{requested_by}",
                            if remove_passkeys {
                                "passkeys-removed"
                            } else {
                                "passkeys-kept"
                            }
                        )),
                );
                Ok(code)
            })
        })
        .await
    }

    /// A citizen a recovery may be asked for: one that exists and is not closed.
    fn recoverable(conn: &mut DbConnection, citizen_id: &str) -> Result<()> {
        let status: Option<String> = citizens::table
            .find(citizen_id)
            .select(citizens::status)
            .get_result(conn)
            .optional()?;
        match status.as_deref() {
            None => Err(Error::NotFound),
            Some("closed") => Err(bad("the account is closed; reopen it first")),
            Some(_) => Ok(()),
        }
    }

    /// Recovery itself, in the approving transaction.
    fn recover_in(
        &self,
        conn: &mut DbConnection,
        officer: &str,
        citizen_id: &str,
        remove_passkeys: bool,
        now: i64,
    ) -> Result<ActivationCode> {
        Self::recoverable(conn, citizen_id)?;
        Self::end_everything(conn, citizen_id, now, "recovery")?;
        // Whoever asked for recovery may be the one who stole the password: it goes, and
        // the account logs in again only after activation with the new code (a suspended
        // account stays suspended).
        diesel::delete(password_credentials::table.find(citizen_id)).execute(conn)?;
        diesel::update(citizens::table.find(citizen_id))
            .filter(citizens::status.eq("active"))
            .set(citizens::status.eq("pending"))
            .execute(conn)?;
        if remove_passkeys {
            diesel::delete(passkeys::table.filter(passkeys::citizen_id.eq(citizen_id)))
                .execute(conn)?;
        }
        self.new_code(conn, citizen_id, "recovery", officer)
    }
}
