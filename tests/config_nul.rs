//! A NUL byte in a setting that goes to the server as a C string (user, database, password,
//! application_name, options) is refused as a configuration error naming the setting, never
//! its value, and before any socket is opened: whether it came from a URL (`%00`), a
//! key=value string, the environment or a setter, and whatever the server's authentication
//! method would have been.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use wirepool::{ConnectConfig, Connection, ErrorKind, Pool};

/// The secret part of each value: it must never appear in an error.
const SECRET: &str = "s3cr3t";

fn assert_refused(e: &wirepool::Error, field: &str) {
    assert_eq!(e.kind(), ErrorKind::Config, "{e:?}");
    let shown = format!("{e} {e:?} {}", wirepool::error::chain(e));
    assert!(shown.contains(field), "names {field}: {shown}");
    assert!(shown.contains("NUL"), "{shown}");
    assert!(!shown.contains(SECRET), "shows the value: {shown}");
}

#[test]
fn percent_00_in_a_url_is_refused_for_each_field() {
    let cases = [
        ("user", format!("postgres://u%00{SECRET}@127.0.0.1/d")),
        ("password", format!("postgres://u:p%00{SECRET}@127.0.0.1/d")),
        ("dbname", format!("postgres://u@127.0.0.1/d%00{SECRET}")),
        (
            "application_name",
            format!("postgres://u@127.0.0.1/d?application_name=a%00{SECRET}"),
        ),
        (
            "options",
            format!("postgres://u@127.0.0.1/d?options=-c%20x%3D%00{SECRET}"),
        ),
    ];
    for (field, url) in cases {
        let e = ConnectConfig::parse_with_env(&url, |_| None)
            .expect_err(&format!("{field}: a URL with %00 must be refused"));
        assert_refused(&e, field);
    }
}

#[test]
fn nul_in_key_value_strings_and_the_environment_is_refused() {
    let e =
        ConnectConfig::parse_with_env(&format!("host=h user=u password='a\0{SECRET}'"), |_| None)
            .unwrap_err();
    assert_refused(&e, "password");
    let e =
        ConnectConfig::parse_with_env(&format!("host=h user='u\0{SECRET}'"), |_| None).unwrap_err();
    assert_refused(&e, "user");
    let env = |k: &str| match k {
        "PGPASSWORD" => Some(format!("a\0{SECRET}")),
        _ => None,
    };
    let e = ConnectConfig::parse_with_env("host=h user=u", env).unwrap_err();
    assert_refused(&e, "password");
    let env = |k: &str| match k {
        "PGAPPNAME" => Some(format!("a\0{SECRET}")),
        _ => None,
    };
    let e = ConnectConfig::parse_with_env("host=h user=u", env).unwrap_err();
    assert_refused(&e, "application_name");
}

/// A TCP listener that counts the connections it accepts (and answers nothing).
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(sock);
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn setters_with_nul_are_refused_before_any_socket_is_opened() {
    let (port, accepted) = counting_listener().await;
    let base: ConnectConfig = format!("postgres://u@127.0.0.1:{port}/d?connect_timeout=1")
        .parse()
        .unwrap();
    let bad = format!("x\0{SECRET}");
    let cases = [
        ("user", base.clone().with_user(bad.clone())),
        ("dbname", base.clone().with_dbname(bad.clone())),
        ("password", base.clone().with_password(Some(bad.clone()))),
        (
            "application_name",
            base.clone().with_application_name(bad.clone()),
        ),
    ];
    for (field, cfg) in cases {
        let e = Connection::connect(&cfg)
            .await
            .expect_err("a setting with a NUL byte must be refused");
        assert_refused(&e, field);
        let e = Pool::builder(cfg.clone())
            .min_size(1)
            .build()
            .await
            .expect_err("a pool with such a setting must not be built");
        assert_refused(&e, field);
    }
    // Whatever was accepted would have been counted by now (the attempts above would have
    // waited for their connect timeout had a socket been opened).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a connection was attempted"
    );
}
