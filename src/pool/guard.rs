//! The guard of a checked-out connection, and what happens when it comes back.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use super::{Pooled, Shared};
use crate::conn::Connection;
use crate::error::{Error, Result};
use crate::observe::leak::LeakDetector;
use crate::observe::{CloseReason, ErrorType};
use crate::pool_core::Holder;
use crate::TransactionStatus;

/// How long the pool gives a returned connection to be reset (drain, ROLLBACK) and a
/// cancelled query to end, before it discards the connection.
const RESET_GRACE: Duration = crate::conn::CANCEL_GRACE;

/// A connection checked out of the pool. Derefs to [`Connection`], so every query method
/// works on it (`query`, `execute`, `simple_query`, `transaction`, ...), each bounded by the
/// pool's command timeout; dropping it returns the connection to the pool.
///
/// On return: a broken connection is discarded (and replaced as needed); one left inside a
/// transaction (status `T` or `E`) is rolled back first, or discarded if that fails; one
/// whose query future was dropped mid-answer has that query cancelled and its answer
/// drained, or is discarded; one whose session a caller changed is reset under the
/// pool's [`SessionReset`](crate::SessionReset) policy. Settings the pool applies (the
/// command timeout, the statement cache's capacity) and a caller changed through the
/// guard are the pool's again. The reset runs in a pool task; until it is done the
/// connection is the pool's (neither idle nor active), so it is never handed out.
#[must_use = "dropping the guard returns the connection at once"]
pub struct PooledConnection {
    shared: Arc<Shared>,
    conn: Option<Box<Pooled>>,
    site: &'static Location<'static>,
    /// Monitor-clock milliseconds of the checkout.
    checked_out_ms: u64,
    /// When the checkout began, for the use-time statistic.
    checked_out: super::use_clock::Stamp,
    /// Whether the leak detector saw this checkout.
    leak_tracked: bool,
}

impl fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("id", &self.conn.as_ref().map(|p| p.id))
            .field("acquired_at", &format_args!("{}", self.site))
            .finish()
    }
}

impl PooledConnection {
    /// The checkout of `conn`, which began at `now` (the reading that ended a wait, or a
    /// new one).
    pub(super) fn new(
        shared: Arc<Shared>,
        mut conn: Box<Pooled>,
        site: &'static Location<'static>,
        now_instant: super::use_clock::Stamp,
    ) -> Self {
        let id = conn.id;
        conn.conn
            .set_checkout(Some(crate::conn::Checkout { id, site }));
        let now = shared.now_ms();
        let leak_tracked = match &shared.leak {
            Some(d) => {
                d.checkout(&conn.leak_slot, site, now);
                true
            }
            None => false,
        };
        PooledConnection {
            shared,
            conn: Some(conn),
            site,
            checked_out_ms: now,
            checked_out: now_instant,
            leak_tracked,
        }
    }

    /// Ends the checkout for the leak detector, logging the return of a reported leak.
    fn end_checkout(&mut self, p: &Pooled) {
        if !std::mem::take(&mut self.leak_tracked) {
            return;
        }
        if let Some(held) = LeakDetector::checkin(&p.leak_slot, self.shared.now_ms()) {
            super::leak_task::returned(&self.shared, p.id, held, self.site, true);
        }
    }

    /// The checkout is the pool's own (a lane of the shared path, which may hold it as long
    /// as statements keep coming): the leak detector does not watch it.
    pub(super) fn pool_owned(&mut self) {
        if std::mem::take(&mut self.leak_tracked) {
            if let Some(p) = &self.conn {
                if let Some(held) = LeakDetector::checkin(&p.leak_slot, self.shared.now_ms()) {
                    super::leak_task::returned(&self.shared, p.id, held, self.site, false);
                }
            }
        }
    }

    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn pooled(&self) -> &Pooled {
        self.conn
            .as_ref()
            .expect("the connection is present until drop")
    }

    fn pooled_mut(&mut self) -> &mut Pooled {
        self.conn
            .as_mut()
            .expect("the connection is present until drop")
    }

    /// The pool's id for this connection (as in leak reports).
    pub fn id(&self) -> u64 {
        self.pooled().id
    }

    /// Where `acquire()` was called for this checkout.
    pub fn acquired_at(&self) -> &'static Location<'static> {
        self.site
    }

    /// Takes the connection out of the pool for good; the pool opens another as needed.
    /// The connection keeps no tie to the pool: no command timeout (set one with
    /// [`Connection::set_command_timeout`]), its own statement-cache counts.
    pub fn detach(mut self) -> Connection {
        let mut p = self.take_back();
        self.shared.counters.record_closed(CloseReason::Caller);
        self.shared.forget(Holder::Caller);
        p.conn.set_command_timeout(None);
        p.conn.set_timeout_hook(None);
        p.conn.set_trace(Arc::default());
        p.conn.set_checkout(None);
        p.conn
            .set_statement_cache_stats(std::sync::Arc::new(crate::conn::CacheStats::default()));
        p.conn
    }

    /// Closes the connection instead of returning it.
    pub fn discard(mut self) {
        let p = self.take_back();
        self.shared.discard(p, Holder::Caller, CloseReason::Caller);
    }

    /// Ends the checkout: the connection leaves the guard, the leak detector and the
    /// statistics hear of its return.
    fn take_back(&mut self) -> Box<Pooled> {
        let mut p = self
            .conn
            .take()
            .expect("the connection is present until drop");
        self.end_checkout(&p);
        let now = super::use_clock::Stamp::now();
        let held = now.since(self.checked_out);
        p.rested_from = now;
        self.shared.counters.record_use(&mut p.tally, held);
        #[cfg(feature = "otel")]
        if let Some(o) = &self.shared.otel {
            o.used(held);
        }
        p
    }
}

impl Deref for PooledConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.pooled().conn
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.pooled_mut().conn
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if self.conn.is_none() {
            return;
        }
        let mut p = self.take_back();
        let shared = &self.shared;
        if p.conn.is_broken() {
            // Broken because its server is no longer of the kind asked for: not an error of
            // the connection, and the pool's other connections to that server go too.
            if p.conn.server_kind_changed() {
                shared.server_kind_changed(&p.conn);
                shared.discard(p, Holder::Caller, CloseReason::ValidationFailed);
                return;
            }
            shared.record_connection_error(
                ErrorType::Broken,
                "Connection returned broken",
                shared.wall(self.checked_out_ms),
            );
            shared.discard(p, Holder::Caller, CloseReason::Broken);
            return;
        }
        // What no reset undoes (LOAD, setseed(), a dblink connection): closed, not handed
        // on, whatever the reset policy.
        if p.conn.outlives_reset() {
            shared.discard(p, Holder::Caller, CloseReason::ResetFailed);
            return;
        }
        // What the caller left unread is not the next caller's.
        p.conn.clear_notifications();
        // A caller changed a setting the pool applies: the pool's own again (no round trip).
        if p.conn.take_settings_changed() {
            shared.configure(&mut p.conn);
        }
        let reset_session = shared.needs_session_reset(&p.conn);
        if reset_session
            || p.conn.is_busy()
            || p.conn.transaction_status() != TransactionStatus::Idle
        {
            // Until the reset is done the connection is the pool's: neither idle nor
            // checked out, and never handed to anyone.
            shared.core.hand_to_pool();
            let shared = shared.clone();
            shared.runtime.clone().spawn(async move {
                // The pool's own statements, bounded by the grace period as a whole rather
                // than by the callers' command timeout.
                let limit = p.conn.replace_command_timeout(None);
                let r = tokio::time::timeout(RESET_GRACE, async {
                    reset(&mut p.conn).await?;
                    if reset_session {
                        p.conn.reset_session().await?;
                        shared.run_hooks(&mut p.conn).await?;
                    }
                    Ok::<_, Error>(())
                })
                .await;
                p.conn.replace_command_timeout(limit);
                // Notifications read during the reset (sent before its UNLISTEN, say, to a
                // LISTEN a function made) are not the next caller's either.
                p.conn.clear_notifications();
                match r {
                    Ok(Ok(())) => {
                        p.last_used_ms = shared.now_ms();
                        if let Some(p) = shared.core.release(p, Holder::Pool) {
                            shared.close_conn(p, CloseReason::Shutdown);
                        }
                    }
                    _ => shared.discard(p, Holder::Pool, CloseReason::ResetFailed),
                }
            });
            return;
        }
        let now = shared.now_ms();
        if p.expires_ms <= now {
            shared.discard(p, Holder::Caller, CloseReason::MaxLifetime);
            return;
        }
        p.last_used_ms = now;
        if let Some(p) = shared.core.release(p, Holder::Caller) {
            shared.close_conn(p, CloseReason::Shutdown);
        }
    }
}

/// Ends a query left in flight: sends the rest of its request if its future was dropped
/// while writing (a message cut short would desynchronize the server), cancels it, and
/// reads its answer to the end.
async fn cancel_and_drain(conn: &mut Connection) -> Result<()> {
    conn.finish_write().await?;
    if conn.query_in_flight() {
        conn.cancel().await?;
    }
    conn.finish_pending().await
}

/// Brings a returned connection back to a clean idle state: cancel and drain a query left
/// running, roll back an open transaction.
async fn reset(conn: &mut Connection) -> Result<()> {
    if conn.is_busy() {
        cancel_and_drain(conn).await?;
    }
    if conn.transaction_status() != TransactionStatus::Idle {
        conn.simple_query_untraced("ROLLBACK").await?;
    }
    if conn.transaction_status() == TransactionStatus::Idle && !conn.is_busy() {
        Ok(())
    } else {
        Err(Error::protocol("connection not idle after reset"))
    }
}
