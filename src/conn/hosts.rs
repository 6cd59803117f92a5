//! Choosing a server among several hosts, as libpq does: the hosts in order (or shuffled,
//! `load_balance_hosts=random`), each within its own connect timeout, and the first whose
//! server is of the kind `target_session_attrs` asks for. A server of the wrong kind is
//! closed and the next host tried; when none will do, the error lists each host and why.

use crate::config::{ConnectConfig, LoadBalanceHosts, TargetSessionAttrs};
use crate::error::{Error, Result};

use super::{Connection, NoticeHandler};

/// How long a connection of the wrong kind gets to say goodbye.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// True for targets that need a server accepting writes.
pub(crate) fn needs_writes(t: TargetSessionAttrs) -> bool {
    matches!(
        t,
        TargetSessionAttrs::ReadWrite | TargetSessionAttrs::Primary
    )
}

/// What the server reports about itself: in recovery, read-only.
fn reported(c: &Connection) -> Option<(bool, bool)> {
    let standby = c.parameter("in_hot_standby")? == "on";
    let read_only = standby || c.parameter("default_transaction_read_only")? == "on";
    Some((standby, read_only))
}

/// Why a server in this state is not of kind `want` (`None`: it is).
fn mismatch(want: TargetSessionAttrs, standby: bool, read_only: bool) -> Option<&'static str> {
    match want {
        TargetSessionAttrs::Any | TargetSessionAttrs::PreferStandby => None,
        TargetSessionAttrs::ReadWrite => read_only.then_some(
            "it does not accept writes (a standby, or default_transaction_read_only on)",
        ),
        TargetSessionAttrs::ReadOnly => (!read_only).then_some("it accepts writes"),
        TargetSessionAttrs::Primary => standby.then_some("it is a standby (in recovery)"),
        TargetSessionAttrs::Standby => (!standby).then_some("it is a primary (not in recovery)"),
    }
}

/// For a connection at rest: whether its server, as last reported, is still of the kind
/// it was opened for (a standby promoted under a standby-only connection is not).
pub(crate) fn still_matches(c: &Connection) -> bool {
    match reported(c) {
        Some((standby, read_only)) => mismatch(c.target, standby, read_only).is_none(),
        None => true,
    }
}

/// The order to try the hosts in.
fn order(cfg: &ConnectConfig) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cfg.hosts().len()).collect();
    if cfg.load_balance_hosts() == LoadBalanceHosts::Random {
        // Fisher-Yates with the pool's cheap randomness (no secret depends on it).
        for i in (1..order.len()).rev() {
            let j = (crate::random::fraction() * (i + 1) as f64) as usize;
            order.swap(i, j.min(i));
        }
    }
    order
}

impl Connection {
    /// Opens a connection: socket, TLS as `sslmode` says, startup, authentication, up to
    /// the first ReadyForQuery. With several hosts, each is tried in turn (in a random
    /// order with `load_balance_hosts=random`), each within the connect timeout, until one
    /// is of the kind `target_session_attrs` asks for.
    ///
    /// # Errors
    ///
    /// With one host: an I/O error (refused, unreachable), a connect timeout, a
    /// [`DbError`](crate::DbError) from the server (wrong password 28P01, unknown role
    /// 28000, unknown database 3D000, ...), a TLS, authentication or protocol error, or a
    /// server-mismatch error (the server is not of the kind asked for). With several, an
    /// error listing each host and why it was not used; its source is the last host's
    /// error. A configuration error, before any socket is opened, for a user, database,
    /// password, `application_name` or `options` holding a NUL byte.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the connection being opened (its socket is closed);
    /// nothing is left behind.
    pub async fn connect(cfg: &ConnectConfig) -> Result<Connection> {
        Self::connect_noticed(cfg, None).await
    }

    /// As [`Connection::connect`], with the server's notices (those of the startup too)
    /// going to `notices` (a pool's handler).
    pub(crate) async fn connect_noticed(
        cfg: &ConnectConfig,
        notices: Option<NoticeHandler>,
    ) -> Result<Connection> {
        // Settings given through the setters are checked here, before any socket.
        cfg.refuse_nul_bytes()?;
        let target = cfg.target_session_attrs();
        let passes: &[TargetSessionAttrs] = match target {
            // A standby if there is one, else any server.
            TargetSessionAttrs::PreferStandby => {
                &[TargetSessionAttrs::Standby, TargetSessionAttrs::Any]
            }
            _ => std::slice::from_ref(&target),
        };
        let hosts = order(cfg);
        let mut failures: Vec<(String, Error)> = Vec::new();
        for &want in passes {
            for &i in &hosts {
                let host = &cfg.hosts()[i];
                let name = format!("{host}:{}", cfg.ports()[i]);
                // The connect timeout bounds each host: its socket, TLS, startup, and the
                // question what kind of server it is.
                let attempt = async {
                    let mut conn = Self::connect_host(cfg, i, host, notices.as_ref()).await?;
                    if want == TargetSessionAttrs::Any {
                        return Ok((conn, None));
                    }
                    let (standby, read_only) = conn.kind_of_server().await?;
                    let why = mismatch(want, standby, read_only);
                    Ok::<_, Error>((conn, why))
                };
                let r = match cfg.connect_timeout() {
                    Some(t) => tokio::time::timeout(t, attempt)
                        .await
                        .unwrap_or_else(|_| Err(Error::connect_timeout(t))),
                    None => attempt.await,
                };
                match r {
                    Ok((mut conn, None)) => {
                        conn.target = target;
                        return Ok(conn);
                    }
                    Ok((conn, Some(why))) => {
                        tracing::debug!(target: "wirepool::conn", host = %name, "not used ({}): {why}", target.as_str());
                        let _ = tokio::time::timeout(CLOSE_GRACE, conn.close()).await;
                        failures.push((
                            name,
                            Error::server_mismatch(format!(
                                "target_session_attrs={}: {why}",
                                target.as_str()
                            )),
                        ));
                    }
                    Err(e) => failures.push((name, e)),
                }
            }
        }
        if failures.len() == 1 {
            return Err(failures.pop().expect("one").1);
        }
        Err(Error::all_hosts_failed(failures))
    }

    /// (in recovery, read-only): from what the server reported at startup (PostgreSQL 14
    /// and later), or asked with a query. Not asked when any server will do.
    async fn kind_of_server(&mut self) -> Result<(bool, bool)> {
        if let Some(r) = reported(self) {
            return Ok(r);
        }
        let rows = self
            .simple_query("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::protocol("no row from pg_is_in_recovery()"))?;
        let standby = row.get(0) == Some("t");
        Ok((standby, standby || row.get(1) == Some("on")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_against_server_kinds() {
        use TargetSessionAttrs::*;
        // (standby, read_only): primary (false, false), read-only primary (false, true),
        // standby (true, true).
        let kinds = [(false, false), (false, true), (true, true)];
        let accepts = |want| {
            kinds
                .iter()
                .map(|&(s, r)| mismatch(want, s, r).is_none())
                .collect::<Vec<_>>()
        };
        assert_eq!(accepts(Any), [true, true, true]);
        assert_eq!(accepts(ReadWrite), [true, false, false]);
        assert_eq!(accepts(ReadOnly), [false, true, true]);
        assert_eq!(accepts(Primary), [true, true, false]);
        assert_eq!(accepts(Standby), [false, false, true]);
    }
}
