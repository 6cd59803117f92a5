//! Portals: a statement bound to its parameters inside a transaction, whose rows are
//! fetched a page at a time ([`Connection::bind`], [`Connection::query_portal`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use postgres_types::ToSql;

use super::query::ToStatement;
use super::{bounded, Connection};
use crate::error::{Error, Result};
use crate::protocol::extended::{write_bind_portal, write_close_portals, write_execute_portal};
use crate::protocol::{Column, TransactionStatus};
use crate::row::{Execute, Row};

/// Portals dropped by the caller, to close with the connection's next request; `any` lets
/// every request check for them with one relaxed load instead of a lock.
#[derive(Debug, Default)]
pub(crate) struct DroppedList {
    any: AtomicBool,
    names: Mutex<Vec<String>>,
}

pub(crate) type DroppedPortals = Arc<DroppedList>;

impl DroppedList {
    /// Whether any portal waits to be closed.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }
}

/// A bound statement inside a transaction, read a page at a time with
/// [`Connection::query_portal`]. It lasts until the transaction ends; dropped earlier, it
/// is closed on the server with the connection's next request.
#[derive(Debug)]
pub struct Portal {
    name: String,
    columns: Arc<[Column]>,
    /// The connection's list of portals to close, and its identity: a portal is only
    /// read on the connection that bound it.
    dropped: DroppedPortals,
}

impl Portal {
    /// The columns of its rows.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.dropped
            .names
            .lock()
            .push(std::mem::take(&mut self.name));
        self.dropped.any.store(true, Ordering::Relaxed);
    }
}

impl Connection {
    /// Binds `statement` to `params` as a portal of the transaction in progress, as
    /// tokio-postgres's `Transaction::bind`; read its rows a page at a time with
    /// [`Connection::query_portal`].
    ///
    /// ```no_run
    /// # async fn f(conn: &mut wirepool::Connection) -> wirepool::Result<()> {
    /// let mut tx = conn.transaction().await?;
    /// let portal = tx.bind("SELECT g FROM generate_series(1, $1) g", &[&100_000i32]).await?;
    /// loop {
    ///     let page = tx.query_portal(&portal, 1000).await?;
    ///     if page.is_empty() {
    ///         break;
    ///     }
    ///     // ... 1,000 rows at a time
    /// }
    /// drop(portal);
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// An invalid-input error outside a transaction (a portal would end with the
    /// statement); otherwise as [`Connection::query`].
    ///
    /// # Cancel safety
    ///
    /// As [`Connection::query`]: the next call reads the Bind's answer first. The portal
    /// lives in the transaction, which a drop of the transaction ends.
    pub async fn bind<T>(&mut self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Portal>
    where
        T: ?Sized + ToStatement,
    {
        let sql = statement.sql();
        bounded!(self, async {
            self.finish_pending().await?;
            if self.transaction_status == TransactionStatus::Idle {
                return Err(Error::invalid_input(
                    "bind needs a transaction: a portal lasts until the transaction ends \
                     (start one with transaction() first)",
                ));
            }
            self.in_flight = true;
            let (name, described) = match self.statements.get(sql) {
                Some(hit) => hit,
                None => self.prepare_exchange(sql).await?,
            };
            self.portal_seq += 1;
            let portal = format!("wirepool_portal_{}", self.portal_seq);
            let mark = self.write_buf.len();
            if let Err(e) = write_bind_portal(
                &portal,
                &name,
                &described.params,
                params,
                &mut self.write_buf,
            ) {
                self.write_buf.truncate(mark);
                self.finish_pending().await?;
                return Err(e.into());
            }
            self.owes_sync = false;
            self.owe_ready(true);
            self.flush().await?;
            let mut answer = Execute::new(described.columns.clone());
            let executed = self.read_steps(|m| answer.handle(m)).await?;
            self.in_flight = false;
            if let Some(e) = executed.error {
                return Err(Error::db_boxed(e));
            }
            Ok(Portal {
                name: portal,
                columns: described.columns.clone(),
                dropped: self.dropped_portals.clone(),
            })
        })
    }

    /// The next `max_rows` rows of `portal` (all that are left when `max_rows` is 0 or
    /// less); an empty page once it is read to its end.
    ///
    /// # Errors
    ///
    /// An invalid-input error for a portal of another connection; the server's error
    /// (`34000` once the transaction that bound it has ended); as [`Connection::query`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future mid-way leaves the connection consistent: the next call on it
    /// finishes what was sent and reads its answer first.
    pub async fn query_portal(&mut self, portal: &Portal, max_rows: i32) -> Result<Vec<Row>> {
        if !Arc::ptr_eq(&portal.dropped, &self.dropped_portals) {
            return Err(Error::invalid_input(
                "this portal was bound on another connection",
            ));
        }
        bounded!(self, async {
            self.finish_pending().await?;
            self.in_flight = true;
            write_execute_portal(&portal.name, max_rows, &mut self.write_buf)?;
            self.owe_ready(true);
            self.flush().await?;
            let mut answer = Execute::new(portal.columns.clone());
            let executed = self.read_steps(|m| answer.handle(m)).await?;
            self.in_flight = false;
            match executed.error {
                Some(e) => Err(Error::db_boxed(e)),
                None => Ok(executed.rows),
            }
        })
    }

    /// Queues Close for the portals the caller dropped (one Sync for all); the answer is
    /// read with whatever is pending.
    pub(super) fn close_dropped_portals(&mut self) {
        self.dropped_portals.any.store(false, Ordering::Relaxed);
        let names = std::mem::take(&mut *self.dropped_portals.names.lock());
        if names.iter().any(|n| !n.is_empty()) {
            write_close_portals(&names, &mut self.write_buf);
            self.owe_ready(true);
        }
    }
}
