//! The per-connection statement cache: named prepared statements keyed by SQL text, least
//! recently used evicted first.
//!
//! Statement names carry a random prefix per connection (`wp<16 hex>_<n>`) and are never
//! reused, so a statement the server still holds under an old name (its future was dropped
//! before the answer, or PgBouncer moved the session) cannot be confused with another one.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::protocol::extended::Described;

/// The default number of statements a connection keeps prepared.
pub(crate) const DEFAULT_CAPACITY: usize = 100;

/// Hits and misses of statement caches (one connection's, or a pool's shared by all of
/// its connections).
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CacheStats {
    /// Queries whose statement was already prepared.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
    /// Queries that had to prepare their statement first.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

struct Entry {
    name: Arc<str>,
    described: Described,
    last_used: u64,
}

pub(crate) struct StatementCache {
    capacity: usize,
    entries: crate::text_map::TextMap<Entry>,
    tick: u64,
    next: u64,
    prefix: String,
    /// Names to close on the server with the next request.
    evicted: Vec<String>,
    /// The statement whose Parse went out and whose description has not arrived yet: if
    /// that never happens (its future was dropped), the server may hold it under a name
    /// the cache does not know, so it is closed with the next prepare.
    preparing: Option<Arc<str>>,
    stats: Arc<CacheStats>,
}

impl fmt::Debug for StatementCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatementCache")
            .field("capacity", &self.capacity)
            .field("len", &self.entries.len())
            .finish()
    }
}

impl StatementCache {
    pub(crate) fn new(capacity: usize) -> StatementCache {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(std::process::id() as usize);
        StatementCache {
            capacity,
            entries: Default::default(),
            tick: 0,
            next: 0,
            prefix: format!("wp{:016x}_", h.finish()),
            evicted: Vec::new(),
            preparing: None,
            stats: Arc::new(CacheStats::default()),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn set_capacity(&mut self, n: usize) {
        self.capacity = n;
        while self.entries.len() > n {
            self.evict_lru();
        }
    }

    pub(crate) fn set_stats(&mut self, stats: Arc<CacheStats>) {
        self.stats = stats;
    }

    pub(crate) fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// The prepared statement for `sql`, counted as a hit or a miss.
    pub(crate) fn get(&mut self, sql: &str) -> Option<(Arc<str>, Described)> {
        match self.entries.get_mut(sql) {
            Some(e) => {
                self.tick += 1;
                e.last_used = self.tick;
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Some((e.name.clone(), e.described.clone()))
            }
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// A name for a new statement: a fresh one, or the unnamed statement when the cache
    /// keeps nothing.
    pub(crate) fn fresh_name(&mut self) -> Arc<str> {
        if let Some(dangling) = self.preparing.take() {
            self.evicted.push(dangling.to_string());
        }
        if self.capacity == 0 {
            return Arc::from("");
        }
        self.next += 1;
        let name: Arc<str> = Arc::from(format!("{}{}", self.prefix, self.next));
        self.preparing = Some(name.clone());
        name
    }

    /// The statement `name` was not prepared after all (the server refused it, or its
    /// Parse was never sent): nothing to close for it. `evicted`, taken for a Parse that
    /// was never sent, is kept for the next one.
    pub(crate) fn not_prepared(&mut self, name: &str, evicted: Vec<String>) {
        if self.preparing.as_deref() == Some(name) {
            self.preparing = None;
        }
        self.evicted.extend(evicted);
    }

    /// Remembers a statement the server has prepared (evicting the least recently used
    /// one if the cache is full). The unnamed statement is not kept.
    pub(crate) fn insert(&mut self, sql: &str, name: Arc<str>, described: Described) {
        if self.preparing.as_ref() == Some(&name) {
            self.preparing = None;
        }
        if self.capacity == 0 || name.is_empty() {
            // Not kept (the capacity was lowered meanwhile): closed with the next prepare.
            if !name.is_empty() {
                self.evicted.push(name.to_string());
            }
            return;
        }
        while self.entries.len() >= self.capacity {
            self.evict_lru();
        }
        self.tick += 1;
        self.entries.insert(
            Arc::from(sql),
            Entry {
                name,
                described,
                last_used: self.tick,
            },
        );
    }

    /// Whether `sql` is prepared and cached.
    pub(crate) fn contains(&self, sql: &str) -> bool {
        self.entries.contains_key(sql)
    }

    /// Forgets the statement for `sql` (the server no longer knows it, or its result type
    /// changed); it is closed on the server with the next request.
    pub(crate) fn remove(&mut self, sql: &str) {
        if let Some(e) = self.entries.remove(sql) {
            self.evicted.push(e.name.to_string());
        }
    }

    /// Names to close on the server, taken.
    pub(crate) fn take_evicted(&mut self) -> Vec<String> {
        std::mem::take(&mut self.evicted)
    }

    /// Forgets everything (the server discarded its statements).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.evicted.clear();
    }

    fn evict_lru(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_used)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described() -> Described {
        Described {
            params: Arc::from(Vec::new()),
            columns: Arc::from(Vec::new()),
        }
    }

    #[test]
    fn least_recently_used_is_evicted_and_closed() {
        let mut c = StatementCache::new(2);
        for sql in ["a", "b"] {
            assert!(c.get(sql).is_none());
            let n = c.fresh_name();
            c.insert(sql, n, described());
        }
        assert!(c.get("a").is_some()); // b is now the oldest
        let n = c.fresh_name();
        c.insert("c", n, described());
        assert!(c.get("b").is_none());
        assert!(c.get("a").is_some() && c.get("c").is_some());
        let closed = c.take_evicted();
        assert_eq!(closed.len(), 1);
        assert!(closed[0].ends_with("_2"), "{closed:?}");
        assert_eq!((c.stats().hits(), c.stats().misses()), (3, 3));
    }

    #[test]
    fn capacity_zero_keeps_nothing_and_names_nothing() {
        let mut c = StatementCache::new(0);
        assert_eq!(&*c.fresh_name(), "");
        c.insert("a", Arc::from(""), described());
        assert!(c.get("a").is_none());
        let mut c = StatementCache::new(3);
        for sql in ["a", "b", "c"] {
            let n = c.fresh_name();
            c.insert(sql, n, described());
        }
        c.set_capacity(1);
        assert_eq!(c.take_evicted().len(), 2);
    }
}
