//! Profiles and detectors over a generated workforce (1,000 users, 30 days).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_detect::scenario::{Params, generate};
use portcullis_detect::{Config, Engine};

fn engine(c: &mut Criterion) {
    let s = generate(Params { users: 1_000, days: 30, seed: 1, attacks_per_thousand: 12 });
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(s.events.len() as u64));
    group.sample_size(10);
    group.bench_function("ingest_1000_users_30_days", |b| {
        b.iter(|| {
            let mut engine = Engine::new(Config::default());
            engine.ingest_all(&s.events).len()
        });
    });
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
