//! Statement metrics against a real server: the numbers agree with what the test ran
//! (calls, errors by SQLSTATE, rows, on both paths), the table stays at its bound however
//! many texts an application makes, the Prometheus families carry the same figures, and
//! no parameter value, nor a constant written into a statement, appears anywhere.

use wirepool::error::sqlstate;
use wirepool::observe::statement_metrics::{StatementRow, OTHER};
use wirepool::PoolConfig;
use wirepool_testkit::{cluster, Role};

const SECRET: &str = "a-parameter-value-never-shown";

fn row<'a>(rows: &'a [StatementRow], sql: &str) -> &'a StatementRow {
    rows.iter()
        .find(|r| &*r.statement == sql)
        .unwrap_or_else(|| panic!("no row for {sql}: {rows:?}"))
}

/// The value of one sample line of the Prometheus text.
fn sample(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no sample {line_start}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_figures_agree_with_what_ran_on_both_paths() {
    let pg = cluster();
    pg.psql("CREATE TABLE sm (n int); GRANT ALL ON sm TO scram_user")
        .unwrap();
    let pool = wirepool_testkit::pool(&pg, Role::Scram, 1, 4).await;

    // The pipelined path: 3 queries of 5 rows, 2 failures, a parameter never shown.
    let series = "SELECT generate_series(1, $1::int), $2::text";
    for _ in 0..3 {
        let rows = pool.query(series, &[&5i32, &SECRET]).await.unwrap();
        assert_eq!(rows.len(), 5);
    }
    let divide = "SELECT 1 / $1::int";
    for _ in 0..2 {
        let e = pool.query(divide, &[&0i32]).await.unwrap_err();
        assert_eq!(e.code(), Some(sqlstate::DIVISION_BY_ZERO));
    }
    // A checked-out connection: 4 inserts of 1 row each, one of which fails.
    let insert = "INSERT INTO sm VALUES ($1)";
    let mut conn = pool.acquire().await.unwrap();
    for n in 0..3i32 {
        assert_eq!(conn.execute(insert, &[&n]).await.unwrap(), 1);
    }
    let e = conn.execute(insert, &[&"not a number"]).await.unwrap_err();
    assert!(
        e.code().is_some() || e.kind() == wirepool::ErrorKind::Conversion,
        "{e}"
    );
    drop(conn);

    // A constant written into the text: the label has `?` in its place.
    let mut conn = pool.acquire().await.unwrap();
    conn.simple_query("SELECT 'a-literal-secret' AS x")
        .await
        .unwrap();
    drop(conn);

    // Labels: the texts with their constants as `?`.
    let series = "SELECT generate_series(?, $1::int), $2::text";
    let divide = "SELECT ? / $1::int";
    let rows = pool.statement_metrics();
    assert_eq!(row(&rows, "SELECT ? AS x").counts.calls, 1);
    let s = &row(&rows, series).counts;
    assert_eq!((s.calls, s.rows, s.error_count()), (3, 15, 0), "{s:?}");
    assert_eq!(s.histogram.iter().sum::<u64>(), 3);
    assert!(
        s.duration_seconds > 0.0 && s.wait_seconds <= s.duration_seconds,
        "{s:?}"
    );
    let d = &row(&rows, divide).counts;
    assert_eq!(d.calls, 2);
    assert_eq!(d.errors, vec![(sqlstate::DIVISION_BY_ZERO.to_string(), 2)]);
    let i = &row(&rows, insert).counts;
    assert_eq!((i.calls, i.rows, i.error_count()), (4, 3, 1), "{i:?}");

    let text = pool.render_prometheus();
    let p = "codebase_mcp_pool";
    let label = |sql: &str| sql.replace('"', "\\\"");
    assert_eq!(
        sample(
            &text,
            &format!(
                "{p}_statement_calls_total{{statement=\"{}\"}}",
                label(series)
            )
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "{p}_statement_rows_total{{statement=\"{}\"}}",
                label(series)
            )
        ),
        15.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "{p}_statement_errors_total{{statement=\"{}\",sqlstate=\"{}\"}}",
                label(divide),
                sqlstate::DIVISION_BY_ZERO
            )
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "{p}_statement_duration_seconds_count{{statement=\"{}\"}}",
                label(insert)
            )
        ),
        4.0
    );
    assert!(text.contains("# TYPE codebase_mcp_pool_statement_duration_seconds histogram"));
    assert!(!text.contains(SECRET), "a parameter value in the metrics");
    assert!(
        !text.contains("a-literal-secret"),
        "a constant of the text in the metrics"
    );
    assert!(!format!("{rows:?}").contains(SECRET));
    wirepool_testkit::assert_promtool_passes(&text);
    let om = pool.render_metrics(wirepool::observe::prometheus::Format::OpenMetrics);
    assert!(om.contains("# TYPE codebase_mcp_pool_statement_calls counter"));
    assert!(
        om.ends_with("# EOF\n"),
        "the statement families come before # EOF"
    );
    pool.close().await;
}

#[tokio::test]
async fn five_thousand_texts_stay_at_the_bound() {
    let pg = cluster();
    let mut cfg = PoolConfig::default();
    cfg.min_size = 1;
    cfg.max_size = 2;
    cfg.statement_metrics_limit = 50;
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), cfg).await;
    let mut conn = pool.acquire().await.unwrap();
    for i in 0..5_000 {
        // Distinct after the constants are taken out: the column names differ.
        conn.simple_query(&format!("SELECT {i} AS c{i}"))
            .await
            .unwrap();
    }
    drop(conn);
    let rows = pool.statement_metrics();
    assert_eq!(rows.len(), 51, "50 texts and other");
    let other = rows.last().unwrap();
    assert_eq!(&*other.statement, OTHER);
    // The pool's own statements (validation) have no trace: all 5,000 are the test's.
    let calls: u64 = rows.iter().map(|r| r.counts.calls).sum();
    assert_eq!(calls, 5_000);
    assert_eq!(other.counts.calls, 4_950);
    let text = pool.render_prometheus();
    let series = text
        .lines()
        .filter(|l| l.starts_with("codebase_mcp_pool_statement_calls_total{"))
        .count();
    assert_eq!(series, 51);
    pool.close().await;

    // Off: nothing counted, no family.
    let mut cfg = PoolConfig::default();
    cfg.statement_metrics_limit = 0;
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), cfg).await;
    pool.query_one("SELECT 1", &[]).await.unwrap();
    assert!(pool.statement_metrics().is_empty());
    assert!(!pool.render_prometheus().contains("statement_calls_total"));
    pool.close().await;
}

/// A checkout that waited for a connection counts the wait against the first statement it
/// runs (and only that one); a pipelined statement counts its wait for a lane.
#[tokio::test]
async fn the_wait_for_a_connection_is_counted_against_the_first_statement() {
    let pg = cluster();
    let pool = wirepool_testkit::pool(&pg, Role::Trust, 1, 1).await;
    let held = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut c = pool.acquire().await.unwrap();
            c.query_one("SELECT $1::int AS first", &[&1i32])
                .await
                .unwrap();
            c.query_one("SELECT $1::int AS second", &[&2i32])
                .await
                .unwrap();
        })
    };
    // The waiter is queued for the one connection; hold it a while longer.
    wirepool_testkit::eventually("a caller waiting", || {
        pool.statistics().waiting_requests == 1
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(held);
    waiter.await.unwrap();
    let rows = pool.statement_metrics();
    let first = &row(&rows, "SELECT $1::int AS first").counts;
    let second = &row(&rows, "SELECT $1::int AS second").counts;
    assert!(first.wait_seconds >= 0.3, "{first:?}");
    assert_eq!(second.wait_seconds, 0.0, "{second:?}");
    pool.close().await;
}
