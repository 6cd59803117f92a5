//! GSSAPI (Kerberos) authentication against a real KDC and a real server: a throwaway
//! realm on loopback (MIT Kerberos's KDC, started here), the server's keytab, and the
//! client's ticket in a credential cache of this test's own.
//!
//! With the `gssapi` feature: logging in with a ticket, the server's view of it
//! (`pg_stat_gssapi`), `krbsrvname`, `require_auth`, `channel_binding`, a missing ticket, and a
//! pool of Kerberos connections serving transactions and pipelined statements through a
//! server restart. Without it: the error that names the feature.
//!
//! One test function: the Kerberos library reads `KRB5_CONFIG` and `KRB5CCNAME` from the
//! process environment, which is set once, before anything else runs.

use std::path::Path;

use wirepool::{ConnectConfig, Connection, ErrorKind};
use wirepool_testkit::kerberos::Kdc;
use wirepool_testkit::{cluster, Cluster};

fn gss_config(pg: &Cluster, extra: &str) -> ConnectConfig {
    format!(
        "host=localhost port={} user=gss_user dbname=postgres connect_timeout=60 {extra}",
        pg.port()
    )
    .parse()
    .expect("valid settings")
}

/// The realm, a server that accepts `gss_user` by GSSAPI only, and the environment that
/// points the Kerberos library at them. The credential cache starts empty.
fn realm() -> (Kdc, Cluster, std::path::PathBuf, std::path::PathBuf) {
    let kdc = Kdc::start().unwrap_or_else(|e| panic!("throwaway KDC: {e}"));
    let server_keys = kdc
        .keytab("server.keytab", &["postgres/localhost", "custom/localhost"])
        .unwrap();
    let client_keys = kdc.keytab("client.keytab", &["gss_user"]).unwrap();
    let mut pg = cluster();
    pg.enable_gss(&server_keys).unwrap();
    let ccache = kdc.krb5_conf().with_file_name("client.ccache");
    // Set before any thread of this test reads the environment.
    std::env::set_var("KRB5_CONFIG", kdc.krb5_conf());
    std::env::set_var("KRB5CCNAME", format!("FILE:{}", ccache.display()));
    (kdc, pg, client_keys, ccache)
}

#[test]
fn gssapi_authentication_against_a_real_kdc() {
    let (kdc, pg, client_keys, ccache) = realm();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenarios(&kdc, pg, &client_keys, &ccache));
}

#[cfg(not(feature = "gssapi"))]
async fn scenarios(kdc: &Kdc, pg: Cluster, client_keys: &Path, ccache: &Path) {
    kdc.kinit("gss_user", client_keys, ccache).unwrap();
    let e = Connection::connect(&gss_config(&pg, "")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
    assert!(e.to_string().contains("`gssapi` cargo feature"), "{e}");
    // require_auth still speaks first: a refused method is named as refused.
    let e = Connection::connect(&gss_config(&pg, "require_auth=!gss"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("require_auth"), "{e}");
}

#[cfg(feature = "gssapi")]
async fn scenarios(kdc: &Kdc, mut pg: Cluster, client_keys: &Path, ccache: &Path) {
    use std::sync::Arc;
    use std::time::Duration;
    use wirepool::{AuthMethod, Pool};
    use wirepool_testkit::kerberos::REALM;

    // No ticket yet: the library's own reason, as an authentication error.
    let e = Connection::connect(&gss_config(&pg, "")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
    assert!(e.to_string().contains("postgres@localhost"), "{e}");

    kdc.kinit("gss_user", client_keys, ccache).unwrap();
    let mut conn = Connection::connect(&gss_config(&pg, "")).await.unwrap();
    assert_eq!(conn.auth_method(), AuthMethod::Gss);
    let row = conn
        .query_one(
            "SELECT gss_authenticated, principal, current_user::text \
             FROM pg_stat_gssapi WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), format!("gss_user@{REALM}"));
    assert_eq!(row.get::<_, String>(2), "gss_user");
    drop(conn);
    assert!(kdc.log().contains("postgres/localhost@"), "{}", kdc.log());

    // krbsrvname names the service principal asked for.
    let conn = Connection::connect(&gss_config(&pg, "krbsrvname=custom"))
        .await
        .unwrap();
    assert_eq!(conn.auth_method(), AuthMethod::Gss);
    assert!(kdc.log().contains("custom/localhost@"), "{}", kdc.log());
    let e = Connection::connect(&gss_config(&pg, "krbsrvname=nosuch"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
    assert!(e.to_string().contains("nosuch@localhost"), "{e}");

    // require_auth: gss allowed, negated, or not listed.
    Connection::connect(&gss_config(&pg, "require_auth=gss"))
        .await
        .unwrap();
    Connection::connect(&gss_config(&pg, "require_auth=!md5,!password"))
        .await
        .unwrap();
    for refusing in ["require_auth=!gss", "require_auth=scram-sha-256"] {
        let e = Connection::connect(&gss_config(&pg, refusing))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Authentication, "{refusing}: {e}");
        assert!(e.to_string().contains("GSSAPI"), "{refusing}: {e}");
    }
    // channel_binding=require: GSSAPI does not bind to TLS, and nothing is sent.
    let e = Connection::connect(&gss_config(&pg, "channel_binding=require sslmode=prefer"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("channel_binding"), "{e}");

    // A pool of Kerberos sessions: transactions and pipelined statements side by side,
    // then a server restart, after which the pool's new connections authenticate again.
    let pool = Arc::new(
        Pool::builder(gss_config(&pg, ""))
            .min_size(2)
            .max_size(4)
            .build()
            .await
            .unwrap(),
    );
    pg.psql("CREATE TABLE kerberos_log (n int); GRANT SELECT, INSERT ON kerberos_log TO gss_user")
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..25i32 {
                let n = i * 100 + j;
                if i % 2 == 0 {
                    let mut c = pool.acquire().await.unwrap();
                    let mut tx = c.transaction().await.unwrap();
                    tx.execute("INSERT INTO kerberos_log VALUES ($1)", &[&n])
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                } else {
                    let got: i32 = pool
                        .query_one("SELECT $1::int", &[&n])
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(got, n);
                }
            }
        }));
    }
    wirepool_testkit::join_all_within(tasks).await;
    let rows: i64 = pool
        .query_one("SELECT count(*) FROM kerberos_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 50);

    pg.restart().unwrap();
    let t = std::time::Instant::now();
    loop {
        match pool.query_one("SELECT current_user::text", &[]).await {
            Ok(row) => {
                assert_eq!(row.get::<_, String>(0), "gss_user");
                break;
            }
            Err(e) => assert!(
                t.elapsed() < Duration::from_secs(60),
                "the pool did not come back after the restart: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut c = pool.acquire().await.unwrap();
    let authenticated: bool = c
        .query_one(
            "SELECT gss_authenticated FROM pg_stat_gssapi WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(authenticated);
    drop(c);
    pool.close().await;
}
