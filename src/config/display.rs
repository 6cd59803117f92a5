//! How a configuration is shown: `Debug` with the password, the certificate paths and the
//! password file hidden, `Display` as a URL without the password.

use std::fmt;

use super::*;

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("hosts", &self.hosts)
            .field("ports", &self.ports)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("options", &self.options)
            .field("connect_timeout", &self.connect_timeout)
            .field("ssl_mode", &self.tls.mode)
            // Certificate paths are not shown: they say where key material lives.
            .field("sslrootcert", &self.tls.root_cert.as_ref().map(|_| "<set>"))
            .field("sslcert", &self.tls.client_cert.as_ref().map(|_| "<set>"))
            .field("sslkey", &self.tls.client_key.as_ref().map(|_| "<set>"))
            .field("sslnegotiation", &self.tls.negotiation)
            .field("channel_binding", &self.tls.channel_binding)
            .field("hostaddr", &self.hostaddrs)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("load_balance_hosts", &self.load_balance_hosts)
            .field("tcp", &self.tcp)
            .field("passfile", &self.passfile.as_ref().map(|_| "<set>"))
            .field("max_message_size", &self.max_message_size)
            .field("min_protocol_version", &self.min_protocol)
            .field("max_protocol_version", &self.max_protocol)
            .field("require_auth", &self.require_auth)
            .field("krbsrvname", &self.krbsrvname)
            .field("gssencmode", &self.gss_enc_mode)
            .field("password_provider", &self.password_provider.is_some())
            .finish()
    }
}

/// Prints a URL without the password: `postgres://user@host:port,host2:port2/dbname`.
impl fmt::Display for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres://{}@", percent_encode(&self.user))?;
        for (i, h) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match h {
                Host::Tcp(_) => write!(f, "{h}")?,
                Host::Unix(p) => f.write_str(&percent_encode(&p.to_string_lossy()))?,
            }
            write!(f, ":{}", self.ports[i])?;
        }
        write!(f, "/{}", percent_encode(&self.dbname))
    }
}
