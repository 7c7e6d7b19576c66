//! Enrolment by an officer, activation, recovery, suspension, and the identity document.

use super::*;
use identity_core::provider::{AccountStatus, Registration, RegistrationUpdate};
use identity_core::schema::passkeys;

use diesel::prelude::*;

const OFFICER: &str = "registration-office";

fn registration(doc: &str) -> Registration {
    Registration {
        username: "wong".into(),
        name_en: "WONG Ka Yan".into(),
        name_zh: "黃嘉欣".into(),
        date_of_birth: "1990-05-17".into(),
        gender: Some("female".into()),
        id_document: doc.into(),
        email: Some("wong@example.hk".into()),
        phone: Some("+852 9123 4567".into()),
        address: Some("2 Queen's Road".into()),
    }
}

impl Fixture {
    async fn wong_session(&self, code: &str) -> SessionToken {
        self.provider
            .activate(code, "1990-05-17", "10.0.0.9", None)
            .await
            .unwrap()
    }

    fn passkeys_of(&self, citizen: &str) -> i64 {
        self.db
            .with(|conn| {
                Ok(passkeys::table
                    .filter(passkeys::citizen_id.eq(citizen))
                    .count()
                    .get_result::<i64>(conn)
                    .unwrap())
            })
            .unwrap()
    }
}

pub async fn enrol_activate_and_recover(backend: Backend) {
    let f = fixture(backend).await;
    let (id, code) = f
        .provider
        .enrol(OFFICER, registration("A123456(7)"))
        .await
        .unwrap();
    assert!(code.expose().len() >= 22, "at least 128 bits");
    assert!(!format!("{code:?}").contains(code.expose()));
    let record = f.provider.registration(&id).await.unwrap();
    assert_eq!(record.status, "pending");
    assert_eq!(record.id_document_masked.as_deref(), Some("A1*****7"));
    assert!(!record.has_password);

    // The stored document number is sealed, and its look-up hash is not the number.
    let (sealed, hash): (Option<String>, Option<String>) =
        f.db.with(|conn| {
            Ok(identity_core::schema::citizens::table
                .find(&id)
                .select((
                    identity_core::schema::citizens::id_doc_sealed,
                    identity_core::schema::citizens::id_doc_hash,
                ))
                .first(conn)
                .unwrap())
        })
        .unwrap();
    assert!(!sealed.unwrap().contains("1234567"));
    assert!(!hash.unwrap().contains("1234567"));

    // A wrong date of birth does not activate, nor spend the code.
    let wrong = f
        .provider
        .activate(code.expose(), "1990-05-18", "10.0.0.9", None)
        .await;
    assert!(matches!(wrong, Err(Error::InvalidRequest(_))), "{wrong:?}");
    let session = f.wong_session(code.expose()).await;
    let s = f
        .provider
        .session(Some(session.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.amr.as_str(), s.acr.as_str()),
        ("otp", "urn:identity-service:acr:1")
    );
    assert_eq!(f.provider.registration(&id).await.unwrap().status, "active");
    // Used once.
    let again = f
        .provider
        .activate(code.expose(), "1990-05-17", "10.0.0.9", None)
        .await;
    assert!(matches!(again, Err(Error::InvalidRequest(_))));

    // In the activation session: a passkey and a password under the policy.
    let _key = f.add_passkey(&session, "Phone").await;
    let weak = f
        .provider
        .set_password(session.clone(), &Password::new("password"))
        .await;
    assert!(matches!(weak, Err(Error::WeakPassword(_))));
    f.provider
        .set_password(session.clone(), &Password::new("Sai-Kung-Country-Park-88"))
        .await
        .unwrap();
    let pwd = f
        .provider
        .login(
            "wong",
            &Password::new("Sai-Kung-Country-Park-88"),
            "10.0.0.9",
            None,
        )
        .await
        .unwrap();
    let (code_, _) = f.code_with(request("eservice"), Some(pwd.clone())).await;
    let tokens = f.exchange(&code_, VERIFIER).await.unwrap();

    // Recovery: every session and grant ends, the passkeys go, and a new code activates.
    let recovery = f.provider.recover(OFFICER, &id, true).await.unwrap();
    assert!(f.provider.session(Some(pwd)).await.unwrap().is_none());
    assert!(f.provider.session(Some(session)).await.unwrap().is_none());
    assert!(matches!(
        f.refresh(tokens.refresh_token.as_deref().unwrap()).await,
        Err(Error::InvalidGrant(_))
    ));
    assert_eq!(f.passkeys_of(&id), 0);
    let back = f.wong_session(recovery.expose()).await;
    assert!(f
        .provider
        .session(Some(back.clone()))
        .await
        .unwrap()
        .is_some());

    // The account page's security events come from the audit log.
    f.provider.audit().flush().unwrap();
    let events = f
        .provider
        .security_events(Some(back))
        .await
        .unwrap()
        .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    for k in [
        "citizen.enrolled",
        "account.activation",
        "passkey.added",
        "password.set",
        "citizen.recovery",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let enrolled = events
        .iter()
        .find(|e| e.event == "citizen.enrolled")
        .unwrap();
    assert_eq!(enrolled.client, OFFICER, "the officer is named");
    assert!(
        events.iter().all(|e| !e.detail.contains("1234567")),
        "no document number in the log"
    );
}

pub async fn enrolment_refusals(backend: Backend) {
    let f = fixture(backend).await;
    let (id, code) = f
        .provider
        .enrol(OFFICER, registration("A123456(7)"))
        .await
        .unwrap();
    // One account per document, however it is written.
    let mut dup = registration("a 123456 7");
    dup.username = "other".into();
    assert!(matches!(
        f.provider.enrol(OFFICER, dup).await,
        Err(Error::Conflict(_))
    ));
    let mut bad_date = registration("B7654321");
    bad_date.username = "third".into();
    bad_date.date_of_birth = "1990-02-30".into();
    assert!(matches!(
        f.provider.enrol(OFFICER, bad_date).await,
        Err(Error::InvalidRequest(_))
    ));
    // A guessed code is refused like a wrong one.
    let guessed = f
        .provider
        .activate("x".repeat(43).as_str(), "1990-05-17", "10.0.0.9", None)
        .await;
    assert!(matches!(guessed, Err(Error::InvalidRequest(_))));
    // Wrong dates of birth against one code are throttled like passwords.
    let mut throttled = false;
    for _ in 0..6 {
        match f
            .provider
            .activate(code.expose(), "2000-01-01", "10.0.0.10", None)
            .await
        {
            Err(Error::Throttled { .. }) | Err(Error::Locked) => {
                throttled = true;
                break;
            }
            Err(Error::InvalidRequest(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(throttled, "repeated wrong answers are slowed down");
    // Expired.
    let fresh = f.provider.recover(OFFICER, &id, false).await.unwrap();
    f.clock.advance(86_400 + 1);
    let r = f
        .provider
        .activate(fresh.expose(), "1990-05-17", "10.0.0.11", None)
        .await;
    assert!(matches!(r, Err(Error::InvalidRequest(_))), "{r:?}");
    // The officer's changes are checked too.
    let r = f
        .provider
        .update_registration(
            OFFICER,
            &id,
            RegistrationUpdate {
                gender: Some("unknown".into()),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::InvalidRequest(_))));
    f.provider
        .update_registration(
            OFFICER,
            &id,
            RegistrationUpdate {
                phone: Some("+852 3000 0000".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        f.provider.registration(&id).await.unwrap().phone.as_deref(),
        Some("+852 3000 0000")
    );
    assert!(matches!(
        f.provider.registration("no-such-citizen").await,
        Err(Error::NotFound)
    ));
}

pub async fn suspended_account_cannot_log_in_or_refresh(backend: Backend) {
    let f = fixture(backend).await;
    let session = f.login().await;
    let (code, _) = f
        .code_with(request("eservice"), Some(session.clone()))
        .await;
    let tokens = f.exchange(&code, VERIFIER).await.unwrap();
    let chan = f
        .provider
        .session(Some(session.clone()))
        .await
        .unwrap()
        .unwrap()
        .citizen_id;
    f.provider
        .set_account_status(OFFICER, &chan, AccountStatus::Suspended)
        .await
        .unwrap();
    assert!(f.provider.session(Some(session)).await.unwrap().is_none());
    assert!(matches!(
        f.provider
            .login("chan", &Password::new(PASSWORD), "10.0.0.1", None)
            .await,
        Err(Error::BadCredentials)
    ));
    assert!(matches!(
        f.refresh(tokens.refresh_token.as_deref().unwrap()).await,
        Err(Error::InvalidGrant(_))
    ));
    let r = f.provider.userinfo(tokens.access_token.clone()).await;
    assert!(matches!(r, Err(Error::InvalidToken)), "{r:?}");
    f.provider
        .set_account_status(OFFICER, &chan, AccountStatus::Active)
        .await
        .unwrap();
    f.login().await;
}

pub async fn identity_document_only_to_registered_clients(backend: Backend) {
    let f = fixture(backend).await;
    let (_, code) = f
        .provider
        .enrol(OFFICER, registration("A123456(7)"))
        .await
        .unwrap();
    let session = f.wong_session(code.expose()).await;
    let mut registered = client("tax", "Inland Revenue", false);
    registered.scopes = Some("openid profile identity_document".into());
    let (_, secret) = f.provider.register_client(registered).await.unwrap();

    // The ordinary e-service asks for it and is not registered for it: nothing released.
    let mut ask = request("eservice");
    ask.scope = Some("openid profile identity_document".into());
    let (c, _) = f.code_with(ask, Some(session.clone())).await;
    let t = f.exchange(&c, VERIFIER).await.unwrap();
    assert!(!t.scope.contains("identity_document"));
    let info = f.provider.userinfo(t.access_token).await.unwrap();
    assert!(info.get("identity_document_number").is_none());
    assert_eq!(info["birthdate"], "1990-05-17");
    assert_eq!(info["gender"], "female");

    // The registered one gets it, after consent, normalised.
    let mut ask = request("tax");
    ask.scope = Some("openid identity_document".into());
    let (c, _) = f.code_with(ask, Some(session)).await;
    let t = f
        .provider
        .token(
            ClientAuth::Secret {
                id: "tax".into(),
                secret: secret.unwrap(),
            },
            code_input(c),
        )
        .await
        .unwrap();
    let info = f.provider.userinfo(t.access_token).await.unwrap();
    assert_eq!(info["identity_document_number"], "A1234567");
}
