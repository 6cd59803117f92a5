//! Session state one user of a connection can leave for the next: what a connection can
//! tell without a round trip, and the statements that put a session back as it started.
//!
//! A connection notes, as its answers go by, the command tags and parameter reports that
//! mean the session changed (see [`Dirt::note_tag`]). A pool with
//! [`SessionReset::WhenDirty`](crate::SessionReset::WhenDirty) resets only such sessions,
//! so a clean return costs nothing.

use super::Connection;
use crate::error::Result;

/// What a session has seen that the next user of the connection would inherit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dirt(u8);

impl Dirt {
    /// Nothing seen since the session started (or was last reset).
    pub(crate) const CLEAN: Dirt = Dirt(0);
    /// A setting, the role, a LISTEN, a cursor, a temporary object, a loaded library.
    const STATE: u8 = 1;
    /// An SQL-level `PREPARE`: only `DEALLOCATE ALL` (or `DISCARD ALL`) removes it.
    const PREPARED: u8 = 2;
    /// A `CREATE TABLE`, which may have been a temporary one.
    const TABLE: u8 = 4;
    /// A statement the classifier could not prove harmless to the session (one that names
    /// a relation, a function call, a `DO` block, ...): what
    /// [`SessionReset::UnlessProvenClean`](crate::SessionReset::UnlessProvenClean) resets.
    const UNPROVEN: u8 = 8;
    /// A statement that calls what the classifier does not know (a function of the
    /// application, a `DO` block, a temporary object of another kind, ...): what
    /// [`SessionReset::WhenDirty`](crate::SessionReset::WhenDirty) resets too.
    const UNKNOWN_CALL: u8 = 64;
    /// The pool took the connection out of the pipelined path because a statement there
    /// changed the session: reset whatever the policy.
    const DEMANDED: u8 = 16;
    /// Something no reset undoes (`LOAD`, `setseed()`, a dblink connection): the
    /// connection is closed instead of handed on.
    const LASTING: u8 = 32;

    /// Notes a CommandComplete tag. The tags that change a session:
    /// `SET` (also `SET ROLE`, `SET SESSION AUTHORIZATION`, `SET LOCAL`), `RESET`,
    /// `LISTEN`, `UNLISTEN`, `DECLARE CURSOR`, `PREPARE`, `CREATE TABLE` (a temporary table
    /// cannot be told from another by its tag, so every one counts), `LOAD` and every
    /// `DISCARD` (which also undoes what the pool set up on a new connection).
    #[inline]
    pub(crate) fn note_tag(&mut self, tag: &str) {
        let b = tag.as_bytes();
        let hit = match b.first() {
            Some(b'S') => b == b"SET",
            Some(b'R') => b == b"RESET",
            Some(b'L') => {
                if b == b"LOAD" {
                    self.0 |= Self::LASTING;
                }
                b == b"LISTEN" || b == b"LOAD"
            }
            Some(b'U') => b == b"UNLISTEN",
            Some(b'D') => b == b"DECLARE CURSOR" || b.starts_with(b"DISCARD"),
            Some(b'C') => {
                if b == b"CREATE TABLE" {
                    self.0 |= Self::TABLE;
                }
                false
            }
            Some(b'P') => {
                if b == b"PREPARE" {
                    self.0 |= Self::PREPARED;
                }
                false
            }
            _ => false,
        };
        if hit {
            self.0 |= Self::STATE;
        }
    }

    /// Notes a ParameterStatus after startup: a reported setting changed (`SET ROLE`
    /// reports `is_superuser`, `SET TimeZone` reports `TimeZone`, a `set_config` of a
    /// reported setting is seen this way too).
    #[inline]
    pub(crate) fn note_parameter(&mut self) {
        self.0 |= Self::STATE;
    }

    /// Notes a statement the classifier could not prove harmless to the session.
    #[inline]
    pub(crate) fn note_unproven(&mut self) {
        self.0 |= Self::UNPROVEN;
    }

    /// Notes a statement that calls what the classifier does not know.
    #[inline]
    pub(crate) fn note_unknown_call(&mut self) {
        self.0 |= Self::UNKNOWN_CALL | Self::UNPROVEN;
    }

    /// The session must be reset before anyone uses the connection again, whatever the
    /// pool's policy.
    pub(crate) fn demand_reset(&mut self) {
        self.0 |= Self::DEMANDED;
    }

    /// Something ran that no reset undoes.
    pub(crate) fn note_lasting(&mut self) {
        self.0 |= Self::LASTING | Self::UNPROVEN;
    }

    /// Forgets what the shared path's reset undid (see [`Connection::session_was_reset`]).
    pub(crate) fn after_shared_reset(&mut self) {
        self.0 = (self.0 & (Self::LASTING | Self::DEMANDED)) | Self::UNKNOWN_CALL | Self::UNPROVEN;
    }

    /// True once something ran that no reset undoes.
    pub(crate) fn outlives_reset(self) -> bool {
        self.0 & Self::LASTING != 0
    }

    /// True if nothing that changes the session was seen, and no statement called what
    /// the classifier does not know (the reading of `WhenDirty`).
    #[inline]
    pub(crate) fn is_clean(self) -> bool {
        self.0 & !Self::UNPROVEN == 0
    }

    /// True if every statement was proven clean, and the server saw no change (the reading
    /// of `UnlessProvenClean`).
    #[inline]
    pub(crate) fn is_proven_clean(self) -> bool {
        self.0 == 0
    }

    /// The server said the session changed: a reported setting, or a command tag that
    /// only a session-changing statement has (a `CREATE TABLE` is not one of them).
    #[inline]
    pub(crate) fn server_saw_change(self) -> bool {
        self.0 & (Self::STATE | Self::PREPARED) != 0
    }

    #[inline]
    pub(crate) fn reset_demanded(self) -> bool {
        self.0 & Self::DEMANDED != 0
    }

    /// The statements that put the session back as it started, in one round trip.
    ///
    /// asyncpg's list (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`), plus
    /// what it misses: the session's role (`SET SESSION AUTHORIZATION DEFAULT` also ends a
    /// `SET ROLE`), temporary tables and sequence state. This is `DISCARD ALL` but for
    /// prepared statements and cached plans, so the connection's own statement cache
    /// stays valid; after an SQL-level `PREPARE` it is `DISCARD ALL` itself (the
    /// connection then empties its statement cache, as for any `DISCARD ALL`).
    ///
    /// After a statement that was not proven harmless (which may have run `PREPARE`
    /// inside a `DO` block or a function, where no tag says so), the same statements end
    /// by asking whether the session holds a statement prepared in SQL; if it does, a
    /// second round trip deallocates every prepared statement (see
    /// [`Connection::reset_session`]).
    ///
    /// Unless `origin` is [`OriginEnd::Never`], the replication origin the session may
    /// have set up (`pg_replication_origin_session_setup`, in a function where the text
    /// does not show it) is ended too, in the advisory unlock's SELECT, as the login role:
    /// no other statement, `DISCARD ALL` included, ends an origin, and every later commit
    /// of the session would carry it. `DISCARD ALL` cannot run beside another statement,
    /// so after a `PREPARE` such a session's reset is what `DISCARD ALL` does, spelled out.
    ///
    /// With `dblink` (see [`dblink_close_sql`]), the session's named dblink connections are
    /// closed right after the advisory unlock: no `DISCARD` closes them either, and the next
    /// caller could run statements through them in another database.
    pub(crate) fn reset_sql(
        self,
        origin: OriginEnd,
        dblink: Option<&str>,
    ) -> std::borrow::Cow<'static, str> {
        let sql = self.reset_sql_of(origin != OriginEnd::Never, dblink.is_some());
        if origin != OriginEnd::ThroughRoleNone && dblink.is_none() {
            return std::borrow::Cow::Borrowed(sql);
        }
        let mut sql = sql.to_string();
        if let Some(close) = dblink {
            sql = sql.replacen("; RESET ALL;", &format!("; {close}; RESET ALL;"), 1);
        }
        if origin == OriginEnd::ThroughRoleNone {
            // As the login role; its starting role back before RESET ALL (which leaves
            // the role alone).
            sql = sql
                .replacen(SSA, "SET SESSION AUTHORIZATION DEFAULT; SET ROLE NONE; ", 1)
                .replacen("; RESET ALL;", "; RESET ROLE; RESET ALL;", 1);
        }
        std::borrow::Cow::Owned(sql)
    }

    /// The reset's statements; `beside` when another statement joins them (`DISCARD ALL`
    /// then has to be spelled out).
    fn reset_sql_of(self, origin: bool, beside: bool) -> &'static str {
        // The origin's end rides on the advisory unlock's SELECT (no statement of its own).
        macro_rules! base {
            (unlock) => {
                base!("SELECT pg_advisory_unlock_all()")
            };
            (origin) => {
                base!(concat!("SELECT pg_advisory_unlock_all(), ", origin!()))
            };
            ($select:expr) => {
                concat!(
                    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; ",
                    $select,
                    "; RESET ALL; UNLISTEN *; DISCARD TEMP; DISCARD SEQUENCES"
                )
            };
        }
        macro_rules! origin {
            () => {
                "CASE WHEN pg_catalog.pg_replication_origin_session_is_setup() \
                 THEN pg_catalog.pg_replication_origin_session_reset() END"
            };
        }
        // One row: whether something was prepared in SQL, or whether every statement the
        // connection prepared is gone (a function's DEALLOCATE ALL, which no tag shows).
        macro_rules! prepared_in_sql {
            () => {
                "; SELECT CASE WHEN pg_catalog.bool_or(from_sql) THEN 'prepared in SQL' \
                 WHEN pg_catalog.bool_or(NOT from_sql) IS NOT TRUE \
                 THEN 'statements dropped' END FROM pg_catalog.pg_prepared_statements"
            };
        }
        let prepared = self.0 & Self::PREPARED != 0;
        let unproven = self.0 & (Self::UNPROVEN | Self::UNKNOWN_CALL | Self::DEMANDED) != 0;
        match (prepared, unproven, origin) {
            (true, _, false) if !beside => "DISCARD ALL",
            // DISCARD ALL cannot run beside another statement: what it does, spelled out.
            (true, _, false) => concat!(base!(unlock), "; DEALLOCATE ALL; DISCARD PLANS"),
            (true, _, true) => concat!(base!(origin), "; DEALLOCATE ALL; DISCARD PLANS"),
            (false, true, false) => concat!(base!(unlock), prepared_in_sql!()),
            (false, true, true) => concat!(base!(origin), prepared_in_sql!()),
            (false, false, false) => base!(unlock),
            (false, false, true) => base!(origin),
        }
    }
}

/// The statement that closes the session's named dblink connections, for a database whose
/// dblink extension is in `schema` (an identifier, quoted as needed). The one unnamed
/// connection (`dblink_connect` with a connection string alone) cannot be asked about
/// without an error when there is none, so it is not closed; a statement whose text calls
/// `dblink_connect` closes its connection instead (see [`Dirt::outlives_reset`]).
pub(crate) fn dblink_close_sql(schema: &str) -> String {
    format!(
        "SELECT {schema}.dblink_disconnect(c) \
         FROM pg_catalog.unnest({schema}.dblink_get_connections()) AS c"
    )
}

/// The reset's first statements, before which nothing of a session's roles is undone.
const SSA: &str = "SET SESSION AUTHORIZATION DEFAULT; ";

/// Whether and how the session reset ends a replication origin the session set up: only
/// a role that may call the origin functions (a superuser, or a role granted them) can,
/// and only the login role is sure to be there to do it (after `SET SESSION AUTHORIZATION
/// DEFAULT`). A login that may not cannot end one: an origin set up as a starting role
/// that may (a `role` setting), or through a `SECURITY DEFINER` function owned by one, is
/// not covered then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OriginEnd {
    /// The login role may not call the origin functions.
    Never,
    /// The session starts as its login role, which may: the reset ends the origin right
    /// after `SET SESSION AUTHORIZATION DEFAULT`.
    AsLogin,
    /// The session starts as another role (a `role` setting of the login or the
    /// connection): `SET ROLE NONE` before, `RESET ROLE` after.
    ThroughRoleNone,
}

impl Connection {
    /// True if this session saw something the next user would inherit, or called what the
    /// classifier does not know (see [`Dirt::is_clean`]).
    #[inline]
    pub(crate) fn session_dirty(&self) -> bool {
        !self.dirt.is_clean()
    }

    /// True unless every statement of this session was proven clean and the server saw no
    /// change (see [`Dirt::is_proven_clean`]).
    #[inline]
    pub(crate) fn session_unproven(&self) -> bool {
        !self.dirt.is_proven_clean()
    }

    /// Puts the session back as it started (see [`Dirt::reset_sql`]), whatever was seen.
    /// The connection must be idle, outside a transaction.
    pub(crate) async fn reset_session(&mut self) -> Result<()> {
        let sql = self
            .dirt
            .reset_sql(self.origin_end, self.dblink_close.as_deref());
        let rows = self.simple_query_untraced(&sql).await?;
        if rows.iter().any(|r| r.get(0) == Some("prepared in SQL")) {
            // A statement prepared in SQL where no tag said so: only DEALLOCATE ALL removes
            // it, and the connection's own statements with it.
            self.simple_query_untraced("DISCARD ALL").await?;
        } else if rows.iter().any(|r| r.get(0) == Some("statements dropped")) {
            // None of the connection's own statements is left (a function ran DEALLOCATE
            // ALL): the next caller prepares them again rather than failing on them.
            self.forget_prepared();
        }
        self.dirt = Dirt::CLEAN;
        Ok(())
    }

    /// The server said, since the last reset, that this session changed (see
    /// [`Dirt::server_saw_change`]).
    #[inline]
    pub(crate) fn server_saw_session_change(&self) -> bool {
        self.dirt.server_saw_change()
    }

    /// The last setting the server reported changed, by name.
    pub(crate) fn last_reported_setting(&self) -> Option<&str> {
        self.last_reported.as_deref()
    }

    /// The session must be reset before anyone uses the connection again, whatever the
    /// pool's policy.
    pub(crate) fn demand_reset(&mut self) {
        self.dirt.demand_reset();
    }

    /// Notes what the classifier finds in a statement about to run (its verdict is kept
    /// per text): one it cannot prove harmless to the session marks it for a reset, one
    /// whose effect no reset undoes marks the connection to be closed. Returns the class.
    pub(crate) fn note_statement(&mut self, sql: &str) -> crate::sql::Class {
        let class = crate::sql::class(sql);
        if let Some(names) = &mut self.hook_settings {
            names.extend(crate::sql::custom_settings(sql));
        }
        if !class.known_calls_only {
            self.dirt.note_unknown_call();
        } else if !class.session_clean {
            self.dirt.note_unproven();
        }
        if class.refusal.is_some_and(|r| r.outlives_reset()) {
            self.dirt.note_lasting();
        }
        class
    }

    /// True if the session holds something no reset undoes: the pool closes the
    /// connection instead of handing it on, whatever its reset policy.
    pub(crate) fn outlives_reset(&self) -> bool {
        self.dirt.outlives_reset()
    }

    /// True if the session must be reset whatever the pool's policy.
    #[inline]
    pub(crate) fn reset_demanded(&self) -> bool {
        self.dirt.reset_demanded()
    }

    /// Takes the session as it is now for its starting point (after the pool's own
    /// set-up of a new or reset connection).
    pub(crate) fn mark_session_clean(&mut self) {
        self.dirt = Dirt::CLEAN;
    }

    /// The session was just reset by the statements the shared path sends between two
    /// callers' statements (see `pool/pipelined/lane_watch.rs`): what the server said about the
    /// session before is over (the reset's own reports among it). That reset leaves
    /// LISTENs, cursors and statements prepared in SQL for the full reset the connection
    /// gets when it goes back to the pool, so it still counts as having run what was not
    /// proven clean.
    pub(crate) fn session_was_reset(&mut self) {
        self.dirt.after_shared_reset();
    }

    /// The statement that applies again, after `RESET ALL`, what the pool's connect hooks
    /// set (`None` when the pool has none, or they set nothing).
    pub(crate) fn session_restore(&self) -> Option<std::sync::Arc<str>> {
        self.session_restore.clone()
    }

    /// The pool's connect hooks are about to run: the custom settings their statements set
    /// are noted (see [`Connection::capture_session_restore`]).
    pub(crate) fn hooks_begin(&mut self) {
        self.hook_settings.get_or_insert_with(Vec::new);
    }

    /// Reads the settings the session holds now (what the connect hooks set: those
    /// `pg_settings` lists, and the custom ones their statements set), as one statement of
    /// `set_config` calls that applies them again; once per connection. Ends the noting
    /// [`Connection::hooks_begin`] started. Never logged: a setting may hold something
    /// private.
    pub(crate) async fn capture_session_restore(&mut self) -> Result<()> {
        let mut custom = self.hook_settings.take().unwrap_or_default();
        if self.restore_captured {
            return Ok(());
        }
        custom.sort();
        custom.dedup();
        // Names from the lexer, without quotes or backslashes: safe in a '' literal.
        let names = custom
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ");
        // `role` and `session_authorization` are not in pg_settings either; the session's
        // authorization goes back first, the role last.
        let sql = format!(
            "SELECT 'SELECT ' || pg_catalog.string_agg(pg_catalog.format(\
             'pg_catalog.set_config(%L, %L, false)', name, setting), ', ' \
             ORDER BY name = 'role', name <> 'session_authorization', name) \
             FROM (SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' \
             UNION ALL SELECT n, pg_catalog.current_setting(n, true) \
             FROM pg_catalog.unnest(ARRAY[{names}]::text[]) n \
             WHERE pg_catalog.current_setting(n, true) IS NOT NULL \
             UNION ALL SELECT 'session_authorization', pg_catalog.current_setting('session_authorization') \
             WHERE pg_catalog.current_setting('session_authorization') <> session_user \
             UNION ALL SELECT 'role', pg_catalog.current_setting('role') \
             WHERE pg_catalog.current_setting('role') <> 'none') s"
        );
        let rows = self.simple_query_untraced(&sql).await?;
        self.session_restore = rows
            .iter()
            .find_map(|r| r.get(0))
            .filter(|s| !s.is_empty())
            .map(std::sync::Arc::from);
        self.restore_captured = true;
        Ok(())
    }

    /// True (once) if a setting the pool applies was changed since the last call.
    #[inline]
    pub(crate) fn take_settings_changed(&mut self) -> bool {
        std::mem::take(&mut self.settings_changed)
    }
}

#[cfg(test)]
mod tests {
    use super::{Dirt, OriginEnd};

    fn after(tags: &[&str]) -> Dirt {
        let mut d = Dirt::CLEAN;
        for t in tags {
            d.note_tag(t);
        }
        d
    }

    #[test]
    fn session_changing_tags_are_seen() {
        for tag in [
            "SET",
            "RESET",
            "LISTEN",
            "UNLISTEN",
            "DECLARE CURSOR",
            "PREPARE",
            "CREATE TABLE",
            "LOAD",
            "DISCARD ALL",
            "DISCARD TEMP",
        ] {
            assert!(!after(&[tag]).is_clean(), "{tag}");
        }
    }

    #[test]
    fn ordinary_tags_leave_the_session_clean() {
        let d = after(&[
            "SELECT 1",
            "INSERT 0 1",
            "UPDATE 3",
            "DELETE 0",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT",
            "SHOW",
            "COPY 10",
            "CREATE INDEX",
            "FETCH 5",
            "",
        ]);
        assert!(d.is_clean());
    }

    #[test]
    fn prepare_needs_discard_all() {
        assert!(!after(&["SET"])
            .reset_sql(OriginEnd::Never, None)
            .contains("DISCARD ALL"));
        assert_eq!(
            after(&["SET", "PREPARE"]).reset_sql(OriginEnd::Never, None),
            "DISCARD ALL"
        );
    }

    #[test]
    fn a_reset_that_may_ends_the_replication_origin() {
        for d in [after(&[]), after(&["SET"]), after(&["PREPARE"])] {
            let ends = |sql: &str| sql.contains("pg_replication_origin_session_reset()");
            for how in [OriginEnd::AsLogin, OriginEnd::ThroughRoleNone] {
                assert!(ends(&d.reset_sql(how, None)), "{}", d.reset_sql(how, None));
            }
            assert!(!ends(&d.reset_sql(OriginEnd::Never, None)));
            let through = d.reset_sql(OriginEnd::ThroughRoleNone, None);
            let order = [
                "SET ROLE NONE",
                "pg_replication_origin_session_reset",
                "RESET ROLE",
                "RESET ALL",
            ];
            let at: Vec<_> = order.iter().map(|s| through.find(s).expect(s)).collect();
            assert!(at.windows(2).all(|w| w[0] < w[1]), "{through}");
        }
        assert!(after(&["PREPARE"])
            .reset_sql(OriginEnd::AsLogin, None)
            .contains("DEALLOCATE ALL"));
    }

    #[test]
    fn a_reset_closes_dblink_connections_where_the_database_has_dblink() {
        let close = super::dblink_close_sql("\"my schema\"");
        assert!(close.contains("\"my schema\".dblink_get_connections()"));
        for d in [after(&[]), after(&["SET"]), after(&["SET", "PREPARE"])] {
            for how in [
                OriginEnd::Never,
                OriginEnd::AsLogin,
                OriginEnd::ThroughRoleNone,
            ] {
                assert!(!d.reset_sql(how, None).contains("dblink"));
                let sql = d.reset_sql(how, Some(&close));
                // DISCARD ALL cannot run beside it: spelled out instead.
                assert!(!sql.contains("DISCARD ALL"), "{sql}");
                let mut order = vec!["pg_advisory_unlock_all", "dblink_disconnect", "RESET ALL"];
                if how == OriginEnd::ThroughRoleNone {
                    order = vec![
                        "SET ROLE NONE",
                        "dblink_disconnect",
                        "RESET ROLE",
                        "RESET ALL",
                    ];
                }
                let at: Vec<_> = order.iter().map(|s| sql.find(s).expect(s)).collect();
                assert!(at.windows(2).all(|w| w[0] < w[1]), "{sql}");
            }
        }
        let spelled = after(&["SET", "PREPARE"]).reset_sql(OriginEnd::Never, Some(&close));
        assert!(spelled.contains("DEALLOCATE ALL") && spelled.contains("DISCARD PLANS"));
    }
}
