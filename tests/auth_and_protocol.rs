//! How a connection is allowed in, against a real server of the version the suite runs on
//! (PostgreSQL 15 and 18 in CI): protocol 3.2 and its negotiation down to 3.0,
//! `require_auth` for each role's method, and a password provider rotating a role's
//! password under load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wirepool::error::sqlstate;
use wirepool::{ConnectConfig, Connection, ErrorKind, ProtocolVersion};
use wirepool_testkit::{cluster, Cluster, Role};

/// The server's major version, as it reported it at startup.
fn major(conn: &Connection) -> u32 {
    let v = conn.parameter("server_version").expect("server_version");
    v.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
        .expect("a version number")
}

/// The connection's cancel key stops a running statement.
async fn cancel_a_sleep(conn: &mut Connection) {
    let token = conn.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel().await
    });
    let e = conn.execute("SELECT pg_sleep(60)", &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::QUERY_CANCELED), "{e}");
    canceller.await.unwrap().unwrap();
}

fn with(pg: &Cluster, role: Role, extra: &str) -> ConnectConfig {
    let url = pg.url(role);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{extra}").parse().expect("a valid URL")
}

#[tokio::test]
async fn protocol_3_2_where_the_server_speaks_it_and_3_0_where_it_does_not() {
    let pg = cluster();
    // The default asks for 3.0, as libpq 18 does.
    let conn = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    assert_eq!(conn.protocol_version(), ProtocolVersion::V3_0);
    let server = major(&conn);

    let mut conn = Connection::connect(&with(&pg, Role::Scram, "max_protocol_version=3.2"))
        .await
        .unwrap();
    let expected = if server >= 18 {
        ProtocolVersion::V3_2
    } else {
        // The server answered NegotiateProtocolVersion, and the session went on in 3.0.
        ProtocolVersion::V3_0
    };
    assert_eq!(conn.protocol_version(), expected, "PostgreSQL {server}");
    let n: i32 = conn
        .query_one("SELECT $1::int + 1", &[&41i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 42);

    // The cancel key of the version in use (32 bytes from PostgreSQL 18 under 3.2) stops
    // a running statement.
    cancel_a_sleep(&mut conn).await;
    assert_eq!(
        conn.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );

    // A minimum the server cannot meet ends the connect, naming the setting.
    let r = Connection::connect(&with(&pg, Role::Scram, "min_protocol_version=3.2")).await;
    if server >= 18 {
        assert_eq!(r.unwrap().protocol_version(), ProtocolVersion::V3_2);
    } else {
        let e = r.unwrap_err();
        assert!(
            e.is_protocol() && e.to_string().contains("min_protocol_version"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn require_auth_lets_in_only_the_methods_it_names() {
    let pg = cluster();
    let roles = [
        (Role::Trust, "none"),
        (Role::Password, "password"),
        (Role::Md5, "md5"),
        (Role::Scram, "scram-sha-256"),
    ];
    // Each list with the methods it lets in, written out (libpq 16's meaning).
    let lists: [(&str, &[&str]); 7] = [
        ("scram-sha-256", &["scram-sha-256"]),
        ("md5,password", &["md5", "password"]),
        ("none", &["none"]),
        ("!md5", &["none", "password", "scram-sha-256"]),
        ("!password,!md5", &["none", "scram-sha-256"]),
        ("!none", &["password", "md5", "scram-sha-256"]),
        ("scram-sha-256,none", &["scram-sha-256", "none"]),
    ];
    for (list, lets_in) in lists {
        for (role, method) in roles {
            let ok = lets_in.contains(&method);
            let cfg = with(&pg, role, &format!("require_auth={list}"));
            match Connection::connect(&cfg).await {
                Ok(mut conn) => {
                    assert!(ok, "require_auth={list} let {method} in");
                    conn.query_one("SELECT 1", &[]).await.unwrap();
                }
                Err(e) => {
                    assert!(!ok, "require_auth={list} refused {method}: {e}");
                    assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
                    let text = wirepool::error::chain(&e);
                    assert!(text.contains("require_auth"), "{text}");
                    // The error names what the server asked for.
                    let named = match method {
                        "none" => "no authentication",
                        "password" => "cleartext password",
                        "md5" => "md5",
                        _ => "SCRAM-SHA-256",
                    };
                    assert!(text.contains(named), "{list}/{method}: {text}");
                }
            }
        }
    }
    // The environment's PGREQUIREAUTH, when the string says nothing.
    let url = pg.url(Role::Md5);
    let cfg = ConnectConfig::parse_with_env(&url, |k| {
        (k == "PGREQUIREAUTH").then(|| "scram-sha-256".to_string())
    })
    .unwrap();
    let e = Connection::connect(&cfg).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
}

/// The password of `scram_user` changes every second while 8 tasks run statements on a
/// pool whose connections live 300 ms; the provider returns the current password. No
/// statement fails, connections keep being opened with the new passwords, and a session
/// opened with the first password keeps working.
#[tokio::test]
async fn a_rotating_password_under_load() {
    let pg = cluster();
    let current = Arc::new(parking_lot::Mutex::new(
        Role::Scram.password().unwrap().to_string(),
    ));
    let calls = Arc::new(AtomicU64::new(0));
    // No password in the settings: only the provider knows it.
    let cfg = pg.config(Role::Scram).with_password(None::<String>);
    let mut pool_cfg = wirepool::PoolConfig::default();
    pool_cfg.max_lifetime = Some(Duration::from_millis(300));
    pool_cfg.monitor_interval = Duration::from_millis(50);
    pool_cfg.acquire_timeout = Duration::from_secs(30);
    let pool = wirepool::Pool::builder(cfg)
        .config(pool_cfg)
        .min_size(2)
        .max_size(4)
        .password_provider({
            let current = current.clone();
            let calls = calls.clone();
            move || {
                let pw = current.lock().clone();
                calls.fetch_add(1, Ordering::Relaxed);
                async move { Ok::<_, std::io::Error>(pw) }
            }
        })
        .build()
        .await
        .unwrap();
    let mut held = pool.acquire().await.unwrap();

    let admin = pg.config(Role::Admin);
    let rotator = {
        let current = current.clone();
        tokio::spawn(async move {
            let mut admin = Connection::connect(&admin).await.unwrap();
            for i in 1..=5 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let pw = format!("rotated_{i}");
                // The old password stays valid until the role has the new one; the
                // provider hands out the new one from then on.
                admin
                    .batch_execute(&format!("ALTER ROLE scram_user PASSWORD '{pw}'"))
                    .await
                    .unwrap();
                *current.lock() = pw;
            }
        })
    };
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8i32 {
        let pool = pool.clone();
        let failures = failures.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0i32;
            while done.load(Ordering::Relaxed) == 0 {
                let r = if i % 2 == 0 {
                    pool.query_one("SELECT $1::int * 2", &[&(t * 1000 + i)])
                        .await
                        .map(|row| row.get::<_, i32>(0))
                } else {
                    match pool.acquire().await {
                        Ok(mut c) => c
                            .query_one("SELECT $1::int * 2", &[&(t * 1000 + i)])
                            .await
                            .map(|row| row.get::<_, i32>(0)),
                        Err(e) => Err(e),
                    }
                };
                match r {
                    Ok(v) => assert_eq!(v, (t * 1000 + i) * 2),
                    Err(e) => {
                        eprintln!("task {t}: {}", wirepool::error::chain(&e));
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            i
        }));
    }
    rotator.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(1, Ordering::Relaxed);
    let mut statements = 0;
    for t in tasks {
        statements += t.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "statements failed");
    assert!(statements > 100, "only {statements} statements ran");
    // The session opened with the first password still works.
    assert_eq!(
        held.query_one("SELECT 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );
    drop(held);
    // Connections were opened all along: with the later passwords, through the provider.
    let created = pool.statistics().connections_created;
    assert!(created >= 10, "only {created} connections were opened");
    assert!(calls.load(Ordering::Relaxed) >= created);
    // A new connection now needs the fifth password: the provider has it.
    // (The lock's guard must not live across an await: the pool's own connects call the
    // provider, which takes it.)
    let fifth = current.lock().clone();
    let mut c = Connection::connect(&pg.config(Role::Scram).with_password(Some(fifth)))
        .await
        .unwrap();
    c.query_one("SELECT 1", &[]).await.unwrap();
    let stale = Connection::connect(&pg.config(Role::Scram))
        .await
        .unwrap_err();
    assert!(stale.is_db(), "{stale}");
}

#[tokio::test]
async fn a_failing_provider_is_named_and_the_pool_recovers() {
    let pg = cluster();
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pool = wirepool::Pool::builder(pg.config(Role::Scram).with_password(None::<String>))
        .min_size(0)
        .max_size(2)
        .acquire_timeout(Duration::from_secs(1))
        .reconnect_delays(vec![Duration::from_millis(200)])
        .password_provider({
            let fail = fail.clone();
            move || {
                let fail = fail.load(Ordering::Relaxed);
                async move {
                    if fail {
                        Err(std::io::Error::other("the token service is down"))
                    } else {
                        Ok(Role::Scram.password().unwrap().to_string())
                    }
                }
            }
        })
        .build()
        .await
        .unwrap();
    let e = pool.acquire().await.unwrap_err();
    let text = wirepool::error::chain(&e);
    assert!(
        text.contains("password provider") && text.contains("token service is down"),
        "{text}"
    );
    assert!(!text.contains("scram_secret"));
    fail.store(false, Ordering::Relaxed);
    // The next attempt comes on the pool's reconnection schedule.
    let started = std::time::Instant::now();
    let mut c = loop {
        match pool.acquire().await {
            Ok(c) => break c,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(60),
                "no connection a minute after the provider recovered: {e}"
            ),
        }
    };
    c.query_one("SELECT 1", &[]).await.unwrap();
}

/// PgBouncer in front of the server. Debian's 1.18 knows no NegotiateProtocolVersion and
/// refuses a request for 3.2 outright (as libpq 18 finds it: hence 3.0 by default); 1.25,
/// with its statement cache on, answers with the version it speaks, and the connection
/// works in it, its cancel key included.
#[tokio::test]
async fn protocol_3_2_through_pgbouncer() {
    use wirepool_testkit::{Bouncer, BouncerOptions, PoolMode};
    let pg = cluster();
    let old =
        Bouncer::start(&pg, PoolMode::Transaction, 2).unwrap_or_else(|e| panic!("PgBouncer: {e}"));
    let cfg = old
        .config(&pg, Role::Trust)
        .with_protocol_versions(ProtocolVersion::V3_0, ProtocolVersion::V3_2);
    let e = Connection::connect(&cfg).await.unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::PROTOCOL_VIOLATION), "{e}");
    let conn = Connection::connect(&old.config(&pg, Role::Trust))
        .await
        .unwrap();
    assert_eq!(conn.protocol_version(), ProtocolVersion::V3_0);

    let bouncer = Bouncer::start_with(
        &pg,
        PoolMode::Transaction,
        2,
        &BouncerOptions::statement_cache(100),
    )
    .unwrap_or_else(|e| panic!("PgBouncer 1.25: {e}"));
    let cfg = bouncer
        .config(&pg, Role::Trust)
        .with_protocol_versions(ProtocolVersion::V3_0, ProtocolVersion::V3_2);
    let mut conn = Connection::connect(&cfg).await.unwrap();
    // PgBouncer 1.25 answers NegotiateProtocolVersion: it speaks 3.0.
    assert_eq!(conn.protocol_version(), ProtocolVersion::V3_0);
    let n: i32 = conn
        .query_one("SELECT $1::int + 1", &[&1i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    cancel_a_sleep(&mut conn).await;
    // Demanding 3.2 of a pooler that speaks 3.0 is refused, naming the setting.
    let strict = cfg.with_protocol_versions(ProtocolVersion::V3_2, ProtocolVersion::V3_2);
    let e = Connection::connect(&strict).await.unwrap_err();
    assert!(e.to_string().contains("min_protocol_version"), "{e}");
}

/// A provider that never answers is bounded by the connect timeout, as a silent server is.
#[tokio::test]
async fn a_provider_that_never_answers_meets_the_connect_timeout() {
    let pg = cluster();
    let cfg = pg
        .config(Role::Scram)
        .with_password(None::<String>)
        .with_connect_timeout(Some(Duration::from_millis(500)))
        .with_password_provider(Some(wirepool::PasswordProvider::new(|| async {
            std::future::pending::<Result<String, std::io::Error>>().await
        })));
    let e = Connection::connect(&cfg).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectTimeout, "{e}");
}
