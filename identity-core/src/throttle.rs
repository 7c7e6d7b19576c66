//! Login throttling kept in the database, so every replica counts the same attempts.
//!
//! Per account (keyed by a keyed hash of the username, known or not, so lock-out says
//! nothing about whether an account exists): after `free_failures` consecutive failures
//! each attempt waits 2^(n - free) seconds (capped), and at `lockout_after` the account is
//! locked until an operator unlocks it. Per source address: at most `per_address_limit`
//! failures in a window.

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
    /// Failures allowed from one source address per window.
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
}

fn row(conn: &mut DbConnection, key: &str) -> Result<Option<Row>> {
    Ok(throttles::table.find(key).first(conn).optional()?)
}

impl ThrottleConfig {
    /// Refuses an attempt that comes too soon for this account or address.
    pub fn check(
        &self,
        conn: &mut DbConnection,
        account: &str,
        address: &str,
        now: i64,
    ) -> Result<()> {
        if let Some(r) = row(conn, account)? {
            if r.failures >= self.lockout_after {
                return Err(Error::Locked);
            }
            if r.failures >= self.free_failures {
                let exp = (r.failures - self.free_failures).min(30) as u32;
                let delay = 2i64.saturating_pow(exp).min(self.max_delay);
                let wait = r.last_failure_at + delay - now;
                if wait > 0 {
                    return Err(Error::Throttled {
                        retry_after: wait as u64,
                    });
                }
            }
        }
        if let Some(r) = row(conn, address)? {
            let wait = r.window_start + self.per_address_window - now;
            if wait > 0 && r.failures >= self.per_address_limit {
                return Err(Error::Throttled {
                    retry_after: wait as u64,
                });
            }
        }
        Ok(())
    }

    /// Counts a failure against the account and the address.
    pub fn record_failure(
        &self,
        conn: &mut DbConnection,
        account: &str,
        address: &str,
        now: i64,
    ) -> Result<()> {
        bump(conn, account, now, None)?;
        bump(conn, address, now, Some(self.per_address_window))
    }

    /// Clears the account's consecutive failures after a success.
    pub fn record_success(&self, conn: &mut DbConnection, account: &str) -> Result<()> {
        diesel::delete(throttles::table.find(account)).execute(conn)?;
        Ok(())
    }
}

/// Adds one failure; with a window, a counter whose window has passed starts again at one.
/// Neither backend's upsert is in the common SQL, so this is update-then-insert; the
/// caller's transaction (and the primary key) keep two replicas from both inserting.
fn bump(conn: &mut DbConnection, key: &str, now: i64, window: Option<i64>) -> Result<()> {
    if let Some(w) = window {
        let reset = diesel::update(throttles::table.find(key))
            .filter(throttles::window_start.le(now - w))
            .set((
                throttles::failures.eq(1),
                throttles::window_start.eq(now),
                throttles::last_failure_at.eq(now),
            ))
            .execute(conn)?;
        if reset == 1 {
            return Ok(());
        }
    }
    let updated = diesel::update(throttles::table.find(key))
        .set((
            throttles::failures.eq(throttles::failures + 1),
            throttles::last_failure_at.eq(now),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(throttles::table)
            .values((
                throttles::key.eq(key),
                throttles::failures.eq(1),
                throttles::window_start.eq(now),
                throttles::last_failure_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}
