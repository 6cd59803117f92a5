//! The demo's throwaway PostgreSQL. With the `demo` feature (on by default) it is testkit's
//! cluster: initdb into a temporary directory, removed at the end. Without it, a
//! `wirepool serve` build carries no test support, and `wirepool demo` needs
//! `DATABASE_URL`.

use wirepool::ConnectConfig;

#[cfg(feature = "demo")]
pub(crate) use wirepool_testkit::Cluster as Throwaway;

/// Starts a throwaway PostgreSQL; the configuration to reach it as a SCRAM user.
#[cfg(feature = "demo")]
pub(crate) fn start() -> Result<(Throwaway, ConnectConfig), String> {
    let pg = Throwaway::start().map_err(|e| format!("cannot start a throwaway PostgreSQL: {e}"))?;
    let cfg = pg.config(wirepool_testkit::Role::Scram);
    Ok((pg, cfg))
}

/// Stops it the hard way (an outage).
#[cfg(feature = "demo")]
pub(crate) fn kill(pg: &mut Throwaway) -> Result<(), String> {
    pg.kill().map_err(|e| e.to_string())
}

/// Brings it back on the same port.
#[cfg(feature = "demo")]
pub(crate) fn start_again(pg: &mut Throwaway) -> Result<(), String> {
    pg.start_again().map_err(|e| e.to_string())
}

/// None can be started in a build without the `demo` feature.
#[cfg(not(feature = "demo"))]
#[derive(Debug)]
pub(crate) enum Throwaway {}

#[cfg(not(feature = "demo"))]
impl Throwaway {
    pub(crate) fn port(&self) -> u16 {
        match *self {}
    }
}

#[cfg(not(feature = "demo"))]
pub(crate) fn start() -> Result<(Throwaway, ConnectConfig), String> {
    Err(
        "this wirepool was built without the `demo` feature, which starts a throwaway \
         PostgreSQL: set DATABASE_URL to a database the demo may use"
            .to_string(),
    )
}

#[cfg(not(feature = "demo"))]
pub(crate) fn kill(pg: &mut Throwaway) -> Result<(), String> {
    match *pg {}
}

#[cfg(not(feature = "demo"))]
pub(crate) fn start_again(pg: &mut Throwaway) -> Result<(), String> {
    match *pg {}
}
