//! Client administration: registering e-services (their redirect, logout and signing URIs,
//! keys, scopes), changing and removing them, and reading a client as registered now.

use super::*;

impl Provider {
    /// Registers an e-service; returns it and, for a confidential client, its secret
    /// (shown once: only a keyed hash is stored).
    pub async fn register_client(&self, new: NewClient) -> Result<(Client, Option<ClientSecret>)> {
        self.run(move |this, ev| {
            let (client, secret) = this.register_client_blocking(new)?;
            ev.push(
                Event::new("client.registered", Audited::Success)
                    .client(&client.id)
                    .detail(if client.is_confidential() {
                        "confidential"
                    } else {
                        "public"
                    }),
            );
            Ok((client, secret))
        })
        .await
    }

    fn register_client_blocking(&self, new: NewClient) -> Result<(Client, Option<ClientSecret>)> {
        if new.name.trim().is_empty() || new.department.trim().is_empty() {
            return Err(Error::InvalidRequest(
                "name and department are required".into(),
            ));
        }
        // A back-end-only client (an auditor, a department's signing back end) needs no
        // redirect URI; one that logs citizens in does.
        let wants_login =
            Scopes::parse(new.scopes.as_deref().unwrap_or(DEFAULT_CLIENT_SCOPES)).has("openid");
        if new.redirect_uris.is_empty() && wants_login {
            return Err(Error::InvalidRequest(
                "at least one redirect URI is required".into(),
            ));
        }
        for uri in new
            .redirect_uris
            .iter()
            .chain(&new.post_logout_redirect_uris)
            .chain(&new.backchannel_logout_uri)
            .chain(&new.signing_return_uris)
            .chain(&new.signing_callback_uris)
        {
            check_redirect_uri(uri)?;
        }
        let alg = SigningAlg::parse(new.id_token_alg.as_deref().unwrap_or("ES256"))?;
        let id = new.id.unwrap_or_else(crate::crypto::random_name);
        // At most 100, so that an audit detail naming an officer (`client/officer`, the
        // officer at most 64) after its 30-character prefix is never cut at 200.
        if id.is_empty() || id.len() > 100 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidRequest(
                "client id must be 1-100 visible ASCII characters".into(),
            ));
        }
        // The audit log writes an office's call as `client/officer` and the command line as
        // `cli:uid-N/USER`: a client id with a `/` or that prefix could read as either.
        if id.contains('/') || id.starts_with("cli:") {
            return Err(Error::InvalidRequest(
                "a client id has no '/' and does not begin with 'cli:'".into(),
            ));
        }
        if let Some(jwks) = &new.jwks {
            crate::client_auth::parse_client_jwks(jwks)?;
        }
        if let Some(uri) = &new.jwks_uri {
            check_redirect_uri(uri)?;
            if new.jwks.is_some() {
                return Err(Error::InvalidRequest(
                    "register the keys (jwks) or where they are published (jwks_uri), not both"
                        .into(),
                ));
            }
        }
        if new.fapi && new.jwks.is_none() && new.jwks_uri.is_none() {
            return Err(Error::InvalidRequest(
                "a FAPI client authenticates with private_key_jwt: register its public keys (jwks)"
                    .into(),
            ));
        }
        if Scopes::parse(new.scopes.as_deref().unwrap_or_default()).needs_key_binding()
            && new.jwks.is_none()
            && new.jwks_uri.is_none()
        {
            return Err(Error::InvalidRequest(
                "a registration or audit client authenticates with private_key_jwt: register its public keys (jwks)"
                    .into(),
            ));
        }
        // A client with registered keys authenticates with them, never with a secret.
        let secret = (!new.public && new.jwks.is_none() && new.jwks_uri.is_none()).then(|| {
            new.secret
                .clone()
                .unwrap_or_else(|| ClientSecret::new(random_token()))
        });
        let secret_hash = secret.as_ref().map(|s| {
            self.inner
                .secrets
                .hash(&[id.as_bytes(), s.expose().as_bytes()])
        });
        if let Some(acr) = &new.min_acr {
            if acr_rank(acr).is_none() {
                return Err(Error::InvalidRequest(format!(
                    "min_acr must be {ACR_PASSWORD} or {ACR_PASSKEY}"
                )));
            }
        }
        let scopes = Scopes::parse(new.scopes.as_deref().unwrap_or(DEFAULT_CLIENT_SCOPES));
        let sector = new.sector.unwrap_or_else(|| new.department.clone());
        let client = Client {
            id: id.clone(),
            name: new.name,
            department: new.department,
            sector,
            secret_hash,
            redirect_uris: new.redirect_uris,
            scopes,
            id_token_alg: alg,
            min_acr: new.min_acr,
            jwks: new.jwks,
            fapi: new.fapi,
            post_logout_redirect_uris: new.post_logout_redirect_uris,
            backchannel_logout_uri: new.backchannel_logout_uri,
            jwks_uri: new.jwks_uri,
            signing_return_uris: new.signing_return_uris,
            signing_callback_uris: new.signing_callback_uris,
        };
        let now = self.inner.clock.now();
        self.inner.db.with(|conn| {
            diesel::insert_into(clients::table)
                .values((
                    clients::id.eq(&client.id),
                    clients::name.eq(&client.name),
                    clients::department.eq(&client.department),
                    clients::sector.eq(&client.sector),
                    clients::secret_hash.eq(&client.secret_hash),
                    clients::redirect_uris
                        .eq(serde_json::to_string(&client.redirect_uris)
                            .map_err(Error::internal)?),
                    clients::scopes.eq(client.scopes.to_string()),
                    clients::id_token_alg.eq(client.id_token_alg.as_str()),
                    clients::created_at.eq(now),
                    clients::min_acr.eq(&client.min_acr),
                    clients::jwks.eq(&client.jwks),
                    clients::fapi.eq(i32::from(client.fapi)),
                    clients::post_logout_redirect_uris
                        .eq(stored_uri_list(&client.post_logout_redirect_uris)),
                    clients::backchannel_logout_uri.eq(&client.backchannel_logout_uri),
                    clients::jwks_uri.eq(&client.jwks_uri),
                    clients::signing_return_uris.eq(stored_uri_list(&client.signing_return_uris)),
                    clients::signing_callback_uris
                        .eq(stored_uri_list(&client.signing_callback_uris)),
                ))
                .execute(conn)
                .map_err(|e| match Error::from(e) {
                    Error::Conflict(_) => {
                        Error::Conflict(format!("client {} already exists", client.id))
                    }
                    other => other,
                })
        })?;
        Ok((client, secret))
    }

    /// Every registered client.
    pub fn list_clients(&self) -> Result<Vec<Client>> {
        self.inner.db.with(|conn| {
            let rows: Vec<ClientRow> = clients::table.order(clients::id).load(conn)?;
            rows.into_iter().map(ClientRow::into_client).collect()
        })
    }

    /// Replaces where a client's signing requests may send the citizen back and POST their
    /// outcome (for clients registered before these were required, and for changes), each
    /// URI checked as a redirect URI is. Audited.
    pub async fn set_signing_uris(
        &self,
        id: &str,
        return_uris: Vec<String>,
        callback_uris: Vec<String>,
    ) -> Result<()> {
        for uri in return_uris.iter().chain(&callback_uris) {
            check_redirect_uri(uri)?;
        }
        self.update_client(id, "signing-uris", move |conn, id| {
            Ok(diesel::update(clients::table.find(id))
                .set((
                    clients::signing_return_uris.eq(stored_uri_list(&return_uris)),
                    clients::signing_callback_uris.eq(stored_uri_list(&callback_uris)),
                ))
                .execute(conn)?)
        })
        .await
    }

    /// One change to a registered client, `change` returning the rows it updated, and its
    /// `client.updated` event (`what` changed) in the same transaction; `NotFound` for an
    /// unknown id. The copy in memory is dropped (the generation stamp moves as well).
    async fn update_client(
        &self,
        id: &str,
        what: &'static str,
        change: impl FnOnce(&mut DbConnection, &str) -> Result<usize> + Send + 'static,
    ) -> Result<()> {
        let id = id.to_owned();
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                if change(conn, &id)? == 0 {
                    return Err(Error::NotFound);
                }
                this.inner.client_cache.forget(&id);
                ev.push(
                    Event::new("client.updated", Audited::Success)
                        .client(&id)
                        .detail(what),
                );
                Ok(())
            })
        })
        .await
    }

    /// Gives a client public keys in place of its secret (or new keys): from then on it
    /// authenticates only with `private_key_jwt`. This is how a registration or audit
    /// client registered with a secret, before keys were required, is moved over without
    /// being removed. Audited.
    pub async fn set_client_keys(
        &self,
        id: &str,
        jwks: Option<String>,
        jwks_uri: Option<String>,
    ) -> Result<()> {
        match (&jwks, &jwks_uri) {
            (Some(set), None) => {
                crate::client_auth::parse_client_jwks(set)?;
            }
            (None, Some(uri)) => check_redirect_uri(uri)?,
            _ => {
                return Err(Error::InvalidRequest(
                    "give the keys (jwks) or where they are published (jwks_uri), one of them"
                        .into(),
                ))
            }
        }
        let now = self.inner.clock.now();
        self.update_client(id, "keys", move |conn, id| {
            Ok(diesel::update(clients::table.find(id))
                .set((
                    clients::jwks.eq(&jwks),
                    clients::jwks_uri.eq(&jwks_uri),
                    clients::secret_hash.eq(None::<String>),
                    // Tokens fetched with the old keys (perhaps by whoever leaked them)
                    // end now: the APIs refuse key-bound tokens issued before this.
                    clients::keys_set_at.eq(now),
                ))
                .execute(conn)?)
        })
        .await
    }

    /// Removes a client and, by cascade, its codes, grants and consents.
    pub async fn remove_client(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.run(move |this, ev| {
            let n = this
                .inner
                .db
                .with(|conn| Ok(diesel::delete(clients::table.find(&id)).execute(conn)?))?;
            // Not needed for correctness (the generation has moved), but spares a grant
            // from memory that would only be refused at its commit.
            this.inner.client_cache.forget(&id);
            if n == 0 {
                return Err(Error::NotFound);
            }
            ev.push(Event::new("client.removed", Audited::Success).client(id));
            Ok(())
        })
        .await
    }

    pub(super) fn client(conn: &mut DbConnection, id: &str) -> Result<Option<Client>> {
        clients::table
            .find(id)
            .get_result::<ClientRow>(conn)
            .optional()?
            .map(ClientRow::into_client)
            .transpose()
    }
}
