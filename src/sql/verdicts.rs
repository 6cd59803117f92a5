//! The classifier's verdicts, kept per distinct statement text for the whole process: a
//! statement is classified once, however many connections and pools run it. Bounded: a
//! shard that fills is emptied (a text classified again costs a few microseconds).

use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::classify::{classify, Class};
use crate::text_map::{TextHasher, TextMap};

/// Shards of the cache (a power of two), so that connections on other threads seldom
/// contend for one lock.
const SHARDS: usize = 16;
/// Texts kept per shard.
const PER_SHARD: usize = 256;
/// The longest text kept (longer ones are classified at each use): the cache holds at most
/// `SHARDS * PER_SHARD * MAX_KEPT` bytes of text.
const MAX_KEPT: usize = 4096;
/// The longest text classified at all; a longer one is refused on the pipelined path and
/// not proven clean (its session is reset), without being read.
pub(crate) const MAX_READ: usize = 1024 * 1024;

/// A statement text and what the classifier found in it.
#[derive(Debug)]
pub(crate) struct Verdict {
    /// The text, shared (the pool's pipelined requests keep it for their log lines).
    pub(crate) sql: Arc<str>,
    pub(crate) class: Class,
}

type Shard = Mutex<TextMap<Arc<Verdict>>>;

struct Cache {
    shards: Vec<Shard>,
    hasher: TextHasher,
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Cache {
        shards: (0..SHARDS)
            .map(|_| Mutex::new(TextMap::default()))
            .collect(),
        hasher: TextHasher::default(),
    })
}

/// The verdict on `sql`: from the cache, or classified now and kept.
pub(crate) fn verdict(sql: &str) -> Arc<Verdict> {
    if sql.len() > MAX_KEPT {
        return Arc::new(Verdict {
            sql: Arc::from(sql),
            class: uncached(sql),
        });
    }
    cached(sql)
}

/// What the classifier finds in `sql`, without keeping a copy of a long text.
pub(crate) fn class(sql: &str) -> Class {
    if sql.len() > MAX_KEPT {
        uncached(sql)
    } else {
        cached(sql).class
    }
}

fn uncached(sql: &str) -> Class {
    if sql.len() > MAX_READ {
        Class {
            statements: 1,
            refusal: Some(super::Refusal::TooLong),
            session_clean: false,
            known_calls_only: false,
            operation: None,
        }
    } else {
        classify(sql)
    }
}

fn cached(sql: &str) -> Arc<Verdict> {
    let c = cache();
    let shard = &c.shards[(c.hasher.hash_one(sql) as usize) & (SHARDS - 1)];
    if let Some(v) = shard.lock().get(sql) {
        return v.clone();
    }
    let text: Arc<str> = Arc::from(sql);
    let v = Arc::new(Verdict {
        sql: text.clone(),
        class: classify(sql),
    });
    let mut m = shard.lock();
    if m.len() >= PER_SHARD {
        m.clear();
    }
    m.insert(text, v.clone());
    v
}

#[cfg(test)]
mod tests {
    use super::verdict;

    #[test]
    fn a_text_is_classified_once_and_shared() {
        let a = verdict("SELECT 1 /* verdicts test */");
        let b = verdict("SELECT 1 /* verdicts test */");
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert!(a.class.session_clean);
        assert!(verdict("SET search_path = x").class.refusal.is_some());
    }

    #[test]
    fn a_text_over_the_limit_is_not_read() {
        let sql = format!("SELECT '{}'", "x".repeat(super::MAX_READ));
        let c = super::class(&sql);
        assert!(!c.session_clean);
        assert_eq!(c.refusal, Some(crate::sql::Refusal::TooLong));
        let long_but_read = format!("SELECT '{}'", "x".repeat(super::MAX_KEPT));
        assert!(verdict(&long_but_read).class.session_clean);
    }

    #[test]
    fn the_cache_is_bounded() {
        for i in 0..10_000 {
            verdict(&format!("SELECT {i} /* bound */"));
        }
        let held: usize = super::cache().shards.iter().map(|s| s.lock().len()).sum();
        assert!(held <= super::SHARDS * super::PER_SHARD, "{held}");
    }
}
