//! One test per check of the OpenID conformance suite's FAPI 2.0 plan (the catalogue in
//! shared/standards.md), named after the check's class, against the real server.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use identity_core::client_auth::ASSERTION_TYPE;
use identity_core::storage::Backend;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};

use crate::fapi::Key;
use crate::util::*;

/// A server with a FAPI client (`fapi-rp`, its key, and a DPoP key) and a second FAPI client.
struct Fapi {
    server: Server,
    key: Key,
    other_key: Key,
    dpop: Key,
}

fn register(server: &Server, id: &str, key: &Key) {
    let mut jwk = key.jwk.clone();
    jwk["kid"] = "k1".into();
    let dir = identity_core::storage::testing::tempfile_guard::Dir::new();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, json!({"keys": [jwk]}).to_string()).unwrap();
    server.cli(&[
        "client",
        "add",
        "--id",
        id,
        "--name",
        id,
        "--department",
        "Dept F",
        "--redirect-uri",
        REDIRECT_URI,
        "--jwks",
        path.to_str().unwrap(),
        "--fapi",
    ]);
}

impl Fapi {
    async fn start(env: &[(&str, &str)]) -> Fapi {
        let server = Server::start(Backend::Sqlite, env).await;
        let (key, other_key) = (Key::new(), Key::new());
        register(&server, "fapi-rp", &key);
        register(&server, "fapi-other", &other_key);
        Fapi {
            server,
            key,
            other_key,
            dpop: Key::new(),
        }
    }

    fn params(&self, challenge: &str) -> Vec<(&'static str, String)> {
        vec![
            ("client_id", "fapi-rp".into()),
            ("response_type", "code".into()),
            ("redirect_uri", REDIRECT_URI.into()),
            ("scope", "openid profile".into()),
            ("state", "fapi-state".into()),
            ("nonce", "fapi-nonce".into()),
            ("code_challenge", challenge.into()),
            ("code_challenge_method", "S256".into()),
        ]
    }

    /// Pushes a request with the client's assertion (and a DPoP proof by `dpop`, if given).
    async fn push(
        &self,
        mut form: Vec<(&'static str, String)>,
        dpop: Option<&Key>,
    ) -> (u16, Value) {
        form.push(("client_assertion_type", ASSERTION_TYPE.into()));
        form.push((
            "client_assertion",
            self.key.assertion("fapi-rp", &self.server.base),
        ));
        let mut r = http().post(self.server.url("/par")).form(&form);
        if let Some(k) = dpop {
            r = r.header("DPoP", k.proof("POST", &self.server.url("/par"), None));
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    fn authorize_url(&self, client: &str, request_uri: &str) -> String {
        let mut u = url::Url::parse(&self.server.url("/authorize")).unwrap();
        u.query_pairs_mut()
            .append_pair("client_id", client)
            .append_pair("request_uri", request_uri);
        u.to_string()
    }

    /// A pushed request, logged in and consented: the code and its verifier.
    async fn code(&self, dpop: Option<&Key>) -> (String, String) {
        let (verifier, challenge) = pkce();
        let (status, pushed) = self.push(self.params(&challenge), dpop).await;
        assert_eq!(status, 201, "{pushed}");
        let url = self.authorize_url("fapi-rp", pushed["request_uri"].as_str().unwrap());
        let back = login_and_consent(&self.server, &browser(), &url, USERNAME, PASSWORD).await;
        (query(&back, "code").unwrap(), verifier)
    }

    /// Redeems a code as `client` with its key, a DPoP proof by `dpop`, and `verifier`.
    async fn redeem(
        &self,
        client: &str,
        code: &str,
        verifier: Option<&str>,
        dpop: Option<String>,
    ) -> (u16, Value) {
        let key = if client == "fapi-rp" {
            &self.key
        } else {
            &self.other_key
        };
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", REDIRECT_URI.into()),
            ("client_assertion_type", ASSERTION_TYPE.into()),
            ("client_assertion", key.assertion(client, &self.server.base)),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v.to_owned()));
        }
        let mut r = http().post(self.server.url("/token")).form(&form);
        if let Some(p) = dpop {
            r = r.header("DPoP", p);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    fn proof(&self) -> String {
        self.dpop.proof("POST", &self.server.url("/token"), None)
    }

    /// A client_credentials request authenticated by this assertion.
    async fn with_assertion(&self, assertion: String) -> (u16, Value) {
        let r = http()
            .post(self.server.url("/token"))
            .header("DPoP", self.proof())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    fn assertion_with(&self, change: impl Fn(&mut Value)) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut claims = json!({"iss": "fapi-rp", "sub": "fapi-rp", "aud": self.server.base,
            "iat": now, "exp": now + 60, "jti": identity_core::crypto::random_token()});
        change(&mut claims);
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        self.key.sign(h, &claims)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn par_ensure_pkce_required() {
    let f = Fapi::start(&[]).await;
    let form: Vec<_> = f
        .params("x")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .collect();
    let (status, v) = f.push(form, None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn par_ensure_pkce_code_verifier_required() {
    let f = Fapi::start(&[]).await;
    let (code, _) = f.code(None).await;
    let (status, _) = f.redeem("fapi-rp", &code, None, Some(f.proof())).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn par_incorrect_pkce_code_verifier_rejected() {
    let f = Fapi::start(&[]).await;
    let (code, _) = f.code(None).await;
    let (wrong, _) = pkce();
    let (status, v) = f
        .redeem("fapi-rp", &code, Some(&wrong), Some(f.proof()))
        .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test(flavor = "multi_thread")]
async fn par_ensure_plain_pkce_rejected() {
    let f = Fapi::start(&[]).await;
    let mut form = f.params("plain-verifier-plain-verifier-plain-verifier-1");
    form.retain(|(k, _)| *k != "code_challenge_method");
    form.push(("code_challenge_method", "plain".into()));
    let (status, _) = f.push(form, None).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn par_attempt_reuse_request_uri() {
    let f = Fapi::start(&[]).await;
    let (_, challenge) = pkce();
    let (_, pushed) = f.push(f.params(&challenge), None).await;
    let url = f.authorize_url("fapi-rp", pushed["request_uri"].as_str().unwrap());
    let b = browser();
    assert_eq!(b.get(&url).send().await.unwrap().status(), 303);
    assert_eq!(b.get(&url).send().await.unwrap().status(), 400, "used once");
}

#[tokio::test(flavor = "multi_thread")]
async fn par_attempt_to_use_expired_request_uri() {
    let f = Fapi::start(&[("IDENTITY_PAR_SECONDS", "1")]).await;
    let (_, challenge) = pkce();
    let (_, pushed) = f.push(f.params(&challenge), None).await;
    assert_eq!(pushed["expires_in"], 1);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let url = f.authorize_url("fapi-rp", pushed["request_uri"].as_str().unwrap());
    assert_eq!(browser().get(&url).send().await.unwrap().status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn par_ensure_request_uri_is_bound_to_client() {
    let f = Fapi::start(&[]).await;
    let (_, challenge) = pkce();
    let (_, pushed) = f.push(f.params(&challenge), None).await;
    let url = f.authorize_url("fapi-other", pushed["request_uri"].as_str().unwrap());
    assert_eq!(browser().get(&url).send().await.unwrap().status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_unsigned_authorization_request_without_using_par_fails() {
    let f = Fapi::start(&[]).await;
    let (_, challenge) = pkce();
    let mut u = url::Url::parse(&f.server.url("/authorize")).unwrap();
    u.query_pairs_mut().extend_pairs(f.params(&challenge));
    let r = browser().get(u.as_str()).send().await.unwrap();
    assert!(
        location(&r).contains("error=invalid_request"),
        "{}",
        location(&r)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn attempt_reuse_authorization_code_after_one_second() {
    let f = Fapi::start(&[]).await;
    let (code, verifier) = f.code(None).await;
    assert_eq!(
        f.redeem("fapi-rp", &code, Some(&verifier), Some(f.proof()))
            .await
            .0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let (status, v) = f
        .redeem("fapi-rp", &code, Some(&verifier), Some(f.proof()))
        .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test(flavor = "multi_thread")]
async fn attempt_to_use_expired_auth_code() {
    let f = Fapi::start(&[("IDENTITY_CODE_SECONDS", "1")]).await;
    let (code, verifier) = f.code(None).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, v) = f
        .redeem("fapi-rp", &code, Some(&verifier), Some(f.proof()))
        .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_authorization_code_is_bound_to_client() {
    let f = Fapi::start(&[]).await;
    let (code, verifier) = f.code(None).await;
    let (status, v) = f
        .redeem("fapi-other", &code, Some(&verifier), Some(f.proof()))
        .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_holder_of_key_required() {
    let f = Fapi::start(&[]).await;
    let (code, verifier) = f.code(None).await;
    let (status, v) = f.redeem("fapi-rp", &code, Some(&verifier), None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_mismatched_dpop_jkt_fails() {
    let f = Fapi::start(&[]).await;
    let (code, verifier) = f.code(Some(&f.dpop)).await;
    let other = Key::new().proof("POST", &f.server.url("/token"), None);
    let (status, v) = f
        .redeem("fapi-rp", &code, Some(&verifier), Some(other))
        .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test(flavor = "multi_thread")]
async fn dpop_negative_tests() {
    let f = Fapi::start(&[]).await;
    let token_url = f.server.url("/token");
    let mut bad_typ = Header::new(Algorithm::ES256);
    bad_typ.typ = Some("JWT".into());
    bad_typ.jwk = Some(serde_json::from_value(f.dpop.jwk.clone()).unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let wrong_typ = f.dpop.sign(
        bad_typ,
        &json!({"jti": "x1", "htm": "POST", "htu": token_url, "iat": now}),
    );
    let reused = f.proof();
    assert_eq!(f.with_assertion_and_proof(&reused).await, 200);
    for (what, proof) in [
        ("wrong method", f.dpop.proof("GET", &token_url, None)),
        (
            "wrong URL",
            f.dpop.proof("POST", &f.server.url("/userinfo"), None),
        ),
        ("wrong typ", wrong_typ),
        ("replayed", reused),
        ("not a JWT", "not-a-jwt".into()),
    ] {
        assert_eq!(f.with_assertion_and_proof(&proof).await, 400, "{what}");
    }
}

impl Fapi {
    async fn with_assertion_and_proof(&self, proof: &str) -> u16 {
        http()
            .post(self.server.url("/token"))
            .header("DPoP", proof)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                (
                    "client_assertion",
                    self.key.assertion("fapi-rp", &self.server.base).as_str(),
                ),
            ])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_client_assertion_with_wrong_aud_fails() {
    let f = Fapi::start(&[]).await;
    let (status, v) = f
        .with_assertion(f.assertion_with(|c| c["aud"] = "https://other.example".into()))
        .await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_client_assertion_with_exp_is_5_minutes_in_past_fails() {
    let f = Fapi::start(&[]).await;
    let (status, v) = f
        .with_assertion(f.assertion_with(|c| {
            let iat = c["iat"].as_i64().unwrap();
            c["exp"] = (iat - 300).into();
            c["iat"] = (iat - 360).into();
        }))
        .await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_client_assertion_with_no_sub_fails() {
    let f = Fapi::start(&[]).await;
    let (status, v) = f
        .with_assertion(f.assertion_with(|c| {
            c.as_object_mut().unwrap().remove("sub");
        }))
        .await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));
    // The same assertion with its sub is accepted: the refusal is the missing sub's.
    let (status, _) = f.with_assertion(f.assertion_with(|_| {})).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_request_object_signature_algorithm_is_not_none() {
    // Request objects are not offered; an unsigned one is refused at PAR.
    let f = Fapi::start(&[]).await;
    let (_, challenge) = pkce();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"client_id":"fapi-rp"}"#)
    );
    let mut form = f.params(&challenge);
    form.push(("request", unsigned));
    let (status, _) = f.push(form, None).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_response_type_token_fails() {
    let f = Fapi::start(&[]).await;
    let (_, challenge) = pkce();
    let mut form = f.params(&challenge);
    form.retain(|(k, _)| *k != "response_type");
    form.push(("response_type", "token".into()));
    let (status, _) = f.push(form, None).await;
    assert_eq!(status, 400);
}

/// Hostile JWTs at the token endpoint: `alg: none`, a public key used as an HMAC secret,
/// a wrong `typ`, garbage; each refused with the right error code.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_assertions_and_proofs_refused_with_their_codes() {
    let f = Fapi::start(&[]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"iss": "fapi-rp", "sub": "fapi-rp", "aud": f.server.base,
        "iat": now, "exp": now + 60, "jti": identity_core::crypto::random_token()});
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims));
    // HS256 keyed with the client's public key (its JWK text), the classic confusion.
    let secret = f.key.jwk.to_string();
    let hmac = {
        let signing = format!(
            "{}.{}",
            b64(&json!({"alg": "HS256", "kid": "k1"})),
            b64(&claims)
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, signing.as_bytes());
        format!("{signing}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    for (what, assertion) in [
        ("alg none", none),
        ("HMAC with the public key", hmac),
        ("garbage", "a.b.c".into()),
    ] {
        let (status, v) = f.with_assertion(assertion).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (401, Some("invalid_client")),
            "{what}"
        );
    }
    let dpop_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "dpop+jwt", "jwk": f.dpop.jwk})),
        b64(&json!({"jti": "n1", "htm": "POST", "htu": f.server.url("/token"), "iat": now}))
    );
    assert_eq!(f.with_assertion_and_proof(&dpop_none).await, 400);
}
