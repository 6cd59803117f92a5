//! The replication streams a pool watches, as the operator sees them: a snapshot of each
//! stream's figures ([`ReplicationStatus`]), its JSON in the health report, and its
//! Prometheus families. The streams themselves are [`crate::replication`]'s.

use std::fmt::Write as _;

use wirepool_protocol::replication::Lsn;

/// What a stream is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamState {
    /// Connected and streaming.
    Streaming,
    /// The connection was lost; reconnecting.
    Reconnecting,
    /// Ended (an error, the server's end, or [`close`](crate::replication::ReplicationStream::close)).
    Ended,
}

impl StreamState {
    /// Every state, in the order of their numbers.
    pub const ALL: [StreamState; 3] = [
        StreamState::Streaming,
        StreamState::Reconnecting,
        StreamState::Ended,
    ];

    /// The state's name, as the health report and the metrics write it.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Streaming => "streaming",
            StreamState::Reconnecting => "reconnecting",
            StreamState::Ended => "ended",
        }
    }
}

/// A snapshot of a stream's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicationStatus {
    /// The slot it reads.
    pub slot: String,
    /// What it is doing.
    pub state: StreamState,
    /// The server's WAL position, as its last message said.
    pub server_lsn: Lsn,
    /// The position confirmed (reported as flushed).
    pub confirmed_lsn: Lsn,
    /// `server_lsn - confirmed_lsn`, in bytes of WAL.
    pub lag_bytes: u64,
    /// Connections opened again after one was lost.
    pub reconnects: u64,
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The streams' families: `<p>_replication_lag_bytes`, `<p>_replication_state` (1 for the
/// current state) and `<p>_replication_reconnects_total`, each with a label `slot`.
pub(crate) fn render_prometheus(
    o: &mut String,
    openmetrics: bool,
    p: &str,
    streams: &[ReplicationStatus],
) {
    if streams.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "# HELP {p}_replication_lag_bytes WAL bytes between the server's position and the position the application confirmed.\n# TYPE {p}_replication_lag_bytes gauge"
    );
    for s in streams {
        let _ = writeln!(
            o,
            "{p}_replication_lag_bytes{{slot=\"{}\"}} {}",
            label(&s.slot),
            s.lag_bytes
        );
    }
    let _ = writeln!(
        o,
        "# HELP {p}_replication_state The replication stream's state (1 for the current one).\n# TYPE {p}_replication_state gauge"
    );
    for s in streams {
        for st in StreamState::ALL {
            let _ = writeln!(
                o,
                "{p}_replication_state{{slot=\"{}\",state=\"{}\"}} {}",
                label(&s.slot),
                st.as_str(),
                u8::from(s.state == st)
            );
        }
    }
    let family = if openmetrics {
        format!("{p}_replication_reconnects")
    } else {
        format!("{p}_replication_reconnects_total")
    };
    let _ = writeln!(
        o,
        "# HELP {family} Replication connections opened again after one was lost.\n# TYPE {family} counter"
    );
    for s in streams {
        let _ = writeln!(
            o,
            "{p}_replication_reconnects_total{{slot=\"{}\"}} {}",
            label(&s.slot),
            s.reconnects
        );
    }
}
