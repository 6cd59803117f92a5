//! Transactions: BEGIN, then COMMIT or ROLLBACK, and ROLLBACK when dropped unfinished.

use std::ops::{Deref, DerefMut};

use super::{bounded, Connection};
use crate::error::Result;
use crate::protocol::SimpleQuery;

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
        bounded!(self, self.finish_pending())?;
        let begin = self.start_simple("BEGIN")?;
        let tx = Transaction {
            conn: self,
            done: false,
        };
        // From here a drop of this future drops `tx`, which queues the ROLLBACK; so does
        // an error (a ROLLBACK outside a transaction only warns).
        let conn = &mut *tx.conn;
        bounded!(conn, conn.finish_simple(begin, SimpleQuery::finish_rows))?;
        Ok(tx)
    }
}

impl Transaction<'_> {
    /// Commits. A transaction that had already failed is rolled back by the server
    /// instead, as PostgreSQL does; the failed statement's error was returned then.
    ///
    /// # Errors
    ///
    /// The server's error (a deferred constraint, a serialization failure), a command
    /// timeout, or an I/O error.
    pub async fn commit(mut self) -> Result<()> {
        self.end("COMMIT").await
    }

    /// Rolls back.
    ///
    /// # Errors
    ///
    /// A command timeout or an I/O error.
    pub async fn rollback(mut self) -> Result<()> {
        self.end("ROLLBACK").await
    }

    async fn end(&mut self, sql: &str) -> Result<()> {
        let conn = &mut *self.conn;
        bounded!(conn, conn.finish_pending())?;
        // Queued without an await in between: from here on the transaction ends with this
        // statement, whatever happens to the future.
        let query = self.conn.start_simple(sql)?;
        self.done = true;
        let conn = &mut *self.conn;
        bounded!(conn, conn.finish_simple(query, SimpleQuery::finish_rows)).map(|_| ())
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
            if self.conn.start_simple("ROLLBACK").is_ok() {
                self.conn.in_flight = abandoned;
            }
        }
    }
}
