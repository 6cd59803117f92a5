//! The monitoring guide's system in miniature: an MCP server that indexes source files into
//! PostgreSQL and searches them, with the pool's health beside its tools.
//!
//! One pool serves everything: the tools' queries, the `health://connection-pool` and
//! `statistics://connection-pool` resources, `/health` and `/metrics`. One listener
//! serves MCP over streamable HTTP (`/mcp`) and HTTP+SSE (`/sse`), `/health` and
//! `/metrics`.
//!
//! - `index_directory { path }`: reads the source files under `path` (which must be inside
//!   the directory the server was started in, or `--root`) into the tables `files` and
//!   `chunks` (40 lines a chunk, with a `tsvector` for full-text search); a file indexed
//!   again replaces its chunks.
//! - `search_code { query, limit }`: the chunks that match `query` best (PostgreSQL
//!   full-text search), as `path:line` with the matching line.
//!
//! When the server has pgvector (`vector` in `pg_available_extensions`: the PostgreSQL 18
//! that `scripts/setup` installs has it), each chunk also gets an embedding, a
//! `vector(64)` with an HNSW index, and search ranks by full-text match, then by
//! embedding similarity, so that a chunk whose words are near the query's is found too.
//! The embedding here is a deterministic local one (hashed words and identifier parts,
//! normalised), standing in for a model's: no download, the same vector for the same
//! text on every machine.
//!
//! ```sh
//! cargo run --example codebase_mcp -- --bind 127.0.0.1:3001
//! ```
//!
//! With `DATABASE_URL` unset it starts a throwaway PostgreSQL, removed when it stops
//! (Ctrl-C or SIGTERM: the HTTP server stops taking requests, then the pool drains).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pgvector::Vector;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResult, ServerCapabilities, ServerInfo,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use tokio_util::sync::CancellationToken;
use wirepool::mcp::{McpRoutes, PoolResources};
use wirepool::Pool;
use wirepool_testkit::{Cluster, Role};

/// Lines per indexed chunk.
const CHUNK_LINES: usize = 40;
/// Files larger than this are skipped.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// The file name endings indexed.
const SOURCE_EXTENSIONS: &[&str] = &[
    "rs", "py", "go", "js", "ts", "c", "h", "cc", "cpp", "java", "rb", "sh", "sql", "toml", "md",
    "yml", "yaml",
];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS files (
    id bigserial PRIMARY KEY,
    path text NOT NULL UNIQUE,
    indexed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS chunks (
    id bigserial PRIMARY KEY,
    file_id bigint NOT NULL REFERENCES files ON DELETE CASCADE,
    start_line int4 NOT NULL,
    content text NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED
);
CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING gin (tsv);
";

/// The embeddings' dimension.
const EMBEDDING_DIM: usize = 64;

/// What the embeddings add, when the server has pgvector.
const VECTOR_SCHEMA: &str = "
CREATE EXTENSION IF NOT EXISTS vector;
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS embedding vector(64);
CREATE INDEX IF NOT EXISTS chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops);
";

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct IndexArgs {
    /// The directory to index, relative to the server's root or absolute inside it.
    path: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct SearchArgs {
    /// Words to look for (full-text search; identifiers split at `_`).
    query: String,
    /// How many results at most (1 to 100; 10 if left out).
    limit: Option<i64>,
}

/// The MCP handler: the tools, and the pool's resources.
#[derive(Clone)]
struct Codebase {
    pool: Pool,
    resources: PoolResources,
    root: PathBuf,
    /// The server has pgvector: chunks carry embeddings, and search ranks by them too.
    embeddings: bool,
    tool_router: ToolRouter<Codebase>,
}

fn tool_error(context: &str, e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(format!("{context}: {e}"), None)
}

#[tool_router]
impl Codebase {
    fn new(pool: Pool, root: PathBuf, embeddings: bool) -> Codebase {
        Codebase {
            resources: PoolResources::new(pool.clone()),
            pool,
            root,
            embeddings,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Index the source files under a directory into PostgreSQL for search_code."
    )]
    async fn index_directory(
        &self,
        Parameters(args): Parameters<IndexArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let dir = self.inside_root(&args.path)?;
        let files = tokio::task::spawn_blocking(move || source_files(&dir))
            .await
            .map_err(|e| tool_error("walking the directory", e))?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| tool_error("no database connection", e))?;
        let (mut indexed, mut chunks) = (0usize, 0usize);
        for (path, text) in files {
            let rel = path
                .strip_prefix(&self.root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let (starts, contents) = chunked(&text);
            let mut tx = conn
                .transaction()
                .await
                .map_err(|e| tool_error("BEGIN", e))?;
            let file_id: i64 = tx
                .query_one(
                    "INSERT INTO files (path) VALUES ($1)
                     ON CONFLICT (path) DO UPDATE SET indexed_at = now() RETURNING id",
                    &[&rel],
                )
                .await
                .map_err(|e| tool_error("recording the file", e))?
                .get(0);
            tx.execute("DELETE FROM chunks WHERE file_id = $1", &[&file_id])
                .await
                .map_err(|e| tool_error("replacing the chunks", e))?;
            if self.embeddings {
                let vectors: Vec<Vector> = contents.iter().map(|c| embed(c)).collect();
                tx.execute(
                    "INSERT INTO chunks (file_id, start_line, content, embedding)
                     SELECT $1, * FROM unnest($2::int4[], $3::text[], $4::vector[])",
                    &[&file_id, &starts, &contents, &vectors],
                )
                .await
            } else {
                tx.execute(
                    "INSERT INTO chunks (file_id, start_line, content)
                     SELECT $1, * FROM unnest($2::int4[], $3::text[])",
                    &[&file_id, &starts, &contents],
                )
                .await
            }
            .map_err(|e| tool_error("storing the chunks", e))?;
            tx.commit().await.map_err(|e| tool_error("COMMIT", e))?;
            indexed += 1;
            chunks += contents.len();
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "indexed {indexed} files, {chunks} chunks"
        ))]))
    }

    #[tool(
        description = "Search the indexed source code; returns path:line and the matching line, best first."
    )]
    async fn search_code(
        &self,
        Parameters(args): Parameters<SearchArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let limit = args.limit.unwrap_or(10).clamp(1, 100);
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| tool_error("no database connection", e))?;
        let rows = if self.embeddings {
            // The full-text matches and the nearest chunks by embedding (the HNSW index):
            // the matches first, by rank; similarity orders equal ranks and the chunks that
            // share no word with the query but are near it.
            conn.query(
                "SELECT f.path, c.start_line, c.content
                   FROM chunks c JOIN files f ON f.id = c.file_id,
                        plainto_tsquery('simple', $1) q
                  WHERE c.tsv @@ q
                     OR c.id IN (SELECT id FROM chunks ORDER BY embedding <=> $3 LIMIT $2)
                  ORDER BY c.tsv @@ q DESC, ts_rank(c.tsv, q) DESC, c.embedding <=> $3,
                           f.path, c.start_line
                  LIMIT $2",
                &[&args.query, &limit, &embed(&args.query)],
            )
            .await
        } else {
            conn.query(
                "SELECT f.path, c.start_line, c.content
                   FROM chunks c JOIN files f ON f.id = c.file_id,
                        plainto_tsquery('simple', $1) q
                  WHERE c.tsv @@ q
                  ORDER BY ts_rank(c.tsv, q) DESC, f.path, c.start_line
                  LIMIT $2",
                &[&args.query, &limit],
            )
            .await
        }
        .map_err(|e| tool_error("searching", e))?;
        let words: Vec<String> = args
            .query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let mut out = Vec::new();
        if self.embeddings {
            out.push("(ranked by full-text match and embedding similarity, pgvector)".to_string());
        }
        for row in &rows {
            let path: &str = row.get(0);
            let start: i32 = row.get(1);
            let content: &str = row.get(2);
            let (offset, line) = content
                .lines()
                .enumerate()
                .find(|(_, l)| {
                    let l = l.to_lowercase();
                    words.iter().all(|w| l.contains(w.as_str()))
                })
                .unwrap_or((0, content.lines().next().unwrap_or("")));
            out.push(format!(
                "{path}:{}: {}",
                start as usize + offset,
                line.trim()
            ));
        }
        if rows.is_empty() {
            out.push(format!("no match for {:?}", args.query));
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(
            out.join("\n"),
        )]))
    }

    /// `path` as a directory inside the root; an error for anything outside it.
    fn inside_root(&self, path: &str) -> Result<PathBuf, ErrorData> {
        let p = self.root.join(path);
        let p = p
            .canonicalize()
            .map_err(|e| ErrorData::invalid_params(format!("{path}: {e}"), None))?;
        if !p.starts_with(&self.root) || !p.is_dir() {
            return Err(ErrorData::invalid_params(
                format!("{path} is not a directory inside {}", self.root.display()),
                None,
            ));
        }
        Ok(p)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Codebase {
    fn get_info(&self) -> ServerInfo {
        let mut info = ServerInfo::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        );
        info.server_info = Implementation::new("codebase-mcp", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "index_directory indexes source files; search_code searches them. \
             health://connection-pool is the database pool's health."
                .into(),
        );
        info
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(self.resources.list()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResult, ErrorData> {
        self.resources.read(&request.uri).ok_or_else(|| {
            ErrorData::resource_not_found(format!("no resource {:?}", request.uri), None)
        })
    }
}

/// The source files under `dir` (hidden directories and `target` skipped), with their
/// text; files that are not UTF-8 or are over [`MAX_FILE_BYTES`] are left out.
fn source_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    todo.push(path);
                }
                continue;
            }
            let source = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| SOURCE_EXTENSIONS.contains(&e));
            let small = entry.metadata().is_ok_and(|m| m.len() <= MAX_FILE_BYTES);
            if kind.is_file() && source && small {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    out.push((path, text));
                }
            }
        }
    }
    out.sort();
    out
}

/// A deterministic embedding of `text`: each word, and each part of an identifier split at
/// `_` and at lower-to-upper case changes, hashed (FNV-1a) into one of [`EMBEDDING_DIM`]
/// dimensions with a sign, then scaled to length 1 (a zero vector for text without words).
fn embed(text: &str) -> Vector {
    let mut v = vec![0f32; EMBEDDING_DIM];
    let mut add = |word: &str| {
        let word = word.to_lowercase();
        if word.is_empty() {
            return;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[(h % EMBEDDING_DIM as u64) as usize] += sign;
    };
    for word in text.split(|c: char| !c.is_alphanumeric() && c != '_') {
        add(word);
        let mut part = String::new();
        let mut prev_lower = false;
        for c in word.chars() {
            if c == '_' || (c.is_uppercase() && prev_lower) {
                add(&part);
                part.clear();
            }
            if c != '_' {
                part.push(c);
            }
            prev_lower = c.is_lowercase();
        }
        if part.len() < word.len() {
            add(&part);
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    Vector::from(v)
}

/// `text` in chunks of [`CHUNK_LINES`] lines: each chunk's first line number (1-based) and
/// its text. NUL characters (which `text` columns refuse) become spaces.
fn chunked(text: &str) -> (Vec<i32>, Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut starts = Vec::new();
    let mut contents = Vec::new();
    for (i, chunk) in lines.chunks(CHUNK_LINES).enumerate() {
        starts.push((i * CHUNK_LINES + 1) as i32);
        contents.push(chunk.join("\n").replace('\0', " "));
    }
    (starts, contents)
}

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
        if let Some(v) = a.strip_prefix(&format!("{name}=")) {
            return Some(v.to_string());
        }
    }
    None
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
            std::env::var("RUST_LOG").unwrap_or_else(|_| "wirepool=info,codebase_mcp=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let bind: SocketAddr = arg("--bind")
        .unwrap_or_else(|| "127.0.0.1:3001".into())
        .parse()?;
    let root = match arg("--root") {
        Some(r) => PathBuf::from(r),
        None => std::env::current_dir()?,
    }
    .canonicalize()?;
    let (_cluster, url) = match std::env::var("DATABASE_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            eprintln!("DATABASE_URL is not set: starting a throwaway PostgreSQL");
            // PostgreSQL 18 from scripts/setup has pgvector; else the system's server.
            let c = Cluster::start_18().or_else(|_| Cluster::start())?;
            let url = c.url(Role::Admin);
            (Some(c), url)
        }
    };
    let pool = Pool::builder(url.parse()?)
        .min_size(2)
        .max_size(10)
        .slow_query_threshold(std::time::Duration::from_millis(500))
        .build()
        .await?;
    let mut conn = pool.acquire().await?;
    conn.simple_query(SCHEMA).await?;
    // What the server has decides, not a setting: pgvector installed, or not.
    let embeddings: bool = conn
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')",
            &[],
        )
        .await?
        .get(0);
    if embeddings {
        conn.simple_query(VECTOR_SCHEMA).await?;
    }
    drop(conn);
    eprintln!(
        "search: full-text{}",
        if embeddings {
            " and embeddings (pgvector)"
        } else {
            " (the server has no pgvector)"
        }
    );

    let handler = Codebase::new(pool.clone(), root, embeddings);
    let cancel = CancellationToken::new();
    let mut hosts = Vec::new();
    if !bind.ip().is_unspecified() {
        hosts.push(bind.ip().to_string());
    }
    let app = axum::Router::new()
        .merge(
            wirepool::http::Routes::new(pool.clone())
                .allow_hosts(hosts.clone())
                .router(),
        )
        .merge(
            McpRoutes::new(move || handler.clone())
                .allow_hosts(hosts)
                .cancellation(cancel.clone())
                .router(),
        );
    let listener = tokio::net::TcpListener::bind(bind).await?;
    // The line a supervisor (or the test) waits for.
    println!("Listening on http://{}", listener.local_addr()?);
    let stop = cancel.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            stop.cancel();
        })
        .await?;
    pool.close().await;
    eprintln!("Stopped; the pool is drained");
    Ok(())
}
