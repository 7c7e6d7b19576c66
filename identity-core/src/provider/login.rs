//! Password login and sessions: the throttled, locked-out check of a password, opening a
//! session, reading it back, and ending it.

use super::*;

impl Provider {
    /// Checks a username and password and opens a new session, replacing `old` if given.
    /// A wrong password and an unknown username cost the same and answer the same.
    pub async fn login(
        &self,
        username: &str,
        password: &Password,
        source: &str,
        old: Option<SessionToken>,
    ) -> Result<SessionToken> {
        self.login_for(username, password, source, old, None).await
    }

    /// Like [`Provider::login`], for a pending authorization request: a successful login
    /// satisfies the request's `prompt=login`. Every outcome but a full hashing pool is
    /// audited before the answer goes back.
    pub async fn login_for(
        &self,
        username: &str,
        password: &Password,
        source: &str,
        old: Option<SessionToken>,
        request_id: Option<String>,
    ) -> Result<SessionToken> {
        let mut citizen = None;
        let result = self
            .login_checked(username, password, source, old, request_id, &mut citizen)
            .await;
        let detail = match &result {
            // Its event was staged in the transaction that opened the session.
            Ok(_) => return result,
            Err(Error::BadCredentials) => "bad-credentials",
            Err(Error::Throttled { .. }) => "throttled",
            Err(Error::Locked { .. }) => "locked",
            Err(_) => return result,
        };
        self.record_login_failure(source, citizen, detail).await?;
        result
    }

    /// The `login` failure event of a password or passkey login, with the citizen when the
    /// attempt got as far as naming one.
    pub(super) async fn record_login_failure(
        &self,
        source: &str,
        citizen: Option<String>,
        detail: &'static str,
    ) -> Result<()> {
        let mut event = Event::new("login", Audited::Failure)
            .source(source)
            .detail(detail);
        if let Some(c) = citizen {
            event = event.citizen(c);
        }
        self.inner.audit.record(event).await
    }

    async fn login_checked(
        &self,
        username: &str,
        password: &Password,
        source: &str,
        old: Option<SessionToken>,
        request_id: Option<String>,
        citizen: &mut Option<String>,
    ) -> Result<SessionToken> {
        // A place in the hashing pool first: beyond capacity the answer is 503 before any
        // database work, so a flood's refusals are quick and write nothing.
        let admitted = self.inner.hasher.admit()?;
        let username = normalize_username(username);
        let account = self.account_key(&username);
        let address = self.address_key(source);
        let now = self.inner.clock.now();
        let this = self.clone();
        let (acct, addr, user) = (account.clone(), address.clone(), username.clone());
        let (counted, stored): (_, Option<(String, String)>) = blocking(move || {
            this.inner.db.tx(|conn| {
                let counted = this
                    .inner
                    .config
                    .throttle
                    .begin_attempt(conn, &acct, &addr, now)?;
                let stored = citizens::table
                    .inner_join(password_credentials::table)
                    .filter(citizens::username.eq(&user))
                    .filter(citizens::status.eq("active"))
                    .select((citizens::id, password_credentials::phc))
                    .get_result(conn)
                    .optional()?;
                Ok((counted, stored))
            })
        })
        .await?;
        let (citizen_id, phc) = match stored {
            Some((id, phc)) => (Some(id), Some(phc)),
            None => (None, None),
        };
        citizen.clone_from(&citizen_id);
        let checked = match self
            .inner
            .hasher
            .verify_admitted(admitted, phc, password)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                // The attempt was counted but never checked: give it back.
                let this = self.clone();
                let (acct, addr) = (account.clone(), address.clone());
                blocking(move || {
                    this.inner.db.tx(|conn| {
                        this.inner
                            .config
                            .throttle
                            .not_checked(conn, &acct, &addr, &counted)
                    })
                })
                .await?;
                return Err(e);
            }
        };
        let source = source.to_owned();
        self.run(move |this, ev| {
            let now = this.inner.clock.now();
            this.audited_tx(ev, |conn, ev| {
                let throttle = &this.inner.config.throttle;
                // A failure was already counted when the attempt began.
                let Some(citizen_id) = citizen_id.filter(|_| checked.ok) else {
                    return Ok(None);
                };
                throttle.succeeded(conn, &account, &address)?;
                if let Some(phc) = &checked.rehash {
                    diesel::update(password_credentials::table.find(&citizen_id))
                        .set((
                            password_credentials::phc.eq(phc),
                            password_credentials::updated_at.eq(now),
                        ))
                        .execute(conn)?;
                }
                let session = this.open_session(
                    conn,
                    &citizen_id,
                    "pwd",
                    ACR_PASSWORD,
                    old.as_ref(),
                    request_id.as_deref(),
                )?;
                // Committed with the session: no session without its login event.
                ev.push(
                    Event::new("login", Audited::Success)
                        .source(source)
                        .detail("pwd")
                        .citizen(citizen_id),
                );
                Ok(Some(session))
            })
        })
        .await?
        .ok_or(Error::BadCredentials)
    }

    /// Opens a session after a successful login, replacing `old`. A login made for a
    /// pending request satisfies its `prompt=login` and its `max_age`; removing them keeps a
    /// one-second clock from asking twice.
    pub(super) fn open_session(
        &self,
        conn: &mut DbConnection,
        citizen_id: &str,
        amr: &str,
        acr: &str,
        old: Option<&SessionToken>,
        request_id: Option<&str>,
    ) -> Result<SessionToken> {
        let now = self.inner.clock.now();
        if let Some(old) = old {
            diesel::delete(sessions::table.find(token_hash(old.expose()))).execute(conn)?;
        }
        if let Some(id) = request_id {
            let prompt: Option<Option<String>> = auth_requests::table
                .find(id)
                .select(auth_requests::prompt)
                .get_result(conn)
                .optional()?;
            if let Some(p) = prompt {
                let rest: Vec<&str> = p
                    .as_deref()
                    .unwrap_or("")
                    .split(' ')
                    .filter(|x| !x.is_empty() && *x != "login")
                    .collect();
                diesel::update(auth_requests::table.find(id))
                    .set((
                        auth_requests::prompt.eq((!rest.is_empty()).then(|| rest.join(" "))),
                        auth_requests::max_age.eq(None::<i64>),
                    ))
                    .execute(conn)?;
            }
        }
        let token = random_token();
        diesel::insert_into(sessions::table)
            .values((
                sessions::id_hash.eq(token_hash(&token)),
                sessions::citizen_id.eq(citizen_id),
                sessions::auth_time.eq(now),
                sessions::amr.eq(amr),
                sessions::acr.eq(acr),
                sessions::created_at.eq(now),
                sessions::last_seen_at.eq(now),
                sessions::expires_at.eq(now + self.inner.config.session_absolute),
            ))
            .execute(conn)?;
        Ok(SessionToken(token))
    }

    /// The live session behind a cookie, if any; refreshes its idle timer.
    pub(super) fn session_blocking(
        &self,
        conn: &mut DbConnection,
        token: Option<&SessionToken>,
    ) -> Result<Option<Session>> {
        let Some(token) = token else { return Ok(None) };
        let hash = token_hash(token.expose());
        let now = self.inner.clock.now();
        let row: Option<(String, i64, String, String, i64, i64)> = sessions::table
            .find(&hash)
            .inner_join(citizens::table)
            .filter(citizens::status.eq("active"))
            .select((
                sessions::citizen_id,
                sessions::auth_time,
                sessions::amr,
                sessions::acr,
                sessions::last_seen_at,
                sessions::expires_at,
            ))
            .get_result(conn)
            .optional()?;
        let Some((citizen_id, auth_time, amr, acr, last_seen, expires)) = row else {
            return Ok(None);
        };
        if now >= expires || now - last_seen >= self.inner.config.session_idle {
            diesel::delete(sessions::table.find(&hash)).execute(conn)?;
            return Ok(None);
        }
        // One write a minute at most keeps logins cheap while the idle timer stays honest.
        if now - last_seen >= 60 {
            diesel::update(sessions::table.find(&hash))
                .set(sessions::last_seen_at.eq(now))
                .execute(conn)?;
        }
        Ok(Some(Session {
            citizen_id,
            auth_time,
            amr,
            acr,
        }))
    }

    /// The live session behind a cookie, if any.
    pub async fn session(&self, token: Option<SessionToken>) -> Result<Option<Session>> {
        let this = self.clone();
        blocking(move || {
            this.inner
                .db
                .with(|conn| this.session_blocking(conn, token.as_ref()))
        })
        .await
    }

    /// Ends a session.
    /// Returns the back-channel logout tokens to deliver to the citizen's e-services.
    pub async fn logout(&self, token: SessionToken) -> Result<Vec<LogoutNotice>> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| this.end_session_blocking(conn, &token, ev))
        })
        .await
    }
}
