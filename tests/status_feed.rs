//! The status page's data (`GET /status/data` of `wirepool::http`) while the guide's
//! application runs: transactions and pipelined statements side by side, a failing
//! statement, a leak, and a server stop and start. The feed shows each of them as it
//! happens (the leak with its acquisition site, the reconnection schedule, the errors, the
//! statement table, the history) and shows no secret and no parameter value.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;
use wirepool::Pool;
use wirepool_testkit::{cluster, Role};

const SECRET: &str = "a-parameter-value-never-shown";
const LITERAL: &str = "a-constant-never-shown";
/// A value written as a bare word (`SET name = word`), and a word inside a string that only
/// `standard_conforming_strings = off` reads as one.
const BARE: &str = "barewordnevershown";

async fn fetch(app: &Router, path: &str, host: &str) -> (StatusCode, String) {
    let req = Request::get(path)
        .header("host", host)
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn feed(app: &Router) -> Value {
    let (status, body) = fetch(app, "/status/data", "localhost").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for hidden in [SECRET, LITERAL, BARE, "scram_secret"] {
        assert!(!body.contains(hidden), "{hidden} in the feed: {body}");
    }
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Polls the feed until `f` holds (up to a minute), returning that feed.
async fn until(app: &Router, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        let v = feed(app).await;
        if f(&v) {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{what} not seen in a minute: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn statement<'a>(v: &'a Value, sql: &str) -> &'a Value {
    v["statements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["statement"] == sql)
        .unwrap_or_else(|| panic!("no row for {sql}: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_tells_the_pools_story_under_load_and_through_a_restart() {
    let mut pg = cluster();
    let pool = Pool::builder(pg.config(Role::Scram))
        .min_size(2)
        .max_size(10)
        .leak_detection(true, Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let app = wirepool::http::router(pool.clone());
    pg.psql(
        "CREATE TABLE chunks (id serial PRIMARY KEY, body text); \
         GRANT ALL ON chunks, chunks_id_seq TO scram_user",
    )
    .unwrap();

    // The guard: another Host or Origin gets 403, the page and the feed alike.
    assert_eq!(
        fetch(&app, "/", "evil.example").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        fetch(&app, "/status/data", "evil.example:80").await.0,
        StatusCode::FORBIDDEN
    );
    // Paths the router does not serve are not the guard's: 404, whatever the Host.
    assert_eq!(
        fetch(&app, "/nope", "evil.example").await.0,
        StatusCode::NOT_FOUND
    );
    let (s, page) = fetch(&app, "/", "127.0.0.1:3000").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("<title>wirepool status</title>"));

    // The application's load: pipelined reads and transactions, all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..2 {
        let (pool, stop) = (pool.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut ok = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = if worker == 0 {
                    pool.query_one("SELECT length($1::text)", &[&SECRET])
                        .await
                        .map(|_| ())
                } else {
                    async {
                        let mut c = pool.acquire().await?;
                        let mut tx = c.transaction().await?;
                        tx.execute("INSERT INTO chunks (body) VALUES ($1)", &[&SECRET])
                            .await?;
                        tx.commit().await
                    }
                    .await
                };
                ok += u64::from(r.is_ok());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ok
        }));
    }
    // Values the grammar reads as constants although no quote marks them.
    {
        let mut c = pool.acquire().await.unwrap();
        c.simple_query(&format!("SET application_name = {BARE}"))
            .await
            .unwrap();
        c.simple_query("SET standard_conforming_strings = off")
            .await
            .unwrap();
        let rows = c
            .query(&format!("SELECT 'it\\', {BARE} --'::text"), &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
    }
    // Names of characters of several bytes, on both paths.
    let r = pool
        .query_one("SELECT 1 AS résumé, 2 AS 日本語", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, i32>("résumé"), 1);
    let r = pool
        .acquire()
        .await
        .unwrap()
        .query_one("SELECT 1 AS \"𝕏😀\"", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, i32>("𝕏😀"), 1);
    for _ in 0..3 {
        let e = pool
            .query_one(&format!("SELECT 1/0, '{LITERAL}'"), &[])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("22012"), "{e}");
    }

    // A leak in progress: listed with where it was acquired, gone once returned.
    let site_line = line!() + 1;
    let held = pool.acquire().await.unwrap();
    let site = format!("tests/status_feed.rs:{site_line}");
    let v = until(&app, "the leak", |v| {
        v["leaks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["acquired_at"].as_str().unwrap().contains(&site))
    })
    .await;
    let leak = &v["leaks"][0];
    assert!(leak["held_s"].as_f64().unwrap() >= 0.5, "{v}");
    assert!(leak["connection"].as_str().unwrap().starts_with("conn_"));
    assert!(v["pool"]["leaks_detected"].as_u64().unwrap() >= 1);
    drop(held);
    until(&app, "the leak returned", |v| {
        v["leaks"].as_array().unwrap().is_empty()
    })
    .await;

    // The statement table: both paths, the errors by SQLSTATE, constants as `?`.
    let v = until(&app, "some history", |v| {
        v["history"]["t"].as_array().unwrap().len() >= 3
    })
    .await;
    let read = statement(&v, "SELECT length($1::text)");
    assert!(read["calls"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(read["errors"], 0);
    let insert = statement(&v, "INSERT INTO chunks (body) VALUES ($1)");
    assert!(insert["rows"].as_u64().unwrap() >= 1, "{v}");
    let failing = statement(&v, "SELECT ?/?, ?");
    assert_eq!(failing["calls"], 3, "{v}");
    assert_eq!(
        failing["error_codes"],
        serde_json::json!({"22012": 3}),
        "{v}"
    );
    let t: Vec<u64> = v["history"]["t"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
    let n = t.len();
    for column in ["total", "idle", "active", "waiting", "in_flight", "state"] {
        assert_eq!(
            v["history"][column].as_array().unwrap().len(),
            n,
            "{column}"
        );
    }
    assert!(v["history"]["total"][n - 1].as_u64().unwrap() >= 2, "{v}");
    // The tier with its reason in the guide's words (the load may cost it some headroom).
    let reason = v["reason"].as_str().unwrap();
    match v["status"].as_str().unwrap() {
        "healthy" => assert_eq!(reason, "Operating at full capacity with no issues"),
        "degraded" => assert!(
            reason.starts_with("Reduced capacity") || reason.starts_with("Recent errors"),
            "{v}"
        ),
        _ => panic!("{v}"),
    }
    assert!(v["reconnect"].is_null());

    // The server stops: RECOVERING with the schedule and the connect errors, one entry
    // for the run of the same error; then it is back and so is the pool.
    pg.kill().unwrap();
    let v = until(&app, "the reconnection schedule", |v| {
        v["state"] == "RECOVERING" && v["reconnect"]["attempt"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(v["status"], "unhealthy", "{v}");
    assert_eq!(
        v["reconnect"]["schedule_s"],
        serde_json::json!([1, 2, 4, 8, 16])
    );
    assert!(v["reason"]
        .as_str()
        .unwrap()
        .starts_with("Reconnection attempts in progress"));
    let errors = v["errors"].as_array().unwrap();
    let connect = errors
        .iter()
        .find(|e| e["type"] == "connect")
        .unwrap_or_else(|| panic!("no connect error: {v}"));
    assert!(connect["count"].as_u64().unwrap() >= 2, "{v}");
    for w in errors.windows(2) {
        assert!(
            w[0]["type"] != w[1]["type"] || w[0]["message"] != w[1]["message"],
            "a run of one error is one entry: {v}"
        );
    }
    pg.start_again().unwrap();
    let v = until(&app, "the recovery", |v| {
        let states = v["history"]["state"].as_array().unwrap();
        v["state"] != "RECOVERING"
            && v["reconnect"].is_null()
            && v["pool"]["total"].as_u64() >= Some(2)
            && states.last().is_some_and(|s| s != "RECOVERING")
    })
    .await;
    let states = v["history"]["state"].as_array().unwrap();
    let recovering = states.iter().position(|x| x == "RECOVERING").unwrap();
    assert!(
        states[..recovering].contains(&Value::from("HEALTHY")),
        "{v}"
    );
    assert!(
        states[recovering..].iter().any(|x| x != "RECOVERING"),
        "{v}"
    );

    stop.store(true, Ordering::Relaxed);
    let mut ok = 0;
    for l in load {
        ok += l.await.unwrap();
    }
    assert!(ok > 0);
    // Every connection is accounted for after all of it.
    let s = pool.statistics();
    assert_eq!(
        s.total_connections,
        s.idle_connections + s.active_connections + s.maintenance_connections
    );
}

/// A connect hook that fails: the server's message quotes the value the hook sent (or the
/// constant it wrote), and the pool's record of the error (the health report, the status
/// page) shows only the SQLSTATE. The caller of `acquire()` gets the whole error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_connect_hook_shows_its_sqlstate_and_no_value() {
    let pg = cluster();
    for by_closure in [true, false] {
        let mut b = Pool::builder(pg.config(Role::Scram))
            .min_size(0)
            .max_size(2)
            .acquire_timeout(Duration::from_secs(5));
        b = if by_closure {
            b.after_connect(|c| {
                Box::pin(async move {
                    c.execute("SELECT $1::text::int", &[&SECRET]).await?;
                    Ok(())
                })
            })
        } else {
            b.init_sql([format!("SET statement_timeout = '{LITERAL}'")])
        };
        let pool = b.build().await.unwrap();
        let app = wirepool::http::router(pool.clone());
        let e = pool.acquire().await.unwrap_err();
        let hidden = if by_closure { SECRET } else { LITERAL };
        assert!(
            wirepool::error::chain(&e).contains(hidden),
            "the caller's own error is whole: {e}"
        );
        // `feed` fails on any of the hidden values.
        let v = until(&app, "the hook's error", |v| {
            !v["errors"].as_array().unwrap().is_empty()
        })
        .await;
        let message = v["errors"][0]["message"].as_str().unwrap();
        let code = if by_closure { "22P02" } else { "22023" };
        assert!(
            message.starts_with("Connection setup failed: ERROR ") && message.contains(code),
            "{v}"
        );
        let health = pool.health().to_json();
        assert!(!health.contains(hidden), "{health}");
        assert!(health.contains(code), "{health}");
        pool.close().await;
    }
}
