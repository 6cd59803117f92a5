//! The pool's pipelined statements: [`Pool::query`], `query_one`, `query_opt`, `execute`
//! and `batch`, each placed on a lane (see the module docs of `pipelined`), with the
//! description of a statement new to the pool and the catalog lookup of its types, as
//! pipelined requests too.

use std::sync::Arc;

use postgres_types::{ToSql, Type};

use super::lane::Pending;
use super::lane_plan::Plan;
use super::write::{enqueue_execute, with_closes};
use crate::conn::request::{self, Described};
use crate::conn::{stale_statement, Assembler, Outcome, ToStatement};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::row::{Execute, Executed, Row};

use tracing::Instrument;

use super::lane_trace::LaneTrace;
use crate::sync::Ordering;

impl Pool {
    /// Runs `statement` with `params` on one of the pool's open connections, alongside
    /// other callers' statements (pipelined, up to
    /// [`pipeline_depth`](crate::pool::Builder::pipeline_depth) in flight on each connection), and
    /// returns its rows. No connection is checked out for the caller: this is for one
    /// autocommit statement that needs no session of its own. The parameters and rows are
    /// those of [`Connection::query`](crate::Connection::query).
    ///
    /// ```no_run
    /// # async fn f(pool: &wirepool::Pool) -> wirepool::Result<()> {
    /// let rows = pool.query("SELECT id, name FROM users WHERE team = $1", &[&7i32]).await?;
    /// let n = pool.execute("UPDATE users SET seen = now() WHERE id = $1", &[&42i32]).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// What needs a session (a transaction, `SET`, `LISTEN`, a cursor, `PREPARE`, a
    /// temporary table, an advisory lock, COPY) goes through [`Pool::acquire`]; such
    /// statements are refused here (see "Errors").
    ///
    /// # Errors
    ///
    /// As [`Connection::query`](crate::Connection::query); an `InvalidInput` error naming
    /// `acquire()` for a statement that changes or depends on the session's state; a pool
    /// timeout when no connection had room within the acquire timeout; a command timeout
    /// (the statement is abandoned: its answer is discarded, and it is cancelled once
    /// nothing else runs on its connection). When the connection is lost,
    /// [`Error::may_have_run`] says whether the statement had been sent.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the statement as a command timeout does; no other
    /// caller's statement is cancelled or loses its answer.
    pub async fn query<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>>
    where
        T: ?Sized + ToStatement,
    {
        Ok(self.run_shared(statement, params).await?.rows)
    }

    /// Runs `statement` on the shared path (see [`Pool::query`]) and returns its one row.
    ///
    /// # Errors
    ///
    /// As [`Pool::query`], or a row-count error if it returned no row or several.
    ///
    /// # Cancel safety
    ///
    /// As [`Pool::query`]: the statement is abandoned, and no other caller's statement is
    /// cancelled or loses its answer.
    pub async fn query_one<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Row>
    where
        T: ?Sized + ToStatement,
    {
        crate::conn::only_row(self.query(statement, params).await?)
    }

    /// Runs `statement` on the shared path (see [`Pool::query`]) and returns its row, if it
    /// returned one.
    ///
    /// # Errors
    ///
    /// As [`Pool::query`], or a row-count error if it returned several rows.
    ///
    /// # Cancel safety
    ///
    /// As [`Pool::query`]: the statement is abandoned, and no other caller's statement is
    /// cancelled or loses its answer.
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>>
    where
        T: ?Sized + ToStatement,
    {
        crate::conn::at_most_one_row(self.query(statement, params).await?)
    }

    /// Runs `statement` on the shared path (see [`Pool::query`]) and returns the number of
    /// rows it affected.
    ///
    /// # Errors
    ///
    /// As [`Pool::query`].
    ///
    /// # Cancel safety
    ///
    /// As [`Pool::query`]: the statement is abandoned, and no other caller's statement is
    /// cancelled or loses its answer.
    pub async fn execute<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> Result<u64>
    where
        T: ?Sized + ToStatement,
    {
        Ok(self.run_shared(statement, params).await?.rows_affected())
    }

    /// A batch of statements on the pool (see [`Batch`](crate::Batch)), on the shared path
    /// with no checkout, under the same refusals as [`Pool::query`]. An atomic batch (the
    /// default) is one request on one of the shared path's connections: its statements
    /// written back to back with one Sync after the last, so all take effect or none, in
    /// one round trip, pipelined with other callers' statements. An independent batch
    /// (`.atomic(false)`) places every statement on its own with its own Sync, each
    /// succeeding or failing alone: a statement's error (the server's, or a parameter that
    /// does not convert) is in its own result. A statement the shared path refuses, or
    /// whose text cannot be sent (a NUL byte), fails the whole batch in either mode,
    /// before anything is sent, with [`Error::batch_index`] naming it.
    ///
    /// Dropping an atomic batch's future, or its command timeout, abandons it as
    /// [`Pool::query`] does one statement. When its connection is lost,
    /// [`Error::may_have_run`] answers for the batch as a whole.
    ///
    /// ```no_run
    /// # async fn f(pool: &wirepool::Pool) -> wirepool::Result<()> {
    /// let results = pool
    ///     .batch()
    ///     .execute("INSERT INTO chunks (file_id, body) VALUES ($1, $2)", &[&7i64, &"fn main() {}"])
    ///     .query("SELECT count(*) FROM chunks WHERE file_id = $1", &[&7i64])
    ///     .run()
    ///     .await?;
    /// assert_eq!(results[0].count(), 1);
    /// # Ok(()) }
    /// ```
    pub fn batch(&self) -> crate::Batch<'_> {
        crate::Batch::on_pool(self)
    }

    /// Refuses, as the shared path does, a statement that needs a session of its own.
    pub(crate) fn check_shared(&self, sql: &str) -> Result<()> {
        self.shared.path.check_allowed(&crate::sql::verdict(sql))
    }

    /// One pipelined statement, traced as the exclusive path traces one: a span with the
    /// database semantic conventions' fields (the server's once the statement is placed,
    /// and the time it waited for room on a lane), the slow-query line, the metrics sink.
    pub(crate) async fn run_shared<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Executed>
    where
        T: ?Sized + ToStatement,
    {
        let verdict = crate::sql::verdict(statement.sql());
        let mut trace = LaneTrace::start(&self.shared, &verdict);
        let span = trace.traced.running_span();
        let r = self
            .run_placed(statement, &verdict, params, &mut trace)
            .instrument(span)
            .await;
        let rows = r.as_ref().ok().map(Executed::rows_affected);
        trace.end(&self.shared, &verdict.sql, &r, rows);
        r
    }

    async fn run_placed<T>(
        &self,
        statement: &T,
        verdict: &crate::sql::Verdict,
        params: &[&(dyn ToSql + Sync)],
        trace: &mut LaneTrace,
    ) -> Result<Executed>
    where
        T: ?Sized + ToStatement,
    {
        let shared = &self.shared;
        let path = &shared.path;
        let sql = &verdict.sql;
        crate::conn::check_parameter_count(params.len())?;
        for attempt in 0..2 {
            let known = match (attempt, statement.described()) {
                (0, Some(d)) => Some(d.clone()),
                _ => path.described(sql),
            };
            if attempt == 0 {
                path.check_allowed(verdict)?;
            }
            let described = match known {
                Some(d) => d,
                None => self.describe_shared(sql).await?,
            };
            let lane = trace.place(shared).await?;
            path.statements.fetch_add(1, Ordering::Relaxed);
            let reset_after = !shared.cfg.session_reset.takes_as_clean(&verdict.class);
            let pending = match path.queued(
                &lane,
                enqueue_execute(
                    &lane,
                    sql,
                    reset_after,
                    &described,
                    params,
                    trace.traced.running_span(),
                ),
            ) {
                Ok(p) => p,
                // Its lane stopped taking statements between the placement and now (another
                // caller's statement changed that session): not sent, placed again, once.
                Err(e) if attempt == 0 && path.may_place_again(shared, &e) => continue,
                Err(e) => return Err(e),
            };
            let executed = match self.answer(pending).await {
                Ok(Outcome::Executed(x)) => x,
                // Not sent: its lane stopped taking statements before it went out (another
                // caller's statement changed that session). Placed again, once.
                Err(e) if attempt == 0 && path.may_place_again(shared, &e) => {
                    continue;
                }
                Err(e) => return Err(e),
                Ok(Outcome::Described(_) | Outcome::Reset { .. } | Outcome::Batch(_)) => {
                    return Err(Error::protocol(
                        "a description answered a pipelined statement",
                    ))
                }
            };
            let Some(err) = executed.error.as_ref() else {
                return Ok(executed);
            };
            if attempt == 0 && stale_statement(err) {
                // Its plan or its types are no longer the server's: described again, once.
                tracing::debug!(target: "wirepool::pool", code = err.code(), "describing a shared-path statement again: {}", err.message());
                path.forget(sql);
                continue;
            }
            return Err(Error::db_boxed(executed.error.expect("checked")));
        }
        unreachable!("the second attempt returns")
    }

    /// Waits for a request's answer, bounded by the command timeout.
    pub(super) async fn answer(&self, pending: Pending) -> Result<Outcome> {
        match self.shared.cfg.command_timeout {
            Some(limit) => match tokio::time::timeout(limit, pending).await {
                Ok(r) => r,
                Err(_) => {
                    self.shared.timeout_hook.as_ref()(limit);
                    Err(Error::command_timeout(limit))
                }
            },
            None => pending.await,
        }
    }

    /// Describes `sql` on a lane (preparing it there), with its types looked up.
    pub(super) async fn describe_shared(&self, sql: &Arc<str>) -> Result<Described> {
        let shared = &self.shared;
        let path = &shared.path;
        let lane = path.place(shared).await?;
        let pending = path.queued(
            &lane,
            lane.enqueue(sql, false, tracing::Span::current(), |q| {
                with_closes(q, |q| match q.names.get(sql) {
                    Some(name) => {
                        request::describe(&name, sql, false, &mut q.out)?;
                        let plan = Plan {
                            uses: Some(name.clone()),
                            confirms: Some(name),
                            ..Plan::default()
                        };
                        Ok((Assembler::describe(), plan.into()))
                    }
                    None => {
                        let (name, evicted) = q.names.make(sql, lane.capacity, None);
                        if let Some(ev) = evicted {
                            request::close_statement(&ev, &mut q.out);
                        }
                        if let Err(e) = request::describe(&name, sql, true, &mut q.out) {
                            q.names.forget(sql, &name);
                            return Err(e);
                        }
                        let named = (!name.is_empty()).then_some(name);
                        let plan = Plan {
                            prepares: named.clone().map(|n| (sql.clone(), n)),
                            confirms: named,
                            ..Plan::default()
                        };
                        Ok((Assembler::describe(), plan.into()))
                    }
                })
            }),
        )?;
        let mut described = match self.answer(pending).await? {
            Outcome::Described(r) => r.map_err(Error::db_boxed)?,
            Outcome::Executed(_) | Outcome::Reset { .. } | Outcome::Batch(_) => {
                return Err(Error::protocol("rows answered a pipelined Describe"))
            }
        };
        let scope = lane.type_scope.clone();
        drop(lane);
        let types = shared.types.clone();
        let missing = crate::conn::type_lookup::missing_types(&described, |o| types.get(&scope, o));
        if !missing.is_empty() {
            self.lookup_types_shared(&scope, &missing).await?;
        }
        crate::conn::type_lookup::resolve_with(&mut described, |o| types.get(&scope, o));
        path.remember(sql, &described);
        Ok(described)
    }

    /// The catalog query for types not built in, as one pipelined request.
    async fn lookup_types_shared(&self, scope: &Arc<str>, oids: &[u32]) -> Result<()> {
        let shared = &self.shared;
        let path = &shared.path;
        let lane = path.place(shared).await?;
        let param = [Type::OID_ARRAY];
        let values = oids.to_vec();
        let lookup: Arc<str> = Arc::from(crate::conn::type_lookup::LOOKUP_SQL);
        let pending = path.queued(
            &lane,
            lane.enqueue(&lookup, false, tracing::Span::current(), |q| {
                with_closes(q, |q| {
                    request::run_once(&lookup, &param, &[&values], &mut q.out)?;
                    Ok((
                        Assembler::Execute(Execute::new(Arc::from(Vec::new()))),
                        Plan::default().into(),
                    ))
                })
            }),
        )?;
        let executed = match self.answer(pending).await? {
            Outcome::Executed(x) => x,
            Outcome::Described(_) | Outcome::Reset { .. } | Outcome::Batch(_) => {
                return Err(Error::protocol("a description answered a catalog query"))
            }
        };
        if let Some(e) = executed.error {
            return Err(Error::db_boxed(e));
        }
        shared.types.count_lookup();
        let types = crate::conn::type_lookup::types_from_rows(&executed.rows, oids)?;
        shared.types.insert(scope, types);
        Ok(())
    }
}
