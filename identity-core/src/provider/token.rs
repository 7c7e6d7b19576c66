//! The token endpoint (RFC 6749 §3.2): client authentication, the DPoP key, the dispatch to
//! the grant modules, and what the grants share: the revocation of a reused grant and the
//! signing of access and ID tokens (`issue_tokens`).

use super::*;

impl Provider {
    /// The token endpoint: authenticates the client and runs the grant.
    pub async fn token(&self, auth: ClientAuth, input: TokenInput) -> Result<TokenResponse> {
        if let Some(answer) = self.remembered_grant(&auth, &input).await {
            return answer;
        }
        self.run(move |this, ev| this.token_blocking(auth, input, ev))
            .await
    }

    fn token_blocking(
        &self,
        auth: ClientAuth,
        input: TokenInput,
        ev: &mut Vec<Event>,
    ) -> Result<TokenResponse> {
        let claimed_id = match &auth {
            ClientAuth::Secret { id, .. } | ClientAuth::None { id } => id.clone(),
            ClientAuth::Assertion { id, assertion, .. } => id
                .clone()
                .or_else(|| crate::client_auth::unverified_issuer(assertion))
                .unwrap_or_default(),
        };
        let client = match self.inner.db.with(|conn| self.authenticate(conn, &auth)) {
            Ok(c) => c,
            Err(Error::InvalidClient) => {
                // Only a registered id goes into the permanent log; anything else a caller
                // typed stays out of it.
                let known = self
                    .inner
                    .db
                    .with(|conn| Self::client(conn, &claimed_id))?
                    .is_some();
                let event = Event::new("client.authentication", Audited::Failure);
                ev.push(if known {
                    event.client(claimed_id)
                } else {
                    event.detail("unknown client")
                });
                return Err(Error::InvalidClient);
            }
            Err(e) => return Err(e),
        };
        let url = format!("{}/token", self.inner.config.issuer);
        let jkt = match &input.dpop {
            Some(p) => Some(self.check_dpop(p, "POST", &url, None)?.jkt),
            None if client.fapi => {
                return Err(Error::InvalidDpopProof(
                    "this e-service must send a DPoP proof (FAPI 2.0)".into(),
                ))
            }
            None => None,
        };
        let grant_type = input.grant_type.clone().unwrap_or_default();
        let result = match grant_type.as_str() {
            "authorization_code" => self.code_grant(client.clone(), input, jkt, ev),
            "refresh_token" => self.refresh_grant(client.clone(), input, jkt, ev),
            "client_credentials" => self.client_credentials_grant(client.clone(), input, jkt, ev),
            "" => Err(Error::InvalidRequest(
                "the grant_type parameter is missing".into(),
            )),
            _ => Err(Error::UnsupportedGrantType),
        };
        if let Err(Error::InvalidGrant(why)) = &result {
            ev.push(
                Event::new("token.refused", Audited::Failure)
                    .client(&client.id)
                    .detail(format!("{grant_type}: {why}")),
            );
        }
        result
    }

    /// A reused code or refresh token: the whole grant is revoked, and the audit log says so.
    pub(super) fn revoke_reused(
        conn: &mut DbConnection,
        ev: &mut Vec<Event>,
        kind: &'static str,
        family_id: &str,
        client_id: &str,
        citizen_id: &str,
        now: i64,
    ) -> Result<()> {
        let reason = if kind == "code.reuse" {
            "authorization code reused"
        } else {
            "refresh token reused"
        };
        Self::revoke_family(conn, family_id, now, reason)?;
        ev.push(
            Event::new(kind, Audited::Failure)
                .client(client_id)
                .citizen(citizen_id)
                .detail("grant revoked"),
        );
        Ok(())
    }

    pub(super) fn revoke_family(
        conn: &mut DbConnection,
        family_id: &str,
        now: i64,
        reason: &str,
    ) -> Result<()> {
        diesel::update(token_families::table.find(family_id))
            .filter(token_families::revoked_at.is_null())
            .set((
                token_families::revoked_at.eq(now),
                token_families::revoked_reason.eq(reason),
            ))
            .execute(conn)?;
        Ok(())
    }

    /// The keys a client's tokens are signed with, loaded before any transaction so that
    /// signing never waits for a second pooled connection while holding one.
    pub(super) fn signers(&self, client: &Client) -> Result<Signers> {
        let (access, id) = self
            .inner
            .keys
            .signer_pair(SigningAlg::Es256, client.id_token_alg)?;
        Ok(Signers { access, id })
    }

    pub(super) fn issue_tokens(
        &self,
        conn: &mut DbConnection,
        grant: &Grant,
        signers: &Signers,
        ev: &mut Vec<Event>,
    ) -> Result<TokenResponse> {
        ev.push(
            Event::new("token.issued", Audited::Success)
                .client(&grant.client.id)
                .citizen(&grant.citizen_id)
                .detail(format!("{} {}", grant.grant_type, grant.scope)),
        );
        let cfg = &self.inner.config;
        let now = self.inner.clock.now();
        let sub = self.subject(&grant.client.sector, &grant.citizen_id);
        let amr: Vec<String> = grant.amr.split(' ').map(str::to_owned).collect();
        let access = AccessClaims {
            iss: cfg.issuer.clone(),
            sub: sub.clone(),
            aud: cfg.issuer.clone(),
            client_id: grant.client.id.clone(),
            scope: grant.scope.to_string(),
            iat: now,
            exp: now + cfg.access_token_ttl,
            jti: random_token(),
            auth_time: Some(grant.auth_time),
            acr: Some(grant.acr.clone()),
            amr: Some(amr.clone()),
            fid: Some(grant.family_id.clone()),
            cnf: grant.jkt.as_deref().map(crate::dpop::confirmation),
        };
        let access_token = signers.access.sign("at+jwt", &access)?;
        let mut id = json!({
            "iss": cfg.issuer,
            "sub": sub,
            "aud": grant.client.id,
            "azp": grant.client.id,
            "iat": now,
            "exp": now + cfg.id_token_ttl,
            "auth_time": grant.auth_time,
            "acr": grant.acr,
            "amr": amr,
            "at_hash": at_hash(grant.client.id_token_alg, &access_token),
        });
        if let Some(n) = &grant.nonce {
            id["nonce"] = json!(n);
        }
        let id_token = signers.id.sign("JWT", &id)?;
        // OpenID Connect Core §11: a refresh token only for offline_access, which the
        // request asked for, the client may have and the citizen consented to (the grant's
        // scope is all three).
        let offline = grant.scope.has("offline_access");
        let refresh = match &grant.keep_refresh {
            _ if !offline => None,
            Some(kept) => Some(kept.clone()),
            None => {
                let refresh = random_token();
                diesel::insert_into(refresh_tokens::table)
                    .values((
                        refresh_tokens::token_hash.eq(token_hash(&refresh)),
                        refresh_tokens::family_id.eq(&grant.family_id),
                        refresh_tokens::scope.eq(grant.scope.to_string()),
                        refresh_tokens::auth_time.eq(grant.auth_time),
                        refresh_tokens::amr.eq(&grant.amr),
                        refresh_tokens::acr.eq(&grant.acr),
                        refresh_tokens::created_at.eq(now),
                        refresh_tokens::expires_at
                            .eq((now + cfg.refresh_token_ttl).min(grant.refresh_until)),
                    ))
                    .execute(conn)?;
                Some(refresh)
            }
        };
        Ok(TokenResponse {
            access_token,
            token_type: if grant.jkt.is_some() {
                "DPoP"
            } else {
                "Bearer"
            },
            expires_in: cfg.access_token_ttl,
            id_token: Some(id_token),
            refresh_token: refresh,
            scope: grant.scope.to_string(),
        })
    }
}

pub(super) struct Signers {
    access: Signer,
    id: Signer,
}

/// What a grant's transaction decided. A refusal is a value, not an `Err`, so that the
/// revocation it may have written commits.
pub(super) enum Outcome {
    Issued(Box<TokenResponse>),
    Refused(&'static str),
}

impl Outcome {
    pub(super) fn into_result(self) -> Result<TokenResponse> {
        match self {
            Outcome::Issued(t) => Ok(*t),
            Outcome::Refused(why) => Err(Error::InvalidGrant(why)),
        }
    }
}
