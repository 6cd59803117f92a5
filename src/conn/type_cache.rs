//! The types looked up in the catalog, by server and OID: one cache per standalone
//! connection, or one for all of a pool's connections.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use postgres_types::Type;

/// The most types a cache holds; when it is full it starts over (types are looked up
/// again as they are met, one round trip each statement).
pub(crate) const TYPE_CACHE_CAPACITY: usize = 1024;

/// Types that are not built in (enums, composites, domains, ranges, arrays of them,
/// extensions' types), keyed by the server (`host:port`) and the type's OID: OIDs are a
/// server's own, so the types of two servers never mix.
#[derive(Default)]
pub(crate) struct TypeCache {
    types: Mutex<HashMap<(Arc<str>, u32), Type>>,
    /// Catalog queries run to fill it.
    lookups: AtomicU64,
}

impl fmt::Debug for TypeCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypeCache")
            .field("len", &self.types.lock().len())
            .finish()
    }
}

impl TypeCache {
    pub(crate) fn get(&self, server: &Arc<str>, oid: u32) -> Option<Type> {
        self.types.lock().get(&(server.clone(), oid)).cloned()
    }

    /// Remembers `types`, all of `server`.
    pub(crate) fn insert(&self, server: &Arc<str>, types: impl IntoIterator<Item = Type>) {
        let mut map = self.types.lock();
        for t in types {
            if map.len() >= TYPE_CACHE_CAPACITY {
                map.clear();
            }
            map.insert((server.clone(), t.oid()), t);
        }
    }

    /// Forgets every type (the pool switched servers, or the application asked).
    pub(crate) fn clear(&self) {
        self.types.lock().clear();
    }

    /// A catalog query is about to run.
    pub(crate) fn count_lookup(&self) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn len(&self) -> usize {
        self.types.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_types::Kind;

    fn custom(oid: u32) -> Type {
        Type::new(format!("t{oid}"), oid, Kind::Simple, "public".into())
    }

    #[test]
    fn servers_do_not_share_oids() {
        let c = TypeCache::default();
        let a: Arc<str> = Arc::from("a:5432");
        let b: Arc<str> = Arc::from("b:5432");
        c.insert(&a, [custom(16385)]);
        assert_eq!(
            c.get(&a, 16385).map(|t| t.name().to_owned()),
            Some("t16385".into())
        );
        assert!(c.get(&b, 16385).is_none());
        c.clear();
        assert!(c.get(&a, 16385).is_none());
    }

    #[test]
    fn bounded() {
        let c = TypeCache::default();
        let a: Arc<str> = Arc::from("a:5432");
        c.insert(
            &a,
            (0..3 * TYPE_CACHE_CAPACITY as u32).map(|i| custom(16384 + i)),
        );
        assert!(c.len() <= TYPE_CACHE_CAPACITY);
        assert!(c.len() > 0);
    }
}
