//! The authorization_code grant (RFC 6749 §4.1.3): the code checked and spent once (a reused
//! code revokes its grant), PKCE, the DPoP binding, and the grant's first tokens.

use super::*;

impl Provider {
    pub(super) fn code_grant(
        &self,
        client: Client,
        input: TokenInput,
        jkt: Option<String>,
        ev: &mut Vec<Event>,
    ) -> Result<TokenResponse> {
        let code = input
            .code
            .ok_or_else(|| Error::InvalidRequest("the code parameter is missing".into()))?;
        let redirect_uri = input
            .redirect_uri
            .ok_or_else(|| Error::InvalidRequest("the redirect_uri parameter is missing".into()))?;
        let verifier = input.code_verifier.ok_or_else(|| {
            Error::InvalidRequest(
                "the code_verifier parameter is missing (PKCE is required)".into(),
            )
        })?;
        if !is_pkce_value(&verifier) {
            return Err(Error::InvalidRequest(
                "the code_verifier is malformed".into(),
            ));
        }
        let now = self.inner.clock.now();
        let signers = self.signers(&client)?;
        // Revocation on reuse must commit even though the request fails, so the transaction
        // returns the refusal as a value and the error is raised after it commits. The
        // tokens are made inside it, so a failure there leaves the code unused.
        let outcome = self.audited_tx(ev, |conn, ev| {
            let Some(row) = auth_codes::table
                .find(token_hash(&code))
                .get_result::<CodeRow>(conn)
                .optional()?
            else {
                return Ok(Outcome::Refused("the code is not valid"));
            };
            if row.client_id != client.id {
                return Ok(Outcome::Refused("the code was issued to another client"));
            }
            // Claiming the code is the one reuse check: a code already used, now or by a
            // concurrent request on any replica, is not claimed, and its grant is revoked.
            let claimed = diesel::update(auth_codes::table.find(&row.code_hash))
                .filter(auth_codes::used_at.is_null())
                .set(auth_codes::used_at.eq(now))
                .execute(conn)?;
            if claimed != 1 {
                Self::revoke_reused(
                    conn,
                    ev,
                    "code.reuse",
                    &row.family_id,
                    &row.client_id,
                    &row.citizen_id,
                    now,
                )?;
                return Ok(Outcome::Refused(
                    "the code was already used; its tokens are revoked",
                ));
            }
            if row.expires_at <= now {
                return Ok(Outcome::Refused("the code has expired"));
            }
            if row.redirect_uri != redirect_uri {
                return Ok(Outcome::Refused(
                    "the redirect_uri does not match the authorization request",
                ));
            }
            let computed = b64(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref());
            if computed != row.code_challenge {
                return Ok(Outcome::Refused(
                    "the code_verifier does not match the code_challenge",
                ));
            }
            // A code bound to a key at authorization (dpop_jkt) is redeemed with that key.
            if row.dpop_jkt.is_some() && row.dpop_jkt != jkt {
                return Ok(Outcome::Refused(
                    "the DPoP key is not the one the authorization request was bound to",
                ));
            }
            diesel::insert_into(token_families::table)
                .values((
                    token_families::id.eq(&row.family_id),
                    token_families::client_id.eq(&row.client_id),
                    token_families::citizen_id.eq(&row.citizen_id),
                    token_families::created_at.eq(now),
                    token_families::dpop_jkt.eq(&jkt),
                ))
                .execute(conn)?;
            let grant = Grant {
                grant_type: "authorization_code",
                family_id: row.family_id,
                client: client.clone(),
                citizen_id: row.citizen_id,
                scope: Scopes::parse(&row.scope),
                nonce: row.nonce,
                auth_time: row.auth_time,
                amr: row.amr,
                acr: row.acr,
                jkt,
                keep_refresh: None,
                refresh_until: now + self.inner.config.refresh_absolute_ttl,
            };
            Ok(Outcome::Issued(Box::new(
                self.issue_tokens(conn, &grant, &signers, ev)?,
            )))
        })?;
        outcome.into_result()
    }
}
