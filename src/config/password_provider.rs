//! A password fetched for each new connection: a rotating credential (an AWS RDS IAM
//! token, an Azure Entra token, a secret manager's current version) that a fixed string
//! in the settings cannot hold.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{BoxError, Error, Result};

type Fetch = dyn Fn() -> Pin<Box<dyn Future<Output = std::result::Result<String, BoxError>> + Send>>
    + Send
    + Sync;

/// An async callback that returns the password (or token) for a new connection.
///
/// It is called once for each connection attempt, before the startup message is sent:
/// for a pool's connections, its reconnector's, a listener's, and each host tried in
/// failover. What it returns is used for that attempt's authentication and dropped when
/// the handshake ends; it is never logged or shown. When it fails, the attempt fails with
/// an authentication error that names the provider and carries its error as the source.
/// When set, it takes the place of `password`, `PGPASSWORD` and the password file.
#[derive(Clone)]
pub struct PasswordProvider(Arc<Fetch>);

impl PasswordProvider {
    /// Wraps `f`: `move || async move { Ok::<_, std::io::Error>(token()) }` fits.
    pub fn new<F, Fut, E>(f: F) -> PasswordProvider
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<String, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        PasswordProvider(Arc::new(move || {
            let fut = f();
            Box::pin(async move { fut.await.map_err(|e| Box::new(e) as BoxError) })
        }))
    }

    /// The password for one connection attempt.
    pub(crate) async fn fetch(&self) -> Result<String> {
        (self.0)().await.map_err(Error::password_provider)
    }
}

impl PartialEq for PasswordProvider {
    /// The same callback (clones of one provider), not the same passwords.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PasswordProvider {}

impl fmt::Debug for PasswordProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordProvider(..)")
    }
}
