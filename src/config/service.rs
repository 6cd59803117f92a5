//! libpq's connection service file: `service=name` (or `PGSERVICE`) takes the settings of
//! the section `[name]` of `servicefile` (libpq 18's keyword), else `PGSERVICEFILE`, else
//! `~/.pg_service.conf`, or, when that file
//! has no such section, of `PGSYSCONFDIR/pg_service.conf`. A section's lines are
//! `keyword=value`, any keyword of a connection string but `service`; they fill only what
//! the string left out, and the environment fills the rest.

use std::path::Path;

use super::*;

/// Applies the service's settings to `p`, if a service is named (`service` in `p`, else
/// `PGSERVICE`).
///
/// # Errors
///
/// A named service found in no file, a file named by `PGSERVICEFILE` that cannot be read,
/// or a malformed line of the service's section (naming the file and the line).
pub(super) fn apply_service(p: &mut Partial, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    let env_nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    let name = match p.service.clone().filter(|s| !s.is_empty()) {
        Some(s) => s,
        None => match env_nonempty("PGSERVICE") {
            Some(s) => s,
            None => return Ok(()),
        },
    };
    let mut searched = Vec::new();
    // The user's file: `servicefile` or PGSERVICEFILE, which must exist, else
    // ~/.pg_service.conf, if it does.
    let named_file = p.servicefile.clone().filter(|f| !f.is_empty());
    let user_file = match named_file.or_else(|| env_nonempty("PGSERVICEFILE")) {
        Some(f) => Some((PathBuf::from(f), true)),
        None => match env_nonempty("HOME") {
            Some(h) => Some((Path::new(&h).join(".pg_service.conf"), false)),
            None => {
                searched.push("no ~/.pg_service.conf (HOME is not set)".to_string());
                None
            }
        },
    };
    if let Some((path, named)) = user_file {
        match std::fs::read(&path) {
            Ok(text) => {
                if let Some(lines) = section(&path, &text, &name)? {
                    return apply_lines(p, &path, lines);
                }
                searched.push(format!("`{}`", path.display()));
            }
            Err(e) if !named && e.kind() == std::io::ErrorKind::NotFound => {
                searched.push(format!("`{}` (absent)", path.display()));
            }
            Err(e) => {
                return Err(Error::config(format!(
                    "service file `{}`{} cannot be read: {e}",
                    path.display(),
                    if named {
                        " (servicefile or PGSERVICEFILE)"
                    } else {
                        ""
                    }
                )))
            }
        }
    }
    // The system's file, read only when the user's has no such service.
    match env_nonempty("PGSYSCONFDIR") {
        Some(dir) => {
            let path = Path::new(&dir).join("pg_service.conf");
            match std::fs::read(&path) {
                Ok(text) => {
                    if let Some(lines) = section(&path, &text, &name)? {
                        return apply_lines(p, &path, lines);
                    }
                    searched.push(format!("`{}`", path.display()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    searched.push(format!("`{}` (absent)", path.display()));
                }
                Err(e) => {
                    return Err(Error::config(format!(
                        "service file `{}` cannot be read: {e}",
                        path.display()
                    )))
                }
            }
        }
        None => searched.push("no system file (PGSYSCONFDIR is not set)".to_string()),
    }
    Err(Error::config(format!(
        "definition of service `{name}` not found (searched: {})",
        searched.join(", ")
    )))
}

/// The lines of section `[name]` of a service file, with their line numbers, or `None`
/// when the file has no such section. As libpq: leading and trailing white space is
/// ignored, so are empty lines and lines starting with `#`; a section ends at the next
/// line starting with `[`; the first `[name]` of the file is the one read.
fn section<'a>(path: &Path, text: &'a [u8], name: &str) -> Result<Option<Vec<(usize, &'a str)>>> {
    let mut found: Option<Vec<(usize, &str)>> = None;
    for (n, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = raw.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        if line[0] == b'[' {
            if found.is_some() {
                break;
            }
            let rest = &line[1..];
            if rest.starts_with(name.as_bytes()) && rest.get(name.len()) == Some(&b']') {
                found = Some(Vec::new());
            }
        } else if let Some(lines) = &mut found {
            let line = std::str::from_utf8(line).map_err(|_| {
                Error::config(format!(
                    "service file `{}`, line {}: not valid UTF-8",
                    path.display(),
                    n + 1
                ))
            })?;
            lines.push((n + 1, line));
        }
    }
    Ok(found)
}

/// Applies a section's `keyword=value` lines to `p`, each only when the keyword is not set
/// already: by the connection string, or by an earlier line.
fn apply_lines(p: &mut Partial, path: &Path, lines: Vec<(usize, &str)>) -> Result<()> {
    let at = |n: usize| format!("service file `{}`, line {n}", path.display());
    for (n, line) in lines {
        if line.starts_with("ldap") {
            return Err(Error::config(format!(
                "{}: LDAP lookups are not supported",
                at(n)
            )));
        }
        // The line is not echoed: it may be a password missing its `password=`.
        let (key, value) = line.split_once('=').ok_or_else(|| {
            Error::config(format!("{}: syntax error (expected keyword=value)", at(n)))
        })?;
        if key == "service" {
            return Err(Error::config(format!(
                "{}: nested service specifications are not supported",
                at(n)
            )));
        }
        if key != key.trim() && KEYWORDS.contains(&key.trim()) {
            return Err(Error::config(format!(
                "{}: white space around `=` after `{}` (write {}=value, as libpq requires)",
                at(n),
                key.trim(),
                key.trim()
            )));
        }
        if p.set.iter().any(|k| k.as_str() == key) {
            continue;
        }
        apply(p, key, value.to_string()).map_err(|e| {
            let e = e.to_string();
            let detail = e.strip_prefix("invalid configuration: ").unwrap_or(&e);
            Error::config(format!("{}: {detail}", at(n)))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::TempDir;

    /// Parses `s` with exactly the variables `vars` set (and `USER`).
    fn parse(s: &str, vars: &[(&str, &str)]) -> Result<ConnectConfig> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("USER".to_string(), "osuser".to_string())])
            .collect();
        ConnectConfig::parse_with_env(s, move |k| {
            vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    const FILE: &str = "\
# a comment
[other]
host=elsewhere

  [app]  
host=svc-host
port=6000
  # an indented comment
user=svc-user
dbname=svc-db
application_name=svc-app
dbname=second-db-line-ignored
sslmode=disable
[later]
host=later-host
";

    #[test]
    fn precedence_is_string_then_service_then_environment_then_default() {
        let dir = TempDir::new("service-precedence");
        let f = dir.write("services", FILE, 0o644);
        let f = f.to_str().unwrap();
        let env = [
            ("PGSERVICEFILE", f),
            ("PGHOST", "env-host"),
            ("PGUSER", "env-user"),
            ("PGAPPNAME", "env-app"),
            ("PGCONNECT_TIMEOUT", "7"),
        ];
        for s in ["service=app dbname=given", "postgres:///given?service=app"] {
            let c = parse(s, &env).unwrap();
            assert_eq!(c.dbname(), "given", "{s}: the string wins");
            assert_eq!(c.hosts(), &[Host::Tcp("svc-host".into())], "{s}");
            assert_eq!(c.port(), 6000, "{s}");
            assert_eq!(c.user(), "svc-user", "{s}: the service beats PGUSER");
            assert_eq!(c.application_name(), Some("svc-app"), "{s}");
            assert_eq!(c.ssl_mode(), SslMode::Disable, "{s}");
            assert_eq!(
                c.connect_timeout(),
                Some(Duration::from_secs(7)),
                "{s}: env"
            );
            assert_eq!(c.tcp().keepalives_idle, None, "{s}: default");
        }
        // The first of two lines for a keyword is the one used, as in libpq.
        let c = parse("service=app", &env).unwrap();
        assert_eq!(c.dbname(), "svc-db");
        // PGSERVICE names the service when the string does not; the string's wins.
        let mut with_env = env.to_vec();
        with_env.push(("PGSERVICE", "later"));
        let c = parse("", &with_env).unwrap();
        assert_eq!(c.hosts(), &[Host::Tcp("later-host".into())]);
        assert_eq!(c.user(), "env-user");
        let c = parse("service=app", &with_env).unwrap();
        assert_eq!(c.hosts(), &[Host::Tcp("svc-host".into())]);
        // An explicit host list keeps its own ports; the service's port fills in.
        let c = parse("host=a,b service=app", &env).unwrap();
        assert_eq!(c.ports(), &[6000, 6000]);
    }

    #[test]
    fn the_users_file_is_searched_first_then_the_systems() {
        let dir = TempDir::new("service-files");
        let home = dir.0.join("home");
        let sys = dir.0.join("etc");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&sys).unwrap();
        dir.write("home/.pg_service.conf", "[both]\nhost=from-home\n", 0o644);
        dir.write(
            "etc/pg_service.conf",
            "[both]\nhost=from-sys\nport=7000\n[sys]\nhost=sys-only\n",
            0o644,
        );
        let (home, sys) = (home.to_str().unwrap(), sys.to_str().unwrap());
        let env = [("HOME", home), ("PGSYSCONFDIR", sys)];
        let c = parse("service=both", &env).unwrap();
        // Found in the user's file: the system's is not read at all.
        assert_eq!(c.hosts(), &[Host::Tcp("from-home".into())]);
        assert_eq!(c.port(), 5432);
        let c = parse("service=sys", &env).unwrap();
        assert_eq!(c.hosts(), &[Host::Tcp("sys-only".into())]);
        // PGSERVICEFILE replaces ~/.pg_service.conf.
        let named = dir.write("named", "[both]\nhost=from-named\n", 0o644);
        let env3 = [
            ("HOME", home),
            ("PGSYSCONFDIR", sys),
            ("PGSERVICEFILE", named.to_str().unwrap()),
        ];
        let c = parse("service=both", &env3).unwrap();
        assert_eq!(c.hosts(), &[Host::Tcp("from-named".into())]);
        // libpq 18's `servicefile` keyword beats PGSERVICEFILE.
        let kw = dir.write("keyword", "[both]\nhost=from-keyword\n", 0o644);
        let s = format!("service=both servicefile={}", kw.display());
        let c = parse(&s, &env3).unwrap();
        assert_eq!(c.hosts(), &[Host::Tcp("from-keyword".into())]);
    }

    #[test]
    fn a_missing_service_or_file_is_an_error_naming_them() {
        let dir = TempDir::new("service-missing");
        let f = dir.write("services", "[app]\nhost=h\n", 0o644);
        let home = dir.0.to_str().unwrap();
        let e = parse(
            "service=nope",
            &[
                ("PGSERVICEFILE", f.to_str().unwrap()),
                ("PGSYSCONFDIR", home),
            ],
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(e.is_config(), "{msg}");
        assert!(msg.contains("`nope`"), "{msg}");
        assert!(msg.contains(f.to_str().unwrap()), "{msg}");
        assert!(msg.contains("pg_service.conf` (absent)"), "{msg}");
        let e = parse("service=nope", &[("HOME", home)]).unwrap_err();
        assert!(e.to_string().contains(".pg_service.conf` (absent)"), "{e}");
        assert!(e.to_string().contains("PGSYSCONFDIR is not set"), "{e}");
        // A file named by PGSERVICEFILE must exist.
        let absent = dir.0.join("absent");
        let e = parse(
            "service=app",
            &[("PGSERVICEFILE", absent.to_str().unwrap())],
        )
        .unwrap_err();
        assert!(
            e.is_config() && e.to_string().contains("PGSERVICEFILE"),
            "{e}"
        );
        // No service named: no file is read, none is needed.
        parse("host=h", &[("PGSERVICEFILE", absent.to_str().unwrap())]).unwrap();
    }

    #[test]
    fn bad_lines_name_the_file_and_line_without_echoing_values() {
        let dir = TempDir::new("service-syntax");
        for (text, line, says) in [
            ("[s]\nservice=other\n", 2, "nested service"),
            ("[s]\n\nhost=h\njust-a-secret\n", 4, "syntax error"),
            ("[s]\nhost = h\n", 2, "white space around `=`"),
            ("[s]\nbogus=1\n", 2, "invalid connection option `bogus`"),
            ("# c\n[s]\nport=99999\n", 3, "invalid port"),
            ("[s]\nldap://ldap.example/dc=x?y?sub?(cn=s)\n", 2, "LDAP"),
        ] {
            let f = dir.write("services", text, 0o644);
            let e = parse("service=s", &[("PGSERVICEFILE", f.to_str().unwrap())]).unwrap_err();
            let msg = e.to_string();
            assert!(e.is_config(), "{msg}");
            assert!(
                msg.contains(&format!("service file `{}`, line {line}", f.display())),
                "{msg}"
            );
            assert!(msg.contains(says), "{msg}");
            assert!(!msg.contains("secret"), "{msg}");
        }
        // Errors in other sections are not looked at, as in libpq.
        let f = dir.write("services", "[t]\nbogus\n[s]\nhost=h\n", 0o644);
        parse("service=s", &[("PGSERVICEFILE", f.to_str().unwrap())]).unwrap();
    }

    #[test]
    fn every_keyword_of_a_string_works_in_a_service_with_passfile_among_them() {
        let dir = TempDir::new("service-keywords");
        let f = dir.write(
            "services",
            "[s]\npassword=from-service\npassfile=/svc/pgpass\nhostaddr=127.0.0.1\n\
             target_session_attrs=read-write\nkeepalives_idle=9\n",
            0o644,
        );
        let env = [
            ("PGSERVICEFILE", f.to_str().unwrap()),
            ("PGPASSFILE", "/env/pgpass"),
        ];
        let c = parse("host=db service=s", &env).unwrap();
        assert_eq!(c.password(), Some("from-service"));
        assert_eq!(c.passfile(), Some(Path::new("/svc/pgpass")));
        assert_eq!(c.hosts(), &[Host::Tcp("db".into())]);
        assert_eq!(c.hostaddr(0), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(c.target_session_attrs(), TargetSessionAttrs::ReadWrite);
        assert_eq!(c.tcp().keepalives_idle, Some(Duration::from_secs(9)));
        let c = parse("service=s passfile=/given", &env).unwrap();
        assert_eq!(c.passfile(), Some(Path::new("/given")));
        assert_eq!(c.hosts(), &[Host::Tcp("127.0.0.1".into())]);
    }
}
