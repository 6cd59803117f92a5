//! Batches on a connection or on the pool: [`Batch`] (several statements with their
//! parameters, sent in one write and answered in one round trip) and
//! [`Connection::execute_many`] (one statement over many parameter rows, streamed in
//! bounded chunks).
//!
//! Two modes. **Atomic** (the default): one Sync after the last statement, so the
//! statements are one transaction (the server's implicit one, or part of the caller's
//! transaction): all take effect or none, and the error names the failing statement's
//! index ([`Error::batch_index`]). **Independent**: a Sync after each statement, so each
//! succeeds or fails alone; the results say which.
//!
//! Statements are prepared once per connection (the statement cache), each in an exchange
//! of its own the first time; the execution of the whole batch is one write and one round
//! trip. Writing and reading go on together, so a batch larger than the socket buffers
//! cannot stall the server.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::Arc;

use postgres_types::ToSql;

use super::{bounded, Answers, Connection};
use crate::error::{Error, Result};
use crate::protocol::extended::{write_abort, write_bind_execute_in, write_parse, Described};
use crate::protocol::{BackendMessage, TransactionStatus};
use crate::row::Row;

/// Rows of an atomic `execute_many` read ahead before the catalog is asked whether COPY
/// may carry them (see `many_copy`): fewer run row by row, where one more round trip would
/// cost more than COPY saves.
const PROBE_ROWS: usize = 1000;

/// How much of a batch is written ahead of the answers read.
const WRITE_AHEAD: usize = 256 * 1024;

/// Statements to run together; made by [`Connection::batch`] or
/// [`Pool::batch`](crate::Pool::batch).
///
/// ```no_run
/// # async fn f(conn: &mut wirepool::Connection) -> wirepool::Result<()> {
/// let results = conn
///     .batch()
///     .execute("INSERT INTO chunks (file_id, body) VALUES ($1, $2)", &[&7i64, &"fn main() {}"])
///     .execute("UPDATE files SET chunks = chunks + 1 WHERE id = $1", &[&7i64])
///     .query("SELECT count(*) FROM chunks WHERE file_id = $1", &[&7i64])
///     .run()
///     .await?;
/// assert_eq!(results[0].count(), 1);
/// let n: i64 = results[2].rows().expect("a query")[0].get(0);
/// # Ok(()) }
/// ```
#[must_use = "a batch does nothing until run"]
pub struct Batch<'a> {
    on: On<'a>,
    items: Vec<Item<'a>>,
    atomic: bool,
}

/// Where a batch runs.
enum On<'a> {
    Connection(&'a mut Connection),
    Pool(&'a crate::Pool),
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("statements", &self.items.len())
            .field("atomic", &self.atomic)
            .finish()
    }
}

/// One statement of a batch, with its parameters.
pub(crate) struct Item<'a> {
    pub(crate) sql: &'a str,
    pub(crate) params: &'a [&'a (dyn ToSql + Sync)],
    /// Its rows are wanted ([`Batch::query`]), not only its count.
    pub(crate) rows: bool,
}

/// One row of parameters for [`Connection::execute_many`]: a slice or array of
/// `&(dyn ToSql + Sync)`, or a tuple of up to eight owned values (so that rows can be made
/// as they are sent, `(0..n).map(|i| (i, format!("row {i}")))`, without a collection).
pub trait RowParams {
    /// Calls `f` with the row's values.
    fn with_params<R>(&self, f: impl FnOnce(&[&(dyn ToSql + Sync)]) -> R) -> R;
}

impl RowParams for &[&(dyn ToSql + Sync)] {
    fn with_params<R>(&self, f: impl FnOnce(&[&(dyn ToSql + Sync)]) -> R) -> R {
        f(self)
    }
}

impl<const N: usize> RowParams for [&(dyn ToSql + Sync); N] {
    fn with_params<R>(&self, f: impl FnOnce(&[&(dyn ToSql + Sync)]) -> R) -> R {
        f(self)
    }
}

impl RowParams for Vec<&(dyn ToSql + Sync)> {
    fn with_params<R>(&self, f: impl FnOnce(&[&(dyn ToSql + Sync)]) -> R) -> R {
        f(self)
    }
}

macro_rules! tuple_params {
    ($($t:ident $i:tt),+) => {
        impl<$($t: ToSql + Sync),+> RowParams for ($($t,)+) {
            fn with_params<R>(&self, f: impl FnOnce(&[&(dyn ToSql + Sync)]) -> R) -> R {
                f(&[$(&self.$i),+])
            }
        }
    };
}

tuple_params!(A 0);
tuple_params!(A 0, B 1);
tuple_params!(A 0, B 1, C 2);
tuple_params!(A 0, B 1, C 2, D 3);
tuple_params!(A 0, B 1, C 2, D 3, E 4);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// One statement's result in a batch.
#[derive(Debug)]
pub struct BatchResult {
    pub(super) rows: Option<Vec<Row>>,
    pub(super) count: u64,
    pub(super) error: Option<Error>,
}

impl BatchResult {
    /// The rows of a statement added with [`Batch::query`]; `None` for one added with
    /// [`Batch::execute`], or one that failed.
    pub fn rows(&self) -> Option<&[Row]> {
        self.rows.as_deref()
    }

    /// The rows it affected (inserted, updated, deleted) or returned, from its command
    /// tag; 0 if it failed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// In an independent batch, the error of a statement that failed alone (its
    /// [`Error::batch_index`] is set); `None` for one that succeeded. An atomic batch
    /// returns its error from [`Batch::run`] instead.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }
}

impl<'a> Batch<'a> {
    pub(super) fn new(conn: &'a mut Connection) -> Batch<'a> {
        Batch {
            on: On::Connection(conn),
            items: Vec::new(),
            atomic: true,
        }
    }

    pub(crate) fn on_pool(pool: &'a crate::Pool) -> Batch<'a> {
        Batch {
            on: On::Pool(pool),
            items: Vec::new(),
            atomic: true,
        }
    }

    /// Adds a statement whose rows are wanted ([`BatchResult::rows`]).
    pub fn query(mut self, statement: &'a str, params: &'a [&'a (dyn ToSql + Sync)]) -> Self {
        self.items.push(Item {
            sql: statement,
            params,
            rows: true,
        });
        self
    }

    /// Adds a statement whose row count is wanted ([`BatchResult::count`]).
    pub fn execute(mut self, statement: &'a str, params: &'a [&'a (dyn ToSql + Sync)]) -> Self {
        self.items.push(Item {
            sql: statement,
            params,
            rows: false,
        });
        self
    }

    /// Atomic (`true`, the default: one Sync, all take effect or none) or independent
    /// (`false`: a Sync per statement, each succeeds or fails alone).
    pub fn atomic(mut self, atomic: bool) -> Self {
        self.atomic = atomic;
        self
    }

    /// Runs the batch: one result per statement, in the order they were added.
    ///
    /// # Errors
    ///
    /// In an atomic batch, the first failing statement's error, with
    /// [`Error::batch_index`] set; nothing of the batch took effect then (inside the
    /// caller's transaction, the transaction has failed), unless a statement of the batch
    /// ended the transaction keeping its work (the server's tag `COMMIT` or `PREPARE
    /// TRANSACTION`: a `COMMIT` in the batch): what ran before it stays, and the error's
    /// [`Error::may_have_run`] is `Some(true)`. A `ROLLBACK` in the batch likewise ends
    /// the transaction there, undoing what ran before it; the statements after it run
    /// in a new one. A batch whose commit fails after every statement succeeded (a
    /// deferred constraint) fails as a whole, with no `batch_index`: the server does
    /// not say whose row broke the constraint. A parameter that does not
    /// convert is an error before anything is sent. In either mode, a lost connection or
    /// a command timeout (which bounds the whole batch).
    ///
    /// In an independent batch, a statement that fails as its own transaction commits (a
    /// deferred constraint) carries the error in its result, and its count is 0; a
    /// `COMMIT`, `END` or `PREPARE TRANSACTION` the server turned into a rollback, because
    /// the transaction had failed, carries [`ErrorKind::TransactionRolledBack`](crate::ErrorKind::TransactionRolledBack)
    /// in either mode, as [`Transaction::commit`](crate::Transaction::commit) reports it.
    ///
    /// A `COPY … FROM STDIN` or `TO STDOUT` (whose data goes through
    /// [`Connection::copy_in`] / [`Connection::copy_out`]) fails the batch with
    /// [`ErrorKind::CopyUnsupported`](crate::ErrorKind::CopyUnsupported) before anything
    /// is sent; a `COPY` of a server file runs as any statement.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future is safe for the connection, as for any query: the next call
    /// finishes what was sent first. An atomic batch whose Sync was not sent when it was
    /// dropped is rolled back by that Sync's absence (the connection's next request
    /// aborts it); one whose Sync was sent may have taken effect.
    pub async fn run(self) -> Result<Vec<BatchResult>> {
        let Batch { on, items, atomic } = self;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        match on {
            On::Connection(conn) => run_on(conn, &items, atomic).await,
            // One Sync for all, as one request on a lane of the shared path.
            On::Pool(pool) if atomic => pool.atomic_batch(&items).await,
            On::Pool(pool) => {
                // The shared path's refusals, for every statement, before anything is sent.
                for (k, i) in items.iter().enumerate() {
                    pool.check_shared(i.sql)
                        .map_err(|e| e.with_batch_index(k))?;
                }
                Ok(independent_on_pool(pool, &items).await)
            }
        }
    }
}

async fn run_on(
    conn: &mut Connection,
    items: &[Item<'_>],
    atomic: bool,
) -> Result<Vec<BatchResult>> {
    let sql = items.first().map_or("", |i| i.sql);
    let traced = conn.trace_start(sql);
    for i in &items[1..] {
        // Each statement counts for the session's reset as if run alone.
        conn.note_statement(i.sql);
    }
    conn.batch_commit_sent = false;
    let r = bounded!(conn, conn.run_batch(items, atomic)).map_err(|e| conn.lost_batch(e));
    conn.trace_end(traced, sql, &r);
    r
}

/// An independent batch on the pool: every statement on the shared path, each with its
/// Sync, all in flight together (placed in order, as the pool's lanes take them).
async fn independent_on_pool(pool: &crate::Pool, items: &[Item<'_>]) -> Vec<BatchResult> {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;
    type Run<'f> = Pin<Box<dyn Future<Output = BatchResult> + Send + 'f>>;
    let mut runs: Vec<Run<'_>> = items
        .iter()
        .enumerate()
        .map(|(k, i)| -> Run<'_> {
            Box::pin(async move {
                match pool.run_shared(i.sql, i.params).await {
                    Ok(x) => BatchResult {
                        count: x.rows_affected(),
                        rows: i.rows.then_some(x.rows),
                        error: None,
                    },
                    Err(e) => BatchResult {
                        rows: None,
                        count: 0,
                        error: Some(e.with_batch_index(k)),
                    },
                }
            })
        })
        .collect();
    let mut out: Vec<Option<BatchResult>> = items.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (run, slot) in runs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match run.as_mut().poll(cx) {
                    Poll::Ready(r) => *slot = Some(r),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

impl Connection {
    /// A batch of statements on this connection (see [`Batch`]): sent in one write,
    /// answered in one round trip, atomic by default.
    pub fn batch(&mut self) -> Batch<'_> {
        Batch::new(self)
    }

    /// Runs `statement` once for each row of parameters, atomically: all rows take effect
    /// or none (one Sync after the last). Rows are encoded and sent in chunks while the
    /// answers are read, so memory does not grow with the number of rows. Returns the rows
    /// affected in all. [`Connection::execute_many_independent`] commits chunk by chunk.
    ///
    /// **By COPY where it is the same.** Outside a transaction block, 1,000 rows or more of
    /// a plain `INSERT INTO t [(c, ...)] VALUES ($1, ...)` (each value a parameter) go as
    /// binary `COPY t (...) FROM STDIN`, ten times faster or more, when one catalog query
    /// shows that COPY does what the INSERTs would: an ordinary or partitioned table with
    /// no rules, no row-level security, no trigger of a user's, no foreign key into itself,
    /// no deferrable unique key, no default or CHECK that calls a function of a user's (or
    /// a built-in one that runs a query), and each value's column of the parameter's own
    /// type and no domain. One difference remains visible: a column default that reads the
    /// statement (`current_query()`, `statement_timestamp()`) sees the COPY. Everything
    /// else runs row by row. Still one transaction: all rows or none.
    ///
    /// ```no_run
    /// # async fn f(conn: &mut wirepool::Connection, chunks: &[(i64, String)]) -> wirepool::Result<()> {
    /// use wirepool::ToSql;
    /// // Rows borrowed from a collection...
    /// let n = conn
    ///     .execute_many(
    ///         "INSERT INTO chunks (file_id, body) VALUES ($1, $2)",
    ///         chunks.iter().map(|(f, b)| [f as &(dyn ToSql + Sync), b]),
    ///     )
    ///     .await?;
    /// // ...or made as they are sent, as tuples of owned values.
    /// let n = conn
    ///     .execute_many(
    ///         "INSERT INTO numbers (n, label) VALUES ($1, $2)",
    ///         (0..1_000_000i64).map(|i| (i, format!("n{i}"))),
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The first failing row's error, with [`Error::batch_index`] the row's index; nothing
    /// took effect then. A row that does not convert fails the whole batch the same way
    /// (what was sent before it is rolled back). By COPY, a data or constraint error is
    /// found again by running the failing chunk's rows as the INSERT in a transaction
    /// rolled back afterwards, and the INSERT's own error is returned; one that needs rows
    /// of an earlier chunk to recur (a key repeated within the rows) is named from the
    /// server's COPY context where the server writes English, and has no index otherwise.
    /// A lost connection says whether the rows may have taken effect
    /// ([`Error::may_have_run`]: `Some(true)` once their committing Sync was written).
    ///
    /// # Cancel safety
    ///
    /// As [`Batch::run`]: a future dropped before the last row was sent leaves nothing
    /// applied.
    pub async fn execute_many<I, P>(&mut self, statement: &str, rows: I) -> Result<u64>
    where
        I: IntoIterator<Item = P>,
        P: RowParams,
    {
        self.execute_many_in(statement, rows, true).await
    }

    /// As [`Connection::execute_many`], with a Sync after every row: each row succeeds or
    /// fails alone (outside a transaction, each is its own). Returns the rows affected by
    /// those that succeeded.
    ///
    /// # Errors
    ///
    /// The first failing row's error, with [`Error::batch_index`] its index, once every
    /// row has been answered (the rows after it still ran).
    ///
    /// # Cancel safety
    ///
    /// Rows sent before the future was dropped may have taken effect.
    pub async fn execute_many_independent<I, P>(&mut self, statement: &str, rows: I) -> Result<u64>
    where
        I: IntoIterator<Item = P>,
        P: RowParams,
    {
        self.execute_many_in(statement, rows, false).await
    }

    async fn execute_many_in<I, P>(&mut self, statement: &str, rows: I, atomic: bool) -> Result<u64>
    where
        I: IntoIterator<Item = P>,
        P: RowParams,
    {
        let traced = self.trace_start(statement);
        self.batch_commit_sent = false;
        let r = bounded!(self, self.run_many(statement, rows.into_iter(), atomic))
            .map_err(|e| self.lost_batch(e));
        let count = r.as_ref().ok().copied();
        self.trace_end_counted(traced, statement, &r, count);
        r
    }

    async fn run_many<I, P>(&mut self, sql: &str, mut rows: I, atomic: bool) -> Result<u64>
    where
        I: Iterator<Item = P>,
        P: RowParams,
    {
        self.finish_pending().await?;
        let op = operation(sql);
        if copies_with_client(op, sql) {
            return Err(copy_refused());
        }
        let (name, described) = self.prepared(sql).await?;
        // Outside a transaction block, an atomic INSERT of many rows may go by COPY
        // (see `many_copy`): the rows read ahead to decide go first either way.
        let shape = (atomic && self.transaction_status == TransactionStatus::Idle)
            .then(|| crate::sql::insert_shape::insert_shape(sql))
            .flatten();
        if let Some(shape) = shape {
            let head: Vec<P> = rows.by_ref().take(PROBE_ROWS).collect();
            if head.len() == PROBE_ROWS {
                if let Some(plan) = self.copy_plan(&shape, &described).await? {
                    let rows = head.into_iter().chain(rows);
                    return self.run_many_copy(sql, &name, &described, plan, rows).await;
                }
            }
            let rows = head.into_iter().chain(rows);
            return self.run_many_rows(sql, name, described, rows, atomic).await;
        }
        self.run_many_rows(sql, name, described, rows, atomic).await
    }

    /// `execute_many` row by row: a Bind and Execute per row.
    async fn run_many_rows<I, P>(
        &mut self,
        sql: &str,
        name: Arc<str>,
        described: Described,
        mut rows: I,
        atomic: bool,
    ) -> Result<u64>
    where
        I: Iterator<Item = P>,
        P: RowParams,
    {
        let unnamed = name.is_empty();
        let commit = ends_transaction(operation(sql));
        let mut answers = Answers::counting(atomic);
        let mut sent = 0usize;
        let mut done = false;
        while !done || !answers.complete(sent) {
            while !done && self.write_buf.len() < WRITE_AHEAD {
                let Some(row) = rows.next() else {
                    done = true;
                    if atomic && sent > 0 {
                        crate::protocol::extended::write_sync(&mut self.write_buf);
                        self.owe_ready(true);
                        self.owes_sync = false;
                        self.batch_open = false;
                        self.batch_commit_sent = true;
                    }
                    break;
                };
                let written = row.with_params(|params| {
                    self.write_one(sql, &name, &described, params, unnamed, !atomic)
                });
                if let Err(e) = written {
                    let e = Error::from(e).with_batch_index(sent);
                    return Err(self.abandon_batch(atomic, sent, answers, e).await);
                }
                if !atomic {
                    self.owe_ready(true);
                    // Each row commits on its own: the first may take effect now.
                    self.batch_commit_sent = true;
                }
                answers.expect_rows(described.columns.clone(), false, commit);
                sent += 1;
            }
            if done && sent == 0 {
                break;
            }
            self.pump(&mut answers).await?;
            // A batch of a million rows shares its worker: the socket may never say
            // "later" while the server keeps up.
            if !done {
                tokio::task::yield_now().await;
            }
        }
        self.in_flight = false;
        self.check_encoding()?;
        answers.into_count()
    }

    /// One statement's Bind/Execute (with Parse first for the unnamed statement), and its
    /// Sync when `sync`.
    pub(super) fn write_one(
        &mut self,
        sql: &str,
        name: &str,
        described: &Described,
        params: &[&(dyn ToSql + Sync)],
        reparse: bool,
        sync: bool,
    ) -> crate::protocol::Result<()> {
        let mark = self.write_buf.len();
        if reparse {
            write_parse("", sql, &described.params, &[], &mut self.write_buf)?;
        }
        let r = write_bind_execute_in(
            name,
            &described.params,
            params,
            reparse,
            sync,
            &mut self.write_buf,
        );
        if r.is_err() {
            self.write_buf.truncate(mark);
        }
        self.in_flight = true;
        self.owes_sync = !sync;
        // Until its Sync, an atomic batch is open: if the caller leaves now, the next
        // request aborts it rather than committing half of it.
        self.batch_open = !sync;
        r
    }

    /// The statement prepared on this connection (cached), or prepared now.
    /// The prepare's Sync is owed: it comes with the batch's.
    pub(super) async fn prepared(&mut self, sql: &str) -> Result<(Arc<str>, Described)> {
        match self.statements.get(sql) {
            Some(hit) => Ok(hit),
            None => self.prepare_exchange(sql).await,
        }
    }

    async fn run_batch(&mut self, items: &[Item<'_>], atomic: bool) -> Result<Vec<BatchResult>> {
        self.finish_pending().await?;
        let ops: Vec<_> = items.iter().map(|i| operation(i.sql)).collect();
        if let Some(k) = items
            .iter()
            .zip(&ops)
            .position(|(i, op)| copies_with_client(*op, i.sql))
        {
            return Err(copy_refused().with_batch_index(k));
        }
        // Prepared first, each distinct statement once; with more distinct statements
        // than the cache holds (or none cached), each is parsed again as the unnamed one.
        let mut prepared: HashMap<&str, (Arc<str>, Described)> = HashMap::new();
        let distinct: std::collections::HashSet<&str> = items.iter().map(|i| i.sql).collect();
        let reparse_all = distinct.len() > self.statements.capacity();
        for (k, item) in items.iter().enumerate() {
            if prepared.contains_key(item.sql) {
                continue;
            }
            match self.prepared(item.sql).await {
                Ok(p) => {
                    prepared.insert(item.sql, p);
                }
                Err(e) => {
                    self.finish_pending().await?;
                    return Err(e.with_batch_index(k));
                }
            }
        }
        // Every value converted before anything is sent.
        let mark = self.write_buf.len();
        for (k, item) in items.iter().enumerate() {
            let (name, described) = &prepared[item.sql];
            let unnamed = reparse_all || name.is_empty();
            let name = if unnamed { "" } else { name };
            let sync = !atomic || k + 1 == items.len();
            if let Err(e) = self.write_one(item.sql, name, described, item.params, unnamed, sync) {
                self.write_buf.truncate(mark);
                self.finish_pending().await?;
                return Err(Error::from(e).with_batch_index(k));
            }
            if sync {
                self.owe_ready(true);
            }
        }
        self.owes_sync = false;
        self.batch_open = false;
        self.batch_commit_sent = true;
        let mut answers = Answers::new(atomic);
        for (item, op) in items.iter().zip(ops) {
            let (_, described) = &prepared[item.sql];
            answers.expect_rows(described.columns.clone(), item.rows, ends_transaction(op));
        }
        while !answers.complete(items.len()) {
            self.pump(&mut answers).await?;
        }
        self.in_flight = false;
        self.check_encoding()?;
        answers.into_results()
    }

    /// A batch's connection was lost (or broke) before its answer: the error says whether
    /// the batch may have taken effect ([`Error::may_have_run`]): `Some(true)` once the
    /// Sync that commits it was written (for an independent batch, the first row's),
    /// `Some(false)` before (the server rolls back what it did not see committed). A FATAL
    /// error is such a loss (see [`Connection::lost_by`]).
    fn lost_batch(&self, e: Error) -> Error {
        if self.lost_by(&e) && e.may_have_run().is_none() {
            e.with_sent(self.batch_commit_sent)
        } else {
            e
        }
    }

    /// Writes what is buffered and reads what came, feeding the answers.
    async fn pump(&mut self, answers: &mut Answers) -> Result<()> {
        poll_fn(|cx| self.poll_pipeline(cx)).await?;
        while let Some(msg) = self.pipeline_message()? {
            match msg {
                BackendMessage::NoticeResponse(n) => self.notice(&n),
                BackendMessage::CopyInResponse => {
                    // A client COPY is refused before the batch is sent; one that got
                    // through anyway cannot be ended within the batch's exchange (the
                    // server ignores the Syncs it reads while it waits for the data), so
                    // the connection is given up rather than left waiting.
                    self.broken = true;
                    return Err(Error::copy_unsupported().with_sent(true));
                }
                // The session ends (the end of the stream follows): its reason is the
                // error, whatever statement it came during.
                BackendMessage::ErrorResponse(e) if e.is_fatal() => {
                    self.broken = true;
                    return Err(Error::db_boxed(e));
                }
                other => {
                    if let Err(e) = answers.feed(other) {
                        self.broken = true;
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// A row of an atomic `execute_many` did not convert after others were sent: the
    /// server is made to fail the implicit transaction, so what was sent is rolled back.
    /// An earlier row's own failure, if the server reports one, is the error returned.
    async fn abandon_batch(
        &mut self,
        atomic: bool,
        sent: usize,
        mut answers: Answers,
        e: Error,
    ) -> Error {
        if sent == 0 {
            self.owes_sync = false;
            if let Err(x) = self.finish_pending().await {
                return x;
            }
            return e;
        }
        if atomic {
            write_abort(&mut self.write_buf);
        }
        crate::protocol::extended::write_sync(&mut self.write_buf);
        self.owe_ready(true);
        self.owes_sync = false;
        self.batch_open = false;
        answers.abort_expected();
        while !answers.complete(sent) {
            if let Err(x) = self.pump(&mut answers).await {
                return x;
            }
        }
        self.in_flight = false;
        // A row sent before it that failed is the first failing row.
        answers.take_error().unwrap_or(e)
    }
}

/// A statement's operation keyword as PostgreSQL's grammar reads it (`COPY`, `COMMIT`,
/// ...), from its verdict, cached per text.
fn operation(sql: &str) -> Option<&'static str> {
    crate::sql::verdict(sql).class.operation
}

/// Whether `sql`, of operation `op`, is a `COPY … FROM STDIN` / `TO STDOUT`, which a batch
/// cannot run (the data goes through `copy_in` / `copy_out`); only a `COPY` is read
/// further.
fn copies_with_client(op: Option<&str>, sql: &str) -> bool {
    op == Some("COPY") && crate::sql::copies_with_client(sql)
}

/// The error of a batch refused for a client `COPY`: nothing was sent.
fn copy_refused() -> Error {
    Error::copy_unsupported()
        .with_detail(
            "in a batch, a COPY FROM STDIN or TO STDOUT is refused before anything is sent",
        )
        .with_sent(false)
}

/// Whether operation `op` is a `COMMIT`, `END` or `PREPARE TRANSACTION` (a `PREPARE` of a
/// statement is tagged `PREPARE`): its tag `ROLLBACK` then means the transaction it ended
/// had failed.
fn ends_transaction(op: Option<&str>) -> bool {
    matches!(op, Some("COMMIT" | "END" | "PREPARE"))
}
