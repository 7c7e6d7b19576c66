//! The refresh_token grant (RFC 6749 §6): rotation and the detection of a reused refresh
//! token (which revokes the whole family), the absolute lifetime, and narrower scopes.

use super::*;

impl Provider {
    pub(super) fn refresh_grant(
        &self,
        client: Client,
        input: TokenInput,
        jkt: Option<String>,
        ev: &mut Vec<Event>,
    ) -> Result<TokenResponse> {
        let token = input.refresh_token.ok_or_else(|| {
            Error::InvalidRequest("the refresh_token parameter is missing".into())
        })?;
        let now = self.inner.clock.now();
        let signers = self.signers(&client)?;
        // As for codes: refusals commit their revocation, and the new refresh token is
        // stored in the same transaction that consumes the old one, so a failure in
        // between cannot turn the client's retry into "reuse".
        let outcome = self.audited_tx(ev, |conn, ev| {
            let Some(row) = refresh_tokens::table
                .find(token_hash(&token))
                .get_result::<RefreshRow>(conn)
                .optional()?
            else {
                return Ok(Outcome::Refused("the refresh token is not valid"));
            };
            let family: FamilyRow = token_families::table
                .find(&row.family_id)
                .get_result(conn)?;
            if family.client_id != client.id {
                return Ok(Outcome::Refused(
                    "the refresh token was issued to another client",
                ));
            }
            if family.revoked_at.is_some() {
                return Ok(Outcome::Refused("the refresh token has been revoked"));
            }
            // A grant bound to a key refreshes only with that key: a stolen refresh token
            // is useless without it.
            if family.dpop_jkt.is_some() && family.dpop_jkt != jkt {
                return Ok(Outcome::Refused(
                    "the refresh token is bound to another DPoP key",
                ));
            }
            // A FAPI client's key-bound refresh token is not rotated (FAPI 2.0 §5.3.2.1
            // relies on the binding instead); every other one is, and reuse revokes.
            let rotate = !(client.fapi && family.dpop_jkt.is_some());
            // As for codes, claiming the token is the one reuse check.
            let claimed = if rotate {
                diesel::update(refresh_tokens::table.find(token_hash(&token)))
                    .filter(refresh_tokens::used_at.is_null())
                    .set(refresh_tokens::used_at.eq(now))
                    .execute(conn)?
            } else {
                usize::from(row.used_at.is_none())
            };
            if claimed != 1 {
                Self::revoke_reused(
                    conn,
                    ev,
                    "refresh.reuse",
                    &row.family_id,
                    &family.client_id,
                    &family.citizen_id,
                    now,
                )?;
                return Ok(Outcome::Refused(
                    "the refresh token was already used; its grant is revoked",
                ));
            }
            if row.expires_at <= now {
                return Ok(Outcome::Refused("the refresh token has expired"));
            }
            if family.created_at + self.inner.config.refresh_absolute_ttl <= now {
                return Ok(Outcome::Refused(
                    "the grant has reached its absolute lifetime; the citizen must log in again",
                ));
            }
            let active: i64 = citizens::table
                .find(&family.citizen_id)
                .filter(citizens::status.eq("active"))
                .count()
                .get_result(conn)?;
            if active == 0 {
                return Ok(Outcome::Refused("the account is not active"));
            }
            let scope = asked_within(
                Scopes::parse(&row.scope),
                input.scope.as_deref(),
                "a refresh cannot widen the scope",
            )?;
            let grant = Grant {
                grant_type: "refresh_token",
                family_id: row.family_id,
                client: client.clone(),
                citizen_id: family.citizen_id,
                scope,
                nonce: None,
                auth_time: row.auth_time,
                amr: row.amr,
                acr: row.acr,
                jkt: family.dpop_jkt.clone().or(jkt),
                keep_refresh: (!rotate).then(|| token.clone()),
                refresh_until: family.created_at + self.inner.config.refresh_absolute_ttl,
            };
            Ok(Outcome::Issued(Box::new(
                self.issue_tokens(conn, &grant, &signers, ev)?,
            )))
        })?;
        outcome.into_result()
    }
}
