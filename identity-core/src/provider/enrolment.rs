//! Enrolment by a registration officer: the verified record, changes, suspension and
//! closure, and the one-time codes that activation (`activation.rs`) and recovery
//! (`recovery.rs`) use.
//!
//! A citizen's account starts as a verified record made by an officer (at a counter or a
//! trusted registration system), in the state `pending`. The officer hands over a one-time
//! code; the citizen activates online with it and their date of birth, then adds a passkey
//! (and a password if they want one). Recovery issues a new code after revoking every
//! session and grant, optionally removing the old passkeys.

use diesel::prelude::*;
use std::fmt;

use super::{Provider, SessionToken};
use crate::audit::{Event, Outcome as Audited};
use crate::crypto::{random_name, random_token, token_hash};
use crate::error::{Error, Result};
use crate::schema::*;
use crate::storage::DbConnection;

/// What a registration officer records: identity data verified at the counter.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    /// Login name the citizen will use with a password.
    pub username: String,
    /// Name in English.
    pub name_en: String,
    /// Name in Chinese.
    pub name_zh: String,
    /// `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// `female`, `male` or `other`.
    pub gender: Option<String>,
    /// Identity document number, e.g. an HKID `A123456(7)`.
    pub id_document: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// Postal address.
    pub address: Option<String>,
}

/// A change an officer makes; `None` leaves a field as it is. The document number and the
/// username do not change: a new document is a new registration.
#[derive(Clone, Debug, Default)]
pub struct RegistrationUpdate {
    /// Name in English.
    pub name_en: Option<String>,
    /// Name in Chinese.
    pub name_zh: Option<String>,
    /// `YYYY-MM-DD`.
    pub date_of_birth: Option<String>,
    /// `female`, `male` or `other`.
    pub gender: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// Postal address.
    pub address: Option<String>,
}

/// A one-time code for activation or recovery. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ActivationCode {
    code: String,
    /// When it stops working, Unix seconds.
    pub expires_at: i64,
}

impl ActivationCode {
    /// The code, to hand to the citizen once (only its hash is stored).
    pub fn expose(&self) -> &str {
        &self.code
    }
}

impl fmt::Debug for ActivationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActivationCode(<redacted>, expires {})", self.expires_at)
    }
}

/// What an officer sees of a citizen: the document number only masked.
#[derive(Clone, Debug)]
pub struct CitizenRecord {
    /// Internal id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Name in English.
    pub name_en: String,
    /// Name in Chinese.
    pub name_zh: String,
    /// `YYYY-MM-DD`.
    pub date_of_birth: Option<String>,
    /// Gender.
    pub gender: Option<String>,
    /// The document number with all but its first two and last characters hidden.
    pub id_document_masked: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// Postal address.
    pub address: Option<String>,
    /// `pending`, `active`, `suspended` or `closed`.
    pub status: String,
    /// How many passkeys the citizen has.
    pub passkeys: i64,
    /// Whether the citizen has a password.
    pub has_password: bool,
}

/// What an officer may set an account to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    /// Usable (again).
    Active,
    /// Temporarily unusable: sessions and grants end, logins and refreshes are refused.
    Suspended,
    /// Closed for good (an officer can still reopen it).
    Closed,
}

impl AccountStatus {
    /// Parses `active`, `suspended` or `closed`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(AccountStatus::Active),
            "suspended" => Ok(AccountStatus::Suspended),
            "closed" => Ok(AccountStatus::Closed),
            _ => Err(Error::InvalidRequest(
                "status must be active, suspended or closed".into(),
            )),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Closed => "closed",
        }
    }
}

pub(super) fn bad(msg: &str) -> Error {
    Error::InvalidRequest(msg.to_owned())
}

/// One message for every way an activation can fail, so that a guesser learns nothing
/// about which part was wrong.
pub(super) fn activation_refused() -> Error {
    bad("the code or the date of birth is wrong, or the code has expired or was already used; ask the registration office for a new code if it keeps failing")
}

/// Checks a `YYYY-MM-DD` date of birth: a real calendar day, not in the future, after 1900.
pub fn check_date(s: &str, today_unix: i64) -> Result<String> {
    let err = || bad("date_of_birth must be a real date, YYYY-MM-DD, not in the future");
    let parts: Vec<&str> = s.trim().split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(err());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(err());
    }
    let (y, m, d): (i64, u32, u32) = (
        y.parse().map_err(|_| err())?,
        m.parse().map_err(|_| err())?,
        d.parse().map_err(|_| err())?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(err()),
    };
    if y < 1900 || d == 0 || d > days {
        return Err(err());
    }
    // Days since the epoch of the date (civil calendar), to compare with today.
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = i64::from((153 * mm + 2) / 5 + d - 1);
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let epoch_day = era * 146_097 + doe - 719_468;
    if epoch_day > today_unix.div_euclid(86_400) {
        return Err(err());
    }
    Ok(format!("{y:04}-{m:02}-{d:02}"))
}

/// Normalises an identity document number: capitals and digits only, so `a123456(7)` and
/// `A 123456 7` are the same document.
pub fn normalize_document(s: &str) -> Result<String> {
    let n: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '(' | ')' | '-'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if !(5..=20).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad("id_document must be 5 to 20 letters and digits"));
    }
    Ok(n)
}

/// Shows the first two and the last character of a document number.
pub fn mask_document(n: &str) -> String {
    let chars: Vec<char> = n.chars().collect();
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < 2 || i + 1 == chars.len() {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

fn check_gender(g: &Option<String>) -> Result<()> {
    match g.as_deref() {
        None | Some("female" | "male" | "other") => Ok(()),
        Some(_) => Err(bad("gender must be female, male or other")),
    }
}

fn check_text(name: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() || value.chars().count() > max || value.chars().any(char::is_control)
    {
        return Err(Error::InvalidRequest(format!(
            "{name} must be 1 to {max} characters without control characters"
        )));
    }
    Ok(())
}

fn check_optional(name: &str, value: &Option<String>, max: usize) -> Result<()> {
    match value {
        Some(v) => check_text(name, v, max),
        None => Ok(()),
    }
}

impl Provider {
    fn seal_document(&self, citizen_id: &str, doc: &str) -> String {
        self.inner
            .kek
            .seal(&format!("id-document:{citizen_id}"), doc.as_bytes())
    }

    fn document_hash(&self, doc: &str) -> String {
        self.inner.id_docs.hash(&[doc.as_bytes()])
    }

    /// Makes a new code for a citizen, replacing any unused one.
    pub(super) fn new_code(
        &self,
        conn: &mut DbConnection,
        citizen_id: &str,
        purpose: &str,
        officer: &str,
    ) -> Result<ActivationCode> {
        let now = self.inner.clock.now();
        diesel::delete(
            activation_codes::table
                .filter(activation_codes::citizen_id.eq(citizen_id))
                .filter(activation_codes::used_at.is_null()),
        )
        .execute(conn)?;
        let code = random_token();
        let expires_at = now + self.inner.config.activation_code_ttl;
        diesel::insert_into(activation_codes::table)
            .values((
                activation_codes::code_hash.eq(token_hash(&code)),
                activation_codes::citizen_id.eq(citizen_id),
                activation_codes::purpose.eq(purpose),
                activation_codes::created_by.eq(officer),
                activation_codes::created_at.eq(now),
                activation_codes::expires_at.eq(expires_at),
            ))
            .execute(conn)?;
        Ok(ActivationCode { code, expires_at })
    }

    /// Ends every session and grant of a citizen (suspension, closure, recovery).
    pub(super) fn end_everything(
        conn: &mut DbConnection,
        citizen_id: &str,
        now: i64,
        reason: &str,
    ) -> Result<()> {
        Self::end_other_access(conn, citizen_id, None, now, reason)
    }

    /// Ends a citizen's sessions but `keep` (the session that made a credential change)
    /// and every refresh-token family: whoever knew the old password, or held the removed
    /// passkey, keeps nothing that it gave them.
    pub(super) fn end_other_access(
        conn: &mut DbConnection,
        citizen_id: &str,
        keep: Option<&SessionToken>,
        now: i64,
        reason: &str,
    ) -> Result<()> {
        let kept = keep.map(|s| token_hash(s.expose())).unwrap_or_default();
        diesel::delete(
            sessions::table
                .filter(sessions::citizen_id.eq(citizen_id))
                .filter(sessions::id_hash.ne(kept)),
        )
        .execute(conn)?;
        diesel::update(
            token_families::table
                .filter(token_families::citizen_id.eq(citizen_id))
                .filter(token_families::revoked_at.is_null()),
        )
        .set((
            token_families::revoked_at.eq(now),
            token_families::revoked_reason.eq(reason),
        ))
        .execute(conn)?;
        Ok(())
    }

    /// Records a verified citizen (state `pending`) and returns their id and activation code.
    /// One account per identity document: a second registration of the same document is
    /// refused.
    pub async fn enrol(&self, officer: &str, r: Registration) -> Result<(String, ActivationCode)> {
        let username = super::normalize_username(&r.username);
        if username.len() < 3
            || username.len() > 64
            || !username
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
        {
            return Err(bad(
                "username must be 3 to 64 letters, digits, '.', '_', '-' or '@'",
            ));
        }
        check_text("name_en", &r.name_en, 200)?;
        check_text("name_zh", &r.name_zh, 200)?;
        check_optional("email", &r.email, 254)?;
        check_optional("phone", &r.phone, 32)?;
        check_optional("address", &r.address, 500)?;
        check_gender(&r.gender)?;
        let dob = check_date(&r.date_of_birth, self.inner.clock.now())?;
        let doc = normalize_document(&r.id_document)?;
        let officer = officer.to_owned();
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let hash = this.document_hash(&doc);
                let taken: i64 = citizens::table
                    .filter(citizens::id_doc_hash.eq(&hash))
                    .count()
                    .get_result(conn)?;
                if taken > 0 {
                    return Err(Error::Conflict(
                        "an account already exists for this identity document".into(),
                    ));
                }
                let id = random_name();
                let now = this.inner.clock.now();
                diesel::insert_into(citizens::table)
                    .values((
                        citizens::id.eq(&id),
                        citizens::username.eq(&username),
                        citizens::name_en.eq(r.name_en.trim()),
                        citizens::name_zh.eq(r.name_zh.trim()),
                        citizens::email.eq(&r.email),
                        citizens::email_verified.eq(i32::from(r.email.is_some())),
                        citizens::phone.eq(&r.phone),
                        citizens::phone_verified.eq(i32::from(r.phone.is_some())),
                        citizens::address.eq(&r.address),
                        citizens::status.eq("pending"),
                        citizens::created_at.eq(now),
                        citizens::date_of_birth.eq(&dob),
                        citizens::gender.eq(&r.gender),
                        citizens::id_doc_sealed.eq(this.seal_document(&id, &doc)),
                        citizens::id_doc_hash.eq(&hash),
                    ))
                    .execute(conn)
                    .map_err(|e| match Error::from(e) {
                        Error::Conflict(_) => {
                            Error::Conflict(format!("the username {username} is taken"))
                        }
                        other => other,
                    })?;
                let code = this.new_code(conn, &id, "activation", &officer)?;
                ev.push(
                    Event::new("citizen.enrolled", Audited::Success)
                        .client(&officer)
                        .citizen(&id),
                );
                Ok((id, code))
            })
        })
        .await
    }

    /// Changes a citizen's verified attributes.
    pub async fn update_registration(
        &self,
        officer: &str,
        citizen_id: &str,
        u: RegistrationUpdate,
    ) -> Result<()> {
        for (name, value, max) in [
            ("name_en", &u.name_en, 200),
            ("name_zh", &u.name_zh, 200),
            ("email", &u.email, 254),
            ("phone", &u.phone, 32),
            ("address", &u.address, 500),
        ] {
            check_optional(name, value, max)?;
        }
        check_gender(&u.gender)?;
        let dob = match &u.date_of_birth {
            Some(d) => Some(check_date(d, self.inner.clock.now())?),
            None => None,
        };
        let (officer, citizen_id) = (officer.to_owned(), citizen_id.to_owned());
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let target = citizens::table.find(&citizen_id);
                let exists: i64 = target.count().get_result(conn)?;
                if exists == 0 {
                    return Err(Error::NotFound);
                }
                let mut changed = Vec::new();
                macro_rules! set {
                    ($field:ident, $value:expr) => {
                        if let Some(v) = $value {
                            diesel::update(target)
                                .set(citizens::$field.eq(v))
                                .execute(conn)?;
                            changed.push(stringify!($field));
                        }
                    };
                }
                set!(name_en, &u.name_en);
                set!(name_zh, &u.name_zh);
                set!(date_of_birth, &dob);
                set!(gender, &u.gender);
                set!(email, &u.email);
                set!(phone, &u.phone);
                set!(address, &u.address);
                // The detail names the fields, never their values.
                ev.push(
                    Event::new("citizen.updated", Audited::Success)
                        .client(&officer)
                        .citizen(&citizen_id)
                        .detail(changed.join(",")),
                );
                Ok(())
            })
        })
        .await
    }

    /// Suspends, closes or reactivates an account. Suspension and closure end every session
    /// and revoke every grant at once.
    pub async fn set_account_status(
        &self,
        officer: &str,
        citizen_id: &str,
        status: AccountStatus,
    ) -> Result<()> {
        let (officer, citizen_id) = (officer.to_owned(), citizen_id.to_owned());
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let now = this.inner.clock.now();
                let n = diesel::update(citizens::table.find(&citizen_id))
                    .set(citizens::status.eq(status.as_str()))
                    .execute(conn)?;
                if n == 0 {
                    return Err(Error::NotFound);
                }
                if status != AccountStatus::Active {
                    Self::end_everything(conn, &citizen_id, now, status.as_str())?;
                }
                ev.push(
                    Event::new("citizen.status", Audited::Success)
                        .client(&officer)
                        .citizen(&citizen_id)
                        .detail(status.as_str()),
                );
                Ok(())
            })
        })
        .await
    }

    /// A citizen's record as an officer sees it.
    /// A citizen's record as `officer` reads it. The read is a release of the citizen's
    /// data, audited as `citizen.read` naming the officer; the record comes back only once
    /// that event is durable.
    pub async fn registration(&self, officer: &str, citizen_id: &str) -> Result<CitizenRecord> {
        let (officer, id) = (officer.to_owned(), citizen_id.to_owned());
        self.run(move |this, ev| {
            let record = this.inner.db.with(|conn| {
                type Row = (
                    String,
                    String,
                    String,
                    String,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    String,
                );
                let row: Row = citizens::table
                    .find(&id)
                    .select((
                        citizens::id,
                        citizens::username,
                        citizens::name_en,
                        citizens::name_zh,
                        citizens::date_of_birth,
                        citizens::gender,
                        citizens::id_doc_sealed,
                        citizens::email,
                        citizens::phone,
                        citizens::address,
                        citizens::status,
                    ))
                    .get_result(conn)
                    .optional()?
                    .ok_or(Error::NotFound)?;
                let masked = match &row.6 {
                    Some(sealed) => {
                        let doc = this
                            .inner
                            .kek
                            .open(&format!("id-document:{}", row.0), sealed)?;
                        Some(mask_document(&String::from_utf8_lossy(&doc)))
                    }
                    None => None,
                };
                let passkeys: i64 = passkeys::table
                    .filter(passkeys::citizen_id.eq(&id))
                    .count()
                    .get_result(conn)?;
                let passwords: i64 = password_credentials::table
                    .filter(password_credentials::citizen_id.eq(&id))
                    .count()
                    .get_result(conn)?;
                Ok(CitizenRecord {
                    id: row.0,
                    username: row.1,
                    name_en: row.2,
                    name_zh: row.3,
                    date_of_birth: row.4,
                    gender: row.5,
                    id_document_masked: masked,
                    email: row.7,
                    phone: row.8,
                    address: row.9,
                    status: row.10,
                    passkeys,
                    has_password: passwords > 0,
                })
            })?;
            ev.push(
                Event::new("citizen.read", Audited::Success)
                    .client(officer)
                    .citizen(&record.id),
            );
            Ok(record)
        })
        .await
    }

    /// The identity document number of a citizen, for a consented claim.
    pub(super) fn document_of(
        &self,
        conn: &mut DbConnection,
        citizen_id: &str,
    ) -> Result<Option<String>> {
        let sealed: Option<Option<String>> = citizens::table
            .find(citizen_id)
            .select(citizens::id_doc_sealed)
            .get_result(conn)
            .optional()?;
        match sealed.flatten() {
            Some(s) => {
                let doc = self
                    .inner
                    .kek
                    .open(&format!("id-document:{citizen_id}"), &s)?;
                Ok(Some(String::from_utf8(doc).map_err(Error::internal)?))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_real_and_past() {
        let today = 1_795_564_800; // 2026-11-25
        assert_eq!(check_date("1980-02-29", today).unwrap(), "1980-02-29");
        assert!(check_date("1981-02-29", today).is_err());
        assert!(check_date("2026-11-26", today).is_err());
        assert!(check_date("2026-11-25", today).is_ok());
        assert!(check_date("1899-12-31", today).is_err());
        assert!(check_date("1980-13-01", today).is_err());
        assert!(check_date("1980-1-01", today).is_err());
        assert!(check_date("", today).is_err());
    }

    #[test]
    fn documents_normalise_and_mask() {
        assert_eq!(normalize_document("a123456(7)").unwrap(), "A1234567");
        assert_eq!(normalize_document(" A 123456 7 ").unwrap(), "A1234567");
        assert!(normalize_document("A1").is_err());
        assert!(normalize_document("A12345\u{0}67").is_err());
        assert_eq!(mask_document("A1234567"), "A1*****7");
    }
}
