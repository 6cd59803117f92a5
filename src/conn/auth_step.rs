//! One step of the startup exchange, with SCRAM's expensive step off the async workers.
//!
//! SCRAM's client proof needs PBKDF2 over the password with as many iterations as the
//! server asks (4,096 by default; postgres-protocol accepts up to 100,000): tens to
//! hundreds of milliseconds of CPU. Run on the runtime's worker it would stall every other
//! task on that worker for as long, and a few hostile or slow-to-hash servers would stall
//! them all. It runs in `spawn_blocking` instead (the one answer that works on every
//! runtime flavour); tokio-postgres runs it inline. A GSSAPI step, which may call the KDC,
//! runs there too ([`GssAuth`]).

use bytes::BytesMut;

use super::gss::GssAuth;
use crate::error::{Error, Result};
use crate::protocol::{BackendMessage, Startup, StartupStatus};

/// Feeds `msg` to `startup`; an AuthenticationSASLContinue is hashed, and a GSSAPI token
/// computed, on the blocking pool.
pub(super) async fn step(
    startup: &mut Startup,
    gss: &mut GssAuth,
    msg: BackendMessage,
    out: &mut BytesMut,
) -> Result<StartupStatus> {
    match scram_or_handle(startup, msg, out).await? {
        StartupStatus::Gss(token) => {
            let (token, complete) = gss.step(token).await?;
            Ok(startup.gss_stepped(&token, complete, out)?)
        }
        status => Ok(status),
    }
}

async fn scram_or_handle(
    startup: &mut Startup,
    msg: BackendMessage,
    out: &mut BytesMut,
) -> Result<StartupStatus> {
    let BackendMessage::AuthenticationSaslContinue(data) = msg else {
        return Ok(startup.handle(msg, out)?);
    };
    let Some(mut scram) = startup.take_scram() else {
        return Ok(startup.handle(BackendMessage::AuthenticationSaslContinue(data), out)?);
    };
    let (scram, updated) = tokio::task::spawn_blocking(move || {
        let r = scram.update(&data);
        (scram, r)
    })
    .await
    .map_err(|e| Error::auth(format!("the SCRAM computation did not finish: {e}")))?;
    Ok(startup.scram_updated(scram, updated, out)?)
}
