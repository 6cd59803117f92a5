//! What the shared path writes into a lane's queue: a statement's Bind/Execute/Sync (its
//! Parse first where the connection has not prepared it), and the Closes of statements
//! the connection forgot.

use std::sync::Arc;

use postgres_types::ToSql;

use super::lane::{Lane, Pending, Plan, Queue};
use crate::conn::{Assembler, Named};
use crate::error::Result;
use crate::protocol::extended::{
    write_bind_execute, write_close_statement, write_parse, Described, Execute,
};

/// Writes the Closes of forgotten statements (before this request's Sync); on an error
/// they are kept for the next request.
pub(super) fn with_closes<T>(
    q: &mut Queue,
    write: impl FnOnce(&mut Queue) -> Result<T>,
) -> Result<T> {
    let closes = std::mem::take(&mut q.to_close);
    for n in &closes {
        write_close_statement(n, &mut q.out);
    }
    let r = write(q);
    if r.is_err() {
        q.to_close = closes;
    }
    r
}

/// Queues `sql`'s Bind/Execute/Sync on `lane`, with its Parse first where the connection
/// has not prepared it. Rows are decoded with the columns this connection's server
/// described: where it has not yet (a statement prepared here for the first time, or
/// whose description is still on its way), the request asks for the portal's description
/// and its answer brings the columns, so a description made on another connection, or
/// before a schema change, never decodes a value.
pub(super) fn enqueue_execute(
    lane: &Arc<Lane>,
    sql: &Arc<str>,
    reset_after: bool,
    described: &Described,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Pending> {
    lane.enqueue(sql, reset_after, |q| {
        with_closes(q, |q| match q.names.lookup(sql) {
            Some(Named {
                name,
                params: Some(types),
                columns: Some(columns),
            }) => {
                write_bind_execute(&name, &types, params, false, &mut q.out)?;
                let plan = Plan {
                    uses: Some(name),
                    ..Plan::default()
                };
                Ok((Assembler::Execute(Execute::new(columns)), plan))
            }
            Some(Named {
                name,
                params: Some(types),
                columns: None,
            }) => {
                write_bind_execute(&name, &types, params, true, &mut q.out)?;
                let plan = Plan {
                    uses: Some(name.clone()),
                    confirms: Some(name),
                    ..Plan::default()
                };
                Ok((assembler(described), plan))
            }
            Some(Named { params: None, .. }) => {
                // Being described on this connection: the unnamed statement, this once.
                write_parse("", sql, &described.params, &[], &mut q.out)?;
                write_bind_execute("", &described.params, params, true, &mut q.out)?;
                Ok((assembler(described), Plan::default()))
            }
            None => {
                let (name, evicted) =
                    q.names
                        .make(sql, lane.capacity, Some(described.params.clone()));
                if let Some(ev) = evicted {
                    write_close_statement(&ev, &mut q.out);
                }
                let written =
                    write_parse(&name, sql, &described.params, &[], &mut q.out).and_then(|()| {
                        write_bind_execute(&name, &described.params, params, true, &mut q.out)
                    });
                if let Err(e) = written {
                    q.names.forget(sql, &name);
                    return Err(e.into());
                }
                let named = (!name.is_empty()).then(|| name.clone());
                let plan = Plan {
                    prepares: named.clone().map(|n| (sql.clone(), n)),
                    uses: named.clone(),
                    confirms: named,
                };
                Ok((assembler(described), plan))
            }
        })
    })
}

/// The assembler of an answer that brings its own description: `described` only lends the
/// types looked up in the catalog, to the columns whose type OID is the same.
fn assembler(described: &Described) -> Assembler {
    Assembler::Execute(Execute::new(described.columns.clone()))
}
