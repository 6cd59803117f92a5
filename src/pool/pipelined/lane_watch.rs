//! What the server says after each statement on a lane, and what the lane does about it.
//! The refusal (`crate::sql`) keeps statements that change the session off the
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
//! - **The session reset after every statement not proven clean.** The server reports
//!   only some settings (on PostgreSQL 15 and 18: `application_name`, `client_encoding`,
//!   `DateStyle`, `default_transaction_read_only`, `in_hot_standby`, `integer_datetimes`,
//!   `IntervalStyle`, `is_superuser`, `server_encoding`, `server_version`,
//!   `session_authorization`, `standard_conforming_strings`, `TimeZone`; 18 adds
//!   `search_path`), and no tag says what a function did inside: a view, a trigger, a rule,
//!   a default, a check, a domain, a cast or an operator runs the application's functions
//!   where the text shows none. So a statement the classifier cannot prove harmless (one
//!   that names a relation, or calls what may be the application's) is followed, in the
//!   same write, by the session reset: `SET SESSION AUTHORIZATION DEFAULT` (which ends a
//!   `SET ROLE` too), `pg_advisory_unlock_all()` (for a session whose login role may call
//!   the replication origin functions, a superuser or a role granted them, also the end of
//!   a replication origin it set up: every later commit of the session would carry it),
//!   where the database has dblink, the closing of the session's named dblink connections,
//!   `RESET ALL` (then the settings the pool's connect hooks made, again), `DISCARD TEMP`
//!   (a temporary table would shadow another caller's) and `DISCARD SEQUENCES` (`currval`
//!   through a view). The next statement on the connection, another caller's, runs in the
//!   session as it started, whatever the statement before it did; the reset costs the
//!   server some microseconds and no round trip. What cannot reach another pipelined
//!   statement (a LISTEN, a cursor, a statement prepared in SQL: the shared path refuses
//!   whatever would use them) is left for the full reset the connection gets when the lane
//!   gives it back. If the reset fails, the session changed, as above. What no reset
//!   undoes: `setseed()` and dblink's unnamed connection opened inside a function (the
//!   refusal sees both when they are called in the text).
//!
//! [`ErrorKind::TransactionRolledBack`]: crate::ErrorKind::TransactionRolledBack

use std::sync::Arc;

use crate::conn::{OriginEnd, Outcome};
use crate::error::Error;
use crate::pool_core::reply::Reply;
use crate::TransactionStatus;

/// A request's answer, as its caller gets it.
pub(super) type Answer = crate::error::Result<Outcome>;

/// The session reset sent after a statement not proven clean (see the module docs): what
/// the next statement on the connection, another caller's, would otherwise run under. The
/// statements are prepared once per connection (under names of their own), then bound and
/// executed under one Sync, in the order [`write_reset`] gives; the settings of the pool's
/// connect hooks are applied again after `RESET ALL`.
const SESSION_AUTHORIZATION: (&str, &str) =
    ("wirepool.reset.1", "SET SESSION AUTHORIZATION DEFAULT");
/// Runs as the login role, before `RESET ALL` brings back a starting role (see
/// [`UNLOCK_AND_ORIGIN`]).
const UNLOCK: (&str, &str) = (
    "wirepool.reset.4",
    "SELECT pg_catalog.pg_advisory_unlock_all()",
);
const RESET_ALL: (&str, &str) = ("wirepool.reset.2", "RESET ALL");
const DISCARDS: [(&str, &str); 2] = [
    ("wirepool.reset.5", "DISCARD TEMP"),
    ("wirepool.reset.6", "DISCARD SEQUENCES"),
];
/// The name of the statement that applies the connect hooks' settings again.
const RESTORE: &str = "wirepool.reset.3";
/// For a session whose login role may call the replication origin functions, the
/// advisory unlock also ends the origin the session may have set up (see
/// `Dirt::reset_sql`), in the same SELECT, as the login role.
const UNLOCK_AND_ORIGIN: (&str, &str) = (
    "wirepool.reset.4",
    "SELECT pg_catalog.pg_advisory_unlock_all(), \
     CASE WHEN pg_catalog.pg_replication_origin_session_is_setup() \
     THEN pg_catalog.pg_replication_origin_session_reset() END",
);

/// The login role, for the origin's end of a session that starts as another role.
const ROLE_NONE: (&str, &str) = ("wirepool.reset.7", "SET ROLE NONE");
/// The starting role back.
const RESET_ROLE: (&str, &str) = ("wirepool.reset.8", "RESET ROLE");
/// The name of the statement that closes dblink's named connections (see
/// `crate::conn::session::dblink_close_sql`), where the database has dblink.
const DBLINK_CLOSE: &str = "wirepool.reset.9";

/// Writes the session reset: the statements' Parse first when `parsed` is false (after a
/// Close of each, in case a failed reset left some), then a Bind and Execute of each, and
/// one Sync. `restore` is one statement that applies the connect hooks' settings again
/// (never logged: a setting may hold something private). `dblink` closes dblink's named
/// connections, right after the advisory unlock.
///
/// With `named` false (the pool makes no named statements: its statement cache is off, as
/// behind PgBouncer in transaction mode) each statement is parsed as the unnamed one, every
/// time.
pub(super) fn write_reset(
    out: &mut bytes::BytesMut,
    restore: Option<&str>,
    origin: OriginEnd,
    dblink: Option<&str>,
    parsed: bool,
    named: bool,
) {
    let unlock = match origin {
        OriginEnd::Never => UNLOCK,
        OriginEnd::AsLogin | OriginEnd::ThroughRoleNone => UNLOCK_AND_ORIGIN,
    };
    // As the login role; its starting role back before RESET ALL (which leaves the role).
    let role_none = origin == OriginEnd::ThroughRoleNone;
    let statements = std::iter::once(SESSION_AUTHORIZATION)
        .chain(role_none.then_some(ROLE_NONE))
        .chain(std::iter::once(unlock))
        .chain(dblink.map(|d| (DBLINK_CLOSE, d)))
        .chain(role_none.then_some(RESET_ROLE))
        .chain(std::iter::once(RESET_ALL))
        .chain(restore.map(|r| (RESTORE, r)))
        .chain(DISCARDS);
    crate::conn::request::reset(statements, parsed, named, out);
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
                let sql = crate::sql::normalize::normalize(sql);
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
                let sql = crate::sql::normalize::normalize(sql);
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
        self.end_open(failure);
    }

    fn end_open(&mut self, error: impl Fn() -> Error) {
        for h in self.open.take().unwrap_or_default() {
            if !h.reply.complete(Err(error())) {
                self.undelivered += 1;
            }
        }
    }

    /// The session reset after `sql` answered. True if it failed, for the first time on
    /// this lane: the session may be as the statement left it.
    pub(super) fn reset_done(&mut self, outcome: &Outcome, sql: &str) -> bool {
        let clean = matches!(outcome, Outcome::Reset { error: None });
        if clean || self.changed {
            return false;
        }
        self.changed = true;
        let sql = crate::sql::normalize::normalize(sql);
        tracing::warn!(
            target: "wirepool::pool",
            statement = sql,
            "The session reset after a statement on the shared path failed; its connection leaves the shared path and is reset: {sql}"
        );
        true
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
