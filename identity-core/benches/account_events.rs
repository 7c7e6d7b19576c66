//! The account page's security events at scale: a citizen's latest 20 entries found in a
//! log of `entries` entries (10 million by default), by the indexed `subject` column (what
//! `AuditLog::for_citizen` does) side by side with the `LIKE '%subject=…%'` scan it
//! replaced, on one SQLite file in one run. Plain timing, medians.
//!
//! `cargo bench -p identity-core --bench account_events -- [entries] [data-dir]`
//!
//! The bulk of the log is synthetic rows written straight into `audit_entries` (the lookup
//! reads only that table; building a real tree of 10 million entries would take most of an
//! hour here), spread over 200,000 citizens; then 20 real events of one citizen go through
//! the log's own writer, and `for_citizen` finds them.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use identity_core::audit::{AuditLog, Event, Outcome};
use identity_core::crypto::Kek;
use identity_core::storage::Db;
use identity_core::Clock;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    #[allow(dead_code)]
    entry: String,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let entries: i64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let dir = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("events-bench-{}", std::process::id()))
        });
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("identity.db");
    let _ = std::fs::remove_file(&path);
    let db = Db::open(&path.to_string_lossy(), 4).unwrap();
    db.migrate().unwrap();

    let t = Instant::now();
    let chunk = 1_000_000i64;
    let mut from = 0i64;
    while from < entries {
        let to = (from + chunk).min(entries);
        db.with(|c| {
            Ok(c.batch_execute(&format!(
                "WITH RECURSIVE n(x) AS (SELECT {from} UNION ALL SELECT x + 1 FROM n WHERE x + 1 < {to})
                 INSERT INTO audit_entries (idx, entry, created_at, subject)
                 SELECT x,
                        'identity-audit/v1' || char(10) || 'time=' || (1790000000000 + x) || char(10) ||
                        'event=login' || char(10) || 'outcome=success' || char(10) || 'client=-' || char(10) ||
                        'request=r' || x || char(10) || 'subject=s' || (x % 200000) || char(10) ||
                        'source=0123456789abcdef' || char(10) || 'detail=password' || char(10),
                        1790000000, 's' || (x % 200000)
                 FROM n"
            ))?)
        })
        .unwrap();
        from = to;
    }
    println!(
        "built {entries} synthetic entries in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // One real citizen's events through the log itself, after the synthetic ones.
    let log = AuditLog::open(
        db.clone(),
        &Kek::generate(),
        Clock::system(),
        "bench/events",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..20 {
            log.record(
                Event::new("login", Outcome::Success)
                    .citizen("citizen-under-test")
                    .detail(format!("n{i}")),
            )
            .await
            .unwrap();
        }
    });
    log.flush().unwrap();

    let runs = 51;
    let mut indexed = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let found = log.for_citizen("citizen-under-test", 20).unwrap();
        indexed.push(t.elapsed().as_secs_f64());
        assert_eq!(found.len(), 20);
    }
    // A synthetic citizen in the middle of the log: 50 entries over all 10 million.
    let mut by_index = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let rows: Vec<Row> = db
            .with(|c| {
                Ok(diesel::sql_query(
                    "SELECT entry FROM audit_entries WHERE subject = ? ORDER BY idx DESC LIMIT ?",
                )
                .bind::<Text, _>("s123457")
                .bind::<BigInt, _>(20)
                .load(c)?)
            })
            .unwrap();
        by_index.push(t.elapsed().as_secs_f64());
        assert_eq!(rows.len(), 20);
    }
    let scans = 5;
    let mut by_like = Vec::new();
    for _ in 0..scans {
        let t = Instant::now();
        let rows: Vec<Row> = db
            .with(|c| {
                Ok(diesel::sql_query(
                    "SELECT entry FROM audit_entries WHERE entry LIKE ? ORDER BY idx DESC LIMIT ?",
                )
                .bind::<Text, _>("%\nsubject=s123457\n%")
                .bind::<BigInt, _>(20)
                .load(c)?)
            })
            .unwrap();
        by_like.push(t.elapsed().as_secs_f64());
        assert_eq!(rows.len(), 20);
    }
    let (a, b, c) = (median(indexed), median(by_index), median(by_like));
    println!(
        "for_citizen (indexed, the real path): median {:.3} ms of {runs}",
        a * 1e3
    );
    println!(
        "subject = ? (indexed, synthetic citizen): median {:.3} ms of {runs}",
        b * 1e3
    );
    println!(
        "entry LIKE '%subject=…%' (the scan it replaced): median {:.1} ms of {scans}",
        c * 1e3
    );
    println!("ratio scan / index: {:.0}x", c / b);
    let _ = std::fs::remove_dir_all(&dir);
}
