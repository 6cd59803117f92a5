//! SQL text as PostgreSQL reads it, for deciding what a statement does to the session
//! before it is sent.
//!
//! - [`lexer`]: PostgreSQL's scanner (`scan.l`), token for token.
//! - [`classify`]: over the tokens, whether a text may run on the pipelined path (where the
//!   connection's next statement is another caller's) and whether it is proven to leave the
//!   session clean.
//! - [`verdicts`]: the verdicts, kept per distinct text for the process.
//! - [`settings`]: the custom settings a text sets (the pool's connect hooks' own).
//!
//! Both are checked against PostgreSQL's own scanner and grammar (libpg_query) by the
//! differential test in `proof.rs`. Self-contained: nothing else of the crate is used but the
//! hasher of the maps keyed by statement text (`text_map.rs`).

pub(crate) mod classify;
mod copy_stdio;
pub(crate) mod insert_shape;
mod keywords;
pub(crate) mod lexer;
pub(crate) mod lists;
pub(crate) mod normalize;
mod quoted;
mod settings;
mod tokens;
mod verdicts;

#[allow(unused_imports)]
pub(crate) use classify::{classify, Class, Refusal};
pub(crate) use copy_stdio::copies_with_client;
pub(crate) use settings::custom_settings;
pub(crate) use verdicts::{class, verdict, Verdict};

#[cfg(test)]
mod insert_shape_proof;
#[cfg(test)]
mod proof;
#[cfg(test)]
mod tests;
