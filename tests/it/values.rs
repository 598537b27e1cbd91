//! Differential tests of column text conversion: PostgreSQL's `to_jsonb` is the oracle.
//!
//! Each column value is fetched twice in one simple-protocol query: as its output-function text
//! (the text pgoutput sends, printed with walgate's session settings) and as `to_jsonb(col)`.
//! The text goes through `TypeRegistry::resolve` and `write_json`, and both JSON texts must parse
//! to equal values. `col::text` is not used for the text, because some casts to text differ from
//! the output function (`bool::text` is `true`, `inet::text` keeps `/32`, `bpchar::text` trims).

use std::sync::Arc;

use serde_json::Value;
use tokio_postgres::{Client, SimpleQueryMessage};
use walgate::decode::types::{PgType, TypeError, TypeKind, TypeRegistry};
use walgate::decode::value::write_json;

use crate::support;

/// A sample column: its name, SQL type and SQL expressions for the values of rows 1, 2, ...
/// Rows past the end of `values` hold NULL, and the last row is NULL in every column.
struct Column {
    name: &'static str,
    sql_type: &'static str,
    values: &'static [&'static str],
}

const fn column(
    name: &'static str,
    sql_type: &'static str,
    values: &'static [&'static str],
) -> Column {
    Column {
        name,
        sql_type,
        values,
    }
}

/// Types the sample columns use beyond the built-in ones.
const SCHEMA: &str = r#"
    CREATE TYPE mood AS ENUM ('happy', 'sad face', 'with "quote"');
    CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
    CREATE DOMAIN int_list AS int4[];
    CREATE DOMAIN nested_int_list AS int_list;
    CREATE DOMAIN email AS text;
    CREATE DOMAIN doc AS json;
    CREATE DOMAIN stamp AS timestamptz;
    CREATE TYPE inner_t AS (
        a int4, dropme text, b text[], c timestamptz, "Mixed ""Case"" key" text
    );
    ALTER TYPE inner_t DROP ATTRIBUTE dropme;
    CREATE TYPE outer_t AS (
        x inner_t, y inner_t[], z numeric, j json, m mood, d posint, f float8, l int_list,
        bl bool, e email
    );
    CREATE DOMAIN outer_domain AS outer_t;
"#;

/// Row expressions for composite columns.
const INNER_1: &str =
    r#"ROW(1, '{a,"b c",NULL,"NULL"}', '2020-01-01 00:00+00', 'x "y" \z')::inner_t"#;
const INNER_2: &str = r#"ROW(NULL, '{}', 'infinity', '')::inner_t"#;
const OUTER_1: &str = concat!(
    r#"ROW(ROW(1, '{a,"b c"}', '2020-01-01 00:00+00', 'k')::inner_t, "#,
    r#"ARRAY[ROW(2, '{}', NULL, ' ')::inner_t, NULL], 1.50, '{"a":1e2,"a":3}', 'sad face', "#,
    r#"5, '-0', '{1,NULL}', true, 'a@b')::outer_t"#
);
const OUTER_2: &str =
    r#"ROW(NULL, '{}', 'NaN', '[1.0e-3]', 'with "quote"', NULL, '1e30', '{}', false, '')::outer_t"#;
const OUTER_3: &str = r#"ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::outer_t"#;
const OUTER_ARRAY: &str = concat!(
    r#"ARRAY[ROW(ROW(1, '{"a\\b"}', NULL, '"')::inner_t, NULL, -0.0, '1e-3', 'happy', 1, "#,
    r#"'NaN', NULL, NULL, NULL)::outer_t, NULL]"#
);

fn columns() -> Vec<Column> {
    let mut columns = vec![
        column("c_int2", "int2", &["0", "-32768", "32767"]),
        column("c_int4", "int4", &["0", "-2147483648", "2147483647"]),
        column(
            "c_int8",
            "int8",
            &["9223372036854775807", "-9223372036854775808", "0"],
        ),
        column(
            "c_float4",
            "float4",
            &[
                "'NaN'",
                "'Infinity'",
                "'-Infinity'",
                "'-0'",
                "'1e-7'",
                "'3.4028235e38'",
                "'1.5'",
                "'1e30'",
                "'1.4e-45'",
                "'0.1'",
            ],
        ),
        column(
            "c_float8",
            "float8",
            &[
                "'NaN'",
                "'Infinity'",
                "'-Infinity'",
                "'-0'",
                "'1e30'",
                "'1.5e-10'",
                "'1.7976931348623157e308'",
                "'5e-324'",
                "'0.1'",
                "'123456789.123'",
                "'1e15'",
                "'1e16'",
                "'-2.5e-5'",
                "'1.23456789012345e+15'",
            ],
        ),
        column(
            "c_numeric",
            "numeric",
            &[
                "'150.00'",
                "'NaN'",
                "'Infinity'",
                "'-Infinity'",
                "'-0.000'",
                "'0'",
                "'1e-20'",
                "'123456789012345678901234567890.123456789'",
                "'-1.5'",
                "'1e100'",
            ],
        ),
        column("c_numeric_typmod", "numeric(10,2)", &["150", "'-0.5'", "0"]),
        column("c_money", "money", &["'12.34'", "'-1000000.5'"]),
        column("c_bpchar", "char(5)", &["'ab'", "'abcde'", "''"]),
        column(
            "c_varchar",
            "varchar(40)",
            &[r#"'a "quoted" \ word'"#, "''"],
        ),
        column(
            "c_text",
            "text",
            &[
                "'plain'",
                r#"'with "quotes" and \backslash\'"#,
                r"E'tab\there\nnewline\r'",
                "'unicode é 😀 日本'",
                "''",
                "'NULL'",
                r"E'\x01control\x1f'",
                "'{a,b}'",
                "'(1,2)'",
                "'   '",
            ],
        ),
        column("c_char1", "\"char\"", &["'a'", r"E'\\001'", "'\"'"]),
        column("c_name", "name", &["'a name'"]),
        column(
            "c_bytea",
            "bytea",
            &[
                r"'\x'",
                r"'\xdeadbeef'",
                "decode(repeat('ab', 102400), 'hex')",
            ],
        ),
        column(
            "c_date",
            "date",
            &[
                "'2026-12-04'",
                "'0044-03-15 BC'",
                "'infinity'",
                "'-infinity'",
                "'12000-01-01'",
                "'0001-01-01'",
                "'4713-01-01 BC'",
            ],
        ),
        column(
            "c_time",
            "time",
            &["'12:34:56.789'", "'24:00:00'", "'00:00:00'"],
        ),
        column(
            "c_timetz",
            "timetz",
            &[
                "'12:34:56.789+05'",
                "'12:34:56+05:30'",
                "'12:34:56-08:00:15'",
                "'00:00:00+00'",
            ],
        ),
        column(
            "c_timestamp",
            "timestamp",
            &[
                "'2026-12-04 15:17:50.9'",
                "'0044-03-15 12:00 BC'",
                "'infinity'",
                "'-infinity'",
                "'12000-01-01 01:02:03.000001'",
                "'294276-12-31 23:59:59.999999'",
                "'4713-01-01 00:00 BC'",
            ],
        ),
        column(
            "c_timestamptz",
            "timestamptz",
            &[
                "'2026-12-04 15:17:50.9+00'",
                "'2026-12-04 15:17:50.123456+05:30'",
                "'0044-03-15 12:00+00 BC'",
                "'infinity'",
                "'-infinity'",
                "'12000-01-01 01:02:03+00'",
                "'1900-01-01 00:00 Europe/Amsterdam'",
            ],
        ),
        column(
            "c_timestamp0",
            "timestamptz(0)",
            &["'2026-12-04 15:17:50.9+00'"],
        ),
        column(
            "c_interval",
            "interval",
            &[
                "'1 year 2 mons 3 days 04:05:06.7'",
                "'-1 day'",
                "'0'",
                "'-178000000 years'",
            ],
        ),
        column("c_bool", "bool", &["true", "false"]),
    ];
    columns.extend(other_scalar_columns());
    columns.extend(array_columns());
    columns.extend(user_type_columns());
    columns
}

fn other_scalar_columns() -> Vec<Column> {
    vec![
        column("c_point", "point", &["'(1,2)'", "'(1.5e30,-0)'"]),
        column("c_line", "line", &["'{1,2,3}'"]),
        column("c_lseg", "lseg", &["'[(1,2),(3,4)]'"]),
        column("c_box", "box", &["'(1,1),(0,0)'"]),
        column("c_path", "path", &["'[(0,0),(1,1)]'", "'((0,0),(1,1))'"]),
        column("c_polygon", "polygon", &["'((0,0),(1,1),(1,0))'"]),
        column("c_circle", "circle", &["'<(1,2),3>'"]),
        column("c_inet", "inet", &["'10.0.0.1'", "'10.0.0.0/8'", "'::1'"]),
        column("c_cidr", "cidr", &["'10.0.0.0/8'"]),
        column("c_macaddr", "macaddr", &["'08:00:2b:01:02:03'"]),
        column("c_macaddr8", "macaddr8", &["'08:00:2b:01:02:03:04:05'"]),
        column("c_bit", "bit(4)", &["B'1010'"]),
        column("c_varbit", "varbit", &["B'101'", "B''"]),
        column("c_tsvector", "tsvector", &["'a fat cat''s \"mat\"'", "''"]),
        column("c_tsquery", "tsquery", &["'fat & (cat | rat)'"]),
        column(
            "c_uuid",
            "uuid",
            &["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"],
        ),
        column("c_xml", "xml", &[r#"'<a href="x">t &amp; u</a>'"#]),
        column(
            "c_json",
            "json",
            &[
                r#"'{"a":1e2,"a":2,"b":"\u00e9\n\ud83d\ude00","c":[1.50e1,-0,-0.0e5, 1E-2]}'"#,
                r#"'[1, "two", null, true, {"nested": {"k": "v", "k": "w"}}]'"#,
                r#"'"just a string"'"#,
                "'12.50'",
                "' { } '",
                r#"'{"big": 1e300, "small": 1.5e-300, "neg": -1E+2}'"#,
                r#"'{"esc": "\\\"\/\b\f\n\r\t\u001f\u0041"}'"#,
                r#"'{"\u0061": 1, "a": {"x": 1, "x": [1, {"y": 2, "y": 3}]}}'"#,
            ],
        ),
        column(
            "c_jsonb",
            "jsonb",
            &[
                r#"'{"a":1e2,"b":[1,2],"a":-0.0}'"#,
                r#"'"str\nx"'"#,
                "'1.50'",
                "'[]'",
            ],
        ),
        column("c_jsonpath", "jsonpath", &["'$.a[*] ? (@ > 1)'"]),
        column("c_pg_lsn", "pg_lsn", &["'16/B374D848'"]),
        column("c_snapshot", "pg_snapshot", &["'10:20:10,14,15'"]),
        column(
            "c_int4range",
            "int4range",
            &["'[1,10)'", "'empty'", "'(,5]'"],
        ),
        column("c_int8range", "int8range", &["'[1,10)'"]),
        column("c_numrange", "numrange", &["'[1.5,2.5]'"]),
        column("c_tsrange", "tsrange", &["'[2020-01-01,2021-01-01)'"]),
        column(
            "c_tstzrange",
            "tstzrange",
            &["'[2020-01-01 00:00+00,infinity)'"],
        ),
        column("c_daterange", "daterange", &["'[2020-01-01,2020-02-01)'"]),
        column(
            "c_int4multirange",
            "int4multirange",
            &["'{[1,3), [5,7)}'", "'{}'"],
        ),
        column(
            "c_datemultirange",
            "datemultirange",
            &["'{[2020-01-01,2020-02-01)}'"],
        ),
        column("c_oid", "oid", &["12345", "4294967295"]),
        column("c_regclass", "regclass", &["'pg_class'"]),
        column("c_regtype", "regtype", &["'integer'"]),
        column("c_regproc", "regproc", &["'now'"]),
        column("c_regnamespace", "regnamespace", &["'public'"]),
        column("c_regconfig", "regconfig", &["'english'"]),
        column("c_xid", "xid", &["'12345'"]),
        column("c_xid8", "xid8", &["'12345'"]),
        column("c_cid", "cid", &["'5'"]),
        column("c_tid", "tid", &["'(0,1)'"]),
        column("c_int2vector", "int2vector", &["'1 2 3'", "''"]),
        column("c_oidvector", "oidvector", &["'23 25'"]),
    ]
}

fn array_columns() -> Vec<Column> {
    vec![
        column(
            "c_int4_arr",
            "int4[]",
            &[
                "'{}'",
                "'{1,2,3}'",
                "'{{1,2},{3,NULL}}'",
                "'[2:3]={1,2}'",
                "'[0:1][1:2]={{1,2},{3,4}}'",
                "'{{{1}},{{2}}}'",
            ],
        ),
        column(
            "c_int8_arr",
            "int8[]",
            &["'{9223372036854775807,-9223372036854775808}'"],
        ),
        column(
            "c_float4_arr",
            "float4[]",
            &["'{NaN,-0,1e-7,3.4028235e38}'"],
        ),
        column(
            "c_float8_arr",
            "float8[]",
            &["'{NaN,Infinity,-Infinity,-0,1e30,1.5e-10,NULL}'"],
        ),
        column(
            "c_numeric_arr",
            "numeric[]",
            &["'{150.00,NaN,-0.0,1e-5,Infinity}'"],
        ),
        column(
            "c_text_arr",
            "text[]",
            &[
                r#"E'{"NULL",NULL,"","a\\\\b","\\"q\\""," x ","{,}",é😀,"tab\there"}'"#,
                "'{{a,b},{c,d}}'",
                "'{}'",
                "'[5:5]={only}'",
            ],
        ),
        column("c_varchar_arr", "varchar(10)[]", &["'{a,\"b c\"}'"]),
        column("c_bpchar_arr", "char(3)[]", &["'{a,\"b c\"}'"]),
        column("c_bool_arr", "bool[]", &["'{t,f,NULL}'"]),
        column(
            "c_json_arr",
            "json[]",
            &[r#"ARRAY['{"a":1e2,"a":1}'::json, '"s"', NULL, '[1.0, -0]']"#],
        ),
        column(
            "c_jsonb_arr",
            "jsonb[]",
            &[r#"ARRAY['{"a":1e2}'::jsonb, 'null', NULL]"#],
        ),
        column(
            "c_timestamptz_arr",
            "timestamptz[]",
            &["'{\"2020-01-01 00:00:00+00\",infinity,\"0044-03-15 12:00+00 BC\"}'"],
        ),
        column(
            "c_timestamp_arr",
            "timestamp[]",
            &["'{\"2020-01-01 10:00:00.5\",-infinity}'"],
        ),
        column(
            "c_date_arr",
            "date[]",
            &["'{2020-01-01,\"0044-03-15 BC\",infinity}'"],
        ),
        column("c_time_arr", "time[]", &["'{12:00,23:59:59.999999}'"]),
        column("c_timetz_arr", "timetz[]", &["'{12:00+05,23:59:59-03:30}'"]),
        column("c_box_arr", "box[]", &["'{(1,1),(0,0);(2,2),(1,1)}'"]),
        column(
            "c_bytea_arr",
            "bytea[]",
            &[r"ARRAY['\x'::bytea, '\xdeadbeef', NULL]"],
        ),
        column(
            "c_uuid_arr",
            "uuid[]",
            &["'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'"],
        ),
        column("c_interval_arr", "interval[]", &["'{\"1 day\",-00:00:01}'"]),
        column("c_point_arr", "point[]", &["'{\"(1,2)\",\"(3,4)\"}'"]),
        column("c_int4range_arr", "int4range[]", &["'{\"[1,2)\",empty}'"]),
        column("c_money_arr", "money[]", &["'{1.50,-2}'"]),
        column("c_inet_arr", "inet[]", &["'{10.0.0.1,::1/128}'"]),
        column("c_bit_arr", "varbit[]", &["'{101,\"\"}'"]),
        column(
            "c_tsvector_arr",
            "tsvector[]",
            &["ARRAY['a b'::tsvector, '''x y'':1']"],
        ),
        column(
            "c_xml_arr",
            "xml[]",
            &[r#"ARRAY['<a x="1">&lt;</a>'::xml]"#],
        ),
        column("c_oid_arr", "oid[]", &["'{1,4294967295}'"]),
        column("c_int2vector_arr", "int2vector[]", &["'{\"1 2\",\"\",3}'"]),
    ]
}

fn user_type_columns() -> Vec<Column> {
    vec![
        column(
            "c_mood",
            "mood",
            &["'happy'", "'sad face'", "'with \"quote\"'"],
        ),
        column(
            "c_mood_arr",
            "mood[]",
            &["'{happy,\"sad face\",NULL,\"with \\\"quote\\\"\"}'"],
        ),
        column("c_posint", "posint", &["5"]),
        column("c_posint_arr", "posint[]", &["'{1,2,NULL}'"]),
        column("c_int_list", "int_list", &["'{1,2,NULL}'", "'{}'"]),
        column("c_nested_int_list", "nested_int_list", &["'{{1},{2}}'"]),
        column(
            "c_int_list_arr",
            "int_list[]",
            &["'{\"{1,2}\",\"{3}\",NULL}'"],
        ),
        column("c_email", "email", &["'a\"b@c'"]),
        column("c_doc", "doc", &[r#"'{"a": 1e1, "a": "x"}'"#]),
        column("c_doc_arr", "doc[]", &[r#"ARRAY['{"b": 2.50e0}'::doc]"#]),
        column("c_stamp", "stamp", &["'2020-01-01 00:00+00'"]),
        column("c_stamp_arr", "stamp[]", &["'{\"2020-01-01 00:00+00\"}'"]),
        column("c_inner", "inner_t", &[INNER_1, INNER_2]),
        column("c_outer", "outer_t", &[OUTER_1, OUTER_2, OUTER_3]),
        column(
            "c_outer_arr",
            "outer_t[]",
            &["ARRAY[]::outer_t[]", OUTER_ARRAY],
        ),
        column("c_outer_domain", "outer_domain", &[OUTER_1]),
    ]
}

/// Creates the schema and the `samples` table, and inserts one row per value index plus a row
/// of NULLs. Returns the number of rows.
async fn create_samples(client: &Client, columns: &[Column]) -> usize {
    client.batch_execute(SCHEMA).await.expect("create types");
    let definitions: Vec<String> = columns
        .iter()
        .map(|column| format!("{} {}", column.name, column.sql_type))
        .collect();
    let create = format!(
        "CREATE TABLE samples (id int PRIMARY KEY, dropped_column int, {}); \
         ALTER TABLE samples DROP COLUMN dropped_column;",
        definitions.join(", ")
    );
    client.batch_execute(&create).await.expect("create table");

    let rows = columns.iter().map(|c| c.values.len()).max().unwrap_or(0) + 1;
    let names: Vec<&str> = columns.iter().map(|column| column.name).collect();
    for row in 0..rows {
        let values: Vec<&str> = columns
            .iter()
            .map(|column| column.values.get(row).copied().unwrap_or("NULL"))
            .collect();
        let insert = format!(
            "INSERT INTO samples (id, {}) VALUES ({}, {})",
            names.join(", "),
            row + 1,
            values.join(", ")
        );
        if let Err(err) = client.batch_execute(&insert).await {
            panic!("insert row {}: {err:?}\n{insert}", row + 1);
        }
    }
    rows
}

/// Column name and type OID of each column of `samples`, in order.
async fn column_types(client: &Client) -> Vec<(String, u32)> {
    let rows = client
        .query(
            "SELECT attname::text, atttypid FROM pg_attribute \
             WHERE attrelid = 'samples'::regclass AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum",
            &[],
        )
        .await
        .expect("read column types");
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

/// Runs a simple-protocol query and returns its rows as text (None for NULL).
async fn text_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client.simple_query(sql).await.expect("simple query");
    messages
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Converts `text` with walgate and compares the result with `to_jsonb`'s text. Returns a
/// description of the difference, if any.
fn compare(label: &str, text: Option<&str>, oracle: Option<&str>, ty: &PgType) -> Option<String> {
    let (text, oracle) = match (text, oracle) {
        (None, None) => return None,
        (Some(text), Some(oracle)) => (text, oracle),
        _ => return Some(format!("{label}: text {text:?} but to_jsonb {oracle:?}")),
    };
    let mut converted = String::new();
    if let Err(err) = write_json(&mut converted, text, ty) {
        return Some(format!("{label}: write_json failed: {err}"));
    }
    let ours: Value = match serde_json::from_str(&converted) {
        Ok(value) => value,
        Err(err) => return Some(format!("{label}: output {converted:?} is not JSON: {err}")),
    };
    let expected: Value = serde_json::from_str(oracle).expect("to_jsonb output parses");
    (ours != expected).then(|| {
        format!(
            "{label}: text {:?}\n  walgate:  {}\n  to_jsonb: {}",
            shorten(text),
            shorten(&converted),
            shorten(oracle)
        )
    })
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[tokio::test]
async fn values_match_to_jsonb() {
    let cluster = support::start_cluster().await;
    let client = support::connect(&cluster).await;
    let columns = columns();
    let row_count = create_samples(&client, &columns).await;

    let types = column_types(&client).await;
    let mut registry = TypeRegistry::new(Arc::new(support::connect(&cluster).await));
    let select_list: Vec<String> = types
        .iter()
        .map(|(name, _)| format!("{name}, to_jsonb({name})::text"))
        .collect();
    let rows = text_rows(
        &client,
        &format!("SELECT {} FROM samples ORDER BY id", select_list.join(", ")),
    )
    .await;
    assert_eq!(rows.len(), row_count);

    let mut differences = Vec::new();
    for (index, (name, oid)) in types.iter().enumerate() {
        let ty = registry.resolve(*oid).await.expect("resolve column type");
        for (row_index, row) in rows.iter().enumerate() {
            let label = format!("column {name} ({}), row {}", ty.name, row_index + 1);
            let text = row[2 * index].as_deref();
            let oracle = row[2 * index + 1].as_deref();
            differences.extend(compare(&label, text, oracle, &ty));
        }
    }
    assert!(
        differences.is_empty(),
        "{} values differ from to_jsonb:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

#[tokio::test]
async fn whole_rows_match_to_jsonb() {
    let cluster = support::start_cluster().await;
    let client = support::connect(&cluster).await;
    let columns = columns();
    let row_count = create_samples(&client, &columns).await;

    let row = client
        .query_one(
            "SELECT reltype FROM pg_class WHERE oid = 'samples'::regclass",
            &[],
        )
        .await
        .expect("read row type");
    let row_type: u32 = row.get(0);
    let mut registry = TypeRegistry::new(Arc::new(support::connect(&cluster).await));
    let ty = registry.resolve(row_type).await.expect("resolve row type");
    let TypeKind::Composite { fields } = &ty.kind else {
        panic!("row type resolved to {ty:?}");
    };
    assert_eq!(
        fields.len(),
        columns.len() + 1,
        "id plus every sample column"
    );

    let rows = text_rows(
        &client,
        "SELECT s, to_jsonb(s)::text FROM samples s ORDER BY id",
    )
    .await;
    assert_eq!(rows.len(), row_count);
    for (index, row) in rows.iter().enumerate() {
        let label = format!("row {}", index + 1);
        let difference = compare(&label, row[0].as_deref(), row[1].as_deref(), &ty);
        assert!(difference.is_none(), "{}", difference.unwrap_or_default());
    }
}

#[tokio::test]
async fn timestamptz_offsets_match_to_jsonb() {
    let cluster = support::start_cluster().await;
    let client = support::connect(&cluster).await;
    let mut registry = TypeRegistry::new(Arc::new(support::connect(&cluster).await));
    let ty = registry.resolve(1184).await.expect("resolve timestamptz");
    // Zones whose offsets are whole hours, have minutes, have seconds (local mean time before
    // standard time) or are negative.
    let cases = [
        ("America/New_York", "2026-01-01 00:00+00"),
        ("Asia/Kolkata", "2026-12-04 15:17:50.9+00"),
        ("Europe/Amsterdam", "1900-01-01 00:00+00"),
        ("America/St_Johns", "2026-01-01 00:00+00"),
        ("America/Los_Angeles", "0044-03-15 12:00+00 BC"),
    ];
    for (zone, value) in cases {
        client
            .batch_execute(&format!("SET TimeZone = '{zone}'"))
            .await
            .expect("set time zone");
        let sql = format!("SELECT '{value}'::timestamptz, to_jsonb('{value}'::timestamptz)::text");
        let rows = text_rows(&client, &sql).await;
        let label = format!("{value} in {zone}");
        let difference = compare(&label, rows[0][0].as_deref(), rows[0][1].as_deref(), &ty);
        assert!(difference.is_none(), "{}", difference.unwrap_or_default());
    }
}

#[tokio::test]
async fn registry_caches_and_invalidates() {
    let cluster = support::start_cluster().await;
    let client = support::connect(&cluster).await;
    client
        .batch_execute(
            "CREATE TYPE part AS (a int4); \
             CREATE TYPE whole AS (p part, n text);",
        )
        .await
        .expect("create types");
    let oid_of = |name: &'static str| {
        let client = &client;
        async move {
            let row = client
                .query_one("SELECT to_regtype($1)::oid", &[&name])
                .await
                .expect("look up type oid");
            row.get::<_, u32>(0)
        }
    };
    let part = oid_of("part").await;
    let whole = oid_of("whole").await;
    let mut registry = TypeRegistry::new(Arc::new(support::connect(&cluster).await));

    let first = registry.resolve(whole).await.expect("resolve whole");
    let again = registry.resolve(whole).await.expect("resolve whole again");
    assert!(
        Arc::ptr_eq(&first, &again),
        "second resolve comes from the cache"
    );

    client
        .batch_execute("ALTER TYPE part ADD ATTRIBUTE b text")
        .await
        .expect("alter type");
    let stale = registry.resolve(whole).await.expect("resolve cached whole");
    assert_eq!(
        part_field_names(&stale),
        ["a"],
        "cache is used until invalidated"
    );

    registry.invalidate(part);
    let fresh = registry
        .resolve(whole)
        .await
        .expect("resolve whole after invalidate");
    assert_eq!(part_field_names(&fresh), ["a", "b"]);

    registry.clear();
    let cleared = registry
        .resolve(whole)
        .await
        .expect("resolve whole after clear");
    assert!(!Arc::ptr_eq(&fresh, &cleared), "clear drops cached types");
    assert_eq!(*cleared, *fresh);
}

/// Attribute names of the `p` field of a resolved `whole` type.
fn part_field_names(whole: &PgType) -> Vec<String> {
    let TypeKind::Composite { fields } = &whole.kind else {
        panic!("whole resolved to {whole:?}");
    };
    let TypeKind::Composite {
        fields: part_fields,
    } = &fields[0].1.kind
    else {
        panic!("whole.p resolved to {:?}", fields[0].1);
    };
    part_fields.iter().map(|(name, _)| name.clone()).collect()
}

#[tokio::test]
async fn unknown_oid_is_an_error() {
    let cluster = support::start_cluster().await;
    let mut registry = TypeRegistry::new(Arc::new(support::connect(&cluster).await));
    let err = registry.resolve(999_999).await.unwrap_err();
    assert!(
        matches!(err, TypeError::NotFound { oid: 999_999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("999999"), "{err}");
}

#[tokio::test]
async fn json_rejected_where_to_jsonb_fails() {
    let cluster = support::start_cluster().await;
    let client = support::connect(&cluster).await;
    let mut registry = TypeRegistry::new(Arc::new(support::connect(&cluster).await));
    let json_type = registry.resolve(114).await.expect("resolve json");
    // Valid json that jsonb cannot hold: a NUL character, unpaired surrogates, numbers beyond
    // numeric's range.
    let texts = [
        r#""\u0000""#,
        r#""\ud83d""#,
        r#"["\ude00x"]"#,
        r#"{"a": ["x\u0000y"]}"#,
        "1e131072",
        "[1e-16384]",
    ];
    for text in texts {
        let as_json = client
            .query_one("SELECT $1::text::json::text", &[&text])
            .await;
        assert!(as_json.is_ok(), "json accepts {text}: {as_json:?}");
        let as_jsonb = client
            .query_one("SELECT to_jsonb($1::text::json)::text", &[&text])
            .await;
        assert!(as_jsonb.is_err(), "to_jsonb rejects {text}");
        let mut out = String::new();
        let converted = write_json(&mut out, text, &json_type);
        assert!(converted.is_err(), "write_json rejects {text}, gave {out}");
        assert!(out.is_empty(), "nothing written on error for {text}");
    }
}

/// The same sample rows, streamed through the replication slot: every event's row images must
/// equal `to_jsonb` of the stored rows, for inserts and for old and new images of updates.
#[tokio::test]
async fn streamed_rows_match_to_jsonb() {
    let cluster = support::start_cluster().await;
    let client = support::connect(&cluster).await;
    let recorder = Arc::new(support::RecordingConsumer::default());
    let gateway = walgate::gateway::Gateway::start_with(
        support::gateway_config(&cluster),
        vec![recorder.clone()],
    )
    .await
    .expect("gateway starts");
    let columns = columns();
    let row_count = create_samples(&client, &columns).await;
    let before: Vec<Value> =
        support::query_json(&client, "SELECT to_jsonb(s) FROM samples s ORDER BY id").await;
    client
        .batch_execute(
            "ALTER TABLE samples REPLICA IDENTITY FULL;
             UPDATE samples SET id = id + 1000;",
        )
        .await
        .expect("update every row");
    let after: Vec<Value> =
        support::query_json(&client, "SELECT to_jsonb(s) FROM samples s ORDER BY id").await;

    support::wait_until(
        std::time::Duration::from_secs(60),
        "every change is streamed",
        || {
            let count = recorder.events.lock().unwrap().len();
            async move { count >= 2 * row_count }
        },
    )
    .await;
    let events = recorder.events.lock().unwrap().clone();
    let (inserts, updates) = events.split_at(row_count);
    for (index, (event, oracle)) in inserts.iter().zip(&before).enumerate() {
        assert_eq!(event.event.operation.as_str(), "INSERT");
        assert_eq!(
            &event.event.new_value(),
            oracle,
            "inserted row {}",
            index + 1
        );
    }
    for (index, event) in updates.iter().enumerate() {
        assert_eq!(event.event.operation.as_str(), "UPDATE");
        assert_eq!(
            &event.event.old_value(),
            &before[index],
            "old image of row {}",
            index + 1
        );
        assert_eq!(
            &event.event.new_value(),
            &after[index],
            "new image of row {}",
            index + 1
        );
        assert!(event.event.unchanged_toast.is_empty(), "row {}", index + 1);
    }
    gateway.stop().await;
}
