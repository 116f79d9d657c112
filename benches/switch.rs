//! Criterion benches of the foundation: the switch, pooled creation, and cold creation by the
//! signal-stack trick. `cargo bench --bench switch`; the example `switch_figures` prints the same
//! figures in plain words.

use criterion::{Criterion, criterion_group, criterion_main};
use sigcoro::coroutine::{Coroutine, CoroutineResult, Yielder};
use std::hint::black_box;

fn switch(c: &mut Criterion) {
    let mut co = Coroutine::new(|y: &Yielder<u64, u64>, mut v: u64| {
        loop {
            v = y.suspend(v + 1);
        }
    });
    // One iteration is a round trip: two one-way switches.
    c.bench_function("switch/round_trip", |b| {
        let mut v = 0u64;
        b.iter(|| match co.resume(black_box(v)) {
            CoroutineResult::Yield(n) => v = n,
            CoroutineResult::Return(never) => match never {},
        })
    });
}

fn create_pooled(c: &mut Criterion) {
    c.bench_function("create/pooled_new_resume_drop", |b| {
        b.iter(|| {
            let mut co = Coroutine::new(|_: &Yielder<u64, ()>, v: u64| v + 1);
            black_box(co.resume(black_box(1)));
        })
    });
}

fn create_cold(c: &mut Criterion) {
    let mut g = c.benchmark_group("create");
    g.sample_size(20);
    g.bench_function("cold_signal_stack_boot", |b| {
        b.iter(|| sigcoro::__bench::reboot_one_for_bench(sigcoro::stack::DEFAULT_STACK_SIZE).unwrap())
    });
    g.finish();
}

criterion_group!(benches, switch, create_pooled, create_cold);
criterion_main!(benches);
