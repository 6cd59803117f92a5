//! What a stream needs to open itself again after a lost connection: the settings, the
//! slot, the publications, and the `START_REPLICATION` command they make.

use crate::config::ConnectConfig;
use crate::conn::{quote_ident, Connection};
use crate::error::Result;

use super::Lsn;

/// A string constant for the replication grammar: `'...'` with quotes doubled.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// What a stream needs to open itself again after a lost connection.
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    cfg: ConnectConfig,
    slot: String,
    publications: Vec<String>,
}

impl Resume {
    pub(crate) fn new(cfg: ConnectConfig, slot: &str, publications: &[&str]) -> Resume {
        Resume {
            cfg,
            slot: slot.to_string(),
            publications: publications.iter().map(|p| p.to_string()).collect(),
        }
    }

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
    pub(crate) async fn start(&self, conn: &mut Connection, start: Option<Lsn>) -> Result<()> {
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
