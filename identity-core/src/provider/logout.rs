//! Logout: RP-initiated (OpenID Connect RP-Initiated Logout 1.0) and back-channel
//! (OpenID Connect Back-Channel Logout 1.0).
//!
//! Ending a session yields a signed `logout_token` for every e-service the citizen shares
//! information with that registered a back-channel URI; the server delivers them.

use diesel::prelude::*;
use serde_json::{json, Value};

use super::{Provider, SessionToken};
use crate::audit::{Event, Outcome as Audited};
use crate::crypto::{random_token, token_hash};
use crate::error::{Error, Result};
use crate::model::Client;
use crate::schema::*;
use crate::storage::DbConnection;

/// A logout token to POST to an e-service's back-channel URI.
#[derive(Clone, Debug)]
pub struct LogoutNotice {
    /// The e-service's back-channel logout URI.
    pub uri: String,
    /// The signed `logout_token`.
    pub logout_token: String,
}

/// The end-session request's parameters.
#[derive(Clone, Debug, Default)]
pub struct EndSessionInput {
    /// `id_token_hint`.
    pub id_token_hint: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `post_logout_redirect_uri`.
    pub post_logout_redirect_uri: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// The citizen confirmed on our page (a CSRF-checked form).
    pub confirmed: bool,
}

/// What follows an end-session request.
#[derive(Clone, Debug)]
pub enum EndSession {
    /// Logged out (or there was no session): go here, if anywhere, and deliver these.
    Done {
        /// The client's registered post-logout URI with `state`, when one was asked for.
        redirect: Option<String>,
        /// Back-channel logout tokens to deliver.
        notices: Vec<LogoutNotice>,
    },
    /// Ask the citizen first: no valid hint proved that this e-service speaks for them.
    Confirm {
        /// The e-service asking, if known.
        client_name: Option<String>,
    },
}

fn refused(why: &str) -> Error {
    Error::InvalidRequest(why.to_owned())
}

impl Provider {
    /// Deletes a session and makes the logout tokens of its citizen's e-services.
    pub(super) fn end_session_blocking(
        &self,
        conn: &mut DbConnection,
        token: &SessionToken,
        ev: &mut Vec<Event>,
    ) -> Result<Vec<LogoutNotice>> {
        let hash = token_hash(token.expose());
        let citizen: Option<String> = sessions::table
            .find(&hash)
            .select(sessions::citizen_id)
            .get_result(conn)
            .optional()?;
        diesel::delete(sessions::table.find(&hash)).execute(conn)?;
        let Some(citizen) = citizen else {
            return Ok(Vec::new());
        };
        ev.push(Event::new("logout", Audited::Success).citizen(&citizen));
        let ids: Vec<String> = consents::table
            .filter(consents::citizen_id.eq(&citizen))
            .select(consents::client_id)
            .load(conn)?;
        let mut notices = Vec::new();
        for id in ids {
            let Some(client) = Self::client(conn, &id)? else {
                continue;
            };
            let Some(uri) = client.backchannel_logout_uri.clone() else {
                continue;
            };
            notices.push(LogoutNotice {
                uri,
                logout_token: self.logout_token(&client, &citizen)?,
            });
        }
        Ok(notices)
    }

    /// A back-channel logout token: `typ` `logout+jwt`, the client's pairwise `sub`, the
    /// logout event, no `nonce`, a short life.
    fn logout_token(&self, client: &Client, citizen_id: &str) -> Result<String> {
        let now = self.inner.clock.now();
        let claims = json!({
            "iss": self.inner.config.issuer,
            "aud": client.id,
            "iat": now,
            "exp": now + 120,
            "jti": random_token(),
            "sub": self.subject(&client.sector, citizen_id),
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        });
        self.inner
            .keys
            .sign(client.id_token_alg, "logout+jwt", &claims)
    }

    /// RP-initiated logout. The post-logout URI must be one the client registered, the
    /// client known from a valid `id_token_hint` (ours, possibly expired) or `client_id`.
    /// A hint naming the session's citizen logs out at once; otherwise the citizen is
    /// asked, so that no site can log a citizen out by a link.
    pub async fn end_session(
        &self,
        input: EndSessionInput,
        session: Option<SessionToken>,
    ) -> Result<EndSession> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let hint: Option<Value> = match &input.id_token_hint {
                    Some(h) => Some(
                        this.inner
                            .keys
                            .verify_id_token_hint(h, &this.inner.config.issuer)
                            .map_err(|_| {
                                refused("the id_token_hint is not an ID token of this service")
                            })?,
                    ),
                    None => None,
                };
                let hinted_client = hint
                    .as_ref()
                    .and_then(|h| h.get("aud"))
                    .and_then(|a| a.as_str().map(str::to_owned));
                let client_id = match (&input.client_id, &hinted_client) {
                    (Some(c), Some(h)) if c != h => {
                        return Err(refused("client_id does not match the id_token_hint"))
                    }
                    (Some(c), _) => Some(c.clone()),
                    (None, h) => h.clone(),
                };
                let client =
                    match &client_id {
                        Some(id) => Some(Self::client(conn, id)?.ok_or_else(|| {
                            refused("the client_id is not a registered e-service")
                        })?),
                        None => None,
                    };
                let redirect = match (&input.post_logout_redirect_uri, &client) {
                    (None, _) => None,
                    (Some(_), None) => {
                        return Err(refused(
                            "post_logout_redirect_uri needs an id_token_hint or a client_id",
                        ))
                    }
                    (Some(uri), Some(c)) => {
                        if !c.post_logout_redirect_uris.contains(uri) {
                            return Err(refused(
                                "the post_logout_redirect_uri is not registered for this e-service",
                            ));
                        }
                        let mut params = Vec::new();
                        if let Some(s) = &input.state {
                            params.push(("state", s.as_str()));
                        }
                        Some(super::redirect_with(uri, &params))
                    }
                };
                let Some(token) = session else {
                    return Ok(EndSession::Done {
                        redirect,
                        notices: Vec::new(),
                    });
                };
                let current = this.session_blocking(conn, Some(&token))?;
                let Some(current) = current else {
                    return Ok(EndSession::Done {
                        redirect,
                        notices: Vec::new(),
                    });
                };
                let hint_names_citizen = match (&hint, &client) {
                    (Some(h), Some(c)) => {
                        h.get("sub").and_then(Value::as_str)
                            == Some(this.subject(&c.sector, &current.citizen_id).as_str())
                    }
                    _ => false,
                };
                if !hint_names_citizen && !input.confirmed {
                    return Ok(EndSession::Confirm {
                        client_name: client.map(|c| c.name),
                    });
                }
                let notices = this.end_session_blocking(conn, &token, ev)?;
                Ok(EndSession::Done { redirect, notices })
            })
        })
        .await
    }
}
