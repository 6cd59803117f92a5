//! A search index kept current from a change stream instead of by polling: the words of
//! each file in the table `files`, applied from a logical replication stream of the
//! publication `files_pub`, one committed transaction at a time.
//!
//! - At start: the table, the publication and a permanent slot `search_index` are made if
//!   missing. The slot's position is where the index left off: the changes committed
//!   while the program was down come first.
//! - Each transaction is applied to the in-memory index when its Commit arrives, then
//!   confirmed, so the server can recycle its WAL. A restart of the server or a lost
//!   connection does not stop the stream: it resumes from the last confirmed position.
//! - `GET /search?q=word` lists the paths whose content has `word`; `/health` and
//!   `/metrics` show the pool and the stream (its state and lag, by slot).
//!
//! The server needs `wal_level = logical`, and the role the `REPLICATION` attribute.
//!
//! ```sh
//! cargo run --example change_stream -- --bind 127.0.0.1:3002
//! psql "$DATABASE_URL" -c "INSERT INTO files VALUES ('src/a.rs', 'fn alpha() {}')"
//! curl 'http://127.0.0.1:3002/search?q=alpha'
//! ```
//!
//! With `DATABASE_URL` unset it starts a throwaway PostgreSQL, removed when it stops.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use parking_lot::RwLock;
use wirepool::replication::{ReplicationClient, ReplicationEvent, Tuple};
use wirepool::Pool;
use wirepool_testkit::{Cluster, Role};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS files (path text PRIMARY KEY, content text NOT NULL);
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'files_pub') THEN
        CREATE PUBLICATION files_pub FOR TABLE files;
    END IF;
END $$;
";

const SLOT: &str = "search_index";

/// Word to the paths that contain it, and each path's words (to take them out again).
#[derive(Default)]
struct Index {
    paths: BTreeMap<String, BTreeSet<String>>,
    words: BTreeMap<String, BTreeSet<String>>,
}

fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .collect()
}

impl Index {
    fn remove(&mut self, path: &str) {
        for w in self.words.remove(path).unwrap_or_default() {
            if let Some(p) = self.paths.get_mut(&w) {
                p.remove(path);
                if p.is_empty() {
                    self.paths.remove(&w);
                }
            }
        }
    }

    fn put(&mut self, row: &Tuple) -> wirepool::Result<()> {
        let path: String = row.get("path")?;
        self.remove(&path);
        let ws = words(&row.get::<String>("content")?);
        for w in &ws {
            self.paths
                .entry(w.clone())
                .or_default()
                .insert(path.clone());
        }
        self.words.insert(path, ws);
        Ok(())
    }

    /// Applies one committed transaction's changes.
    fn apply(&mut self, changes: &[ReplicationEvent]) -> wirepool::Result<()> {
        for e in changes {
            match e {
                ReplicationEvent::Insert { new, .. } | ReplicationEvent::Update { new, .. } => {
                    if let ReplicationEvent::Update { old: Some(old), .. } = e {
                        // The key changed: the old path goes.
                        self.remove(&old.get::<String>("path")?);
                    }
                    self.put(new)?;
                }
                ReplicationEvent::Delete { old, .. } => self.remove(&old.get::<String>("path")?),
                ReplicationEvent::Truncate { .. } => *self = Index::default(),
                _ => {}
            }
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct Search {
    q: String,
}

async fn search(
    State(index): State<Arc<RwLock<Index>>>,
    Query(s): Query<Search>,
) -> Json<Vec<String>> {
    let found = index
        .read()
        .paths
        .get(&s.q.to_lowercase())
        .map(|p| p.iter().cloned().collect())
        .unwrap_or_default();
    Json(found)
}

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next()?;
    args.next()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "wirepool=info".into()))
        .with_writer(std::io::stderr)
        .init();
    let bind: SocketAddr = arg("--bind")
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
    let cfg: wirepool::ConnectConfig = url.parse()?;
    let pool = Pool::builder(cfg.clone()).min_size(1).build().await?;
    pool.acquire().await?.simple_query(SCHEMA).await?;
    let exists: bool = pool
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&SLOT],
        )
        .await?
        .get(0);
    let mut client = ReplicationClient::connect(&cfg).await?;
    if !exists {
        client.create_slot(SLOT, false).await?;
    }
    let mut stream = client.start(SLOT, &["files_pub"], None).await?;
    pool.watch_replication(&stream);

    let index = Arc::new(RwLock::new(Index::default()));
    let app = Router::new()
        .route("/search", get(search))
        .with_state(index.clone())
        .merge(
            wirepool::http::Routes::new(pool.clone())
                .without_status_page()
                .router(),
        );
    let listener = tokio::net::TcpListener::bind(bind).await?;
    eprintln!("Listening on http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut transaction = Vec::new();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = &mut stop => break,
        };
        let Some(event) = event else { break };
        match event? {
            ReplicationEvent::Commit { commit_lsn, .. } => {
                index.write().apply(&transaction)?;
                eprintln!(
                    "applied {} changes, committed at {commit_lsn}",
                    transaction.len()
                );
                transaction.clear();
                // Applied: the server may forget it.
                stream.confirm(commit_lsn);
            }
            e @ (ReplicationEvent::Insert { .. }
            | ReplicationEvent::Update { .. }
            | ReplicationEvent::Delete { .. }
            | ReplicationEvent::Truncate { .. }) => transaction.push(e),
            _ => {}
        }
    }
    // The confirmed position reaches the server before the program ends.
    stream.close().await?;
    server.abort();
    pool.close().await;
    eprintln!("Stopped at the confirmed position");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
