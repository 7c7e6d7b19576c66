//! Revocation (RFC 7009) and introspection (RFC 7662).

use super::*;

impl Provider {
    /// Revokes a refresh token or a citizen's access token of the authenticated client,
    /// with the whole grant it belongs to. Unknown tokens, tokens of other clients and
    /// self-contained client-credentials tokens are answered as success without effect,
    /// as RFC 7009 §2.2 asks.
    pub async fn revoke(&self, auth: ClientAuth, token: String) -> Result<()> {
        self.run(move |this, ev| {
            let client = this.inner.db.with(|conn| this.authenticate(conn, &auth))?;
            let now = this.inner.clock.now();
            let family = this.family_of(&token)?;
            let Some(family) = family else {
                return this.revoke_client_token(&client, &token, ev);
            };
            this.audited_tx(ev, |conn, ev| {
                let owner: Option<(String, String)> = token_families::table
                    .find(&family)
                    .select((token_families::client_id, token_families::citizen_id))
                    .get_result(conn)
                    .optional()?;
                if let Some((client_id, citizen_id)) = owner.filter(|(c, _)| *c == client.id) {
                    Self::revoke_family(conn, &family, now, "revoked by the client")?;
                    ev.push(
                        Event::new("token.revoked", Audited::Success)
                            .client(client_id)
                            .citizen(citizen_id),
                    );
                }
                Ok(())
            })
        })
        .await
    }

    /// RFC 7009 for an access token with no grant behind it (client_credentials): remembered
    /// as revoked until it expires, so the APIs and introspection refuse it; anything else
    /// (another client's token, not ours) is ignored, as the RFC asks.
    fn revoke_client_token(&self, client: &Client, token: &str, ev: &mut Vec<Event>) -> Result<()> {
        let cfg = &self.inner.config;
        let Ok(claims) =
            self.inner
                .keys
                .verify::<AccessClaims>(token, "at+jwt", &cfg.issuer, &cfg.issuer)
        else {
            return Ok(());
        };
        if claims.fid.is_some() || claims.client_id != client.id {
            return Ok(());
        }
        self.audited_tx(ev, |conn, ev| {
            if !Self::access_revoked(conn, &claims.jti)? {
                diesel::insert_into(jti_records::table)
                    .values((
                        jti_records::key.eq(Self::revoked_access_key(&claims.jti)),
                        jti_records::expires_at.eq(claims.exp),
                    ))
                    .execute(conn)?;
                ev.push(
                    Event::new("token.revoked", Audited::Success)
                        .client(&client.id)
                        .detail("client_credentials"),
                );
            }
            Ok(())
        })
    }

    /// The key under which a revoked access token without a grant (a client_credentials
    /// token) is remembered until it expires.
    fn revoked_access_key(jti: &str) -> String {
        token_hash(&format!("revoked-access\0{jti}"))
    }

    /// Whether a client_credentials access token was revoked by its client.
    pub(super) fn access_revoked(conn: &mut DbConnection, jti: &str) -> Result<bool> {
        let n: i64 = jti_records::table
            .find(Self::revoked_access_key(jti))
            .count()
            .get_result(conn)?;
        Ok(n > 0)
    }

    /// The grant a token belongs to: a refresh token by its hash, an access token by its
    /// verified `fid` claim.
    fn family_of(&self, token: &str) -> Result<Option<String>> {
        let by_refresh: Option<String> = self.inner.db.with(|conn| {
            Ok(refresh_tokens::table
                .find(token_hash(token))
                .select(refresh_tokens::family_id)
                .get_result(conn)
                .optional()?)
        })?;
        if by_refresh.is_some() {
            return Ok(by_refresh);
        }
        let cfg = &self.inner.config;
        match self
            .inner
            .keys
            .verify::<AccessClaims>(token, "at+jwt", &cfg.issuer, &cfg.issuer)
        {
            Ok(claims) => Ok(claims.fid),
            Err(Error::InvalidToken) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// RFC 7662 introspection for the authenticated client: its own tokens only; anything
    /// else is `{"active": false}`.
    pub async fn introspect(&self, auth: ClientAuth, token: String) -> Result<Value> {
        let this = self.clone();
        blocking(move || {
            let client = this.inner.db.with(|conn| this.authenticate(conn, &auth))?;
            let inactive = json!({ "active": false });
            let now = this.inner.clock.now();
            let cfg = &this.inner.config;
            if let Ok(claims) =
                this.inner
                    .keys
                    .verify::<AccessClaims>(&token, "at+jwt", &cfg.issuer, &cfg.issuer)
            {
                if claims.client_id != client.id {
                    return Ok(inactive);
                }
                // A registration or audit token is active only where the APIs accept it.
                if Scopes::parse(&claims.scope).needs_key_binding() {
                    let keys_set_at: Option<i64> = this.inner.db.with(|conn| {
                        Ok(clients::table
                            .find(&client.id)
                            .select(clients::keys_set_at)
                            .get_result(conn)?)
                    })?;
                    if !super::access::key_bound_current(&claims, client.uses_keys(), keys_set_at) {
                        return Ok(inactive);
                    }
                }
                if claims.fid.is_none()
                    && this
                        .inner
                        .db
                        .with(|conn| Self::access_revoked(conn, &claims.jti))?
                {
                    return Ok(inactive);
                }
                if let Some(fid) = &claims.fid {
                    let revoked: Option<Option<i64>> = this.inner.db.with(|conn| {
                        Ok(token_families::table
                            .find(fid)
                            .select(token_families::revoked_at)
                            .get_result(conn)
                            .optional()?)
                    })?;
                    if !matches!(revoked, Some(None)) {
                        return Ok(inactive);
                    }
                }
                let mut answer = json!({
                    "active": true,
                    "token_type": if claims.cnf.is_some() { "DPoP" } else { "Bearer" },
                    "scope": claims.scope,
                    "client_id": claims.client_id,
                    "sub": claims.sub,
                    "iss": claims.iss,
                    "aud": claims.aud,
                    "iat": claims.iat,
                    "exp": claims.exp,
                });
                // RFC 9449 §6.2: a resource server learns the key the token is bound to.
                if let Some(cnf) = claims.cnf {
                    answer["cnf"] = cnf;
                }
                return Ok(answer);
            }
            let row: Option<(String, i64, Option<i64>, String)> = this.inner.db.with(|conn| {
                Ok(refresh_tokens::table
                    .find(token_hash(&token))
                    .select((
                        refresh_tokens::family_id,
                        refresh_tokens::expires_at,
                        refresh_tokens::used_at,
                        refresh_tokens::scope,
                    ))
                    .get_result(conn)
                    .optional()?)
            })?;
            let Some((family, expires_at, used_at, scope)) = row else {
                return Ok(inactive);
            };
            let fam: Option<FamilyRow> = this.inner.db.with(|conn| {
                Ok(token_families::table
                    .find(&family)
                    .get_result(conn)
                    .optional()?)
            })?;
            match fam {
                Some(f)
                    if f.client_id == client.id
                        && f.revoked_at.is_none()
                        && used_at.is_none()
                        && expires_at > now =>
                {
                    let sub = this.subject(&client.sector, &f.citizen_id);
                    Ok(json!({
                        "active": true,
                        "token_type": "refresh_token",
                        "scope": scope,
                        "client_id": client.id,
                        "sub": sub,
                        "iss": cfg.issuer,
                        "exp": expires_at,
                    }))
                }
                _ => Ok(inactive),
            }
        })
        .await
    }
}
