//! Parsing connection settings: every form, the environment, libpq's rules.

use super::*;

/// A private directory for one test's files, removed when dropped.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("wirepool-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    /// Writes `text` to `name` in the directory with permissions `mode`.
    pub(super) fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(s: &str) -> Result<ConnectConfig> {
    ConnectConfig::parse_with_env(s, |k| (k == "USER").then(|| "osuser".to_string()))
}

#[test]
fn keepalive_settings_out_of_the_sockets_range_are_refused_when_parsed() {
    for (setting, bad, good) in [
        ("keepalives_idle", "40000", "32767"),
        ("keepalives_interval", "40000", "60"),
        ("keepalives_count", "128", "127"),
        ("tcp_user_timeout", "4294967295", "30000"),
    ] {
        let e = parse(&format!("host=127.0.0.1 {setting}={bad}")).unwrap_err();
        assert!(e.is_config() && e.to_string().contains(setting), "{e}");
        parse(&format!("host=127.0.0.1 {setting}={good}")).unwrap();
    }
}

#[test]
fn url_with_everything() {
    let c = parse(
        "postgresql://us%40er:p%3Ass@db.example:6543/my%2Fdb?application_name=a%20b&connect_timeout=3&sslmode=disable",
    )
    .unwrap();
    assert_eq!(c.user(), "us@er");
    assert_eq!(c.password(), Some("p:ss"));
    assert_eq!(c.hosts(), &[Host::Tcp("db.example".into())]);
    assert_eq!(c.port(), 6543);
    assert_eq!(c.dbname(), "my/db");
    assert_eq!(c.application_name(), Some("a b"));
    assert_eq!(c.connect_timeout(), Some(Duration::from_secs(3)));
    assert_eq!(c.ssl_mode(), SslMode::Disable);
}

#[test]
fn ipv6_and_unix_hosts() {
    let c = parse("postgres://u@[::1]:5433/d").unwrap();
    assert_eq!(c.hosts(), &[Host::Tcp("::1".into())]);
    assert_eq!(c.port(), 5433);
    assert_eq!(c.to_string(), "postgres://u@[::1]:5433/d");
    let c = parse("postgres://u@%2Fvar%2Frun%2Fpostgresql/d").unwrap();
    assert_eq!(c.hosts(), &[Host::Unix("/var/run/postgresql".into())]);
    let c = parse("postgres:///d?host=/tmp/sock&user=x").unwrap();
    assert_eq!(c.hosts(), &[Host::Unix("/tmp/sock".into())]);
    assert_eq!(c.user(), "x");
}

#[test]
fn key_value_with_quotes() {
    let c =
        parse(r"host=h port=1 user=u password='a \'b\' c' dbname = d options='-c x=1'").unwrap();
    assert_eq!(c.password(), Some("a 'b' c"));
    assert_eq!(c.dbname(), "d");
    assert_eq!(c.options(), Some("-c x=1"));
    assert_eq!(c.port(), 1);
}

#[test]
fn environment_fills_gaps_only() {
    let env = |k: &str| match k {
        "PGHOST" => Some("envhost".to_string()),
        "PGPORT" => Some("7000".to_string()),
        "PGUSER" => Some("envuser".to_string()),
        "PGPASSWORD" => Some("envpw".to_string()),
        "PGDATABASE" => Some("envdb".to_string()),
        "PGAPPNAME" => Some("envapp".to_string()),
        _ => None,
    };
    let c = ConnectConfig::parse_with_env("postgres://given@/", env).unwrap();
    assert_eq!(c.user(), "given");
    assert_eq!(c.hosts(), &[Host::Tcp("envhost".into())]);
    assert_eq!(c.port(), 7000);
    assert_eq!(c.password(), Some("envpw"));
    assert_eq!(c.dbname(), "envdb");
    assert_eq!(c.application_name(), Some("envapp"));
    let bad = ConnectConfig::parse_with_env("", |k| (k == "PGPORT").then(|| "x".into()));
    let err = bad.unwrap_err();
    assert!(err.is_config());
    assert!(err.to_string().contains("PGPORT"), "{err}");
}

#[test]
fn defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.user(), "osuser");
    assert_eq!(c.dbname(), "osuser");
    assert_eq!(c.port(), 5432);
    assert_eq!(c.connect_timeout(), Some(Duration::from_secs(10)));
    assert!(ConnectConfig::parse_with_env("", no_env)
        .unwrap_err()
        .is_config());
}

#[test]
fn malformed_inputs_are_config_errors() {
    for bad in [
        "postgres://u@h:99999/d",
        "postgres://u@h:abc/d",
        "postgres://u@[::1/d",
        "postgres://u:%zz@h/d",
        "postgres://u@h/d?nosuchoption=1",
        "postgres://u@h/d?sslmode=sometimes",
        "postgres://u@h/d?channel_binding=maybe",
        "postgres://u@h/d?sslnegotiation=fast",
        "postgres://u@h/d?sslmode=prefer&sslnegotiation=direct",
        "postgres://u@h/d?sslmode=disable&channel_binding=require",
        "host=h hostaddr=not-an-ip",
        "host=h,i hostaddr=127.0.0.1",
        "postgres://u@h/d?connect_timeout=soon",
        "postgres://u@h/d?novalue",
        "mysql://u@h/d",
        "host=h port",
        "host=h password='unterminated",
        "bogus=1",
        "client_encoding=LATIN1",
        "postgres://u@h:5432:5433/d",
        "postgres://u@::1/d",
        "postgres://u@::1:5432/d",
        "host=h keepalives=banana",
        "host=h keepalives_idle=-1",
        "host=h keepalives_interval=1.5",
        "host=h keepalives_count=x",
        "host=h tcp_user_timeout=soon",
    ] {
        let err = parse(bad).expect_err(bad);
        assert!(err.is_config(), "{bad}: {err:?}");
    }
}

#[test]
fn ipv6_without_brackets_says_how_to_write_it() {
    let e = parse("postgres://u@::1/d").unwrap_err().to_string();
    assert!(e.contains("[::1]"), "{e}");
    let e = parse("postgres://u@h:5432:5433/d").unwrap_err().to_string();
    assert!(e.contains("more than one `:`"), "{e}");
    // key=value strings take IPv6 addresses as they are, as libpq does.
    let c = parse("host=::1 port=5433").unwrap();
    assert_eq!(c.hosts(), &[Host::Tcp("::1".into())]);
    assert_eq!(c.to_string(), "postgres://osuser@[::1]:5433/osuser");
}

#[test]
fn tcp_keepalive_settings() {
    let c = parse("host=h").unwrap();
    assert_eq!(c.tcp(), &TcpSettings::default());
    assert!(c.tcp().keepalives, "on by default, as in libpq");
    let c = parse(
        "postgres://u@h/d?keepalives=1&keepalives_idle=7&keepalives_interval=3&keepalives_count=4&tcp_user_timeout=2500",
    )
    .unwrap();
    let t = c.tcp();
    assert!(t.keepalives);
    assert_eq!(t.keepalives_idle, Some(Duration::from_secs(7)));
    assert_eq!(t.keepalives_interval, Some(Duration::from_secs(3)));
    assert_eq!(t.keepalives_count, Some(4));
    assert_eq!(t.tcp_user_timeout, Some(Duration::from_millis(2500)));
    assert!(!parse("host=h keepalives=0").unwrap().tcp().keepalives);
    assert_eq!(
        parse("host=h keepalives_idle=0")
            .unwrap()
            .tcp()
            .keepalives_idle,
        None,
        "0 is the system's default"
    );
    for (input, name) in [
        ("host=h keepalives=banana", "keepalives"),
        ("host=h keepalives_idle=x", "keepalives_idle"),
        ("host=h keepalives_interval=-2", "keepalives_interval"),
        ("host=h keepalives_count=many", "keepalives_count"),
        ("host=h tcp_user_timeout=1s", "tcp_user_timeout"),
    ] {
        let e = parse(input).unwrap_err().to_string();
        assert!(e.contains(name), "{input}: {e}");
    }
}

#[test]
fn unencoded_specials_in_passwords() {
    // `@`, `?`, `:` and `#` are read as part of the password.
    for pw in ["p@ss", "p?ss", "p:ss", "p#ss", "a@b?c:d"] {
        let c = parse(&format!("postgres://u:{pw}@h:5433/d?sslmode=disable")).unwrap();
        assert_eq!(c.password(), Some(pw));
        assert_eq!(c.hosts(), &[Host::Tcp("h".into())]);
        assert_eq!((c.port(), c.dbname()), (5433, "d"));
    }
    // `/` cannot be told apart from the path: refused, without echoing any of it.
    for url in [
        "postgres://u:qx7/zk9@h/d",
        "postgres://u:qx7/zk9?vw3@h:5432/d",
        "postgres://u:qx7/zk9@h",
        "postgres://u:qx7@zk9/vw3@h/d",
    ] {
        let e = parse(url).unwrap_err().to_string();
        assert!(e.contains("percent-encode"), "{url}: {e}");
        for part in ["qx7", "zk9", "vw3"] {
            assert!(!e.contains(part), "{url}: {e}");
        }
    }
    // A forgotten `@`: the would-be port is the password, and is not echoed.
    let e = parse("postgres://u:hunter2/d").unwrap_err().to_string();
    assert!(!e.contains("hunter2"), "{e}");
    // An unquoted password with a space, in a key=value string.
    for kv in ["host=h password=hun ter2", "host=h password=hun ter2=x"] {
        let e = parse(kv).unwrap_err().to_string();
        assert!(!e.contains("ter2"), "{kv}: {e}");
        assert!(e.contains("quote"), "{kv}: {e}");
    }
}

#[test]
fn tls_settings_as_libpq_takes_them() {
    let c = parse("postgres://u@h/d").unwrap();
    assert_eq!(c.tls(), &TlsSettings::default());
    assert_eq!(c.ssl_mode(), SslMode::Prefer);
    assert_eq!(c.tls().channel_binding, ChannelBinding::Prefer);
    let c = parse(
        "host=h sslmode=verify-full sslrootcert=system sslcert=/c.pem sslkey=/k.pem \
         sslnegotiation=direct channel_binding=require",
    )
    .unwrap();
    let t = c.tls();
    assert_eq!(t.mode, SslMode::VerifyFull);
    assert_eq!(t.root_cert, Some(RootCert::System));
    assert_eq!(
        t.client_cert.as_deref(),
        Some(std::path::Path::new("/c.pem"))
    );
    assert_eq!(t.negotiation, SslNegotiation::Direct);
    assert_eq!(t.channel_binding, ChannelBinding::Require);
    // The environment fills what the string leaves out.
    let env = |k: &str| match k {
        "USER" => Some("osuser".to_string()),
        "PGSSLMODE" => Some("verify-ca".to_string()),
        "PGSSLROOTCERT" => Some("/ca.pem".to_string()),
        "PGCHANNELBINDING" => Some("disable".to_string()),
        _ => None,
    };
    let c = ConnectConfig::parse_with_env("host=h", env).unwrap();
    assert_eq!(c.ssl_mode(), SslMode::VerifyCa);
    assert_eq!(c.tls().root_cert, Some(RootCert::File("/ca.pem".into())));
    assert_eq!(c.tls().channel_binding, ChannelBinding::Disable);
    let bad = ConnectConfig::parse_with_env("host=h user=u", |k| {
        (k == "PGSSLMODE").then(|| "strict".to_string())
    });
    assert!(bad.unwrap_err().to_string().contains("PGSSLMODE"));
    // hostaddr: connect to the address, the name is for the certificate.
    let c = parse("host=db.example hostaddr=127.0.0.1").unwrap();
    assert_eq!(c.hosts(), &[Host::Tcp("db.example".into())]);
    assert_eq!(c.hostaddr(0), Some("127.0.0.1".parse().unwrap()));
    let c = parse("hostaddr=::1").unwrap();
    assert_eq!(c.hosts(), &[Host::Tcp("::1".into())]);
    // Certificate paths are not printed.
    let c = parse("host=h sslrootcert=/secret/ca.pem sslkey=/secret/k.pem").unwrap();
    assert!(!format!("{c:?} {c}").contains("/secret"));
}

#[test]
fn host_lists_as_libpq_takes_them() {
    let c = parse("postgres://u@h1:5433,h2:5434,h3/d?target_session_attrs=read-write&load_balance_hosts=random").unwrap();
    assert_eq!(
        c.hosts(),
        &[
            Host::Tcp("h1".into()),
            Host::Tcp("h2".into()),
            Host::Tcp("h3".into())
        ]
    );
    assert_eq!(c.ports(), &[5433, 5434, 5432]);
    assert_eq!(c.target_session_attrs(), TargetSessionAttrs::ReadWrite);
    assert_eq!(c.load_balance_hosts(), LoadBalanceHosts::Random);
    assert_eq!(c.to_string(), "postgres://u@h1:5433,h2:5434,h3:5432/d");
    // One port applies to every host.
    let c = parse("host=a,b,c port=6000").unwrap();
    assert_eq!(c.ports(), &[6000, 6000, 6000]);
    let c = parse("host=a,b port=6000,6001 target_session_attrs=prefer-standby").unwrap();
    assert_eq!(c.ports(), &[6000, 6001]);
    assert_eq!(c.target_session_attrs(), TargetSessionAttrs::PreferStandby);
    let c = parse("postgres://u@[::1]:7000,[::1]:7001/d").unwrap();
    assert_eq!(c.ports(), &[7000, 7001]);
    // From the environment, lists too.
    let env = |k: &str| match k {
        "USER" => Some("osuser".to_string()),
        "PGHOST" => Some("p,s".to_string()),
        "PGPORT" => Some("1,2".to_string()),
        "PGTARGETSESSIONATTRS" => Some("standby".to_string()),
        _ => None,
    };
    let c = ConnectConfig::parse_with_env("", env).unwrap();
    assert_eq!(c.ports(), &[1, 2]);
    assert_eq!(c.target_session_attrs(), TargetSessionAttrs::Standby);
    let one = c.for_host(1);
    assert_eq!(
        (one.hosts(), one.ports()),
        (&[Host::Tcp("s".into())][..], &[2][..])
    );
    assert_eq!(one.target_session_attrs(), TargetSessionAttrs::Any);
    // Bad input names the parameter.
    for (input, name) in [
        ("host=a,,b", "host"),
        ("postgres://u@a,,b/d", "host"),
        ("postgres://u@a,/d", "host"),
        ("host=a,b,c port=1,2", "port"),
        ("postgres://u@a:1,b:2,c:3/d?port=1,2", "port"),
        (
            "host=a target_session_attrs=primaryish",
            "target_session_attrs",
        ),
        ("host=a load_balance_hosts=sometimes", "load_balance_hosts"),
    ] {
        let e = parse(input).unwrap_err().to_string();
        assert!(e.contains(name), "{input}: {e}");
    }
}

#[test]
fn password_never_printed() {
    let c = parse("postgres://u:hunter2@h/d").unwrap();
    let printed = format!("{c} {c:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("<redacted>"));
}

#[test]
fn protocol_versions_as_libpq_18() {
    let c = parse("host=h").unwrap();
    assert_eq!(c.min_protocol_version(), ProtocolVersion::V3_0);
    assert_eq!(c.max_protocol_version(), ProtocolVersion::V3_0);
    // A minimum above 3.0 raises the default maximum to the newest.
    let c = parse("host=h min_protocol_version=3.2").unwrap();
    assert_eq!(c.max_protocol_version(), ProtocolVersion::V3_2);
    let c = parse("postgres://u@h/d?max_protocol_version=latest").unwrap();
    assert_eq!(c.max_protocol_version(), ProtocolVersion::LATEST);
    let e = parse("host=h min_protocol_version=3.2 max_protocol_version=3.0").unwrap_err();
    assert!(e.to_string().contains("greater than"), "{e}");
    let e = parse("host=h max_protocol_version=3.1").unwrap_err();
    assert!(e.to_string().contains("max_protocol_version `3.1`"), "{e}");
    let env = |k: &str| match k {
        "USER" => Some("osuser".to_string()),
        "PGMAXPROTOCOLVERSION" => Some("3.2".to_string()),
        "PGREQUIREAUTH" => Some("!md5".to_string()),
        _ => None,
    };
    let c = ConnectConfig::parse_with_env("host=h", env).unwrap();
    assert_eq!(c.max_protocol_version(), ProtocolVersion::V3_2);
    assert!(!c.require_auth().allows_md5() && c.require_auth().allows_scram());
    // The string beats the environment.
    let c = ConnectConfig::parse_with_env("host=h require_auth=md5 max_protocol_version=3.0", env)
        .unwrap();
    assert!(c.require_auth().allows_md5() && !c.require_auth().allows_scram());
    assert_eq!(c.max_protocol_version(), ProtocolVersion::V3_0);
    let e = ConnectConfig::parse_with_env("host=h user=u", |k| {
        (k == "PGREQUIREAUTH").then(|| "md5,!scram-sha-256".to_string())
    })
    .unwrap_err();
    assert!(e.to_string().contains("PGREQUIREAUTH"), "{e}");
}

/// `krbsrvname` and `gssencmode`, as libpq: keyword, URL and environment, the string
/// first; `gssencmode=require` is refused, since wirepool does not encrypt with GSSAPI.
#[test]
fn kerberos_settings() {
    let c = parse("host=h").unwrap();
    assert_eq!(c.krbsrvname(), "postgres");
    assert_eq!(c.gss_enc_mode(), GssEncMode::Disable);
    let c = parse("host=h krbsrvname=pgsvc gssencmode=prefer").unwrap();
    assert_eq!(c.krbsrvname(), "pgsvc");
    assert_eq!(c.gss_enc_mode(), GssEncMode::Prefer);
    let c = parse("postgres://u@h/d?krbsrvname=viaurl&gssencmode=disable").unwrap();
    assert_eq!(c.krbsrvname(), "viaurl");
    let env = |k: &str| match k {
        "USER" => Some("osuser".to_string()),
        "PGKRBSRVNAME" => Some("fromenv".to_string()),
        "PGGSSENCMODE" => Some("prefer".to_string()),
        _ => None,
    };
    let c = ConnectConfig::parse_with_env("host=h", env).unwrap();
    assert_eq!(c.krbsrvname(), "fromenv");
    assert_eq!(c.gss_enc_mode(), GssEncMode::Prefer);
    let c =
        ConnectConfig::parse_with_env("host=h krbsrvname=given gssencmode=disable", env).unwrap();
    assert_eq!(c.krbsrvname(), "given");
    assert_eq!(c.gss_enc_mode(), GssEncMode::Disable);
    for bad in ["host=h gssencmode=require", "host=h gssencmode=always"] {
        let e = parse(bad).unwrap_err();
        assert!(e.to_string().contains("gssencmode"), "{bad}: {e}");
    }
    let e = ConnectConfig::parse_with_env("host=h user=u", |k| {
        (k == "PGGSSENCMODE").then(|| "require".to_string())
    })
    .unwrap_err();
    assert!(e.to_string().contains("gssencmode=require"), "{e}");
    let e = parse("postgres://u@h/d?krbsrvname=a%00b").unwrap_err();
    assert!(e.to_string().contains("krbsrvname"), "{e}");
}

#[test]
fn the_password_file_is_resolved_when_parsed_and_never_printed() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .chain(&[("USER", "u")])
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let home: &'static [(&str, &str)] = &[("HOME", "/home/u")];
    let both: &'static [(&str, &str)] = &[("HOME", "/home/u"), ("PGPASSFILE", "/env/pgpass")];
    for (s, vars, want) in [
        ("host=h", &[][..], None),
        ("host=h", home, Some("/home/u/.pgpass")),
        ("host=h", both, Some("/env/pgpass")),
        ("host=h passfile=/given", both, Some("/given")),
        ("postgres://h/d?passfile=%2Fgiven", both, Some("/given")),
        // Empty is libpq's default file, not PGPASSFILE.
        ("host=h passfile=''", both, Some("/home/u/.pgpass")),
    ] {
        let c = ConnectConfig::parse_with_env(s, env(vars)).unwrap();
        assert_eq!(c.passfile(), want.map(std::path::Path::new), "{s} {vars:?}");
        let printed = format!("{c} {c:?}");
        assert!(
            !printed.contains("pgpass") && !printed.contains("given"),
            "{printed}"
        );
    }
    let c = parse("host=h").unwrap().with_passfile(None::<PathBuf>);
    assert_eq!(c.passfile(), None);
}

/// Every environment variable the settings read is named in this module's documentation
/// and in the operator's guide.
#[test]
fn the_docs_name_each_environment_variable_read() {
    let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
    for (s, user) in [("", true), ("", false), ("service=s", true)] {
        let _ = ConnectConfig::parse_with_env(s, |k| {
            read.borrow_mut().insert(k.to_string());
            (user && k == "USER").then(|| "u".to_string())
        });
    }
    let read = read.into_inner();
    for var in [
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGSYSCONFDIR",
        "PGPASSFILE",
        "HOME",
        "LOGNAME",
    ] {
        assert!(read.contains(var), "{var} is read: {read:?}");
    }
    let module_docs: String = include_str!("mod.rs")
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect();
    let guide = include_str!("../../docs/operators-guide.md");
    for var in &read {
        let named = format!("`{var}`");
        assert!(
            module_docs.contains(&named),
            "{var} missing from the config module's docs"
        );
        assert!(
            guide.contains(&named),
            "{var} missing from docs/operators-guide.md"
        );
    }
}
