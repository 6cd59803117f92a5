//! `execute_many` carried by COPY where the server's catalog shows that COPY does what the
//! rows inserted one by one would, and row by row everywhere else, against a real server.
//!
//! Which way the rows went shows in a column defaulting to `current_query()`: the text of
//! the statement that inserted the row (`COPY ...` or the caller's `INSERT ...`).

use wirepool::error::sqlstate;
use wirepool::postgres_types::{to_sql_checked, Format, IsNull};
use wirepool::Connection;
use wirepool::{ToSql, Type};
use wirepool_testkit::{cluster, Cluster, Role};

async fn connect(pg: &Cluster, role: Role) -> Connection {
    Connection::connect(&pg.config(role)).await.unwrap()
}

/// How many rows of `table` each kind of statement inserted: (by COPY, by INSERT).
async fn inserted_by(c: &mut Connection, table: &str) -> (i64, i64) {
    let r = c
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE q LIKE 'COPY %'), \
                        count(*) FILTER (WHERE q LIKE 'INSERT %') FROM {table}"
            ),
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

const INSERT: &str = "INSERT INTO cq (id, v) VALUES ($1, $2)";

fn rows(n: i64) -> impl Iterator<Item = (i64, String)> {
    (0..n).map(|i| (i, format!("v{i}")))
}

#[tokio::test]
async fn many_rows_outside_a_transaction_go_by_copy_and_the_rest_row_by_row() {
    let pg = cluster();
    let mut c = connect(&pg, Role::Admin).await;
    c.batch_execute(
        "CREATE TABLE cq (id int8 PRIMARY KEY, v text, q text DEFAULT current_query())",
    )
    .await
    .unwrap();
    // Many rows, atomic, outside a transaction block: COPY, and every row is there.
    assert_eq!(c.execute_many(INSERT, rows(50_000)).await.unwrap(), 50_000);
    assert_eq!(inserted_by(&mut c, "cq").await, (50_000, 0));
    let r = c
        .query_one("SELECT sum(id)::int8, count(DISTINCT v) FROM cq", &[])
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, i64>(1)),
        (49_999 * 50_000 / 2, 50_000)
    );
    // Parameters in another order than the columns, and a schema-qualified name.
    c.batch_execute("TRUNCATE cq").await.unwrap();
    let n = c
        .execute_many(
            "insert into public.CQ (V, \"id\") values ($2, $1)",
            rows(5_000),
        )
        .await
        .unwrap();
    assert_eq!(n, 5_000);
    assert_eq!(inserted_by(&mut c, "cq").await, (5_000, 0));
    let v: String = c
        .query_one("SELECT v FROM cq WHERE id = 4321", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "v4321");
    // Few rows: row by row.
    c.batch_execute("TRUNCATE cq").await.unwrap();
    c.execute_many(INSERT, rows(999)).await.unwrap();
    assert_eq!(inserted_by(&mut c, "cq").await, (0, 999));
    // Inside a transaction block: row by row, and part of the transaction.
    c.batch_execute("TRUNCATE cq").await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    c.execute_many(INSERT, rows(5_000)).await.unwrap();
    assert_eq!(inserted_by(&mut c, "cq").await, (0, 5_000));
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(inserted_by(&mut c, "cq").await, (0, 0));
    // Independent rows: each its own statement.
    c.execute_many_independent(INSERT, rows(3_000))
        .await
        .unwrap();
    assert_eq!(inserted_by(&mut c, "cq").await, (0, 3_000));
    // The connection is ready for the next statement.
    assert!(!c.is_busy());
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn where_copy_would_differ_the_rows_go_one_by_one() {
    let pg = cluster();
    let mut c = connect(&pg, Role::Admin).await;
    c.batch_execute(
        "CREATE TABLE st (id int8, v text, q text DEFAULT current_query());
         CREATE TABLE st_calls (at timestamptz DEFAULT now());
         CREATE FUNCTION st_count() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN INSERT INTO st_calls DEFAULT VALUES; RETURN NULL; END $$;
         CREATE TRIGGER st_each AFTER INSERT ON st FOR EACH STATEMENT EXECUTE FUNCTION st_count();
         CREATE TABLE ru (id int8, v text);
         CREATE TABLE ru_log (id int8, v text);
         CREATE RULE ru_instead AS ON INSERT TO ru DO INSTEAD INSERT INTO ru_log VALUES (NEW.id, NEW.v);
         CREATE TABLE ia (id int8 GENERATED ALWAYS AS IDENTITY, v text);
         CREATE TABLE rl (id int8, v text);
         ALTER TABLE rl ENABLE ROW LEVEL SECURITY;
         CREATE POLICY rl_all ON rl USING (true) WITH CHECK (id >= 0);
         GRANT ALL ON rl TO trust_user;
         CREATE TABLE pt (id int8, v text, q text DEFAULT current_query()) PARTITION BY RANGE (id);
         CREATE TABLE pt_low PARTITION OF pt FOR VALUES FROM (MINVALUE) TO (2500);
         CREATE TABLE pt_high PARTITION OF pt FOR VALUES FROM (2500) TO (MAXVALUE);
         CREATE TABLE ptr (id int8, v text, q text DEFAULT current_query()) PARTITION BY RANGE (id);
         CREATE TABLE ptr_low PARTITION OF ptr FOR VALUES FROM (MINVALUE) TO (2500);
         CREATE TABLE ptr_high PARTITION OF ptr FOR VALUES FROM (2500) TO (MAXVALUE);
         CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER ptr_keep BEFORE INSERT ON ptr_high FOR EACH ROW EXECUTE FUNCTION keep();",
    )
    .await
    .unwrap();
    // A statement trigger fires once a row, as for the rows one by one.
    c.execute_many("INSERT INTO st (id, v) VALUES ($1, $2)", rows(3_000))
        .await
        .unwrap();
    assert_eq!(inserted_by(&mut c, "st").await, (0, 3_000));
    let calls: i64 = c
        .query_one("SELECT count(*) FROM st_calls", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(calls, 3_000);
    // A rule applies (COPY would ignore it).
    c.execute_many("INSERT INTO ru (id, v) VALUES ($1, $2)", rows(3_000))
        .await
        .unwrap();
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM ru), (SELECT count(*) FROM ru_log)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (0, 3_000));
    // An identity column GENERATED ALWAYS refuses a value (COPY would write it): the
    // statement itself is refused, before any row.
    let e = c
        .execute_many("INSERT INTO ia (id, v) VALUES ($1, $2)", rows(3_000))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("428C9"), "{e}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM ia", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // Row-level security applies to a role it binds (COPY would refuse the table).
    let mut user = connect(&pg, Role::Trust).await;
    user.execute_many("INSERT INTO rl (id, v) VALUES ($1, $2)", rows(3_000))
        .await
        .unwrap();
    let e = user
        .execute_many(
            "INSERT INTO rl (id, v) VALUES ($1, $2)",
            (0..3_000i64).map(|i| (if i == 2_222 { -1 } else { i }, "x")),
        )
        .await
        .unwrap_err();
    assert_eq!(e.batch_index(), Some(2_222), "{e}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM rl", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3_000);
    // A partitioned table: COPY routes each row; with a trigger on a partition, row by row.
    c.execute_many("INSERT INTO pt (id, v) VALUES ($1, $2)", rows(5_000))
        .await
        .unwrap();
    assert_eq!(inserted_by(&mut c, "pt").await, (5_000, 0));
    let high: i64 = c
        .query_one("SELECT count(*) FROM pt_high", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(high, 2_500);
    c.execute_many("INSERT INTO ptr (id, v) VALUES ($1, $2)", rows(5_000))
        .await
        .unwrap();
    assert_eq!(inserted_by(&mut c, "ptr").await, (0, 5_000));
}

#[tokio::test]
async fn a_failing_row_is_named_and_nothing_is_applied() {
    let pg = cluster();
    let mut c = connect(&pg, Role::Admin).await;
    c.batch_execute(
        "CREATE TABLE cq (id int8 PRIMARY KEY, v varchar(8), q text DEFAULT current_query())",
    )
    .await
    .unwrap();
    // A value too long for its column, far into the rows: found again by running its
    // chunk row by row; the caller gets the INSERT's own error.
    let e = c
        .execute_many(
            INSERT,
            (0..200_000i64).map(|i| {
                (
                    i,
                    if i == 123_456 {
                        "far too long".into()
                    } else {
                        format!("{}", i % 1000)
                    },
                )
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("22001"), "{e}");
    assert_eq!(e.batch_index(), Some(123_456), "{e}");
    // The INSERT's error has no COPY context (which would quote the value).
    assert_eq!(e.as_db_error().unwrap().where_(), None, "{e:?}");
    assert_eq!(inserted_by(&mut c, "cq").await, (0, 0));
    // A key that an earlier chunk's row already took: only the whole batch would fail
    // again; the row comes from the server's error context.
    let e = c
        .execute_many(
            INSERT,
            (0..200_000i64).map(|i| (if i == 150_000 { 10 } else { i }, "x")),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::UNIQUE_VIOLATION), "{e}");
    assert_eq!(e.batch_index(), Some(150_000), "{e}");
    assert_eq!(inserted_by(&mut c, "cq").await, (0, 0));
    // A key already in the table: found by running the chunk again.
    c.execute(INSERT, &[&170_001i64, &"there"]).await.unwrap();
    let e = c.execute_many(INSERT, rows(200_000)).await.unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::UNIQUE_VIOLATION), "{e}");
    assert_eq!(e.batch_index(), Some(170_001), "{e}");
    assert_eq!(e.as_db_error().unwrap().where_(), None, "{e:?}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM cq", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// An `int4` that sends itself as text, as some applications' own types do.
#[derive(Debug)]
struct TextInt(i32);

impl ToSql for TextInt {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.to_string().as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::INT4
    }
    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }
    to_sql_checked!();
}

#[tokio::test]
async fn a_value_sent_as_text_goes_as_its_own_statement_between_chunks() {
    let pg = cluster();
    let mut c = connect(&pg, Role::Admin).await;
    c.batch_execute("CREATE TABLE tx (id int8, n int4, q text DEFAULT current_query())")
        .await
        .unwrap();
    let rows: Vec<(i64, Option<TextInt>, i32)> = (0..20_000i64)
        .map(|i| (i, (i % 997 == 5).then_some(TextInt(i as i32)), i as i32))
        .collect();
    let n = c
        .execute_many(
            "INSERT INTO tx (id, n) VALUES ($1, $2)",
            rows.iter()
                .map(|(id, t, plain)| -> [&(dyn ToSql + Sync); 2] {
                    match t {
                        Some(t) => [id, t],
                        None => [id, plain],
                    }
                }),
        )
        .await
        .unwrap();
    assert_eq!(n, 20_000);
    let texts = rows.iter().filter(|r| r.1.is_some()).count() as i64;
    assert_eq!(inserted_by(&mut c, "tx").await, (20_000 - texts, texts));
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE n = id), sum(id)::int8 FROM tx",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), 20_000);
    assert_eq!(r.get::<_, i64>(1), 19_999 * 20_000 / 2);
}

#[tokio::test]
async fn a_command_timeout_mid_copy_applies_nothing_and_leaves_the_connection_ready() {
    let pg = cluster();
    let mut c = connect(&pg, Role::Admin).await;
    c.batch_execute(
        "CREATE TABLE cq (id int8 PRIMARY KEY, v text, q text DEFAULT current_query())",
    )
    .await
    .unwrap();
    // Ten million rows take seconds; the command timeout cuts them short mid-way, with
    // chunks sent and others still to come.
    for limit_ms in [30u64, 300] {
        c.set_command_timeout(Some(std::time::Duration::from_millis(limit_ms)));
        let e = c.execute_many(INSERT, rows(10_000_000)).await.unwrap_err();
        assert_eq!(e.kind(), wirepool::ErrorKind::CommandTimeout, "{e}");
        c.set_command_timeout(None);
        assert!(!c.is_broken());
        assert_eq!(
            inserted_by(&mut c, "cq").await,
            (0, 0),
            "after {limit_ms} ms"
        );
    }
    // The next batch goes by COPY as before.
    assert_eq!(c.execute_many(INSERT, rows(5_000)).await.unwrap(), 5_000);
    assert_eq!(inserted_by(&mut c, "cq").await, (5_000, 0));
}

/// Tables where COPY would see what the rows one by one would not: a key into the table
/// itself, a default or CHECK that reads the table, a deferrable unique key. Each runs
/// row by row with the INSERTs' outcome.
#[tokio::test]
async fn where_the_table_reads_itself_the_rows_go_one_by_one() {
    let pg = cluster();
    let mut c = connect(&pg, Role::Admin).await;
    c.batch_execute(
        "CREATE TABLE fk (id int8 PRIMARY KEY, parent int8 REFERENCES fk (id));
         CREATE TABLE sd (id int8, c int8);
         CREATE FUNCTION sd_count() RETURNS int8 LANGUAGE sql STABLE
             AS 'SELECT count(*) FROM public.sd';
         ALTER TABLE sd ALTER c SET DEFAULT sd_count();
         CREATE TABLE ck (id int8);
         CREATE FUNCTION ck_count() RETURNS int8 LANGUAGE sql STABLE
             AS 'SELECT count(*) FROM public.ck';
         ALTER TABLE ck ADD CHECK (ck_count() < 1500);
         CREATE TABLE qx (id int8,
             c int8 DEFAULT length(query_to_xml('SELECT count(*) FROM public.qx', false, true, '')::text));
         CREATE TABLE du (id int8 UNIQUE DEFERRABLE INITIALLY IMMEDIATE);",
    )
    .await
    .unwrap();
    // Each row refers to the next: every INSERT fails its own check at once.
    let e = c
        .execute_many(
            "INSERT INTO fk (id, parent) VALUES ($1, $2)",
            (0..3_000i64).map(|i| (i, (i < 2_999).then_some(i + 1))),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("23503"), "{e}");
    assert_eq!(e.batch_index(), Some(0), "{e}");
    // Each row refers to the one before: all go in.
    let n = c
        .execute_many(
            "INSERT INTO fk (id, parent) VALUES ($1, $2)",
            (0..3_000i64).map(|i| (i, (i > 0).then_some(i - 1))),
        )
        .await
        .unwrap();
    assert_eq!(n, 3_000);
    // A default that counts the rows before it.
    c.execute_many(
        "INSERT INTO sd (id) VALUES ($1)",
        (0..3_000i64).map(|i| (i,)),
    )
    .await
    .unwrap();
    let bad: i64 = c
        .query_one("SELECT count(*) FROM sd WHERE c <> id", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "each row's default saw the rows before it");
    // A CHECK that counts them.
    let e = c
        .execute_many(
            "INSERT INTO ck (id) VALUES ($1)",
            (0..3_000i64).map(|i| (i,)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("23514"), "{e}");
    assert_eq!(e.batch_index(), Some(1_500), "{e}");
    // A built-in function that runs a query, in a default (on a server built with XML
    // support: PostgreSQL 18 of the second pass has none).
    let xml = c
        .simple_query("SELECT query_to_xml('SELECT 1', false, true, '')")
        .await
        .is_ok();
    if xml {
        c.execute_many(
            "INSERT INTO qx (id) VALUES ($1)",
            (0..3_000i64).map(|i| (i,)),
        )
        .await
        .unwrap();
        let distinct: i64 = c
            .query_one("SELECT count(DISTINCT c) FROM qx", &[])
            .await
            .unwrap()
            .get(0);
        assert!(distinct > 1, "every row's default saw the same table");
    }
    // A deferrable unique key repeated across chunks: the row is named.
    let e = c
        .execute_many(
            "INSERT INTO du (id) VALUES ($1)",
            (0..200_000i64).map(|i| (if i == 150_000 { 10 } else { i },)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::UNIQUE_VIOLATION), "{e}");
    assert_eq!(e.batch_index(), Some(150_000), "{e}");
}

/// A row that does not convert, after an earlier row that the server refuses: the earlier
/// row is the first failing row, by COPY and row by row.
#[tokio::test]
async fn an_earlier_failing_row_comes_before_a_later_one_that_does_not_convert() {
    let pg = cluster();
    let mut c = connect(&pg, Role::Admin).await;
    c.batch_execute(
        "CREATE TABLE cq (id int8 PRIMARY KEY, v text, q text); INSERT INTO cq VALUES (0, 'x')",
    )
    .await
    .unwrap();
    for (rows, bad) in [(500i64, 400i64), (3_000, 2_500)] {
        let values: Vec<Vec<Box<dyn ToSql + Sync>>> = (0..rows)
            .map(|i| -> Vec<Box<dyn ToSql + Sync>> {
                if i == bad {
                    vec![Box::new(i)]
                } else {
                    vec![Box::new(i), Box::new(format!("v{i}"))]
                }
            })
            .collect();
        let e = c
            .execute_many(
                INSERT,
                values.iter().map(|r| {
                    r.iter()
                        .map(|v| &**v as &(dyn ToSql + Sync))
                        .collect::<Vec<_>>()
                }),
            )
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Some(sqlstate::UNIQUE_VIOLATION),
            "{rows} rows: {e}"
        );
        assert_eq!(e.batch_index(), Some(0), "{rows} rows: {e}");
        let n: i64 = c
            .query_one("SELECT count(*) FROM cq", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
    }
}

/// With the statement cache off, of one, or larger: the COPY path, a row sent as the
/// statement itself, and a failing row found again all use the caller's statement as
/// prepared (or parse it again), never a statement the cache evicted.
#[tokio::test]
async fn every_statement_cache_size_serves_the_copy_path() {
    let pg = cluster();
    let mut c = connect(&pg, Role::Admin).await;
    c.batch_execute(
        "CREATE TABLE tx (id int8 PRIMARY KEY, n int4, q text DEFAULT current_query())",
    )
    .await
    .unwrap();
    for capacity in [0usize, 1, 2, 100] {
        c.set_statement_cache_capacity(capacity);
        c.batch_execute("TRUNCATE tx; INSERT INTO tx (id, n) VALUES (3000, 0)")
            .await
            .unwrap();
        let rows: Vec<(i64, Option<TextInt>, i32)> = (0..5_000i64)
            .map(|i| (i, (i % 700 == 1).then_some(TextInt(i as i32)), i as i32))
            .collect();
        let params = || {
            rows.iter()
                .map(|(id, t, plain)| -> [&(dyn ToSql + Sync); 2] {
                    match t {
                        Some(t) => [id, t],
                        None => [id, plain],
                    }
                })
        };
        let e = c
            .execute_many("INSERT INTO tx (id, n) VALUES ($1, $2)", params())
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Some(sqlstate::UNIQUE_VIOLATION),
            "capacity {capacity}: {e}"
        );
        assert_eq!(e.batch_index(), Some(3_000), "capacity {capacity}: {e}");
        c.batch_execute("TRUNCATE tx").await.unwrap();
        let n = c
            .execute_many("INSERT INTO tx (id, n) VALUES ($1, $2)", params())
            .await
            .unwrap_or_else(|e| panic!("capacity {capacity}: {e}"));
        assert_eq!(n, 5_000);
        let texts = rows.iter().filter(|r| r.1.is_some()).count() as i64;
        assert_eq!(
            inserted_by(&mut c, "tx").await,
            (5_000 - texts, texts),
            "capacity {capacity}"
        );
    }
}
