//! The audit log end to end: the auditor's tool (its library, as the binary runs it)
//! against the real server, after tampering with the database behind the server's back,
//! after a crash, and with two servers sharing one PostgreSQL database.

use diesel::prelude::*;
use identity_audit::{Auditor, Credential};
use identity_core::schema::{audit_checkpoints, audit_entries, audit_nodes};
use identity_core::storage::{Backend, Db};
use identity_sdk::audit::{signature_line, Checkpoint, VerifierKey};
use std::time::Duration;

use crate::util::*;

async fn key(server: &Server) -> VerifierKey {
    let text = reqwest::get(server.url("/audit/key"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    VerifierKey::parse(&text).unwrap()
}

async fn auditor(server: &Server) -> Auditor {
    let credential = Credential::Client {
        id: "demo-auditor".into(),
        key: Box::new(
            identity_sdk::login::ClientKey::from_pem(crate::enrolment::AUDITOR_KEY).unwrap(),
        ),
    };
    Auditor::connect(&server.base, key(server).await, credential)
        .await
        .unwrap()
}

/// Some events: client_credentials grants, each one audited.
async fn events(server: &Server, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = http()
            .post(server.url("/token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    ids
}

/// Waits until a checkpoint covers at least `size` entries.
async fn checkpoint_at_least(a: &Auditor, size: u64) -> u64 {
    for _ in 0..100 {
        if let Ok((cp, _)) = a.checkpoint().await {
            if cp.size >= size {
                return cp.size;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no checkpoint of {size} entries");
}

async fn signed_log(server: &Server, n: usize) -> (Auditor, u64) {
    events(server, n).await;
    let a = auditor(server).await;
    let size = checkpoint_at_least(&a, n as u64).await;
    (a, size)
}

fn db(server: &Server) -> Db {
    Db::open(&server.database_url(), 1).unwrap()
}

fn set_entry(db: &Db, idx: i64, text: &str) {
    db.with(|c| {
        diesel::update(audit_entries::table.find(idx))
            .set(audit_entries::entry.eq(text))
            .execute(c)?;
        Ok(())
    })
    .unwrap();
}

fn entry(db: &Db, idx: i64) -> String {
    db.with(|c| {
        Ok(audit_entries::table
            .find(idx)
            .select(audit_entries::entry)
            .first(c)?)
    })
    .unwrap()
}

async fn expect_failure(a: &Auditor, state: Option<&std::path::Path>, wanted: &str) {
    let err = a
        .verify_all(state, false)
        .await
        .expect_err("tampering must be detected")
        .to_string();
    assert!(err.contains(wanted), "expected {wanted:?} in: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verifies_then_detects_a_changed_entry_sqlite() {
    verifies_then_detects_a_changed_entry(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
async fn verifies_then_detects_a_changed_entry_postgres() {
    verifies_then_detects_a_changed_entry(Backend::Postgres).await
}

async fn verifies_then_detects_a_changed_entry(backend: Backend) {
    let server = Server::start(backend, &[]).await;
    let (a, size) = signed_log(&server, 6).await;
    let report = a.verify_all(None, false).await.unwrap();
    assert_eq!(report.checkpoint.size, size);
    a.verify_inclusion(3).await.unwrap();
    let db = db(&server);
    let original = entry(&db, 3);
    // The unverified read scripts use (`identity-audit entries`) gives every entry.
    let all = a.entries(0, size).await.unwrap();
    assert_eq!(all.len() as u64, size);
    assert_eq!(all[3], (3, original.clone().into_bytes()));
    set_entry(
        &db,
        3,
        &original.replace("outcome=success", "outcome=failure"),
    );
    expect_failure(&a, None, "do not match the signed checkpoint").await;
    let err = a.verify_inclusion(3).await.unwrap_err().to_string();
    assert!(err.contains("not included"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn detects_a_deleted_entry() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (a, _) = signed_log(&server, 6).await;
    db(&server)
        .with(|c| Ok(diesel::delete(audit_entries::table.find(4i64)).execute(c)?))
        .unwrap();
    expect_failure(&a, None, "entry 4 is missing").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn detects_two_swapped_entries() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (a, _) = signed_log(&server, 6).await;
    let db = db(&server);
    let (two, five) = (entry(&db, 2), entry(&db, 5));
    set_entry(&db, 2, &five);
    set_entry(&db, 5, &two);
    expect_failure(&a, None, "do not match the signed checkpoint").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn detects_a_truncated_and_regrown_log() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let dir = identity_core::storage::testing::tempfile_guard::Dir::new();
    let state = dir.path().join("checkpoint");
    let (a, size) = signed_log(&server, 6).await;
    a.verify_all(Some(&state), false).await.unwrap();
    // The light check (a consistency proof, no entries) agrees while nothing is wrong.
    a.check_against_saved(&state).await.unwrap();
    // Cut the log back to 3 entries, with every node and checkpoint above, as an operator
    // hiding events would, then let it grow past its old size with other events.
    let keep = 3u64;
    let db = db(&server);
    db.tx(|c| {
        diesel::delete(audit_entries::table.filter(audit_entries::idx.ge(keep as i64)))
            .execute(c)?;
        let keys: Vec<i64> = audit_nodes::table.select(audit_nodes::node_key).load(c)?;
        let doomed: Vec<i64> = keys
            .into_iter()
            .filter(|k| {
                let (level, idx) = ((*k as u64) >> 48, (*k as u64) & ((1 << 48) - 1));
                ((idx + 1) << level) > keep
            })
            .collect();
        diesel::delete(audit_nodes::table.filter(audit_nodes::node_key.eq_any(doomed)))
            .execute(c)?;
        diesel::delete(audit_checkpoints::table.filter(audit_checkpoints::size.gt(keep as i64)))
            .execute(c)?;
        Ok(())
    })
    .unwrap();
    events(&server, size as usize).await;
    // The server refuses to sign the regrown history: its witness file, outside the
    // database, remembers what it signed.
    let mut refused = false;
    for _ in 0..50 {
        if server.log().contains("refusing to sign") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused, "{}", server.log());
    // And the auditor, from the checkpoint it saved, does not accept what the server shows.
    assert!(a.verify_all(Some(&state), false).await.is_err());
    assert!(a.check_against_saved(&state).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn detects_a_replaced_checkpoint_and_another_key() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (a, size) = signed_log(&server, 4).await;
    let db = db(&server);
    let note: String = db
        .with(|c| {
            Ok(audit_checkpoints::table
                .find(size as i64)
                .select(audit_checkpoints::note)
                .first(c)?)
        })
        .unwrap();
    // A replaced checkpoint: same signature, another root.
    let cp = Checkpoint::verify_note(&note, &key(&server).await).unwrap();
    let forged_body = Checkpoint {
        root: [7u8; 32],
        ..cp.clone()
    }
    .body();
    let replaced = note.replacen(&cp.body(), &forged_body, 1);
    let set_note = |text: &str| {
        db.with(|c| {
            diesel::update(audit_checkpoints::table.find(size as i64))
                .set(audit_checkpoints::note.eq(text))
                .execute(c)?;
            Ok(())
        })
        .unwrap()
    };
    set_note(&replaced);
    expect_failure(&a, None, "not signed by the pinned key").await;
    // A checkpoint signed by another key under the log's name.
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let other = Ed25519KeyPair::from_pkcs8(
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    let other_key = VerifierKey::new(
        key(&server).await.name(),
        other.public_key().as_ref().try_into().unwrap(),
    );
    let resigned = format!(
        "{}\n{}",
        cp.body(),
        signature_line(&other_key, other.sign(cp.body().as_bytes()).as_ref())
    );
    set_note(&resigned);
    expect_failure(&a, None, "not signed by the pinned key").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_under_load_loses_no_acknowledged_event_sqlite() {
    crash_under_load_loses_no_acknowledged_event(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
async fn crash_under_load_loses_no_acknowledged_event_postgres() {
    crash_under_load_loses_no_acknowledged_event(Backend::Postgres).await
}

async fn crash_under_load_loses_no_acknowledged_event(backend: Backend) {
    let mut server = Server::start(backend, &[]).await;
    let base = server.base.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (base, stop) = (base.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let client = http();
            let mut acknowledged = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .post(format!("{base}/token"))
                    .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        acknowledged.push(r.headers()["x-request-id"].to_str().unwrap().to_owned())
                    }
                    Ok(_) => {}
                    Err(_) => break, // the server is gone
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.crash_and_restart().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in workers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(
        acknowledged.len() > 20,
        "the load ran: {}",
        acknowledged.len()
    );
    let a = auditor(&server).await;
    let db = db(&server);
    // Acknowledged events were committed to the outbox with their grants; the restarted
    // server moves them into the tree.
    for _ in 0..100 {
        let staged: i64 = db
            .with(|c| {
                Ok(identity_core::schema::audit_outbox::table
                    .count()
                    .get_result(c)?)
            })
            .unwrap();
        if staged == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let size = db
        .with(|c| Ok(audit_entries::table.count().get_result::<i64>(c)?))
        .unwrap() as u64;
    checkpoint_at_least(&a, size).await;
    a.verify_all(None, false).await.unwrap();
    let all: Vec<String> = db
        .with(|c| Ok(audit_entries::table.select(audit_entries::entry).load(c)?))
        .unwrap();
    let logged: std::collections::HashSet<String> = all
        .iter()
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("request="))
                .map(str::to_owned)
        })
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !logged.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged grants missing from the log: {lost:?}",
        lost.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
async fn two_servers_on_one_postgres_make_one_log() {
    let first = Server::start(Backend::Postgres, &[]).await;
    let second = Server::start_on(&first, &[]).await;
    let (a, b) = (first.base.clone(), second.base.clone());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let base = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                let r = http()
                    .post(format!("{base}/token"))
                    .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Both servers publish the same key and sign checkpoints of one tree.
    assert_eq!(key(&first).await, key(&second).await);
    // The auditor reads the entries through the first; the second, reached at its own
    // address rather than the public URL its DPoP proofs would have to name, is checked by
    // the checkpoint it signs: the tree recomputed from every entry must extend it.
    let on_first = auditor(&first).await;
    let on_second = Auditor::connect(&second.base, key(&second).await, Credential::None)
        .await
        .unwrap();
    let size = checkpoint_at_least(&on_second, 120).await;
    let (_, note) = on_second.checkpoint().await.unwrap();
    let dir = identity_core::storage::testing::tempfile_guard::Dir::new();
    let state = dir.path().join("second.checkpoint");
    std::fs::write(&state, note).unwrap();
    let report = on_first.verify_all(Some(&state), false).await.unwrap();
    assert!(report.checkpoint.size >= size);
}
