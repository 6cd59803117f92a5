//! Typed queries over the extended protocol: parameters bound as values (`ToSql`), never
//! spliced into SQL; columns read as Rust types (`FromSql`); statements prepared once per
//! connection and kept in its cache.

use std::fmt;
use std::sync::Arc;

use postgres_types::{ToSql, Type};

use super::{bounded, Connection};
use crate::error::{sqlstate, DbError, Error, Result};
use crate::protocol::extended::{
    write_bind_execute, write_parse, write_prepare, Described, Prepare, Step,
};
use crate::protocol::{self, BackendMessage, Column, TransactionStatus};
use crate::row::{Execute, Executed, Row};

/// The most parameters a statement can take (Bind and ParameterDescription count them in
/// 16 bits).
const MAX_PARAMETERS: usize = u16::MAX as usize;

/// Refuses more parameters than a Bind can carry (it counts its values in 16 bits), before
/// anything is written.
pub(crate) fn check_parameter_count(n: usize) -> Result<()> {
    if n > MAX_PARAMETERS {
        return Err(Error::invalid_input(format!(
            "{n} parameters given; the protocol allows at most {MAX_PARAMETERS}"
        )));
    }
    Ok(())
}

/// A prepared statement: its SQL, parameter types and result columns.
///
/// It can be passed wherever a query takes SQL text. The connection keeps the prepared
/// statement in its cache, keyed by the SQL; if the cache has evicted it meanwhile (or keeps
/// nothing, for PgBouncer), it is prepared again as needed, so a `Statement` never goes
/// stale.
#[derive(Clone)]
pub struct Statement {
    sql: Arc<str>,
    described: Described,
}

impl fmt::Debug for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Statement")
            .field("sql", &self.sql)
            .field("params", &self.described.params)
            .field("columns", &self.described.columns)
            .finish()
    }
}

impl Statement {
    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }
    /// The parameter types, as the server inferred them.
    pub fn params(&self) -> &[Type] {
        &self.described.params
    }
    /// The result columns (empty for a statement that returns no rows).
    pub fn columns(&self) -> &[Column] {
        &self.described.columns
    }
}

mod sealed {
    pub trait Sealed {}
}

/// What a query can run: SQL text (`&str`, `String`) or a prepared [`Statement`].
pub trait ToStatement: sealed::Sealed {
    #[doc(hidden)]
    fn sql(&self) -> &str;
    #[doc(hidden)]
    fn described(&self) -> Option<&Described>;
}

impl sealed::Sealed for str {}
impl ToStatement for str {
    fn sql(&self) -> &str {
        self
    }
    fn described(&self) -> Option<&Described> {
        None
    }
}

impl sealed::Sealed for String {}
impl ToStatement for String {
    fn sql(&self) -> &str {
        self
    }
    fn described(&self) -> Option<&Described> {
        None
    }
}

impl sealed::Sealed for Statement {}
impl ToStatement for Statement {
    fn sql(&self) -> &str {
        &self.sql
    }
    fn described(&self) -> Option<&Described> {
        Some(&self.described)
    }
}

/// The server no longer knows a cached statement (`DISCARD ALL`, `DEALLOCATE`, a
/// PgBouncer session moved to another server), the statement's result type changed
/// (`ALTER TABLE`), or one of its types is gone: prepared again once, transparently.
pub(crate) fn stale(e: &DbError) -> bool {
    e.code() == sqlstate::INVALID_SQL_STATEMENT_NAME
        || (e.code() == sqlstate::FEATURE_NOT_SUPPORTED
            && e.message()
                .contains("cached plan must not change result type"))
        // A type the statement uses was dropped and created again (a new OID).
        || (e.code() == sqlstate::INTERNAL_ERROR
            && e.message().starts_with("cache lookup failed for type"))
}

impl Connection {
    /// Prepares `sql` (or takes it from the statement cache) and returns its parameter
    /// types and result columns.
    ///
    /// # Errors
    ///
    /// The server's error (a syntax error, an unknown table), a command timeout, or an
    /// I/O, closed or protocol error. The connection stays usable after a server error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection consistent: the next call reads the
    /// prepare's answer first, and a statement prepared meanwhile is kept in the cache or
    /// closed.
    pub async fn prepare(&mut self, sql: &str) -> Result<Statement> {
        bounded!(self, self.prepare_inner(sql))
    }

    async fn prepare_inner(&mut self, sql: &str) -> Result<Statement> {
        self.finish_pending().await?;
        let (_, described) = match self.statements.get(sql) {
            Some(hit) => hit,
            None => {
                self.in_flight = true;
                let r = self.prepare_exchange(sql).await;
                if r.is_ok() {
                    // Nothing is executed: end the exchange.
                    self.finish_pending().await?;
                }
                r?
            }
        };
        Ok(Statement {
            sql: Arc::from(sql),
            described,
        })
    }

    /// Runs `statement` with `params` and returns its rows.
    ///
    /// Parameters are sent as values in PostgreSQL's binary format, each checked against
    /// the type the server inferred for it: a value never becomes SQL text, so it cannot
    /// change what the statement does.
    ///
    /// ```no_run
    /// # async fn f(conn: &mut wirepool::Connection) -> wirepool::Result<()> {
    /// let name = "Robert'); DROP TABLE students; --";
    /// let rows = conn
    ///     .query("SELECT id, name FROM students WHERE name = $1", &[&name])
    ///     .await?;
    /// for row in rows {
    ///     let id: i32 = row.get(0);
    ///     let name: &str = row.get("name");
    ///     println!("{id} {name}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The server's error ([`DbError`], its SQLSTATE kept); an invalid-input error for a
    /// wrong number of parameters; a conversion error for a value of the wrong type; a
    /// command timeout; an I/O, closed or protocol error. After a server, input or
    /// conversion error the connection stays usable.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future mid-way leaves the connection consistent: the next call
    /// finishes what was sent and reads its answer first.
    pub async fn query<T>(
        &mut self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>>
    where
        T: ?Sized + ToStatement,
    {
        Ok(self.execute_raw(statement, params).await?.rows)
    }

    /// Runs `statement` and returns its one row.
    ///
    /// # Errors
    ///
    /// As [`Connection::query`], or a row-count error if it returned no row or several.
    ///
    /// # Cancel safety
    ///
    /// As [`Connection::query`].
    pub async fn query_one<T>(
        &mut self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row>
    where
        T: ?Sized + ToStatement,
    {
        crate::conn::only_row(self.query(statement, params).await?)
    }

    /// Runs `statement` and returns its row, if it returned one.
    ///
    /// # Errors
    ///
    /// As [`Connection::query`], or a row-count error if it returned several rows.
    ///
    /// # Cancel safety
    ///
    /// As [`Connection::query`].
    pub async fn query_opt<T>(
        &mut self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>>
    where
        T: ?Sized + ToStatement,
    {
        crate::conn::at_most_one_row(self.query(statement, params).await?)
    }

    /// Runs `statement` and returns the number of rows it affected (inserted, updated,
    /// deleted; or returned, for a SELECT).
    ///
    /// # Errors
    ///
    /// As [`Connection::query`].
    ///
    /// # Cancel safety
    ///
    /// As [`Connection::query`].
    pub async fn execute<T>(&mut self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> Result<u64>
    where
        T: ?Sized + ToStatement,
    {
        Ok(self.execute_raw(statement, params).await?.rows_affected())
    }

    /// Runs `sql` with parameters of the given types, in one round trip with an unnamed
    /// statement (Parse, Bind, Describe, Execute, Sync together), as tokio-postgres's
    /// `query_typed`: nothing is prepared or cached, so it is the cheap way through
    /// PgBouncer in transaction mode. The statement cache is not used.
    ///
    /// ```no_run
    /// # async fn f(conn: &mut wirepool::Connection) -> wirepool::Result<()> {
    /// use wirepool::Type;
    /// let rows = conn
    ///     .query_typed("SELECT $1 || $2", &[(&"a", Type::TEXT), (&"b", Type::TEXT)])
    ///     .await?;
    /// assert_eq!(rows[0].get::<_, &str>(0), "ab");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Connection::query`].
    ///
    /// # Cancel safety
    ///
    /// As [`Connection::query`].
    pub async fn query_typed(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>> {
        use tracing::Instrument;
        let traced = self.trace_start(sql);
        let span = traced.running_span();
        let r = async { bounded!(self, self.run_typed(sql, params)) }
            .instrument(span)
            .await;
        let rows = r.as_ref().ok().map(|rows| rows.len() as u64);
        self.trace_end_counted(traced, sql, &r, rows);
        r
    }

    async fn run_typed(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>> {
        check_parameter_count(params.len())?;
        self.finish_pending().await?;
        let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
        let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
        let mark = self.write_buf.len();
        let written = write_parse("", sql, &types, &[], &mut self.write_buf)
            .and_then(|()| write_bind_execute("", &types, &values, true, &mut self.write_buf));
        if let Err(e) = written {
            self.write_buf.truncate(mark);
            self.trim_buffers();
            return Err(e.into());
        }
        self.in_flight = true;
        self.owe_ready(true);
        self.flush().await?;
        let mut answer = Execute::new(Arc::from(Vec::new()));
        let executed = self.read_steps(|m| answer.handle(m)).await?;
        self.in_flight = false;
        self.check_encoding()?;
        if executed.copy_refused {
            return Err(Error::copy_unsupported());
        }
        match executed.error {
            Some(e) => Err(Error::db_boxed(e)),
            None => {
                let mut rows = executed.rows;
                self.resolve_rows(&mut rows).await?;
                Ok(rows)
            }
        }
    }

    async fn execute_raw<T>(
        &mut self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Executed>
    where
        T: ?Sized + ToStatement,
    {
        use tracing::Instrument;
        let sql = statement.sql();
        let traced = self.trace_start(sql);
        let span = traced.running_span();
        let r = async { bounded!(self, self.run(sql, statement.described(), params)) }
            .instrument(span)
            .await;
        let rows = r.as_ref().ok().map(Executed::rows_affected);
        self.trace_end_counted(traced, sql, &r, rows);
        r
    }

    async fn run(
        &mut self,
        sql: &str,
        known: Option<&Described>,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Executed> {
        check_parameter_count(params.len())?;
        self.finish_pending().await?;
        for attempt in 0..2 {
            let (name, described) = self.send_bound(sql, known, params).await?;
            let mut answer = Execute::new(described.columns.clone());
            let executed = self.read_steps(|m| answer.handle(m)).await?;
            self.in_flight = false;
            self.check_encoding()?;
            if executed.copy_refused {
                return Err(Error::copy_unsupported());
            }
            let Some(err) = executed.error.as_ref() else {
                // The server dropped every prepared statement: so does the cache.
                if matches!(
                    executed.command_tag.as_deref(),
                    Some("DEALLOCATE ALL" | "DISCARD ALL")
                ) {
                    self.forget_prepared();
                }
                return Ok(executed);
            };
            if !name.is_empty() && stale(err) {
                self.statements.remove(sql);
                // Prepared again once; inside a transaction the error has aborted it, so
                // the caller sees the error and the next statement prepares anew.
                if attempt == 0 && executed.transaction_status == TransactionStatus::Idle {
                    tracing::debug!(
                        target: "wirepool::conn",
                        code = err.code(),
                        "preparing a cached statement again: {}",
                        err.message()
                    );
                    continue;
                }
            }
            return Err(Error::db_boxed(executed.error.expect("checked")));
        }
        unreachable!("the second attempt returns")
    }

    /// Writes and sends Bind, Execute and Sync for `sql` (Parse and Describe first, in an
    /// exchange of their own, when it is not cached); returns the statement's name and
    /// description. The answer is for the caller to read.
    pub(super) async fn send_bound(
        &mut self,
        sql: &str,
        known: Option<&Described>,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Arc<str>, Described)> {
        self.in_flight = true;
        let mark = self.write_buf.len();
        let mut reparsed = false;
        let (name, described) = match self.statements.get(sql) {
            Some(hit) => hit,
            // Types known and nothing cached (PgBouncer): Parse goes in the same
            // exchange as Bind, one round trip, and the portal is described in it too:
            // the statement is parsed anew, so its rows may no longer be what they were
            // (a table altered, another search_path).
            None if known.is_some() && self.statements.capacity() == 0 => {
                let d = known.expect("checked").clone();
                if d.params.len() != params.len() {
                    // Reported by write_execute below, before anything is sent.
                } else {
                    write_parse("", sql, &d.params, &[], &mut self.write_buf)?;
                }
                reparsed = true;
                (Arc::from(""), d)
            }
            None => self.prepare_exchange(sql).await?,
        };
        let written = write_bind_execute(
            &name,
            &described.params,
            params,
            reparsed,
            &mut self.write_buf,
        );
        if let Err(e) = written {
            self.write_buf.truncate(mark.min(self.write_buf.len()));
            // A refused value may have grown the buffer far past its usual size.
            self.trim_buffers();
            // After a first exchange the server waits for its Sync.
            self.finish_pending().await?;
            return Err(e.into());
        }
        self.owes_sync = false;
        self.owe_ready(true);
        self.flush().await?;
        Ok((name, described))
    }

    /// The first exchange: Parse, Describe, Flush (with Closes of evicted statements).
    /// The statement is cached once described; on the server's error, the exchange is
    /// ended with a Sync and the error returned.
    pub(super) async fn prepare_exchange(&mut self, sql: &str) -> Result<(Arc<str>, Described)> {
        let name = self.statements.fresh_name();
        let evicted = self.statements.take_evicted();
        if let Err(e) = write_prepare(&name, sql, &evicted, &mut self.write_buf) {
            // Nothing was sent: the Closes wait for the next Parse.
            self.statements.not_prepared(&name, evicted);
            return Err(e.into());
        }
        self.owes_sync = true;
        self.flush().await?;
        let mut answer = Prepare::new();
        match self.read_steps(|m| answer.handle(m)).await? {
            Ok(mut described) => {
                // Types not built in are looked up (their exchange's Sync ends this one);
                // until this returns, the statement is not cached and its name is closed
                // with the next prepare.
                if self.resolve_described(&mut described).await? && name.is_empty() {
                    // The lookup took the unnamed statement's place: parsed again, sent
                    // with what follows (Bind, or the Sync that ends a prepare).
                    write_parse("", sql, &described.params, &[], &mut self.write_buf)?;
                    self.owes_sync = true;
                }
                self.statements.insert(sql, name.clone(), described.clone());
                Ok((name, described))
            }
            Err(db) => {
                self.statements.not_prepared(&name, Vec::new());
                // The server skips to the Sync; a FATAL one has closed the session.
                if !db.is_fatal() {
                    self.finish_pending().await?;
                }
                Err(Error::db_boxed(db))
            }
        }
    }

    /// Feeds messages to an assembler until it is done; a FATAL error followed by the end
    /// of the stream is reported as the server's error.
    pub(super) async fn read_steps<T>(
        &mut self,
        mut step: impl FnMut(BackendMessage) -> protocol::Result<Step<T>>,
    ) -> Result<T> {
        let mut fatal = None;
        loop {
            let msg = match self.next_message().await {
                Ok(m) => m,
                Err(e) => return Err(fatal.map(Error::db).unwrap_or(e)),
            };
            if let BackendMessage::ErrorResponse(e) = &msg {
                if e.is_fatal() {
                    fatal = Some((**e).clone());
                }
            }
            match step(msg) {
                Ok(Step::Continue) => {}
                Ok(Step::Notice(n)) => self.notice(&n),
                Ok(Step::RefuseCopyIn) => self.refuse_copy_in().await?,
                Ok(Step::Done(t)) => return Ok(t),
                Err(e) => {
                    self.broken = true;
                    return Err(e.into());
                }
            }
        }
    }
}

/// The one row `query_one` returns (of the connection or of the pool's shared path).
pub(crate) fn only_row(mut rows: Vec<Row>) -> Result<Row> {
    match rows.len() {
        1 => Ok(rows.pop().expect("one row")),
        n => Err(Error::row_count(format!(
            "query_one expected one row, the query returned {n}"
        ))),
    }
}

/// The row, if any, `query_opt` returns (of the connection or of the pool's shared path).
pub(crate) fn at_most_one_row(mut rows: Vec<Row>) -> Result<Option<Row>> {
    match rows.len() {
        0 => Ok(None),
        1 => Ok(rows.pop()),
        n => Err(Error::row_count(format!(
            "query_opt expected at most one row, the query returned {n}"
        ))),
    }
}
