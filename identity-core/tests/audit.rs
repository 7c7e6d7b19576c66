//! The audit log on SQLite and PostgreSQL: appends, proofs, checkpoints, replicas.

use identity_core::audit::{AuditLog, Entry, Event, Outcome};
use identity_core::crypto::Kek;
use identity_core::storage::testing::fresh_db;
use identity_core::storage::Backend;
use identity_core::Clock;
use identity_sdk::audit::{
    leaf_hash, verify_consistency, verify_inclusion, Checkpoint, TreeBuilder,
};

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread")]
            #[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    )*};
}

both!(
    group_commit_gives_contiguous_indexes,
    witness_outside_the_database_stops_a_forked_checkpoint,
    proofs_verify_against_recomputed_roots,
    checkpoints_sign_and_refuse_a_rewritten_tree,
    two_replicas_make_one_tree,
    entries_carry_pseudonyms_not_ids,
    a_busy_writer_still_moves_staged_events,
    staged_events_commit_with_their_transaction,
    appends_on_a_client_generation_wait_for_it,
    a_citizens_entries_by_an_indexed_lookup,
);

fn event(i: usize) -> Event {
    Event::new("test.event", Outcome::Success).detail(format!("n{i}"))
}

async fn group_commit_gives_contiguous_indexes(backend: Backend) {
    let (db, _dir) = fresh_db(backend);
    let log = AuditLog::open(db, &Kek::generate(), Clock::system(), "test/audit").unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let log = log.clone();
        tasks.push(tokio::spawn(
            async move { log.record(event(i)).await.unwrap() },
        ));
    }
    for t in tasks {
        t.await.unwrap();
    }
    log.flush().unwrap();
    assert_eq!(log.size().unwrap(), 200);
    // Every event is in the tree exactly once.
    let mut details: Vec<String> = log
        .entries(0, 200, 200)
        .unwrap()
        .iter()
        .map(|r| Entry::decode(&r.entry).unwrap().detail)
        .collect();
    details.sort();
    details.dedup();
    assert_eq!(details.len(), 200);
}

async fn proofs_verify_against_recomputed_roots(backend: Backend) {
    let (db, _dir) = fresh_db(backend);
    let log = AuditLog::open(db, &Kek::generate(), Clock::system(), "test/audit").unwrap();
    let mut tree = TreeBuilder::new();
    let mut roots = vec![tree.root()];
    for batch in [1usize, 2, 5, 1, 13, 8, 3] {
        let entries: Vec<String> = (0..batch)
            .map(|i| format!("entry {} {i}\n", tree.size()))
            .collect();
        let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
        let first = log.append_batch(&refs).unwrap();
        assert_eq!(first, tree.size());
        for e in &entries {
            tree.push(leaf_hash(e.as_bytes()));
            roots.push(tree.root());
        }
    }
    let n = tree.size();
    for size in 1..=n {
        assert_eq!(
            log.root(size).unwrap(),
            roots[size as usize],
            "root at {size}"
        );
    }
    let rows = log.entries(0, n, 1000).unwrap();
    assert_eq!(rows.len() as u64, n);
    for size in [1, 2, 3, 7, 8, 9, 20, n] {
        for index in 0..size {
            let proof = log.inclusion_proof(index, size).unwrap();
            let leaf = leaf_hash(rows[index as usize].entry.as_bytes());
            verify_inclusion(index, size, &leaf, &proof, &roots[size as usize]).unwrap();
        }
        for from in 1..=size {
            let proof = log.consistency_proof(from, size).unwrap();
            verify_consistency(
                from,
                size,
                &proof,
                &roots[from as usize],
                &roots[size as usize],
            )
            .unwrap();
        }
    }
    assert!(log.inclusion_proof(n, n).is_err());
    assert!(log.consistency_proof(1, n + 1).is_err());
}

async fn checkpoints_sign_and_refuse_a_rewritten_tree(backend: Backend) {
    let (db, _dir) = fresh_db(backend);
    let log = AuditLog::open(db.clone(), &Kek::generate(), Clock::system(), "test/audit").unwrap();
    assert_eq!(
        log.checkpoint().unwrap(),
        None,
        "nothing to sign in an empty log"
    );
    for i in 0..5 {
        log.record(event(i)).await.unwrap();
    }
    log.flush().unwrap();
    assert_eq!(log.checkpoint().unwrap(), Some(5));
    assert_eq!(
        log.checkpoint().unwrap(),
        None,
        "no new checkpoint without new entries"
    );
    let note = log.latest_checkpoint().unwrap().unwrap();
    let cp = Checkpoint::verify_note(&note, log.verifier_key()).unwrap();
    assert_eq!(cp.size, 5);
    assert_eq!(cp.root, log.root(5).unwrap());
    for i in 5..9 {
        log.record(event(i)).await.unwrap();
    }
    log.flush().unwrap();
    // Someone rewrites history in the database: the stored hash of entries 0..4, which the
    // signed checkpoint of size 5 covers.
    db.with(|c| {
        use diesel::prelude::*;
        use identity_core::schema::audit_nodes;
        diesel::update(audit_nodes::table.filter(audit_nodes::node_key.eq(2i64 << 48)))
            .set(audit_nodes::hash.eq("00".repeat(32)))
            .execute(c)?;
        Ok(())
    })
    .unwrap();
    let err = log.checkpoint().unwrap_err().to_string();
    assert!(err.contains("refusing to sign"), "{err}");
}

async fn two_replicas_make_one_tree(backend: Backend) {
    let (db, _dir) = fresh_db(backend);
    let kek = Kek::generate();
    // Two processes' worth of logs: separate writers and separate pools on one database.
    let a = AuditLog::open(db.clone(), &kek, Clock::system(), "test/audit").unwrap();
    let b = AuditLog::open(db.clone(), &kek, Clock::system(), "test/audit").unwrap();
    assert_eq!(
        a.verifier_key(),
        b.verifier_key(),
        "replicas share the log's key"
    );
    let mut tasks = Vec::new();
    for i in 0..100 {
        let log = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(
            async move { log.record(event(i)).await.unwrap() },
        ));
        if i % 10 == 0 {
            let log = if i % 20 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                log.flush().unwrap();
                log.checkpoint().unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    a.flush().unwrap();
    b.flush().unwrap();
    a.checkpoint().unwrap();
    let rows = a.entries(0, 1000, 1000).unwrap();
    assert_eq!(rows.len(), 100);
    let mut tree = TreeBuilder::new();
    for r in &rows {
        tree.push(leaf_hash(r.entry.as_bytes()));
    }
    let note = b.latest_checkpoint().unwrap().unwrap();
    let cp = Checkpoint::verify_note(&note, a.verifier_key()).unwrap();
    assert_eq!((cp.size, cp.root), (100, tree.root()));
}

async fn entries_carry_pseudonyms_not_ids(backend: Backend) {
    let (db, _dir) = fresh_db(backend);
    let log = AuditLog::open(db, &Kek::generate(), Clock::system(), "test/audit").unwrap();
    let citizen = "internal-citizen-id-123";
    log.record(
        Event::new("login", Outcome::Failure)
            .citizen(citizen)
            .source("203.0.113.7")
            .detail("bad-credentials"),
    )
    .await
    .unwrap();
    log.flush().unwrap();
    let row = &log.entries(0, 1, 1).unwrap()[0];
    let e = Entry::decode(&row.entry).expect("canonical");
    assert_eq!(e.event, "login");
    assert_eq!(e.outcome, "failure");
    assert!(
        !row.entry.contains(citizen) && !row.entry.contains("203.0.113.7"),
        "{}",
        row.entry
    );
    assert_eq!(e.subject, log.pseudonym(citizen));
    assert_eq!(log.for_citizen(citizen, 10).unwrap().len(), 1);
}

async fn witness_outside_the_database_stops_a_forked_checkpoint(backend: Backend) {
    let (db, dir) = fresh_db(backend);
    let witness_dir = identity_core::storage::testing::tempfile_guard::Dir::new();
    let witness = witness_dir.path().join("audit-witness");
    let _ = dir;
    let kek = Kek::generate();
    let log = AuditLog::open_with_witness(
        db.clone(),
        &kek,
        Clock::system(),
        "test/audit",
        Some(witness.clone()),
    )
    .unwrap();
    let entries: Vec<String> = (0..6).map(|i| format!("e{i}\n")).collect();
    let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
    log.append_batch(&refs).unwrap();
    assert_eq!(log.checkpoint().unwrap(), Some(6));
    assert!(std::fs::read_to_string(&witness).unwrap().starts_with("6 "));
    // Cut everything back in the database, checkpoints included, and grow another history.
    db.with(|c| {
        use diesel::prelude::*;
        use identity_core::schema::{audit_checkpoints, audit_entries, audit_nodes};
        diesel::delete(audit_entries::table).execute(c)?;
        diesel::delete(audit_nodes::table).execute(c)?;
        diesel::delete(audit_checkpoints::table).execute(c)?;
        Ok(())
    })
    .unwrap();
    let other: Vec<String> = (0..9).map(|i| format!("forged {i}\n")).collect();
    let refs: Vec<&str> = other.iter().map(String::as_str).collect();
    log.append_batch(&refs).unwrap();
    let err = log.checkpoint().unwrap_err().to_string();
    assert!(
        err.contains("refusing to sign") && err.contains("this server signed"),
        "{err}"
    );
}

/// Events left in the outbox by a replica that died before waking its writer (or, on
/// SQLite, by a version that staged there) reach the tree even while this replica's writer
/// never idles (it looks at the outbox at least every 250 ms, not only when woken or idle).
async fn a_busy_writer_still_moves_staged_events(backend: Backend) {
    use diesel::prelude::*;
    use identity_core::schema::audit_outbox;
    use std::time::{Duration, Instant};
    let (db, _dir) = fresh_db(backend);
    let log = AuditLog::open(db.clone(), &Kek::generate(), Clock::system(), "test/audit").unwrap();
    // The writer's look at the outbox at start is behind us.
    log.record(event(0)).await.unwrap();
    // Committed to the outbox without waking the writer, as the dead replica left it.
    let entry = log.entry(&Event::new("test.staged", Outcome::Success));
    db.with(|c| {
        Ok(diesel::insert_into(audit_outbox::table)
            .values((
                audit_outbox::id.eq("left-by-a-dead-replica"),
                audit_outbox::created_ms.eq(entry.time_ms),
                audit_outbox::entry.eq(entry.encode()),
            ))
            .execute(c)?)
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    for i in 1.. {
        // Direct appends every few milliseconds: the writer's idle tick never comes.
        log.record(event(i)).await.unwrap();
        let size = log.size().unwrap();
        if log
            .entries(0, size, size)
            .unwrap()
            .iter()
            .any(|r| r.entry.contains("event=test.staged"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "a staged event waited over 3 s behind {i} direct appends"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Staged events commit with their transaction or not at all. On SQLite they are in the
/// tree the moment it commits; on PostgreSQL once the writer has moved them.
async fn staged_events_commit_with_their_transaction(backend: Backend) {
    let (db, _dir) = fresh_db(backend);
    let log = AuditLog::open(db.clone(), &Kek::generate(), Clock::system(), "test/audit").unwrap();
    let rolled_back: identity_core::Result<()> = db.tx(|c| {
        let _ = log.stage(c, &[Event::new("test.rolled-back", Outcome::Success)])?;
        Err(identity_core::Error::internal("the action failed"))
    });
    assert!(rolled_back.is_err());
    let staged = db
        .tx(|c| log.stage(c, &[Event::new("test.committed", Outcome::Success)]))
        .unwrap();
    if backend == Backend::Sqlite {
        assert_eq!(log.size().unwrap(), 1, "in the tree at commit");
    }
    log.committed(staged);
    log.flush().unwrap();
    let size = log.size().unwrap();
    let entries = log.entries(0, size, size).unwrap();
    assert_eq!(size, 1, "the rolled-back event is nowhere");
    assert!(entries[0].entry.contains("event=test.committed"));
    assert_eq!(log.appended(), 1, "counted once, wherever it was appended");
}

/// Submits `events` on the condition that the clients are at `generation`; what the writer
/// answered.
async fn submit_at(log: &AuditLog, generation: i64, events: &[Event]) -> bool {
    let (done, answer) = tokio::sync::oneshot::channel();
    log.submit_if_clients_at(generation, events, move |r| {
        let _ = done.send(r);
    });
    answer.await.unwrap().unwrap()
}

async fn appends_on_a_client_generation_wait_for_it(backend: Backend) {
    use identity_core::storage::{clients_generation, DbConnection};
    let (db, _dir) = fresh_db(backend);
    let log = AuditLog::open(db.clone(), &Kek::generate(), Clock::system(), "test/audit").unwrap();
    let generation =
        |db: &identity_core::storage::Db| db.with(clients_generation).unwrap().unwrap();
    // Any statement on the clients table changes the generation, as a trigger in its
    // transaction: a plain SQL change by an operator as much as the provider's own.
    let sql = |db: &identity_core::storage::Db, statement: &str| {
        use diesel::connection::SimpleConnection;
        db.with(|c: &mut DbConnection| Ok(c.batch_execute(statement)?))
            .unwrap()
    };
    let g0 = generation(&db);
    sql(
        &db,
        "INSERT INTO clients (id, name, department, sector, secret_hash, redirect_uris, scopes, \
         id_token_alg, created_at, fapi) VALUES ('c', 'C', 'D', 'D', NULL, '[]', '', 'ES256', 0, 0)",
    );
    let g1 = generation(&db);
    assert_ne!(g1, g0, "an insert moves it");
    sql(&db, "UPDATE clients SET scopes = 'signing' WHERE id = 'c'");
    let g2 = generation(&db);
    assert_ne!(g2, g1, "an update moves it");
    // A rolled-back change leaves it where it was.
    let rolled_back: identity_core::Result<()> = db.tx(|c| {
        use diesel::connection::SimpleConnection;
        c.batch_execute("DELETE FROM clients WHERE id = 'c'")?;
        Err(identity_core::Error::internal("changed my mind"))
    });
    assert!(rolled_back.is_err());
    assert_eq!(generation(&db), g2);

    // At the current generation the events go in; behind it nothing is written, and the
    // submitter is told so rather than given an error.
    assert!(submit_at(&log, g2, &[event(1), event(2)]).await);
    assert_eq!(log.size().unwrap(), 2);
    sql(&db, "DELETE FROM clients WHERE id = 'c'");
    assert_ne!(generation(&db), g2, "a delete moves it");
    assert!(!submit_at(&log, g2, &[event(3)]).await);
    assert_eq!(log.size().unwrap(), 2);
    // In one group commit, the refused ones stay out and the rest go in, in order.
    let now = generation(&db);
    let (stale, current) = ([event(4)], [event(5)]);
    let (a, b, c) = tokio::join!(
        submit_at(&log, g1, &stale),
        submit_at(&log, now, &current),
        log.record(event(6)),
    );
    assert!(!a && b);
    c.unwrap();
    let details: Vec<String> = log
        .entries(0, 10, 10)
        .unwrap()
        .iter()
        .map(|r| Entry::decode(&r.entry).unwrap().detail)
        .collect();
    let mut tail = details[2..].to_vec();
    tail.sort();
    assert_eq!(details[..2], ["n1", "n2"]);
    assert_eq!(tail, ["n5", "n6"]);
}

/// The account page's lookup: by the `subject` column, which the writer fills from the
/// entry and the migration filled for the entries before it; on SQLite the plan uses the
/// index, not a scan of the log (issue 17).
async fn a_citizens_entries_by_an_indexed_lookup(backend: Backend) {
    use diesel::connection::SimpleConnection;
    let (db, _dir) = fresh_db(backend);
    let log = AuditLog::open(db.clone(), &Kek::generate(), Clock::system(), "test/audit").unwrap();
    for i in 0..30 {
        let who = if i % 3 == 0 { "citizen-a" } else { "citizen-b" };
        log.record(event(i).citizen(who)).await.unwrap();
    }
    log.record(event(99)).await.unwrap();
    log.flush().unwrap();
    let mine = log.for_citizen("citizen-a", 20).unwrap();
    assert_eq!(mine.len(), 10);
    assert!(
        mine.windows(2).all(|w| w[0].time_ms >= w[1].time_ms),
        "newest first"
    );
    assert_eq!(log.for_citizen("citizen-b", 5).unwrap().len(), 5);
    assert!(log.for_citizen("nobody", 5).unwrap().is_empty());
    // Entries from before the column: the migration's backfill derives it from the text.
    let migration = match backend {
        Backend::Sqlite => {
            include_str!("../../migrations/sqlite/2026-12-04-000016_audit_subject/up.sql")
        }
        Backend::Postgres => {
            include_str!("../../migrations/postgres/2026-12-04-000015_audit_subject/up.sql")
        }
    };
    let start = migration.find("UPDATE audit_entries").unwrap();
    let backfill = &migration[start..start + migration[start..].find(';').unwrap() + 1];
    db.with(|c| Ok(c.batch_execute("UPDATE audit_entries SET subject = NULL")?))
        .unwrap();
    assert!(log.for_citizen("citizen-a", 20).unwrap().is_empty());
    db.with(|c| Ok(c.batch_execute(backfill)?)).unwrap();
    assert_eq!(log.for_citizen("citizen-a", 20).unwrap().len(), 10);
    assert_eq!(log.for_citizen("citizen-b", 50).unwrap().len(), 20);
    if backend == Backend::Sqlite {
        use diesel::prelude::*;
        use diesel::sql_types::Text;
        #[derive(QueryableByName)]
        struct Plan {
            #[diesel(sql_type = Text)]
            detail: String,
        }
        let plan: Vec<Plan> = db
            .with(|c| {
                Ok(diesel::sql_query(
                    "EXPLAIN QUERY PLAN SELECT entry FROM audit_entries WHERE subject = 'x' ORDER BY idx DESC LIMIT 20",
                )
                .load(c)?)
            })
            .unwrap();
        let plan: Vec<String> = plan.into_iter().map(|p| p.detail).collect();
        assert!(
            plan.iter()
                .any(|d| d.contains("USING INDEX audit_entries_subject")),
            "{plan:?}"
        );
    }
}
