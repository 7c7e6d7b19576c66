//! Enrolment by an officer, activation, recovery, suspension, and the identity document.

use super::*;
use identity_core::provider::{AccountStatus, ActivationCode, Registration, RegistrationUpdate};
use identity_core::schema::passkeys;

use diesel::prelude::*;

const OFFICER: &str = "registration-office";
/// An officer of another registration client: a credential of their own.
const SECOND_OFFICER: &str = "second-office/officer-2";

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

    /// A recovery asked for by one officer and approved by another.
    async fn recover(&self, citizen: &str, remove_passkeys: bool) -> ActivationCode {
        let request = self
            .provider
            .request_recovery(OFFICER, citizen, remove_passkeys)
            .await
            .unwrap();
        self.provider
            .approve_recovery(SECOND_OFFICER, &request)
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
    let record = f.provider.registration(OFFICER, &id).await.unwrap();
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
    assert_eq!(
        f.provider.registration(OFFICER, &id).await.unwrap().status,
        "active"
    );
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
    let recovery = f.recover(&id, true).await;
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

/// A password change or a passkey removal ends the citizen's other sessions and every
/// refresh-token family, keeping the session that made it; recovery removes the password,
/// and the account logs in (with a passkey it kept, too) only after activation (issue 17).
pub async fn credential_changes_end_other_access(backend: Backend) {
    let f = fixture(backend).await;
    let (id, code) = f
        .provider
        .enrol(OFFICER, registration("A123456(7)"))
        .await
        .unwrap();
    let here = f.wong_session(code.expose()).await;
    let mut phone = f.add_passkey(&here, "Phone").await;
    let _laptop = f.add_passkey(&here, "Laptop").await;
    let first = "Sai-Kung-Country-Park-88";
    let second = "Tai-Mo-Shan-Summit-957";
    f.provider
        .set_password(here.clone(), &Password::new(first))
        .await
        .unwrap();
    let provider = &f.provider;
    let login = |pw: &'static str| async move {
        provider
            .login("wong", &Password::new(pw), "10.0.0.9", None)
            .await
    };
    let alive = |s: SessionToken| async { f.provider.session(Some(s)).await.unwrap().is_some() };
    // Another browser's session, and an e-service's refresh token.
    let other = login(first).await.unwrap();
    let mut offline = request("eservice");
    offline.scope = Some("openid profile offline_access".into());
    let (c, _) = f.code_with(offline.clone(), Some(other.clone())).await;
    let tokens = f.exchange(&c, VERIFIER).await.unwrap();
    let refresh = tokens.refresh_token.clone().expect("a refresh token");

    f.provider
        .set_password(here.clone(), &Password::new(second))
        .await
        .unwrap();
    assert!(!alive(other).await, "the other session ended");
    assert!(alive(here.clone()).await, "the one that changed it stays");
    assert!(matches!(
        f.refresh(&refresh).await,
        Err(Error::InvalidGrant(_))
    ));
    assert!(login(first).await.is_err());

    let other = login(second).await.unwrap();
    let (c, _) = f.code_with(offline, Some(other.clone())).await;
    let refresh = f
        .exchange(&c, VERIFIER)
        .await
        .unwrap()
        .refresh_token
        .expect("a refresh token");
    let laptop = f
        .provider
        .passkeys(Some(here.clone()))
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .find(|p| p.name == "Laptop")
        .unwrap()
        .id;
    f.provider
        .remove_passkey(here.clone(), laptop)
        .await
        .unwrap();
    assert!(!alive(other).await);
    assert!(alive(here.clone()).await);
    assert!(matches!(
        f.refresh(&refresh).await,
        Err(Error::InvalidGrant(_))
    ));

    // Recovery, keeping the passkeys: the password goes, and nothing logs in until the new
    // code activates the account again.
    assert!(f.passkey_login(&mut phone, "wong").await.is_ok());
    let phone_id = f
        .provider
        .passkeys(Some(here.clone()))
        .await
        .unwrap()
        .unwrap()
        .remove(0)
        .id;
    let recovery = f.recover(&id, false).await;
    let record = f.provider.registration(OFFICER, &id).await.unwrap();
    assert!(!record.has_password);
    assert_eq!(record.status, "pending");
    assert!(login(second).await.is_err());
    // Offered the kept passkey by hand (the ceremony names none for an account that
    // cannot log in), the answer is refused all the same.
    let c = f
        .provider
        .begin_passkey_login(Some("wong".into()), "10.0.0.1")
        .await
        .unwrap();
    let answer = login_answer_with(&mut phone, &c, &phone_id);
    assert!(f
        .provider
        .finish_passkey_login(c.handle, &answer, "10.0.0.1", None, None)
        .await
        .is_err());
    f.wong_session(recovery.expose()).await;
    assert_eq!(
        f.provider.registration(OFFICER, &id).await.unwrap().status,
        "active"
    );
    assert!(f.passkey_login(&mut phone, "wong").await.is_ok());
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
            Err(Error::Throttled { .. }) | Err(Error::Locked { .. }) => {
                throttled = true;
                break;
            }
            Err(Error::InvalidRequest(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(throttled, "repeated wrong answers are slowed down");
    // Expired.
    let fresh = f.recover(&id, false).await;
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
        f.provider
            .registration(OFFICER, &id)
            .await
            .unwrap()
            .phone
            .as_deref(),
        Some("+852 3000 0000")
    );
    assert!(matches!(
        f.provider.registration(OFFICER, "no-such-citizen").await,
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

/// Recovery needs two officers: the request changes nothing, its own officer cannot approve
/// it, a second one can, once, within a day; both are in the audit log (issue 17).
pub async fn recovery_takes_two_officers(backend: Backend) {
    let f = fixture(backend).await;
    let (id, code) = f
        .provider
        .enrol(OFFICER, registration("A123456(7)"))
        .await
        .unwrap();
    let session = f.wong_session(code.expose()).await;
    let request = f
        .provider
        .request_recovery(OFFICER, &id, false)
        .await
        .unwrap();
    assert!(
        f.provider
            .session(Some(session.clone()))
            .await
            .unwrap()
            .is_some(),
        "asking changes nothing"
    );
    // Neither the same officer, nor another officer named through the same credential
    // (which is only that system's word).
    for same in [
        OFFICER,
        "registration-office/officer-9",
        "registration-office/",
    ] {
        let own = f.provider.approve_recovery(same, &request).await;
        assert!(
            matches!(&own, Err(Error::InvalidRequest(m)) if m.contains("different officer")),
            "{same}: {own:?}"
        );
    }
    assert!(f
        .provider
        .session(Some(session.clone()))
        .await
        .unwrap()
        .is_some());
    let recovery = f
        .provider
        .approve_recovery(SECOND_OFFICER, &request)
        .await
        .unwrap();
    assert!(f.provider.session(Some(session)).await.unwrap().is_none());
    assert!(
        matches!(
            f.provider
                .approve_recovery("registration-office/officer-3", &request)
                .await,
            Err(Error::InvalidRequest(_))
        ),
        "approved once"
    );
    f.wong_session(recovery.expose()).await;
    // A request nobody approves within a day lapses.
    let late = f
        .provider
        .request_recovery(OFFICER, &id, false)
        .await
        .unwrap();
    f.clock.advance(86_401);
    assert!(matches!(
        f.provider.approve_recovery(SECOND_OFFICER, &late).await,
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        f.provider
            .approve_recovery(SECOND_OFFICER, "no-such-request")
            .await,
        Err(Error::NotFound)
    ));
    let entries = f.audit_entries();
    assert!(entries
        .iter()
        .any(|e| e.contains("event=citizen.recovery.requested")
            && e.contains(&format!("client={OFFICER}\n"))));
    assert!(entries
        .iter()
        .any(|e| e.contains("event=citizen.recovery\n")
            && e.contains(&format!("client={SECOND_OFFICER}\n"))
            && e.contains(&format!("requested-by:{OFFICER}"))));
}
