//! The server's notices: to the handler set on the connection (or the pool's), else to the
//! log; those of the startup kept for a handler set after it.

use std::sync::Arc;

use super::{Connection, NoticeHandler};
use crate::error::{sqlstate, DbError};

/// How many notices sent during the startup a connection opened without a handler keeps
/// for [`Connection::set_notice_handler`]; more are only logged.
pub const STARTUP_NOTICES: usize = 100;

impl Connection {
    /// A notice of the server's (RAISE NOTICE, a warning): to the handler if one is set,
    /// else to the log. Handled as it arrives, never queued, so a flood of notices takes no
    /// memory (only those of the startup are kept, see [`Connection::startup_notice`]).
    #[inline]
    pub(crate) fn notice(&self, n: &DbError) {
        match &self.trace.notices {
            Some(h) => (h.0)(n),
            None => log_notice(n),
        }
    }

    /// Sends the server's notices (RAISE NOTICE, warnings; [`DbError`]s with severity
    /// NOTICE, WARNING, INFO, ...) to `handler` as they arrive, instead of the log (target
    /// `wirepool::notice`, INFO, with the SQLSTATE). A pool applies its own setting
    /// ([`Builder::notice_handler`](crate::pool::Builder::notice_handler)) again when the
    /// connection comes back.
    ///
    /// Notices the server sent during the startup, before a handler could be set (up to
    /// [`STARTUP_NOTICES`]; they were logged too), go to `handler` at once. A pool's
    /// connections give theirs to the pool's handler as they come.
    pub fn set_notice_handler(&mut self, handler: impl Fn(&DbError) + Send + Sync + 'static) {
        Arc::make_mut(&mut self.trace).notices = Some(NoticeHandler(Arc::new(handler)));
        self.settings_changed = true;
        self.deliver_startup_notices();
    }

    /// A notice sent during the startup: to the handler the connection was opened with,
    /// else logged and kept (up to [`STARTUP_NOTICES`]) for a handler set later.
    pub(super) fn startup_notice(&mut self, n: DbError) {
        if self.trace.notices.is_some() {
            self.notice(&n);
            return;
        }
        log_notice(&n);
        if self.startup_notices.len() < STARTUP_NOTICES {
            self.startup_notices.push(n);
        }
    }

    /// Gives the kept startup notices to the handler, if one is set now.
    pub(super) fn deliver_startup_notices(&mut self) {
        if let Some(h) = &self.trace.notices {
            for n in std::mem::take(&mut self.startup_notices) {
                (h.0)(&n);
            }
        }
    }

    /// Logs the server's notices again (undoes [`Connection::set_notice_handler`]).
    pub fn log_notices(&mut self) {
        Arc::make_mut(&mut self.trace).notices = None;
        self.settings_changed = true;
    }
}

/// Logs a notice, the server's text with its control characters escaped.
pub(crate) fn log_notice(n: &DbError) {
    use crate::error::Escaped;
    // Class 57 (operator intervention: shutdown, terminated backend) comes just before the
    // session ends; the pool reports the lost connection itself.
    if n.code().starts_with(sqlstate::OPERATOR_INTERVENTION_CLASS) {
        tracing::debug!(
            target: "wirepool::notice",
            severity = %Escaped(n.severity()),
            code = %Escaped(n.code()),
            "server notice: {}",
            Escaped(n.message())
        );
        return;
    }
    tracing::info!(
        target: "wirepool::notice",
        severity = %Escaped(n.severity()),
        code = %Escaped(n.code()),
        "server notice: {}",
        Escaped(n.message())
    );
}
