//! Typed values out of a row of the extended protocol: [`Row::get`] and [`Row::try_get`],
//! through `FromSql`, with the crate's conversion errors.

use std::fmt;

use postgres_types::FromSql;

use crate::error::{Error, Result};
use crate::protocol::{Row, RowIndex};

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
