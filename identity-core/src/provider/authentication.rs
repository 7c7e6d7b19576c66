//! Client authentication at the token, PAR, revocation and introspection endpoints (a secret
//! or `private_key_jwt`), DPoP proofs (RFC 9449) and their nonces, and the single-use `jti`
//! records both share.

use super::*;

impl Provider {
    pub(super) fn authenticate(
        &self,
        conn: &mut DbConnection,
        auth: &ClientAuth,
    ) -> Result<Client> {
        let (id, secret) = match auth {
            ClientAuth::Secret { id, secret } => (id, Some(secret)),
            ClientAuth::None { id } => (id, None),
            ClientAuth::Assertion {
                id,
                assertion,
                endpoint,
            } => return self.authenticate_assertion(conn, id.as_deref(), assertion, endpoint),
        };
        // Read before the client, so that a change in between leaves the copy remembered
        // under the older generation, which a grant from memory then finds out of date.
        // Only a client with a secret is ever remembered.
        let generation = match secret {
            Some(_) => crate::storage::clients_generation(conn)?,
            None => None,
        };
        let client = Self::client(conn, id)?.ok_or(Error::InvalidClient)?;
        // A client with registered keys proves itself with them, and only with them.
        if client.uses_keys() {
            return Err(Error::InvalidClient);
        }
        match (&client.secret_hash, secret) {
            (Some(hash), Some(secret)) => {
                if !self
                    .inner
                    .secrets
                    .verify(&[client.id.as_bytes(), secret.expose().as_bytes()], hash)
                {
                    return Err(Error::InvalidClient);
                }
            }
            (None, None) => {}
            _ => return Err(Error::InvalidClient),
        }
        if let Some(generation) = generation {
            self.inner.client_cache.remember(generation, &client);
        }
        Ok(client)
    }

    /// `private_key_jwt`: the assertion verifies with one of the client's keys, and its
    /// `jti` has not been seen before (recorded until the assertion expires, in the database,
    /// so a replay to another replica is refused too).
    fn authenticate_assertion(
        &self,
        conn: &mut DbConnection,
        id: Option<&str>,
        assertion: &str,
        endpoint: &str,
    ) -> Result<Client> {
        let claimed = crate::client_auth::unverified_issuer(assertion);
        let id = match (id, claimed.as_deref()) {
            (Some(id), _) => id,
            (None, Some(iss)) => iss,
            (None, None) => return Err(Error::InvalidClient),
        };
        let client = Self::client(conn, id)?.ok_or(Error::InvalidClient)?;
        let issuer = &self.inner.config.issuer;
        let endpoint = format!("{issuer}{endpoint}");
        let audience = crate::client_auth::Audience {
            issuer,
            endpoint: &endpoint,
            fapi: client.fapi,
        };
        let now = self.inner.clock.now();
        let checked = match (&client.jwks, &client.jwks_uri) {
            (Some(jwks), _) => {
                crate::client_auth::verify_assertion(assertion, &client.id, jwks, &audience, now)?
            }
            (None, Some(uri)) => {
                // Published keys: the cached set first; on failure (a key the client has
                // just added) fetch again, at most every few seconds, and try once more.
                let cached = self.inner.client_jwks.get(uri, false)?;
                match crate::client_auth::verify_assertion(
                    assertion, &client.id, &cached, &audience, now,
                ) {
                    Ok(c) => c,
                    Err(_) => {
                        let fresh = self.inner.client_jwks.get(uri, true)?;
                        crate::client_auth::verify_assertion(
                            assertion, &client.id, &fresh, &audience, now,
                        )?
                    }
                }
            }
            (None, None) => return Err(Error::InvalidClient),
        };
        self.record_jti(
            conn,
            "client-assertion",
            &client.id,
            &checked.jti,
            checked.exp,
        )?;
        Ok(client)
    }

    /// Verifies a DPoP proof for a request and records its `jti`, so it is used once.
    pub(crate) fn check_dpop(
        &self,
        proof: &str,
        method: &str,
        url: &str,
        access_token: Option<&str>,
    ) -> Result<crate::dpop::Proof> {
        let now = self.inner.clock.now();
        let p = crate::dpop::verify(proof, method, url, access_token, now)?;
        if self.inner.config.dpop_nonce_required
            && !p
                .nonce
                .as_deref()
                .is_some_and(|n| self.dpop_nonce_valid(n, now))
        {
            return Err(Error::UseDpopNonce {
                nonce: self.dpop_nonce(now),
                resource: access_token.is_some(),
            });
        }
        let expires = p.iat + crate::dpop::MAX_AGE + crate::dpop::SKEW;
        self.inner
            .db
            .with(|conn| self.record_jti(conn, "dpop", &p.jkt, &p.jti, expires))
            .map_err(|e| match e {
                Error::InvalidClient => {
                    Error::InvalidDpopProof("the proof was already used".into())
                }
                other => other,
            })?;
        Ok(p)
    }

    /// The current DPoP nonce: a keyed hash of the 5-minute window, so every replica makes
    /// and checks the same ones without storing them.
    pub fn dpop_nonce(&self, now: i64) -> String {
        self.inner
            .dpop_nonces
            .hash(&[(now.div_euclid(300)).to_string().as_bytes()])
    }

    /// A nonce of this window or the last one (a proof made just before the turn).
    fn dpop_nonce_valid(&self, nonce: &str, now: i64) -> bool {
        nonce == self.dpop_nonce(now) || nonce == self.dpop_nonce(now - 300)
    }

    /// Records a single-use `jti` until `expires_at`; a second use is refused.
    pub(crate) fn record_jti(
        &self,
        conn: &mut DbConnection,
        kind: &str,
        issuer: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<()> {
        let key = token_hash(&format!("{kind}\0{issuer}\0{jti}"));
        let fresh = jti_records::table
            .find(&key)
            .count()
            .get_result::<i64>(conn)?
            == 0;
        let inserted = fresh
            && diesel::insert_into(jti_records::table)
                .values((
                    jti_records::key.eq(&key),
                    jti_records::expires_at.eq(expires_at),
                ))
                .execute(conn)
                .is_ok();
        if !inserted {
            return Err(Error::InvalidClient);
        }
        Ok(())
    }
}
