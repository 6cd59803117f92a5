//! Types that are not built in, looked up in the catalog: enums with their labels,
//! composites with their fields, domains over their base type, arrays of their element
//! type, ranges of their subtype, and extensions' types (`hstore`, `citext`, PostGIS
//! `geometry`, pgvector's `vector`) by their real name and schema, so that the `FromSql` and
//! `ToSql` of postgres-types' derives and of extension crates, which check the type's name
//! and kind, accept them.
//!
//! As tokio-postgres, a type is looked up the first time a statement meets it (a
//! parameter or a result column) and then cached. Here every type a statement needs, and
//! every type those depend on, comes in one query: at most one round trip a statement,
//! whatever the nesting. The query is an unnamed statement with its own Sync, so it works
//! with `statement_cache_capacity(0)` and behind PgBouncer in transaction mode.

use std::collections::HashMap;
use std::sync::Arc;

use postgres_types::{Field, Kind, Type};

use super::Connection;
use crate::error::{Error, Result};
use crate::protocol::extended::{type_of, write_bind_execute, write_parse, Described};
use crate::protocol::Column;
use crate::row::{Execute, Executed, Row};

/// Every type in `$1`, and every type they depend on (element, base, subtype, field
/// types), with what it takes to build them.
pub(crate) const LOOKUP_SQL: &str = "\
WITH RECURSIVE wanted(oid) AS (
    SELECT unnest($1::pg_catalog.oid[])
  UNION
    SELECT d.oid
    FROM wanted w
    JOIN pg_catalog.pg_type t ON t.oid = w.oid
    CROSS JOIN LATERAL (
        SELECT t.typelem WHERE t.typelem <> 0
        UNION ALL SELECT t.typbasetype WHERE t.typbasetype <> 0
        UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid
        UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
            WHERE t.typrelid <> 0 AND a.attrelid = t.typrelid AND a.attnum > 0
              AND NOT a.attisdropped
    ) d(oid)
)
SELECT t.oid, t.typname::text, t.typtype, t.typelem, r.rngsubtype, t.typbasetype,
    n.nspname::text, t.typrelid,
    ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e
          WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder),
    ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
          WHERE t.typrelid <> 0 AND a.attrelid = t.typrelid AND a.attnum > 0
            AND NOT a.attisdropped ORDER BY a.attnum),
    ARRAY(SELECT a.atttypid FROM pg_catalog.pg_attribute a
          WHERE t.typrelid <> 0 AND a.attrelid = t.typrelid AND a.attnum > 0
            AND NOT a.attisdropped ORDER BY a.attnum)
FROM wanted w
JOIN pg_catalog.pg_type t ON t.oid = w.oid
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid";

/// Deeper nesting than this (a domain over an array of a composite ...) is not followed:
/// the innermost type stays unresolved.
const MAX_DEPTH: usize = 32;

/// One row of [`LOOKUP_SQL`].
struct CatalogType {
    name: String,
    typtype: i8,
    elem: u32,
    range_subtype: Option<u32>,
    base: u32,
    schema: String,
    relid: u32,
    labels: Vec<String>,
    field_names: Vec<String>,
    field_types: Vec<u32>,
}

impl CatalogType {
    fn from_row(row: &Row) -> Result<(u32, CatalogType)> {
        Ok((
            row.try_get(0)?,
            CatalogType {
                name: row.try_get(1)?,
                typtype: row.try_get(2)?,
                elem: row.try_get(3)?,
                range_subtype: row.try_get(4)?,
                base: row.try_get(5)?,
                schema: row.try_get(6)?,
                relid: row.try_get(7)?,
                labels: row.try_get(8)?,
                field_names: row.try_get(9)?,
                field_types: row.try_get(10)?,
            },
        ))
    }
}

/// A type the crate could not name: not built in, and not (yet) looked up.
pub(super) fn unresolved(t: &Type) -> bool {
    // Built-in and looked-up types have a schema; the stand-in of `type_of` has none.
    t.schema().is_empty()
}

/// Builds the type `oid` from the catalog's rows (built-in types as postgres-types knows
/// them), memoised in `built`. A type missing from the rows (dropped meanwhile) stays the
/// stand-in named after its OID.
fn build(
    oid: u32,
    rows: &HashMap<u32, CatalogType>,
    built: &mut HashMap<u32, Type>,
    depth: usize,
) -> Type {
    if let Some(t) = Type::from_oid(oid) {
        return t;
    }
    if let Some(t) = built.get(&oid) {
        return t.clone();
    }
    let Some(row) = rows.get(&oid).filter(|_| depth < MAX_DEPTH) else {
        return type_of(oid);
    };
    let mut inner = |o: u32| build(o, rows, built, depth + 1);
    // The order of tokio-postgres's `get_type`.
    let kind = if row.typtype == b'e' as i8 {
        Kind::Enum(row.labels.clone())
    } else if row.typtype == b'p' as i8 {
        Kind::Pseudo
    } else if row.base != 0 {
        Kind::Domain(inner(row.base))
    } else if row.elem != 0 {
        Kind::Array(inner(row.elem))
    } else if row.relid != 0 {
        Kind::Composite(
            row.field_names
                .iter()
                .zip(&row.field_types)
                .map(|(name, &t)| Field::new(name.clone(), inner(t)))
                .collect(),
        )
    } else if let Some(sub) = row.range_subtype {
        Kind::Range(inner(sub))
    } else {
        Kind::Simple
    };
    let t = Type::new(row.name.clone(), oid, kind, row.schema.clone());
    built.insert(oid, t.clone());
    t
}

/// The types `oids` (and every type they depend on) from the rows of [`LOOKUP_SQL`].
pub(crate) fn types_from_rows(rows: &[Row], oids: &[u32]) -> Result<Vec<Type>> {
    let rows: HashMap<u32, CatalogType> = rows
        .iter()
        .map(CatalogType::from_row)
        .collect::<Result<_>>()?;
    let mut built = HashMap::new();
    for &o in oids {
        build(o, &rows, &mut built, 0);
    }
    // Every type found, with those it depends on.
    Ok(built.into_values().collect())
}

/// The OIDs of `described`'s types that are neither built in nor known to `known`.
pub(crate) fn missing_types(
    described: &Described,
    known: impl Fn(u32) -> Option<Type>,
) -> Vec<u32> {
    let mut v: Vec<u32> = described
        .params
        .iter()
        .chain(described.columns.iter().map(Column::type_))
        .filter(|t| unresolved(t) && known(t.oid()).is_none())
        .map(Type::oid)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Gives `described`'s parameters and columns the types `known` has for them.
pub(crate) fn resolve_with(described: &mut Described, known: impl Fn(u32) -> Option<Type>) {
    let fix = |t: &Type| {
        if unresolved(t) {
            known(t.oid()).unwrap_or_else(|| t.clone())
        } else {
            t.clone()
        }
    };
    if described.params.iter().any(unresolved) {
        described.params = described.params.iter().map(fix).collect();
    }
    if described.columns.iter().any(|c| unresolved(c.type_())) {
        described.columns = described
            .columns
            .iter()
            .map(|c| Column::new(c.name().to_owned(), fix(c.type_())))
            .collect();
    }
}

impl Connection {
    /// The type with `oid` if it is built in or cached.
    fn known_type(&self, oid: u32) -> Option<Type> {
        Type::from_oid(oid).or_else(|| self.types.get(&self.type_scope, oid))
    }

    /// Gives every parameter and column of `described` its real type: from the cache, or
    /// looked up in one round trip. Returns whether a lookup ran.
    ///
    /// It runs between the Parse/Describe/Flush of a statement and its Bind: its Sync also
    /// ends that first exchange.
    pub(super) async fn resolve_described(&mut self, described: &mut Described) -> Result<bool> {
        if !described.params.iter().any(unresolved)
            && !described.columns.iter().any(|c| unresolved(c.type_()))
        {
            return Ok(false);
        }
        let missing = missing_types(described, |o| self.known_type(o));
        let looked_up = !missing.is_empty() && self.fill_cache(missing).await?;
        let (types, scope) = (self.types.clone(), self.type_scope.clone());
        resolve_with(described, |o| types.get(&scope, o));
        Ok(looked_up)
    }

    /// Gives the columns of `rows` their real types (the rows of a statement described in
    /// the same exchange, `query_typed`'s): from the cache, or looked up in one round trip
    /// after the answer.
    pub(super) async fn resolve_rows(&mut self, rows: &mut [Row]) -> Result<()> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let columns = first.columns_arc();
        let missing: Vec<u32> = columns
            .iter()
            .map(Column::type_)
            .filter(|t| unresolved(t))
            .map(Type::oid)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.fill_cache(missing).await?;
        let fixed = self.resolved_columns(&columns);
        for row in rows {
            row.set_columns(fixed.clone());
        }
        Ok(())
    }

    fn resolved(&self, t: &Type) -> Type {
        if unresolved(t) {
            self.known_type(t.oid()).unwrap_or_else(|| t.clone())
        } else {
            t.clone()
        }
    }

    fn resolved_columns(&self, columns: &Arc<[Column]>) -> Arc<[Column]> {
        if !columns.iter().any(|c| unresolved(c.type_())) {
            return columns.clone();
        }
        columns
            .iter()
            .map(|c| Column::new(c.name().to_owned(), self.resolved(c.type_())))
            .collect()
    }

    /// Looks up what of `oids` is not cached yet; false if everything was.
    async fn fill_cache(&mut self, mut oids: Vec<u32>) -> Result<bool> {
        oids.sort_unstable();
        oids.dedup();
        oids.retain(|&o| self.known_type(o).is_none());
        if oids.is_empty() {
            return Ok(false);
        }
        self.types.count_lookup();
        let types = self.lookup(&oids).await?;
        self.types.insert(&self.type_scope, types);
        Ok(true)
    }

    /// One exchange: the catalog query as the unnamed statement, with its own Sync.
    async fn lookup(&mut self, oids: &[u32]) -> Result<Vec<Type>> {
        let values = oids.to_vec();
        let executed = self
            .own_query("", LOOKUP_SQL, &[Type::OID_ARRAY], &[&values])
            .await?;
        if let Some(e) = executed.error {
            return Err(Error::db_boxed(e));
        }
        types_from_rows(&executed.rows, oids)
    }

    /// Runs one of the crate's own queries (the catalog's) as statement `name` (`""`: parsed
    /// now, as the unnamed statement, with `types`), with its own Sync, untraced. The
    /// server's error, if any, is in the answer.
    pub(super) async fn own_query(
        &mut self,
        name: &str,
        sql: &str,
        types: &[Type],
        params: &[&(dyn postgres_types::ToSql + Sync)],
    ) -> Result<Executed> {
        let mark = self.write_buf.len();
        let written = if name.is_empty() {
            write_parse("", sql, types, &[], &mut self.write_buf)
        } else {
            Ok(())
        }
        .and_then(|()| write_bind_execute(name, types, params, true, &mut self.write_buf));
        if let Err(e) = written {
            self.write_buf.truncate(mark);
            return Err(e.into());
        }
        // The Sync ends a first exchange (Parse, Describe, Flush) left open before it.
        self.owes_sync = false;
        self.owe_ready(true);
        self.flush().await?;
        let mut answer = Execute::new(Arc::from(Vec::new()));
        let executed = self.read_steps(|m| answer.handle(m)).await?;
        self.check_encoding()?;
        Ok(executed)
    }

    /// Whose OIDs this connection's types are (`host:port/database`).
    pub(crate) fn type_scope(&self) -> Arc<str> {
        self.type_scope.clone()
    }

    /// Forgets the types looked up in the catalog (all of the pool's, for a pooled
    /// connection): after `ALTER TYPE ... ADD VALUE` or `ALTER TYPE ... ADD ATTRIBUTE`,
    /// whose types keep their OID. As tokio-postgres's `Client::clear_type_cache`.
    /// Statements already cached keep the types they were prepared with.
    pub fn clear_type_cache(&self) {
        self.types.clear();
    }

    /// The catalog queries run by this connection's type cache (the pool's, for a pooled
    /// connection), and the types it holds.
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn type_cache_counts(&self) -> (u64, usize) {
        (self.types.lookups(), self.types.len())
    }

    /// Types of the pool's shared cache are used and filled (instead of this
    /// connection's own).
    pub(crate) fn set_type_cache(&mut self, types: Arc<super::TypeCache>) {
        self.types = types;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, typtype: u8) -> CatalogType {
        CatalogType {
            name: name.into(),
            typtype: typtype as i8,
            elem: 0,
            range_subtype: None,
            base: 0,
            schema: "public".into(),
            relid: 0,
            labels: Vec::new(),
            field_names: Vec::new(),
            field_types: Vec::new(),
        }
    }

    #[test]
    fn nested_types_are_built_from_one_answer() {
        let mut rows = HashMap::new();
        rows.insert(
            20000,
            CatalogType {
                labels: vec!["sad".into(), "happy".into()],
                ..row("mood", b'e')
            },
        );
        rows.insert(
            20001,
            CatalogType {
                elem: 20000,
                ..row("_mood", b'b')
            },
        );
        rows.insert(
            20002,
            CatalogType {
                relid: 30000,
                field_names: vec!["m".into(), "ms".into(), "n".into()],
                field_types: vec![20000, 20001, 23],
                ..row("pair", b'c')
            },
        );
        rows.insert(
            20003,
            CatalogType {
                base: 20002,
                ..row("dpair", b'd')
            },
        );
        let mut built = HashMap::new();
        let t = build(20003, &rows, &mut built, 0);
        assert_eq!(t.name(), "dpair");
        let Kind::Domain(inner) = t.kind() else {
            panic!("{t:?}")
        };
        let Kind::Composite(fields) = inner.kind() else {
            panic!("{inner:?}")
        };
        assert_eq!(
            fields[0].type_().kind(),
            &Kind::Enum(vec!["sad".into(), "happy".into()])
        );
        assert!(matches!(fields[1].type_().kind(), Kind::Array(e) if e.name() == "mood"));
        assert_eq!(fields[2].type_(), &Type::INT4);
        assert_eq!(built.len(), 4);
    }

    #[test]
    fn a_missing_or_too_deep_type_stays_unresolved() {
        let mut rows = HashMap::new();
        rows.insert(
            20001,
            CatalogType {
                elem: 20000,
                ..row("_gone", b'b')
            },
        );
        let t = build(20001, &rows, &mut HashMap::new(), 0);
        assert!(matches!(t.kind(), Kind::Array(e) if unresolved(e)));
        assert!(unresolved(&build(
            20001,
            &rows,
            &mut HashMap::new(),
            MAX_DEPTH
        )));
        assert!(!unresolved(&Type::INT4));
    }
}
