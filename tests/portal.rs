//! Portals: 100,000 rows paged 1,000 at a time inside a transaction; a portal dropped
//! early is closed; outside a transaction, and on another connection, a clear error.

use wirepool::error::sqlstate;
use wirepool::{Connection, ErrorKind};
use wirepool_testkit::{cluster, Role};

#[tokio::test]
async fn a_portal_pages_through_a_hundred_thousand_rows() {
    let pg = cluster();
    let mut conn = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    let e = conn.bind("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("transaction"), "{e}");

    let mut tx = conn.transaction().await.unwrap();
    let portal = tx
        .bind(
            "SELECT g, g::text || $2 FROM generate_series(1, $1) g",
            &[&100_000i32, &"!"],
        )
        .await
        .unwrap();
    assert_eq!(portal.columns().len(), 2);
    let (mut next, mut pages) = (1i32, 0);
    loop {
        let page = tx.query_portal(&portal, 1000).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert_eq!(page.len(), 1000);
        pages += 1;
        for row in page {
            assert_eq!(row.get::<_, i32>(0), next);
            assert_eq!(row.get::<_, String>(1), format!("{next}!"));
            next += 1;
        }
    }
    assert_eq!((pages, next), (100, 100_001));

    // Another portal, dropped half-way: closed with the next request.
    let half = tx
        .bind("SELECT g FROM generate_series(1, 10) g", &[])
        .await
        .unwrap();
    assert_eq!(tx.query_portal(&half, 3).await.unwrap().len(), 3);
    drop(half);
    let open: i64 = tx
        .query_one(
            "SELECT count(*) FROM pg_cursors WHERE name LIKE 'wirepool_portal_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        open, 1,
        "the dropped portal is closed, the read one stays until the end"
    );
    tx.commit().await.unwrap();

    // After the transaction, the portal is gone: the server says so.
    let e = conn.query_portal(&portal, 10).await.unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code()),
        Some(sqlstate::INVALID_CURSOR_NAME),
        "{e}"
    );
    drop(portal);

    // A portal of another connection is refused.
    let mut other = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    let mut tx = other.transaction().await.unwrap();
    let theirs = tx.bind("SELECT 1", &[]).await.unwrap();
    let mut tx2 = conn.transaction().await.unwrap();
    let e = tx2.query_portal(&theirs, 1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let v: i32 = tx2.query_one("SELECT 3", &[]).await.unwrap().get(0);
    assert_eq!(v, 3);
}
