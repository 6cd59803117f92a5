//! Statement-level metrics: for each statement text, its calls, its errors by SQLSTATE, a
//! latency histogram, the rows it returned or affected, and the time it waited for a
//! connection or for room on a lane of the pipelined path. What `pg_stat_statements` tells, from the client's side
//! and without rights on the server.
//!
//! The label is the statement's text with its constants taken out (`crate::sql::normalize`:
//! a string or number constant becomes `?`, comments go, spaces collapse), so parameter
//! values are never part of it, nor a secret written into the text, and texts that differ
//! by a constant count as one statement. The table is bounded: the first `limit` labels
//! seen get a row each, and every other statement is counted under `other`, so the label
//! set, and the memory, stay bounded however many texts an application makes. A label
//! longer than [`LABEL_LIMIT`] bytes is cut at a character boundary. Each text is
//! normalised once: the label of the texts seen last is remembered (up to four times the
//! bound, texts of up to [`REMEMBERED_TEXT_LIMIT`] bytes).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::stats::BUCKET_NANOS;

/// The longest statement text kept as a label, in bytes.
pub const LABEL_LIMIT: usize = 256;

/// The label of the statements over the table's bound.
pub const OTHER: &str = "other";

/// The longest text whose label is remembered, in bytes (a longer one is normalised at
/// each run).
pub const REMEMBERED_TEXT_LIMIT: usize = 4096;

/// Where a text is counted: a row of the table, or `other`.
const OTHER_ROW: usize = usize::MAX;

/// What one statement's counts are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatementCounts {
    /// Times it ran (succeeded or failed).
    pub calls: u64,
    /// Failures by SQLSTATE (a server error), or by the error's kind for a failure on the
    /// client's side (`command_timeout`, `io`, ...), in the order first seen.
    pub errors: Vec<(String, u64)>,
    /// Rows returned (a query) or affected (a command), over its successful calls.
    pub rows: u64,
    /// Its latencies, counted in the buckets of the acquisition histogram (the last one is
    /// `+Inf`).
    pub histogram: [u64; 21],
    /// The sum of its latencies, in seconds.
    pub duration_seconds: f64,
    /// Time spent waiting before it ran: for room on a lane (the pipelined path, part of
    /// its latency), or for a connection (the checkout's wait, counted against the first
    /// statement run on the checked-out connection, before its latency).
    pub wait_seconds: f64,
}

impl StatementCounts {
    /// The errors in all.
    pub fn error_count(&self) -> u64 {
        self.errors.iter().map(|(_, n)| n).sum()
    }

    fn add(&mut self, d: Duration, wait: Duration, rows: Option<u64>, error: Option<&str>) {
        self.calls += 1;
        match error {
            Some(code) => match self.errors.iter_mut().find(|(c, _)| c == code) {
                Some((_, n)) => *n += 1,
                None => self.errors.push((code.to_string(), 1)),
            },
            None => self.rows += rows.unwrap_or(0),
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKET_NANOS
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BUCKET_NANOS.len());
        self.histogram[i] += 1;
        self.duration_seconds += d.as_secs_f64();
        self.wait_seconds += wait.as_secs_f64();
    }
}

/// One row of the table: a statement's label and its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementRow {
    /// The statement's text as counted (cut to [`LABEL_LIMIT`] bytes), or [`OTHER`].
    pub statement: Arc<str>,
    /// Its counts.
    pub counts: StatementCounts,
}

/// The bounded table, shared by a pool's connections and its pipelined path.
#[derive(Debug)]
pub(crate) struct StatementMetrics {
    limit: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// The rows: a label and its counts.
    rows: Vec<(Arc<str>, StatementCounts)>,
    /// Each row's index by its label.
    by_label: crate::text_map::TextMap<usize>,
    /// Texts seen, with the row they count in ([`OTHER_ROW`] for `other`).
    by_text: crate::text_map::TextMap<usize>,
    other: StatementCounts,
}

impl StatementMetrics {
    /// A table of at most `limit` statements (and `other`).
    pub(crate) fn new(limit: usize) -> StatementMetrics {
        StatementMetrics {
            limit,
            table: Mutex::new(Table::default()),
        }
    }

    /// Counts one run of `sql`: its latency, the part of it spent waiting for a lane, the
    /// rows (on success) and the error's SQLSTATE or kind (on failure). Returns the label
    /// it was counted under.
    pub(crate) fn record(
        &self,
        sql: &str,
        d: Duration,
        wait: Duration,
        rows: Option<u64>,
        error: Option<&str>,
    ) -> Arc<str> {
        {
            let mut t = self.table.lock();
            if let Some(&i) = t.by_text.get(sql) {
                return t.add(i, d, wait, rows, error);
            }
        }
        // A text not seen (or not remembered): normalised outside the lock.
        let mut normalized = crate::sql::normalize::normalize(sql);
        if normalized == OTHER {
            // The statement `other` (an error, but counted): a trailing space, which no
            // normalised text has, keeps it apart from the bucket of the same name.
            normalized.push(' ');
        }
        let label = cut(&normalized);
        let mut t = self.table.lock();
        let i = match t.by_label.get(label) {
            Some(&i) => i,
            None if t.rows.len() < self.limit => {
                let l: Arc<str> = Arc::from(label);
                t.rows.push((l.clone(), StatementCounts::default()));
                let i = t.rows.len() - 1;
                t.by_label.insert(l, i);
                i
            }
            None => OTHER_ROW,
        };
        if sql.len() <= REMEMBERED_TEXT_LIMIT && t.by_text.len() < self.limit.saturating_mul(4) {
            t.by_text.insert(Arc::from(sql), i);
        }
        t.add(i, d, wait, rows, error)
    }

    /// Every statement's latency histogram (`other` too) added up.
    pub(crate) fn histogram_sum(&self) -> [u64; 21] {
        let t = self.table.lock();
        let mut sum = t.other.histogram;
        for (_, c) in &t.rows {
            for (s, n) in sum.iter_mut().zip(c.histogram) {
                *s += n;
            }
        }
        sum
    }

    /// The table, busiest statements (by total time) first, `other` last when anything
    /// was counted there.
    pub(crate) fn snapshot(&self) -> Vec<StatementRow> {
        let t = self.table.lock();
        let mut rows: Vec<StatementRow> = t
            .rows
            .iter()
            .map(|(k, c)| StatementRow {
                statement: k.clone(),
                counts: c.clone(),
            })
            .collect();
        rows.sort_by(|a, b| {
            b.counts
                .duration_seconds
                .total_cmp(&a.counts.duration_seconds)
                .then_with(|| a.statement.cmp(&b.statement))
        });
        if t.other.calls > 0 {
            rows.push(StatementRow {
                statement: Arc::from(OTHER),
                counts: t.other.clone(),
            });
        }
        rows
    }
}

impl Table {
    /// Counts a run in row `i` (or `other`); its label.
    fn add(
        &mut self,
        i: usize,
        d: Duration,
        wait: Duration,
        rows: Option<u64>,
        error: Option<&str>,
    ) -> Arc<str> {
        match self.rows.get_mut(i) {
            Some((l, c)) => {
                c.add(d, wait, rows, error);
                l.clone()
            }
            None => {
                self.other.add(d, wait, rows, error);
                Arc::from(OTHER)
            }
        }
    }
}

/// `sql` cut to [`LABEL_LIMIT`] bytes at a character boundary.
fn cut(sql: &str) -> &str {
    if sql.len() <= LABEL_LIMIT {
        return sql;
    }
    let mut end = LABEL_LIMIT;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    &sql[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_stays_at_its_bound_and_counts_the_rest_as_other() {
        let m = StatementMetrics::new(3);
        let ms = Duration::from_millis(1);
        for i in 0..10 {
            let sql = format!("SELECT a{i}");
            let l = m.record(&sql, ms, Duration::ZERO, Some(1), None);
            assert_eq!(&*l, if i < 3 { sql.as_str() } else { OTHER });
        }
        m.record("SELECT a0", ms, ms, None, Some("22012"));
        m.record("SELECT a0", ms, ms, None, Some("22012"));
        m.record("SELECT a0", ms, ms, None, Some("57014"));
        let rows = m.snapshot();
        assert_eq!(rows.len(), 4, "{rows:?}");
        let first = &rows[0];
        assert_eq!(&*first.statement, "SELECT a0");
        assert_eq!(first.counts.calls, 4);
        assert_eq!(first.counts.rows, 1);
        assert_eq!(
            first.counts.errors,
            vec![("22012".to_string(), 2), ("57014".to_string(), 1)]
        );
        assert_eq!(first.counts.histogram.iter().sum::<u64>(), 4);
        assert!((first.counts.wait_seconds - 0.003).abs() < 1e-9);
        let other = rows.last().unwrap();
        assert_eq!(&*other.statement, OTHER);
        assert_eq!(other.counts.calls, 7);
        assert_eq!(other.counts.rows, 7);
    }

    #[test]
    fn texts_that_differ_by_a_constant_are_one_statement_and_show_none() {
        let m = StatementMetrics::new(10);
        for pw in ["hunter2", "s3cr3t", "another one"] {
            let l = m.record(
                &format!("ALTER ROLE app PASSWORD '{pw}'"),
                Duration::ZERO,
                Duration::ZERO,
                None,
                None,
            );
            assert_eq!(&*l, "ALTER ROLE app PASSWORD ?");
        }
        let rows = m.snapshot();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].counts.calls, 3);
        assert!(!format!("{rows:?}").contains("hunter2"));
    }

    #[test]
    fn a_statement_named_other_is_not_the_other_bucket() {
        let m = StatementMetrics::new(1);
        m.record("SELECT 1", Duration::ZERO, Duration::ZERO, None, None);
        let l = m.record("other", Duration::ZERO, Duration::ZERO, None, Some("42601"));
        assert_eq!(&*l, OTHER, "over the bound");
        let m = StatementMetrics::new(5);
        let l = m.record(
            "  other ",
            Duration::ZERO,
            Duration::ZERO,
            None,
            Some("42601"),
        );
        assert_ne!(&*l, OTHER);
        for i in 0..10 {
            m.record(
                &format!("SELECT a{i}"),
                Duration::ZERO,
                Duration::ZERO,
                None,
                None,
            );
        }
        let labels: Vec<String> = m
            .snapshot()
            .iter()
            .map(|r| r.statement.to_string())
            .collect();
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), labels.len(), "{labels:?}");
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        let m = StatementMetrics::new(10);
        let long = format!("SELECT {}", "é".repeat(LABEL_LIMIT));
        let l = m.record(&long, Duration::ZERO, Duration::ZERO, None, None);
        assert!(l.len() <= LABEL_LIMIT && long.starts_with(&*l));
        // The same long text counts under the same label.
        m.record(&long, Duration::ZERO, Duration::ZERO, None, None);
        assert_eq!(m.snapshot()[0].counts.calls, 2);
    }
}
