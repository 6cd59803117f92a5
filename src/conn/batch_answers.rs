//! The answers of a batch or of `execute_many`, assembled message by message: each
//! statement's rows or count, the first error with its statement's index, and the
//! ReadyForQuery messages still owed (one per Sync).

use std::sync::Arc;

use super::batch::BatchResult;
use crate::error::{DbError, Error, Result};
use crate::protocol::{BackendMessage, FromDataRow};
use crate::row::Row;

/// A statement sent, whose answer is still to come.
#[derive(Debug)]
struct Expected {
    /// Its columns (empty: no rows wanted).
    columns: Arc<[crate::protocol::Column]>,
    /// Whether its rows are wanted.
    rows: bool,
    /// It ends its transaction keeping its work (`COMMIT`, `END`, `PREPARE TRANSACTION`):
    /// its tag `ROLLBACK` says the transaction had failed and was rolled back.
    commit: bool,
}

/// The answers of a batch, assembled as they come.
#[derive(Debug)]
pub(crate) struct Answers {
    atomic: bool,
    /// The statements sent whose answers are still to come, in order.
    expected: std::collections::VecDeque<Expected>,
    results: Vec<BatchResult>,
    /// Statements answered so far (a result or an error, or skipped after an error).
    answered: usize,
    rows: Vec<Row>,
    first_error: Option<Error>,
    /// ReadyForQuery still owed (independent: one per statement; atomic: one).
    readies: usize,
    aborting: bool,
    total: u64,
    copy: bool,
    /// A statement of the batch ended its transaction keeping its work (the tag `COMMIT`
    /// or `PREPARE TRANSACTION`): what ran before it stays whatever fails after.
    committed: bool,
    /// Independent: the last statement succeeded and its ReadyForQuery has not come, so
    /// an error now is its commit's (a deferred constraint) and undoes it.
    unsynced_ok: bool,
    /// Independent: the rows counted since the last ReadyForQuery (taken back from the
    /// total if that commit fails).
    since_sync: u64,
    /// Each statement's [`BatchResult`] is kept (a batch); `execute_many` keeps only the
    /// total, so that its memory does not grow with its rows.
    keep_results: bool,
    /// Per statement answered, the columns its rows came with (`None`: it failed or was
    /// skipped); kept only for [`Answers::keeping_columns`].
    columns: Option<Vec<Option<Arc<[crate::protocol::Column]>>>>,
}

impl Answers {
    /// The answers of an atomic batch that keep each statement's columns (a lane confirms
    /// them for its prepared statements).
    pub(crate) fn keeping_columns() -> Answers {
        Answers {
            columns: Some(Vec::new()),
            ..Answers::new(true)
        }
    }

    /// Each statement's columns as its answer brought them, in order (see
    /// [`Answers::keeping_columns`]).
    pub(crate) fn columns(&self) -> &[Option<Arc<[crate::protocol::Column]>>] {
        self.columns.as_deref().unwrap_or(&[])
    }

    /// The first error the batch met (with its statement's index).
    pub(crate) fn error(&self) -> Option<&Error> {
        self.first_error.as_ref()
    }

    /// Takes the first error the batch met.
    pub(super) fn take_error(&mut self) -> Option<Error> {
        self.first_error.take()
    }

    fn keep_columns(&mut self, c: Option<Arc<[crate::protocol::Column]>>) {
        if let Some(all) = &mut self.columns {
            all.push(c);
        }
    }

    pub(super) fn new(atomic: bool) -> Answers {
        Answers {
            atomic,
            expected: Default::default(),
            results: Vec::new(),
            answered: 0,
            rows: Vec::new(),
            first_error: None,
            readies: 0,
            aborting: false,
            total: 0,
            copy: false,
            committed: false,
            unsynced_ok: false,
            since_sync: 0,
            keep_results: true,
            columns: None,
        }
    }

    /// The answers of `execute_many`: the total count and the first error, nothing kept
    /// per row.
    pub(super) fn counting(atomic: bool) -> Answers {
        Answers {
            keep_results: false,
            ..Answers::new(atomic)
        }
    }

    /// A statement sent: its columns, whether its rows are wanted, and whether it is a
    /// `COMMIT`, `END` or `PREPARE TRANSACTION` (its tag `ROLLBACK` then says the
    /// transaction had failed).
    pub(crate) fn expect_rows(
        &mut self,
        columns: Arc<[crate::protocol::Column]>,
        rows: bool,
        commit: bool,
    ) {
        self.expected.push_back(Expected {
            columns,
            rows,
            commit,
        });
        if !self.atomic {
            self.readies += 1;
        } else if self.readies == 0 {
            self.readies = 1;
        }
    }

    pub(super) fn abort_expected(&mut self) {
        self.aborting = true;
        if !self.atomic {
            self.readies += 1;
        }
    }

    /// Whether every statement of `n` is answered and every ReadyForQuery read.
    pub(crate) fn complete(&self, n: usize) -> bool {
        self.answered >= n && self.readies == 0
    }

    pub(crate) fn feed(&mut self, msg: BackendMessage) -> Result<()> {
        match msg {
            BackendMessage::ParseComplete
            | BackendMessage::BindComplete
            | BackendMessage::CloseComplete
            | BackendMessage::NoData
            | BackendMessage::PortalSuspended
            | BackendMessage::ParameterStatus { .. }
            | BackendMessage::NotificationResponse { .. } => {}
            BackendMessage::RowDescription(fields) => {
                if let Some(e) = self.expected.front_mut() {
                    e.columns = crate::protocol::extended::columns_like_known(fields, &e.columns);
                }
            }
            BackendMessage::DataRow(body) => {
                let Some(Expected {
                    columns: cols,
                    rows: wanted,
                    ..
                }) = self.expected.front()
                else {
                    return Err(Error::protocol("a row with no batch statement waiting"));
                };
                if body.len() != cols.len() {
                    return Err(Error::protocol(format!(
                        "DataRow has {} values for {} columns",
                        body.len(),
                        cols.len()
                    )));
                }
                if *wanted {
                    self.rows.push(Row::from_data_row(cols.clone(), body));
                }
            }
            BackendMessage::CommandComplete(tag) => {
                if &*tag == "ROLLBACK" && self.expected.front().is_some_and(|e| e.commit) {
                    // A COMMIT (or PREPARE TRANSACTION) of a transaction that had
                    // failed: the server rolled it back, as `Transaction::commit` reports.
                    let index = self.answered;
                    self.expected.pop_front();
                    self.answered += 1;
                    self.keep_columns(None);
                    self.rows.clear();
                    self.record_error(Error::rolled_back().with_batch_index(index));
                    return Ok(());
                }
                self.committed |= matches!(&*tag, "COMMIT" | "PREPARE TRANSACTION");
                let count = tag
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                self.finish(Some(count));
            }
            BackendMessage::EmptyQueryResponse => self.finish(Some(0)),
            BackendMessage::CopyOutResponse => self.copy = true,
            BackendMessage::CopyData(_) | BackendMessage::CopyDone if self.copy => {}
            BackendMessage::ErrorResponse(db)
                if self.unsynced_ok
                    || (self.atomic && self.expected.is_empty() && !self.aborting) =>
            {
                self.fail_at_commit(db)
            }
            BackendMessage::ErrorResponse(db) => {
                let index = self.answered;
                self.fail(index, db);
            }
            BackendMessage::ReadyForQuery(_) => {
                self.unsynced_ok = false;
                self.since_sync = 0;
                self.readies = self.readies.saturating_sub(1);
                if self.atomic {
                    // Everything after an error was skipped by the server.
                    while !self.expected.is_empty() {
                        self.expected.pop_front();
                        self.answered += 1;
                        self.keep_columns(None);
                    }
                }
            }
            other => {
                return Err(Error::protocol(format!(
                    "unexpected {} in the answer to a batch",
                    other.name()
                )))
            }
        }
        Ok(())
    }

    fn finish(&mut self, count: Option<u64>) {
        let Some(Expected {
            columns,
            rows: wanted,
            ..
        }) = self.expected.pop_front()
        else {
            return;
        };
        self.keep_columns((!self.copy).then_some(columns));
        let rows = std::mem::take(&mut self.rows);
        let count = count.unwrap_or(0);
        if self.copy {
            self.copy = false;
            let e = Error::copy_unsupported().with_batch_index(self.answered);
            self.record_error(e);
        } else {
            self.total += count;
            self.since_sync += count;
            self.unsynced_ok = !self.atomic;
            if self.keep_results {
                self.results.push(BatchResult {
                    rows: wanted.then_some(rows),
                    count,
                    error: None,
                });
            }
        }
        self.answered += 1;
    }

    fn fail(&mut self, index: usize, db: Box<DbError>) {
        if self.aborting
            && db.code() == crate::error::sqlstate::INVALID_CURSOR_NAME
            && self.expected.is_empty()
        {
            // The abort's own error: the batch's error was recorded before it.
            return;
        }
        self.copy = false;
        self.rows.clear();
        let e = Error::db_boxed(db).with_batch_index(index);
        if self.expected.pop_front().is_some() {
            self.answered += 1;
            self.keep_columns(None);
        }
        self.record_error(e);
    }

    /// The commit at a Sync failed after its statements succeeded (a deferred unique or
    /// foreign-key check): independent, the statement that Sync ended is undone and
    /// carries the error; atomic, the batch fails as a whole, with no statement's index
    /// (the server does not say which statement's row broke the constraint).
    fn fail_at_commit(&mut self, db: Box<DbError>) {
        self.unsynced_ok = false;
        let e = Error::db_boxed(db);
        if self.atomic {
            self.record_error(e);
            return;
        }
        self.total -= std::mem::take(&mut self.since_sync);
        // The statement that Sync ended is undone: its error takes its result's place.
        self.results.pop();
        self.record_error(e.with_batch_index(self.answered.saturating_sub(1)));
    }

    fn record_error(&mut self, e: Error) {
        if self.atomic {
            if self.first_error.is_none() {
                // A COMMIT before the failure kept what ran before it: the batch did not
                // fail as a whole.
                self.first_error = Some(if self.committed { e.with_sent(true) } else { e });
            }
        } else {
            if !self.keep_results {
                self.first_error.get_or_insert(e);
                return;
            }
            if self.first_error.is_none() {
                self.first_error = Some(e.duplicate());
            }
            self.results.push(BatchResult {
                rows: None,
                count: 0,
                error: Some(e),
            });
        }
    }

    pub(crate) fn into_results(self) -> Result<Vec<BatchResult>> {
        match (self.atomic, self.first_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(self.results),
        }
    }

    pub(super) fn into_count(self) -> Result<u64> {
        match self.first_error {
            Some(e) => Err(e),
            None => Ok(self.total),
        }
    }
}
