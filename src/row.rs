//! A row of an extended query's result ([`Row`]): its columns, and its values in
//! PostgreSQL's binary format read as Rust types through `FromSql` ([`Row::get`],
//! [`Row::try_get`]), with the crate's conversion errors.

use std::fmt;
use std::sync::Arc;

use postgres_types::FromSql;

use crate::error::{Error, Result};
use crate::protocol::{Column, DataRowBody, FromDataRow, RowIndex};

/// One row of an extended query's result, values in PostgreSQL's binary format.
#[derive(Clone)]
pub struct Row {
    columns: Arc<[Column]>,
    body: DataRowBody,
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Row")
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

impl Row {
    pub(crate) fn columns_arc(&self) -> Arc<[Column]> {
        self.columns.clone()
    }

    /// The same values under other columns: the same names, types now known.
    pub(crate) fn set_columns(&mut self, columns: Arc<[Column]>) {
        debug_assert_eq!(columns.len(), self.columns.len());
        self.columns = columns;
    }

    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Column `i`'s bytes as the server sent them: `None` past the last column,
    /// `Some(None)` for NULL.
    pub(crate) fn value_bytes(&self, i: usize) -> Option<Option<&[u8]>> {
        self.body.get(i)
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// True for a row without columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
}

impl FromDataRow for Row {
    fn from_data_row(columns: Arc<[Column]>, body: DataRowBody) -> Row {
        Row { columns, body }
    }
}

/// The protocol's extended-query answer, with its rows as [`Row`]s.
pub(crate) type Execute = crate::protocol::extended::Execute<Row>;
/// The answer to one extended query, assembled.
pub(crate) type Executed = crate::protocol::extended::Executed<Row>;

impl Row {
    /// The value of column `idx` (an index or a name) as a `T`.
    ///
    /// # Panics
    ///
    /// If there is no such column, or its value cannot be read as a `T` (the message names
    /// the column and both types), as tokio-postgres does. [`Row::try_get`] returns an error
    /// instead.
    #[track_caller]
    pub fn get<'a, I, T>(&'a self, idx: I) -> T
    where
        I: RowIndex + fmt::Display,
        T: FromSql<'a>,
    {
        match self.try_get(&idx) {
            Ok(v) => v,
            Err(e) => panic!("error retrieving column {idx}: {}", crate::error::chain(&e)),
        }
    }

    /// The value of column `idx` (an index or a name) as a `T`.
    ///
    /// # Errors
    ///
    /// A conversion error when there is no such column, when its type cannot be read as a
    /// `T` (an `i32` from a `text` column, say), when it is NULL and `T` is not an
    /// `Option`, or when its bytes are malformed for the type.
    pub fn try_get<'a, I, T>(&'a self, idx: I) -> Result<T>
    where
        I: RowIndex + fmt::Display,
        T: FromSql<'a>,
    {
        let Some(i) = idx.index(self.columns()) else {
            return Err(Error::conversion_msg(format!(
                "no column {idx} in this row"
            )));
        };
        let col = &self.columns()[i];
        let ty = col.type_();
        let about = || {
            format!(
                "column \"{}\" of type {ty}, read as {}",
                col.name(),
                std::any::type_name::<T>()
            )
        };
        if !T::accepts(ty) {
            let wrong = postgres_types::WrongType::new::<T>(ty.clone());
            return Err(Error::from_sql(i, about(), wrong));
        }
        let raw = self.value_bytes(i).flatten();
        T::from_sql_nullable(ty, raw).map_err(|e| Error::from_sql(i, about(), e))
    }
}
