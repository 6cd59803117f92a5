//! `wirepool::http`: the pool's routes merged into an application's router, moved, with
//! another prefix; `/health` answers 503 once the pool is closing.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use tower::ServiceExt;
use wirepool::http::Routes;
use wirepool::Pool;
use wirepool_testkit::{cluster, Role};

async fn call(app: &Router, path: &str, accept: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::get(path).header("host", "localhost");
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_routes_merge_into_an_application() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Scram))
        .min_size(1)
        .build()
        .await
        .unwrap();
    // The application serves `/` itself: the status page moves.
    let app = Router::new()
        .route("/", get(|| async { "the application" }))
        .merge(
            wirepool::http::Routes::new(pool.clone())
                .status_path("/pool")
                .router(),
        );

    let (s, _, body) = call(&app, "/", None).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "the application"));
    let (s, ctype, body) = call(&app, "/pool", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ctype, "text/html; charset=utf-8");
    assert!(body.contains("/status/data"), "{body}");
    let (s, ctype, body) = call(&app, "/health", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ctype, "application/json");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["database"]["pool"]["total"], 1);
    let (s, ctype, body) = call(&app, "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    assert!(body.contains("codebase_mcp_pool_connections "), "{body}");
    assert!(body.contains("codebase_mcp_pool_connection_use_duration_seconds_count "));
    let (_, ctype, body) = call(&app, "/metrics", Some("application/openmetrics-text")).await;
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(body.ends_with("# EOF\n"));

    // Moved, and named with another prefix.
    let moved = Router::new().merge(
        Routes::new(pool.clone())
            .health_path("/healthz")
            .metrics_path("/internal/metrics")
            .metrics_prefix("orders_db")
            .unwrap()
            .router(),
    );
    assert_eq!(call(&moved, "/health", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&moved, "/healthz", None).await.0, StatusCode::OK);
    let (_, _, body) = call(&moved, "/internal/metrics", None).await;
    assert!(body.contains("orders_db_connections "), "{body}");
    assert!(!body.contains("codebase_mcp_pool_"));
    let e = Routes::new(pool.clone())
        .metrics_prefix("9 bad")
        .unwrap_err();
    assert!(e.is_config(), "{e}");

    pool.close().await;
    let (s, _, body) = call(&app, "/health", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(call(&app, "/metrics", None).await.0, StatusCode::OK);
}
