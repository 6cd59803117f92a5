//! The replication connection and its commands.

use crate::config::ConnectConfig;
use crate::conn::{quote_ident, Connection};
use crate::error::{Error, Result};

use super::resume::Resume;
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

impl ReplicationClient {
    /// Opens a replication connection with `cfg` (the same settings as any connection).
    ///
    /// # Errors
    ///
    /// As [`Connection::connect`]; a server error when the role may not replicate.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the connection being opened.
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
    ///
    /// # Cancel safety
    ///
    /// Dropping the future mid-way leaves the answer unread; the client's next command
    /// reads it first.
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
    ///
    /// # Cancel safety
    ///
    /// Dropping the future once the command is sent does not stop the server: the slot
    /// may still be made (the client's next command reads the answer first).
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
    ///
    /// # Cancel safety
    ///
    /// Dropping the future once the command is sent does not stop the server: the slot
    /// may still be dropped (at once, or not at all: there is no waiting for it).
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
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the connection (the client is the future's); the slot
    /// keeps the position it had.
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
        let resume = Resume::new(self.cfg, slot, publications);
        resume.start(&mut self.conn, start).await?;
        Ok(ReplicationStream::new(self.conn, resume, start))
    }
}
