//! Types that are not built in, against a real server: enums, composites, domains and
//! arrays of them through postgres-types' derives (feature `derive`), extensions' types
//! (`hstore`, `citext`, PostGIS `geometry`) through the `FromSql` that checks their name,
//! the shared type cache and its one round trip, a type dropped and created again, and
//! the server's notices.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BufMut;
use wirepool::error::sqlstate;
use wirepool::internals::type_cache_counts;
use wirepool::postgres_types::{IsNull, Kind};
use wirepool::{Connection, ErrorKind, FromSql, Pool, ToSql, Type};
use wirepool_testkit::{cluster, Cluster, Role};

#[derive(Debug, Clone, Copy, PartialEq, ToSql, FromSql)]
#[postgres(name = "mood")]
enum Mood {
    #[postgres(name = "sad")]
    Sad,
    #[postgres(name = "ok")]
    Ok,
    #[postgres(name = "happy")]
    Happy,
}

#[derive(Debug, Clone, PartialEq, ToSql, FromSql)]
#[postgres(name = "inventory_item")]
struct Item {
    name: String,
    supplier: Option<Supplier>,
    price: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, ToSql, FromSql)]
#[postgres(name = "supplier")]
struct Supplier {
    id: i32,
    country: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, ToSql, FromSql)]
#[postgres(name = "positive")]
struct Positive(i32);

const SCHEMA: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TYPE supplier AS (id int4, country text);
    CREATE TYPE inventory_item AS (name text, supplier supplier, price int4);
    CREATE DOMAIN positive AS int4 CHECK (VALUE > 0);
    CREATE TABLE diary (id serial PRIMARY KEY, feeling mood NOT NULL, history mood[] NOT NULL);
";

async fn pool(pg: &Cluster, capacity: usize) -> Pool {
    Pool::builder(pg.config(Role::Admin))
        .min_size(2)
        .max_size(2)
        .statement_cache_capacity(capacity)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn enum_and_array_of_it_through_the_derive() {
    let pg = cluster();
    pg.psql(SCHEMA).unwrap();
    let pool = pool(&pg, 100).await;
    let mut c = pool.acquire().await.unwrap();
    let history = vec![Mood::Sad, Mood::Ok, Mood::Happy, Mood::Ok];
    let id: i32 = c
        .query_one(
            "INSERT INTO diary (feeling, history) VALUES ($1, $2) RETURNING id",
            &[&Mood::Happy, &history],
        )
        .await
        .unwrap()
        .get(0);
    let row = c
        .query_one("SELECT feeling, history FROM diary WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Mood>("feeling"), Mood::Happy);
    assert_eq!(row.get::<_, Vec<Mood>>("history"), history);
    // The column's type has its real name, schema and kind.
    let t = row.columns()[0].type_();
    assert_eq!((t.name(), t.schema()), ("mood", "public"));
    assert_eq!(
        t.kind(),
        &Kind::Enum(vec!["sad".into(), "ok".into(), "happy".into()])
    );
    let arr = row.columns()[1].type_();
    assert_eq!(arr.name(), "_mood");
    assert!(matches!(arr.kind(), Kind::Array(e) if e == t), "{arr:?}");
    // A value the enum does not have is refused by the server, typed.
    let e = c.query_one("SELECT 'angry'::mood", &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::INVALID_TEXT_REPRESENTATION), "{e}");
    // Reading the enum as a wrong Rust type names the column and both types.
    let e = row.try_get::<_, i32>("feeling").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("feeling") && msg.contains("mood") && msg.contains("i32"),
        "{msg}"
    );
}

#[tokio::test]
async fn composite_with_a_nested_composite_and_a_null_field() {
    let pg = cluster();
    pg.psql(SCHEMA).unwrap();
    let pool = pool(&pg, 100).await;
    let mut c = pool.acquire().await.unwrap();
    let item = Item {
        name: "fuzzy dice".into(),
        supplier: Some(Supplier {
            id: 42,
            country: None,
        }),
        price: Some(1999),
    };
    let row = c
        .query_one("SELECT $1::inventory_item AS item", &[&item])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Item>("item"), item);
    // Built by the server, read back through the derive.
    let row = c
        .query_one(
            "SELECT ROW('socks', ROW(7, 'PL')::supplier, NULL)::inventory_item",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Item>(0),
        Item {
            name: "socks".into(),
            supplier: Some(Supplier {
                id: 7,
                country: Some("PL".into())
            }),
            price: None,
        }
    );
    let Kind::Composite(fields) = row.columns()[0].type_().kind() else {
        panic!("{:?}", row.columns()[0].type_());
    };
    let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["name", "supplier", "price"]);
    assert!(matches!(fields[1].type_().kind(), Kind::Composite(inner) if inner.len() == 2));
    assert_eq!(fields[2].type_(), &Type::INT4);
}

#[tokio::test]
async fn domain_with_a_check_constraint() {
    let pg = cluster();
    pg.psql(SCHEMA).unwrap();
    pg.psql("CREATE TABLE stock (n positive)").unwrap();
    let pool = pool(&pg, 100).await;
    let mut c = pool.acquire().await.unwrap();
    c.execute("INSERT INTO stock VALUES ($1)", &[&Positive(5)])
        .await
        .unwrap();
    let row = c.query_one("SELECT n FROM stock", &[]).await.unwrap();
    assert_eq!(row.get::<_, Positive>(0), Positive(5));
    // The server describes a domain's column as its base type, and its parameter as the
    // domain.
    assert_eq!(row.columns()[0].type_(), &Type::INT4);
    let stmt = c.prepare("INSERT INTO stock VALUES ($1)").await.unwrap();
    let t = &stmt.params()[0];
    assert_eq!(t.name(), "positive");
    assert_eq!(t.kind(), &Kind::Domain(Type::INT4));
    // A plain i32 is not a `positive` (postgres-types checks the type, as tokio-postgres).
    let e = c.execute(&stmt, &[&5i32]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion, "{e}");
    // The check fails on the server: 23514, and the connection goes on.
    let e = c
        .execute("INSERT INTO stock VALUES ($1)", &[&Positive(-1)])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Db);
    assert_eq!(e.code(), Some(sqlstate::CHECK_VIOLATION), "{e}");
    assert!(e.to_string().contains("positive"), "{e}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM stock", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn hstore_and_citext_from_the_postgresql_package() {
    let pg = cluster();
    pg.psql("CREATE EXTENSION hstore; CREATE EXTENSION citext;")
        .unwrap();
    let pool = pool(&pg, 100).await;
    let mut c = pool.acquire().await.unwrap();
    let mut map: HashMap<String, Option<String>> = HashMap::new();
    map.insert("colour".into(), Some("blue".into()));
    map.insert("size".into(), None);
    map.insert("quote's".into(), Some("a \"b\" => c".into()));
    let row = c
        .query_one("SELECT $1::hstore, ($1::hstore) -> 'colour'", &[&map])
        .await
        .unwrap();
    assert_eq!(row.columns()[0].type_().name(), "hstore");
    assert_eq!(row.get::<_, HashMap<String, Option<String>>>(0), map);
    assert_eq!(row.get::<_, &str>(1), "blue");
    let row = c
        .query_one(
            "SELECT 'MiXeD'::citext AS v, 'MiXeD'::citext = 'mixed'::citext AS same",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.columns()[0].type_().name(), "citext");
    assert_eq!(row.get::<_, String>("v"), "MiXeD");
    assert!(row.get::<_, bool>("same"));
    // citext as a parameter: String's ToSql accepts it by name.
    let same: bool = c
        .query_one("SELECT $1::citext = 'HELLO'", &[&"hello"])
        .await
        .unwrap()
        .get(0);
    assert!(same);
}

/// A PostGIS point, as an application's own `FromSql`/`ToSql` that accept the type by its
/// name (as the geo crates' do): EWKB with an SRID.
#[derive(Debug, PartialEq)]
struct Point {
    srid: u32,
    x: f64,
    y: f64,
}

const EWKB_POINT_WITH_SRID: u32 = 0x2000_0001;

impl<'a> FromSql<'a> for Point {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Point, Box<dyn StdError + Sync + Send>> {
        if raw.len() != 25 || raw[0] != 1 {
            return Err(format!("not a little-endian EWKB point with an SRID: {raw:?}").into());
        }
        let u = |i: usize| u32::from_le_bytes(raw[i..i + 4].try_into().unwrap());
        let f = |i: usize| f64::from_le_bytes(raw[i..i + 8].try_into().unwrap());
        if u(1) != EWKB_POINT_WITH_SRID {
            return Err(format!("geometry type {:#x}", u(1)).into());
        }
        Ok(Point {
            srid: u(5),
            x: f(9),
            y: f(17),
        })
    }
    fn accepts(ty: &Type) -> bool {
        ty.name() == "geometry"
    }
}

impl ToSql for Point {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.put_u8(1);
        out.put_u32_le(EWKB_POINT_WITH_SRID);
        out.put_u32_le(self.srid);
        out.put_f64_le(self.x);
        out.put_f64_le(self.y);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        ty.name() == "geometry"
    }
    wirepool::postgres_types::to_sql_checked!();
}

#[tokio::test]
async fn postgis_geometry_through_a_from_sql_that_checks_the_name() {
    let pg = cluster();
    pg.psql("CREATE EXTENSION postgis").unwrap_or_else(|e| {
        panic!("PostGIS (package postgresql-15-postgis-3, installed by .ci/run): {e}")
    });
    let pool = pool(&pg, 100).await;
    let mut c = pool.acquire().await.unwrap();
    let row = c
        .query_one(
            "SELECT ST_SetSRID(ST_MakePoint(1.5, -2.25), 4326) AS g",
            &[],
        )
        .await
        .unwrap();
    let t = row.columns()[0].type_();
    assert_eq!((t.name(), t.schema()), ("geometry", "public"));
    assert_eq!(
        row.get::<_, Point>("g"),
        Point {
            srid: 4326,
            x: 1.5,
            y: -2.25
        }
    );
    let wkt: String = c
        .query_one(
            "SELECT ST_AsText($1::geometry) || ' ' || ST_SRID($1::geometry)",
            &[&Point {
                srid: 2180,
                x: 3.0,
                y: 4.0,
            }],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wkt, "POINT(3 4) 2180");
}

#[tokio::test]
async fn one_lookup_per_statement_shared_by_the_pools_connections() {
    let pg = cluster();
    pg.psql(SCHEMA).unwrap();
    let pool = pool(&pg, 100).await;
    let mut a = pool.acquire().await.unwrap();
    let mut b = pool.acquire().await.unwrap();
    assert_eq!(type_cache_counts(&a), (0, 0));
    // An item needs four types (the item, the supplier, the mood, its array): one query.
    let row = a
        .query_one(
            "SELECT ROW('x', ROW(1, NULL)::supplier, 3)::inventory_item, ARRAY['ok']::mood[]",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<Mood>>(1), [Mood::Ok]);
    let (lookups, held) = type_cache_counts(&a);
    assert_eq!(lookups, 1);
    assert_eq!(held, 4, "inventory_item, supplier, mood, _mood");
    // The other connection prepares its own statement and finds the types cached.
    let row = b
        .query_one(
            "SELECT $1::mood, $2::supplier",
            &[
                &Mood::Sad,
                &Supplier {
                    id: 9,
                    country: None,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Mood>(0), Mood::Sad);
    assert_eq!(type_cache_counts(&b), (1, 4));
    // A built-in type needs no lookup at all.
    b.query_one("SELECT $1::int4[]", &[&vec![1i32]])
        .await
        .unwrap();
    assert_eq!(type_cache_counts(&b).0, 1);
    // After clear_type_cache the next statement that meets a custom type looks it up
    // again (the cached statements keep their types).
    pool.clear_type_cache();
    a.query_one("SELECT 'happy'::mood, 1", &[]).await.unwrap();
    assert_eq!(type_cache_counts(&a), (2, 1));
}

/// Without a statement cache (PgBouncer in transaction mode) the lookup's unnamed
/// statement takes the statement's place, which is parsed again; `query_typed` and a
/// prepared [`wirepool::Statement`] re-parsed in one exchange get their types too.
#[tokio::test]
async fn without_a_statement_cache() {
    let pg = cluster();
    pg.psql(SCHEMA).unwrap();
    let pool = pool(&pg, 0).await;
    let mut c = pool.acquire().await.unwrap();
    let row = c
        .query_one(
            "SELECT $1::mood AS m, $2::mood[] AS ms",
            &[&Mood::Ok, &vec![Mood::Happy]],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Mood>("m"), Mood::Ok);
    assert_eq!(row.get::<_, Vec<Mood>>("ms"), [Mood::Happy]);
    let stmt = c
        .prepare("SELECT $1::positive AS p, 'sad'::mood AS m")
        .await
        .unwrap();
    assert_eq!(stmt.params()[0].name(), "positive");
    for i in 1..4 {
        let row = c.query_one(&stmt, &[&Positive(i)]).await.unwrap();
        assert_eq!(row.get::<_, Positive>("p"), Positive(i));
        assert_eq!(row.get::<_, Mood>("m"), Mood::Sad);
    }
    let mood = stmt.columns()[1].type_().clone();
    let rows = c
        .query_typed("SELECT $1 AS m, ARRAY[$1] AS ms", &[(&Mood::Happy, mood)])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, Mood>("m"), Mood::Happy);
    assert_eq!(rows[0].get::<_, Vec<Mood>>("ms"), [Mood::Happy]);
    // The connection is clean for the next caller.
    drop(c);
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(
        c.query_one("SELECT 1::int4", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn a_type_dropped_and_created_again() {
    let pg = cluster();
    pg.psql("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        .unwrap();
    let pool = wirepool_testkit::pool(&pg, Role::Admin, 1, 1).await;
    let sql = "SELECT $1::mood AS m";
    let mut c = pool.acquire().await.unwrap();
    let first = c.query_one(sql, &[&Mood::Ok]).await.unwrap();
    let old_oid = first.columns()[0].type_oid();
    drop(c);
    pg.psql("DROP TYPE mood; CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        .unwrap();
    // The same statement, still cached on the same connection: the server no longer
    // knows its type (XX000 or 0A000); it is prepared again, once, transparently.
    let mut c = pool.acquire().await.unwrap();
    let row = c.query_one(sql, &[&Mood::Happy]).await.unwrap();
    assert_eq!(row.get::<_, Mood>("m"), Mood::Happy);
    let new_oid = row.columns()[0].type_oid();
    assert_ne!(old_oid, new_oid);
    assert_eq!(row.columns()[0].type_().name(), "mood");
    // A query whose only type is the re-created one as a parameter (the plan fails with
    // "cache lookup failed for type").
    pg.psql("CREATE TABLE t (m text)").unwrap();
    let ins = "INSERT INTO t SELECT $1::mood::text";
    c.execute(ins, &[&Mood::Sad]).await.unwrap();
    drop(c);
    pg.psql("DROP TYPE mood; CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        .unwrap();
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(c.execute(ins, &[&Mood::Ok]).await.unwrap(), 1);
    let texts: Vec<String> = c
        .query("SELECT m FROM t ORDER BY m", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(texts, ["ok", "sad"]);
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases + 1);
}

#[tokio::test]
async fn ten_thousand_notices_all_delivered_none_kept() {
    let pg = cluster();
    let seen = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(parking_lot::Mutex::new(String::new()));
    let (s, l) = (seen.clone(), last.clone());
    let pool = Pool::builder(pg.config(Role::Admin))
        .min_size(1)
        .max_size(1)
        .notice_handler(move |n| {
            s.fetch_add(1, Ordering::Relaxed);
            *l.lock() = format!("{} {} {}", n.severity(), n.code(), n.message());
        })
        .build()
        .await
        .unwrap();
    let mut c = pool.acquire().await.unwrap();
    let flood = "DO $$ BEGIN FOR i IN 1..10000 LOOP \
                 RAISE NOTICE 'notice % %', i, repeat('x', 1000); END LOOP; \
                 RAISE WARNING 'the last' USING ERRCODE = '01000'; END $$";
    let before = rss_kib();
    c.batch_execute(flood).await.unwrap();
    assert_eq!(seen.load(Ordering::Relaxed), 10_001);
    assert_eq!(*last.lock(), "WARNING 01000 the last");
    // Through the extended protocol too.
    c.execute(flood, &[]).await.unwrap();
    assert_eq!(seen.load(Ordering::Relaxed), 20_002);
    // 20 MB of notices went by; the process kept none of them.
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 8 * 1024, "RSS grew by {grown} KiB");
    // A standalone connection logs them unless given a handler of its own.
    let mut plain = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    let mine = Arc::new(AtomicUsize::new(0));
    let m = mine.clone();
    plain.set_notice_handler(move |_| {
        m.fetch_add(1, Ordering::Relaxed);
    });
    plain
        .simple_query("DO $$ BEGIN RAISE NOTICE 'one'; RAISE NOTICE 'two'; END $$")
        .await
        .unwrap();
    assert_eq!(mine.load(Ordering::Relaxed), 2);
    plain.log_notices();
    plain
        .simple_query("DO $$ BEGIN RAISE NOTICE 'three'; END $$")
        .await
        .unwrap();
    assert_eq!(mine.load(Ordering::Relaxed), 2, "logged, not handled");
}

/// The resident set of this process, from /proc (Linux, as the tests' servers).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Custom-typed parameters on the shared path (`pool.query*`), with the statement cache on
/// and off, the first run and the cached ones: the parameters are bound with the types the
/// lookup found, as on a checked-out connection.
#[tokio::test]
async fn custom_typed_parameters_on_the_shared_path() {
    let pg = cluster();
    pg.psql(SCHEMA).unwrap();
    for capacity in [100, 0] {
        let pool = pool(&pg, capacity).await;
        for round in 0..3 {
            let row = pool
                .query_one(
                    "SELECT $1::mood::text AS m, $2::mood[] AS h, ($3::inventory_item).name AS n, $4::positive AS p",
                    &[
                        &Mood::Ok,
                        &vec![Mood::Happy, Mood::Sad],
                        &Item {
                            name: format!("widget {round}"),
                            supplier: Some(Supplier {
                                id: 7,
                                country: None,
                            }),
                            price: Some(3),
                        },
                        &Positive(5),
                    ],
                )
                .await
                .unwrap_or_else(|e| panic!("capacity {capacity}, round {round}: {e:?}"));
            assert_eq!(row.get::<_, String>("m"), "ok");
            assert_eq!(row.get::<_, Vec<Mood>>("h"), vec![Mood::Happy, Mood::Sad]);
            assert_eq!(row.get::<_, String>("n"), format!("widget {round}"));
            assert_eq!(row.get::<_, Positive>("p"), Positive(5));
        }
        // A batch on the shared path binds them the same way.
        let n = pool
            .execute(
                "INSERT INTO diary (feeling, history) VALUES ($1, $2)",
                &[&Mood::Sad, &vec![Mood::Ok]],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        pool.close().await;
    }
}
