//! libpq's password file and service file against a real server: a password found only in
//! the password file logs in, a file open to others is ignored, a changed file is read by the
//! next connection, and a service gives the settings a string leaves out. The environment is
//! a closure (`ConnectConfig::parse_with_env`): the process's own is never read or changed.

mod common;

use std::path::{Path, PathBuf};

use common::Logs;

use wirepool::{ConnectConfig, Connection, ErrorKind};
use wirepool_testkit::{cluster, Cluster, Role};

/// A private directory for one test's files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "wirepool-libpq-files-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    /// Writes `text` to `name` with permissions `mode`.
    fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Settings parsed from `s` with only `vars` in the environment.
fn parse(s: &str, vars: &[(&str, &Path)]) -> ConnectConfig {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    ConnectConfig::parse_with_env(s, move |k| {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .unwrap()
}

/// `role` on the cluster over TCP, without a password.
fn url_without_password(pg: &Cluster, role: Role) -> String {
    format!(
        "postgres://{}@127.0.0.1:{}/postgres?connect_timeout=5",
        role.name(),
        pg.port()
    )
}

async fn current_user(cfg: &ConnectConfig) -> wirepool::Result<String> {
    let mut c = Connection::connect(cfg).await?;
    let rows = c.simple_query("SELECT current_user").await?;
    Ok(rows[0].get(0).unwrap().to_string())
}

#[tokio::test]
async fn a_password_only_in_the_password_file_logs_in() {
    let pg = cluster();
    let dir = TempDir::new("pgpass-0600");
    let line = format!("127.0.0.1:{}:postgres:scram_user:scram_secret\n", pg.port());
    let f = dir.write("pgpass", &line, 0o600);
    // Through PGPASSFILE, and through the keyword in either form.
    let url = url_without_password(&pg, Role::Scram);
    for cfg in [
        parse(&url, &[("PGPASSFILE", &f)]),
        parse(&format!("{url}&passfile={}", f.display()), &[]),
        parse(
            &format!(
                "host=127.0.0.1 port={} user=scram_user dbname=postgres passfile={}",
                pg.port(),
                f.display()
            ),
            &[],
        ),
    ] {
        assert_eq!(cfg.password(), None);
        assert_eq!(current_user(&cfg).await.unwrap(), "scram_user");
    }
    // The home directory's .pgpass when nothing names a file.
    let home = TempDir::new("pgpass-home");
    home.write(".pgpass", &line, 0o600);
    let cfg = parse(&url, &[("HOME", &home.0)]);
    assert_eq!(current_user(&cfg).await.unwrap(), "scram_user");
    // A password given wins over the file's.
    let wrong = dir.write("wrong", "*:*:*:*:not_the_password\n", 0o600);
    let cfg = parse(&pg.url(Role::Scram), &[("PGPASSFILE", &wrong)]);
    assert_eq!(current_user(&cfg).await.unwrap(), "scram_user");
}

#[tokio::test]
async fn a_password_file_open_to_others_is_ignored() {
    let pg = cluster();
    let dir = TempDir::new("pgpass-0644");
    let line = format!("127.0.0.1:{}:postgres:scram_user:scram_secret\n", pg.port());
    let f = dir.write("pgpass", &line, 0o644);
    let logs = Logs::capture();
    let cfg = parse(
        &url_without_password(&pg, Role::Scram),
        &[("PGPASSFILE", &f)],
    );
    let e = current_user(&cfg).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingPassword, "{e}");
    assert!(!e.to_string().contains("scram_secret"), "{e}");
    // A warning names the file and says why, and shows none of its contents.
    let warned = logs.lines_with(&format!("password file {}", f.display()));
    assert!(
        warned
            .iter()
            .any(|(_, l)| l.contains("WARN") && l.contains("(0600) or less; ignored")),
        "{warned:?}"
    );
    assert!(!logs.text().contains("scram_secret"));
    // The same file, made private, is used by the next connection.
    dir.write("pgpass", &line, 0o600);
    assert_eq!(current_user(&cfg).await.unwrap(), "scram_user");
}

#[tokio::test]
async fn wildcards_match_and_a_rotated_file_is_read_by_the_next_connection() {
    let pg = cluster();
    let dir = TempDir::new("pgpass-wildcard");
    let f = dir.write(
        "pgpass",
        "# other roles first\n*:*:*:md5_user:md5_secret\n*:*:*:scram_user:old_password\n",
        0o600,
    );
    let cfg = parse(&url_without_password(&pg, Role::Md5), &[("PGPASSFILE", &f)]);
    assert_eq!(current_user(&cfg).await.unwrap(), "md5_user");
    let cfg = parse(
        &url_without_password(&pg, Role::Scram),
        &[("PGPASSFILE", &f)],
    );
    let e = current_user(&cfg).await.unwrap_err();
    assert_eq!(e.code(), Some("28P01"), "{e}");
    assert!(!e.to_string().contains("old_password"), "{e}");
    dir.write("pgpass", "*:*:*:scram_user:scram_secret\n", 0o600);
    assert_eq!(current_user(&cfg).await.unwrap(), "scram_user");
}

#[tokio::test]
async fn a_service_gives_what_the_string_leaves_out() {
    let pg = cluster();
    let dir = TempDir::new("service");
    let f = dir.write(
        "pg_service.conf",
        &format!(
            "# services\n[wp]\nhost=127.0.0.1\nport={}\nuser=scram_user\ndbname=postgres\n\
             password=scram_secret\nconnect_timeout=5\n",
            pg.port()
        ),
        0o644,
    );
    async fn database(cfg: &ConnectConfig) -> String {
        let mut c = Connection::connect(cfg).await.unwrap();
        let rows = c
            .simple_query("SELECT current_user || '@' || current_database()")
            .await
            .unwrap();
        rows[0].get(0).unwrap().to_string()
    }
    for s in ["service=wp", "postgres://?service=wp"] {
        let cfg = parse(s, &[("PGSERVICEFILE", &f)]);
        assert_eq!(database(&cfg).await, "scram_user@postgres", "{s}");
    }
    // PGSERVICE names it too; an explicit dbname beats the service's.
    let cfg = parse(
        "dbname=template1",
        &[("PGSERVICEFILE", &f), ("PGSERVICE", Path::new("wp"))],
    );
    assert_eq!(database(&cfg).await, "scram_user@template1");
    let cfg = parse("postgres:///template1?service=wp", &[("PGSERVICEFILE", &f)]);
    assert_eq!(database(&cfg).await, "scram_user@template1");
    // From the system's directory (where `f` is) when the user's file has no such service.
    let home = TempDir::new("service-home");
    home.write(".pg_service.conf", "[other]\nhost=nowhere.invalid\n", 0o644);
    let cfg = parse("service=wp", &[("HOME", &home.0), ("PGSYSCONFDIR", &dir.0)]);
    assert_eq!(database(&cfg).await, "scram_user@postgres");
}
