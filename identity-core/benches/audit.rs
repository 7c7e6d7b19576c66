//! Audit log benchmarks (plain timing; building a million-entry log is too heavy for
//! criterion's repetitions). Run through `bench/audit.sh`, or alone:
//! `cargo bench -p identity-core --bench audit -- [entries] [data-dir] [origin] [kek-hex]`.
//!
//! Prints, in one run on one SQLite file:
//! - appends per second through `record` (group commit) with 64 concurrent callers, side by
//!   side with one transaction per event;
//! - the time to build a log of `entries` entries in batches;
//! - inclusion and consistency proof times at that size (medians of 200);
//! - an auditor's recomputation of the whole tree from the stored entries.

use identity_core::audit::{AuditLog, Event, Outcome};
use identity_core::crypto::Kek;
use identity_core::storage::Db;
use identity_core::Clock;
use identity_sdk::audit::{leaf_hash, verify_consistency, verify_inclusion, TreeBuilder};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let entries: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("audit-bench-{}", std::process::id()))
        });
    let origin = args.get(2).cloned().unwrap_or_else(|| "bench/audit".into());
    let kek = args
        .get(3)
        .map(|k| Kek::parse(k).unwrap())
        .unwrap_or_else(Kek::generate);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("identity.db");
    let _ = std::fs::remove_file(&path);
    let db = Db::open(&path.to_string_lossy(), 8).unwrap();
    db.migrate().unwrap();
    let log = AuditLog::open(db.clone(), &kek, Clock::system(), &origin).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Group commit versus one transaction per event.
    let n = 4000;
    let t = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..n / 64 {
                    log.record(Event::new("bench", Outcome::Success).detail(format!("{w}-{i}")))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let grouped = f64::from(n) / t.elapsed().as_secs_f64();
    let single_n = 1000;
    let entry = log.entry(&Event::new("bench", Outcome::Success)).encode();
    let t = Instant::now();
    for _ in 0..single_n {
        log.append_batch(&[entry.as_str()]).unwrap();
    }
    let single = f64::from(single_n) / t.elapsed().as_secs_f64();
    println!("appends/s, 64 concurrent callers, group commit: {grouped:.0}");
    println!("appends/s, one transaction per event:            {single:.0}");
    println!("group commit speed-up: {:.1}x", grouped / single);

    // Grow the log to `entries`.
    let t = Instant::now();
    let batch: Vec<String> = (0..10_000).map(|i| format!("{entry}#{i}")).collect();
    let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
    loop {
        let have = log.size().unwrap();
        if have >= entries {
            break;
        }
        let take = ((entries - have) as usize).min(refs.len());
        log.append_batch(&refs[..take]).unwrap();
    }
    let size = log.size().unwrap();
    println!(
        "built {size} entries in {:.1} s (batches of 10,000)",
        t.elapsed().as_secs_f64()
    );

    // Proofs at this size.
    let root = log.root(size).unwrap();
    let mut incl = Vec::new();
    let mut cons = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % size;
        let t = Instant::now();
        let proof = log.inclusion_proof(i, size).unwrap();
        incl.push(t.elapsed().as_secs_f64() * 1e3);
        let e = &log.entries(i, i + 1, 1).unwrap()[0].entry;
        verify_inclusion(i, size, &leaf_hash(e.as_bytes()), &proof, &root).unwrap();
        let m = 1 + x % (size - 1);
        let t = Instant::now();
        let proof = log.consistency_proof(m, size).unwrap();
        cons.push(t.elapsed().as_secs_f64() * 1e3);
        if m == size / 2 {
            verify_consistency(m, size, &proof, &log.root(m).unwrap(), &root).unwrap();
        }
    }
    println!("inclusion proof at {size}: median {:.3} ms", median(incl));
    println!("consistency proof at {size}: median {:.3} ms", median(cons));

    // An auditor's recomputation from the stored entries (no HTTP).
    let t = Instant::now();
    let mut tree = TreeBuilder::new();
    let mut start = 0;
    while start < size {
        for r in log.entries(start, size, 10_000).unwrap() {
            tree.push(leaf_hash(r.entry.as_bytes()));
        }
        start += 10_000;
    }
    assert_eq!(tree.root(), root);
    println!(
        "recomputed the tree of {size} entries from the database in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    log.checkpoint().unwrap();
    println!("data: {}", dir.display());
}
