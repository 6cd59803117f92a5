//! Logical replication against a real server (`wal_level = logical`): the commands, a
//! publication's inserts, updates (an unchanged TOASTed value among them), deletes and a
//! truncate decoded with their values read by name, and a restart from the confirmed
//! position that delivers again exactly what was not confirmed.

use std::time::Duration;

use futures_util::StreamExt;
use wirepool::replication::{Lsn, ReplicationClient, ReplicationEvent, ReplicationStream};
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

    // The slot stays until dropped.
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
