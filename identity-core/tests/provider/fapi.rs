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
    new.fapi = true;
    let (registered, secret) = f.provider.register_client(new).await.unwrap();
    assert!(secret.is_none(), "a key-based client gets no secret");
    assert!(registered.fapi);
    let now = f.clock.now();
    let auth = |assertion: String| ClientAuth::Assertion {
        id: Some("dept-backend".into()),
        assertion,
    };
    let token = |a: ClientAuth| {
        let p = f.provider.clone();
        async move { p.token(a, client_credentials()).await }
    };

    // A good assertion, with the issuer as `aud` (a string or an array member), once.
    let good = key.sign("k1", &assertion_claims("dept-backend", now));
    assert!(token(auth(good.clone())).await.is_ok());
    assert!(
        matches!(token(auth(good)).await, Err(Error::InvalidClient)),
        "a jti is single-use"
    );
    let mut array = assertion_claims("dept-backend", now);
    array["aud"] = serde_json::json!(["https://other.example", "https://idp.example"]);
    assert!(token(auth(key.sign("k1", &array))).await.is_ok());
    // Without client_id, the assertion's iss names the client.
    let anonymous = ClientAuth::Assertion {
        id: None,
        assertion: key.sign("k1", &assertion_claims("dept-backend", now)),
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
    }
}

pub async fn pushed_authorization_requests(backend: Backend) {
    let f = fixture(backend).await;
    let key = fapi_client(&f, "dept-fapi").await;
    let now = f.clock.now();
    let push = |input: AuthorizeInput| {
        let p = f.provider.clone();
        let auth = assertion_auth(&key, "dept-fapi", now);
        async move { p.push_authorization_request(auth, input).await }
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
        let input = TokenInput {
            code_verifier: verifier.map(str::to_owned),
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
        )
        .await;
    assert!(matches!(r, Err(Error::InvalidClient)));
    f.clock.advance(61);
    assert!(matches!(
        f.provider.authorize(by_uri(&late, "dept-fapi"), None).await,
        Err(Error::InvalidRequest(_))
    ));
}
