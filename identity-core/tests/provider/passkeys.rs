//! Passkeys against a software authenticator (webauthn-authenticator-rs `SoftPasskey`),
//! which answers real WebAuthn challenges with real signatures.

use super::*;
use identity_core::model::{ACR_PASSKEY, ACR_PASSWORD};
use identity_core::provider::Ceremony;
use identity_core::schema::{passkeys, password_credentials};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

const ORIGIN: &str = "https://idp.example";

/// A software passkey that claims user verification, as a phone's would after a
/// fingerprint.
fn authenticator() -> SoftPasskey {
    SoftPasskey::new(true)
}

fn origin() -> Url {
    Url::parse(ORIGIN).unwrap()
}

fn register_answer(auth: &mut SoftPasskey, c: &Ceremony, at: &Url) -> String {
    let options: CreationChallengeResponse = serde_json::from_value(c.options.clone()).unwrap();
    serde_json::to_string(&auth.do_registration(at.clone(), options).unwrap()).unwrap()
}

/// Answers a login ceremony with a credential of our choosing, as a stale or malicious
/// page could: the soft authenticator only signs for credentials it is offered.
pub fn login_answer_with(auth: &mut SoftPasskey, c: &Ceremony, cred_id: &str) -> String {
    let mut options = c.options.clone();
    options["publicKey"]["allowCredentials"] =
        serde_json::json!([{"type": "public-key", "id": cred_id}]);
    let tampered = Ceremony {
        handle: c.handle.clone(),
        options,
    };
    login_answer(auth, &tampered, &origin())
}

/// Answers a ceremony at the provider's own origin.
pub fn login_answer_at(auth: &mut SoftPasskey, c: &Ceremony) -> String {
    login_answer(auth, c, &origin())
}

fn login_answer(auth: &mut SoftPasskey, c: &Ceremony, at: &Url) -> String {
    let options: RequestChallengeResponse = serde_json::from_value(c.options.clone()).unwrap();
    serde_json::to_string(&auth.do_authentication(at.clone(), options).unwrap()).unwrap()
}

impl Fixture {
    /// Registers a new software passkey for the citizen of `session`.
    pub async fn add_passkey(&self, session: &SessionToken, name: &str) -> SoftPasskey {
        let mut auth = authenticator();
        let c = self
            .provider
            .begin_passkey_registration(session.clone())
            .await
            .unwrap();
        let answer = register_answer(&mut auth, &c, &origin());
        self.provider
            .finish_passkey_registration(session.clone(), c.handle, &answer, name)
            .await
            .unwrap();
        auth
    }

    pub async fn passkey_login(
        &self,
        auth: &mut SoftPasskey,
        username: &str,
    ) -> Result<SessionToken, Error> {
        let c = self
            .provider
            .begin_passkey_login(Some(username.into()), "10.0.0.1")
            .await
            .unwrap();
        let answer = login_answer(auth, &c, &origin());
        self.provider
            .finish_passkey_login(c.handle, &answer, "10.0.0.1", None, None)
            .await
    }

    fn passkey_count(&self) -> i64 {
        self.db
            .with(|conn| Ok(passkeys::table.count().get_result::<i64>(conn).unwrap()))
            .unwrap()
    }

    pub async fn second_citizen(&self) -> SessionToken {
        self.provider
            .add_citizen(
                NewCitizen {
                    username: "lee".into(),
                    name_en: "LEE Siu Ming".into(),
                    name_zh: "李小明".into(),
                    ..Default::default()
                },
                &Password::new(PASSWORD),
            )
            .await
            .unwrap();
        self.provider
            .login("lee", &Password::new(PASSWORD), "10.0.0.2", None)
            .await
            .unwrap()
    }
}

use diesel::prelude::*;

pub async fn passkey_register_and_log_in(backend: Backend) {
    let f = fixture(backend).await;
    let session = f.login().await;
    let mut auth = f.add_passkey(&session, "My phone").await;
    let list = f
        .provider
        .passkeys(Some(session.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "My phone");
    assert!(!list[0].synced, "the soft authenticator is device-bound");
    assert!(list[0].last_used_at.is_none());

    let token = f.passkey_login(&mut auth, "chan").await.unwrap();
    let s = f
        .provider
        .session(Some(token.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.acr, ACR_PASSKEY);
    assert_eq!(s.amr, "hwk user mfa");
    let list = f
        .provider
        .passkeys(Some(token.clone()))
        .await
        .unwrap()
        .unwrap();
    assert!(list[0].last_used_at.is_some());

    // The ID token of a passkey session carries the higher level and RFC 8176 methods.
    let mut input = request("eservice");
    input.acr_values = Some(ACR_PASSKEY.into());
    let (code, _) = f.code_with(input, Some(token)).await;
    let tokens = f.exchange(&code, VERIFIER).await.unwrap();
    let id = jwt_claims(tokens.id_token.as_deref().unwrap());
    assert_eq!(id["acr"], ACR_PASSKEY);
    assert_eq!(id["amr"], serde_json::json!(["hwk", "user", "mfa"]));
    assert!(id["auth_time"].as_i64().is_some());

    // A password session is the lower level.
    let pwd = f.provider.session(Some(session)).await.unwrap().unwrap();
    assert_eq!((pwd.acr.as_str(), pwd.amr.as_str()), (ACR_PASSWORD, "pwd"));
}

pub async fn passkey_answers_refused(backend: Backend) {
    let f = fixture(backend).await;
    let session = f.login().await;
    let mut auth = f.add_passkey(&session, "Key").await;

    // Replayed: an answer cannot be used twice, nor against a new challenge.
    let c = f
        .provider
        .begin_passkey_login(Some("chan".into()), "10.0.0.1")
        .await
        .unwrap();
    let answer = login_answer(&mut auth, &c, &origin());
    f.provider
        .finish_passkey_login(c.handle.clone(), &answer, "10.0.0.1", None, None)
        .await
        .unwrap();
    let again = f
        .provider
        .finish_passkey_login(c.handle, &answer, "10.0.0.1", None, None)
        .await;
    assert!(
        matches!(again, Err(Error::InvalidRequest(m)) if m.contains("expired or was already used"))
    );
    let fresh = f
        .provider
        .begin_passkey_login(Some("chan".into()), "10.0.0.1")
        .await
        .unwrap();
    let replay = f
        .provider
        .finish_passkey_login(fresh.handle, &answer, "10.0.0.1", None, None)
        .await;
    assert!(matches!(replay, Err(Error::InvalidRequest(m)) if m.contains("not accepted")));

    // Wrong origin: a look-alike site relaying the challenge gets a refusal.
    let c = f
        .provider
        .begin_passkey_login(Some("chan".into()), "10.0.0.1")
        .await
        .unwrap();
    let phished = login_answer(
        &mut auth,
        &c,
        &Url::parse("https://login.idp.example").unwrap(),
    );
    let r = f
        .provider
        .finish_passkey_login(c.handle, &phished, "10.0.0.1", None, None)
        .await;
    assert!(matches!(r, Err(Error::InvalidRequest(_))), "{r:?}");

    // Expired challenge.
    let c = f
        .provider
        .begin_passkey_login(Some("chan".into()), "10.0.0.1")
        .await
        .unwrap();
    let answer = login_answer(&mut auth, &c, &origin());
    f.clock.advance(identity_core::provider::CEREMONY_TTL + 1);
    let r = f
        .provider
        .finish_passkey_login(c.handle, &answer, "10.0.0.1", None, None)
        .await;
    assert!(matches!(r, Err(Error::InvalidRequest(m)) if m.contains("expired")));

    // Malformed answers: a clear refusal, nothing stored.
    let session = f.login().await;
    let before = f.passkey_count();
    let c = f
        .provider
        .begin_passkey_registration(session.clone())
        .await
        .unwrap();
    for bad in ["", "{", "{\"id\":1}", "null", "[]"] {
        let r = f
            .provider
            .finish_passkey_registration(session.clone(), c.handle.clone(), bad, "x")
            .await;
        assert!(matches!(r, Err(Error::InvalidRequest(m)) if m.contains("malformed")));
        let c2 = f
            .provider
            .begin_passkey_login(None, "10.0.0.1")
            .await
            .unwrap();
        let r = f
            .provider
            .finish_passkey_login(c2.handle, bad, "10.0.0.1", None, None)
            .await;
        assert!(matches!(r, Err(Error::InvalidRequest(m)) if m.contains("malformed")));
    }
    // A registration answered for another challenge (the wrong ceremony) stores nothing.
    let other = f
        .provider
        .begin_passkey_registration(session.clone())
        .await
        .unwrap();
    let answer = register_answer(&mut authenticator(), &other, &origin());
    let r = f
        .provider
        .finish_passkey_registration(session.clone(), c.handle, &answer, "x")
        .await;
    assert!(matches!(r, Err(Error::InvalidRequest(_))), "{r:?}");
    assert_eq!(f.passkey_count(), before);
}

pub async fn passkey_of_another_citizen_refused(backend: Backend) {
    let f = fixture(backend).await;
    let chan = f.login().await;
    let _chan_key = f.add_passkey(&chan, "Chan's key").await;
    let lee = f.second_citizen().await;
    let mut lee_key = f.add_passkey(&lee, "Lee's key").await;

    // A ceremony begun for chan cannot be finished with lee's passkey.
    let c = f
        .provider
        .begin_passkey_login(Some("chan".into()), "10.0.0.1")
        .await
        .unwrap();
    let lee_cred = f
        .provider
        .passkeys(Some(lee.clone()))
        .await
        .unwrap()
        .unwrap()[0]
        .id
        .clone();
    let answer = login_answer_with(&mut lee_key, &c, &lee_cred);
    let r = f
        .provider
        .finish_passkey_login(c.handle, &answer, "10.0.0.1", None, None)
        .await;
    assert!(matches!(r, Err(Error::InvalidRequest(_))), "{r:?}");

    // A credential id registered to another account is refused at registration.
    let c = f
        .provider
        .begin_passkey_registration(lee.clone())
        .await
        .unwrap();
    let answer = register_answer(&mut authenticator(), &c, &origin());
    let parsed: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let cred_id = parsed["id"].as_str().unwrap().to_owned();
    let chan_id = f
        .provider
        .session(Some(chan))
        .await
        .unwrap()
        .unwrap()
        .citizen_id;
    f.db.with(|conn| {
        diesel::insert_into(passkeys::table)
            .values((
                passkeys::cred_id.eq(&cred_id),
                passkeys::citizen_id.eq(&chan_id),
                passkeys::name.eq("taken"),
                passkeys::credential.eq("{}"),
                passkeys::synced.eq(0),
                passkeys::created_at.eq(0i64),
            ))
            .execute(conn)
            .unwrap();
        Ok(())
    })
    .unwrap();
    let r = f
        .provider
        .finish_passkey_registration(lee, c.handle, &answer, "dup")
        .await;
    assert!(matches!(r, Err(Error::InvalidRequest(m)) if m.contains("already registered")));
}

pub async fn removed_passkey_and_counter_going_back(backend: Backend) {
    let f = fixture(backend).await;
    let session = f.login().await;
    let mut first = f.add_passkey(&session, "First").await;
    let mut second = f.add_passkey(&session, "Second").await;
    let list = f
        .provider
        .passkeys(Some(session.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(list.len(), 2);
    let id_of = |name: &str| list.iter().find(|p| p.name == name).unwrap().id.clone();
    let (first_id, second_id) = (id_of("First"), id_of("Second"));
    f.provider
        .rename_passkey(session.clone(), first_id.clone(), "Laptop")
        .await
        .unwrap();
    let names: Vec<String> = f
        .provider
        .passkeys(Some(session.clone()))
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(names.contains(&"Laptop".to_owned()));

    // Removed: its next login is refused as unknown.
    f.provider
        .remove_passkey(session.clone(), first_id.clone())
        .await
        .unwrap();
    let c = f
        .provider
        .begin_passkey_login(Some("chan".into()), "10.0.0.1")
        .await
        .unwrap();
    let answer = login_answer_with(&mut first, &c, &first_id);
    let r = f
        .provider
        .finish_passkey_login(c.handle, &answer, "10.0.0.1", None, None)
        .await;
    assert!(
        matches!(&r, Err(Error::InvalidRequest(m)) if m.contains("not registered")),
        "{r:?}"
    );

    // The last way to log in cannot go: without a password, the last passkey stays.
    let chan_id = f
        .provider
        .session(Some(session.clone()))
        .await
        .unwrap()
        .unwrap()
        .citizen_id;
    f.db.with(|conn| {
        diesel::delete(password_credentials::table.find(&chan_id))
            .execute(conn)
            .unwrap();
        Ok(())
    })
    .unwrap();
    let r = f
        .provider
        .remove_passkey(session.clone(), second_id.clone())
        .await;
    assert!(matches!(r, Err(Error::InvalidRequest(m)) if m.contains("only way")));
    // Someone else's id is not found.
    let r = f
        .provider
        .remove_passkey(session.clone(), "not-mine".into())
        .await;
    assert!(matches!(r, Err(Error::NotFound)));

    // Counter: two logins move it forward; a copy of the key that answers with a counter at
    // or below the stored one is refused and recorded.
    f.passkey_login(&mut second, "chan").await.unwrap();
    f.passkey_login(&mut second, "chan").await.unwrap();
    let stored: String =
        f.db.with(|conn| {
            Ok(passkeys::table
                .find(&second_id)
                .select(passkeys::credential)
                .first(conn)
                .unwrap())
        })
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        v["cred"]["counter"], 2,
        "the counter was stored after each login"
    );
    // The stored counter runs ahead, as if a clone had been used in between.
    v["cred"]["counter"] = 100.into();
    f.db.with(|conn| {
        diesel::update(passkeys::table.find(&second_id))
            .set(passkeys::credential.eq(v.to_string()))
            .execute(conn)
            .unwrap();
        Ok(())
    })
    .unwrap();
    let r = f.passkey_login(&mut second, "chan").await;
    assert!(matches!(r, Err(Error::PasskeyCloned)), "{r:?}");
    f.provider.audit().flush().unwrap();
    let events = f.provider.audit().for_citizen(&chan_id, 50).unwrap();
    assert!(events.iter().any(|e| e.event == "login"
        && e.outcome == "failure"
        && e.detail == "passkey-counter-went-back"));
    assert!(events.iter().any(|e| e.event == "passkey.added"));
    assert!(events.iter().any(|e| e.event == "passkey.removed"));
}

pub async fn step_up_to_a_passkey(backend: Backend) {
    let f = fixture(backend).await;
    let mut strict = client("strict", "Dept S", false);
    strict.min_acr = Some(ACR_PASSKEY.into());
    f.provider.register_client(strict).await.unwrap();
    let session = f.login().await;
    let mut auth = f.add_passkey(&session, "Phone").await;

    // A password session is below what this e-service needs: log in again, with a passkey.
    let Step::Interact(id) = f
        .provider
        .authorize(request("strict"), Some(session.clone()))
        .await
        .unwrap()
    else {
        panic!("a password session must not satisfy a passkey minimum")
    };
    let Interaction::Login {
        passkey_required, ..
    } = f
        .provider
        .interaction(id.clone(), Some(session.clone()))
        .await
        .unwrap()
    else {
        panic!("expected the login page")
    };
    assert!(passkey_required);
    // prompt=none cannot step up silently.
    let mut none = request("strict");
    none.prompt = Some("none".into());
    assert!(matches!(
        f.provider.authorize(none, Some(session.clone())).await.unwrap(),
        Step::Redirect(u) if u.contains("error=login_required")
    ));
    // acr_values asks for the same of a client that has no minimum.
    let mut ask = request("eservice");
    ask.acr_values = Some(format!("urn:unknown {ACR_PASSKEY}"));
    assert!(matches!(
        f.provider
            .authorize(ask, Some(session.clone()))
            .await
            .unwrap(),
        Step::Interact(_)
    ));

    // After a passkey login for this request, it goes on.
    let c = f
        .provider
        .begin_passkey_login(None, "10.0.0.1")
        .await
        .unwrap();
    assert!(c.options["publicKey"]["allowCredentials"]
        .as_array()
        .is_none_or(|a| a.is_empty()));
    let c = f
        .provider
        .begin_passkey_login(Some("chan".into()), "10.0.0.1")
        .await
        .unwrap();
    let answer = login_answer(&mut auth, &c, &origin());
    let token = f
        .provider
        .finish_passkey_login(
            c.handle,
            &answer,
            "10.0.0.1",
            Some(session),
            Some(id.clone()),
        )
        .await
        .unwrap();
    match f.provider.interaction(id, Some(token)).await.unwrap() {
        Interaction::Consent { .. } | Interaction::Redirect(_) => {}
        Interaction::Login { .. } => panic!("still asked to log in after the passkey"),
    }
}

pub async fn registration_needs_a_fresh_login(backend: Backend) {
    let f = fixture(backend).await;
    let session = f.login().await;
    f.clock
        .advance(identity_core::provider::REGISTRATION_FRESHNESS + 1);
    // Keep the session alive past its idle timer for this check.
    let r = f.provider.begin_passkey_registration(session).await;
    assert!(matches!(r, Err(Error::InvalidRequest(_))), "{r:?}");
    let fresh = f.login().await;
    f.provider.begin_passkey_registration(fresh).await.unwrap();
}

/// The options without what is random or per credential: the challenge, and each
/// credential's id replaced by its length class (ids differ between authenticators).
fn shape(options: &serde_json::Value) -> serde_json::Value {
    let mut o = options.clone();
    o["publicKey"]["challenge"] = "challenge".into();
    if let Some(list) = o["publicKey"]["allowCredentials"].as_array_mut() {
        for c in list {
            c["id"] = "id".into();
        }
    }
    o
}

/// `begin_passkey_login` does not tell who has an account or a passkey: for a citizen
/// with one passkey, one without, and a username nobody has, the options have the same
/// shape (one credential named), the stand-in is the same on every ask, and nothing an
/// authenticator holds answers a stand-in. Starts are counted per address (issue 17).
pub async fn passkey_login_start_does_not_enumerate(backend: Backend) {
    let f = fixture(backend).await;
    let session = f.login().await;
    let _phone = f.add_passkey(&session, "Phone").await;
    f.second_citizen().await;
    let start = |u: &'static str| {
        let provider = &f.provider;
        async move {
            provider
                .begin_passkey_login(Some(u.into()), "10.0.0.7")
                .await
                .unwrap()
                .options
        }
    };
    let with_key = start("chan").await;
    let without_key = start("lee").await;
    let nobody = start("nobody-at-all").await;
    assert_eq!(shape(&with_key), shape(&without_key));
    assert_eq!(shape(&with_key), shape(&nobody));
    let ids = |o: &serde_json::Value| -> Vec<String> {
        o["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&nobody),
        ids(&start("nobody-at-all").await),
        "the same each time"
    );
    assert_ne!(ids(&nobody), ids(&without_key));
    // The same number of credentials, of lengths real authenticators use, whether the
    // account has one passkey, two, none, or does not exist (issue 17).
    let lengths = |o: &serde_json::Value| -> Vec<usize> {
        ids(o)
            .iter()
            .map(|id| URL_SAFE_NO_PAD.decode(id).unwrap().len())
            .collect()
    };
    let _laptop = f.add_passkey(&session, "Laptop").await;
    let with_two = start("chan").await;
    for o in [&with_key, &with_two, &without_key, &nobody] {
        assert_eq!(ids(o).len(), 4, "{o}");
        assert!(lengths(o).iter().all(|n| [16, 32, 64].contains(n)), "{o}");
    }
    let real: Vec<String> = f
        .provider
        .passkeys(Some(session.clone()))
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert!(real.iter().all(|r| ids(&with_two).contains(r)));
    assert_eq!(ids(&with_two), ids(&start("chan").await), "a fixed order");
    // A stand-in is kept as a username-first ceremony that names nobody, which refuses
    // every answer. (Kept as a discoverable one, it would log a real passkey's owner in,
    // telling that the username asked about has no passkey; the software authenticator
    // sends no user handle, so the answer below alone could not show that.)
    let c = f
        .provider
        .begin_passkey_login(Some("nobody-at-all".into()), "10.0.0.7")
        .await
        .unwrap();
    let stored: (String, Option<String>) =
        f.db.with(|conn| {
            use identity_core::schema::webauthn_ceremonies as w;
            Ok(w::table
                .select((w::purpose, w::citizen_id))
                .filter(w::handle_hash.eq(identity_core::crypto::token_hash(&c.handle)))
                .get_result(conn)?)
        })
        .unwrap();
    assert_eq!(stored, ("login".to_owned(), None));
    // Answered with the asker's own passkey (lee's, now), a stand-in logs nobody in.
    let lee = f
        .provider
        .login("lee", &Password::new(PASSWORD), "10.0.0.2", None)
        .await
        .unwrap();
    let mut own = f.add_passkey(&lee, "Lee's phone").await;
    let own_id = f
        .provider
        .passkeys(Some(lee))
        .await
        .unwrap()
        .unwrap()
        .remove(0)
        .id;
    for asked in ["nobody-at-all", "chan"] {
        let c = f
            .provider
            .begin_passkey_login(Some(asked.into()), "10.0.0.7")
            .await
            .unwrap();
        let answer = login_answer_with(&mut own, &c, &own_id);
        assert!(
            f.provider
                .finish_passkey_login(c.handle, &answer, "10.0.0.7", None, None)
                .await
                .is_err(),
            "{asked}: answered with another citizen's passkey"
        );
    }

    // Unauthenticated starts from one address are limited (ten times the failed-login
    // limit, 1,000 per window by default: every login page begins one).
    let mut refused = None;
    for n in 0..1100 {
        if let Err(e) = f.provider.begin_passkey_login(None, "192.0.2.99").await {
            refused = Some((n, e));
            break;
        }
    }
    let (n, e) = refused.expect("starts are throttled");
    assert!(matches!(e, Error::Throttled { .. }), "{e:?}");
    assert!((900..=1000).contains(&n), "{n}");
    // Another address is not held back by it.
    assert!(f
        .provider
        .begin_passkey_login(None, "192.0.2.100")
        .await
        .is_ok());
}

/// Consent re-checks the login against the request before a code is issued: the session
/// that answers the consent page may be weaker or older than the one it was shown to
/// (issue 17).
pub async fn consent_rechecks_the_login(backend: Backend) {
    let f = fixture(backend).await;
    let password = f.login().await;
    let mut phone = f.add_passkey(&password, "Phone").await;
    let strong = f.passkey_login(&mut phone, "chan").await.unwrap();
    let codes = || {
        f.db.with(|c| {
            use identity_core::schema::auth_codes;
            Ok(auth_codes::table.count().get_result::<i64>(c).unwrap())
        })
        .unwrap()
    };
    // The consent page of a request, shown to the passkey session.
    let consent_page = |ask: AuthorizeInput| {
        let (provider, strong) = (&f.provider, strong.clone());
        async move {
            let Step::Interact(id) = provider.authorize(ask, Some(strong.clone())).await.unwrap()
            else {
                panic!("consent is asked first")
            };
            assert!(matches!(
                provider
                    .interaction(id.clone(), Some(strong))
                    .await
                    .unwrap(),
                Interaction::Consent { .. }
            ));
            id
        }
    };
    // acr_values: the page was shown to a passkey session; a password session answers.
    let mut ask = request("eservice");
    ask.acr_values = Some(ACR_PASSKEY.into());
    let id = consent_page(ask).await;
    let before = codes();
    let r = f
        .provider
        .consent(id.clone(), Some(password.clone()), true)
        .await;
    assert!(
        matches!(&r, Err(Error::InvalidRequest(m)) if m.contains("log in again")),
        "{r:?}"
    );
    assert_eq!(codes(), before, "no code");
    // max_age: the login became too old while the page was open.
    let mut ask = request("eservice");
    ask.scope = Some("openid phone".into());
    ask.max_age = Some("60".into());
    let id = consent_page(ask).await;
    f.clock.advance(61);
    let r = f
        .provider
        .consent(id.clone(), Some(strong.clone()), true)
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(codes(), before);
}

/// A passkey login's success event commits in the transaction that opens its session, as
/// a password login's does: when the event cannot be written, there is no session either
/// (issue 17). On SQLite the tree is appended in the transaction, so a damaged tree fails
/// it; PostgreSQL stages the event in the outbox of the same transaction.
pub async fn passkey_login_event_commits_with_its_session(backend: Backend) {
    use identity_core::schema::{audit_nodes, sessions};
    let f = fixture(backend).await;
    let session = f.login().await;
    let mut phone = f.add_passkey(&session, "Phone").await;
    f.passkey_login(&mut phone, "chan").await.unwrap();
    assert!(f
        .audit_entries()
        .iter()
        .any(|e| e.contains("event=login") && e.contains("detail=passkey")));
    if backend == Backend::Sqlite {
        let count = || {
            f.db.with(|c| Ok(sessions::table.count().get_result::<i64>(c).unwrap()))
                .unwrap()
        };
        f.db.with(|c| Ok(diesel::delete(audit_nodes::table).execute(c).unwrap()))
            .unwrap();
        let before = count();
        assert!(f.passkey_login(&mut phone, "chan").await.is_err());
        assert_eq!(count(), before, "no session without its audit entry");
    }
}
