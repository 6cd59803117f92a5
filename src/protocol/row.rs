//! Result rows: typed rows of the extended protocol ([`Row`], values in binary, read with
//! `FromSql`), and text rows of the simple query protocol ([`SimpleRow`]).

use std::fmt;
use std::sync::Arc;

use postgres_types::{FromSql, Type};

use super::backend::DataRowBody;
use crate::error::{Error, Result};

/// A result column: its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    name: String,
    type_: Type,
}

impl Column {
    pub(crate) fn new(name: String, type_: Type) -> Column {
        Column { name, type_ }
    }
    /// The column's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its type (custom types have a name made of their OID).
    pub fn type_(&self) -> &Type {
        &self.type_
    }
    /// The OID of its type.
    pub fn type_oid(&self) -> u32 {
        self.type_.oid()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A way to name a column: its index (`usize`) or its name (`&str`).
pub trait RowIndex: sealed::Sealed {
    /// The index of the column in `columns`, if there is one.
    fn index(&self, columns: &[Column]) -> Option<usize>;
}

impl sealed::Sealed for usize {}
impl RowIndex for usize {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
}

impl sealed::Sealed for str {}
impl RowIndex for str {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        columns.iter().position(|c| c.name == self)
    }
}

impl<T: ?Sized + sealed::Sealed> sealed::Sealed for &T {}
impl<T: ?Sized + RowIndex> RowIndex for &T {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        T::index(*self, columns)
    }
}

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
    pub(crate) fn new(columns: Arc<[Column]>, body: DataRowBody) -> Row {
        Row { columns, body }
    }

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

    /// The number of values.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// True for a row without columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

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
        let Some(i) = idx.index(&self.columns) else {
            return Err(Error::conversion_msg(format!(
                "no column {idx} in this row"
            )));
        };
        let col = &self.columns[i];
        let ty = col.type_();
        let about = || {
            format!(
                "column \"{}\" of type {ty}, read as {}",
                col.name,
                std::any::type_name::<T>()
            )
        };
        if !T::accepts(ty) {
            let wrong = postgres_types::WrongType::new::<T>(ty.clone());
            return Err(Error::from_sql(i, about(), wrong));
        }
        let raw = self.body.get(i).flatten();
        T::from_sql_nullable(ty, raw).map_err(|e| Error::from_sql(i, about(), e))
    }
}

/// One row of a simple query's result, in text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleRow {
    columns: Arc<[Column]>,
    body: DataRowBody,
}

impl SimpleRow {
    /// A row whose values were checked to be UTF-8.
    pub(crate) fn new(columns: Arc<[Column]>, body: DataRowBody) -> SimpleRow {
        SimpleRow { columns, body }
    }

    /// The value of column `idx` as text; `None` for SQL NULL or an index out of range.
    pub fn get(&self, idx: usize) -> Option<&str> {
        // Values were checked to be UTF-8 when the row was received.
        self.body
            .get(idx)
            .flatten()
            .and_then(|b| std::str::from_utf8(b).ok())
    }
    /// The value of the column named `name` (the first, if several share the name).
    pub fn get_named(&self, name: &str) -> Option<&str> {
        self.get(self.column_index(name)?)
    }
    /// True if column `idx` is SQL NULL.
    pub fn is_null(&self, idx: usize) -> bool {
        matches!(self.body.get(idx), Some(None))
    }
    /// The index of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
    /// The number of values.
    pub fn len(&self) -> usize {
        self.body.len()
    }
    /// True if the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }
}
