//! Login throttling kept in the database, so every replica counts the same attempts.
//!
//! Per account (keyed by a keyed hash of the username, known or not, so lock-out says
//! nothing about whether an account exists): after `free_failures` consecutive failures
//! each attempt waits 2^(n - free + 1) seconds (capped), and at `lockout_after` the account's
//! password is locked for 15 minutes, doubling with each failure after a lock ends (at most a
//! day), or until an operator unlocks it. A lock is never permanent, so nobody can lock a
//! citizen out for good by typing their username, and it counts password attempts only:
//! passkey logins are not throttled by it. Per source address: at most `per_address_limit`
//! failed attempts in a window.
//!
//! An attempt is counted *before* the password is checked, with a compare-and-set on the
//! counter, and refunded only when it succeeds. So concurrent guesses, on one replica or
//! many, cannot all slip through one delay: each must win the counter, and the loser of a
//! race is told to wait.

use diesel::prelude::*;

use crate::error::{Error, Result};
use crate::schema::throttles;
use crate::storage::DbConnection;

/// Throttling limits.
#[derive(Clone, Debug)]
pub struct ThrottleConfig {
    /// Consecutive failures allowed before delays start.
    pub free_failures: i64,
    /// Consecutive failures that lock the account (at most 100, per NIST SP 800-63B).
    pub lockout_after: i64,
    /// The longest delay between attempts, in seconds.
    pub max_delay: i64,
    /// Failed attempts allowed from one source address per window.
    pub per_address_limit: i64,
    /// The per-address window, in seconds.
    pub per_address_window: i64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            free_failures: 5,
            lockout_after: 100,
            max_delay: 900,
            per_address_limit: 100,
            per_address_window: 300,
        }
    }
}

#[derive(Queryable)]
struct Row {
    _key: String,
    failures: i64,
    window_start: i64,
    last_failure_at: i64,
    next_allowed_at: i64,
}

/// The counter's row, created empty if missing. Two replicas may race to create it; the
/// insert runs in a savepoint so the loser's unique violation does not abort the caller's
/// transaction, and both then read the one row.
fn load_or_create(conn: &mut DbConnection, key: &str, now: i64) -> Result<Row> {
    if let Some(r) = throttles::table.find(key).get_result(conn).optional()? {
        return Ok(r);
    }
    let inserted = conn.transaction(|c| {
        diesel::insert_into(throttles::table)
            .values((
                throttles::key.eq(key),
                throttles::failures.eq(0),
                throttles::window_start.eq(now),
                throttles::last_failure_at.eq(0),
                throttles::next_allowed_at.eq(0),
            ))
            .execute(c)
    });
    match inserted {
        Ok(_) => {}
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(throttles::table.find(key).get_result(conn)?)
}

/// A concurrent attempt changed the counter first: this one waits a moment.
const RACE: Error = Error::Throttled { retry_after: 1 };

/// The first lock-out's length; each failure after a lock ends doubles it.
const FIRST_LOCK: i64 = 15 * 60;
/// The longest lock-out.
pub const LONGEST_LOCK: i64 = 86_400;

impl ThrottleConfig {
    /// How long the account stays locked after its `failures`-th consecutive failure: none
    /// below `lockout_after`, then 15 minutes, 30, 60, … up to a day.
    fn lock_after(&self, failures: i64) -> i64 {
        if failures < self.lockout_after {
            return 0;
        }
        let doublings = (failures - self.lockout_after).min(20) as u32;
        FIRST_LOCK.saturating_mul(1 << doublings).min(LONGEST_LOCK)
    }

    fn delay_after(&self, failures: i64) -> i64 {
        if failures < self.free_failures {
            return 0;
        }
        // 2, 4, 8, … seconds: at least two, because times are whole seconds and a one-second
        // delay could round down to nothing.
        let exp = (failures - self.free_failures + 1).min(30) as u32;
        2i64.saturating_pow(exp).min(self.max_delay)
    }

    /// Counts an attempt against the account and the address, or refuses it.
    pub fn begin_attempt(
        &self,
        conn: &mut DbConnection,
        account: &str,
        address: &str,
        now: i64,
    ) -> Result<Counted> {
        let r = load_or_create(conn, account, now)?;
        let locked_until = r.last_failure_at + self.lock_after(r.failures);
        if locked_until > now {
            return Err(Error::Locked {
                retry_after: (locked_until - now) as u64,
            });
        }
        if r.next_allowed_at > now {
            return Err(Error::Throttled {
                retry_after: (r.next_allowed_at - now) as u64,
            });
        }
        let failures = r.failures + 1;
        let won = diesel::update(throttles::table.find(account))
            .filter(throttles::failures.eq(r.failures))
            .set((
                throttles::failures.eq(failures),
                throttles::last_failure_at.eq(now),
                throttles::next_allowed_at.eq(now + self.delay_after(failures)),
            ))
            .execute(conn)?;
        if won != 1 {
            return Err(RACE);
        }
        self.count_address(conn, address, now)?;
        Ok(Counted {
            last_failure_at: r.last_failure_at,
            next_allowed_at: r.next_allowed_at,
        })
    }

    /// Counts an attempt against a source address alone (at most `per_address_limit` per
    /// window), or refuses it: for work anyone may start without an account, such as a
    /// passkey ceremony, which writes a row.
    pub fn count_address(&self, conn: &mut DbConnection, address: &str, now: i64) -> Result<()> {
        self.count_in_window(conn, address, now, self.per_address_limit)
    }

    /// Passkey ceremonies begun without a session from one address: every login page
    /// begins one (for autofill), so the limit is ten times that of failed logins, or an
    /// office behind one NAT address would lose passkey login at its hundredth page view.
    pub fn count_ceremony(&self, conn: &mut DbConnection, address: &str, now: i64) -> Result<()> {
        self.count_in_window(
            conn,
            address,
            now,
            self.per_address_limit.saturating_mul(10),
        )
    }

    fn count_in_window(
        &self,
        conn: &mut DbConnection,
        address: &str,
        now: i64,
        limit: i64,
    ) -> Result<()> {
        let r = load_or_create(conn, address, now)?;
        let fresh_window = now - r.window_start >= self.per_address_window;
        if !fresh_window && r.failures >= limit {
            return Err(Error::Throttled {
                retry_after: (r.window_start + self.per_address_window - now) as u64,
            });
        }
        let (failures, start) = if fresh_window {
            (1, now)
        } else {
            (r.failures + 1, r.window_start)
        };
        let won = diesel::update(throttles::table.find(address))
            .filter(throttles::failures.eq(r.failures))
            .filter(throttles::window_start.eq(r.window_start))
            .set((
                throttles::failures.eq(failures),
                throttles::window_start.eq(start),
                throttles::last_failure_at.eq(now),
            ))
            .execute(conn)?;
        if won != 1 {
            return Err(RACE);
        }
        Ok(())
    }

    /// A counted attempt succeeded: the account's consecutive failures start again, and
    /// the address gets its attempt back.
    pub fn succeeded(&self, conn: &mut DbConnection, account: &str, address: &str) -> Result<()> {
        diesel::delete(throttles::table.find(account)).execute(conn)?;
        refund(conn, address)
    }

    /// A counted attempt was never checked (the hashing pool failed it): give it back whole,
    /// its failure and the times it set, or an attempt after a lock had ended would lock
    /// the account again though no password was wrong.
    pub fn not_checked(
        &self,
        conn: &mut DbConnection,
        account: &str,
        address: &str,
        counted: &Counted,
    ) -> Result<()> {
        diesel::update(throttles::table.find(account))
            .filter(throttles::failures.gt(0))
            .set((
                throttles::failures.eq(throttles::failures - 1),
                throttles::last_failure_at.eq(counted.last_failure_at),
                throttles::next_allowed_at.eq(counted.next_allowed_at),
            ))
            .execute(conn)?;
        refund(conn, address)
    }

    /// Clears an account's counter (an operator's unlock).
    pub fn reset(&self, conn: &mut DbConnection, account: &str) -> Result<()> {
        diesel::delete(throttles::table.find(account)).execute(conn)?;
        Ok(())
    }
}

/// What counting an attempt changed on its account's row, to give back if the attempt is
/// never checked.
#[derive(Clone, Copy, Debug)]
pub struct Counted {
    last_failure_at: i64,
    next_allowed_at: i64,
}

fn refund(conn: &mut DbConnection, key: &str) -> Result<()> {
    diesel::update(throttles::table.find(key))
        .filter(throttles::failures.gt(0))
        .set(throttles::failures.eq(throttles::failures - 1))
        .execute(conn)?;
    Ok(())
}
