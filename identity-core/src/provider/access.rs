//! Presented access tokens: UserInfo (OpenID Connect Core §5.3) and the checks the JSON APIs
//! run on their tokens (scope, DPoP binding, the client and citizen as they are now).

use super::*;

/// Whether a token for a key-bound scope (registration, audit) still counts: bound to a
/// DPoP key, its client still proving itself by keys, and issued since those keys were set
/// (`client keys` replaced a leaked key: what was fetched with it ends).
pub(super) fn key_bound_current(
    claims: &AccessClaims,
    uses_keys: bool,
    keys_set_at: Option<i64>,
) -> bool {
    let bound = claims.cnf.as_ref().and_then(|c| c.get("jkt")).is_some();
    bound && uses_keys && keys_set_at.is_none_or(|set| claims.iat >= set)
}

impl Provider {
    /// The claims UserInfo releases for an access token: only scopes the token carries
    /// and the citizen still consents to.
    pub async fn userinfo(&self, access_token: String) -> Result<Value> {
        self.userinfo_presented(crate::dpop::Presented::bearer(access_token))
            .await
    }

    /// UserInfo for a token as it was presented: a DPoP-bound token needs the `DPoP`
    /// scheme and a proof by its key for this request.
    /// Every answer is a release of the citizen's data, audited as `data.released` with
    /// the client, the citizen and the names of the claims (never their values); the
    /// answer goes out only once that event is durable.
    pub async fn userinfo_presented(&self, presented: crate::dpop::Presented) -> Result<Value> {
        self.run(move |this, ev| {
            let claims = this.presented_claims(&presented)?;
            let fid = claims.fid.ok_or(Error::InvalidToken)?;
            let scope = Scopes::parse(&claims.scope);
            if !scope.has("openid") {
                return Err(Error::InvalidToken);
            }
            let (out, family) = this.inner.db.with(|conn| {
                let family: FamilyRow = token_families::table
                    .find(&fid)
                    .get_result(conn)
                    .optional()?
                    .ok_or(Error::InvalidToken)?;
                if family.revoked_at.is_some() {
                    return Err(Error::InvalidToken);
                }
                type Row = (
                    String,
                    String,
                    Option<String>,
                    i32,
                    Option<String>,
                    i32,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                );
                let citizen: Row = citizens::table
                    .find(&family.citizen_id)
                    .filter(citizens::status.eq("active"))
                    .select((
                        citizens::name_en,
                        citizens::name_zh,
                        citizens::email,
                        citizens::email_verified,
                        citizens::phone,
                        citizens::phone_verified,
                        citizens::address,
                        citizens::date_of_birth,
                        citizens::gender,
                    ))
                    .get_result(conn)
                    .optional()?
                    .ok_or(Error::InvalidToken)?;
                let consented: Scopes = consents::table
                    .find((&family.citizen_id, &family.client_id))
                    .select(consents::scopes)
                    .get_result::<String>(conn)
                    .optional()?
                    .map(|s| Scopes::parse(&s))
                    .unwrap_or_default();
                let released = scope.intersect(&consented);
                let (
                    name_en,
                    name_zh,
                    email,
                    email_verified,
                    phone,
                    phone_verified,
                    address,
                    birthdate,
                    gender,
                ) = citizen;
                let mut out = Map::new();
                out.insert("sub".into(), json!(claims.sub));
                if released.has("profile") {
                    out.insert("name".into(), json!(name_en));
                    out.insert("name#zh-Hant".into(), json!(name_zh));
                    if let Some(b) = birthdate {
                        out.insert("birthdate".into(), json!(b));
                    }
                    if let Some(g) = gender {
                        out.insert("gender".into(), json!(g));
                    }
                }
                // Released only to a client registered for it (the token's scope is
                // already limited to the client's) and with the citizen's consent.
                if released.has("identity_document") {
                    if let Some(doc) = this.document_of(conn, &family.citizen_id)? {
                        out.insert("identity_document_number".into(), json!(doc));
                    }
                }
                if released.has("email") {
                    if let Some(e) = email {
                        out.insert("email".into(), json!(e));
                        out.insert("email_verified".into(), json!(email_verified != 0));
                    }
                }
                if released.has("phone") {
                    if let Some(p) = phone {
                        out.insert("phone_number".into(), json!(p));
                        out.insert("phone_number_verified".into(), json!(phone_verified != 0));
                    }
                }
                if released.has("address") {
                    if let Some(a) = address {
                        out.insert("address".into(), json!({ "formatted": a }));
                    }
                }
                Ok((out, family))
            })?;
            let names: Vec<&str> = out.keys().map(String::as_str).collect();
            ev.push(
                Event::new("data.released", Audited::Success)
                    .client(&family.client_id)
                    .citizen(&family.citizen_id)
                    .detail(format!("userinfo:{}", names.join("+"))),
            );
            Ok(Value::Object(out))
        })
        .await
    }

    /// Checks a bearer access token for an API scope (the auditor's `audit`, later the
    /// signing API's `signing`); returns the client it was issued to.
    pub async fn require_scope(
        &self,
        presented: crate::dpop::Presented,
        scope: &'static str,
    ) -> Result<String> {
        self.api_caller(presented, scope)
            .await
            .map(|(client, _)| client)
    }

    /// A sender-constrained token (`cnf.jkt`) is accepted only with the `DPoP` scheme and a
    /// fresh proof by the same key for this method and URL, carrying the token's `ath`.
    fn check_binding(
        &self,
        claims: &AccessClaims,
        presented: &crate::dpop::Presented,
    ) -> Result<()> {
        let Some(jkt) = claims
            .cnf
            .as_ref()
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str)
        else {
            // A confirmation of any other kind is one this service never issues.
            return match claims.cnf {
                None => Ok(()),
                Some(_) => Err(Error::InvalidToken),
            };
        };
        let proof = presented
            .proof
            .as_deref()
            .filter(|_| presented.dpop_scheme)
            .ok_or(Error::InvalidToken)?;
        let p = self
            .check_dpop(
                proof,
                &presented.method,
                &presented.url,
                Some(&presented.token),
            )
            .map_err(|e| match e {
                Error::UseDpopNonce { .. } => e,
                _ => Error::InvalidToken,
            })?;
        if p.jkt != jkt {
            return Err(Error::InvalidToken);
        }
        Ok(())
    }

    /// The claims of a presented access token: its signature, type, issuer and audience
    /// verified, and its DPoP binding checked against the request.
    fn presented_claims(&self, presented: &crate::dpop::Presented) -> Result<AccessClaims> {
        let cfg = &self.inner.config;
        let claims: AccessClaims =
            self.inner
                .keys
                .verify(&presented.token, "at+jwt", &cfg.issuer, &cfg.issuer)?;
        self.check_binding(&claims, presented)?;
        Ok(claims)
    }

    /// Like [`Provider::require_scope`], and also the citizen when the token is a citizen's
    /// (issued by a login, not by client credentials); a citizen's token of a revoked grant
    /// or an inactive account is refused.
    pub async fn api_caller(
        &self,
        presented: crate::dpop::Presented,
        scope: &'static str,
    ) -> Result<(String, Option<String>)> {
        let this = self.clone();
        blocking(move || {
            let claims = this.presented_claims(&presented)?;
            if !Scopes::parse(&claims.scope).has(scope) {
                return Err(Error::InsufficientScope(scope));
            }
            // The client as registered now, not as it was when the token was issued: a
            // removed client, or one that lost the scope, loses access at once on every
            // replica; and a token its client revoked is refused.
            let citizen = this.inner.db.with(|conn| {
                let registered: Option<(String, bool, Option<i64>)> = clients::table
                    .find(&claims.client_id)
                    .select((
                        clients::scopes,
                        clients::jwks
                            .is_not_null()
                            .or(clients::jwks_uri.is_not_null()),
                        clients::keys_set_at,
                    ))
                    .get_result(conn)
                    .optional()?;
                let Some((scopes, uses_keys, keys_set_at)) = registered else {
                    return Err(Error::InvalidToken);
                };
                let scopes = Scopes::parse(&scopes);
                if !scopes.has(scope) {
                    return Err(Error::InvalidToken);
                }
                // A registration or audit token counts only bound to a DPoP key (checked
                // above against the proof), only while its client still proves itself by
                // keys, and only if issued since those keys were set.
                if Scopes::parse(scope).needs_key_binding()
                    && !key_bound_current(&claims, uses_keys, keys_set_at)
                {
                    return Err(Error::InvalidToken);
                }
                let Some(fid) = &claims.fid else {
                    if Self::access_revoked(conn, &claims.jti)? {
                        return Err(Error::InvalidToken);
                    }
                    return Ok(None);
                };
                let family: FamilyRow = token_families::table
                    .find(&fid)
                    .get_result(conn)
                    .optional()?
                    .ok_or(Error::InvalidToken)?;
                if family.revoked_at.is_some() {
                    return Err(Error::InvalidToken);
                }
                Ok(Some(family.citizen_id))
            })?;
            Ok((claims.client_id, citizen))
        })
        .await
    }
}
