//! The client_credentials grant (RFC 6749 §4.4): an e-service's back end asks for an access
//! token in its own name.
//!
//! It is the grant a busy department's back end repeats most, so a plain one (a secret,
//! no DPoP) is answered from memory: the client as last read, the signing key as cached.
//! Nothing is read from the database on the way, and the request never leaves its async
//! thread until the audit writer has made the grant's event durable. That commit is also
//! where the copy of the client is checked: the event goes in only if the client
//! registrations are still at the generation the copy was read at
//! ([`storage::clients_generation`](crate::storage::clients_generation)), so a client removed
//! or changed by any process, the CLI or another replica, gets no token from a stale copy.
//! Otherwise the grant is decided again from the database, as is every request the fast
//! path does not take (refusals included, which are worded and audited in one place).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{
    asked_within, is_citizen_scope, AccessClaims, ClientAuth, Provider, TokenInput, TokenResponse,
};
use crate::audit::{Event, Outcome as Audited};
use crate::crypto::random_token;
use crate::error::{Error, Result};
use crate::keys::Signer;
use crate::model::{Client, Scopes, SigningAlg};

/// At most this many clients are remembered; past it the memory starts again empty. A
/// client enters it only by authenticating, so the bound is on registrations, not on callers.
const REMEMBERED: usize = 4096;

/// Clients that authenticate with a secret, as last read, with the client registrations'
/// generation read before them.
#[derive(Default)]
pub(super) struct ClientCache {
    clients: RwLock<HashMap<String, (i64, Arc<Client>)>>,
}

impl ClientCache {
    /// Remembers `client`, read at `generation`; only a client the fast path may serve.
    pub(super) fn remember(&self, generation: i64, client: &Client) {
        if client.secret_hash.is_none() || client.uses_keys() || client.fapi {
            return;
        }
        // Every authentication by secret comes here; most find their copy current.
        if self.get(&client.id).is_some_and(|(g, _)| g == generation) {
            return;
        }
        if let Ok(mut clients) = self.clients.write() {
            if clients.len() >= REMEMBERED && !clients.contains_key(&client.id) {
                clients.clear();
            }
            clients.insert(client.id.clone(), (generation, Arc::new(client.clone())));
        }
    }

    /// Forgets `id`, whose copy is out of date.
    pub(super) fn forget(&self, id: &str) {
        if let Ok(mut clients) = self.clients.write() {
            clients.remove(id);
        }
    }

    fn get(&self, id: &str) -> Option<(i64, Arc<Client>)> {
        self.clients.read().ok()?.get(id).cloned()
    }
}

impl Provider {
    /// A client_credentials grant from memory, or `None` when the request takes the full
    /// path: anything but a secret-authenticated grant without DPoP, a client not
    /// remembered, a signing key due for a reload, any refusal, or a client that changed
    /// before the grant's event could commit.
    pub(super) async fn remembered_grant(
        &self,
        auth: &ClientAuth,
        input: &TokenInput,
    ) -> Option<Result<TokenResponse>> {
        let ClientAuth::Secret { id, secret } = auth else {
            return None;
        };
        if input.grant_type.as_deref() != Some("client_credentials") || input.dpop.is_some() {
            return None;
        }

        let (generation, client) = self.inner.client_cache.get(id)?;
        // A registration office's or an auditor's grant (accounts' recovery, the whole log)
        // always reads its client from the database, whatever it asks for.
        if client.scopes.needs_key_binding() {
            return None;
        }
        let hash = client.secret_hash.as_ref()?;
        if !self
            .inner
            .secrets
            .verify(&[client.id.as_bytes(), secret.expose().as_bytes()], hash)
        {
            return None;
        }
        // The cached key only if it was read at the client's generation, which the commit
        // below checks: a key revoked since then moved it.
        let signer = self
            .inner
            .keys
            .cached_signer(SigningAlg::Es256, generation)?;
        let (response, event) = self
            .issue_client_credentials(&client, input.scope.as_deref(), None, &signer)
            .ok()?;
        let (done, written) = tokio::sync::oneshot::channel();
        self.inner
            .audit
            .submit_if_clients_at(generation, &[event], move |r| {
                let _ = done.send(r);
            });
        match written.await {
            Ok(Ok(true)) => {
                self.inner
                    .grants_from_memory
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(Ok(response))
            }
            Ok(Ok(false)) => {
                self.inner.client_cache.forget(id);
                None
            }
            Ok(Err(e)) => Some(Err(e)),
            Err(_) => Some(Err(Error::internal("the audit writer dropped an event"))),
        }
    }

    /// The full path: `client` was just authenticated from the database.
    pub(super) fn client_credentials_grant(
        &self,
        client: Client,
        input: TokenInput,
        jkt: Option<String>,
        ev: &mut Vec<Event>,
    ) -> Result<TokenResponse> {
        let signer = self.inner.keys.signer(SigningAlg::Es256)?;
        let (response, event) =
            self.issue_client_credentials(&client, input.scope.as_deref(), jkt, &signer)?;
        ev.push(event);
        Ok(response)
    }

    /// The token and its audit event; both paths decide here.
    fn issue_client_credentials(
        &self,
        client: &Client,
        asked: Option<&str>,
        jkt: Option<String>,
        signer: &Signer,
    ) -> Result<(TokenResponse, Event)> {
        if !client.is_confidential() {
            return Err(Error::UnauthorizedClient(
                "client_credentials is for confidential clients",
            ));
        }
        let registered = Scopes::parse(
            &client
                .scopes
                .iter()
                .filter(|s| !is_citizen_scope(s))
                .collect::<Vec<_>>()
                .join(" "),
        );
        let scope = asked_within(
            registered,
            asked,
            "the scope is not registered for this client's back end",
        )?;
        if scope.needs_key_binding() {
            // Keys are all such a client can authenticate with, as registration requires;
            // a client given the scope by other means (an older registration, SQL) with a
            // secret gets nothing.
            if !client.uses_keys() {
                return Err(Error::UnauthorizedClient(
                    "a registration or audit client authenticates with private_key_jwt",
                ));
            }
            if jkt.is_none() {
                return Err(Error::InvalidDpopProof(
                    "a registration or audit token is bound to a key: send a DPoP proof".into(),
                ));
            }
        }
        let now = self.inner.clock.now();
        let config = &self.inner.config;
        let claims = AccessClaims {
            iss: config.issuer.clone(),
            sub: client.id.clone(),
            aud: config.issuer.clone(),
            client_id: client.id.clone(),
            scope: scope.to_string(),
            iat: now,
            exp: now + config.access_token_ttl,
            jti: random_token(),
            auth_time: None,
            acr: None,
            amr: None,
            fid: None,
            cnf: jkt.as_deref().map(crate::dpop::confirmation),
        };
        let access_token = signer.sign("at+jwt", &claims)?;
        let event = Event::new("token.issued", Audited::Success)
            .client(&client.id)
            .detail(format!("client_credentials {scope}"));
        Ok((
            TokenResponse {
                access_token,
                token_type: if jkt.is_some() { "DPoP" } else { "Bearer" },
                expires_in: config.access_token_ttl,
                id_token: None,
                refresh_token: None,
                scope: scope.to_string(),
            },
            event,
        ))
    }
}
