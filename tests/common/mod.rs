//! Helpers shared by the integration tests: the pool's log lines, captured.

#![allow(dead_code)] // each test binary uses a part

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

/// Every log line the pool writes (plain text, each prefixed by the seconds since the
/// subscriber started), so tests read what the pool said rather than sampling its state.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<parking_lot::Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The process-wide capture (one global subscriber per test binary).
    pub(crate) fn capture() -> Logs {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let writer = logs.clone();
            tracing_subscriber::fmt()
                .with_env_filter("wirepool=info")
                .with_ansi(false)
                .with_timer(tracing_subscriber::fmt::time::uptime())
                .with_writer(move || writer.clone())
                .init();
            logs
        })
        .clone()
    }

    /// Everything captured so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }

    /// Lines containing `needle`, with the time each was written.
    pub(crate) fn lines_with(&self, needle: &str) -> Vec<(Duration, String)> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(|l| {
                let secs: f64 = l
                    .split_whitespace()
                    .next()
                    .and_then(|t| t.trim_end_matches('s').parse().ok())
                    .unwrap_or_else(|| panic!("no uptime stamp in {l:?}"));
                (Duration::from_secs_f64(secs), l.to_string())
            })
            .collect()
    }

    /// The lifecycle states in the order the pool logged its transitions into them.
    pub(crate) fn states(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter_map(|l| l.split("Health status: ").nth(1))
            .filter_map(|t| t.split(" -> ").nth(1))
            .map(|to| to.split_whitespace().next().unwrap_or("").to_string())
            .collect()
    }
}

/// Polls the inner future at most `n` times, then drops it (`None`) if it is not done.
pub(crate) struct PollAtMost<F> {
    fut: Pin<Box<F>>,
    left: usize,
}

impl<F: Future> Future for PollAtMost<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        match self.fut.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => {
                // Polled again at once, so that a poll count is not only the wake-ups.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

pub(crate) fn poll_at_most<F: Future>(fut: F, n: usize) -> PollAtMost<F> {
    PollAtMost {
        fut: Box::pin(fut),
        left: n,
    }
}

pub(crate) mod proxy;

/// A throwaway cluster where `trust_user`'s commits are stored and then wait for a
/// synchronous standby that does not exist, until the wait is cancelled or the backend
/// terminated (the commit stays either way), with a table `table (id int)` that
/// `trust_user` may write.
pub(crate) fn commits_wait_for_a_missing_standby(table: &str) -> wirepool_testkit::Cluster {
    let pg = wirepool_testkit::cluster();
    pg.psql("ALTER SYSTEM SET synchronous_standby_names = 'nowhere'")
        .unwrap();
    pg.psql("SELECT pg_reload_conf()").unwrap();
    pg.psql("ALTER ROLE trust_user SET synchronous_commit = on")
        .unwrap();
    pg.psql(&format!("CREATE TABLE {table} (id int)")).unwrap();
    pg.psql(&format!("GRANT ALL ON {table} TO trust_user"))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while pg.psql("SHOW synchronous_standby_names").unwrap().trim() != "nowhere" {
        assert!(
            std::time::Instant::now() < deadline,
            "the reload took effect"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    pg
}
