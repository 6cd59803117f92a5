//! Result rows: the columns of a result ([`Column`], named by [`RowIndex`]), what the
//! rows of the extended protocol are made into ([`FromDataRow`]: the connection layer's
//! typed row), and the text rows of the simple query protocol ([`SimpleRow`]).

use std::sync::Arc;

use postgres_types::Type;

use super::backend::DataRowBody;

/// A result column: its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    name: String,
    type_: Type,
}

impl Column {
    /// A column named `name` of type `type_`.
    pub fn new(name: String, type_: Type) -> Column {
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

/// What an extended query's rows are made into: the connection layer's row type, built
/// from the columns the values are decoded by and the DataRow's body.
pub trait FromDataRow {
    /// A row of `body`'s values under `columns` (as many as it has values).
    fn from_data_row(columns: Arc<[Column]>, body: DataRowBody) -> Self;
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
