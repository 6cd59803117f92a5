//! Requests of the pool's pipelined path, as bytes: what the shared path writes into a
//! lane's queue, in the terms the lane thinks in (prepare a statement under a name, bind
//! and run it, describe it, close it, reset the session), each written as the extended
//! query protocol's messages. The pool decides what to send and when; how it is spelled
//! on the wire is decided here and in the protocol crate.

use bytes::BytesMut;
use postgres_types::{ToSql, Type};

use crate::error::Result;
use crate::protocol::extended::{
    write_bind_execute, write_bind_execute_in, write_close_statement, write_describe, write_parse,
    write_sync,
};

pub(crate) use crate::protocol::extended::Described;

/// Prepares `sql` as statement `name` (`""`: the unnamed statement) with parameter types
/// `types`.
///
/// # Errors
///
/// `sql` holds a NUL byte, or the message is over the protocol's size limit; nothing was
/// written.
pub(crate) fn prepare(name: &str, sql: &str, types: &[Type], out: &mut BytesMut) -> Result<()> {
    Ok(write_parse(name, sql, types, &[], out)?)
}

/// Binds `params` to statement `name` and runs it; with `describe`, the portal's
/// description comes first in the answer; with `sync`, the request ends here.
///
/// # Errors
///
/// A value that does not convert to its parameter's type, or a count that does not match;
/// nothing was written.
pub(crate) fn execute(
    name: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
    describe: bool,
    sync: bool,
    out: &mut BytesMut,
) -> Result<()> {
    Ok(write_bind_execute_in(
        name, types, params, describe, sync, out,
    )?)
}

/// Prepares `sql` as the unnamed statement and runs it with `params`, then Sync: a
/// statement the lane does not keep (the catalog lookup of types).
///
/// # Errors
///
/// As [`prepare`] and [`execute`].
pub(crate) fn run_once(
    sql: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
    out: &mut BytesMut,
) -> Result<()> {
    write_parse("", sql, types, &[], out)?;
    Ok(write_bind_execute("", types, params, true, out)?)
}

/// Describes statement `name`, preparing it from `sql` first when `prepare`, then Sync.
///
/// # Errors
///
/// `sql` holds a NUL byte, or is over the size limit; nothing was written.
pub(crate) fn describe(name: &str, sql: &str, prepare: bool, out: &mut BytesMut) -> Result<()> {
    Ok(write_describe(name, sql, prepare, out)?)
}

/// Closes statement `name` (its answer comes with the next Sync).
pub(crate) fn close_statement(name: &str, out: &mut BytesMut) {
    write_close_statement(name, out);
}

/// The session reset, one request: each of `statements` (name, SQL) run in order under
/// one Sync, so that it takes effect whole or not at all. With `named`, each is kept
/// prepared under its name (`parsed`: already, by an earlier reset); without, each is
/// parsed as the unnamed statement every time (no named statements: behind PgBouncer).
pub(crate) fn reset<'a>(
    statements: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    parsed: bool,
    named: bool,
    out: &mut BytesMut,
) {
    let r = (|| -> Result<()> {
        if !named {
            for (_, sql) in statements {
                write_parse("", sql, &[], &[], out)?;
                write_bind_execute_in("", &[], &[], false, false, out)?;
            }
            write_sync(out);
            return Ok(());
        }
        if !parsed {
            for (name, sql) in statements.clone() {
                write_parse(name, sql, &[], &[name.to_string()], out)?;
            }
        }
        for (name, _) in statements {
            write_bind_execute_in(name, &[], &[], false, false, out)?;
        }
        write_sync(out);
        Ok(())
    })();
    debug_assert!(r.is_ok(), "the reset has no parameters and no NUL byte");
}
