//! Document signing end to end in the core, with a software passkey, verified by the SDK's
//! offline verifier and by the `openssl` command line.

use super::*;
use base64::engine::general_purpose::STANDARD;
use identity_core::provider::NewSigningRequest;
use identity_sdk::signature::SignatureError;
use identity_sdk::signing::{verify_signing_result, Expectations, SigningError};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

const DOC: &[u8] = b"Application for a Hong Kong driving licence\nApplicant: CHAN Tai Man\n";

fn sha256(d: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, d)
        .as_ref()
        .to_vec()
}

struct Signing {
    f: Fixture,
    key: SoftPasskey,
    subject: String,
}

async fn signing_fixture(backend: Backend) -> Signing {
    let f = fixture(backend).await;
    let session = f.login().await;
    // Logging in to the e-service (with consent) is how it learns the citizen's subject.
    let (code, session) = f.code_with(request("eservice"), Some(session)).await;
    let tokens = f.exchange(&code, VERIFIER).await.unwrap();
    let subject = jwt_claims(tokens.id_token.as_deref().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = f.add_passkey(&session, "Phone").await;
    Signing { f, key, subject }
}

impl Signing {
    fn ask(&self, digest: &[u8]) -> NewSigningRequest {
        NewSigningRequest {
            subject: self.subject.clone(),
            hash_alg: "SHA-256".into(),
            document_hash: URL_SAFE_NO_PAD.encode(digest),
            document_name: "Driving licence application.pdf".into(),
            description: Some("Please sign your application".into()),
            return_uri: Some(REDIRECT.into()),
            callback_uri: Some("https://eservice.example/signed".into()),
        }
    }

    async fn approve(
        &mut self,
        id: &str,
    ) -> Result<identity_core::provider::SigningDecision, Error> {
        let c = self
            .f
            .provider
            .begin_signing_approval(id.to_owned())
            .await?;
        let answer = passkeys::login_answer_at(&mut self.key, &c);
        self.f
            .provider
            .approve_signing(id.to_owned(), c.handle, &answer, "10.0.0.1")
            .await
    }

    fn expect<'a>(
        &'a self,
        id: &'a str,
        digest: &'a [u8],
        ca: &'a [u8],
        key: &'a identity_sdk::audit::VerifierKey,
    ) -> Expectations<'a> {
        Expectations {
            request_id: id,
            document_digest: digest,
            ca_certificate: ca,
            subject: &self.subject,
            origin: "https://idp.example",
            audit_key: key,
        }
    }
}

pub async fn document_signed_with_a_passkey(backend: Backend) {
    let mut s = signing_fixture(backend).await;
    let digest = sha256(DOC);
    let view =
        s.f.provider
            .create_signing_request("eservice", None, s.ask(&digest))
            .await
            .unwrap();
    assert_eq!(view.code.len(), 4);
    assert_eq!(view.state, "pending");
    assert!(view.expires_at - s.f.clock.now() <= 300);
    // The approval page sees the same request and code.
    let page = s.f.provider.signing_request(view.id.clone()).await.unwrap();
    assert_eq!(
        (page.code.as_str(), page.client_name.as_str()),
        (view.code.as_str(), "eservice service")
    );
    assert_eq!(
        s.f.provider
            .signing_result("eservice".into(), view.id.clone())
            .await
            .unwrap()
            .state,
        "pending"
    );
    let decided = s.approve(&view.id).await.unwrap();
    assert_eq!(decided.return_uri.as_deref(), Some(REDIRECT));
    assert_eq!(
        decided.callback_uri.as_deref(),
        Some("https://eservice.example/signed")
    );

    let result =
        s.f.provider
            .signing_result("eservice".into(), view.id.clone())
            .await
            .unwrap();
    assert_eq!(result.state, "signed");
    let signed = result.signed.unwrap();
    let ca = s.f.provider.signing_ca().unwrap().cert_der;
    let audit_key = s.f.provider.audit().verifier_key().clone();
    let ok = verify_signing_result(&signed, &s.expect(&view.id, &digest, &ca, &audit_key)).unwrap();
    assert_eq!(ok.signature.subject_id, s.subject);
    assert_eq!(
        ok.signature.subject_name.as_deref(),
        Some("CHAN Tai Man"),
        "the name, since the citizen consented to profile"
    );

    // The openssl command line verifies it against the document and the CA.
    let dir = identity_core::storage::testing::tempfile_guard::Dir::new();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        STANDARD
            .encode(&ca)
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (sig, doc, ca_pem) = (
        write("SIG", &ok.cms),
        write("DOC", DOC),
        write("CA.pem", pem.as_bytes()),
    );
    let out = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(&sig)
        .arg("-content")
        .arg(&doc)
        .arg("-CAfile")
        .arg(&ca_pem)
        .args(["-out", "/dev/null"])
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl cms -verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = write("OTHER", b"another document");
    let out = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(&sig)
        .arg("-content")
        .arg(&other)
        .arg("-CAfile")
        .arg(&ca_pem)
        .args(["-out", "/dev/null"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "openssl refuses another document");

    // Approving again: the request is used.
    let again = s.approve(&view.id).await;
    assert!(matches!(again, Err(Error::InvalidRequest(m)) if m.contains("already signed")));

    // What the SDK's verifier refuses.
    let other_digest = sha256(b"a changed document");
    assert!(matches!(
        verify_signing_result(&signed, &s.expect(&view.id, &other_digest, &ca, &audit_key)),
        Err(SigningError::Signature(SignatureError::DigestMismatch))
    ));
    let mut tampered = signed.clone();
    let mut cms = ok.cms.clone();
    let last = cms.len() - 3;
    cms[last] ^= 1;
    tampered["signature"] = STANDARD.encode(&cms).into();
    assert!(matches!(
        verify_signing_result(&tampered, &s.expect(&view.id, &digest, &ca, &audit_key)),
        Err(SigningError::Signature(_))
    ));
    let foreign_ca = identity_core::signing_cms::new_ca("Another CA", s.f.clock.now())
        .unwrap()
        .cert_der;
    assert!(matches!(
        verify_signing_result(
            &signed,
            &s.expect(&view.id, &digest, &foreign_ca, &audit_key)
        ),
        Err(SigningError::Signature(
            SignatureError::UntrustedCertificate
        ))
    ));
    let mut wrong_subject = s.expect(&view.id, &digest, &ca, &audit_key);
    wrong_subject.subject = "someone-else";
    assert!(matches!(
        verify_signing_result(&signed, &wrong_subject),
        Err(SigningError::Signature(SignatureError::UnexpectedSubject))
    ));
    assert!(matches!(
        verify_signing_result(
            &signed,
            &s.expect("another-request", &digest, &ca, &audit_key)
        ),
        Err(SigningError::Evidence(_))
    ));
    let mut evidence = signed.clone();
    evidence["evidence"]["assertion"]["response"]["signature"] = "AAAA".into();
    assert!(matches!(
        verify_signing_result(&evidence, &s.expect(&view.id, &digest, &ca, &audit_key)),
        Err(SigningError::Evidence(_))
    ));
    let mut audit = signed.clone();
    let entry = audit["audit"]["entry"]
        .as_str()
        .unwrap()
        .replace("outcome=success", "outcome=failure");
    audit["audit"]["entry"] = entry.into();
    assert!(matches!(
        verify_signing_result(&audit, &s.expect(&view.id, &digest, &ca, &audit_key)),
        Err(SigningError::Audit(_))
    ));
}

pub async fn signing_refusals(backend: Backend) {
    let mut s = signing_fixture(backend).await;
    let digest = sha256(DOC);
    let create = |s: &Signing, n: NewSigningRequest| {
        let p = s.f.provider.clone();
        async move { p.create_signing_request("eservice", None, n).await }
    };
    // Bad requests.
    let mut bad = s.ask(&digest);
    bad.hash_alg = "MD5".into();
    assert!(matches!(
        create(&s, bad).await,
        Err(Error::InvalidRequest(_))
    ));
    let mut bad = s.ask(&digest[..20]);
    bad.hash_alg = "SHA-256".into();
    assert!(matches!(
        create(&s, bad).await,
        Err(Error::InvalidRequest(_))
    ));
    let mut bad = s.ask(&digest);
    bad.subject = "not-a-subject".into();
    assert!(matches!(
        create(&s, bad).await,
        Err(Error::InvalidRequest(_))
    ));
    let mut bad = s.ask(&digest);
    bad.return_uri = Some("javascript:alert(1)".into());
    assert!(matches!(
        create(&s, bad).await,
        Err(Error::InvalidRequest(_))
    ));
    // Well-formed, but not registered for the client (issue 17): refused, and nothing
    // is written.
    let pending = |s: &Signing| {
        s.f.db
            .with(|c| {
                use diesel::prelude::*;
                use identity_core::schema::signing_requests;
                Ok(signing_requests::table.count().get_result::<i64>(c)?)
            })
            .unwrap()
    };
    let before = pending(&s);
    for (return_uri, callback_uri) in [
        (Some("https://evil.example/cb"), None),
        (Some("https://eservice.example/cb/"), None),
        (None, Some("https://10.0.0.1/admin")),
        (None, Some("https://eservice.example/signed?x=1")),
    ] {
        let mut bad = s.ask(&digest);
        bad.return_uri = return_uri.map(Into::into);
        bad.callback_uri = callback_uri.map(Into::into);
        match create(&s, bad).await {
            Err(Error::InvalidRequest(m)) => assert!(m.contains("not registered"), "{m}"),
            other => panic!("{return_uri:?} {callback_uri:?}: {other:?}"),
        }
    }
    assert_eq!(pending(&s), before);
    // The lists replaced by an operator: the new URI passes, the old ones no longer do.
    s.f.provider
        .set_signing_uris(
            "eservice",
            vec!["https://eservice.example/new".into()],
            vec![],
        )
        .await
        .unwrap();
    let mut moved = s.ask(&digest);
    moved.return_uri = Some("https://eservice.example/new".into());
    moved.callback_uri = None;
    assert!(create(&s, moved).await.is_ok());
    assert!(matches!(
        create(&s, s.ask(&digest)).await,
        Err(Error::InvalidRequest(m)) if m.contains("not registered")
    ));
    assert!(matches!(
        s.f.provider
            .set_signing_uris("eservice", vec!["javascript:alert(1)".into()], vec![])
            .await,
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        s.f.provider
            .set_signing_uris("nobody", vec![], vec![])
            .await,
        Err(Error::NotFound)
    ));
    s.f.provider
        .set_signing_uris(
            "eservice",
            vec![REDIRECT.into()],
            vec!["https://eservice.example/signed".into()],
        )
        .await
        .unwrap();

    // Another client cannot see the result.
    let r1 = create(&s, s.ask(&digest)).await.unwrap();
    s.f.provider
        .register_client(client("other", "Dept B", false))
        .await
        .unwrap();
    assert!(matches!(
        s.f.provider
            .signing_result("other".into(), r1.id.clone())
            .await,
        Err(Error::NotFound)
    ));

    // An approval made for one request cannot approve another, with either handle.
    let r2 = create(&s, s.ask(&sha256(b"second"))).await.unwrap();
    let c1 =
        s.f.provider
            .begin_signing_approval(r1.id.clone())
            .await
            .unwrap();
    let a1 = passkeys::login_answer_at(&mut s.key, &c1);
    let r =
        s.f.provider
            .approve_signing(r2.id.clone(), c1.handle.clone(), &a1, "10.0.0.1")
            .await;
    assert!(matches!(r, Err(Error::InvalidRequest(_))), "{r:?}");
    let c2 =
        s.f.provider
            .begin_signing_approval(r2.id.clone())
            .await
            .unwrap();
    let r =
        s.f.provider
            .approve_signing(r2.id.clone(), c2.handle, &a1, "10.0.0.1")
            .await;
    assert!(matches!(r, Err(Error::InvalidRequest(_))), "{r:?}");

    // Rejected: a clear state, and no approval after it.
    s.f.provider.reject_signing(r2.id.clone()).await.unwrap();
    assert_eq!(
        s.f.provider
            .signing_result("eservice".into(), r2.id.clone())
            .await
            .unwrap()
            .state,
        "rejected"
    );
    assert!(
        matches!(s.approve(&r2.id).await, Err(Error::InvalidRequest(m)) if m.contains("rejected"))
    );

    // Expired.
    s.f.clock.advance(identity_core::provider::SIGNING_TTL + 1);
    assert_eq!(
        s.f.provider
            .signing_result("eservice".into(), r1.id.clone())
            .await
            .unwrap()
            .state,
        "expired"
    );
    assert!(
        matches!(s.approve(&r1.id).await, Err(Error::InvalidRequest(m)) if m.contains("expired"))
    );

    // A citizen without a passkey cannot be asked to sign.
    let lee = s.f.second_citizen().await;
    let (code, _) = s.f.code_with(request("eservice"), Some(lee)).await;
    let tokens = s.f.exchange(&code, VERIFIER).await.unwrap();
    let lee_sub = jwt_claims(tokens.id_token.as_deref().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ask = s.ask(&digest);
    ask.subject = lee_sub;
    assert!(
        matches!(create(&s, ask).await, Err(Error::InvalidRequest(m)) if m.contains("no passkey"))
    );
}

/// A suspended or closed citizen cannot approve a signature, even on a page opened before
/// the suspension (issue 17).
pub async fn suspended_citizen_cannot_sign(backend: Backend) {
    use identity_core::provider::AccountStatus;
    let mut s = signing_fixture(backend).await;
    let digest = sha256(DOC);
    let first =
        s.f.provider
            .create_signing_request("eservice", None, s.ask(&digest))
            .await
            .unwrap();
    let second =
        s.f.provider
            .create_signing_request("eservice", None, s.ask(&digest))
            .await
            .unwrap();
    let citizen: String =
        s.f.db
            .with(|c| {
                use diesel::prelude::*;
                use identity_core::schema::signing_requests;
                Ok(signing_requests::table
                    .find(&first.id)
                    .select(signing_requests::citizen_id)
                    .get_result(c)?)
            })
            .unwrap();
    // The page was open (its ceremony begun) when the account was suspended.
    let c =
        s.f.provider
            .begin_signing_approval(first.id.clone())
            .await
            .unwrap();
    s.f.provider
        .set_account_status("officer-1", &citizen, AccountStatus::Suspended)
        .await
        .unwrap();
    let answer = passkeys::login_answer_at(&mut s.key, &c);
    let r =
        s.f.provider
            .approve_signing(first.id.clone(), c.handle, &answer, "10.0.0.1")
            .await;
    assert!(
        matches!(&r, Err(Error::InvalidRequest(m)) if m.contains("not active")),
        "{r:?}"
    );
    // Nor can a new approval begin.
    let r = s.approve(&second.id).await;
    assert!(
        matches!(&r, Err(Error::InvalidRequest(m)) if m.contains("not active")),
        "{r:?}"
    );
    for id in [&first.id, &second.id] {
        assert_eq!(
            s.f.provider
                .signing_result("eservice".into(), id.clone())
                .await
                .unwrap()
                .state,
            "pending",
            "nothing signed"
        );
    }
}
