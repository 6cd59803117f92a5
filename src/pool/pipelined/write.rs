//! What the shared path writes into a lane's queue: a statement run (prepared first where
//! the connection has not prepared it), and the Closes of statements the connection
//! forgot; spelled as messages by `conn::request`.

use std::sync::Arc;

use postgres_types::{ToSql, Type};

use super::lane::{Lane, Pending, Queue};
use super::lane_plan::{Plan, Plans};
use crate::conn::request::{self, Described};
use crate::conn::{Answers, Assembler, BatchItem, Named};
use crate::error::Result;
use crate::row::Execute;

/// Writes the Closes of forgotten statements (before this request's Sync); on an error
/// they are kept for the next request.
pub(super) fn with_closes<T>(
    q: &mut Queue,
    write: impl FnOnce(&mut Queue) -> Result<T>,
) -> Result<T> {
    let closes = std::mem::take(&mut q.to_close);
    for n in &closes {
        request::close_statement(n, &mut q.out);
    }
    let r = write(q);
    if r.is_err() {
        // Kept, with what `write` left to close (names it evicted, whose Closes were not
        // sent either).
        let mut closes = closes;
        closes.append(&mut q.to_close);
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
    span: tracing::Span,
) -> Result<Pending> {
    lane.enqueue(sql, reset_after, span, |q| {
        with_closes(q, |q| {
            let mut evicted = Vec::new();
            match write_statement(q, lane, sql, described, params, true, &mut evicted) {
                Ok((columns, plan)) => Ok((Assembler::Execute(Execute::new(columns)), plan.into())),
                Err(e) => {
                    q.to_close.append(&mut evicted);
                    Err(e)
                }
            }
        })
    })
}

/// Queues an atomic batch on `lane` as one request: each statement's Bind/Execute (its
/// Parse first where the connection has not prepared it), and one Sync after the last, so
/// that all take effect or none. `described[k]` is `items[k]`'s description. A value that
/// does not convert queues nothing; its error names the statement's index.
pub(super) fn enqueue_batch(
    lane: &Arc<Lane>,
    label: &Arc<str>,
    sqls: &[Arc<str>],
    reset_after: bool,
    items: &[BatchItem<'_>],
    described: &[Described],
    span: tracing::Span,
) -> Result<Pending> {
    lane.enqueue(label, reset_after, span, |q| {
        with_closes(q, |q| {
            let mut answers = Answers::keeping_columns();
            let mut plans = Vec::with_capacity(items.len());
            let mut evicted = Vec::new();
            for (k, ((item, sql), described)) in items.iter().zip(sqls).zip(described).enumerate() {
                let sync = k + 1 == items.len();
                match write_statement(q, lane, sql, described, item.params, sync, &mut evicted) {
                    Ok((columns, plan)) => {
                        // The shared path refuses transaction control: no COMMIT here.
                        answers.expect_rows(columns, item.rows, false);
                        plans.push(plan);
                    }
                    Err(e) => {
                        // Names made for statements before it were never sent.
                        for (sql, name) in plans.iter().filter_map(|p: &Plan| p.prepares.as_ref()) {
                            q.names.forget(sql, name);
                        }
                        q.to_close.append(&mut evicted);
                        return Err(e.with_batch_index(k));
                    }
                }
            }
            Ok((Assembler::batch(answers, items.len()), Plans::many(plans)))
        })
    })
}

/// One statement's Bind/Execute, with its Parse first where the connection has not
/// prepared it, and its Sync when `sync` (a statement alone, or a batch's last): the
/// columns its rows decode with (until its answer describes them, where this connection's
/// server has not yet), and its plan. Names evicted to make room go to `evicted` (their
/// Closes are written here; the caller keeps them to close later if the write fails).
fn write_statement(
    q: &mut Queue,
    lane: &Lane,
    sql: &Arc<str>,
    described: &Described,
    params: &[&(dyn ToSql + Sync)],
    sync: bool,
    evicted: &mut Vec<Arc<str>>,
) -> Result<(Arc<[crate::Column]>, Plan)> {
    match q.names.lookup(sql) {
        Some(Named {
            name,
            params: Some(types),
            columns: Some(columns),
        }) => {
            let types = bind_types(&types, described);
            request::execute(&name, types, params, false, sync, &mut q.out)?;
            let plan = Plan {
                uses: Some(name),
                ..Plan::default()
            };
            Ok((columns, plan))
        }
        Some(Named {
            name,
            params: Some(types),
            columns: None,
        }) => {
            let types = bind_types(&types, described);
            request::execute(&name, types, params, true, sync, &mut q.out)?;
            let plan = Plan {
                uses: Some(name.clone()),
                confirms: Some(name),
                ..Plan::default()
            };
            Ok((described.columns.clone(), plan))
        }
        Some(Named { params: None, .. }) => {
            request::prepare("", sql, &described.params, &mut q.out)?;
            request::execute("", &described.params, params, true, sync, &mut q.out)?;
            Ok((described.columns.clone(), Plan::default()))
        }
        None => {
            let (name, evicted_now) =
                q.names
                    .make(sql, lane.capacity, Some(described.params.clone()));
            if let Some(ev) = evicted_now {
                request::close_statement(&ev, &mut q.out);
                evicted.push(ev);
            }
            let written =
                request::prepare(&name, sql, &described.params, &mut q.out).and_then(|()| {
                    request::execute(&name, &described.params, params, true, sync, &mut q.out)
                });
            if let Err(e) = written {
                q.names.forget(sql, &name);
                return Err(e);
            }
            let named = (!name.is_empty()).then(|| name.clone());
            let plan = Plan {
                prepares: named.clone().map(|n| (sql.clone(), n)),
                uses: named.clone(),
                confirms: named,
            };
            Ok((described.columns.clone(), plan))
        }
    }
}

/// The parameter types to encode with. A statement prepared by a Describe on this
/// connection knows its parameters by the server's OIDs alone; the description the pool
/// keeps has the same OIDs with the custom types (enums, composites, domains) looked up,
/// which `ToSql` needs to accept a value. When the OIDs differ (the statement was prepared
/// before the description changed), the statement's own types are what the server expects.
fn bind_types<'a>(prepared: &'a Arc<[Type]>, described: &'a Described) -> &'a Arc<[Type]> {
    let same = prepared.len() == described.params.len()
        && prepared
            .iter()
            .zip(described.params.iter())
            .all(|(p, d)| p.oid() == d.oid());
    if same {
        &described.params
    } else {
        prepared
    }
}
