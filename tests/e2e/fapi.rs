//! A FAPI 2.0 flow over HTTP against the real server: a client registered on the command
//! line with its JWKS, `private_key_jwt`, a pushed authorization request with a DPoP proof,
//! the login pages, the code redeemed with a DPoP proof, and UserInfo with the bound token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use identity_core::storage::Backend;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::util::*;

pub struct Key {
    pkcs8: Vec<u8>,
    pub jwk: Value,
}

impl Key {
    pub fn new() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
        let p = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])});
        Key { pkcs8, jwk }
    }

    pub fn sign(&self, header: Header, claims: &Value) -> String {
        // The test signs through the same ring provider the server uses.
        identity_core::jwt_ring::install().expect("the ring provider");
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }

    pub fn assertion(&self, client: &str, aud: &str) -> String {
        self.assertion_to(client, aud.into())
    }

    /// An assertion whose `aud` is any JSON value (a string or an array).
    pub fn assertion_to(&self, client: &str, aud: Value) -> String {
        let now = now();
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        self.sign(
            h,
            &json!({"iss": client, "sub": client, "aud": aud, "iat": now, "exp": now + 60,
                    "jti": identity_core::crypto::random_token()}),
        )
    }

    pub fn proof(&self, method: &str, url: &str, token: Option<&str>) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("dpop+jwt".into());
        h.jwk = Some(serde_json::from_value(self.jwk.clone()).unwrap());
        let mut c = json!({"jti": identity_core::crypto::random_token(), "htm": method,
                           "htu": url, "iat": now()});
        if let Some(t) = token {
            c["ath"] = identity_core::dpop::access_token_hash(t).into();
        }
        self.sign(h, &c)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn fapi_flow(backend: Backend) {
    let server = Server::start(backend, &[]).await;
    let client_key = Key::new();
    let mut jwk = client_key.jwk.clone();
    jwk["kid"] = "k1".into();
    let dir = identity_core::storage::testing::tempfile_guard::Dir::new();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, json!({"keys": [jwk]}).to_string()).unwrap();
    let out = server.cli(&[
        "client",
        "add",
        "--id",
        "fapi-rp",
        "--name",
        "FAPI RP",
        "--department",
        "Dept F",
        "--redirect-uri",
        REDIRECT_URI,
        "--jwks",
        jwks_path.to_str().unwrap(),
        "--fapi",
    ]);
    assert!(out.contains("private_key_jwt"), "{out}");
    let dpop = Key::new();
    let (verifier, challenge) = pkce();
    let issuer = server.base.clone();
    let assertion = || client_key.assertion("fapi-rp", &issuer);

    // An unpushed request of a FAPI client is refused.
    let plain = auth_url(&server, &challenge, &[]).replace("demo-eservice", "fapi-rp");
    let r = browser().get(&plain).send().await.unwrap();
    assert!(
        location(&r).contains("error=invalid_request"),
        "{}",
        location(&r)
    );

    // PAR with private_key_jwt and a DPoP proof.
    let par_form = vec![
        ("client_id", "fapi-rp".to_owned()),
        ("response_type", "code".into()),
        ("redirect_uri", REDIRECT_URI.into()),
        ("scope", "openid profile".into()),
        ("state", "fapi-state".into()),
        ("nonce", "fapi-nonce".into()),
        ("code_challenge", challenge.clone()),
        ("code_challenge_method", "S256".into()),
        (
            "client_assertion_type",
            identity_core::client_auth::ASSERTION_TYPE.into(),
        ),
        ("client_assertion", assertion()),
    ];
    let r = http()
        .post(server.url("/par"))
        .header("DPoP", dpop.proof("POST", &server.url("/par"), None))
        .form(&par_form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let pushed: Value = r.json().await.unwrap();
    let request_uri = pushed["request_uri"].as_str().unwrap();
    assert_eq!(pushed["expires_in"], 60);

    // The citizen logs in and consents on the pages, by reference to the pushed request.
    let mut url = url::Url::parse(&server.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "fapi-rp")
        .append_pair("request_uri", request_uri);
    let back = login_and_consent(&server, &browser(), url.as_str(), USERNAME, PASSWORD).await;
    assert_eq!(query(&back, "state").as_deref(), Some("fapi-state"));
    let code = query(&back, "code").unwrap();

    let token_form = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", REDIRECT_URI.into()),
            ("code_verifier", verifier.clone()),
            (
                "client_assertion_type",
                identity_core::client_auth::ASSERTION_TYPE.into(),
            ),
            ("client_assertion", assertion()),
        ]
    };
    // Without a proof: refused, and the code is not spent by the refusal of the client.
    let r = http()
        .post(server.url("/token"))
        .form(&token_form(&code))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "invalid_dpop_proof"
    );
    let r = http()
        .post(server.url("/token"))
        .header("DPoP", dpop.proof("POST", &server.url("/token"), None))
        .form(&token_form(&code))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let tokens: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
    let at = tokens["access_token"].as_str().unwrap();

    // UserInfo: with the DPoP scheme and a proof for this request; never as a bearer token.
    let userinfo = server.url("/userinfo");
    let r = http()
        .get(&userinfo)
        .header("Authorization", format!("DPoP {at}"))
        .header("DPoP", dpop.proof("GET", &userinfo, Some(at)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http().get(&userinfo).bearer_auth(at).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .get(&userinfo)
        .header("Authorization", format!("DPoP {at}"))
        .header("DPoP", Key::new().proof("GET", &userinfo, Some(at)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a proof by another key");

    // A resource server checks the same with the SDK, offline but for the JWKS.
    use identity_sdk::id_token::{AccessTokenVerifier, DpopRequest, TokenError};
    let jwks = http()
        .get(server.url("/jwks"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rs = AccessTokenVerifier::new(&server.base, &server.base, &jwks).unwrap();
    let now = now();
    let api = server.url("/api/records");
    let proof = dpop.proof("GET", &api, Some(at));
    fn req<'a>(proof: &'a str, url: &'a str) -> DpopRequest<'a> {
        DpopRequest {
            proof,
            method: "GET",
            url,
        }
    }
    let ok = rs.verify(at, Some(req(&proof, &api)), now).unwrap();
    assert!(ok.jkt.is_some() && ok.proof_jti.is_some());
    assert_eq!(
        rs.verify(at, None, now).unwrap_err(),
        TokenError::DpopRequired
    );
    let stranger = Key::new().proof("GET", &api, Some(at));
    assert_eq!(
        rs.verify(at, Some(req(&stranger, &api)), now).unwrap_err(),
        TokenError::BadProof
    );
    let elsewhere = dpop.proof("POST", &api, Some(at));
    assert_eq!(
        rs.verify(at, Some(req(&elsewhere, &api)), now).unwrap_err(),
        TokenError::BadProof
    );
    // Discovery says so.
    let d: Value = http()
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        d["pushed_authorization_request_endpoint"],
        server.url("/par")
    );
    assert!(d["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("private_key_jwt")));
    assert!(d["dpop_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("ES256")));
}

#[tokio::test(flavor = "multi_thread")]
async fn fapi_flow_sqlite() {
    fapi_flow(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
async fn fapi_flow_postgres() {
    fapi_flow(Backend::Postgres).await
}

/// Publishes `key` (kid `k1`) as a JWKS on a loopback port, answering every connection;
/// returns the port and how many connections came.
pub fn serve_jwks(key: &Key) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let mut jwk = key.jwk.clone();
    jwk["kid"] = "k1".into();
    let body = json!({"keys": [jwk]}).to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().flatten() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                body.len(),
                body
            );
        }
    });
    (port, hits)
}

/// A client whose keys are published at a URL: the server fetches them over HTTP.
#[tokio::test(flavor = "multi_thread")]
async fn private_key_jwt_with_published_keys() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let key = Key::new();
    let (port, _) = serve_jwks(&key);
    let uri = format!("http://localhost:{port}/jwks.json");
    server.cli(&[
        "client",
        "add",
        "--id",
        "published",
        "--name",
        "Published keys",
        "--department",
        "Dept P",
        "--redirect-uri",
        REDIRECT_URI,
        "--jwks-uri",
        &uri,
        "--scopes",
        "openid signing",
    ]);
    let send = |assertion: String| {
        let server = &server;
        async move {
            http()
                .post(server.url("/token"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    (
                        "client_assertion_type",
                        identity_core::client_auth::ASSERTION_TYPE,
                    ),
                    ("client_assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(send(key.assertion("published", &server.base)).await, 200);
    assert_eq!(
        send(Key::new().assertion("published", &server.base)).await,
        401
    );
}
