//! Connection-level behaviour against a real, throwaway PostgreSQL server.

use std::time::{Duration, Instant};

use wirepool::error::sqlstate;
use wirepool::protocol::AuthMethod;
use wirepool::{Connection, ErrorKind, TransactionStatus};
use wirepool_testkit::{cluster, Role};

#[tokio::test]
async fn every_auth_method_logs_in_and_runs_select_1() {
    let pg = cluster();
    for (role, method) in [
        (Role::Trust, AuthMethod::Trust),
        (Role::Password, AuthMethod::Cleartext),
        (Role::Md5, AuthMethod::Md5),
        (Role::Scram, AuthMethod::ScramSha256),
    ] {
        let mut c = Connection::connect(&pg.config(role))
            .await
            .unwrap_or_else(|e| panic!("{role:?}: {e:?}"));
        assert_eq!(c.auth_method(), method, "{role:?}");
        let rows = c.simple_query("SELECT 1").await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get(0), Some("1"));
        assert!(c.parameter("server_version").is_some());
        assert_ne!(c.process_id(), 0);
        c.close().await.unwrap();
    }
}

#[tokio::test]
async fn the_unix_socket_works_too() {
    let pg = cluster();
    let cfg = pg.config(Role::Trust).socket_dir(pg.socket_dir());
    let mut c = Connection::connect(&cfg).await.unwrap();
    let rows = c.simple_query("SELECT current_user").await.unwrap();
    assert_eq!(rows[0].get(0), Some("trust_user"));
}

#[tokio::test]
async fn login_failures_have_their_own_sqlstates() {
    let pg = cluster();
    for role in [Role::Password, Role::Md5, Role::Scram] {
        let cfg = pg.config(role).with_password(Some("wrong"));
        let err = Connection::connect(&cfg).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Db, "{role:?}: {err:?}");
        assert_eq!(err.code(), Some(sqlstate::INVALID_PASSWORD), "{role:?}");
        assert!(
            !format!("{err} {err:?}").contains("wrong\""),
            "no password in errors"
        );
    }
    let no_pw = pg.config(Role::Scram).with_password(None::<String>);
    let err = Connection::connect(&no_pw).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingPassword, "{err:?}");
    assert!(err.to_string().contains("SCRAM-SHA-256"), "{err}");

    // Unknown role (the catch-all pg_hba line is trust, so the role check itself fails).
    let unknown = pg.config(Role::Trust).with_user("nobody_here");
    let err = Connection::connect(&unknown).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err:?}"
    );

    let missing_db = pg.config(Role::Trust).with_dbname("no_such_db");
    let err = Connection::connect(&missing_db).await.unwrap_err();
    assert_eq!(err.code(), Some(sqlstate::INVALID_CATALOG_NAME), "{err:?}");
}

#[tokio::test]
async fn refused_port_is_an_io_error_within_the_connect_timeout() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg: wirepool::ConnectConfig = format!("postgres://u@127.0.0.1:{port}/d?connect_timeout=2")
        .parse()
        .unwrap();
    let t = Instant::now();
    let err = Connection::connect(&cfg).await.unwrap_err();
    assert!(err.is_io(), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let io = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<std::io::Error>());
    assert_eq!(
        io.map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
}

#[tokio::test]
async fn multi_statement_strings_errors_and_empty_queries() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Trust)).await.unwrap();

    let sets = c.simple_query_sets("SELECT 1 AS a, NULL AS b; SELECT 'x' AS c; CREATE TEMP TABLE t(i int); INSERT INTO t VALUES (1),(2)").await.unwrap();
    assert_eq!(sets.len(), 4);
    let r = &sets[0].rows()[0];
    assert_eq!(r.get(0), Some("1"));
    assert_eq!(r.get(1), None);
    assert!(r.is_null(1));
    assert_eq!(r.get_named("a"), Some("1"));
    assert_eq!(r.columns()[1].name(), "b");
    assert_eq!(sets[0].command_tag(), Some("SELECT 1"));
    assert_eq!(sets[1].rows()[0].get(0), Some("x"));
    assert_eq!(sets[2].command_tag(), Some("CREATE TABLE"));
    assert_eq!(sets[3].rows_affected(), Some(2));

    // An error mid-way aborts the rest; the connection stays usable.
    let err = c
        .simple_query("SELECT 1; SELECT 1/0; INSERT INTO t VALUES (3)")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(sqlstate::DIVISION_BY_ZERO));
    let db = err.as_db_error().unwrap();
    assert_eq!(db.severity(), "ERROR");
    assert!(!c.is_broken());
    let rows = c.simple_query("SELECT count(*) FROM t").await.unwrap();
    assert_eq!(
        rows[0].get(0),
        Some("2"),
        "the INSERT after the error did not run"
    );

    // Syntax errors carry a position.
    let err = c.simple_query("SELECT * FROM").await.unwrap_err();
    assert_eq!(err.code(), Some(sqlstate::SYNTAX_ERROR));
    assert!(err.as_db_error().unwrap().position().is_some());

    // Empty and whitespace-only queries.
    assert!(c.simple_query("").await.unwrap().is_empty());
    assert!(c.simple_query("   ").await.unwrap().is_empty());

    // Transaction status follows ReadyForQuery.
    c.simple_query("BEGIN").await.unwrap();
    assert_eq!(c.transaction_status(), TransactionStatus::InTransaction);
    let _ = c.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(c.transaction_status(), TransactionStatus::Failed);
    c.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(c.transaction_status(), TransactionStatus::Idle);

    // Notices do not disturb the answer.
    let rows = c
        .simple_query("DO $$ BEGIN RAISE NOTICE 'hello'; END $$; SELECT 5")
        .await
        .unwrap();
    assert_eq!(rows[0].get(0), Some("5"));
}

#[tokio::test]
async fn copy_is_refused_cleanly() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Trust)).await.unwrap();
    c.simple_query("CREATE TEMP TABLE t(i int)").await.unwrap();
    let err = c.simple_query("COPY t FROM STDIN").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CopyUnsupported, "{err:?}");
    assert!(err.to_string().contains("copy_in or copy_out"), "{err}");
    let err = c
        .simple_query("COPY (SELECT 1) TO STDOUT")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CopyUnsupported, "{err:?}");
    assert!(!c.is_broken());
    assert_eq!(c.transaction_status(), TransactionStatus::Idle);
    assert_eq!(
        c.simple_query("SELECT 7").await.unwrap()[0].get(0),
        Some("7")
    );
}

#[tokio::test]
async fn cancel_stops_a_running_query() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Trust)).await.unwrap();
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel().await
    });
    let t = Instant::now();
    let err = c.simple_query("SELECT pg_sleep(30)").await.unwrap_err();
    assert_eq!(err.code(), Some(sqlstate::QUERY_CANCELED), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(20));
    canceller.await.unwrap().unwrap();
    assert_eq!(
        c.simple_query("SELECT 1").await.unwrap()[0].get(0),
        Some("1")
    );
}

#[tokio::test]
async fn a_dropped_query_future_is_drained_before_the_next_query() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Trust)).await.unwrap();
    let r = tokio::time::timeout(
        Duration::from_millis(100),
        c.simple_query("SELECT pg_sleep(0.5), 'late'"),
    )
    .await;
    assert!(r.is_err(), "the query should still be running");
    assert!(c.is_busy());
    let rows = c.simple_query("SELECT 'next'").await.unwrap();
    assert_eq!(rows[0].get(0), Some("next"));
    assert!(!c.is_busy());
}

#[tokio::test]
async fn terminated_backend_breaks_the_connection() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Trust)).await.unwrap();
    let pid = c.process_id();
    pg.psql(&format!("SELECT pg_terminate_backend({pid})"))
        .unwrap();
    let err = c.simple_query("SELECT 1").await.unwrap_err();
    assert!(c.is_broken(), "{err:?}");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Db | ErrorKind::Closed | ErrorKind::Io
        ),
        "{err:?}"
    );
    let again = c.simple_query("SELECT 1").await.unwrap_err();
    assert!(again.is_closed());
}

/// A statement run again describes its rows with the same bytes: the connection takes the
/// columns it already has. Any other description, including the same SQL after the table
/// changed, is read anew.
#[tokio::test]
async fn a_repeated_row_description_reuses_its_columns_and_a_changed_one_is_read() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Trust)).await.unwrap();
    c.simple_query("CREATE TEMP TABLE t (a int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let names = |set: &wirepool::protocol::ResultSet| -> Vec<String> {
        set.columns()
            .unwrap()
            .iter()
            .map(|c| c.name().to_string())
            .collect()
    };
    let sql = "SELECT * FROM t";
    let first = c.simple_query_sets(sql).await.unwrap();
    let again = c.simple_query_sets(sql).await.unwrap();
    assert_eq!(names(&again[0]), ["a"]);
    assert!(std::ptr::eq(
        first[0].columns().unwrap(),
        again[0].columns().unwrap()
    ));
    // Two statements in one string: the second description is the first one's again.
    let both = c
        .simple_query_sets("SELECT * FROM t; SELECT * FROM t")
        .await
        .unwrap();
    assert!(std::ptr::eq(
        both[0].columns().unwrap(),
        both[1].columns().unwrap()
    ));

    c.simple_query("ALTER TABLE t ADD COLUMN b text DEFAULT 'x'")
        .await
        .unwrap();
    let changed = c.simple_query_sets(sql).await.unwrap();
    assert_eq!(names(&changed[0]), ["a", "b"]);
    assert_eq!(changed[0].rows()[0].get(1), Some("x"));
    let other = c.simple_query_sets("SELECT 2 AS z").await.unwrap();
    assert_eq!(names(&other[0]), ["z"]);
    assert_eq!(other[0].rows()[0].get(0), Some("2"));
    // A description of the same length that differs in a byte.
    let same_length = c.simple_query_sets("SELECT 3 AS y").await.unwrap();
    assert_eq!(names(&same_length[0]), ["y"]);
    let back = c.simple_query_sets(sql).await.unwrap();
    assert_eq!(names(&back[0]), ["a", "b"]);
    assert_eq!(back[0].rows()[0].get(0), Some("1"));
}
