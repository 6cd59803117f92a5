//! `wirepool`: the operator's side of the wirepool connection pool.
//!
//! ```text
//! wirepool serve [--bind 127.0.0.1:3000] [--metrics-bind ADDR] [--no-mcp]
//! wirepool mcp                      MCP over stdio
//! wirepool demo [--once] [--phase-seconds N] [--bind ADDR]
//! wirepool check                    connect once and report
//! wirepool health [--url URL]       read /health of a running serve (exec probe)
//! ```
//!
//! Settings come from the environment variables (see [`settings`]);
//! a malformed value stops the program before anything starts, with one line naming the
//! variable and exit code 2. Runtime failures exit 1.

/// `println!` that stops quietly when stdout is closed (`wirepool check | head -1`)
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod check;
mod demo;
mod http;
mod http_server;
mod logging;
mod mcp;
mod probe;
mod serve;
mod settings;
mod throwaway;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;
use crate::serve::Listen;

/// Exit code for a configuration error.
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "wirepool",
    version,
    about = "PostgreSQL connection pool with health, metrics and MCP endpoints"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The environment variables `serve` and `mcp` read, for their `--help`: the pool's from
/// the library's table, then the binary's own.
fn environment_help() -> String {
    let mut rows = vec![(
        "DATABASE_URL",
        String::from("libpq URL or key=value string (required); PG* variables fill gaps"),
    )];
    for v in wirepool::pool::ENVIRONMENT {
        rows.push((v.name, format!("{} ({})", v.meaning, v.default)));
    }
    for (name, default, meaning) in settings::SERVER_ENVIRONMENT {
        let text = if default.is_empty() {
            meaning.to_string()
        } else {
            format!("{meaning} ({default})")
        };
        rows.push((name, text));
    }
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut out = String::from("Environment:");
    for (name, text) in rows {
        out.push_str(&format!("\n  {name:<width$} {text}"));
    }
    out
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pool from the environment and serve /health, /metrics, /mcp and /sse.
    #[command(after_help = environment_help())]
    Serve {
        #[command(flatten)]
        http: HttpArgs,
        #[command(flatten)]
        start: StartArgs,
    },
    /// Serve the MCP resources over stdin/stdout (for clients that launch servers).
    #[command(after_help = environment_help())]
    Mcp {
        #[command(flatten)]
        start: StartArgs,
    },
    /// Walk through steady load, a burst, a leak and an outage against a throwaway
    /// PostgreSQL (or DATABASE_URL), with a status line every second.
    Demo {
        #[command(flatten)]
        http: HttpArgs,
        /// Seconds per phase.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=600))]
        phase_seconds: u64,
        /// Exit after the phases instead of keeping the load running.
        #[arg(long)]
        once: bool,
    },
    /// Connect once with DATABASE_URL and report server version, authentication and latency.
    Check,
    /// Read /health of a running `wirepool serve` (an exec probe): exit 0 if the pool can
    /// serve, 1 if it cannot, 2 if no health report came back.
    Health {
        /// The server's address (`/health` is read unless a path is given).
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 2.0)]
        timeout: f64,
    },
}

#[derive(Debug, clap::Args)]
struct StartArgs {
    /// Exit at start if the database cannot be reached (by default the server starts,
    /// answers /health with 503 and reconnects on its schedule).
    #[arg(long, env = settings::FAIL_FAST_START, value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, action = clap::ArgAction::SetTrue)]
    fail_fast_start: bool,
}

#[derive(Debug, clap::Args)]
struct HttpArgs {
    /// Address for /health, /metrics and /mcp.
    #[arg(long, env = settings::BIND, default_value = "127.0.0.1:3000")]
    bind: SocketAddr,
    /// Also serve /metrics on this address (e.g. 127.0.0.1:9090).
    #[arg(long, env = settings::METRICS_BIND)]
    metrics_bind: Option<SocketAddr>,
    /// Do not serve MCP at /mcp.
    #[arg(long)]
    no_mcp: bool,
    /// Host names /mcp and the status page accept in the Host header besides loopback and
    /// the bind address (a guard against DNS rebinding), comma-separated; e.g.
    /// pool.internal,pool.internal:3000.
    #[arg(long, env = settings::MCP_ALLOWED_HOSTS, value_delimiter = ',')]
    mcp_allowed_hosts: Vec<String>,
}

impl HttpArgs {
    fn listen(&self) -> Listen {
        Listen {
            bind: self.bind,
            metrics_bind: self.metrics_bind,
            mcp: !self.no_mcp,
            mcp_allowed_hosts: self
                .mcp_allowed_hosts
                .iter()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Health { url, timeout } = &cli.command {
        return health_probe(url, *timeout);
    }
    let default_format = match cli.command {
        Command::Demo { .. } => LogFormat::Text,
        _ => LogFormat::Json,
    };
    let settings = match settings::read(|k| std::env::var(k).ok(), default_format) {
        Ok(s) => s,
        Err(e) => return config_error(&e),
    };
    let needs_url = matches!(
        cli.command,
        Command::Serve { .. } | Command::Mcp { .. } | Command::Check
    );
    if needs_url && settings.connect.is_none() {
        return config_error(
            "DATABASE_URL is not set (e.g. DATABASE_URL=postgres://user:password@127.0.0.1:5432/app)",
        );
    }
    if !matches!(cli.command, Command::Check) {
        if let Err(e) = logging::init(&settings.log) {
            return config_error(&e);
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            errln!("wirepool: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let connect = settings.connect;
        let mut pool = settings.pool;
        match cli.command {
            Command::Serve { http, start } => {
                pool.start_without_database = !start.fail_fast_start;
                serve::serve(connect.expect("checked above"), pool, http.listen()).await
            }
            Command::Mcp { start } => {
                pool.start_without_database = !start.fail_fast_start;
                serve::mcp_stdio(connect.expect("checked above"), pool).await
            }
            Command::Check => check::run(&connect.expect("checked above")).await,
            // Answered before the settings were read.
            Command::Health { .. } => Ok(()),
            Command::Demo {
                http,
                phase_seconds,
                once,
            } => {
                let opts = demo::DemoOptions {
                    listen: http.listen(),
                    phase: Duration::from_secs(phase_seconds),
                    once,
                };
                let leak_timeout_set = std::env::var_os("POOL_LEAK_DETECTION_TIMEOUT").is_some();
                demo::run(connect, pool, leak_timeout_set, opts).await
            }
        }
    });
    // Pool tasks may still hold the runtime; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("wirepool: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `wirepool health`: no settings, no logger; the answer on stdout, the reason on stderr.
fn health_probe(url: &str, timeout: f64) -> ExitCode {
    if !timeout.is_finite() || timeout <= 0.0 || timeout > 3600.0 {
        return config_error(&format!(
            "--timeout: `{timeout}` is not a number of seconds between 0 and 3600"
        ));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            errln!("wirepool: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let p = runtime.block_on(probe::run(url, Duration::from_secs_f64(timeout)));
    if !p.out.is_empty() {
        outln!("{}", p.out);
    }
    if !p.err.is_empty() {
        errln!("wirepool health: {}", p.err);
    }
    ExitCode::from(p.code)
}

fn config_error(msg: &str) -> ExitCode {
    errln!("wirepool: {msg}");
    ExitCode::from(EXIT_CONFIG)
}
