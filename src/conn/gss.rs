//! GSSAPI (Kerberos) authentication, the client's side: a security context for the
//! server's service principal, `<krbsrvname>@<host>` as a host-based service name (as
//! libpq names it), stepped on the server's tokens until it is established. The
//! credentials are the user's, from the default credential cache (`KRB5CCNAME`), as
//! libpq's; mutual authentication is asked for, so an established context means the
//! server proved its identity too.
//!
//! A step may ask the KDC for a service ticket, a blocking network call inside the
//! library: it runs on the blocking pool, as SCRAM's hashing does. Without the `gssapi`
//! feature, a server that asks for GSSAPI gets an authentication error naming it.

use bytes::Bytes;

use crate::config::Host;
use crate::error::{Error, Result};

/// One connection's GSSAPI exchange.
pub(super) struct GssAuth {
    /// `<krbsrvname>@<host>`, or why there is none (a Unix socket has no host name).
    target: std::result::Result<String, String>,
    #[cfg(feature = "gssapi")]
    ctx: Option<libgssapi::context::ClientCtx>,
}

impl GssAuth {
    pub(super) fn new(krbsrvname: &str, host: &Host) -> GssAuth {
        let target = match host {
            Host::Tcp(name) => Ok(format!("{krbsrvname}@{name}")),
            Host::Unix(_) => Err(
                "GSSAPI authentication needs the server's host name, and this connection is over a Unix socket: connect with host=<name>"
                    .to_string(),
            ),
        };
        GssAuth {
            target,
            #[cfg(feature = "gssapi")]
            ctx: None,
        }
    }

    /// One step on the server's token (`None` first): the token for the server (empty
    /// for none) and whether the context is established.
    pub(super) async fn step(&mut self, server_token: Option<Bytes>) -> Result<(Vec<u8>, bool)> {
        let target = self.target.clone().map_err(Error::auth)?;
        self.step_on(target, server_token).await
    }

    #[cfg(not(feature = "gssapi"))]
    async fn step_on(&mut self, _target: String, _token: Option<Bytes>) -> Result<(Vec<u8>, bool)> {
        Err(Error::auth(
            "the server asks for GSSAPI (Kerberos) authentication, and this build of wirepool has none: enable the `gssapi` cargo feature",
        ))
    }

    #[cfg(feature = "gssapi")]
    async fn step_on(&mut self, target: String, token: Option<Bytes>) -> Result<(Vec<u8>, bool)> {
        use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
        use libgssapi::name::Name;
        use libgssapi::oid::GSS_NT_HOSTBASED_SERVICE;

        let ctx = match self.ctx.take() {
            Some(ctx) => ctx,
            None => {
                let name = Name::new(target.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE))
                    .map_err(|e| Error::auth(format!("GSSAPI: the service name {target}: {e}")))?;
                ClientCtx::new(None, name, CtxFlags::GSS_C_MUTUAL_FLAG, None)
            }
        };
        let (ctx, stepped) = tokio::task::spawn_blocking(move || {
            let mut ctx = ctx;
            let r = ctx
                .step(token.as_deref(), None)
                .map(|out| out.map(|b| b.to_vec()).unwrap_or_default());
            (ctx, r)
        })
        .await
        .map_err(|e| Error::auth(format!("the GSSAPI step did not finish: {e}")))?;
        let out = stepped.map_err(|e| {
            Error::auth(format!(
                "GSSAPI authentication for {target} failed: {}",
                e.to_string().trim()
            ))
        })?;
        let complete = ctx.is_complete();
        self.ctx = Some(ctx);
        Ok((out, complete))
    }
}
