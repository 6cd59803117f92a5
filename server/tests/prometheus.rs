//! A real Prometheus server (the `prometheus` binary of the package that brings promtool),
//! started on loopback, scrapes a running `wirepool serve`; through Prometheus' HTTP API the
//! health-status gauge reads 0, then 2 once the database is killed, then 0 again after it
//! is back, and the state gauge shows RECOVERING in between.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use wirepool_testkit::Role;

use common::{command, get, Proc};

/// The `prometheus` server binary: `PROMETHEUS` if set, else from PATH.
fn prometheus_bin() -> String {
    let bin = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let ok = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the Prometheus server is needed (Debian: apt-get install prometheus), or PROMETHEUS=<path>"
    );
    bin
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A Prometheus server scraping `target` every 500 ms, stopped on drop.
struct Prometheus {
    child: std::process::Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let bin = prometheus_bin();
        let dir = std::env::temp_dir().join(format!(
            "wirepool-prometheus-{}-{}",
            std::process::id(),
            target.port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\n\
                 scrape_configs:\n  - job_name: wirepool\n    scrape_timeout: 400ms\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = free_addr();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus starts");
        let prom = Prometheus { child, addr, dir };
        let t = std::time::Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "prometheus did not listen:\n{}",
                prom.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        prom
    }

    /// The value of an instant query that returns one sample, if it does.
    fn query_one(&self, q: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", urlencode(q));
        let r = get(self.addr, &path, &[]);
        if r.status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&r.body).ok()?;
        let result = v["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_health_gauge_through_an_outage() {
    let mut pg = wirepool_testkit::cluster();
    let mut p = Proc::spawn(command(
        &["serve"],
        &[
            ("DATABASE_URL", &pg.url(Role::Trust)),
            ("WIREPOOL_BIND", "127.0.0.1:0"),
            ("POOL_TIMEOUT", "2"),
        ],
    ));
    let addr = p.wait_listening();
    let prom = Prometheus::start(addr);
    let health = "codebase_mcp_pool_health_status";
    let recovering = "codebase_mcp_pool_state{state=\"RECOVERING\"}";
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        let t = std::time::Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{what}: not seen through Prometheus within 60 s\nprometheus log:\n{}\nwirepool log:\n{}",
                prom.log(),
                p.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("health_status 0", &|| prom.query_one(health) == Some(0.0));
    assert_eq!(prom.query_one(recovering), Some(0.0));

    pg.kill().unwrap();
    wait_for("health_status 2 with the database down", &|| {
        prom.query_one(health) == Some(2.0)
    });
    wait_for("state RECOVERING", &|| {
        prom.query_one(recovering) == Some(1.0)
    });

    pg.start_again().unwrap();
    wait_for("health_status 0 again", &|| {
        prom.query_one(health) == Some(0.0)
    });
    // RECOVERING showed in the series between the two.
    let seen = prom
        .query_one(&format!("max_over_time({recovering}[5m])"))
        .unwrap();
    assert_eq!(seen, 1.0);
    assert_eq!(prom.query_one(recovering), Some(0.0));
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
}
