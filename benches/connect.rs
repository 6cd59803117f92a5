//! Against a real throwaway PostgreSQL: the cost of a new connection (TCP, startup,
//! authentication, the first ReadyForQuery, then Terminate) with the password in the
//! settings (the baseline), against the same connection with the password from a
//! `PasswordProvider` (`Builder::password_provider`'s callback: a boxed future per
//! attempt), for a trust role and a SCRAM-SHA-256 role, in one run.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use wirepool::{Connection, PasswordProvider};
use wirepool_testkit::Role;

fn connect(c: &mut Criterion) {
    let pg = wirepool_testkit::cluster();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("connect");
    for role in [Role::Trust, Role::Scram] {
        let settings = pg.config(role);
        let password = role.password().map(str::to_string);
        let provided = pg
            .config(role)
            .with_password(None::<String>)
            .with_password_provider(Some(PasswordProvider::new(move || {
                let pw = password.clone().unwrap_or_default();
                async move { Ok::<_, std::io::Error>(pw) }
            })));
        for (how, cfg) in [
            ("password_in_settings", settings),
            ("password_provider", provided),
        ] {
            g.bench_function(format!("{}_{how}", role.name()), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let t = Instant::now();
                        for _ in 0..iters {
                            let conn = Connection::connect(&cfg).await.unwrap();
                            black_box(&conn);
                            conn.close().await.unwrap();
                        }
                        t.elapsed()
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = connect
}
criterion_main!(benches);
