//! A logical replication stream decoded by wirepool against `pg_recvlogical` writing the
//! same stream to /dev/null, in one run (`scripts/bench-peers --replication`).
//!
//! Each round makes two fresh `pgoutput` slots, then writes the changes (500,000 inserts
//! of `(int8, text, int4)` in transactions of 100 rows; 100,000 with `--quick`), then
//! reads each slot to the WAL position after the last of them:
//!
//! - wirepool: `ReplicationStream` (protocol 2, binary values), every event decoded into
//!   its typed form and each insert's `id` read as an `i64`;
//! - `pg_recvlogical --start --endpos` with the same options (`proto_version 2`,
//!   `binary`), its output to /dev/null: the server's side of the same stream with no
//!   decoding at all, the ceiling.
//!
//! Three rounds (one with `--quick`), medians, in changes per second.

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use wirepool::replication::{Lsn, ReplicationClient, ReplicationEvent};
use wirepool_testkit::{find_bin_dir, Cluster, Role};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, changes) = if quick { (1, 100_000) } else { (3, 500_000) };
    let pg = Cluster::start().expect("throwaway PostgreSQL");
    pg.psql(
        "CREATE TABLE r (id int8 PRIMARY KEY, name text, score int4); \
         CREATE PUBLICATION rp FOR TABLE r",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = pg.config(Role::Admin);
    let bin = find_bin_dir().unwrap();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        pg.psql("TRUNCATE r").unwrap();
        let (w, p) = (format!("w{round}"), format!("p{round}"));
        pg.psql(&format!(
            "SELECT pg_create_logical_replication_slot('{w}', 'pgoutput'); \
             SELECT pg_create_logical_replication_slot('{p}', 'pgoutput')"
        ))
        .unwrap();
        let txns = changes / 100;
        pg.psql(&format!(
            "DO $$ BEGIN FOR t IN 0..{} LOOP \
               INSERT INTO r SELECT g, 'name ' || g, (g % 1000)::int4 \
                 FROM generate_series(t * 100, t * 100 + 99) g; \
               COMMIT; END LOOP; END $$",
            txns - 1
        ))
        .unwrap();
        let end: Lsn = pg
            .psql("SELECT pg_current_wal_lsn()")
            .unwrap()
            .trim()
            .parse()
            .unwrap();

        // wirepool.
        let took = rt.block_on(async {
            let client = ReplicationClient::connect(&cfg).await.unwrap();
            let t = Instant::now();
            let mut stream = client.start(&w, &["rp"], None).await.unwrap();
            let mut inserts = 0u64;
            let mut sum = 0i64;
            loop {
                match stream.next().await.unwrap().unwrap() {
                    ReplicationEvent::Insert { new, .. } => {
                        inserts += 1;
                        sum = sum.wrapping_add(new.get::<i64>("id").unwrap());
                    }
                    ReplicationEvent::Commit { .. } if inserts as usize >= changes => break,
                    _ => {}
                }
            }
            let took = t.elapsed();
            assert_eq!(inserts as usize, changes, "every insert decoded");
            std::hint::black_box(sum);
            drop(stream);
            took
        });
        ours.push(changes as f64 / took.as_secs_f64());

        // pg_recvlogical to /dev/null, to the same position.
        let t = Instant::now();
        let out = Command::new(bin.join("pg_recvlogical"))
            .args([
                "-d",
                &pg.url(Role::Admin),
                "-S",
                &p,
                "--start",
                "--no-loop",
                "-E",
                &end.to_string(),
                "-f",
                "/dev/null",
                "-o",
                "proto_version=2",
                "-o",
                "publication_names=rp",
                "-o",
                "binary=true",
            ])
            .output()
            .expect("pg_recvlogical runs");
        let took: Duration = t.elapsed();
        assert!(
            out.status.success(),
            "pg_recvlogical: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        theirs.push(changes as f64 / took.as_secs_f64());
        pg.psql(&format!(
            "SELECT pg_drop_replication_slot('{w}'); SELECT pg_drop_replication_slot('{p}')"
        ))
        .unwrap();
        eprintln!(
            "round {round}: wirepool {:.0} changes/s, pg_recvlogical {:.0} changes/s",
            ours[round], theirs[round]
        );
    }
    let (o, t) = (median(&mut ours), median(&mut theirs));
    println!("{changes} inserts in transactions of 100, {rounds} round(s), medians:");
    println!("| client | changes/s |");
    println!("|---|---|");
    println!("| wirepool ReplicationStream, events decoded, id read | {o:.0} |");
    println!("| pg_recvlogical to /dev/null | {t:.0} |");
    println!("ratio: wirepool at {:.2}x of pg_recvlogical", o / t);
}
