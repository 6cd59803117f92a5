//! A connection gives back the buffers that grew for one large message: after a 256 MiB
//! parameter, a refused parameter over the protocol's 1 GiB limit and a 60 MiB value read
//! back, an idle pooled connection holds what it held before. Measured on the process's
//! resident memory, so this file holds one test: nothing else runs in its process.

use std::time::Duration;

use wirepool::{ErrorKind, Pool};
use wirepool_testkit::Role;

/// The process's resident memory, in bytes (`VmRSS` of `/proc/self/status`).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_leave_no_large_buffers_behind() {
    let pg = wirepool_testkit::cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .min_size(1)
        .max_size(1)
        .command_timeout(Some(Duration::from_secs(300)))
        .build()
        .await
        .unwrap();
    let mut c = pool.acquire().await.unwrap();
    let pid = c.process_id();
    assert_eq!(
        c.query_one("SELECT $1::int4", &[&1i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    drop(c);
    let before = rss();

    let mut c = pool.acquire().await.unwrap();
    // A 256 MiB parameter, sent and answered.
    let value = vec![7u8; 256 * MIB];
    let row = c
        .query_one("SELECT length($1::bytea)", &[&value])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), (256 * MIB) as i32);
    drop(value);
    // A parameter over the protocol's limit: refused, nothing sent.
    let too_big = vec![0u8; 1024 * MIB + 1];
    let e = c
        .query_one("SELECT length($1::bytea)", &[&too_big])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    drop(too_big);
    // A 60 MiB value read back.
    let row = c
        .query_one("SELECT repeat('x', $1)", &[&((60 * MIB) as i32)])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0).len(), 60 * MIB);
    drop(row);
    drop(c);

    // Idle in the pool: the same connection, still working, without its peak buffers.
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(c.process_id(), pid);
    assert_eq!(
        c.query_one("SELECT $1::int4", &[&2i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    drop(c);
    let after = rss();
    let grown = after.saturating_sub(before);
    assert!(
        grown < 64 * MIB as u64,
        "resident memory grew by {} MiB ({} -> {} MiB)",
        grown / MIB as u64,
        before / MIB as u64,
        after / MIB as u64
    );
    pool.close().await;
}
