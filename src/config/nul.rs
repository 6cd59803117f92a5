//! Settings that go to the server as C strings (the startup message's user, database,
//! `application_name` and `options`; the password, in clear text, hashed with MD5 or
//! through SCRAM) may not hold a NUL byte: the server would read a shorter string than the
//! one configured, and a password cut at its NUL authenticates with a prefix of itself.
//! libpq cannot even represent one. They are refused when a configuration is parsed, and
//! again before a connection (or a pool) uses one built through the setters, before any
//! socket is opened. The error names the setting, never its value.

use super::ConnectConfig;
use crate::error::{Error, Result};

/// A configuration error if `value` holds a NUL byte.
pub(super) fn refuse_nul(field: &str, value: Option<&str>) -> Result<()> {
    if value.is_some_and(|v| v.contains('\0')) {
        return Err(Error::config(format!(
            "{field} contains a NUL byte, which cannot be sent to the server"
        )));
    }
    Ok(())
}

impl ConnectConfig {
    /// Refuses a user, database, password, `application_name` or `options` holding a NUL
    /// byte (see the module's notes); nothing is sent.
    ///
    /// # Errors
    ///
    /// A configuration error naming the setting.
    pub(crate) fn refuse_nul_bytes(&self) -> Result<()> {
        refuse_nul("user", Some(&self.user))?;
        refuse_nul("dbname", Some(&self.dbname))?;
        refuse_nul("password", self.password.as_deref())?;
        refuse_nul("application_name", self.application_name.as_deref())?;
        refuse_nul("options", self.options.as_deref())?;
        refuse_nul("krbsrvname", Some(&self.krbsrvname))
    }
}
