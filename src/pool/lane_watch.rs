//! What the server says after each statement on a lane, and what the lane does about it.
//! The refusal (`shared_refusal.rs`) keeps statements that change the session off the
//! shared path; this is the net under it, decided from the server's answers alone:
//!
//! - **The transaction status in ReadyForQuery.** Every statement on a lane is its own
//!   transaction, so each answer must end with the status idle. A statement whose answer
//!   says "in a transaction" (or "in a failed transaction") opened one: its caller gets an
//!   error, the lane takes nothing new, the statements already sent behind it run inside
//!   that transaction and their answers are held, and once all are in the lane rolls the
//!   transaction back. Each held caller then gets [`ErrorKind::TransactionRolledBack`]
//!   (`may_have_run() == Some(false)`): nothing reported done that did not take effect. If
//!   instead a later statement ended the transaction with COMMIT (one more statement that
//!   got past the refusal), the held statements took effect and get their answers.
//! - **A reported setting changed (ParameterStatus), or a command tag only a
//!   session-changing statement has.** The statement that did it (a function whose body
//!   runs `SET`, say, which no reading of the text can see) gets its answer; the lane takes
//!   nothing new; the statements sent behind it ran in the changed session, so their
//!   callers get an error that says they may have run; the connection leaves the shared
//!   path and is reset before anyone uses it again, whatever the pool's reset policy. The
//!   event is counted (`pipelined_session_changes`) and logged with the statement's text.
//! - **The session probe.** The server reports only some settings (on PostgreSQL 15 and
//!   18: `application_name`, `client_encoding`, `DateStyle`, `default_transaction_read_only`,
//!   `in_hot_standby`, `integer_datetimes`, `IntervalStyle`, `is_superuser`,
//!   `server_encoding`, `server_version`, `session_authorization`,
//!   `standard_conforming_strings`, `TimeZone`; 18 adds `search_path`), and no tag says
//!   what a function did inside. So a statement the classifier cannot prove harmless (it
//!   calls a function that is not a known built-in) goes out between two probes, in the
//!   same write (no round trip of its own): one query that reads the session's own
//!   settings, its advisory locks, LISTEN channels, SQL-prepared statements, open cursors,
//!   temporary objects and role. If the two answers differ, the session changed, as above.
//!   What even the probe cannot see: `setseed()` inside a function, and a sequence's
//!   `currval` (the refusal sees both when they are called in the text).
//!
//! [`ErrorKind::TransactionRolledBack`]: crate::ErrorKind::TransactionRolledBack

use std::sync::Arc;

use crate::conn::Outcome;
use crate::error::Error;
use crate::pool_core::reply::Reply;
use crate::protocol::TransactionStatus;

use super::lane::Answer;

/// Which side of its statement a session probe is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    Before,
    After,
}

/// The session probe: one text that changes when the session does (its own settings,
/// advisory locks, LISTEN channels, prepared statements, cursors, temporary objects, role).
/// Never logged (a setting may hold something private): only compared.
const PROBE_SQL: &str = "SELECT pg_catalog.concat_ws('|', \
     (SELECT pg_catalog.string_agg(name || '=' || setting, ',' ORDER BY name) \
        FROM pg_catalog.pg_settings WHERE source = 'session'), \
     (SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks \
        WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()), \
     (SELECT pg_catalog.count(*) FROM pg_catalog.pg_listening_channels()), \
     (SELECT pg_catalog.count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql), \
     (SELECT pg_catalog.count(*) FROM pg_catalog.pg_cursors), \
     (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class \
        WHERE relnamespace = pg_catalog.pg_my_temp_schema()), \
     (SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc \
        WHERE pronamespace = pg_catalog.pg_my_temp_schema()), \
     (SELECT pg_catalog.count(*) FROM pg_catalog.pg_type \
        WHERE typnamespace = pg_catalog.pg_my_temp_schema()), \
     current_user, session_user)";

/// Writes a session probe: the unnamed statement, its portal described (so its one text
/// column decodes), Sync.
pub(super) fn write_probe(out: &mut bytes::BytesMut) {
    let r = crate::protocol::extended::write_parse("", PROBE_SQL, &[], &[], out)
        .and_then(|()| crate::protocol::extended::write_bind_execute("", &[], &[], true, out));
    debug_assert!(r.is_ok(), "the probe has no parameters to convert");
}

/// A statement's answer the lane holds until the transaction it ran in is over.
struct Held {
    reply: Arc<Reply<Answer>>,
    outcome: Outcome,
}

/// What the lane does with one answer.
pub(super) enum Judged {
    /// Hand it to its caller.
    Deliver(Answer),
    /// Keep it until the transaction it ran in ends.
    Held,
}

/// The lane's view of its session, from the server's answers.
#[derive(Default)]
pub(super) struct Watch {
    /// A transaction a statement left open: the answers that ran inside it since.
    open: Option<Vec<Held>>,
    /// The server said the session changed: the lane is done.
    changed: bool,
    /// Held answers completed whose callers had left: the lane settles them.
    undelivered: usize,
    /// The session probe's answer before the statement it surrounds.
    before: Option<String>,
    /// The answer of a probed statement, given to its caller once the probe after it has
    /// answered (so that a caller who runs its next statement at once does not place it
    /// behind a change the probe is about to report).
    stashed: Option<(Arc<Reply<Answer>>, Answer)>,
}

impl Watch {
    /// New statements may be sent: no transaction is open and the session is as it was.
    #[inline]
    pub(super) fn takes_requests(&self) -> bool {
        self.open.is_none() && !self.changed
    }

    /// A transaction is open: once every answer is in, the lane rolls it back.
    #[inline]
    pub(super) fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    /// The session changed: the lane ends once every answer is in.
    #[inline]
    pub(super) fn session_changed(&self) -> bool {
        self.changed
    }

    /// Judges the answer to `sql`, which left the connection in `status`; `changed` names
    /// what the server said changed in the session during it, if it did. `reply` is its
    /// caller's, for an answer held.
    pub(super) fn judge(
        &mut self,
        sql: &str,
        reply: &Arc<Reply<Answer>>,
        outcome: Outcome,
        status: TransactionStatus,
        changed: Option<&str>,
    ) -> Judged {
        let ran_after_change = self.changed;
        if let Some(what) = changed {
            if !self.changed {
                self.changed = true;
                tracing::warn!(
                    target: "wirepool::pool",
                    setting = what,
                    statement = sql,
                    "A statement on the shared path changed the session ({what}); its connection leaves the shared path and is reset: {sql}"
                );
            }
        }
        let judged = match (&mut self.open, status) {
            (None, TransactionStatus::Idle) => Judged::Deliver(Ok(outcome)),
            (None, open) => {
                self.open = Some(Vec::new());
                tracing::warn!(
                    target: "wirepool::pool",
                    statement = sql,
                    "A statement on the shared path left a transaction open; the pool rolls it back: {sql}"
                );
                Judged::Deliver(Err(Error::invalid_input(format!(
                    "the statement left a transaction open (status {}), which the pool's \
                     shared path (pool.query, pool.execute, ...) does not keep: the pool rolled \
                     it back; run it on a connection from pool.acquire()",
                    status_word(open)
                ))
                .with_sent(false)))
            }
            (Some(held), TransactionStatus::Idle) => {
                // This statement ended the transaction (it got past the refusal too).
                let committed = matches!(
                    &outcome,
                    Outcome::Executed(x) if x.command_tag.as_deref() == Some("COMMIT")
                );
                for h in held.drain(..) {
                    let answer = if committed {
                        Ok(h.outcome)
                    } else {
                        Err(rolled_back())
                    };
                    if !h.reply.complete(answer) {
                        self.undelivered += 1;
                    }
                }
                self.open = None;
                Judged::Deliver(Err(Error::invalid_input(
                    "the statement ended a transaction that another caller's statement had \
                     left open on the same connection; run transaction control on a connection \
                     from pool.acquire()",
                )
                .with_sent(true)))
            }
            (Some(held), _) => {
                held.push(Held {
                    reply: reply.clone(),
                    outcome,
                });
                Judged::Held
            }
        };
        match judged {
            Judged::Deliver(Ok(_)) if ran_after_change => Judged::Deliver(Err(Error::closed(
                "the statement ran after another caller's statement on the same connection \
                 changed the session; its answer was discarded, and it may have run",
            )
            .with_sent(true))),
            j => j,
        }
    }

    /// The lane rolled the open transaction back: every statement that ran inside it did
    /// not take effect.
    pub(super) fn rolled_back(&mut self) {
        self.end_open(rolled_back);
    }

    /// The lane ends before the transaction was rolled back (its connection was lost):
    /// the held statements get `failure` (a later one may have committed them before the
    /// loss, so it says they may have run).
    pub(super) fn abandon(&mut self, failure: impl Fn() -> Error) {
        // A statement whose answer came is answered, whatever happens to the probe after it.
        self.deliver_stashed();
        self.end_open(failure);
    }

    fn end_open(&mut self, error: impl Fn() -> Error) {
        for h in self.open.take().unwrap_or_default() {
            if !h.reply.complete(Err(error())) {
                self.undelivered += 1;
            }
        }
    }

    /// Keeps a probed statement's answer until the probe after it has answered.
    pub(super) fn stash(&mut self, reply: &Arc<Reply<Answer>>, answer: Answer) {
        self.deliver_stashed();
        self.stashed = Some((reply.clone(), answer));
    }

    /// Gives the kept answer to its caller (once the lane has stopped taking statements,
    /// if the probe showed a change).
    pub(super) fn deliver_stashed(&mut self) {
        if let Some((reply, answer)) = self.stashed.take() {
            if !reply.complete(answer) {
                self.undelivered += 1;
            }
        }
    }

    /// A session probe answered. True if it shows, for the first time on this lane, that
    /// the statement before it changed the session (a probe that failed counts as that).
    pub(super) fn probed(&mut self, side: Probe, outcome: &Outcome, sql: &str) -> bool {
        let text = match outcome {
            Outcome::Executed(x) if x.error.is_none() => x
                .rows
                .first()
                .and_then(|r| r.try_get::<_, Option<String>>(0).ok())
                .flatten(),
            _ => None,
        };
        match side {
            Probe::Before => {
                self.before = text;
                false
            }
            Probe::After => {
                let before = self.before.take();
                if self.changed || (text.is_some() && text == before) {
                    return false;
                }
                self.changed = true;
                tracing::warn!(
                    target: "wirepool::pool",
                    statement = sql,
                    "A statement on the shared path changed the session (seen by the session probe); its connection leaves the shared path and is reset: {sql}"
                );
                true
            }
        }
    }

    /// How many held answers were completed for callers who had left (once).
    pub(super) fn take_undelivered(&mut self) -> usize {
        std::mem::take(&mut self.undelivered)
    }
}

fn rolled_back() -> Error {
    Error::rolled_back_because(
        "the statement ran inside a transaction that another caller's statement left open \
         on the same connection; the pool rolled it back, so the statement did not take effect",
    )
    .with_sent(false)
}

fn status_word(s: TransactionStatus) -> &'static str {
    match s {
        TransactionStatus::Idle => "idle",
        TransactionStatus::InTransaction => "in a transaction",
        TransactionStatus::Failed => "in a failed transaction",
    }
}
