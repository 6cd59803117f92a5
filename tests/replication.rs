//! Logical replication against a real server (`wal_level = logical`): the commands, a
//! publication's inserts, updates (an unchanged TOASTed value among them), deletes and a
//! truncate decoded with their values read by name, and a restart from the confirmed
//! position that delivers again exactly what was not confirmed.

use std::time::Duration;

use futures_util::StreamExt;
use wirepool::replication::{
    Lsn, ReplicationClient, ReplicationEvent, ReplicationStream, StreamState,
};
use wirepool_testkit::{cluster, Role};

/// The events up to and including the `commits`-th Commit.
async fn until_commits(stream: &mut ReplicationStream, commits: usize) -> Vec<ReplicationEvent> {
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < commits {
        let e = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("an event within a minute")
            .expect("the stream goes on")
            .expect("no error");
        seen += usize::from(matches!(e, ReplicationEvent::Commit { .. }));
        out.push(e);
    }
    out
}

fn commit_lsns(events: &[ReplicationEvent]) -> Vec<Lsn> {
    events
        .iter()
        .filter_map(|e| match e {
            ReplicationEvent::Commit { commit_lsn, .. } => Some(*commit_lsn),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_streams_decoded_and_resumes_from_the_confirmed_position() {
    let pg = cluster();
    pg.psql(
        "CREATE TABLE files (id bigint PRIMARY KEY, path text NOT NULL, size int4, body text); \
         CREATE PUBLICATION files_pub FOR TABLE files",
    )
    .unwrap();
    let cfg = pg.config(Role::Admin);

    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    let id = client.identify_system().await.unwrap();
    assert!(id.timeline >= 1 && id.xlog_pos > Lsn(0), "{id:?}");
    assert_eq!(id.dbname.as_deref(), Some(cfg.dbname()));
    let slot = client.create_slot("indexer", false).await.unwrap();
    assert_eq!(slot.name, "indexer");
    assert!(slot.consistent_point >= id.xlog_pos);
    // Names PostgreSQL does not allow are refused before anything is sent.
    for bad in ["", "quo\"te", "Upper", &"x".repeat(64)] {
        let e = client.create_slot(bad, false).await.unwrap_err();
        assert_eq!(e.kind(), wirepool::ErrorKind::InvalidInput, "{bad}: {e}");
    }
    // A second slot of the same name is the server's error; so is an unknown one.
    assert!(client.create_slot("indexer", false).await.is_err());
    assert!(client.drop_slot("no_such_slot").await.is_err());

    // Three transactions: inserts (one with a value large enough to be TOASTed), an
    // update that leaves it alone and a delete, a truncate.
    let pool = wirepool_testkit::pool(&pg, Role::Admin, 1, 2).await;
    let mut c = pool.acquire().await.unwrap();
    c.simple_query(
        "BEGIN; \
         INSERT INTO files VALUES (1, 'src/a.rs', 10, 'fn a() {}'), (2, 'src/b.rs', NULL, NULL); \
         INSERT INTO files SELECT 3, 'big.txt', 0, string_agg(md5(i::text), '') \
             FROM generate_series(1, 4000) i; \
         COMMIT",
    )
    .await
    .unwrap();
    c.simple_query(
        "BEGIN; UPDATE files SET size = 11 WHERE id = 3; DELETE FROM files WHERE id = 2; COMMIT",
    )
    .await
    .unwrap();
    c.simple_query("TRUNCATE files").await.unwrap();
    drop(c);

    let mut stream = client.start("indexer", &["files_pub"], None).await.unwrap();
    let events = until_commits(&mut stream, 3).await;
    let lsns = commit_lsns(&events);
    assert!(lsns.windows(2).all(|w| w[0] < w[1]), "{lsns:?}");

    // The pool shows the stream: state, positions, lag, in its health and metrics.
    pool.watch_replication(&stream);
    let st = pool.replication_status();
    assert_eq!(st.len(), 1);
    assert_eq!(
        (st[0].slot.as_str(), st[0].state),
        ("indexer", StreamState::Streaming)
    );
    assert!(st[0].server_lsn >= lsns[2], "{st:?}");
    assert_eq!(st[0].lag_bytes, st[0].server_lsn.0 - st[0].confirmed_lsn.0);
    let health = pool.health().to_json();
    assert!(
        health.contains("\"replication\":[{\"slot\":\"indexer\",\"state\":\"streaming\""),
        "{health}"
    );
    let metrics = pool.render_prometheus();
    let prefix = &pool.config().metrics_prefix;
    assert!(
        metrics.contains(&format!(
            "{prefix}_replication_lag_bytes{{slot=\"indexer\"}} {}",
            st[0].lag_bytes
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "{prefix}_replication_state{{slot=\"indexer\",state=\"streaming\"}} 1"
    )));
    wirepool_testkit::assert_promtool_passes(&metrics);
    let om = pool.render_metrics(wirepool::observe::prometheus::Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n") && om.contains("_replication_reconnects_total{slot="));

    let inserts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ReplicationEvent::Insert { new, xid: None } => Some(new),
            _ => None,
        })
        .collect();
    assert_eq!(inserts.len(), 3);
    assert_eq!(inserts[0].relation().name, "files");
    assert_eq!(inserts[0].get::<i64>("id").unwrap(), 1);
    assert_eq!(inserts[0].get::<&str>("path").unwrap(), "src/a.rs");
    assert_eq!(inserts[0].get::<Option<i32>>("size").unwrap(), Some(10));
    assert!(
        inserts[1].is_null("size") && inserts[1].get::<Option<&str>>("body").unwrap().is_none()
    );
    assert_eq!(inserts[2].get::<&str>("body").unwrap().len(), 4000 * 32);
    assert!(
        inserts[0].get::<i32>("path").is_err(),
        "a text column read as int4"
    );
    assert!(inserts[0].get::<i32>("nope").is_err(), "no such column");

    let update = events
        .iter()
        .find_map(|e| match e {
            ReplicationEvent::Update { new, old, .. } => Some((new, old)),
            _ => None,
        })
        .expect("the update");
    assert_eq!(update.0.get::<i32>("size").unwrap(), 11);
    assert!(update.0.is_unchanged_toast("body"), "{:?}", update.0);
    assert!(update.0.get::<&str>("body").is_err());
    assert!(update.1.is_none(), "the key did not change");
    let deleted = events
        .iter()
        .find_map(|e| match e {
            ReplicationEvent::Delete { old, .. } => Some(old),
            _ => None,
        })
        .expect("the delete");
    assert_eq!(deleted.get::<i64>("id").unwrap(), 2);
    let truncated = events
        .iter()
        .find_map(|e| match e {
            ReplicationEvent::Truncate { relations, .. } => Some(relations),
            _ => None,
        })
        .expect("the truncate");
    assert_eq!(truncated[0].name, "files");

    // Only the first transaction is confirmed; the stream reports it and ends.
    stream.confirm(lsns[0]);
    assert!(stream.confirmed_lsn() > lsns[0] && stream.confirmed_lsn() < lsns[1]);
    stream.close().await.unwrap();

    // Resumed from the slot's position: the two unconfirmed transactions come again with
    // the same commit LSNs, the confirmed one does not.
    let client = ReplicationClient::connect(&cfg).await.unwrap();
    let mut stream = client.start("indexer", &["files_pub"], None).await.unwrap();
    let again = until_commits(&mut stream, 2).await;
    assert_eq!(commit_lsns(&again), lsns[1..].to_vec());
    drop(stream);
    assert!(
        pool.replication_status().is_empty(),
        "a dropped stream is no longer shown"
    );

    // The slot stays until dropped. The dropped stream's walsender ends a moment after its
    // connection closed; until then the slot is in use, and `drop_slot` says so at once.
    wirepool_testkit::eventually("the dropped stream's walsender released the slot", || {
        pg.psql("SELECT active FROM pg_replication_slots WHERE slot_name = 'indexer'")
            .is_ok_and(|a| a.trim() == "f")
    })
    .await;
    let slots = pg
        .psql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'indexer'")
        .unwrap();
    assert_eq!(slots.trim(), "1");
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    client.drop_slot("indexer").await.unwrap();
    assert!(ReplicationClient::connect(&cfg)
        .await
        .unwrap()
        .start("indexer", &["files_pub"], None)
        .await
        .is_err());
    let no_pub = ReplicationClient::connect(&cfg)
        .await
        .unwrap()
        .start("indexer", &[], None)
        .await
        .unwrap_err();
    assert_eq!(no_pub.kind(), wirepool::ErrorKind::InvalidInput);
}

/// A row of `docs`: a column of each of several types.
#[derive(Debug, Clone, PartialEq)]
struct Doc {
    flag: bool,
    score: f64,
    data: Vec<u8>,
    tags: Vec<String>,
    meta: serde_json::Value,
    at: chrono::DateTime<chrono::Utc>,
}

/// What the writer and the stream agree on: each table's rows by id.
#[derive(Debug, Default, PartialEq)]
struct Model {
    items: std::collections::BTreeMap<i64, (i32, String)>,
    docs: std::collections::BTreeMap<i64, Doc>,
}

fn doc(t: &wirepool::replication::Tuple) -> Doc {
    Doc {
        flag: t.get("flag").unwrap(),
        score: t.get("score").unwrap(),
        data: t.get("data").unwrap(),
        tags: t.get("tags").unwrap(),
        meta: t.get("meta").unwrap(),
        at: t.get("at").unwrap(),
    }
}

/// Applies one delivered transaction's changes to the model.
fn apply(model: &mut Model, events: &[ReplicationEvent]) {
    for e in events {
        match e {
            ReplicationEvent::Insert { new, .. } | ReplicationEvent::Update { new, .. } => {
                let id = new.get::<i64>("id").unwrap();
                match new.relation().name.as_str() {
                    "items" => {
                        model
                            .items
                            .insert(id, (new.get("n").unwrap(), new.get("tag").unwrap()));
                    }
                    "docs" => {
                        model.docs.insert(id, doc(new));
                    }
                    other => panic!("a change of {other}"),
                }
            }
            ReplicationEvent::Delete { old, .. } => {
                let id = old.get::<i64>("id").unwrap();
                match old.relation().name.as_str() {
                    "items" => model.items.remove(&id).map(|_| ()),
                    _ => model.docs.remove(&id).map(|_| ()),
                };
            }
            ReplicationEvent::Truncate { relations, .. } => {
                for r in relations {
                    match r.name.as_str() {
                        "items" => model.items.clear(),
                        _ => model.docs.clear(),
                    }
                }
            }
            _ => {}
        }
    }
}

/// Changes to two tables of many column types, in transactions of 1 to 100 rows
/// (inserts, updates, deletes, one truncate), while the walsender is terminated several
/// times and the server restarted once: every committed transaction arrives whole, in
/// commit order; none confirmed arrives twice; the rows the stream describes are the
/// tables'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_survives_terminated_walsenders_and_a_restart() {
    let mut pg = cluster();
    pg.psql(
        "CREATE TABLE items (id bigint PRIMARY KEY, n int4 NOT NULL, tag text NOT NULL); \
         CREATE TABLE docs (id bigint PRIMARY KEY, flag bool NOT NULL, score float8 NOT NULL, \
             data bytea NOT NULL, tags text[] NOT NULL, meta jsonb NOT NULL, \
             at timestamptz NOT NULL); \
         CREATE PUBLICATION items_pub FOR TABLE items, docs",
    )
    .unwrap();
    let cfg = pg.config(Role::Admin);
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    client.create_slot("survivor", false).await.unwrap();
    let mut stream = client
        .start("survivor", &["items_pub"], None)
        .await
        .unwrap();

    // The writer: transactions of 1-100 changes, on a pool that reconnects by itself.
    let target: usize = std::env::var("REPLICATION_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let pool = wirepool::Pool::builder(cfg.clone())
        .min_size(1)
        .max_size(2)
        .acquire_timeout(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let writer = tokio::spawn(async move {
        let mut changes = 0usize;
        let mut next_id = 0i64;
        let mut next_doc = 0i64;
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut truncated = false;
        while changes < target {
            let size = 1 + rand(100) as usize;
            let mut sql = String::from("BEGIN;");
            for _ in 0..size {
                let pick = rand(20);
                match pick {
                    10..=13 => {
                        next_doc += 1;
                        sql.push_str(&format!(
                            "INSERT INTO docs VALUES ({next_doc}, {}, {}.25, '\\x{:06x}', \
                             ARRAY['a{next_doc}', 'b'], '{{\"k\": {next_doc}}}', now());",
                            rand(2) == 0,
                            rand(1000),
                            rand(1 << 24)
                        ));
                        continue;
                    }
                    14..=16 => {
                        sql.push_str(&format!(
                            "UPDATE docs SET flag = NOT flag, score = score * 2, \
                             tags = tags || 'u'::text, meta = jsonb_set(meta, '{{u}}', 'true'), \
                             at = at + interval '1 second' WHERE id = {};",
                            1 + rand(next_doc.max(1) as u64)
                        ));
                        continue;
                    }
                    17..=19 => {
                        let id = 1 + rand(next_doc.max(1) as u64);
                        sql.push_str(&format!("DELETE FROM docs WHERE id = {id};"));
                        continue;
                    }
                    _ => {}
                }
                match pick % 10 {
                    0..=5 => {
                        next_id += 1;
                        sql.push_str(&format!(
                            "INSERT INTO items VALUES ({next_id}, {}, 't{next_id}');",
                            rand(1000)
                        ));
                    }
                    6..=8 => sql.push_str(&format!(
                        "UPDATE items SET n = n + 1, tag = tag || 'u' WHERE id = {};",
                        1 + rand(next_id.max(1) as u64)
                    )),
                    _ => sql.push_str(&format!(
                        "DELETE FROM items WHERE id = {};",
                        1 + rand(next_id.max(1) as u64)
                    )),
                }
            }
            if !truncated && changes > target / 2 {
                sql.push_str("TRUNCATE items, docs;");
                truncated = true;
            }
            sql.push_str("COMMIT");
            // A transaction cut by the restart either committed or did not: the table
            // says which, and so must the stream.
            let _ = async {
                let mut c = pool.acquire().await?;
                c.simple_query(&sql).await
            }
            .await;
            changes += size;
        }
        pool.close().await;
    });

    // The disturbances, from another task: terminate the walsender three times, restart
    // the server once.
    let admin = cfg.clone();
    let disturber = tokio::spawn(async move {
        // Each disturbance waits for the stream to be connected again first, so that each
        // one costs it a connection.
        let active = || async {
            let c = wirepool::Connection::connect(&admin).await;
            let mut c = c.ok()?;
            let rows = c
                .simple_query(
                    "SELECT active_pid FROM pg_replication_slots \
                     WHERE slot_name = 'survivor' AND active_pid IS NOT NULL",
                )
                .await
                .ok()?;
            rows.first().and_then(|r| r.get(0)).map(str::to_string)
        };
        for round in 0..4 {
            let t = std::time::Instant::now();
            let pid = loop {
                if let Some(pid) = active().await {
                    break pid;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(120),
                    "the stream never reconnected"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            if round == 2 {
                pg.restart().unwrap();
                continue;
            }
            let mut c = wirepool::Connection::connect(&admin).await.unwrap();
            c.simple_query(&format!("SELECT pg_terminate_backend({pid})"))
                .await
                .unwrap();
        }
        pg
    });
    let mut disturber = Some(disturber);
    let mut pg = None;

    let mut model = Model::default();
    let mut last_commit = Lsn(0);
    let mut transactions = 0usize;
    let mut changes = 0usize;
    let mut txn: Vec<ReplicationEvent> = Vec::new();
    let mut writer = Some(writer);
    loop {
        if writer.as_ref().is_some_and(|w| w.is_finished()) {
            writer.take().unwrap().await.unwrap();
        }
        if disturber.as_ref().is_some_and(|d| d.is_finished()) {
            pg = Some(disturber.take().unwrap().await.unwrap());
        }
        // Done writing and disturbing: read until the stream has caught up.
        let writer_done = writer.is_none() && disturber.is_none();
        let next = tokio::time::timeout(
            Duration::from_secs(if writer_done { 5 } else { 120 }),
            stream.next(),
        )
        .await;
        let e = match next {
            Ok(Some(e)) => e.expect("the stream goes on through the disturbances"),
            Ok(None) => panic!("the stream ended"),
            Err(_) if writer_done => break,
            Err(_) => panic!("no event in two minutes"),
        };
        match &e {
            ReplicationEvent::Begin { .. } => {
                assert!(
                    txn.is_empty(),
                    "a Begin inside a transaction of {} events",
                    txn.len()
                );
                txn.push(e);
            }
            ReplicationEvent::Commit { commit_lsn, .. } => {
                assert!(
                    matches!(txn.first(), Some(ReplicationEvent::Begin { .. })),
                    "a Commit without its Begin"
                );
                // Nothing confirmed comes again; what comes again is exactly what was
                // delivered after the last confirmation (same commit LSNs).
                assert!(
                    *commit_lsn > stream.confirmed_lsn(),
                    "confirmed {commit_lsn} delivered again"
                );
                if *commit_lsn > last_commit {
                    apply(&mut model, &txn);
                    changes += txn
                        .iter()
                        .filter(|e| {
                            !matches!(
                                e,
                                ReplicationEvent::Begin { .. } | ReplicationEvent::Relation { .. }
                            )
                        })
                        .count();
                    transactions += 1;
                    last_commit = *commit_lsn;
                }
                txn.clear();
                // Confirm every third transaction, so that reconnections redeliver some.
                if transactions % 3 == 0 {
                    stream.confirm(*commit_lsn);
                }
            }
            _ if !txn.is_empty() => txn.push(e),
            _ => {}
        }
    }
    let pg = pg.expect("the disturbances are over");
    assert!(
        stream.reconnects() >= 4,
        "reconnections: {}",
        stream.reconnects()
    );
    assert!(transactions > 100, "{transactions} transactions");
    assert!(changes > target / 2, "{changes} changes");
    // The tables, as the stream told them, read back typed.
    let mut c = wirepool::Connection::connect(&pg.config(Role::Admin))
        .await
        .unwrap();
    let mut table = Model::default();
    for r in c.query("SELECT id, n, tag FROM items", &[]).await.unwrap() {
        table.items.insert(r.get(0), (r.get(1), r.get(2)));
    }
    for r in c
        .query(
            "SELECT id, flag, score, data, tags, meta, at FROM docs",
            &[],
        )
        .await
        .unwrap()
    {
        table.docs.insert(
            r.get(0),
            Doc {
                flag: r.get(1),
                score: r.get(2),
                data: r.get(3),
                tags: r.get(4),
                meta: r.get(5),
                at: r.get(6),
            },
        );
    }
    assert!(!table.docs.is_empty() && !table.items.is_empty());
    assert_eq!(
        (model.items.len(), model.docs.len()),
        (table.items.len(), table.docs.len())
    );
    assert!(model == table, "the stream's rows differ from the tables'");
    stream.close().await.unwrap();
    let mut client = ReplicationClient::connect(&pg.config(Role::Admin))
        .await
        .unwrap();
    client.drop_slot("survivor").await.unwrap();
}

/// A transaction larger than `logical_decoding_work_mem` is streamed while in progress
/// (protocol 2): its changes come in blocks carrying its xid, then its StreamCommit. The
/// changes of one rolled back are never part of a committed transaction: ended by a
/// StreamAbort if the server streamed any of them (PostgreSQL 18 skips it altogether).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transactions_are_streamed_in_progress() {
    let pg = cluster();
    pg.psql("ALTER SYSTEM SET logical_decoding_work_mem = '64kB'")
        .unwrap();
    pg.psql(
        "SELECT pg_reload_conf(); CREATE TABLE big (id int PRIMARY KEY, body text); \
         CREATE PUBLICATION big_pub FOR TABLE big",
    )
    .unwrap();
    let cfg = pg.config(Role::Admin);
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    client.create_slot("streamer", true).await.unwrap();
    let mut stream = client.start("streamer", &["big_pub"], None).await.unwrap();
    let pool = wirepool_testkit::pool(&pg, Role::Admin, 1, 1).await;
    let mut c = pool.acquire().await.unwrap();
    c.simple_query(
        "BEGIN; INSERT INTO big SELECT i, repeat('x', 100) FROM generate_series(1, 5000) i; COMMIT",
    )
    .await
    .unwrap();
    c.simple_query(
        "BEGIN; INSERT INTO big SELECT i, repeat('y', 100) FROM generate_series(5001, 10000) i; ROLLBACK",
    )
    .await
    .unwrap();
    // A small transaction after both: once it is here, so is everything before it.
    c.simple_query("INSERT INTO big VALUES (0, 'end')")
        .await
        .unwrap();
    drop(c);
    let mut blocks = 0;
    let mut by_xid: std::collections::BTreeMap<u32, Vec<i32>> = Default::default();
    let (mut committed, mut aborted) = (None, std::collections::BTreeSet::new());
    loop {
        let e = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("an event within a minute")
            .unwrap()
            .unwrap();
        match e {
            ReplicationEvent::StreamStart { .. } => blocks += 1,
            ReplicationEvent::Insert { xid: Some(x), new } => {
                by_xid
                    .entry(x)
                    .or_default()
                    .push(new.get::<i32>("id").unwrap());
            }
            ReplicationEvent::Insert { xid: None, new } => {
                assert_eq!(
                    new.get::<i32>("id").unwrap(),
                    0,
                    "only the small one is not streamed"
                );
            }
            ReplicationEvent::StreamCommit { xid, .. } => committed = Some(xid),
            ReplicationEvent::StreamAbort { xid, subxid } => {
                assert_eq!(xid, subxid);
                aborted.insert(xid);
            }
            ReplicationEvent::Commit { .. } => break,
            _ => {}
        }
    }
    assert!(blocks >= 2, "{blocks} blocks");
    let committed = committed.expect("the big transaction's StreamCommit");
    assert_eq!(by_xid[&committed], (1..=5000).collect::<Vec<_>>());
    for (xid, ids) in &by_xid {
        if *xid != committed {
            assert!(
                aborted.contains(xid),
                "rows of {xid} streamed, neither committed nor aborted"
            );
            assert!(ids.iter().all(|&i| i > 5000));
        }
    }
}

/// A stream that has confirmed all it was given lets the slot follow the server through
/// WAL that holds nothing for it (a quiet publication), so an operator's `pg_ctl stop -m
/// fast` is not held up; the stop's end of the stream is a lost connection, and the stream
/// resumes after the start. A confirmation past what was delivered goes no further than
/// what was delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_publication_and_a_graceful_restart() {
    let mut pg = cluster();
    pg.psql(
        "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE u (id int); \
         CREATE PUBLICATION p FOR TABLE t",
    )
    .unwrap();
    let cfg = pg.config(Role::Admin);
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    client.create_slot("quiet", false).await.unwrap();
    let mut stream = client.start("quiet", &["p"], None).await.unwrap();
    pg.psql("INSERT INTO t VALUES (1)").unwrap();
    let first = commit_lsns(&until_commits(&mut stream, 1).await)[0];
    stream.confirm(Lsn(u64::MAX));
    assert!(
        stream.confirmed_lsn() > first && stream.confirmed_lsn() < Lsn(u64::MAX),
        "confirmed {}",
        stream.confirmed_lsn()
    );
    // Unpublished writes; the stream, polled, has nothing to deliver.
    pg.psql("INSERT INTO u SELECT generate_series(1, 50000)")
        .unwrap();
    let polled = tokio::spawn(async move {
        let e = tokio::time::timeout(Duration::from_secs(120), stream.next())
            .await
            .expect("the next transaction within two minutes")
            .unwrap()
            .unwrap();
        (stream, e)
    });
    // The walsender waits for its client to confirm what it sent before it lets the
    // server stop; the stream, having nothing unconfirmed, confirms the server's position.
    let t = std::time::Instant::now();
    pg.stop_fast().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "stopped in {:?}",
        t.elapsed()
    );
    pg.start_again().unwrap();
    pg.psql("INSERT INTO t VALUES (2)").unwrap();
    let (mut stream, e) = polled.await.unwrap();
    assert!(matches!(e, ReplicationEvent::Begin { .. }), "{e:?}");
    let rest = until_commits(&mut stream, 1).await;
    assert!(rest
        .iter()
        .any(|e| matches!(e, ReplicationEvent::Insert { new, .. }
        if new.get::<i32>("id").unwrap() == 2)));
    assert!(stream.reconnects() >= 1);
    stream.close().await.unwrap();
}
