//! libpq's password file (`passfile`, `PGPASSFILE`, else `~/.pgpass`): lines of
//! `hostname:port:database:username:password`, read when a connection to a host is opened
//! without a password, with libpq's rules for matching a line.

use std::path::Path;

use super::*;

/// The socket directories libpq's builds take by default (upstream's `/tmp`, and the one of
/// the Debian and Red Hat packages): a connection through one of them matches the
/// password file's `localhost`, as a connection without a host does in libpq.
const DEFAULT_SOCKET_DIRS: &[&str] = &["/tmp", "/var/run/postgresql", "/run/postgresql"];

impl ConnectConfig {
    /// The password for host `i` from the password file, read now: the first line that
    /// matches the host, port, database and user. `None` when there is no file, no such
    /// line, or the file is refused (not a plain file, or open to the group or others on
    /// Unix: a warning says so, without any of its contents).
    pub(crate) fn passfile_password(&self, i: usize) -> Option<String> {
        let path = self.passfile.as_deref()?;
        let host = match &self.hosts[i] {
            Host::Tcp(h) => h.clone(),
            Host::Unix(d) if DEFAULT_SOCKET_DIRS.iter().any(|s| Path::new(s) == d) => {
                "localhost".to_string()
            }
            Host::Unix(d) => d.to_string_lossy().into_owned(),
        };
        let port = self.ports[i].to_string();
        password_from_file(path, [&host, &port, &self.dbname, &self.user])
    }
}

/// libpq's `passwordFromFile`: the password of the first line of `path` matching `key`
/// (host, port, database, user).
fn password_from_file(path: &Path, key: [&str; 4]) -> Option<String> {
    if key[2].is_empty() || key[3].is_empty() {
        return None;
    }
    // An absent file is no error, as in libpq.
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        ignored(path, "is not a plain file");
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            ignored(
                path,
                "has group or world access; permissions should be u=rw (0600) or less",
            );
            return None;
        }
    }
    let text = std::fs::read(path).ok()?;
    let password = find_password(&text, key)?;
    match String::from_utf8(password) {
        Ok(p) => Some(p),
        Err(_) => {
            ignored(
                path,
                "has a matching line whose password is not valid UTF-8",
            );
            None
        }
    }
}

/// The warning for a password file that is not used (its path only, never its contents).
fn ignored(path: &Path, why: &str) {
    tracing::warn!(target: "wirepool::conn", "password file {} {why}; ignored", path.display());
}

/// The password of the first line of `text` whose four fields match `key`, de-escaped.
/// Lines starting with `#` are comments; a field `*` matches anything; `\` escapes the
/// next character (`\:`, `\\`); the password ends at an unescaped `:` or the line's end.
pub(super) fn find_password(text: &[u8], key: [&str; 4]) -> Option<Vec<u8>> {
    for line in text.split(|&b| b == b'\n') {
        // C strings: a NUL byte ends the line's text.
        let line = line.split(|&b| b == 0).next().unwrap_or_default();
        let mut end = line.len();
        while end > 0 && matches!(line[end - 1], b'\r' | b'\n') {
            end -= 1;
        }
        let line = &line[..end];
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let mut rest = Some(line);
        for token in key {
            rest = rest.and_then(|r| match_field(r, token.as_bytes()));
        }
        if let Some(rest) = rest {
            let mut password = Vec::with_capacity(rest.len());
            let mut i = 0;
            while i < rest.len() && rest[i] != b':' {
                if rest[i] == b'\\' && i + 1 < rest.len() {
                    i += 1;
                }
                password.push(rest[i]);
                i += 1;
            }
            return Some(password);
        }
    }
    None
}

/// libpq's `pwdfMatchesString`: when the line's next field matches `token`, the rest of the
/// line after that field's `:`.
fn match_field<'a>(line: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    if line.starts_with(b"*:") {
        return Some(&line[2..]);
    }
    let (mut i, mut t) = (0, 0);
    while i < line.len() {
        let escaped = line[i] == b'\\';
        if escaped {
            i += 1;
        }
        let c = line.get(i).copied();
        if c == Some(b':') && !escaped && t == token.len() {
            return Some(&line[i + 1..]);
        }
        if t == token.len() || c != Some(token[t]) {
            return None;
        }
        i += 1;
        t += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::TempDir;

    const KEY: [&str; 4] = ["db.example", "5432", "app", "alice"];

    fn find(text: &str, key: [&str; 4]) -> Option<String> {
        find_password(text.as_bytes(), key).map(|p| String::from_utf8(p).unwrap())
    }

    #[test]
    fn the_first_matching_line_wins() {
        let text = "other:5432:app:alice:no\n\
                    db.example:5432:app:alice:first\n\
                    db.example:5432:app:alice:second\n";
        assert_eq!(find(text, KEY).as_deref(), Some("first"));
        assert_eq!(find(text, ["db.example", "5433", "app", "alice"]), None);
        assert_eq!(find(text, ["db.example", "5432", "app", "bob"]), None);
        assert_eq!(find(text, ["db.example", "5432", "app2", "alice"]), None);
    }

    #[test]
    fn a_star_matches_any_value_of_its_field_only() {
        assert_eq!(find("*:*:*:*:any\n", KEY).as_deref(), Some("any"));
        assert_eq!(find("*:5432:*:alice:p", KEY).as_deref(), Some("p"));
        assert_eq!(find("*:5433:*:alice:p", KEY), None);
        // Only a field that is `*` alone: `db*` is no pattern, and `\*` is a star.
        assert_eq!(find("db*:*:*:*:p", KEY), None);
        assert_eq!(
            find(r"\*:*:*:*:p", ["*", "1", "d", "u"]).as_deref(),
            Some("p")
        );
        assert_eq!(find(r"\*:*:*:*:p", KEY), None);
    }

    #[test]
    fn escapes_in_fields_and_password() {
        let key = ["h", "5432", "my:db", r"dom\user"];
        assert_eq!(
            find(r"h:5432:my\:db:dom\\user:p", key).as_deref(),
            Some("p")
        );
        // An escaped `:` does not end the field: `my\:db` is not the database `my`.
        let my = ["h", "5432", "my", r"dom\user"];
        assert_eq!(find(r"h:5432:my\:db:dom\\user:p", my), None);
        // As in libpq, an unescaped `:` also matches a `:` of the value being matched.
        assert_eq!(find(r"h:5432:my:db:dom\\user:p", key).as_deref(), Some("p"));
        // The password is de-escaped and ends at the first unescaped `:`.
        assert_eq!(
            find(r"*:*:*:*:a\:b\\c:ignored", KEY).as_deref(),
            Some(r"a:b\c")
        );
        // A trailing backslash stays; an empty password is a password.
        assert_eq!(find(r"*:*:*:*:ab\", KEY).as_deref(), Some(r"ab\"));
        assert_eq!(find("*:*:*:*:", KEY).as_deref(), Some(""));
    }

    #[test]
    fn comments_blank_lines_short_lines_and_line_ends() {
        let text = "# db.example:5432:app:alice:commented\n\
                    \n\
                    db.example:5432:app:alice\n\
                    db.example:5432:app:alice:crlf\r\n";
        assert_eq!(find(text, KEY).as_deref(), Some("crlf"));
        // `#` starts a comment only at the start of a line.
        assert_eq!(
            find(" #:*:*:*:p", [" #", "1", "d", "u"]).as_deref(),
            Some("p")
        );
        assert_eq!(
            find("db.example:5432:app:alice:last", KEY).as_deref(),
            Some("last")
        );
    }

    fn config(url: &str, passfile: &Path) -> ConnectConfig {
        let file = passfile.to_str().unwrap().to_string();
        ConnectConfig::parse_with_env(url, move |k| (k == "PGPASSFILE").then(|| file.clone()))
            .unwrap()
    }

    #[test]
    fn a_unix_socket_in_a_default_directory_is_localhost_another_is_its_path() {
        let dir = TempDir::new("pgpass-unix");
        let f = dir.write(
            "pgpass",
            "localhost:5432:d:u:local\n/srv/sock:5432:d:u:bypath\n",
            0o600,
        );
        for (host, want) in [
            ("%2Ftmp", Some("local")),
            ("%2Fvar%2Frun%2Fpostgresql", Some("local")),
            ("%2Frun%2Fpostgresql", Some("local")),
            ("localhost", Some("local")),
            ("%2Fsrv%2Fsock", Some("bypath")),
            ("%2Fsrv%2Fother", None),
            ("127.0.0.1", None),
        ] {
            let c = config(&format!("postgres://u@{host}/d"), &f);
            assert_eq!(c.passfile_password(0).as_deref(), want, "{host}");
        }
    }

    #[test]
    fn each_host_of_a_list_has_its_own_line() {
        let dir = TempDir::new("pgpass-hosts");
        let f = dir.write("pgpass", "a:5432:d:u:pa\nb:6000:d:u:pb\n", 0o600);
        let c = config("postgres://u@a,b:6000/d", &f);
        assert_eq!(c.ports(), &[5432, 6000]);
        assert_eq!(c.passfile_password(0).as_deref(), Some("pa"));
        assert_eq!(c.passfile_password(1).as_deref(), Some("pb"));
    }

    #[cfg(unix)]
    #[test]
    fn a_file_open_to_others_or_not_plain_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("pgpass-mode");
        let f = dir.write("pgpass", "*:*:*:*:secret\n", 0o600);
        let c = config("postgres://u@h/d", &f);
        assert_eq!(c.passfile_password(0).as_deref(), Some("secret"));
        for mode in [0o640, 0o604, 0o644, 0o610, 0o601] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(c.passfile_password(0), None, "mode {mode:o}");
        }
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(c.passfile_password(0).as_deref(), Some("secret"));
        // A directory, and an absent file.
        assert_eq!(
            config("postgres://u@h/d", &dir.0).passfile_password(0),
            None
        );
        let absent = dir.0.join("absent");
        assert_eq!(
            config("postgres://u@h/d", &absent).passfile_password(0),
            None
        );
    }

    #[test]
    fn the_file_is_read_at_each_lookup() {
        let dir = TempDir::new("pgpass-rotate");
        let f = dir.write("pgpass", "*:*:*:*:old\n", 0o600);
        let c = config("postgres://u@h/d", &f);
        assert_eq!(c.passfile_password(0).as_deref(), Some("old"));
        dir.write("pgpass", "*:*:*:*:new\n", 0o600);
        assert_eq!(c.passfile_password(0).as_deref(), Some("new"));
    }
}
