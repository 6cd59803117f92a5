//! A small JSON API on axum with the pool in the router's state, the pool's `/health` and
//! `/metrics` merged in, and a graceful shutdown: on SIGTERM or Ctrl-C the HTTP server
//! stops taking requests and finishes the ones under way, then the pool drains.
//!
//! - `POST /notes` with `{"text": "..."}` stores a note and answers 201 with it.
//! - `GET /notes/{id}` answers the note, or 404.
//! - `GET /notes` lists the latest 100.
//!
//! ```sh
//! cargo run --example axum_app -- --bind 127.0.0.1:3002
//! curl -s -XPOST localhost:3002/notes -H 'content-type: application/json' -d '{"text":"hi"}'
//! curl -s localhost:3002/health
//! ```
//!
//! With `DATABASE_URL` unset it starts a throwaway PostgreSQL, removed when it stops.

use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use wirepool::{Pool, Row};
use wirepool_testkit::{Cluster, Role};

/// An error answer: the database's failures are 503 (the pool may be recovering), the
/// rest 500; the cause goes to the log, not to the client.
struct ApiError(wirepool::Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::error!(error = %wirepool::error::chain(&self.0), "request failed");
        let status = if self.0.is_timeout() || self.0.is_io() || self.0.is_pool_closed() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        (status, Json(json!({"error": status.canonical_reason()}))).into_response()
    }
}

impl From<wirepool::Error> for ApiError {
    fn from(e: wirepool::Error) -> Self {
        ApiError(e)
    }
}

#[derive(serde::Deserialize)]
struct NewNote {
    text: String,
}

fn note(row: &Row) -> Value {
    let created: chrono::DateTime<chrono::Utc> = row.get("created_at");
    json!({
        "id": row.get::<_, i64>("id"),
        "text": row.get::<_, &str>("text"),
        "created_at": created.to_rfc3339(),
    })
}

async fn create(
    State(pool): State<Pool>,
    Json(new): Json<NewNote>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut conn = pool.acquire().await?;
    let row = conn
        .query_one(
            "INSERT INTO notes (text) VALUES ($1) RETURNING id, text, created_at",
            &[&new.text],
        )
        .await?;
    Ok((StatusCode::CREATED, Json(note(&row))))
}

async fn show(State(pool): State<Pool>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    let mut conn = pool.acquire().await?;
    let row = conn
        .query_opt(
            "SELECT id, text, created_at FROM notes WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(match row {
        Some(r) => Json(note(&r)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such note"})),
        )
            .into_response(),
    })
}

async fn list(State(pool): State<Pool>) -> Result<Json<Value>, ApiError> {
    let mut conn = pool.acquire().await?;
    let rows = conn
        .query(
            "SELECT id, text, created_at FROM notes ORDER BY id DESC LIMIT 100",
            &[],
        )
        .await?;
    Ok(Json(Value::Array(rows.iter().map(note).collect())))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = ctrl_c => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "wirepool=info,axum_app=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let bind: SocketAddr = std::env::args()
        .skip_while(|a| a != "--bind")
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3002".into())
        .parse()?;
    let (_cluster, url) = match std::env::var("DATABASE_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            eprintln!("DATABASE_URL is not set: starting a throwaway PostgreSQL");
            let c = Cluster::start()?;
            let url = c.url(Role::Admin);
            (Some(c), url)
        }
    };
    let pool = Pool::builder(url.parse()?).max_size(10).build().await?;
    pool.acquire()
        .await?
        .simple_query(
            "CREATE TABLE IF NOT EXISTS notes (
                 id bigserial PRIMARY KEY,
                 text text NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;

    let app = Router::new()
        .route("/notes", get(list).post(create))
        .route("/notes/{id}", get(show))
        .with_state(pool.clone())
        .merge(wirepool::http::router(pool.clone()));
    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!("Listening on http://{}", listener.local_addr()?);
    // First the HTTP server stops taking requests and finishes those under way; then the
    // pool drains (connections still out get the pool's drain timeout) and terminates.
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    pool.close().await;
    eprintln!("Stopped; the pool is drained");
    Ok(())
}
