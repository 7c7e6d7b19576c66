//! `private_key_jwt` client authentication, with the checks the FAPI 2.0 conformance plan
//! runs against it.

use super::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

pub struct ClientKey {
    pkcs8: Vec<u8>,
    pub jwks: String,
}

impl ClientKey {
    pub fn new(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
        let point = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }]})
        .to_string();
        ClientKey { pkcs8, jwks }
    }

    pub fn sign(&self, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }
}

/// Standard claims of an assertion by `client` to the issuer, valid for a minute.
pub fn assertion_claims(client: &str, now: i64) -> serde_json::Value {
    serde_json::json!({
        "iss": client, "sub": client, "aud": "https://idp.example",
        "iat": now, "exp": now + 60,
        "jti": identity_core::crypto::random_token(),
    })
}

fn client_credentials() -> TokenInput {
    TokenInput {
        grant_type: Some("client_credentials".into()),
        scope: Some("signing".into()),
        ..Default::default()
    }
}

pub async fn private_key_jwt_and_its_refusals(backend: Backend) {
    let f = fixture(backend).await;
    let key = ClientKey::new("k1");
    let mut new = client("dept-backend", "Dept J", false);
    new.jwks = Some(key.jwks.clone());
    let (registered, secret) = f.provider.register_client(new).await.unwrap();
    assert!(secret.is_none(), "a key-based client gets no secret");
    assert!(registered.is_confidential());
    let now = f.clock.now();
    let auth = |assertion: String| ClientAuth::Assertion {
        id: Some("dept-backend".into()),
        assertion,
        endpoint: "/token",
    };
    let token = |a: ClientAuth| {
        let p = f.provider.clone();
        async move { p.token(a, client_credentials()).await }
    };

    // A good assertion, with the issuer as `aud` (a string or a one-element array), once.
    let good = key.sign("k1", &assertion_claims("dept-backend", now));
    assert!(token(auth(good.clone())).await.is_ok());
    assert!(
        matches!(token(auth(good)).await, Err(Error::InvalidClient)),
        "a jti is single-use"
    );
    let mut array = assertion_claims("dept-backend", now);
    array["aud"] = serde_json::json!(["https://idp.example"]);
    assert!(token(auth(key.sign("k1", &array))).await.is_ok());
    // An array that names another party too is refused (audience injection).
    array["aud"] = serde_json::json!(["https://other.example", "https://idp.example"]);
    array["jti"] = "another".into();
    assert!(matches!(
        token(auth(key.sign("k1", &array))).await,
        Err(Error::InvalidClient)
    ));
    // Without client_id, the assertion's iss names the client.
    let anonymous = ClientAuth::Assertion {
        id: None,
        assertion: key.sign("k1", &assertion_claims("dept-backend", now)),
        endpoint: "/token",
    };
    assert!(token(anonymous).await.is_ok());

    // EnsureClientAssertionWithWrongAudFails and friends.
    let refused = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut c = assertion_claims("dept-backend", now);
        change(&mut c);
        key.sign("k1", &c)
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong aud",
            refused(&|c| c["aud"] = "https://evil.example".into()),
        ),
        (
            "exp 5 minutes in the past",
            refused(&|c| c["exp"] = (now - 300).into()),
        ),
        (
            "no sub",
            refused(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
        ),
        (
            "sub of another client",
            refused(&|c| c["sub"] = "eservice".into()),
        ),
        (
            "exp an hour ahead",
            refused(&|c| c["exp"] = (now + 3600).into()),
        ),
        (
            "iat a minute ahead",
            refused(&|c| c["iat"] = (now + 60).into()),
        ),
        (
            "no jti",
            refused(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
        (
            "another key",
            ClientKey::new("k1").sign("k1", &assertion_claims("dept-backend", now)),
        ),
        ("malformed", "not.a.jwt".into()),
    ];
    for (what, assertion) in cases {
        assert!(
            matches!(token(auth(assertion)).await, Err(Error::InvalidClient)),
            "{what} must be refused"
        );
    }
    // iat within the 10 s skew is accepted.
    let skewed = refused(&|c| c["iat"] = (now + 5).into());
    assert!(token(auth(skewed)).await.is_ok());

    // A key-based client cannot fall back to no authentication, nor another client use
    // its assertion.
    assert!(matches!(
        token(ClientAuth::None {
            id: "dept-backend".into()
        })
        .await,
        Err(Error::InvalidClient)
    ));
    let stolen = ClientAuth::Assertion {
        id: Some("eservice".into()),
        assertion: key.sign("k1", &assertion_claims("dept-backend", now)),
        endpoint: "/token",
    };
    assert!(matches!(token(stolen).await, Err(Error::InvalidClient)));

    // Registration refuses what cannot authenticate safely.
    let mut bad = client("bad-fapi", "Dept K", false);
    bad.fapi = true;
    assert!(matches!(
        f.provider.register_client(bad).await,
        Err(Error::InvalidRequest(_))
    ));
    let mut hmac = client("bad-keys", "Dept K", false);
    hmac.jwks = Some(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.into());
    assert!(matches!(
        f.provider.register_client(hmac).await,
        Err(Error::InvalidRequest(_))
    ));
}

/// A FAPI client with its key, registered in the fixture.
async fn fapi_client(f: &Fixture, id: &str) -> ClientKey {
    let key = ClientKey::new("k1");
    let mut new = client(id, "Dept F", false);
    new.jwks = Some(key.jwks.clone());
    new.fapi = true;
    f.provider.register_client(new).await.unwrap();
    key
}

fn assertion_auth(key: &ClientKey, id: &str, now: i64) -> ClientAuth {
    ClientAuth::Assertion {
        id: Some(id.into()),
        assertion: key.sign("k1", &assertion_claims(id, now)),
        endpoint: "/token",
    }
}

pub async fn pushed_authorization_requests(backend: Backend) {
    let f = fixture(backend).await;
    let key = fapi_client(&f, "dept-fapi").await;
    let now = f.clock.now();
    let push = |input: AuthorizeInput| {
        let p = f.provider.clone();
        let auth = assertion_auth(&key, "dept-fapi", now);
        async move { p.push_authorization_request(auth, input, None).await }
    };
    let by_uri = |uri: &str, client: &str| AuthorizeInput {
        client_id: Some(client.into()),
        request_uri: Some(uri.into()),
        ..Default::default()
    };

    // The whole flow: push, authorize by reference, redeem the code with an assertion.
    let (uri, expires_in) = push(request("dept-fapi")).await.unwrap();
    assert!(uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    assert_eq!(expires_in, 60);
    let session = f.login().await;
    let (code, _) = f
        .code_with(by_uri(&uri, "dept-fapi"), Some(session.clone()))
        .await;
    let redeem = |code: String, verifier: Option<&str>| {
        let p = f.provider.clone();
        let auth = assertion_auth(&key, "dept-fapi", now);
        // A FAPI client proves a DPoP key at the token endpoint (any key: this request
        // was not bound to one).
        let input = TokenInput {
            code_verifier: verifier.map(str::to_owned),
            dpop: Some(DpopKey::new().proof("POST", "https://idp.example/token", None, now)),
            ..code_input(code)
        };
        async move { p.token(auth, input).await }
    };
    assert!(redeem(code, Some(VERIFIER)).await.is_ok());

    // PARAttemptReuseRequestUri: once only.
    assert!(matches!(
        f.provider
            .authorize(by_uri(&uri, "dept-fapi"), Some(session.clone()))
            .await,
        Err(Error::InvalidRequest(_))
    ));
    // PARAttemptToUseExpiredRequestUri.
    let (late, _) = push(request("dept-fapi")).await.unwrap();
    // PAREnsureRequestUriIsBoundToClient.
    let (bound, _) = push(request("dept-fapi")).await.unwrap();
    assert!(matches!(
        f.provider.authorize(by_uri(&bound, "eservice"), None).await,
        Err(Error::InvalidRequest(_))
    ));
    // EnsureUnsignedAuthorizationRequestWithoutUsingParFails.
    assert!(matches!(
        f.provider.authorize(request("dept-fapi"), None).await.unwrap(),
        Step::Redirect(u) if u.contains("error=invalid_request")
    ));
    // PAREnsurePKCERequired, PAREnsurePlainPKCERejected, EnsureResponseTypeTokenFails: the
    // pushed request is checked like any other, and refused at once.
    let mut no_pkce = request("dept-fapi");
    no_pkce.code_challenge = None;
    let mut plain = request("dept-fapi");
    plain.code_challenge_method = Some("plain".into());
    let mut token_type = request("dept-fapi");
    token_type.response_type = Some("token".into());
    for (what, input) in [
        ("no PKCE", no_pkce),
        ("plain PKCE", plain),
        ("response_type=token", token_type),
    ] {
        assert!(
            matches!(push(input).await, Err(Error::InvalidRequest(_))),
            "{what} must be refused"
        );
    }
    // PAREnsurePKCECodeVerifierRequired, PARIncorrectPKCECodeVerifierRejected.
    let (uri, _) = push(request("dept-fapi")).await.unwrap();
    let (code, _) = f
        .code_with(by_uri(&uri, "dept-fapi"), Some(session.clone()))
        .await;
    assert!(redeem(code, None).await.is_err());
    let (uri, _) = push(request("dept-fapi")).await.unwrap();
    let (code, _) = f
        .code_with(by_uri(&uri, "dept-fapi"), Some(session.clone()))
        .await;
    assert!(matches!(
        redeem(
            code,
            Some("wrong-verifier-wrong-verifier-wrong-verifier-00")
        )
        .await,
        Err(Error::InvalidGrant(_))
    ));
    // A pushed request of an unauthenticated caller is refused.
    let r = f
        .provider
        .push_authorization_request(
            ClientAuth::None {
                id: "dept-fapi".into(),
            },
            request("dept-fapi"),
            None,
        )
        .await;
    assert!(matches!(r, Err(Error::InvalidClient)));
    f.clock.advance(61);
    assert!(matches!(
        f.provider.authorize(by_uri(&late, "dept-fapi"), None).await,
        Err(Error::InvalidRequest(_))
    ));
}

/// A client's DPoP key.
pub struct DpopKey {
    key: ClientKey,
    jwk: jsonwebtoken::jwk::Jwk,
}

impl DpopKey {
    pub fn new() -> Self {
        let key = ClientKey::new("dpop");
        let set: serde_json::Value = serde_json::from_str(&key.jwks).unwrap();
        let mut jwk = set["keys"][0].clone();
        for member in ["kid", "use", "alg"] {
            jwk.as_object_mut().unwrap().remove(member);
        }
        DpopKey {
            key,
            jwk: serde_json::from_value(jwk).unwrap(),
        }
    }

    pub fn jkt(&self) -> String {
        identity_core::dpop::thumbprint(&self.jwk).unwrap()
    }

    /// A proof for `method url`, made at `iat`, for `token` when given.
    pub fn proof(&self, method: &str, url: &str, token: Option<&str>, iat: i64) -> String {
        let mut claims = serde_json::json!({
            "jti": identity_core::crypto::random_token(),
            "htm": method, "htu": url, "iat": iat,
        });
        if let Some(t) = token {
            claims["ath"] = identity_core::dpop::access_token_hash(t).into();
        }
        self.signed(&claims, "dpop+jwt")
    }

    pub fn signed(&self, claims: &serde_json::Value, typ: &str) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.into());
        header.jwk = Some(self.jwk.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&self.key.pkcs8)).unwrap()
    }
}

pub async fn dpop_binds_tokens_to_the_clients_key(backend: Backend) {
    let f = fixture(backend).await;
    let key = fapi_client(&f, "dept-fapi").await;
    let now = f.clock.now();
    let dpop = DpopKey::new();
    const PAR: &str = "https://idp.example/par";
    const TOKEN: &str = "https://idp.example/token";
    const USERINFO: &str = "https://idp.example/userinfo";
    let push = |proof: Option<String>| {
        let p = f.provider.clone();
        let auth = assertion_auth(&key, "dept-fapi", now);
        async move {
            p.push_authorization_request(auth, request("dept-fapi"), proof)
                .await
        }
    };
    let by_uri = |uri: &str| AuthorizeInput {
        client_id: Some("dept-fapi".into()),
        request_uri: Some(uri.into()),
        ..Default::default()
    };
    let redeem = |code: String, proof: Option<String>| {
        let p = f.provider.clone();
        let auth = assertion_auth(&key, "dept-fapi", now);
        let input = TokenInput {
            dpop: proof,
            ..code_input(code)
        };
        async move { p.token(auth, input).await }
    };
    let session = f.login().await;

    // The whole FAPI flow: PAR with a proof binds the code; the token request proves the
    // same key; the access token is DPoP-bound and works only with a proof by that key.
    let (uri, _) = push(Some(dpop.proof("POST", PAR, None, now)))
        .await
        .unwrap();
    let (code, _) = f.code_with(by_uri(&uri), Some(session.clone())).await;
    let tokens = redeem(code, Some(dpop.proof("POST", TOKEN, None, now)))
        .await
        .unwrap();
    assert_eq!(tokens.token_type, "DPoP");
    let at = tokens.access_token.clone();
    assert_eq!(jwt_claims(&at)["cnf"]["jkt"], dpop.jkt());
    let seen = f
        .provider
        .introspect(assertion_auth(&key, "dept-fapi", now), at.clone())
        .await
        .unwrap();
    assert_eq!(
        (seen["token_type"].as_str(), seen["cnf"]["jkt"].as_str()),
        (Some("DPoP"), Some(dpop.jkt().as_str())),
        "introspection names the key"
    );
    let present = |scheme_dpop: bool, proof: Option<String>| identity_core::dpop::Presented {
        token: at.clone(),
        dpop_scheme: scheme_dpop,
        proof,
        method: "GET".into(),
        url: USERINFO.into(),
    };
    let good = dpop.proof("GET", USERINFO, Some(&at), now);
    assert!(f
        .provider
        .userinfo_presented(present(true, Some(good.clone())))
        .await
        .is_ok());
    let other = DpopKey::new();
    for (what, presented) in [
        ("replayed proof", present(true, Some(good))),
        ("as a bearer token", present(false, None)),
        (
            "bearer scheme with a proof",
            present(false, Some(dpop.proof("GET", USERINFO, Some(&at), now))),
        ),
        (
            "no ath",
            present(true, Some(dpop.proof("GET", USERINFO, None, now))),
        ),
        (
            "another key",
            present(true, Some(other.proof("GET", USERINFO, Some(&at), now))),
        ),
        (
            "another URL",
            present(true, Some(dpop.proof("GET", TOKEN, Some(&at), now))),
        ),
        (
            "another method",
            present(true, Some(dpop.proof("POST", USERINFO, Some(&at), now))),
        ),
    ] {
        assert!(
            matches!(
                f.provider.userinfo_presented(presented).await,
                Err(Error::InvalidToken)
            ),
            "{what} must be refused"
        );
    }

    // The refresh token is bound too.
    let refresh = |proof: String| {
        let p = f.provider.clone();
        let auth = assertion_auth(&key, "dept-fapi", now);
        let input = TokenInput {
            grant_type: Some("refresh_token".into()),
            refresh_token: tokens.refresh_token.clone(),
            dpop: Some(proof),
            ..Default::default()
        };
        async move { p.token(auth, input).await }
    };
    assert!(matches!(
        refresh(other.proof("POST", TOKEN, None, now)).await,
        Err(Error::InvalidGrant(_))
    ));
    // With its key it refreshes, and (FAPI 2.0, bound) is not rotated: the same token
    // keeps working.
    let first = refresh(dpop.proof("POST", TOKEN, None, now)).await.unwrap();
    assert_eq!(first.refresh_token, tokens.refresh_token);
    assert_eq!(first.token_type, "DPoP");
    assert!(refresh(dpop.proof("POST", TOKEN, None, now)).await.is_ok());

    // EnsureHolderOfKeyRequired: a FAPI client's token request needs a proof.
    let (uri, _) = push(None).await.unwrap();
    let (code, _) = f.code_with(by_uri(&uri), Some(session.clone())).await;
    assert!(matches!(
        redeem(code, None).await,
        Err(Error::InvalidDpopProof(_))
    ));
    // EnsureMismatchedDpopJktFails: bound at PAR to one key, redeemed with another.
    let (uri, _) = push(Some(dpop.proof("POST", PAR, None, now)))
        .await
        .unwrap();
    let (code, _) = f.code_with(by_uri(&uri), Some(session.clone())).await;
    assert!(matches!(
        redeem(code, Some(other.proof("POST", TOKEN, None, now))).await,
        Err(Error::InvalidGrant(_))
    ));
    // DpopNegativeTests: each broken proof is refused at the token endpoint.
    let stale = dpop.proof("POST", TOKEN, None, now - 120);
    let future = dpop.proof("POST", TOKEN, None, now + 60);
    let wrong_typ = dpop.signed(
        &serde_json::json!({"jti": "j1", "htm": "POST", "htu": TOKEN, "iat": now}),
        "JWT",
    );
    let no_jti = dpop.signed(
        &serde_json::json!({"htm": "POST", "htu": TOKEN, "iat": now}),
        "dpop+jwt",
    );
    let replay = dpop.proof("POST", TOKEN, None, now);
    let (uri, _) = push(None).await.unwrap();
    let (code, _) = f.code_with(by_uri(&uri), Some(session.clone())).await;
    assert!(redeem(code, Some(replay.clone())).await.is_ok());
    for (what, proof) in [
        ("stale", stale),
        ("from the future", future),
        ("wrong typ", wrong_typ),
        ("no jti", no_jti),
        ("wrong URL", dpop.proof("POST", USERINFO, None, now)),
        ("wrong method", dpop.proof("GET", TOKEN, None, now)),
        ("replayed", replay),
        ("not a JWT", "nonsense".into()),
    ] {
        let (uri, _) = push(None).await.unwrap();
        let (code, _) = f.code_with(by_uri(&uri), Some(session.clone())).await;
        assert!(
            matches!(
                redeem(code, Some(proof)).await,
                Err(Error::InvalidDpopProof(_))
            ),
            "{what} must be refused"
        );
    }
}

/// A client's key server, as the provider's fetcher sees it.
#[derive(Debug, Default)]
struct KeyServer {
    jwks: std::sync::Mutex<String>,
    calls: std::sync::atomic::AtomicUsize,
}

impl identity_core::client_auth::JwksFetcher for KeyServer {
    fn fetch(&self, uri: &str) -> Result<String, String> {
        assert_eq!(uri, "https://dept.example/jwks.json");
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self.jwks.lock().unwrap().clone())
    }
}

pub async fn published_client_keys_are_fetched_and_cached(backend: Backend) {
    let f = fixture(backend).await;
    let keys = std::sync::Arc::new(KeyServer::default());
    let first = ClientKey::new("k1");
    *keys.jwks.lock().unwrap() = first.jwks.clone();
    let mut cfg = config();
    cfg.jwks_fetcher = Some(keys.clone());
    let provider = Provider::new(f.db.clone(), f.kek.clone(), f.clock.clone(), cfg).unwrap();
    let mut new = client("published", "Dept P", false);
    new.jwks_uri = Some("https://dept.example/jwks.json".into());
    let (_, secret) = provider.register_client(new).await.unwrap();
    assert!(secret.is_none());
    let now = f.clock.now();
    let token = |key: &ClientKey, kid: &str| {
        let p = provider.clone();
        let auth = ClientAuth::Assertion {
            id: Some("published".into()),
            assertion: key.sign(kid, &assertion_claims("published", now)),
            endpoint: "/token",
        };
        async move { p.token(auth, client_credentials()).await }
    };
    let calls = || keys.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert!(token(&first, "k1").await.is_ok());
    assert!(token(&first, "k1").await.is_ok());
    assert_eq!(calls(), 1, "fetched once, then cached");
    // The client rotates its key: within seconds of the last fetch the new key is not seen
    // yet (fetches are rate-limited); a little later the unknown key makes one fresh fetch.
    let second = ClientKey::new("k2");
    *keys.jwks.lock().unwrap() = second.jwks.clone();
    assert!(token(&second, "k2").await.is_err());
    assert_eq!(calls(), 1);
    f.clock.advance(11);
    let now = f.clock.now();
    let token = |key: &ClientKey, kid: &str| {
        let p = provider.clone();
        let auth = ClientAuth::Assertion {
            id: Some("published".into()),
            assertion: key.sign(kid, &assertion_claims("published", now)),
            endpoint: "/token",
        };
        async move { p.token(auth, client_credentials()).await }
    };
    assert!(token(&second, "k2").await.is_ok());
    assert_eq!(calls(), 2);
    // A flood of assertions by unknown keys does not make a fetch each.
    for _ in 0..5 {
        assert!(token(&ClientKey::new("k9"), "k9").await.is_err());
    }
    assert_eq!(calls(), 2, "at most one fetch every few seconds");
    // Registering both forms, or a non-https URI, is refused.
    let mut both = client("both", "Dept P", false);
    both.jwks = Some(first.jwks.clone());
    both.jwks_uri = Some("https://dept.example/jwks.json".into());
    assert!(matches!(
        provider.register_client(both).await,
        Err(Error::InvalidRequest(_))
    ));
    let mut plain = client("plain", "Dept P", false);
    plain.jwks_uri = Some("http://dept.example/jwks.json".into());
    assert!(matches!(
        provider.register_client(plain).await,
        Err(Error::InvalidRequest(_))
    ));
}

pub async fn dpop_nonces_when_required(backend: Backend) {
    let f = fixture(backend).await;
    let mut cfg = config();
    cfg.dpop_nonce_required = true;
    let provider = Provider::new(f.db.clone(), f.kek.clone(), f.clock.clone(), cfg).unwrap();
    let key = ClientKey::new("k1");
    let mut new = client("nonce-client", "Dept N", false);
    new.jwks = Some(key.jwks.clone());
    provider.register_client(new).await.unwrap();
    let dpop = DpopKey::new();
    let token = |nonce: Option<&str>| {
        let p = provider.clone();
        let now = f.clock.now();
        let mut claims = serde_json::json!({
            "jti": identity_core::crypto::random_token(),
            "htm": "POST", "htu": "https://idp.example/token", "iat": now,
        });
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        let auth = ClientAuth::Assertion {
            id: Some("nonce-client".into()),
            assertion: key.sign("k1", &assertion_claims("nonce-client", now)),
            endpoint: "/token",
        };
        let input = TokenInput {
            dpop: Some(dpop.signed(&claims, "dpop+jwt")),
            ..client_credentials()
        };
        async move { p.token(auth, input).await }
    };
    // No nonce: the answer names the one to use (RFC 9449 §8).
    let Err(Error::UseDpopNonce { nonce, resource }) = token(None).await else {
        panic!("a nonce is required")
    };
    assert!(!resource);
    let issued = token(Some(&nonce)).await.unwrap();
    assert_eq!(issued.token_type, "DPoP");
    assert!(matches!(
        token(Some("made-up")).await,
        Err(Error::UseDpopNonce { .. })
    ));
    // A nonce lives five to ten minutes.
    f.clock.advance(700);
    assert!(matches!(
        token(Some(&nonce)).await,
        Err(Error::UseDpopNonce { .. })
    ));
}

/// PS256 and EdDSA assertions verify as well as ES256 ones (keys made like the service's).
pub async fn assertions_in_every_allowed_algorithm(backend: Backend) {
    use identity_core::model::SigningAlg;
    let f = fixture(backend).await;
    for (id, alg, jwt_alg) in [
        ("ed-client", SigningAlg::EdDsa, Algorithm::EdDSA),
        ("ps-client", SigningAlg::Rs256, Algorithm::PS256),
    ] {
        let (der, mut jwk) = identity_core::keys::generate(alg).unwrap();
        jwk["kid"] = "k1".into();
        let mut new = client(id, "Dept A", false);
        new.jwks = Some(serde_json::json!({ "keys": [jwk] }).to_string());
        f.provider.register_client(new).await.unwrap();
        let key = match alg {
            SigningAlg::EdDsa => EncodingKey::from_ed_der(&der),
            _ => EncodingKey::from_rsa_der(&der),
        };
        let mut header = Header::new(jwt_alg);
        header.kid = Some("k1".into());
        let assertion =
            jsonwebtoken::encode(&header, &assertion_claims(id, f.clock.now()), &key).unwrap();
        let r = f
            .provider
            .token(
                ClientAuth::Assertion {
                    id: Some(id.into()),
                    assertion,
                    endpoint: "/token",
                },
                client_credentials(),
            )
            .await;
        assert!(r.is_ok(), "{jwt_alg:?}: {r:?}");
    }
}

/// Registration and audit clients authenticate with `private_key_jwt` and get only
/// DPoP-bound tokens, which count only with a proof and only while the client still
/// proves itself by keys; none of their grants comes from memory (issue 17).
pub async fn registration_and_audit_need_keys_and_dpop(backend: Backend) {
    use diesel::connection::SimpleConnection;
    use identity_core::dpop::Presented;
    let f = fixture(backend).await;
    let now = f.clock.now();
    const TOKEN: &str = "https://idp.example/token";
    const API: &str = "https://idp.example/registration/citizens";
    let sql = |statement: &str| f.db.with(|c| Ok(c.batch_execute(statement)?)).unwrap();
    for (id, scope) in [("office", "registration"), ("auditor", "audit")] {
        // Registered with a secret: refused, and nothing is written.
        let mut c = client(id, "Dept R", false);
        c.redirect_uris = vec![];
        c.scopes = Some(scope.into());
        assert!(
            matches!(
                f.provider.register_client(c.clone()).await,
                Err(Error::InvalidRequest(_))
            ),
            "{scope} with a secret"
        );
        let key = ClientKey::new("k1");
        c.jwks = Some(key.jwks.clone());
        let (_, secret) = f.provider.register_client(c).await.unwrap();
        assert!(secret.is_none());
        let dpop = DpopKey::new();
        let grant = |proof: Option<String>| {
            let p = f.provider.clone();
            let auth = assertion_auth(&key, id, now);
            let input = TokenInput {
                grant_type: Some("client_credentials".into()),
                scope: Some(scope.into()),
                dpop: proof,
                ..Default::default()
            };
            async move { p.token(auth, input).await }
        };
        // Without a proof: no token.
        assert!(
            matches!(grant(None).await, Err(Error::InvalidDpopProof(_))),
            "{scope} without DPoP"
        );
        let t = grant(Some(dpop.proof("POST", TOKEN, None, now)))
            .await
            .unwrap();
        assert_eq!(t.token_type, "DPoP");
        assert_eq!(jwt_claims(&t.access_token)["cnf"]["jkt"], dpop.jkt());
        let at = t.access_token.clone();
        let present = |proof: Option<String>| Presented {
            token: at.clone(),
            dpop_scheme: proof.is_some(),
            proof,
            method: "GET".into(),
            url: API.into(),
        };
        let uses = |presented: Presented| {
            let p = f.provider.clone();
            async move { p.api_caller(presented, scope).await }
        };
        assert!(matches!(
            uses(present(None)).await,
            Err(Error::InvalidToken)
        ));
        assert_eq!(
            uses(present(Some(dpop.proof("GET", API, Some(&at), now))))
                .await
                .unwrap(),
            (id.to_owned(), None)
        );
        // Its keys swapped for a secret behind the provider's back: the bound token it
        // holds opens nothing any more, and the secret gets no token.
        sql(&format!(
            "UPDATE clients SET jwks = NULL, secret_hash = 'x' WHERE id = '{id}'"
        ));
        assert!(matches!(
            uses(present(Some(dpop.proof("GET", API, Some(&at), now)))).await,
            Err(Error::InvalidToken)
        ));
    }

    // Its key replaced (a leak answered with `client keys`): the token fetched with the
    // old key ends at once, even though it is bound to a DPoP key its holder has; a token
    // by the new key works.
    let key = ClientKey::new("k1");
    let mut c = client("office-2", "Dept R", false);
    c.redirect_uris = vec![];
    c.scopes = Some("registration".into());
    c.jwks = Some(key.jwks.clone());
    f.provider.register_client(c).await.unwrap();
    let dpop = DpopKey::new();
    let grant = |key: &ClientKey, at: i64| {
        let p = f.provider.clone();
        let input = TokenInput {
            grant_type: Some("client_credentials".into()),
            scope: Some("registration".into()),
            dpop: Some(dpop.proof("POST", TOKEN, None, at)),
            ..Default::default()
        };
        let auth = assertion_auth(key, "office-2", at);
        async move { p.token(auth, input).await.unwrap().access_token }
    };
    let uses = |at: String, when: i64| {
        let p = f.provider.clone();
        let presented = Presented {
            proof: Some(dpop.proof("GET", API, Some(&at), when)),
            token: at,
            dpop_scheme: true,
            method: "GET".into(),
            url: API.into(),
        };
        async move { p.api_caller(presented, "registration").await }
    };
    let old = grant(&key, now).await;
    assert!(uses(old.clone(), now).await.is_ok());
    let introspected = |by: &ClientKey, at: i64, token: String| {
        let p = f.provider.clone();
        let auth = assertion_auth(by, "office-2", at);
        async move { p.introspect(auth, token).await.unwrap()["active"].clone() }
    };
    assert_eq!(introspected(&key, now, old.clone()).await, true);
    f.clock.advance(1);
    let new_key = ClientKey::new("k1");
    f.provider
        .set_client_keys("office-2", Some(new_key.jwks.clone()), None)
        .await
        .unwrap();
    let later = f.clock.now();
    assert!(matches!(
        uses(old.clone(), later).await,
        Err(Error::InvalidToken)
    ));
    assert_eq!(
        introspected(&new_key, later, old).await,
        false,
        "introspection agrees with the APIs"
    );
    let fresh = grant(&new_key, later).await;
    assert!(uses(fresh, later).await.is_ok());

    // A client given the scope by SQL, with a secret: no token, however often it asks,
    // and never one from memory.
    sql("UPDATE clients SET scopes = 'openid signing registration' WHERE id = 'eservice'");
    let before = f.provider.grants_from_memory();
    for asked in [Some("registration"), None, Some("signing registration")] {
        let input = TokenInput {
            grant_type: Some("client_credentials".into()),
            scope: asked.map(Into::into),
            ..Default::default()
        };
        assert!(
            matches!(
                f.provider.token(f.secret_auth(), input).await,
                Err(Error::UnauthorizedClient(_))
            ),
            "{asked:?}"
        );
    }
    assert_eq!(f.provider.grants_from_memory(), before);
}

/// `set_client_keys`: a client registered with a secret moves to `private_key_jwt`; its
/// secret stops working at once and the change is audited.
pub async fn clients_moved_from_a_secret_to_keys(backend: Backend) {
    let f = fixture(backend).await;
    let now = f.clock.now();
    let key = ClientKey::new("k1");
    let cc = || TokenInput {
        grant_type: Some("client_credentials".into()),
        scope: Some("signing".into()),
        ..Default::default()
    };
    f.provider.token(f.secret_auth(), cc()).await.unwrap();
    for (jwks, uri) in [
        (None, None),
        (Some("{\"keys\": []}".to_owned()), None),
        (
            Some(key.jwks.clone()),
            Some("https://dept.example/jwks".to_owned()),
        ),
        (None, Some("http://dept.example/jwks".to_owned())),
    ] {
        assert!(matches!(
            f.provider.set_client_keys("eservice", jwks, uri).await,
            Err(Error::InvalidRequest(_))
        ));
    }
    assert!(matches!(
        f.provider
            .set_client_keys("nobody", Some(key.jwks.clone()), None)
            .await,
        Err(Error::NotFound)
    ));
    f.provider.token(f.secret_auth(), cc()).await.unwrap();
    f.provider
        .set_client_keys("eservice", Some(key.jwks.clone()), None)
        .await
        .unwrap();
    assert!(matches!(
        f.provider.token(f.secret_auth(), cc()).await,
        Err(Error::InvalidClient)
    ));
    assert!(f
        .provider
        .token(assertion_auth(&key, "eservice", now), cc())
        .await
        .is_ok());
    assert!(f
        .audit_entries()
        .iter()
        .any(|e| e.contains("event=client.updated") && e.contains("keys")));
}
