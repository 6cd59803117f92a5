//! [`Connection::execute_many`] carried by binary COPY, where the server's catalog shows
//! that COPY does what the same rows inserted one by one would.
//!
//! One `INSERT` per row costs the server a Bind, an executor start and end and a command
//! tag per row; `COPY` feeds rows straight into the table, many to a page. So an atomic
//! `execute_many` outside a transaction block, of at least 1,000 rows (fewer run row by
//! row: one more round trip would cost more than COPY saves), of a statement of the one
//! shape (`INSERT INTO t [(c, ...)] VALUES ($1, ...)`, read with PostgreSQL's scanner:
//! [`crate::sql::insert_shape`]) goes as `COPY t (...) FROM STDIN (FORMAT binary)` when
//! the catalog says, in one query before it:
//!
//! - the table is an ordinary or partitioned table (not a view or foreign table);
//! - it has no rules (COPY ignores them) and no row-level security (COPY refuses it);
//! - neither it nor any partition has a trigger of a user's (a statement trigger would
//!   fire once instead of once a row); the server's own constraint triggers are fine,
//!   except a foreign key into the table's own family (COPY checks it once at its end,
//!   where each INSERT checks its own row: a row may refer to a later one) and a
//!   deferrable unique, primary or exclusion key (checked at the end too, where COPY
//!   names no row);
//! - no default, generated column or CHECK constraint of it calls a function of a
//!   user's or one of the server's that runs a query (`query_to_xml`, `ts_stat`, ...):
//!   such a function may read the table, which COPY fills under one snapshot where
//!   each INSERT sees the rows before it;
//! - each value's column is neither `GENERATED ALWAYS AS IDENTITY` (COPY would write it)
//!   nor generated, its type is no domain (whose checks may call functions), and its
//!   type is the parameter's type as the server described it, so each value's binary
//!   form is the column's.
//!
//! Anything else, or any doubt (an older server, a table not found), runs row by row as
//! before. The rows go in chunks, each chunk a `COPY` of its own, all under one Sync: one
//! implicit transaction, so all rows take effect or none, as row by row.
//!
//! **Which row failed.** A chunk is kept until the server acknowledges it (at most
//! [`IN_FLIGHT`] chunks, about a megabyte). If one fails with a data or constraint error
//! (SQLSTATE class 22 or 23), its rows run again as the statement itself, one by one, in a
//! transaction that is then rolled back: the first that fails is the row, and its error is
//! the one the caller gets, as row by row. An error that needs rows of an earlier chunk to
//! happen again (a duplicate within the batch) takes the row from the server's error
//! context (`COPY t, line n`) when the server writes it in English, and has no
//! [`Error::batch_index`] otherwise.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::message::frontend;
use postgres_types::{Format, ToSql, Type};

use super::batch::RowParams;
use super::Connection;
use crate::copy_row::{put_header, ValueName, HEADER_LEN};
use crate::error::{DbError, Error, Result};
use crate::protocol::copy::{copy_rows, write_copy_data, write_copy_done};
use crate::protocol::extended::{
    write_abort, write_bind_execute_in, write_parse, write_sync, Described,
};
use crate::protocol::BackendMessage;
use crate::sql::insert_shape::{quote, InsertShape};

/// A chunk's size: one `COPY` statement's data.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks (or rows sent on their own) not yet acknowledged, at most.
const IN_FLIGHT: usize = 3;

/// Whether COPY may carry the rows, and the columns of each value (see the module's
/// list). One row per value, in the statement's order.
const PLAN_SQL: &str = "\
WITH target AS (SELECT pg_catalog.to_regclass($1::pg_catalog.text) AS oid),
tree AS (
    SELECT oid AS relid FROM target
    UNION SELECT p.relid FROM target, pg_catalog.pg_partition_tree(target.oid) p
),
family AS (
    SELECT relid FROM tree
    UNION SELECT p.relid FROM target,
        pg_catalog.pg_partition_tree(pg_catalog.pg_partition_root(target.oid)) p
),
expr AS (
    SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass AS classid, d.oid, d.adbin AS bin
    FROM pg_catalog.pg_attrdef d WHERE d.adrelid IN (SELECT relid FROM tree)
    UNION ALL
    SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, k.oid, k.conbin
    FROM pg_catalog.pg_constraint k
    WHERE k.contype = 'c' AND k.conrelid IN (SELECT relid FROM tree)
)
SELECT c.relkind IN ('r', 'p') AND NOT c.relhasrules AND NOT c.relrowsecurity
       AND NOT EXISTS (
           SELECT FROM pg_catalog.pg_trigger t
           WHERE t.tgrelid IN (SELECT relid FROM tree) AND NOT t.tgisinternal)
       AND NOT EXISTS (
           SELECT FROM pg_catalog.pg_constraint k
           WHERE k.conrelid IN (SELECT relid FROM tree)
             AND ((k.contype = 'f' AND k.confrelid IN (SELECT relid FROM family))
                  OR (k.contype IN ('p', 'u', 'x') AND k.condeferrable)))
       AND NOT EXISTS (
           SELECT FROM expr e JOIN pg_catalog.pg_depend d
               ON d.classid = e.classid AND d.objid = e.oid
           WHERE d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass)
       AND NOT EXISTS (
           SELECT FROM expr e, pg_catalog.pg_proc f
           WHERE f.pronamespace = 'pg_catalog'::pg_catalog.regnamespace
             AND f.proname ~ '^((query|cursor|table|schema|database)_to_xml|ts_stat$|pg_stat_get_xact_)'
             AND pg_catalog.strpos(e.bin::pg_catalog.text, ':funcid ' || f.oid || ' ') > 0),
       CASE WHEN a.attidentity = 'a' OR a.attgenerated <> '' OR ty.typtype = 'd'
            THEN 0::pg_catalog.oid ELSE a.atttypid END,
       a.attname::pg_catalog.text
FROM target
JOIN pg_catalog.pg_class c ON c.oid = target.oid
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
WHERE $2::pg_catalog.text[] IS NULL OR a.attname::pg_catalog.text = ANY ($2::pg_catalog.text[])
ORDER BY CASE WHEN $2::pg_catalog.text[] IS NULL THEN a.attnum::pg_catalog.int4
              ELSE pg_catalog.array_position($2::pg_catalog.text[], a.attname::pg_catalog.text) END
LIMIT $3::pg_catalog.int4";

/// How the rows of one statement go by COPY.
pub(super) struct CopyPlan {
    /// `COPY table (columns in the parameters' order) FROM STDIN (FORMAT binary)`.
    copy_sql: String,
}

/// What was sent and not yet acknowledged.
enum Unit {
    /// A COPY of rows `first..first + rows`, with its data (the rows as COPY encodes them).
    Copy {
        first: usize,
        rows: usize,
        data: Bytes,
    },
    /// One row sent as the statement itself (a value that encodes only as text).
    Row(usize),
}

impl Connection {
    /// Asks the catalog whether COPY may carry the rows of `shape` (see the module's
    /// list): `None` runs them row by row. One exchange of its own, with its Sync.
    pub(super) async fn copy_plan(
        &mut self,
        shape: &InsertShape,
        described: &Described,
    ) -> Result<Option<CopyPlan>> {
        let n = shape.params.len();
        if n == 0 || n != described.params.len() {
            return Ok(None);
        }
        // Prepared like any statement (the connection's statement cache), so that its plan
        // is made once per connection rather than at every call. In a cache of one, the
        // two would evict each other at every call: then it is parsed each time instead.
        let (name, types): (Arc<str>, Arc<[Type]>) = if self.statements.capacity() < 2 {
            (
                Arc::from(""),
                Arc::from([Type::TEXT, Type::TEXT_ARRAY, Type::INT4]),
            )
        } else {
            match self.prepared(PLAN_SQL).await {
                Ok((name, plan)) => (name, plan.params),
                Err(e) if e.as_db_error().is_some() => {
                    // An older server without the catalog functions it uses: row by row.
                    self.finish_pending().await?;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        };
        let table = shape.quoted_table();
        let count = n as i32;
        let executed = self
            .own_query(&name, PLAN_SQL, &types, &[&table, &shape.columns, &count])
            .await?;
        if executed.error.is_some() || executed.rows.len() != n {
            return Ok(None);
        }
        let mut columns = vec![String::new(); n];
        for (row, &param) in executed.rows.iter().zip(&shape.params) {
            let ok: Option<bool> = row.try_get(0)?;
            let oid: u32 = row.try_get(1)?;
            let name: String = row.try_get(2)?;
            if ok != Some(true) || oid == 0 || described.params[param - 1].oid() != oid {
                return Ok(None);
            }
            columns[param - 1] = quote(&name);
        }
        Ok(Some(CopyPlan {
            copy_sql: format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                table,
                columns.join(", ")
            ),
        }))
    }

    /// The rows of an atomic `execute_many` by COPY (see the module), under one Sync.
    pub(super) async fn run_many_copy<I, P>(
        &mut self,
        sql: &str,
        name: &str,
        described: &Described,
        plan: CopyPlan,
        mut rows: I,
    ) -> Result<u64>
    where
        I: Iterator<Item = P>,
        P: RowParams,
    {
        let types = described.params.clone();
        let mut units: VecDeque<Unit> = VecDeque::new();
        let mut chunk = BytesMut::new();
        let (mut chunk_first, mut next_row) = (0usize, 0usize);
        let mut done = false;
        let mut total = 0u64;
        // The server's first error, with the unit it ended (`None`: the abort's own).
        let mut failed: Option<(Box<DbError>, Option<Unit>)> = None;
        // A row that did not convert: everything sent is rolled back.
        let mut unconverted: Option<Error> = None;
        self.in_flight = true;
        loop {
            while !done && units.len() < IN_FLIGHT && self.write_buf.len() < CHUNK_BYTES {
                let Some(row) = rows.next() else {
                    self.send_chunk(&plan, &mut chunk, &mut units, chunk_first, next_row)?;
                    self.end_many(false);
                    done = true;
                    break;
                };
                if chunk.is_empty() {
                    put_header(&mut chunk);
                    chunk_first = next_row;
                }
                match row.with_params(|p| encode_row(&mut chunk, &types, p)) {
                    Ok(true) => {}
                    Ok(false) => {
                        // A value that encodes only as text: this row goes as the
                        // statement itself, between two chunks.
                        self.send_chunk(&plan, &mut chunk, &mut units, chunk_first, next_row)?;
                        let unnamed = name.is_empty();
                        let r = row.with_params(|p| {
                            self.write_one(sql, name, described, p, unnamed, false)
                        });
                        if let Err(e) = r {
                            unconverted = Some(Error::from(e).with_batch_index(next_row));
                            self.end_many(true);
                            done = true;
                            break;
                        }
                        units.push_back(Unit::Row(next_row));
                    }
                    Err(e) => {
                        // The rows before it go first: an error of theirs is the first.
                        unconverted = Some(e.with_batch_index(next_row));
                        self.send_chunk(&plan, &mut chunk, &mut units, chunk_first, next_row)?;
                        self.end_many(!units.is_empty());
                        done = true;
                        break;
                    }
                }
                next_row += 1;
                if chunk.len() >= CHUNK_BYTES {
                    self.send_chunk(&plan, &mut chunk, &mut units, chunk_first, next_row)?;
                }
            }
            if done && self.pending == 0 {
                break;
            }
            poll_fn(|cx| self.poll_pipeline(cx)).await?;
            while let Some(msg) = self.pipeline_message()? {
                match msg {
                    BackendMessage::CommandComplete(tag) => {
                        total += match units.pop_front() {
                            Some(Unit::Copy { .. }) => copy_rows(&tag)?,
                            _ => tag
                                .rsplit(' ')
                                .next()
                                .and_then(|n| n.parse().ok())
                                .unwrap_or(0),
                        };
                    }
                    BackendMessage::CopyInResponse => {
                        self.copies_owed = self.copies_owed.saturating_sub(1);
                    }
                    BackendMessage::ErrorResponse(e) => {
                        if e.is_fatal() {
                            return Err(Error::db_boxed(e));
                        }
                        if failed.is_none() {
                            failed = Some((e, units.pop_front()));
                        }
                        units.clear();
                        if !done {
                            // The transaction failed: this Sync cannot commit it (the abort
                            // is skipped by the server, and says so to `batch_commit_sent`).
                            self.end_many(true);
                            done = true;
                        }
                    }
                    BackendMessage::NoticeResponse(n) => self.notice(&n),
                    BackendMessage::ReadyForQuery(_) => self.copies_owed = 0,
                    _ => {}
                }
            }
            // A million rows share the worker: the socket may never say "later".
            if !done {
                tokio::task::yield_now().await;
            }
        }
        self.in_flight = false;
        self.check_encoding()?;
        match (failed, unconverted) {
            (Some((e, Some(unit))), _) => Err(self.which_row(sql, name, described, e, unit).await),
            (_, Some(e)) => Err(e),
            (Some((e, None)), None) => Err(Error::db_boxed(e)),
            (None, None) => Ok(total),
        }
    }

    /// Writes the Sync that ends the rows' transaction; `abort` first makes it fail (what
    /// was sent is rolled back).
    fn end_many(&mut self, abort: bool) {
        if abort {
            write_abort(&mut self.write_buf);
        }
        write_sync(&mut self.write_buf);
        self.owe_ready(true);
        self.owes_sync = false;
        self.batch_open = false;
        // Aborted, it cannot commit; else from here the rows may take effect.
        self.batch_commit_sent = !abort;
    }

    /// Sends the chunk (if it has rows) as one COPY, whole: a caller that leaves between
    /// two writes leaves only whole statements behind, which the next request's abort
    /// rolls back (see `finish_pending`).
    fn send_chunk(
        &mut self,
        plan: &CopyPlan,
        chunk: &mut BytesMut,
        units: &mut VecDeque<Unit>,
        first: usize,
        end: usize,
    ) -> Result<()> {
        if end == first || chunk.is_empty() {
            chunk.clear();
            return Ok(());
        }
        chunk.put_i16(-1);
        let data = chunk.split().freeze();
        let mark = self.write_buf.len();
        let written = write_parse("", &plan.copy_sql, &[], &[], &mut self.write_buf)
            .and_then(|()| write_bind_execute_in("", &[], &[], false, false, &mut self.write_buf))
            .and_then(|()| write_copy_data(&data, &mut self.write_buf))
            .map_err(Error::from);
        write_copy_done(&mut self.write_buf);
        if let Err(e) = written {
            self.write_buf.truncate(mark);
            return Err(e);
        }
        self.copies_owed += 1;
        // Until the Sync, the rows are an open batch: a caller that leaves has them
        // aborted, not committed.
        self.owes_sync = true;
        self.batch_open = true;
        units.push_back(Unit::Copy {
            first,
            rows: end - first,
            data,
        });
        Ok(())
    }

    /// The error of a failed unit, with its row's index where it can be known (see the
    /// module).
    async fn which_row(
        &mut self,
        sql: &str,
        name: &str,
        described: &Described,
        e: Box<DbError>,
        unit: Unit,
    ) -> Error {
        let (first, rows, data) = match unit {
            Unit::Row(i) => return Error::db_boxed(e).with_batch_index(i),
            Unit::Copy { first, rows, data } => (first, rows, data),
        };
        if matches!(e.code().get(..2), Some("22" | "23")) {
            match self.rerun_rows(sql, name, described, &data).await {
                Ok(Some((again, k))) if k < rows => return again.with_batch_index(first + k),
                Ok(_) => {}
                Err(io) => return io,
            }
        }
        let line = e
            .where_()
            .and_then(copy_line)
            .filter(|&l| (1..=rows).contains(&l));
        let err = Error::db_boxed(e);
        match line {
            Some(l) => err.with_batch_index(first + l - 1),
            None => err,
        }
    }

    /// Runs a chunk's rows again as the statement itself, one Execute each, then makes the
    /// transaction fail so that none of it stays: the first row that fails, and its error.
    async fn rerun_rows(
        &mut self,
        sql: &str,
        name: &str,
        described: &Described,
        data: &Bytes,
    ) -> Result<Option<(Error, usize)>> {
        let values = decode_rows(data)
            .ok_or_else(|| Error::protocol("a chunk that does not decode".to_owned()))?;
        let sent = values.len();
        let mark = self.write_buf.len();
        let r = (|| -> Result<()> {
            if name.is_empty() {
                write_parse("", sql, &described.params, &[], &mut self.write_buf)?;
            }
            for row in &values {
                frontend::bind(
                    "",
                    name,
                    row.iter().map(|_| 1i16),
                    row.iter(),
                    |v, out: &mut BytesMut| match v {
                        Some(b) => {
                            out.put_slice(b);
                            Ok(postgres_protocol::IsNull::No)
                        }
                        None => Ok(postgres_protocol::IsNull::Yes),
                    },
                    Some(1),
                    &mut self.write_buf,
                )
                .map_err(|_| Error::protocol("a value too large to send again".to_owned()))?;
                frontend::execute("", 0, &mut self.write_buf).map_err(Error::io)?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            self.write_buf.truncate(mark);
            return Err(e);
        }
        self.in_flight = true;
        self.end_many(true);
        let mut ran = 0usize;
        let mut first_error = None;
        while self.pending > 0 {
            poll_fn(|cx| self.poll_pipeline(cx)).await?;
            while let Some(msg) = self.pipeline_message()? {
                match msg {
                    BackendMessage::CommandComplete(_) => ran += 1,
                    BackendMessage::ErrorResponse(e) if first_error.is_none() => {
                        if e.is_fatal() {
                            return Err(Error::db_boxed(e));
                        }
                        first_error = Some(e);
                    }
                    BackendMessage::NoticeResponse(n) => self.notice(&n),
                    _ => {}
                }
            }
        }
        self.in_flight = false;
        // After every row ran, the error is the abort's own: the failure did not recur.
        Ok(first_error
            .filter(|_| ran < sent)
            .map(|e| (Error::db_boxed(e), ran)))
    }
}

/// Appends one row in the binary COPY format. `Ok(false)`, with nothing written, for a row
/// with a value that encodes only as text; on error nothing is written either.
fn encode_row(buf: &mut BytesMut, types: &[Type], values: &[&(dyn ToSql + Sync)]) -> Result<bool> {
    if values.len() != types.len() {
        return Err(Error::invalid_input(format!(
            "the statement has {} parameter{}, {} value{} given",
            types.len(),
            if types.len() == 1 { "" } else { "s" },
            values.len(),
            if values.len() == 1 { " was" } else { "s were" }
        )));
    }
    if values
        .iter()
        .zip(types)
        .any(|(v, ty)| matches!(v.encode_format(ty), Format::Text))
    {
        return Ok(false);
    }
    crate::copy_row::encode_row(buf, types, values, ValueName::Parameter)?;
    Ok(true)
}

/// The rows of a chunk, each its values (`None`: NULL); `None` if it does not decode.
fn decode_rows(data: &Bytes) -> Option<Vec<Vec<Option<Bytes>>>> {
    let mut b = data.slice(HEADER_LEN..);
    let mut rows = Vec::new();
    loop {
        if b.remaining() < 2 {
            return None;
        }
        let n = b.get_i16();
        if n == -1 {
            return Some(rows);
        }
        let mut row = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n {
            if b.remaining() < 4 {
                return None;
            }
            let len = b.get_i32();
            if len < 0 {
                row.push(None);
            } else {
                let len = len as usize;
                if b.remaining() < len {
                    return None;
                }
                row.push(Some(b.split_to(len)));
            }
        }
        rows.push(row);
    }
}

/// The line (row) a COPY error's context names, as the server writes it in English:
/// `COPY table, line 12` (then perhaps `, column ...`).
fn copy_line(context: &str) -> Option<usize> {
    let first = context.lines().next()?;
    if !first.starts_with("COPY ") {
        return None;
    }
    let after = first.rsplit_once(", line ").map(|(_, rest)| rest)?;
    let digits: &str = &after[..after
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after.len())];
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_of_a_copy_context() {
        assert_eq!(copy_line("COPY many, line 12, column id"), Some(12));
        assert_eq!(copy_line("COPY many, line 3"), Some(3));
        assert_eq!(copy_line("COPY \"a, line 9\", line 4"), Some(4));
        assert_eq!(copy_line("COPY many, Zeile 3"), None);
        assert_eq!(copy_line("SQL statement \"...\""), None);
    }

    #[test]
    fn rows_decode_as_they_were_encoded() {
        let mut buf = BytesMut::new();
        put_header(&mut buf);
        let v: (i64, Option<String>) = (7, None);
        assert!(encode_row(&mut buf, &[Type::INT8, Type::TEXT], &[&v.0, &v.1]).unwrap());
        assert!(encode_row(&mut buf, &[Type::INT8, Type::TEXT], &[&8i64, &"x"]).unwrap());
        // A value of the wrong type writes nothing.
        assert!(encode_row(&mut buf, &[Type::INT8, Type::TEXT], &[&"no", &"x"]).is_err());
        buf.put_i16(-1);
        let rows = decode_rows(&buf.freeze()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0].as_deref(), Some(&7i64.to_be_bytes()[..]));
        assert_eq!(rows[0][1], None);
        assert_eq!(rows[1][1].as_deref(), Some(&b"x"[..]));
    }
}
