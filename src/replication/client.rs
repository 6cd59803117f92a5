//! The replication connection and its commands.

use crate::config::ConnectConfig;
use crate::conn::{quote_ident, Connection};
use crate::error::{Error, Result};

use super::stream::ReplicationStream;
use super::Lsn;

/// A logical replication connection (see the [module docs](super)).
#[derive(Debug)]
pub struct ReplicationClient {
    conn: Connection,
    cfg: ConnectConfig,
}

/// What `IDENTIFY_SYSTEM` says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SystemIdentity {
    /// The cluster's system identifier.
    pub system_id: String,
    /// The current timeline.
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlog_pos: Lsn,
    /// The database connected to.
    pub dbname: Option<String>,
}

/// A slot `CREATE_REPLICATION_SLOT` made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Slot {
    /// Its name.
    pub name: String,
    /// Where its stream starts: the first transaction it delivers commits after this.
    pub consistent_point: Lsn,
    /// The snapshot exported at that point, if any.
    pub snapshot_name: Option<String>,
    /// Its output plugin (`pgoutput`).
    pub output_plugin: Option<String>,
}

fn lsn(text: Option<&str>, what: &str) -> Result<Lsn> {
    text.and_then(|t| t.parse().ok())
        .ok_or_else(|| Error::protocol(format!("{what} is not an LSN")))
}

/// A slot's name as PostgreSQL allows it: 1 to 63 of `a-z`, `0-9` and `_`.
fn check_slot_name(name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "replication slot name {:?}: 1 to 63 characters of a-z, 0-9 and _",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// A string constant for the replication grammar: `'...'` with quotes doubled.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl ReplicationClient {
    /// Opens a replication connection with `cfg` (the same settings as any connection).
    ///
    /// # Errors
    ///
    /// As [`Connection::connect`]; a server error when the role may not replicate.
    pub async fn connect(cfg: &ConnectConfig) -> Result<ReplicationClient> {
        let cfg = cfg.clone().for_replication();
        let conn = Connection::connect(&cfg).await?;
        Ok(ReplicationClient { conn, cfg })
    }

    /// `IDENTIFY_SYSTEM`.
    ///
    /// # Errors
    ///
    /// The server's error; a protocol error for an answer of another shape.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity> {
        let rows = self.conn.simple_query("IDENTIFY_SYSTEM").await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::protocol("IDENTIFY_SYSTEM returned no row"))?;
        Ok(SystemIdentity {
            system_id: row
                .get(0)
                .ok_or_else(|| Error::protocol("IDENTIFY_SYSTEM without a system id"))?
                .to_string(),
            timeline: row
                .get(1)
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| Error::protocol("IDENTIFY_SYSTEM's timeline is not a number"))?,
            xlog_pos: lsn(row.get(2), "IDENTIFY_SYSTEM's xlogpos")?,
            dbname: row.get(3).map(str::to_string),
        })
    }

    /// `CREATE_REPLICATION_SLOT name [TEMPORARY] LOGICAL pgoutput`. A temporary slot ends
    /// with this connection (see the module docs).
    ///
    /// # Errors
    ///
    /// An invalid-input error for a name PostgreSQL does not allow (1 to 63 of `a-z`,
    /// `0-9`, `_`); the server's error (a slot of that name exists, too many slots,
    /// `wal_level` is not `logical`, ...).
    pub async fn create_slot(&mut self, name: &str, temporary: bool) -> Result<Slot> {
        check_slot_name(name)?;
        let sql = format!(
            "CREATE_REPLICATION_SLOT {}{} LOGICAL pgoutput",
            quote_ident(name),
            if temporary { " TEMPORARY" } else { "" }
        );
        let rows = self.conn.simple_query(&sql).await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::protocol("CREATE_REPLICATION_SLOT returned no row"))?;
        Ok(Slot {
            name: row.get(0).unwrap_or(name).to_string(),
            consistent_point: lsn(row.get(1), "the slot's consistent point")?,
            snapshot_name: row.get(2).map(str::to_string),
            output_plugin: row.get(3).map(str::to_string),
        })
    }

    /// `DROP_REPLICATION_SLOT name`. A slot in use by a stream is not dropped: the
    /// server's error says so at once (no `WAIT`, which would go on dropping it later even
    /// after this call was abandoned).
    ///
    /// # Errors
    ///
    /// An invalid-input error for a name PostgreSQL does not allow; the server's error (no
    /// slot of that name, the slot in use).
    pub async fn drop_slot(&mut self, name: &str) -> Result<()> {
        check_slot_name(name)?;
        self.conn
            .simple_query(&format!("DROP_REPLICATION_SLOT {}", quote_ident(name)))
            .await?;
        Ok(())
    }

    /// Streams the changes of `slot` for `publications` from `start` (`None`: from the
    /// position the slot last confirmed). The connection becomes the stream's; after a
    /// lost connection the stream opens another with the same settings (see
    /// [`ReplicationStream`]).
    ///
    /// On PostgreSQL 14 and later the stream asks for protocol version 2 with large
    /// in-progress transactions streamed (`streaming`) and values in binary; on older
    /// servers, version 1 with values in text ([`Tuple::text`](super::Tuple::text)).
    ///
    /// # Errors
    ///
    /// An invalid-input error for no publication or a slot name PostgreSQL does not
    /// allow; the server's error (no such slot or publication, the slot in use).
    pub async fn start(
        mut self,
        slot: &str,
        publications: &[&str],
        start: Option<Lsn>,
    ) -> Result<ReplicationStream> {
        if publications.is_empty() {
            return Err(Error::invalid_input(
                "start needs at least one publication name",
            ));
        }
        check_slot_name(slot)?;
        let resume = Resume {
            cfg: self.cfg,
            slot: slot.to_string(),
            publications: publications.iter().map(|p| p.to_string()).collect(),
        };
        resume.start(&mut self.conn, start).await?;
        Ok(ReplicationStream::new(self.conn, resume, start))
    }
}

/// What a stream needs to open itself again after a lost connection.
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    cfg: ConnectConfig,
    slot: String,
    publications: Vec<String>,
}

impl Resume {
    pub(crate) fn slot(&self) -> &str {
        &self.slot
    }

    /// A new replication connection, streaming from `start`.
    pub(crate) async fn connect(&self, start: Option<Lsn>) -> Result<Connection> {
        let mut conn = Connection::connect(&self.cfg).await?;
        self.start(&mut conn, start).await?;
        Ok(conn)
    }

    /// `START_REPLICATION` on `conn`.
    async fn start(&self, conn: &mut Connection, start: Option<Lsn>) -> Result<()> {
        let names = self
            .publications
            .iter()
            .map(|p| quote_ident(p))
            .collect::<Vec<_>>()
            .join(",");
        let major = conn
            .parameter("server_version")
            .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|m| m.parse::<u32>().ok())
            .unwrap_or(0);
        let options = if major >= 14 {
            format!(
                "proto_version '2', publication_names {}, binary 'true', messages 'true', streaming 'on'",
                quote_literal(&names)
            )
        } else {
            format!(
                "proto_version '1', publication_names {}",
                quote_literal(&names)
            )
        };
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {} ({options})",
            quote_ident(&self.slot),
            start.unwrap_or(Lsn::INVALID)
        );
        conn.start_copy_both(&sql).await
    }
}
