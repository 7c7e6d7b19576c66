//! Activation of an enrolled account with its one-time code and the date of birth, the
//! citizen's password, and the citizen's own view of their account's security events.

use diesel::prelude::*;

use super::enrolment::{activation_refused, bad};
use super::{blocking, Provider, SessionToken, REGISTRATION_FRESHNESS};
use crate::audit::{Entry, Event, Outcome as Audited};
use crate::crypto::token_hash;
use crate::error::Result;
use crate::model::ACR_PASSWORD;
use crate::password::Password;
use crate::schema::*;

impl Provider {
    /// Activates (or recovers) an account with a one-time code and the date of birth, and
    /// opens a session in which the citizen adds a passkey or sets a password. Wrong codes
    /// are throttled like passwords: per code and per source address.
    pub async fn activate(
        &self,
        code: &str,
        date_of_birth: &str,
        source: &str,
        old: Option<SessionToken>,
    ) -> Result<SessionToken> {
        if code.is_empty() || code.len() > 64 {
            return Err(activation_refused());
        }
        let hash = token_hash(code);
        let account = self.account_key(&format!("activation:{hash}"));
        let address = self.address_key(source);
        let dob = date_of_birth.trim().to_owned();
        let result = self
            .run(move |this, ev| {
                let now = this.inner.clock.now();
                // The attempt is counted in its own transaction so that a failure stays
                // counted; success gives it back.
                this.inner.db.tx(|conn| {
                    this.inner
                        .config
                        .throttle
                        .begin_attempt(conn, &account, &address, now)
                })?;
                this.audited_tx(ev, |conn, ev| {
                    type CodeRow = (String, String, i64, Option<i64>, String, Option<String>);
                    let row: Option<CodeRow> = activation_codes::table
                        .find(&hash)
                        .inner_join(citizens::table)
                        .select((
                            activation_codes::citizen_id,
                            activation_codes::purpose,
                            activation_codes::expires_at,
                            activation_codes::used_at,
                            citizens::status,
                            citizens::date_of_birth,
                        ))
                        .get_result(conn)
                        .optional()?;
                    let Some((citizen_id, purpose, expires_at, used_at, status, born)) = row else {
                        ev.push(
                            Event::new("account.activation", Audited::Failure)
                                .detail("unknown-code"),
                        );
                        return Ok(None);
                    };
                    let usable = used_at.is_none()
                        && expires_at > now
                        && matches!(status.as_str(), "pending" | "active");
                    if !usable || born.as_deref() != Some(dob.as_str()) {
                        let why = if usable {
                            "wrong-date-of-birth"
                        } else {
                            "spent-code"
                        };
                        ev.push(
                            Event::new("account.activation", Audited::Failure)
                                .citizen(&citizen_id)
                                .detail(why),
                        );
                        return Ok(None);
                    }
                    // Claiming the code is the single-use check, as for authorization codes.
                    let claimed = diesel::update(activation_codes::table.find(&hash))
                        .filter(activation_codes::used_at.is_null())
                        .set(activation_codes::used_at.eq(now))
                        .execute(conn)?;
                    if claimed != 1 {
                        return Ok(None);
                    }
                    this.inner
                        .config
                        .throttle
                        .succeeded(conn, &account, &address)?;
                    diesel::update(citizens::table.find(&citizen_id))
                        .set(citizens::status.eq("active"))
                        .execute(conn)?;
                    ev.push(
                        Event::new("account.activation", Audited::Success)
                            .citizen(&citizen_id)
                            .detail(purpose),
                    );
                    // A one-time code and the date of birth are no more than a password.
                    this.open_session(conn, &citizen_id, "otp", ACR_PASSWORD, old.as_ref(), None)
                        .map(Some)
                })
            })
            .await?;
        result.ok_or_else(activation_refused)
    }

    /// Sets or replaces the password of the session's citizen, under the policy. Like adding
    /// a passkey, it needs a login in the last 15 minutes.
    pub async fn set_password(&self, session: SessionToken, password: &Password) -> Result<()> {
        let this = self.clone();
        let s = session.clone();
        let (citizen_id, context) = blocking(move || {
            this.inner.db.with(|conn| {
                let s = this
                    .session_blocking(conn, Some(&s))?
                    .ok_or_else(|| bad("you are not logged in"))?;
                if this.inner.clock.now() - s.auth_time > REGISTRATION_FRESHNESS {
                    return Err(bad(
                        "for your safety, log in again before changing your password",
                    ));
                }
                let (username, email, name): (String, Option<String>, String) = citizens::table
                    .find(&s.citizen_id)
                    .select((citizens::username, citizens::email, citizens::name_en))
                    .get_result(conn)?;
                Ok((s.citizen_id, [username, email.unwrap_or_default(), name]))
            })
        })
        .await?;
        let ctx: Vec<&str> = context.iter().map(String::as_str).collect();
        self.inner.config.policy.check(password, &ctx)?;
        let phc = self.inner.hasher.hash(password).await?;
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let now = this.inner.clock.now();
                let n = diesel::update(password_credentials::table.find(&citizen_id))
                    .set((
                        password_credentials::phc.eq(&phc),
                        password_credentials::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                if n == 0 {
                    diesel::insert_into(password_credentials::table)
                        .values((
                            password_credentials::citizen_id.eq(&citizen_id),
                            password_credentials::phc.eq(&phc),
                            password_credentials::updated_at.eq(now),
                        ))
                        .execute(conn)?;
                }
                Self::end_other_access(conn, &citizen_id, Some(&session), now, "password-changed")?;
                ev.push(Event::new("password.set", Audited::Success).citizen(&citizen_id));
                Ok(())
            })
        })
        .await
    }

    /// The latest security events of the session's citizen, from the audit log, newest
    /// first; `None` without a session.
    pub async fn security_events(
        &self,
        session: Option<SessionToken>,
    ) -> Result<Option<Vec<Entry>>> {
        let Some(s) = self.session(session).await? else {
            return Ok(None);
        };
        let this = self.clone();
        blocking(move || this.inner.audit.for_citizen(&s.citizen_id, 20).map(Some)).await
    }
}
