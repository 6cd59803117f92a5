//! Transactions: BEGIN (with options from [`TransactionBuilder`]), then COMMIT or
//! ROLLBACK, and ROLLBACK when dropped unfinished; savepoints nested inside them.

use std::ops::{Deref, DerefMut};

use super::notify::quote_ident;
use super::{bounded, Connection};
use crate::error::{Error, Result};
use crate::protocol::SimpleQuery;

/// A transaction's isolation level (`SET TRANSACTION ISOLATION LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IsolationLevel {
    /// `READ UNCOMMITTED` (PostgreSQL runs it as READ COMMITTED).
    ReadUncommitted,
    /// `READ COMMITTED`, PostgreSQL's default.
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`: a conflict fails one transaction with SQLSTATE 40001, to retry.
    Serializable,
}

impl IsolationLevel {
    fn sql(self) -> &'static str {
        match self {
            IsolationLevel::ReadUncommitted => "READ UNCOMMITTED",
            IsolationLevel::ReadCommitted => "READ COMMITTED",
            IsolationLevel::RepeatableRead => "REPEATABLE READ",
            IsolationLevel::Serializable => "SERIALIZABLE",
        }
    }
}

/// A transaction's options, from [`Connection::build_transaction`]; [`start`]
/// begins it.
///
/// [`start`]: TransactionBuilder::start
#[derive(Debug)]
#[must_use = "a builder does nothing until start() is awaited"]
pub struct TransactionBuilder<'a> {
    conn: &'a mut Connection,
    isolation_level: Option<IsolationLevel>,
    read_only: Option<bool>,
    deferrable: Option<bool>,
}

impl<'a> TransactionBuilder<'a> {
    /// The isolation level (the session's default if not set).
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.isolation_level = Some(level);
        self
    }

    /// `READ ONLY` (true) or `READ WRITE` (false); a write in a read-only transaction
    /// fails with SQLSTATE 25006.
    pub fn read_only(mut self, yes: bool) -> Self {
        self.read_only = Some(yes);
        self
    }

    /// `DEFERRABLE` (true) or `NOT DEFERRABLE`; matters for a serializable read-only
    /// transaction, which then waits for a snapshot that cannot fail.
    pub fn deferrable(mut self, yes: bool) -> Self {
        self.deferrable = Some(yes);
        self
    }

    /// Begins the transaction with these options.
    ///
    /// # Errors
    ///
    /// As [`Connection::transaction`].
    ///
    /// # Cancel safety
    ///
    /// As [`Connection::transaction`]: dropped once BEGIN is queued, the transaction's
    /// ROLLBACK is queued too.
    pub async fn start(self) -> Result<Transaction<'a>> {
        let mut modes = Vec::new();
        if let Some(l) = self.isolation_level {
            modes.push(format!("ISOLATION LEVEL {}", l.sql()));
        }
        match self.read_only {
            Some(true) => modes.push("READ ONLY".into()),
            Some(false) => modes.push("READ WRITE".into()),
            None => {}
        }
        match self.deferrable {
            Some(true) => modes.push("DEFERRABLE".into()),
            Some(false) => modes.push("NOT DEFERRABLE".into()),
            None => {}
        }
        let sql = if modes.is_empty() {
            "BEGIN".to_string()
        } else {
            format!("BEGIN {}", modes.join(", "))
        };
        self.conn.begin(&sql, None).await
    }
}

/// A transaction on a connection, from [`Connection::transaction`]. Derefs to the
/// connection, so every query method works inside it.
///
/// Dropped without [`commit`](Transaction::commit) or [`rollback`](Transaction::rollback)
/// (an error returned with `?`, a panic, a cancelled future), it is rolled back: a ROLLBACK
/// is queued and goes out before the connection's next query. A pool's connection is
/// rolled back before it is handed to anyone else.
#[must_use = "a transaction is rolled back when dropped; call commit()"]
#[derive(Debug)]
pub struct Transaction<'a> {
    conn: &'a mut Connection,
    done: bool,
    /// A savepoint's name (quoted); `None` for the transaction itself.
    savepoint: Option<String>,
    /// Savepoints nested inside this one so far, for the names of the next.
    depth: u32,
}

impl Connection {
    /// Begins a transaction.
    ///
    /// ```no_run
    /// # async fn f(conn: &mut wirepool::Connection) -> wirepool::Result<()> {
    /// let mut tx = conn.transaction().await?;
    /// tx.execute("UPDATE accounts SET balance = balance - $1 WHERE id = $2", &[&100i64, &1i32])
    ///     .await?;
    /// tx.execute("UPDATE accounts SET balance = balance + $1 WHERE id = $2", &[&100i64, &2i32])
    ///     .await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Connection::simple_query`] (BEGIN inside a transaction only warns).
    ///
    /// # Cancel safety
    ///
    /// BEGIN is queued and the [`Transaction`] made before anything is awaited: if this
    /// future is dropped after that (a `tokio::time::timeout`, a `select!`), the dropped
    /// transaction queues its ROLLBACK as any dropped transaction does, so the connection
    /// is never left inside a transaction its caller does not know of. A later statement
    /// on the connection runs after that ROLLBACK, in autocommit.
    pub async fn transaction(&mut self) -> Result<Transaction<'_>> {
        self.begin("BEGIN", None).await
    }

    /// A transaction with options: isolation level, read-only, deferrable.
    ///
    /// ```no_run
    /// # async fn f(conn: &mut wirepool::Connection) -> wirepool::Result<()> {
    /// use wirepool::IsolationLevel;
    ///
    /// let tx = conn
    ///     .build_transaction()
    ///     .isolation_level(IsolationLevel::Serializable)
    ///     .read_only(true)
    ///     .deferrable(true)
    ///     .start()
    ///     .await?;
    /// # tx.commit().await }
    /// ```
    pub fn build_transaction(&mut self) -> TransactionBuilder<'_> {
        TransactionBuilder {
            conn: self,
            isolation_level: None,
            read_only: None,
            deferrable: None,
        }
    }

    /// Sends `sql` (BEGIN or SAVEPOINT) and makes its guard at once (see the cancel
    /// safety of [`Connection::transaction`]).
    async fn begin(&mut self, sql: &str, savepoint: Option<String>) -> Result<Transaction<'_>> {
        bounded!(self, self.finish_pending())?;
        let begin = self.start_simple(sql)?;
        let tx = Transaction {
            conn: self,
            done: false,
            savepoint,
            depth: 0,
        };
        // From here a drop of this future drops `tx`, which queues the ROLLBACK; so does
        // an error (a ROLLBACK outside a transaction only warns).
        let conn = &mut *tx.conn;
        bounded!(conn, conn.finish_simple(begin, SimpleQuery::finish_rows))?;
        Ok(tx)
    }
}

impl Transaction<'_> {
    /// Commits (for a savepoint: releases it, its work kept for the transaction's commit).
    ///
    /// # Errors
    ///
    /// The server's error (a deferred constraint, a serialization failure), a command
    /// timeout, or an I/O error. A transaction that had already failed is rolled back by
    /// the server instead (its answer to COMMIT is ROLLBACK): that is an error of kind
    /// [`TransactionRolledBack`](crate::ErrorKind::TransactionRolledBack), never a commit.
    ///
    /// # Cancel safety
    ///
    /// COMMIT (or RELEASE) is queued before the first await: dropped after that, it still
    /// runs, and the connection's next call reads its answer first; whether it committed is
    /// then unknown to this caller, as when a connection is lost after COMMIT was sent.
    /// Dropped before (nothing awaited yet), the transaction rolls back as any dropped
    /// transaction does.
    ///
    /// When the connection is lost (or the server ends the session with a FATAL error)
    /// during a COMMIT, [`Error::may_have_run`] says whether the transaction may have
    /// committed: `Some(true)` once COMMIT was queued (the server may have committed and
    /// not answered), `Some(false)` before (the server rolls back a transaction it did not
    /// see end).
    pub async fn commit(mut self) -> Result<()> {
        let sql = match &self.savepoint {
            Some(name) => format!("RELEASE SAVEPOINT {name}"),
            None => "COMMIT".to_string(),
        };
        let ended = self.end(&sql).await;
        let tag = ended.map_err(|e| match self.savepoint {
            None if e.may_have_run().is_none() && self.conn.lost_by(&e) => e.with_sent(self.done),
            _ => e,
        })?;
        if self.savepoint.is_none() && tag.as_deref() == Some("ROLLBACK") {
            return Err(Error::rolled_back());
        }
        Ok(())
    }

    /// Rolls back (for a savepoint: to the savepoint, the transaction going on).
    ///
    /// # Errors
    ///
    /// A command timeout or an I/O error.
    ///
    /// # Cancel safety
    ///
    /// ROLLBACK is queued before the first await (or, dropped before that, by the
    /// transaction's drop): the transaction is rolled back either way.
    pub async fn rollback(mut self) -> Result<()> {
        let sql = self.rollback_sql();
        self.end(&sql).await.map(|_| ())
    }

    fn rollback_sql(&self) -> String {
        match &self.savepoint {
            Some(name) => format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"),
            None => "ROLLBACK".to_string(),
        }
    }

    /// A savepoint named `name` (quoted as an identifier) inside this transaction, as a
    /// nested [`Transaction`]: `commit` releases it, `rollback` or a drop rolls back to it,
    /// and the outer transaction goes on either way.
    ///
    /// # Errors
    ///
    /// As [`Connection::transaction`].
    ///
    /// # Cancel safety
    ///
    /// As [`Connection::transaction`]: SAVEPOINT is queued and the nested transaction
    /// made before anything is awaited; dropped after that, it rolls back to the savepoint
    /// as any dropped nested transaction does.
    pub async fn savepoint(&mut self, name: &str) -> Result<Transaction<'_>> {
        let quoted = quote_ident(name);
        let sql = format!("SAVEPOINT {quoted}");
        self.conn.begin(&sql, Some(quoted)).await
    }

    /// A nested transaction: a savepoint with a generated name, as tokio-postgres's
    /// `Transaction::transaction`.
    ///
    /// # Errors
    ///
    /// As [`Connection::transaction`].
    ///
    /// # Cancel safety
    ///
    /// As [`Transaction::savepoint`].
    pub async fn transaction(&mut self) -> Result<Transaction<'_>> {
        self.depth += 1;
        let name = match &self.savepoint {
            Some(outer) => format!("{}_{}", outer.trim_matches('"'), self.depth),
            None => format!("wirepool_sp_{}", self.depth),
        };
        self.savepoint(&name).await
    }

    /// Ends with `sql`; returns the command tag of its last statement.
    async fn end(&mut self, sql: &str) -> Result<Option<String>> {
        let conn = &mut *self.conn;
        bounded!(conn, conn.finish_pending())?;
        // Queued without an await in between: from here on the transaction ends with this
        // statement, whatever happens to the future.
        let query = self.conn.start_simple(sql)?;
        self.done = true;
        let conn = &mut *self.conn;
        let sets = bounded!(conn, conn.finish_simple(query, SimpleQuery::finish))?;
        Ok(sets
            .last()
            .and_then(|s| s.command_tag())
            .map(str::to_string))
    }
}

impl Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl DerefMut for Transaction<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done && !self.conn.is_broken() {
            // A statement of the transaction abandoned part-way stays marked in flight, so
            // that a pool's reset cancels it rather than wait for it (it may hold locks).
            let abandoned = self.conn.query_in_flight();
            // Sent before the next query; its answer is read then.
            let sql = self.rollback_sql();
            if self.conn.start_simple(&sql).is_ok() {
                self.conn.in_flight = abandoned;
            }
        }
    }
}
