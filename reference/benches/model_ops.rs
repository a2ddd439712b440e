//! Model speed: simple operations per second on one core.
//!
//! `cargo bench -p reference --bench model_ops` reports, with criterion's
//! throughput, how many operations per second the model executes for a mix
//! of pin, unpin, get, put and touch on already-mapped memory (small pages
//! and a PMD THP), and for the same mix with the invariant check after every
//! operation (what the model fuzz target does).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reference::{
    Access, Config, Foll, GupApi, MapKind, Model, Pid, Profile, Prot, Release, ThpMode,
};

const BASE: u64 = 0x20_0000;
const P: Pid = Pid::PARENT;
/// Operations per iteration of the mix below.
const OPS_PER_ROUND: u64 = 10;

/// A model with 512 small pages and one PMD THP, all populated.
fn setup() -> Model {
    let mut m = Model::new(
        Profile::LINUX_6_12,
        Config {
            thp: ThpMode::Madvise,
            use_zero_page: true,
        },
    );
    m.mmap(P, BASE, 512, MapKind::AnonPrivate, Prot::ReadWrite)
        .expect("mmap");
    m.touch(P, BASE, 512, Access::Write).expect("touch");
    m.mmap(P, BASE + 1024, 512, MapKind::AnonPrivate, Prot::ReadWrite)
        .expect("mmap");
    m.madvise(P, BASE + 1024, 512, reference::Advice::HugePage)
        .expect("madvise");
    m.touch(P, BASE + 1024, 1, Access::Write).expect("touch");
    m
}

/// Ten simple operations on page `i` (mod 512) of each mapping.
fn round(m: &mut Model, i: u64) {
    let small = BASE + i % 512;
    let thp = BASE + 1024 + i % 512;
    let p = m
        .gup(P, GupApi::PinUserPagesFast, P, small, 1, Foll::WRITE)
        .expect("pin");
    let g = m
        .gup(P, GupApi::GetUserPagesFast, P, small, 1, Foll::NONE)
        .expect("get");
    m.touch(P, small, 1, Access::Write).expect("touch");
    m.release(p.handle, Release::Unpin).expect("unpin");
    m.release(g.handle, Release::Put).expect("put");
    let p = m
        .gup(P, GupApi::PinUserPages, P, thp, 1, Foll::LONGTERM)
        .expect("pin thp");
    let g = m
        .gup(P, GupApi::GetUserPages, P, thp, 1, Foll::WRITE)
        .expect("get thp");
    m.touch(P, thp, 1, Access::Read).expect("touch thp");
    m.release(g.handle, Release::Put).expect("put thp");
    m.release(p.handle, Release::UnpinDirty).expect("unpin thp");
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("model");
    group.throughput(Throughput::Elements(OPS_PER_ROUND));
    group.bench_function("simple-ops", |b| {
        let mut m = setup();
        let mut i = 0;
        b.iter(|| {
            round(black_box(&mut m), i);
            i += 1;
        });
    });
    group.bench_function("simple-ops+invariants", |b| {
        let mut m = setup();
        let mut i = 0;
        b.iter(|| {
            round(black_box(&mut m), i);
            m.check_invariants().expect("invariants");
            i += 1;
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
