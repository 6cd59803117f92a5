//! A child process for tests: its output lines collected, waited for, signalled.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running process (the `wirepool` binary, an example) whose stdout and stderr lines are
/// collected; killed when dropped.
#[derive(Debug)]
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Its stdout lines so far.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Its stderr lines so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(r: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(line) => l.lock().unwrap().push(line),
                Err(_) => return,
            }
        }
    });
    lines
}

impl Proc {
    /// Starts `cmd` with stdin closed and its output collected.
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the process starts");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    /// Its stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Its stdout so far.
    pub fn stdout_text(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) -> String {
        let t = Instant::now();
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the process exited ({status}) before logging {needle:?}:\n{}",
                    self.stderr_text()
                );
            }
            assert!(
                t.elapsed() < limit,
                "no {needle:?} in the logs after {limit:?}:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The HTTP address of the first line (stdout or stderr) saying `Listening on
    /// http://ADDR`.
    pub fn wait_listening(&mut self) -> SocketAddr {
        const NEEDLE: &str = "Listening on http://";
        let t = Instant::now();
        loop {
            let found = {
                let out = self.stdout.lock().unwrap();
                let err = self.stderr.lock().unwrap();
                out.iter().chain(err.iter()).find_map(|l| {
                    let rest = l.split(NEEDLE).nth(1)?;
                    let addr: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '/' | ')'))
                        .collect();
                    addr.parse::<SocketAddr>().ok()
                })
            };
            if let Some(a) = found {
                return a;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the process exited ({status}) before listening:\n{}\n{}",
                    self.stdout_text(),
                    self.stderr_text()
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "not listening after 60 s:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `f` until it returns `Some`, up to `limit`; on failure shows the logs.
    pub fn eventually<T>(
        &self,
        limit: Duration,
        what: &str,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let t = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                t.elapsed() < limit,
                "{what}: not within {limit:?}; logs:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends it `sig` (`TERM`, `INT`, ...) with `kill`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for it to exit, up to `limit` (then kills it and fails).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(100));
                return s;
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "the process did not exit within {limit:?}:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
