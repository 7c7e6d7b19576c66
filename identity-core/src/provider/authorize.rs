//! Authorization requests (RFC 6749 §4.1, OpenID Connect Core §3.1.2): the checks of a
//! request, pushed requests (PAR, RFC 9126), the decision between login, consent and a code,
//! and the pending interaction a login or consent page works on.

use super::*;

impl Provider {
    /// Validates an authorization request and decides the next step. Errors before the
    /// redirect URI is trusted come back as `Err` (the server shows a page); errors after
    /// it come back as a redirect to the client.
    pub async fn authorize(
        &self,
        input: AuthorizeInput,
        session: Option<SessionToken>,
    ) -> Result<Step> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let input = match &input.request_uri {
                    Some(uri) => this.pushed_request(conn, uri, input.client_id.as_deref())?,
                    None => input,
                };
                this.authorize_blocking(conn, input, session.as_ref(), ev)
            })
        })
        .await
    }

    /// A pushed authorization request (RFC 9126): the client authenticates, the request is
    /// checked exactly as `/authorize` would check it, and its parameters wait under a
    /// single-use `request_uri` bound to the client. Returns it and its lifetime.
    pub async fn push_authorization_request(
        &self,
        auth: ClientAuth,
        input: AuthorizeInput,
        dpop: Option<String>,
    ) -> Result<(String, i64)> {
        self.run(move |this, _| {
            let client = this.inner.db.with(|conn| this.authenticate(conn, &auth))?;
            // A DPoP proof sent with PAR binds the request (and so its code) to that key,
            // as the dpop_jkt parameter does (RFC 9449 §10); the two must agree.
            let mut input = input;
            if let Some(proof) = &dpop {
                let url = format!("{}/par", this.inner.config.issuer);
                let p = this.check_dpop(proof, "POST", &url, None)?;
                if input.dpop_jkt.as_ref().is_some_and(|j| *j != p.jkt) {
                    return Err(Error::InvalidDpopProof(
                        "dpop_jkt does not match the DPoP proof".into(),
                    ));
                }
                input.dpop_jkt = Some(p.jkt);
            }
            if input.client_id.as_deref().is_some_and(|c| c != client.id) {
                return Err(Error::InvalidRequest(
                    "client_id does not match the authenticated client".into(),
                ));
            }
            if input.request_uri.is_some() {
                return Err(Error::InvalidRequest(
                    "request_uri cannot be pushed; push the parameters themselves".into(),
                ));
            }
            let mut input = AuthorizeInput {
                client_id: Some(client.id.clone()),
                ..input
            };
            input.pushed = true;
            // The same checks as /authorize, run in a transaction that is always rolled
            // back: one set of rules, and nothing left behind by the check.
            let mut outcome = None;
            let _ = this.inner.db.tx(|conn| -> Result<()> {
                outcome = Some(this.authorize_blocking(conn, input.clone(), None, &mut Vec::new()));
                Err(Error::internal("validation only"))
            });
            match outcome.ok_or_else(|| Error::internal("PAR validation did not run"))?? {
                Step::Redirect(url) => {
                    let q = |name: &str| {
                        url::Url::parse(&url).ok().and_then(|u| {
                            u.query_pairs()
                                .find(|(k, _)| k == name)
                                .map(|(_, v)| v.into_owned())
                        })
                    };
                    let description = q("error_description").unwrap_or_default();
                    return Err(match q("error").as_deref() {
                        Some("invalid_scope") => Error::InvalidScope(description),
                        _ => Error::InvalidRequest(description),
                    });
                }
                Step::Interact(_) => {}
            }
            let uri = format!("urn:ietf:params:oauth:request_uri:{}", random_token());
            let now = this.inner.clock.now();
            let params = serde_json::to_string(&input).map_err(Error::internal)?;
            this.inner.db.with(|conn| {
                diesel::insert_into(par_requests::table)
                    .values((
                        par_requests::request_uri_hash.eq(token_hash(&uri)),
                        par_requests::client_id.eq(&client.id),
                        par_requests::params.eq(&params),
                        par_requests::expires_at.eq(now + this.inner.config.par_ttl),
                    ))
                    .execute(conn)?;
                Ok(())
            })?;
            Ok((uri, this.inner.config.par_ttl))
        })
        .await
    }

    /// Takes a pushed request for `/authorize`: once, before it expires, and only for the
    /// client that pushed it. Any other parameter of the browser's request is ignored.
    fn pushed_request(
        &self,
        conn: &mut DbConnection,
        uri: &str,
        client_id: Option<&str>,
    ) -> Result<AuthorizeInput> {
        let refused = || {
            Error::InvalidRequest(
                "the request_uri is unknown, expired, already used or not this e-service's; start again at the e-service".into(),
            )
        };
        let hash = token_hash(uri);
        let row: Option<(String, String, i64)> = par_requests::table
            .find(&hash)
            .select((
                par_requests::client_id,
                par_requests::params,
                par_requests::expires_at,
            ))
            .get_result(conn)
            .optional()?;
        let Some((owner, params, expires_at)) = row else {
            return Err(refused());
        };
        if client_id != Some(owner.as_str()) {
            return Err(refused());
        }
        // Single use: deleted whether or not it is still valid.
        let taken = diesel::delete(par_requests::table.find(&hash)).execute(conn)?;
        if taken != 1 || expires_at <= self.inner.clock.now() {
            return Err(refused());
        }
        let mut input: AuthorizeInput = serde_json::from_str(&params).map_err(Error::internal)?;
        input.pushed = true;
        Ok(input)
    }

    fn authorize_blocking(
        &self,
        conn: &mut DbConnection,
        input: AuthorizeInput,
        token: Option<&SessionToken>,
        ev: &mut Vec<Event>,
    ) -> Result<Step> {
        for p in ["client_id", "redirect_uri"] {
            if input.repeated.iter().any(|r| r == p) {
                return Err(Error::InvalidRequest(format!(
                    "the {p} parameter is repeated"
                )));
            }
        }
        let client_id = input
            .client_id
            .ok_or_else(|| Error::InvalidRequest("the client_id parameter is missing".into()))?;
        let client = Self::client(conn, &client_id)?.ok_or_else(|| {
            Error::InvalidRequest("the client_id is not a registered e-service".into())
        })?;
        let redirect_uri = input
            .redirect_uri
            .ok_or_else(|| Error::InvalidRequest("the redirect_uri parameter is missing".into()))?;
        if !client.redirect_uris.contains(&redirect_uri) {
            return Err(Error::InvalidRequest(
                "the redirect_uri is not registered for this e-service".into(),
            ));
        }
        // From here on the redirect URI is trusted: errors go back to the client.
        let state = input.state.clone();
        let fail = |error: &str, description: &str| {
            let mut params = vec![("error", error), ("error_description", description)];
            if let Some(s) = &state {
                params.push(("state", s));
            }
            params.push(("iss", &self.inner.config.issuer));
            Ok(Step::Redirect(redirect_with(&redirect_uri, &params)))
        };
        if input.request.is_some() {
            return fail("request_not_supported", "request objects are not supported");
        }
        if input.request_uri.is_some() {
            return fail("invalid_request_uri", "the request_uri cannot be used here");
        }
        if client.fapi && !input.pushed {
            return fail(
                "invalid_request",
                "this e-service must push its authorization requests (PAR)",
            );
        }
        if let Some(p) = input.repeated.first() {
            return fail("invalid_request", &format!("the {p} parameter is repeated"));
        }
        match input.response_type.as_deref() {
            None => return fail("invalid_request", "the response_type parameter is missing"),
            Some("code") => {}
            Some(_) => {
                return fail(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                )
            }
        }
        let requested = Scopes::parse_supported(input.scope.as_deref().unwrap_or(""));
        if !requested.has("openid") {
            return fail("invalid_scope", "the scope must include openid");
        }
        // The claims parameter asks for claims one by one; each is released under the scope
        // that carries it, so it joins the request's scopes (and so the consent page), and
        // an `acr` it asks for counts like acr_values.
        let (claim_scopes, claims_acr) = match input.claims.as_deref().map(claims_request) {
            None => (Scopes::default(), None),
            Some(Ok(found)) => found,
            Some(Err(why)) => return fail("invalid_request", why),
        };
        let scope = requested.union(&claim_scopes).intersect(&client.scopes);
        if !scope.has("openid") {
            return fail(
                "invalid_scope",
                "this e-service is not registered for openid",
            );
        }
        let Some(challenge) = input.code_challenge else {
            return fail(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            );
        };
        if input.code_challenge_method.as_deref() != Some("S256") {
            return fail(
                "invalid_request",
                "only the S256 code_challenge_method is supported",
            );
        }
        if challenge.len() != 43 || !is_pkce_value(&challenge) {
            return fail(
                "invalid_request",
                "the code_challenge is not a base64url SHA-256 value",
            );
        }
        let prompt = input.prompt.clone().unwrap_or_default();
        let prompts: Vec<&str> = prompt.split(' ').filter(|s| !s.is_empty()).collect();
        if prompts
            .iter()
            .any(|p| !matches!(*p, "none" | "login" | "consent" | "select_account"))
        {
            return fail("invalid_request", "unknown prompt value");
        }
        if prompts.contains(&"none") && prompts.len() > 1 {
            return fail(
                "invalid_request",
                "prompt=none cannot be combined with other values",
            );
        }
        let max_age = match input.max_age.as_deref() {
            None => None,
            Some(s) => match s.parse::<i64>() {
                Ok(v) if v >= 0 => Some(v),
                _ => return fail("invalid_request", "max_age must be a non-negative integer"),
            },
        };
        for (name, value) in [
            ("state", &input.state),
            ("nonce", &input.nonce),
            ("login_hint", &input.login_hint),
            ("ui_locales", &input.ui_locales),
            ("acr_values", &input.acr_values),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > 512) {
                return fail(
                    "invalid_request",
                    &format!("the {name} parameter is too long"),
                );
            }
        }
        let now = self.inner.clock.now();
        let request = AuthRequest {
            id: random_token(),
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.clone(),
            scope: scope.to_string(),
            state: input.state,
            nonce: input.nonce,
            code_challenge: challenge,
            prompt: (!prompts.is_empty()).then(|| prompts.join(" ")),
            max_age,
            login_hint: input.login_hint,
            ui_locales: input.ui_locales,
            created_at: now,
            expires_at: now + self.inner.config.auth_request_ttl,
            acr_required: stronger_acr(
                stronger_acr(
                    client.min_acr.as_deref(),
                    input.acr_values.as_deref().and_then(acr_from_values),
                ),
                claims_acr,
            )
            .map(str::to_owned),
            dpop_jkt: input.dpop_jkt,
        };
        let mut session = self.session_blocking(conn, token)?;
        // id_token_hint names the citizen the client expects: one of our ID tokens (expired
        // ones too) for this client. A session of someone else does not count, so
        // prompt=none answers login_required rather than a code for the wrong person.
        if let Some(hint) = &input.id_token_hint {
            let claims = match self
                .inner
                .keys
                .verify_id_token_hint(hint, &self.inner.config.issuer)
            {
                Ok(c) => c,
                Err(_) => return fail("invalid_request", "the id_token_hint is not valid"),
            };
            if claims.get("aud").and_then(Value::as_str) != Some(client.id.as_str()) {
                return fail(
                    "invalid_request",
                    "the id_token_hint was issued to another client",
                );
            }
            let expected = session
                .as_ref()
                .map(|s| self.subject(&client.sector, &s.citizen_id));
            if expected.as_deref() != claims.get("sub").and_then(Value::as_str) {
                session = None;
            }
        }
        match self.decide(conn, &request, &client, session.as_ref())? {
            Decision::Login | Decision::Consent(_) if prompts.contains(&"none") => {
                let error = match self.decide(conn, &request, &client, session.as_ref())? {
                    Decision::Login => "login_required",
                    _ => "consent_required",
                };
                fail(error, "the citizen must interact with the identity service")
            }
            Decision::Login | Decision::Consent(_) => {
                diesel::insert_into(auth_requests::table)
                    .values(&request)
                    .execute(conn)?;
                Ok(Step::Interact(request.id))
            }
            Decision::Issue(session) => Ok(Step::Redirect(
                self.issue_code(conn, &request, &session, ev)?,
            )),
        }
    }

    pub(super) fn decide(
        &self,
        conn: &mut DbConnection,
        request: &AuthRequest,
        client: &Client,
        session: Option<&Session>,
    ) -> Result<Decision> {
        let now = self.inner.clock.now();
        let prompt = request.prompt.as_deref().unwrap_or("");
        let Some(session) = session else {
            return Ok(Decision::Login);
        };
        // A login made for this request removes `login` from its prompt (see `login`), so
        // a remaining `login` means the citizen has not logged in since the request began.
        if prompt.split(' ').any(|p| p == "login") {
            return Ok(Decision::Login);
        }
        if request.max_age.is_some_and(|m| now - session.auth_time > m) {
            return Ok(Decision::Login);
        }
        // Step-up: a session below the level this request needs logs in again, stronger.
        if let Some(required) = &request.acr_required {
            if acr_rank(&session.acr) < acr_rank(required) {
                return Ok(Decision::Login);
            }
        }
        let wanted = Scopes::parse(&request.scope);
        let consent: Option<(String, i64)> = consents::table
            .find((&session.citizen_id, &client.id))
            .select((consents::scopes, consents::granted_at))
            .get_result(conn)
            .optional()?;
        let needs = match &consent {
            None => true,
            Some((scopes, granted_at)) => {
                !Scopes::parse(scopes).covers(&wanted)
                    || (prompt.split(' ').any(|p| p == "consent")
                        && *granted_at < request.created_at)
            }
        };
        if needs {
            return Ok(Decision::Consent(
                wanted.iter().map(str::to_owned).collect(),
            ));
        }
        Ok(Decision::Issue(session.clone()))
    }

    pub(super) fn pending(
        conn: &mut DbConnection,
        id: &str,
        now: i64,
    ) -> Result<(AuthRequest, Client)> {
        let request: AuthRequest = auth_requests::table
            .find(id)
            .get_result(conn)
            .optional()?
            .filter(|r: &AuthRequest| r.expires_at > now)
            .ok_or_else(|| {
                Error::InvalidRequest(
                    "this sign-in request has expired or was already used; return to the e-service and start again".into(),
                )
            })?;
        let client = Self::client(conn, &request.client_id)?.ok_or(Error::NotFound)?;
        Ok((request, client))
    }

    /// What the interaction page of a pending request should show.
    pub async fn interaction(
        &self,
        id: String,
        token: Option<SessionToken>,
    ) -> Result<Interaction> {
        self.run(move |this, ev| {
            this.audited_tx(ev, |conn, ev| {
                let now = this.inner.clock.now();
                let (request, client) = Self::pending(conn, &id, now)?;
                let session = this.session_blocking(conn, token.as_ref())?;
                Ok(
                    match this.decide(conn, &request, &client, session.as_ref())? {
                        Decision::Login => Interaction::Login {
                            client_name: client.name,
                            department: client.department,
                            login_hint: request.login_hint,
                            ui_locales: request.ui_locales,
                            passkey_required: request.acr_required.as_deref() == Some(ACR_PASSKEY),
                            redirect_uri: request.redirect_uri,
                        },
                        Decision::Consent(scopes) => Interaction::Consent {
                            client_name: client.name,
                            department: client.department,
                            scopes,
                            ui_locales: request.ui_locales,
                            redirect_uri: request.redirect_uri,
                        },
                        Decision::Issue(session) => {
                            Self::claim(conn, &request, now)?;
                            Interaction::Redirect(this.issue_code(conn, &request, &session, ev)?)
                        }
                    },
                )
            })
        })
        .await
    }

    /// Checks that a pending request exists (before a login attempt is counted against it);
    /// returns its redirect URI.
    pub async fn check_pending(&self, id: String) -> Result<String> {
        let this = self.clone();
        blocking(move || {
            this.inner.db.with(|conn| {
                Self::pending(conn, &id, this.inner.clock.now()).map(|(r, _)| r.redirect_uri)
            })
        })
        .await
    }
}

/// The scopes and the `acr` a `claims` parameter asks for. Claims we do not know are
/// ignored, as OpenID Connect allows; a parameter that is not a JSON object is refused.
fn claims_request(text: &str) -> std::result::Result<(Scopes, Option<&'static str>), &'static str> {
    let v: Value = serde_json::from_str(text).map_err(|_| "the claims parameter is not JSON")?;
    let obj = v
        .as_object()
        .ok_or("the claims parameter must be a JSON object")?;
    let mut scopes = Vec::new();
    let mut acr = None;
    for target in ["userinfo", "id_token"] {
        let Some(claims) = obj.get(target) else {
            continue;
        };
        let claims = claims
            .as_object()
            .ok_or("each member of the claims parameter must be an object")?;
        for (name, request) in claims {
            let scope = match name.as_str() {
                "name" | "name#zh-Hant" | "birthdate" | "gender" => "profile",
                "email" | "email_verified" => "email",
                "phone_number" | "phone_number_verified" => "phone",
                "address" => "address",
                "identity_document_number" => "identity_document",
                "acr" => {
                    let values: Vec<&str> = request
                        .get("values")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .or_else(|| {
                            request
                                .get("value")
                                .and_then(Value::as_str)
                                .map(|v| vec![v])
                        })
                        .unwrap_or_default();
                    acr = stronger_acr(acr, acr_from_values(&values.join(" ")));
                    continue;
                }
                _ => continue,
            };
            scopes.push(scope);
        }
    }
    Ok((Scopes::parse(&scopes.join(" ")), acr))
}

pub(super) enum Decision {
    Login,
    Consent(Vec<String>),
    Issue(Session),
}
