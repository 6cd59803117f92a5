//! Property tests of connection-string parsing: whatever the input, no error, `Display` or
//! `Debug` of the result shows the password; well-formed inputs parse to what they say.

use proptest::prelude::*;
use wirepool::ConnectConfig;

fn parse(s: &str) -> Result<ConnectConfig, wirepool::Error> {
    ConnectConfig::parse_with_env(s, |k| (k == "USER").then(|| "osuser".to_string()))
}

/// A password: letter-digit runs (the parts a leak would show) joined by characters that
/// URLs and key=value strings give a meaning to.
fn password() -> impl Strategy<Value = (String, Vec<String>)> {
    let run = "[a-z][a-z0-9]{5,9}";
    let sep = prop::sample::select(vec![
        "/", "?", "@", ":", "#", "&", "=", " ", "%", "[", "]", ",", "'", "\\", "",
    ]);
    prop::collection::vec((run, sep), 1..4).prop_map(|parts| {
        let mut pw = String::new();
        let mut runs = Vec::new();
        for (r, s) in parts {
            pw.push_str(&r);
            pw.push_str(s);
            runs.push(r);
        }
        (pw, runs)
    })
}

/// Every place a password could show up.
fn shown(r: &Result<ConnectConfig, wirepool::Error>) -> String {
    match r {
        Ok(c) => format!("{c} {c:?}"),
        Err(e) => format!("{e} {e:?} {}", wirepool::error::chain(e)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn urls_never_show_the_password((pw, runs) in password(), port in prop::sample::select(vec!["", ":5432", ":notaport", ":5432:5433"]), tail in prop::sample::select(vec!["/db", "/db?sslmode=disable", "", "?connect_timeout=x", "/db?bogus=1"])) {
        let url = format!("postgres://app:{pw}@127.0.0.1{port}{tail}");
        let r = parse(&url);
        let text = shown(&r);
        for run in &runs {
            prop_assert!(!text.contains(run.as_str()), "{url} -> {text}");
        }
        // Without a `/`, `%` or separator that URLs reserve, the password is read exactly.
        if !pw.contains(['/', '%']) && port == ":5432" && tail == "/db" {
            let c = r.unwrap();
            prop_assert_eq!(c.password(), Some(pw.as_str()));
            prop_assert_eq!(c.dbname(), "db");
            prop_assert_eq!(c.port(), 5432);
        }
    }

    #[test]
    fn key_value_strings_never_show_the_password((pw, runs) in password(), quoted in any::<bool>(), extra in prop::sample::select(vec!["", " port=x", " sslmode=bogus", " nosuch=1"])) {
        let value = if quoted {
            format!("'{}'", pw.replace('\\', "\\\\").replace('\'', "\\'"))
        } else {
            pw.clone()
        };
        let s = format!("host=127.0.0.1 password={value}{extra}");
        let r = parse(&s);
        let text = shown(&r);
        for run in &runs {
            prop_assert!(!text.contains(run.as_str()), "{s} -> {text}");
        }
        if quoted && extra.is_empty() {
            let c = r.unwrap();
            prop_assert_eq!(c.password(), Some(pw.as_str()));
        }
    }

    #[test]
    fn arbitrary_strings_give_a_config_or_an_error_never_a_panic(s in ".{0,80}") {
        let _ = parse(&s);
        let _ = parse(&format!("postgres://{s}"));
    }
}
