//! Server bytes into the frame decoder and the extended-protocol assemblers (the answer to
//! Parse/Describe, then to Bind/Execute), with typed reads of every row's values through
//! postgres-types, as the connection layer's rows read them. Built against the protocol
//! crate alone. Nothing may panic; malformed input ends in an error.
#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postgres_types::FromSql;
use wirepool_protocol::extended::{Execute, Prepare, Step};
use wirepool_protocol::{Column, DataRowBody, FrameDecoder, FromDataRow};

/// A row as the decoder made it: the columns and the DataRow's body.
struct FuzzRow(Arc<[Column]>, DataRowBody);

impl FromDataRow for FuzzRow {
    fn from_data_row(columns: Arc<[Column]>, body: DataRowBody) -> FuzzRow {
        FuzzRow(columns, body)
    }
}

impl FuzzRow {
    /// Column `i` read as a `T` when its type allows, as `Row::try_get` reads it.
    fn read<'a, T: FromSql<'a>>(&'a self, i: usize) {
        let (Some(column), Some(raw)) = (self.0.get(i), self.1.get(i)) else {
            return;
        };
        if T::accepts(column.type_()) {
            let _ = T::from_sql_nullable(column.type_(), raw);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let decoder = FrameDecoder::new(1 << 16);
    let mut buf = BytesMut::from(data);
    let mut prepare = Some(Prepare::new());
    let mut execute: Option<Execute<FuzzRow>> = None;
    loop {
        let msg = match decoder.decode(&mut buf) {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => return,
        };
        if let Some(p) = prepare.as_mut() {
            match p.handle(msg) {
                Ok(Step::Done(Ok(described))) => {
                    prepare = None;
                    execute = Some(Execute::new(described.columns));
                }
                Ok(Step::Done(Err(_))) | Err(_) => return,
                Ok(_) => {}
            }
            continue;
        }
        let Some(e) = execute.as_mut() else { return };
        match e.handle(msg) {
            Ok(Step::Done(done)) => {
                for row in &done.rows {
                    for i in 0..row.0.len() {
                        // Every reader must turn bad bytes into an error, never a panic.
                        row.read::<Option<i32>>(i);
                        row.read::<Option<i64>>(i);
                        row.read::<Option<String>>(i);
                        row.read::<Option<&str>>(i);
                        row.read::<Option<Vec<u8>>>(i);
                        row.read::<Option<bool>>(i);
                        row.read::<Option<f64>>(i);
                        row.read::<Option<Vec<i32>>>(i);
                        row.read::<Option<Vec<String>>>(i);
                    }
                }
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
});
