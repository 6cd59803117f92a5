//! The lists the classifier decides by, each written once: the statements and the
//! functions refused on the pipelined path, and the operations and built-in functions that
//! can leave a session clean.

/// A statement refused on the pipelined path, by its first keyword.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RefusedStatement {
    /// The statement's first keyword, upper case.
    pub(crate) keyword: &'static str,
    /// Transaction control: it leaves no session state once the transaction is over, which
    /// the pool sees in ReadyForQuery's transaction status; such a statement can be clean.
    pub(crate) transaction: bool,
    /// The refusal's text.
    pub(crate) reason: &'static str,
}

const fn refused(
    keyword: &'static str,
    transaction: bool,
    reason: &'static str,
) -> RefusedStatement {
    RefusedStatement {
        keyword,
        transaction,
        reason,
    }
}

/// The statements refused on the pipelined path, by first keyword (after an `EXPLAIN
/// [ANALYZE] [VERBOSE]` or `EXPLAIN (…)` prefix): session settings, transaction control,
/// notifications, prepared statements and cursors, locks, COPY (its own sub-protocol), and
/// code the pool cannot see into (DO, CALL, LOAD).
pub(crate) const REFUSED_STATEMENTS: &[RefusedStatement] = &[
    refused("SET", false, "SET changes the session"),
    refused("RESET", false, "RESET changes the session"),
    refused("DISCARD", false, "DISCARD changes the session"),
    refused("BEGIN", true, "BEGIN opens a transaction"),
    refused("START", true, "START TRANSACTION opens a transaction"),
    refused("COMMIT", true, "COMMIT ends a transaction"),
    refused("END", true, "END ends a transaction"),
    refused("ROLLBACK", true, "ROLLBACK ends a transaction"),
    refused("ABORT", true, "ABORT ends a transaction"),
    refused("SAVEPOINT", true, "SAVEPOINT works inside a transaction"),
    refused("RELEASE", true, "RELEASE works inside a transaction"),
    refused(
        "PREPARE",
        false,
        "PREPARE keeps a statement or transaction in the session",
    ),
    refused(
        "EXECUTE",
        false,
        "EXECUTE runs a statement prepared in the session",
    ),
    refused(
        "DEALLOCATE",
        false,
        "DEALLOCATE changes the session's prepared statements",
    ),
    refused("DECLARE", false, "DECLARE opens a cursor in the session"),
    refused("FETCH", false, "FETCH reads a cursor of the session"),
    refused("MOVE", false, "MOVE moves a cursor of the session"),
    refused("CLOSE", false, "CLOSE closes a cursor of the session"),
    refused("LISTEN", false, "LISTEN subscribes the session"),
    refused(
        "UNLISTEN",
        false,
        "UNLISTEN changes the session's subscriptions",
    ),
    refused("LOCK", false, "LOCK holds locks until the transaction ends"),
    refused("COPY", false, "COPY runs its own sub-protocol"),
    refused("DO", false, "DO runs code the pool cannot check"),
    refused("CALL", false, "CALL runs a procedure the pool cannot check"),
    refused("LOAD", false, "LOAD loads a library into the session"),
];

/// A built-in function that changes or reads state of the session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SessionFunction {
    /// The function's name, lower case.
    pub(crate) name: &'static str,
    /// What it does to the session (the refusal's text follows `name()`).
    pub(crate) reason: &'static str,
    /// What it leaves no session reset undoes (a seed, a connection or cursor of its
    /// own): the pool closes a connection that ran it rather than hand it on.
    pub(crate) outlives_reset: bool,
}

const fn session(name: &'static str, reason: &'static str) -> SessionFunction {
    SessionFunction {
        name,
        reason,
        outlives_reset: false,
    }
}

const fn lasting(name: &'static str, reason: &'static str) -> SessionFunction {
    SessionFunction {
        name,
        reason,
        outlives_reset: true,
    }
}

/// Views of the session's own objects: named anywhere in a text (any spelling, any
/// schema), they refuse it on the pipelined path, where the session is shared. The
/// statements that make such objects are refused there too; these catch one a function
/// made where no text shows it, until the connection's full reset.
pub(crate) const SESSION_VIEWS: &[&str] = &["pg_cursors", "pg_prepared_statements"];

/// Functions whose call anywhere in a text refuses it on the pipelined path, however the
/// name is spelled (any case, quoted, `U&` escapes) and whatever schema qualifies it.
/// `set_config` is allowed when its third argument is the literal `true` or `'true'`
/// (transaction-local).
pub(crate) const SESSION_FUNCTIONS: &[SessionFunction] = &[
    session("set_config", "with is_local false changes the session"),
    session("pg_advisory_lock", "takes a session-level lock"),
    session("pg_advisory_lock_shared", "takes a session-level lock"),
    session("pg_try_advisory_lock", "takes a session-level lock"),
    session("pg_try_advisory_lock_shared", "takes a session-level lock"),
    session("pg_advisory_unlock", "releases a session-level lock"),
    session("pg_advisory_unlock_shared", "releases a session-level lock"),
    session("pg_advisory_unlock_all", "releases the session's locks"),
    session("lastval", "reads the session's last sequence value"),
    session("currval", "reads the session's sequence values"),
    lasting("setseed", "seeds the session's random numbers"),
    session("pg_listening_channels", "reads the session's subscriptions"),
    session(
        "pg_prepared_statement",
        "reads the session's prepared statements",
    ),
    session("pg_cursor", "reads the session's cursors"),
    session("set_limit", "changes the session's pg_trgm threshold"),
    lasting("dblink_connect", "opens a connection kept by the session"),
    lasting("dblink_connect_u", "opens a connection kept by the session"),
    session(
        "dblink_disconnect",
        "closes a connection kept by the session",
    ),
    lasting(
        "dblink_open",
        "opens a cursor on a connection kept by the session",
    ),
    session(
        "dblink_close",
        "closes a cursor on a connection kept by the session",
    ),
    session(
        "pg_create_physical_replication_slot",
        "may create a slot that lives as long as the session",
    ),
    session(
        "pg_create_logical_replication_slot",
        "may create a slot that lives as long as the session",
    ),
    session(
        "pg_replication_origin_session_setup",
        "changes the session's replication origin",
    ),
    session(
        "pg_replication_origin_session_reset",
        "changes the session's replication origin",
    ),
];

/// Built-in functions (PostgreSQL's own, in `pg_catalog`) that leave no session state, for
/// [`Class::session_clean`] and [`Class::known_calls_only`]; sorted. For
/// [`Class::session_clean`] a call counts only when it is qualified with `pg_catalog` or
/// has no arguments: an unqualified call with arguments may resolve to an application's
/// function of the same name (`lower(42)` finds a `public.lower(int)` before
/// `pg_catalog.lower(text)`). `nextval` and `setval` are not here: they set what
/// `currval`/`lastval` return. Any other call, every user function among them, makes a
/// text not clean.
#[rustfmt::skip]
pub(crate) const CLEAN_FUNCTIONS: &[&str] = &[
    "abs", "age", "array_agg", "array_append", "array_cat", "array_length", "array_lower",
    "array_position", "array_positions", "array_prepend", "array_remove", "array_replace",
    "array_to_json", "array_to_string", "array_upper", "ascii", "avg", "bit_and", "bit_or", "bool",
    "bool_and", "bool_or", "btrim", "cardinality", "cbrt", "ceil", "ceiling", "char_length",
    "character_length", "chr", "clock_timestamp", "concat", "concat_ws", "corr", "count", "cume_dist",
    "current_database", "current_schema", "current_setting", "date", "date_part", "date_trunc",
    "decode", "degrees", "dense_rank", "div", "encode", "every", "exp", "first_value", "float4",
    "float8", "floor", "format", "gcd", "gen_random_uuid", "generate_series", "generate_subscripts",
    "initcap", "int2", "int4", "int8", "isfinite", "json_agg", "json_array_elements",
    "json_array_elements_text", "json_array_length", "json_build_array", "json_build_object",
    "json_each", "json_each_text", "json_extract_path", "json_extract_path_text", "json_object",
    "json_object_agg", "json_object_keys", "json_populate_record", "json_populate_recordset",
    "json_strip_nulls", "json_to_record", "json_to_recordset", "json_typeof", "jsonb_agg",
    "jsonb_array_elements", "jsonb_array_elements_text", "jsonb_array_length", "jsonb_build_array",
    "jsonb_build_object", "jsonb_each", "jsonb_each_text", "jsonb_extract_path",
    "jsonb_extract_path_text", "jsonb_insert", "jsonb_object", "jsonb_object_agg", "jsonb_object_keys",
    "jsonb_path_exists", "jsonb_path_match", "jsonb_path_query", "jsonb_path_query_array",
    "jsonb_path_query_first", "jsonb_populate_record", "jsonb_populate_recordset", "jsonb_pretty",
    "jsonb_set", "jsonb_strip_nulls", "jsonb_to_record", "jsonb_to_recordset", "jsonb_typeof",
    "justify_days", "justify_hours", "justify_interval", "lag", "last_value", "lcm", "lead", "left",
    "length", "ln", "log", "lower", "lpad", "ltrim", "make_date", "make_interval", "make_time",
    "make_timestamp", "make_timestamptz", "max", "md5", "min", "mod", "now", "nth_value",
    "ntile", "num_nonnulls", "num_nulls", "octet_length", "overlay", "percent_rank", "percentile_cont",
    "percentile_disc", "pg_backend_pid", "pg_notify", "pg_sleep", "pg_typeof", "phraseto_tsquery", "pi",
    "plainto_tsquery", "position", "power", "quote_ident", "quote_literal", "quote_nullable", "radians",
    "random", "rank", "regexp_count", "regexp_instr", "regexp_like", "regexp_match", "regexp_matches",
    "regexp_replace", "regexp_split_to_array", "regexp_split_to_table", "regexp_substr", "repeat",
    "replace", "reverse", "right", "round", "row_number", "row_to_json", "rpad", "rtrim", "sign",
    "split_part", "sqrt", "starts_with", "statement_timestamp", "stddev", "stddev_pop", "stddev_samp",
    "string_agg", "string_to_array", "strpos", "substr", "substring", "sum", "text", "timeofday",
    "to_char", "to_date", "to_hex", "to_json", "to_jsonb", "to_number", "to_timestamp", "to_tsquery",
    "to_tsvector", "transaction_timestamp", "translate", "trunc", "ts_headline", "ts_rank",
    "ts_rank_cd", "unnest", "upper", "var_pop", "var_samp", "variance", "version",
    "websearch_to_tsquery", "width_bucket",
];

/// Operations that can be clean ([`Class::session_clean`], [`Class::known_calls_only`]),
/// besides the transaction control of [`REFUSED_STATEMENTS`]; a `WITH` counts as its main
/// statement, an `EXPLAIN` as the statement it explains. [`Class::session_clean`] further
/// takes none that names a relation: a view, a trigger, a rule, a column default, a check
/// or an index expression runs the application's functions where the text shows none.
pub(crate) const CLEAN_OPERATIONS: &[&str] = &[
    "SELECT", "VALUES", "TABLE", "INSERT", "UPDATE", "DELETE", "MERGE", "SHOW",
];

/// Type names (after `::`, or in `CAST(… AS …)`) that are PostgreSQL's own, for
/// [`Class::session_clean`]; sorted. A type keyword of the grammar (`INT`, `NUMERIC`,
/// `VARCHAR`, …) always is; any other name may be an application's domain, whose check
/// runs its functions.
#[rustfmt::skip]
pub(crate) const BUILTIN_TYPES: &[&str] = &[
    "bool", "bpchar", "bytea", "date", "float4", "float8", "int2", "int4", "int8", "interval",
    "json", "jsonb", "name", "numeric", "oid", "regclass", "regtype", "text", "time", "timestamp",
    "timestamptz", "timetz", "uuid", "varchar",
];

/// Operators of more than one character that only PostgreSQL's own types define, for
/// [`Class::session_clean`] (one-character operators and the comparison operators count
/// too); sorted. Any other one may be an application's.
#[rustfmt::skip]
pub(crate) const BUILTIN_OPERATORS: &[&str] = &[
    "!~", "!~*", "!~~", "!~~*", "#>", "#>>", "&&", "->", "->>", "<<", "<@", ">>", "?&", "?|",
    "@>", "@@", "||", "~*", "~~", "~~*",
];

/// Keywords that start a statement, upper case: what [`Class::operation`] reports.
#[rustfmt::skip]
pub(crate) const OPERATIONS: &[&str] = &[
    "ABORT", "ALTER", "ANALYZE", "ANALYSE", "BEGIN", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER",
    "COMMENT", "COMMIT", "COPY", "CREATE", "DEALLOCATE", "DECLARE", "DELETE", "DISCARD", "DO", "DROP",
    "END", "EXECUTE", "EXPLAIN", "FETCH", "GRANT", "IMPORT", "INSERT", "LISTEN", "LOAD", "LOCK",
    "MERGE", "MOVE", "NOTIFY", "PREPARE", "REASSIGN", "REFRESH", "REINDEX", "RELEASE", "RESET",
    "REVOKE", "ROLLBACK", "SAVEPOINT", "SECURITY", "SELECT", "SET", "SHOW", "START", "TABLE",
    "TRUNCATE", "UNLISTEN", "UPDATE", "VACUUM", "VALUES", "WITH",
];
