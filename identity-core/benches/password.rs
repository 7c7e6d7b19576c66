//! Argon2id cost at the default parameters, and proof that an unknown user (the dummy
//! hash) costs the same as a known one. Run: `cargo bench -p identity-core --bench password`.

use criterion::{criterion_group, criterion_main, Criterion};
use identity_core::password::{Hasher, HashingConfig, Password, Policy};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let hasher = Hasher::new(&HashingConfig {
        workers: 1,
        queue: 0,
        ..HashingConfig::default()
    })
    .unwrap();
    let pw = Password::new("Lion-Rock-Harbour-2020");
    let stored = rt.block_on(hasher.hash(&pw)).unwrap();
    let mut g = c.benchmark_group("argon2id m=19456 t=2 p=1");
    g.sample_size(20);
    g.bench_function("hash", |b| {
        b.iter(|| rt.block_on(hasher.hash(&pw)).unwrap())
    });
    g.bench_function("verify known user", |b| {
        b.iter(|| {
            rt.block_on(hasher.verify(Some(stored.clone()), &pw))
                .unwrap()
        })
    });
    g.bench_function("verify unknown user (dummy hash)", |b| {
        b.iter(|| rt.block_on(hasher.verify(None, &pw)).unwrap())
    });
    g.finish();
    let policy = Policy::default();
    c.bench_function("password policy (zxcvbn)", |b| {
        b.iter(|| {
            policy.check(
                &Password::new("tram ferry peak harbour"),
                &["chan", "chan@example.hk"],
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
