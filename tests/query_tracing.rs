//! Query spans and the slow-query log, captured by a `tracing` subscriber: the semantic
//! convention fields of a query and of a failed one, the slow-query line above the
//! threshold and not below, and no parameter value anywhere (spans, log lines, metrics,
//! health).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use wirepool::error::sqlstate;
use wirepool::Pool;
use wirepool_testkit::{cluster, Role};

/// A parameter value that must never be seen outside the query.
const SECRET: &str = "hunter2-parameter-value";

#[derive(Debug, Clone, Default)]
struct Captured {
    name: String,
    level: String,
    target: String,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<BTreeMap<u64, Captured>>>,
    closed: Arc<Mutex<Vec<Captured>>>,
    events: Arc<Mutex<Vec<Captured>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut c = Captured {
            name: attrs.metadata().name().to_string(),
            level: attrs.metadata().level().to_string(),
            target: attrs.metadata().target().to_string(),
            ..Default::default()
        };
        attrs.record(&mut Fields(&mut c.fields));
        self.spans.lock().insert(id.into_u64(), c);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(c) = self.spans.lock().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut c.fields));
        }
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut c = Captured {
            name: event.metadata().name().to_string(),
            level: event.metadata().level().to_string(),
            target: event.metadata().target().to_string(),
            ..Default::default()
        };
        event.record(&mut Fields(&mut c.fields));
        // The text of the query span the event was logged in, if any.
        if let Some(parent) = ctx.event_span(event) {
            if let Some(text) = self
                .spans
                .lock()
                .get(&parent.id().into_u64())
                .and_then(|s| s.fields.get("db.query.text").cloned())
            {
                c.fields.insert("in_query_span".to_string(), text);
            }
        }
        self.events.lock().push(c);
    }
    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(c) = self.spans.lock().remove(&id.into_u64()) {
            self.closed.lock().push(c);
        }
    }
}

impl Capture {
    fn query_spans(&self) -> Vec<Captured> {
        self.closed
            .lock()
            .iter()
            .filter(|s| s.target == "wirepool::query")
            .cloned()
            .collect()
    }
    fn slow_lines(&self) -> Vec<Captured> {
        self.events
            .lock()
            .iter()
            .filter(|e| e.target == "wirepool::slow_query")
            .cloned()
            .collect()
    }
    fn everything(&self) -> String {
        format!(
            "{:?}{:?}{:?}",
            self.closed.lock(),
            self.spans.lock(),
            self.events.lock()
        )
    }
}

/// A pool of up to 2 connections that logs statements of 200 ms or more as slow.
async fn slow_logging_pool(pg: &wirepool_testkit::Cluster) -> Pool {
    Pool::builder(pg.config(Role::Scram))
        .min_size(1)
        .max_size(2)
        .slow_query_threshold(Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn spans_carry_the_conventions_and_the_slow_query_line_its_site() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let pg = cluster();
    let pool = slow_logging_pool(&pg).await;

    let mut conn = pool.acquire().await.unwrap();
    let line = line!() - 1;
    let sql = "SELECT length($1::text) AS n";
    let n: i32 = conn.query_one(sql, &[&SECRET]).await.unwrap().get("n");
    assert_eq!(n as usize, SECRET.len());
    let spans = capture.query_spans();
    let span = spans.last().expect("a query span");
    assert_eq!(span.name, "query");
    assert_eq!(span.level, "DEBUG", "the default level");
    let f = &span.fields;
    assert_eq!(f["db.system.name"], "postgresql", "{f:?}");
    assert_eq!(f["db.namespace"], "postgres", "{f:?}");
    assert_eq!(f["db.operation.name"], "SELECT", "{f:?}");
    assert_eq!(f["db.query.text"], sql, "{f:?}");
    assert_eq!(f["server.address"], "127.0.0.1", "{f:?}");
    assert_eq!(f["server.port"], pg.port().to_string(), "{f:?}");
    assert_eq!(f["otel.kind"], "client", "{f:?}");
    assert!(!f.contains_key("error.type"), "{f:?}");
    assert!(capture.slow_lines().is_empty(), "below the threshold");

    // A failed query: the SQLSTATE in both fields.
    let e = conn
        .query("SELECT 1 / $1::int4", &[&0i32])
        .await
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code(), sqlstate::DIVISION_BY_ZERO);
    let spans = capture.query_spans();
    let f = &spans.last().unwrap().fields;
    assert_eq!(
        f["db.response.status_code"],
        sqlstate::DIVISION_BY_ZERO,
        "{f:?}"
    );
    assert_eq!(f["error.type"], sqlstate::DIVISION_BY_ZERO, "{f:?}");

    // A simple query gets a span too; its constants are `?` there.
    conn.simple_query("SELECT 1").await.unwrap();
    assert_eq!(
        capture.query_spans().last().unwrap().fields["db.query.text"],
        "SELECT ?"
    );

    // Above the threshold: one WARN with the duration, the SQL, the connection, the site.
    let slow_sql = "SELECT pg_sleep(0.4), $1::text";
    conn.query(slow_sql, &[&SECRET]).await.unwrap();
    let slow = capture.slow_lines();
    assert_eq!(slow.len(), 1, "{slow:?}");
    let s = &slow[0];
    assert_eq!(s.level, "WARN");
    let ms: f64 = s.fields["duration_ms"].parse().unwrap();
    assert!(ms >= 400.0, "{s:?}");
    assert_eq!(s.fields["sql"], "SELECT pg_sleep(?), $1::text");
    assert_eq!(s.fields["connection_id"], conn.id().to_string());
    assert!(
        s.fields["acquired_at"].starts_with(&format!("{}:{line}:", file!())),
        "{s:?}"
    );
    assert!(s.fields["message"].starts_with("Slow query: "), "{s:?}");

    // The SQL is bounded in the slow line.
    let columns: Vec<String> = (0..600).map(|i| format!("{i} AS c{i}")).collect();
    let long = format!("SELECT pg_sleep(0.3), {}", columns.join(", "));
    conn.simple_query(&long).await.unwrap();
    let slow = capture.slow_lines();
    let cut = &slow.last().unwrap().fields["sql"];
    assert!(
        cut.len() <= wirepool::conn::SLOW_QUERY_SQL_LIMIT + 4,
        "{}",
        cut.len()
    );
    assert!(cut.ends_with('…'));
    drop(conn);

    // The pool's own statements (validation, rollback, reset) have no span: a
    // transaction left open is rolled back on return without one.
    let before = capture.query_spans().len();
    let mut conn = pool.acquire().await.unwrap();
    conn.simple_query("BEGIN").await.unwrap();
    drop(conn);
    wirepool_testkit::eventually("the rollback of the returned connection", || {
        pool.statistics().idle_connections >= 1 && pool.statistics().maintenance_connections == 0
    })
    .await;
    assert_eq!(capture.query_spans().len(), before + 1);

    // A secret written into the text: its constant is `?` in the span and the slow line.
    let mut conn = pool.acquire().await.unwrap();
    conn.simple_query("SELECT pg_sleep(0.25), 'a-literal-secret'")
        .await
        .unwrap();
    drop(conn);
    let slow = capture.slow_lines();
    assert_eq!(slow.last().unwrap().fields["sql"], "SELECT pg_sleep(?), ?");
    assert!(!capture.everything().contains("a-literal-secret"));

    // No parameter value anywhere.
    let all = capture.everything();
    assert!(!all.contains(SECRET), "a parameter value was traced: {all}");
    assert!(!pool.render_prometheus().contains(SECRET));
    assert!(!pool.health().to_json().contains(SECRET));
    assert!(!pool.statistics().to_json().contains(SECRET));
    pool.close().await;
}

#[tokio::test]
async fn the_sql_can_be_left_out_of_the_spans() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Scram))
        .min_size(1)
        .query_text_in_spans(false)
        .query_span_level(tracing::Level::INFO)
        .build()
        .await
        .unwrap();
    pool.acquire()
        .await
        .unwrap()
        .query("SELECT $1::int4", &[&7i32])
        .await
        .unwrap();
    let spans = capture.query_spans();
    let f = &spans.last().expect("a query span").fields;
    assert!(!f.contains_key("db.query.text"), "{f:?}");
    assert_eq!(f["db.operation.name"], "SELECT");
    assert_eq!(spans.last().unwrap().level, "INFO");
    pool.close().await;
}

/// The pipelined path (`pool.query*`) traces as the exclusive path does: a span with the
/// conventions' fields, the server it ran on and the time it waited for room on a lane,
/// the error fields of a failed statement, and the slow-query line, with no parameter
/// value anywhere.
#[tokio::test]
async fn pipelined_statements_are_traced_as_checked_out_ones() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let pg = cluster();
    let pool = slow_logging_pool(&pg).await;

    let sql = "SELECT length($1::text) AS n";
    let n: i32 = pool.query_one(sql, &[&SECRET]).await.unwrap().get("n");
    assert_eq!(n as usize, SECRET.len());
    let spans = capture.query_spans();
    let span = spans
        .iter()
        .rev()
        .find(|s| s.fields.get("db.query.text").map(String::as_str) == Some(sql))
        .unwrap_or_else(|| panic!("a span of the pipelined statement: {spans:?}"));
    let f = &span.fields;
    assert_eq!(span.level, "DEBUG", "the default level");
    assert_eq!(f["db.system.name"], "postgresql", "{f:?}");
    assert_eq!(f["db.namespace"], "postgres", "{f:?}");
    assert_eq!(f["db.operation.name"], "SELECT", "{f:?}");
    assert_eq!(f["server.address"], "127.0.0.1", "{f:?}");
    assert_eq!(f["server.port"], pg.port().to_string(), "{f:?}");
    let wait: f64 = f["wirepool.lane_wait_ms"].parse().unwrap();
    assert!(wait >= 0.0, "{f:?}");
    assert!(!f.contains_key("error.type"), "{f:?}");
    assert!(capture.slow_lines().is_empty(), "below the threshold");

    // A failed statement: the SQLSTATE in both fields.
    let e = pool
        .query("SELECT 1 / $1::int4", &[&0i32])
        .await
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code(), sqlstate::DIVISION_BY_ZERO);
    let f = &capture.query_spans().last().unwrap().fields.clone();
    assert_eq!(f["db.query.text"], "SELECT ? / $1::int4", "{f:?}");
    assert_eq!(f["error.type"], sqlstate::DIVISION_BY_ZERO, "{f:?}");
    assert_eq!(
        f["db.response.status_code"],
        sqlstate::DIVISION_BY_ZERO,
        "{f:?}"
    );

    // A refused statement never reaches a server: a span with its error all the same.
    let e = pool
        .execute("SET work_mem = '64MB'", &[])
        .await
        .unwrap_err();
    let f = &capture.query_spans().last().unwrap().fields.clone();
    assert_eq!(f["db.query.text"], "SET work_mem = ?", "{e}: {f:?}");
    assert!(f.contains_key("error.type"), "{f:?}");
    assert!(!f.contains_key("wirepool.lane_wait_ms"), "{f:?}");

    // Above the threshold: one WARN with the duration, the SQL and the lane wait.
    let slow_sql = "SELECT pg_sleep(0.4), $1::text";
    pool.query(slow_sql, &[&SECRET]).await.unwrap();
    let slow = capture.slow_lines();
    assert_eq!(slow.len(), 1, "{slow:?}");
    let s = &slow[0];
    assert_eq!(s.level, "WARN");
    let ms: f64 = s.fields["duration_ms"].parse().unwrap();
    assert!(ms >= 400.0, "{s:?}");
    assert_eq!(s.fields["sql"], "SELECT pg_sleep(?), $1::text");
    assert!(s.fields.contains_key("lane_wait_ms"), "{s:?}");
    assert!(!s.fields.contains_key("connection_id"), "{s:?}");

    // An atomic batch on the pool: one span, under its first statement's text.
    let before = capture.query_spans().len();
    let results = pool
        .batch()
        .query("SELECT $1::int4 AS batched", &[&1i32])
        .query("SELECT 2", &[])
        .run()
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    let spans = capture.query_spans();
    assert_eq!(spans.len(), before + 1, "{spans:?}");
    let f = &spans.last().unwrap().fields;
    assert_eq!(f["db.query.text"], "SELECT $1::int4 AS batched", "{f:?}");
    assert!(f.contains_key("wirepool.lane_wait_ms"), "{f:?}");

    let all = capture.everything();
    assert!(!all.contains(SECRET), "a parameter value was traced: {all}");
    pool.close().await;
}

/// A server notice about a pipelined statement is logged in the statement's span, as one
/// about a checked-out connection's statement is, though the lane's task reads it.
#[tokio::test]
async fn a_notice_of_a_pipelined_statement_is_logged_in_its_span() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let pg = cluster();
    pg.psql(
        "CREATE OR REPLACE FUNCTION public.tracing_notice() RETURNS int LANGUAGE plpgsql AS \
         $f$ BEGIN RAISE NOTICE 'from tracing_notice'; RETURN 1; END $f$",
    )
    .unwrap();
    let pool = Pool::builder(pg.config(Role::Admin))
        .min_size(1)
        .max_size(1)
        .build()
        .await
        .unwrap();
    let sql = "SELECT public.tracing_notice() AS one";
    let one: i32 = pool.query_one(sql, &[]).await.unwrap().get("one");
    assert_eq!(one, 1);
    let notices: Vec<Captured> = capture
        .events
        .lock()
        .iter()
        .filter(|e| e.fields.values().any(|v| v.contains("from tracing_notice")))
        .cloned()
        .collect();
    assert_eq!(notices.len(), 1, "{}", capture.everything());
    assert_eq!(
        notices[0].fields.get("in_query_span").map(String::as_str),
        Some(sql),
        "{:?}",
        notices[0]
    );
    pool.close().await;
}
