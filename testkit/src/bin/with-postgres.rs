//! `with-postgres COMMAND [ARGS...]`: starts a throwaway PostgreSQL cluster, runs the
//! command with `DATABASE_URL` set to it (the SCRAM role's URL), removes the cluster, and
//! exits with the command's status.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: with-postgres COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    let pg = wirepool_testkit::cluster();
    let status = Command::new(&program)
        .args(args)
        .env("DATABASE_URL", pg.url(wirepool_testkit::Role::Scram))
        .status();
    drop(pg);
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(u8::try_from(s.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => {
            eprintln!("with-postgres: cannot run {program}: {e}");
            ExitCode::from(2)
        }
    }
}
