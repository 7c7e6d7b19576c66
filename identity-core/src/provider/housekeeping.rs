//! Housekeeping: purging expired rows, rotating and revoking signing keys, and readiness.

use super::*;

impl Provider {
    /// Deletes rows that can no longer matter: expired sessions, pending requests, codes
    /// (an hour after expiry, past any reuse check), refresh tokens, WebAuthn ceremonies,
    /// and throttling counters of addresses whose window passed or accounts idle for a day
    /// that are not locked. Returns how many rows went. Blocking: run it on a background thread.
    pub fn purge_expired(&self) -> Result<usize> {
        let now = self.inner.clock.now();
        let cfg = &self.inner.config;
        self.inner.db.with(|conn| {
            let mut n = diesel::delete(
                sessions::table.filter(
                    sessions::expires_at
                        .le(now)
                        .or(sessions::last_seen_at.le(now - cfg.session_idle)),
                ),
            )
            .execute(conn)?;
            n += diesel::delete(auth_requests::table.filter(auth_requests::expires_at.le(now)))
                .execute(conn)?;
            n += diesel::delete(auth_codes::table.filter(auth_codes::expires_at.le(now - 3_600)))
                .execute(conn)?;
            n += diesel::delete(refresh_tokens::table.filter(refresh_tokens::expires_at.le(now)))
                .execute(conn)?;
            n += diesel::delete(
                webauthn_ceremonies::table.filter(webauthn_ceremonies::expires_at.le(now)),
            )
            .execute(conn)?;
            n += diesel::delete(jti_records::table.filter(jti_records::expires_at.le(now)))
                .execute(conn)?;
            n += diesel::delete(par_requests::table.filter(par_requests::expires_at.le(now)))
                .execute(conn)?;
            // A day after the last failure no lock is left (the longest lasts a day), but a
            // locked account's count stays for a week, so that a guesser who comes back
            // meets a longer lock, not a fresh start.
            n += diesel::delete(
                throttles::table
                    .filter(throttles::last_failure_at.le(now - crate::throttle::LONGEST_LOCK))
                    .filter(throttles::window_start.le(now - cfg.throttle.per_address_window))
                    .filter(
                        throttles::failures
                            .lt(cfg.throttle.lockout_after)
                            .or(throttles::last_failure_at.le(now - 7 * 86_400)),
                    ),
            )
            .execute(conn)?;
            Ok(n)
        })
    }

    /// Scheduled key rotation (from housekeeping): rotates every algorithm whose newest key
    /// is older than `max_age`, pre-publishing for `prepublish`, and audits each rotation.
    /// Blocking: run it on a background thread.
    pub fn rotate_due_keys(&self, max_age: i64, prepublish: i64) -> Result<Vec<String>> {
        let rotated = self.inner.keys.rotate_due(max_age, prepublish)?;
        if !rotated.is_empty() {
            let mut ev = Vec::new();
            self.audited_tx(&mut ev, |_, ev| {
                for kid in &rotated {
                    ev.push(
                        Event::new("key.rotated", Audited::Success)
                            .detail(format!("scheduled {kid}")),
                    );
                }
                Ok(())
            })?;
        }
        Ok(rotated)
    }

    /// Revokes signing key `kid` at once ([`KeyStore::revoke`]), with its audit event in the
    /// same transaction. Returns the new key's id if the revoked one was signing.
    pub async fn revoke_key(&self, kid: &str) -> Result<Option<String>> {
        let kid = kid.to_owned();
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let (alg, new) = this.inner.keys.revoke(conn, &kid)?;
                let replaced = new
                    .as_deref()
                    .map_or(String::new(), |n| format!(", {n} signs"));
                ev.push(
                    Event::new("key.revoked", Audited::Success)
                        .detail(format!("{} {kid}{replaced}", alg.as_str())),
                );
                Ok(new)
            })
        })
        .await
    }

    /// The database pool's connections and idle ones (for metrics).
    pub fn db_pool_state(&self) -> (u32, u32) {
        self.inner.db.pool_state()
    }

    /// Whether the database answers and its schema is current.
    pub fn ready(&self) -> Result<()> {
        self.inner.db.ready()
    }

    /// Why this replica must not take requests though its database answers: the audit log
    /// cannot be appended to, so every audited action would be refused. Blocking.
    pub fn unready_reason(&self) -> Option<&'static str> {
        self.inner.audit.unappendable()
    }
}
