//! The maps keyed by statement text (the classifier's verdicts, a connection's prepared
//! statements, the shared path's descriptions, the per-statement metrics): each is read
//! for every statement run, with the text as the key. Their hasher is foldhash's
//! `quality` one, seeded per map at random: over a short statement, about 30 instructions
//! against the standard library's SipHash's 235 (callgrind, `SELECT $1::int4`), and still
//! seeded, so that texts chosen to collide cannot be written in advance.

use std::collections::HashMap;
use std::sync::Arc;

/// The hasher of the maps keyed by statement text.
pub(crate) type TextHasher = foldhash::quality::RandomState;

/// A map keyed by statement text.
pub(crate) type TextMap<V> = HashMap<Arc<str>, V, TextHasher>;
