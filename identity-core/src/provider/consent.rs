//! Consent: the citizen's approval of an interaction, which issues the authorization code,
//! and the consents the account page lists and withdraws.

use super::*;

impl Provider {
    /// Records the citizen's answer on the consent page and returns where to go.
    pub async fn consent(
        &self,
        id: String,
        token: Option<SessionToken>,
        allow: bool,
    ) -> Result<String> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let now = this.inner.clock.now();
                let (request, client) = Self::pending(conn, &id, now)?;
                let session = this
                    .session_blocking(conn, token.as_ref())?
                    .ok_or_else(|| Error::InvalidRequest("you are not logged in".into()))?;
                // The session that answers may not be the one the page was shown to (another
                // tab logged in with a weaker method, or time passed): it must still meet the
                // request's max_age, acr_values and min_acr, or no code is issued.
                if allow
                    && matches!(
                        this.decide(conn, &request, &client, Some(&session))?,
                        Decision::Login
                    )
                {
                    return Err(Error::InvalidRequest(
                        "your sign-in no longer meets what the e-service asked for; return to the e-service and log in again".into(),
                    ));
                }
                Self::claim(conn, &request, now)?;
                let outcome = if allow {
                    Audited::Success
                } else {
                    Audited::Failure
                };
                ev.push(
                    Event::new("consent.given", outcome)
                        .client(&client.id)
                        .citizen(&session.citizen_id)
                        .detail(if allow {
                            request.scope.clone()
                        } else {
                            "denied".into()
                        }),
                );
                if !allow {
                    let mut params = vec![
                        ("error", "access_denied"),
                        ("error_description", "the citizen did not consent"),
                    ];
                    if let Some(s) = &request.state {
                        params.push(("state", s));
                    }
                    params.push(("iss", &this.inner.config.issuer));
                    return Ok(redirect_with(&request.redirect_uri, &params));
                }
                let existing: Option<String> = consents::table
                    .find((&session.citizen_id, &client.id))
                    .select(consents::scopes)
                    .get_result(conn)
                    .optional()?;
                let scopes = Scopes::parse(&request.scope)
                    .union(&existing.map(|s| Scopes::parse(&s)).unwrap_or_default());
                diesel::delete(consents::table.find((&session.citizen_id, &client.id)))
                    .execute(conn)?;
                diesel::insert_into(consents::table)
                    .values((
                        consents::citizen_id.eq(&session.citizen_id),
                        consents::client_id.eq(&client.id),
                        consents::scopes.eq(scopes.to_string()),
                        consents::granted_at.eq(now),
                    ))
                    .execute(conn)?;
                this.remember_subject(conn, &client.sector, &session.citizen_id)?;
                this.issue_code(conn, &request, &session, ev)
            })
        })
        .await
    }

    /// Records which citizen a sector's pairwise subject names, so that the sector's
    /// e-services can ask that citizen to sign (they know nothing else of them).
    fn remember_subject(
        &self,
        conn: &mut DbConnection,
        sector: &str,
        citizen_id: &str,
    ) -> Result<()> {
        let subject = self.subject(sector, citizen_id);
        let known: i64 = subjects::table
            .find((sector, &subject))
            .count()
            .get_result(conn)?;
        if known == 0 {
            diesel::insert_into(subjects::table)
                .values((
                    subjects::sector.eq(sector),
                    subjects::subject.eq(&subject),
                    subjects::citizen_id.eq(citizen_id),
                ))
                .execute(conn)?;
        }
        Ok(())
    }

    /// Takes a pending request for this answer, once: of two concurrent answers (a double
    /// click, two replicas) only one deletes the row, and the other is refused cleanly.
    pub(super) fn claim(conn: &mut DbConnection, request: &AuthRequest, now: i64) -> Result<()> {
        let n = diesel::delete(auth_requests::table.find(&request.id))
            .filter(auth_requests::expires_at.gt(now))
            .execute(conn)?;
        if n != 1 {
            return Err(Error::InvalidRequest(
                "this sign-in request was already answered; return to the e-service and start again".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn issue_code(
        &self,
        conn: &mut DbConnection,
        request: &AuthRequest,
        session: &Session,
        ev: &mut Vec<Event>,
    ) -> Result<String> {
        ev.push(
            Event::new("code.issued", Audited::Success)
                .client(&request.client_id)
                .citizen(&session.citizen_id)
                .detail(&session.acr),
        );
        let now = self.inner.clock.now();
        let code = random_token();
        diesel::insert_into(auth_codes::table)
            .values(&CodeRow {
                code_hash: token_hash(&code),
                client_id: request.client_id.clone(),
                citizen_id: session.citizen_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                scope: request.scope.clone(),
                nonce: request.nonce.clone(),
                code_challenge: request.code_challenge.clone(),
                auth_time: session.auth_time,
                amr: session.amr.clone(),
                acr: session.acr.clone(),
                family_id: random_id(),
                created_at: now,
                expires_at: now + self.inner.config.code_ttl,
                used_at: None,
                dpop_jkt: request.dpop_jkt.clone(),
            })
            .execute(conn)?;
        let mut params = vec![("code", code.as_str())];
        if let Some(s) = &request.state {
            params.push(("state", s));
        }
        params.push(("iss", &self.inner.config.issuer));
        Ok(redirect_with(&request.redirect_uri, &params))
    }

    /// The consents of the session's citizen.
    pub async fn consents(
        &self,
        token: Option<SessionToken>,
    ) -> Result<Option<(Session, Vec<ConsentView>)>> {
        let this = self.clone();
        blocking(move || {
            this.inner.db.with(|conn| {
                let Some(session) = this.session_blocking(conn, token.as_ref())? else {
                    return Ok(None);
                };
                let rows: Vec<(String, String, String, String, i64)> = consents::table
                    .inner_join(clients::table)
                    .filter(consents::citizen_id.eq(&session.citizen_id))
                    .select((
                        clients::id,
                        clients::name,
                        clients::department,
                        consents::scopes,
                        consents::granted_at,
                    ))
                    .order(clients::name)
                    .load(conn)?;
                let views = rows
                    .into_iter()
                    .map(
                        |(client_id, client_name, department, scopes, granted_at)| ConsentView {
                            client_id,
                            client_name,
                            department,
                            scopes,
                            granted_at,
                        },
                    )
                    .collect();
                Ok(Some((session, views)))
            })
        })
        .await
    }

    /// Withdraws the citizen's consent for a client and revokes the grants it covered.
    pub async fn withdraw_consent(
        &self,
        token: Option<SessionToken>,
        client_id: String,
    ) -> Result<()> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let session = this
                    .session_blocking(conn, token.as_ref())?
                    .ok_or_else(|| Error::InvalidRequest("you are not logged in".into()))?;
                let now = this.inner.clock.now();
                let n = diesel::delete(consents::table.find((&session.citizen_id, &client_id)))
                    .execute(conn)?;
                if n == 0 {
                    return Err(Error::NotFound);
                }
                ev.push(
                    Event::new("consent.withdrawn", Audited::Success)
                        .client(&client_id)
                        .citizen(&session.citizen_id),
                );
                // Codes issued under the consent but not yet redeemed go too, or one
                // redeemed after the withdrawal would start a fresh grant.
                diesel::delete(auth_codes::table)
                    .filter(auth_codes::citizen_id.eq(&session.citizen_id))
                    .filter(auth_codes::client_id.eq(&client_id))
                    .filter(auth_codes::used_at.is_null())
                    .execute(conn)?;
                diesel::update(token_families::table)
                    .filter(token_families::citizen_id.eq(&session.citizen_id))
                    .filter(token_families::client_id.eq(&client_id))
                    .filter(token_families::revoked_at.is_null())
                    .set((
                        token_families::revoked_at.eq(now),
                        token_families::revoked_reason.eq("consent withdrawn"),
                    ))
                    .execute(conn)?;
                Ok(())
            })
        })
        .await
    }
}
