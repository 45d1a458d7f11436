//! In-process costs: a local call's round trip, a report fanned out to 1000 subscribers,
//! and a publish matched against 10,000 subscription patterns.
//!
//! `cargo bench -p netsvc --bench inprocess`

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use netsvc::{Lifetime, ReportMonitor, Runtime, RuntimeConfig, Value};

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn local_call(c: &mut Criterion) {
    let tokio = tokio_runtime();
    let (rt, _svc) = tokio.block_on(async {
        let rt = Runtime::new();
        let svc = rt
            .service("echo")
            .export(
                "echo",
                |req| async move { Ok(Value::List(req.into_args())) },
            )
            .build()
            .expect("service");
        (rt, svc)
    });
    let ep = rt.endpoint("echo");
    c.bench_function("local_call_round_trip", |b| {
        b.iter_custom(|iters| {
            // The caller runs as a task, as callers do in an application (not in
            // `block_on`, whose thread is outside the worker pool).
            let ep = ep.clone();
            let task = tokio.spawn(async move {
                let start = Instant::now();
                for i in 0..iters {
                    let r = ep.call("echo", vec![Value::from(i)]).await;
                    assert!(r.is_ok());
                }
                start.elapsed()
            });
            tokio.block_on(task).expect("bench task")
        });
    });
}

fn drain(monitors: &mut [ReportMonitor]) -> usize {
    monitors
        .iter_mut()
        .map(|m| std::iter::from_fn(|| m.try_recv()).count())
        .sum()
}

fn fan_out(c: &mut Criterion) {
    let tokio = tokio_runtime();
    let mut config = RuntimeConfig::default();
    config.report_capacity = 1 << 16;
    let (_rt, publisher, _subs, mut monitors) = tokio.block_on(async {
        let rt = Runtime::with_config(config).expect("runtime");
        let publisher = rt.service("pub").build().expect("publisher");
        let mut subs = Vec::new();
        let mut monitors = Vec::new();
        for i in 0..1000 {
            let s = rt.service(&format!("sub{i}")).build().expect("subscriber");
            monitors.push(s.monitor_reports("pub", "sensor.*").expect("monitor"));
            subs.push(s);
        }
        (rt, publisher, subs, monitors)
    });
    drain(&mut monitors);
    c.bench_function("report_fan_out_1000_subscribers", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for i in 0..iters {
                let start = Instant::now();
                let n = publisher
                    .publish("sensor.temp", i, Lifetime::None)
                    .expect("publish");
                // Each subscriber takes its report off its queue.
                let received = drain(&mut monitors);
                spent += start.elapsed();
                assert_eq!((n, received), (1000, 1000));
            }
            spent
        });
    });
}

fn many_patterns(c: &mut Criterion) {
    let tokio = tokio_runtime();
    let (_rt, publisher, _sub, mut monitors) = tokio.block_on(async {
        let rt = Runtime::new();
        let publisher = rt.service("pub").build().expect("publisher");
        let sub = rt.service("sub").build().expect("subscriber");
        let mut monitors = Vec::new();
        for i in 0..10_000 {
            let pattern = match i % 10 {
                0..=6 => format!("sensor.{i}.temp"),
                7 | 8 => format!("sensor.{i}.*"),
                _ => format!("*.alarm.{i}"),
            };
            monitors.push(sub.monitor_reports("pub", &pattern).expect("monitor"));
        }
        (rt, publisher, sub, monitors)
    });
    drain(&mut monitors);
    c.bench_function("publish_among_10000_patterns", |b| {
        b.iter(|| {
            // Matches exactly one pattern (sensor.7.*): the trie visits a handful of nodes.
            let n = publisher
                .publish("sensor.7.humidity", 1, Lifetime::None)
                .expect("publish");
            assert_eq!(n, 1);
        });
        drain(&mut monitors);
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = local_call, fan_out, many_patterns
}
criterion_main!(benches);
