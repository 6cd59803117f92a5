//! The stream's events: pgoutput's messages with each change's table attached, its values
//! readable by column name.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postgres_types::{FromSql, Type};

use crate::error::{Error, Result};
use wirepool_protocol::pgoutput::{self, PgOutputMessage, TupleValue};
use wirepool_protocol::replication::{PgTimestamp, PG_EPOCH_UNIX_SECONDS};

use super::Lsn;

/// A table of the stream, as its last Relation message described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Its OID.
    pub id: u32,
    /// Its schema.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its columns' names, in order.
    pub columns: Vec<String>,
    /// Their types (a type PostgreSQL does not define reads as raw bytes only).
    pub types: Vec<Type>,
    /// Whether each is part of the replica identity.
    pub key: Vec<bool>,
}

impl Relation {
    pub(crate) fn from_message(r: pgoutput::Relation) -> Relation {
        Relation {
            id: r.id,
            namespace: r.namespace,
            name: r.name,
            types: r
                .columns
                .iter()
                .map(|c| Type::from_oid(c.type_oid).unwrap_or(Type::BYTEA))
                .collect(),
            key: r.columns.iter().map(|c| c.key).collect(),
            columns: r.columns.into_iter().map(|c| c.name).collect(),
        }
    }
}

/// A row of a change: its values, read by column name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple {
    relation: Arc<Relation>,
    values: Vec<TupleValue>,
}

impl Tuple {
    pub(crate) fn new(relation: Arc<Relation>, values: Vec<TupleValue>) -> Result<Tuple> {
        if values.len() > relation.columns.len() {
            return Err(Error::protocol(format!(
                "a change of {}.{} has {} values for {} columns",
                relation.namespace,
                relation.name,
                values.len(),
                relation.columns.len()
            )));
        }
        Ok(Tuple { relation, values })
    }

    /// The table.
    pub fn relation(&self) -> &Relation {
        &self.relation
    }

    fn index(&self, name: &str) -> Result<usize> {
        self.relation
            .columns
            .iter()
            .position(|c| c == name)
            .filter(|&i| i < self.values.len())
            .ok_or_else(|| {
                Error::conversion_msg(format!(
                    "no column {name} in this change of {}.{}",
                    self.relation.namespace, self.relation.name
                ))
            })
    }

    /// The value of column `name` as a `T`, through postgres-types (binary values).
    ///
    /// # Errors
    ///
    /// A conversion error for no such column, a type that cannot be read as `T`, NULL
    /// read as a non-`Option`, an unchanged TOASTed value (not sent: see
    /// [`is_unchanged_toast`](Tuple::is_unchanged_toast)), or a value sent in text (a
    /// server before 14: see [`text`](Tuple::text)).
    pub fn get<'a, T: FromSql<'a>>(&'a self, name: &str) -> Result<T> {
        let i = self.index(name)?;
        let ty = &self.relation.types[i];
        let about = || {
            format!(
                "column \"{name}\" of type {ty}, read as {}",
                std::any::type_name::<T>()
            )
        };
        if !T::accepts(ty) {
            let wrong = postgres_types::WrongType::new::<T>(ty.clone());
            return Err(Error::from_sql(i, about(), wrong));
        }
        let raw = match &self.values[i] {
            TupleValue::Null => None,
            TupleValue::Binary(b) => Some(&b[..]),
            TupleValue::UnchangedToast => {
                return Err(Error::conversion_msg(format!(
                    "{}: an unchanged TOASTed value, which the server does not send again",
                    about()
                )))
            }
            TupleValue::Text(_) => {
                return Err(Error::conversion_msg(format!(
                    "{}: sent as text; read it with Tuple::text",
                    about()
                )))
            }
        };
        T::from_sql_nullable(ty, raw).map_err(|e| Error::from_sql(i, about(), e))
    }

    /// The value of column `name` as the server's text, when it was sent as text.
    pub fn text(&self, name: &str) -> Option<&str> {
        match &self.values[self.index(name).ok()?] {
            TupleValue::Text(t) => std::str::from_utf8(t).ok(),
            _ => None,
        }
    }

    /// True when column `name` is NULL.
    pub fn is_null(&self, name: &str) -> bool {
        self.index(name)
            .is_ok_and(|i| self.values[i] == TupleValue::Null)
    }

    /// True when column `name` holds a TOASTed value the change did not touch (the server
    /// does not send it again; the table still has it).
    pub fn is_unchanged_toast(&self, name: &str) -> bool {
        self.index(name)
            .is_ok_and(|i| self.values[i] == TupleValue::UnchangedToast)
    }

    /// The values as the server sent them, in column order.
    pub fn values(&self) -> &[TupleValue] {
        &self.values
    }
}

/// One event of the stream. `xid` is the transaction's id inside a streamed (in-progress)
/// transaction's block, else `None`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ReplicationEvent {
    /// A transaction begins.
    Begin {
        /// The LSN of its commit.
        final_lsn: Lsn,
        /// Its commit time.
        committed_at: SystemTime,
        /// Its id.
        xid: u32,
    },
    /// It committed: everything since its Begin is its changes. A transaction delivered
    /// again after a restart has the same `commit_lsn`.
    Commit {
        /// The LSN of the commit (confirm it once the transaction is processed).
        commit_lsn: Lsn,
        /// The end of the transaction in the WAL.
        end_lsn: Lsn,
        /// Its commit time.
        committed_at: SystemTime,
    },
    /// A table's description, before its first change in the stream and after it changes.
    Relation {
        /// The table.
        relation: Arc<Relation>,
    },
    /// A row inserted.
    Insert {
        /// The streamed transaction.
        xid: Option<u32>,
        /// The new row.
        new: Tuple,
    },
    /// A row updated.
    Update {
        /// The streamed transaction.
        xid: Option<u32>,
        /// The old row (replica identity full) or its key (when the key changed).
        old: Option<Tuple>,
        /// The new row.
        new: Tuple,
    },
    /// A row deleted.
    Delete {
        /// The streamed transaction.
        xid: Option<u32>,
        /// The old row, or its key columns (the others NULL).
        old: Tuple,
    },
    /// Tables truncated.
    Truncate {
        /// The streamed transaction.
        xid: Option<u32>,
        /// The tables.
        relations: Vec<Arc<Relation>>,
        /// `CASCADE`.
        cascade: bool,
        /// `RESTART IDENTITY`.
        restart_identity: bool,
    },
    /// A type's name (for a column of a type PostgreSQL does not define).
    Type {
        /// Its OID.
        id: u32,
        /// Its schema.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The transaction's replication origin.
    Origin {
        /// Its commit LSN on the origin.
        commit_lsn: Lsn,
        /// The origin's name.
        name: String,
    },
    /// A message of `pg_logical_emit_message`.
    Message {
        /// The streamed transaction.
        xid: Option<u32>,
        /// Part of its transaction (else emitted at once).
        transactional: bool,
        /// Its LSN.
        lsn: Lsn,
        /// Its prefix.
        prefix: String,
        /// Its content.
        content: bytes::Bytes,
    },
    /// A block of a large in-progress transaction begins (its changes carry `xid`).
    StreamStart {
        /// The transaction.
        xid: u32,
        /// Its first block.
        first_segment: bool,
    },
    /// The block ends.
    StreamStop,
    /// A streamed transaction committed: all its blocks' changes took effect.
    StreamCommit {
        /// The transaction.
        xid: u32,
        /// The LSN of the commit.
        commit_lsn: Lsn,
        /// The end of the transaction in the WAL.
        end_lsn: Lsn,
        /// Its commit time.
        committed_at: SystemTime,
    },
    /// A streamed transaction (`subxid == xid`), or one of its subtransactions, aborted:
    /// its changes (of that subtransaction) never took effect.
    StreamAbort {
        /// The transaction.
        xid: u32,
        /// The aborted subtransaction.
        subxid: u32,
    },
}

/// PostgreSQL's microseconds since 2000 as a time.
pub(crate) fn pg_time(t: PgTimestamp) -> SystemTime {
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(PG_EPOCH_UNIX_SECONDS);
    if t >= 0 {
        epoch + Duration::from_micros(t.unsigned_abs())
    } else {
        epoch
            .checked_sub(Duration::from_micros(t.unsigned_abs()))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// The tables the stream has been told of, by OID.
#[derive(Debug, Default)]
pub(crate) struct Relations(std::collections::HashMap<u32, Arc<Relation>>);

impl Relations {
    fn get(&self, id: u32) -> Result<Arc<Relation>> {
        self.0.get(&id).cloned().ok_or_else(|| {
            Error::protocol(format!(
                "a change of table {id}, which no Relation message described"
            ))
        })
    }

    /// The event of a decoded message.
    pub(crate) fn event(&mut self, m: PgOutputMessage) -> Result<ReplicationEvent> {
        use PgOutputMessage as M;
        Ok(match m {
            M::Begin {
                final_lsn,
                committed_at,
                xid,
            } => ReplicationEvent::Begin {
                final_lsn,
                committed_at: pg_time(committed_at),
                xid,
            },
            M::Commit {
                commit_lsn,
                end_lsn,
                committed_at,
            } => ReplicationEvent::Commit {
                commit_lsn,
                end_lsn,
                committed_at: pg_time(committed_at),
            },
            M::Relation { relation, .. } => {
                let r = Arc::new(Relation::from_message(relation));
                self.0.insert(r.id, r.clone());
                ReplicationEvent::Relation { relation: r }
            }
            M::Insert {
                xid,
                relation_id,
                new,
            } => ReplicationEvent::Insert {
                xid,
                new: Tuple::new(self.get(relation_id)?, new)?,
            },
            M::Update {
                xid,
                relation_id,
                old,
                new,
            } => {
                let r = self.get(relation_id)?;
                let old = match old {
                    Some(pgoutput::OldRow::Key(v) | pgoutput::OldRow::Full(v)) => {
                        Some(Tuple::new(r.clone(), v)?)
                    }
                    None => None,
                };
                ReplicationEvent::Update {
                    xid,
                    old,
                    new: Tuple::new(r, new)?,
                }
            }
            M::Delete {
                xid,
                relation_id,
                old,
            } => {
                let (pgoutput::OldRow::Key(v) | pgoutput::OldRow::Full(v)) = old;
                ReplicationEvent::Delete {
                    xid,
                    old: Tuple::new(self.get(relation_id)?, v)?,
                }
            }
            M::Truncate {
                xid,
                cascade,
                restart_identity,
                relation_ids,
            } => ReplicationEvent::Truncate {
                xid,
                relations: relation_ids
                    .into_iter()
                    .map(|id| self.get(id))
                    .collect::<Result<_>>()?,
                cascade,
                restart_identity,
            },
            M::Type {
                id,
                namespace,
                name,
                ..
            } => ReplicationEvent::Type {
                id,
                namespace,
                name,
            },
            M::Origin { commit_lsn, name } => ReplicationEvent::Origin { commit_lsn, name },
            M::Message {
                xid,
                transactional,
                lsn,
                prefix,
                content,
            } => ReplicationEvent::Message {
                xid,
                transactional,
                lsn,
                prefix,
                content,
            },
            M::StreamStart { xid, first_segment } => {
                ReplicationEvent::StreamStart { xid, first_segment }
            }
            M::StreamStop => ReplicationEvent::StreamStop,
            M::StreamCommit {
                xid,
                commit_lsn,
                end_lsn,
                committed_at,
            } => ReplicationEvent::StreamCommit {
                xid,
                commit_lsn,
                end_lsn,
                committed_at: pg_time(committed_at),
            },
            M::StreamAbort { xid, subxid, .. } => ReplicationEvent::StreamAbort { xid, subxid },
        })
    }
}
