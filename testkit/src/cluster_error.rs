//! The error of the test harness's servers: why one could not be set up or controlled.

use std::fmt;

/// Why a throwaway cluster could not be set up or controlled.
#[derive(Debug)]
pub struct ClusterError(String);

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

pub(crate) fn err(msg: impl Into<String>) -> ClusterError {
    ClusterError(msg.into())
}
