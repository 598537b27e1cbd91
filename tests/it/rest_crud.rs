//! REST writes and single-row routes: create, read, update and delete by primary key, values
//! of every kind as `to_jsonb` writes them, composite keys, views, and the errors of bad writes.

use serde_json::{json, Value};

use crate::support::rest::{self, encode, Fixture, Rest};

/// Parses JSON text, keeping every digit of its numbers.
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Reads the row of `orders` with `id` as PostgreSQL's `to_jsonb` writes it.
async fn order_row(db: &tokio_postgres::Client, id: i64) -> Value {
    let rows = rest::query_json_with(
        db,
        "SELECT to_jsonb(o) FROM orders o WHERE id = $1::text::bigint",
        &[&id.to_string()],
    )
    .await;
    assert_eq!(rows.len(), 1, "order {id} exists");
    rows.into_iter().next().unwrap()
}

fn no_primary_key(schema: &str, table: &str) -> Value {
    json!({
        "code": "no_primary_key",
        "message": format!(
            "{schema}.{table} has no primary key (views never have one), so its rows cannot be \
             read, updated or deleted by id; list them with filters instead, as in \
             GET /api/{table}?column=eq.value"
        ),
    })
}

fn not_found(table: &str, id: &str) -> Value {
    json!({
        "code": "not_found",
        "message": format!("no row of {table} with id {id:?} is visible to this request"),
    })
}

#[tokio::test]
async fn orders_crud_round_trip() {
    let fx = Fixture::start("", "{}").await;
    let columns = rest::column_names(&fx.db, "orders").await;

    let created = fx
        .user
        .post("/orders", &json!({"customer": "lin", "total": 12.5}))
        .await;
    created.expect(201);
    assert_eq!(created.content_type.as_deref(), Some("application/json"));
    let id = created.data()["id"].as_i64().expect("numeric id");
    assert_eq!(id, 3);
    let stored = order_row(&fx.db, id).await;
    assert_eq!(created.body, json!({"data": stored}));
    assert_eq!(rest::keys(created.data()), columns);
    assert_eq!(created.data()["total"], parse("12.50"));
    assert_eq!(created.data()["status"], "pending");

    let batch = fx
        .user
        .post(
            "/orders",
            &json!([
                {"customer": "a", "total": 1},
                {"customer": "b", "total": "2.5", "status": "paid"},
                {"notes": "gift", "customer": "c", "total": 3, "created_at": "2024-01-02T03:04:05Z"},
            ]),
        )
        .await;
    batch.expect(201);
    let stored = rest::query_json_with(
        &fx.db,
        "SELECT to_jsonb(o) FROM orders o WHERE id > 3 ORDER BY id",
        &[],
    )
    .await;
    assert_eq!(batch.body, json!({"data": stored}));
    let rows = batch.data().as_array().unwrap();
    let customers: Vec<&Value> = rows.iter().map(|row| &row["customer"]).collect();
    assert_eq!(customers, [&json!("a"), &json!("b"), &json!("c")]);
    assert_eq!(rows[0]["status"], "pending");
    assert_eq!(rows[0]["notes"], Value::Null);
    assert_eq!(rows[1]["total"], parse("2.50"));
    assert_eq!(rows[2]["created_at"], "2024-01-02T03:04:05+00:00");
    for row in rows {
        assert_eq!(rest::keys(row), columns);
    }

    let empty = fx.user.post("/orders", &json!([])).await;
    empty.expect(201);
    assert_eq!(empty.body, json!({"data": []}));

    let path = format!("/orders/{id}");
    let read = fx.anon.get(&path).await;
    read.expect(200);
    assert_eq!(read.body, json!({"data": order_row(&fx.db, id).await}));

    let patched = fx
        .user
        .patch(
            &path,
            &json!({"status": "shipped", "notes": null, "total": 99.5}),
        )
        .await;
    patched.expect(200);
    let stored = order_row(&fx.db, id).await;
    assert_eq!(patched.body, json!({"data": stored}));
    assert_eq!(stored["status"], "shipped");
    assert_eq!(stored["total"], parse("99.50"));
    assert_eq!(stored["customer"], "lin");

    let read = fx.anon.get(&path).await;
    read.expect(200);
    assert_eq!(read.body, json!({"data": stored}));

    let selected = fx.anon.get(&format!("{path}?select=status,id")).await;
    selected.expect(200);
    assert_eq!(
        selected.body,
        json!({"data": {"status": "shipped", "id": id}})
    );
    assert_eq!(rest::keys(selected.data()), ["status", "id"]);

    let deleted = fx.user.delete(&path).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(deleted.text, "");
    let count: i64 = fx
        .db
        .query_one("SELECT count(*) FROM orders WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);

    let gone = fx.anon.get(&path).await;
    gone.expect(404);
    assert_eq!(gone.body, not_found("public.orders", "3"));
    let again = fx.user.delete(&path).await;
    again.expect(404);
    assert_eq!(again.body, not_found("public.orders", "3"));
    let patch_gone = fx.user.patch(&path, &json!({"status": "x"})).await;
    patch_gone.expect(404);
    assert_eq!(patch_gone.body, not_found("public.orders", "3"));

    let remaining = fx.db.query_one("SELECT count(*) FROM orders", &[]).await;
    assert_eq!(remaining.unwrap().get::<_, i64>(0), 5);
    fx.stop().await;
}

const VALUES_SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS numeric(6, 1) CHECK (VALUE > 0);
CREATE TYPE point3 AS (x float8, y numeric, label text);
CREATE TABLE vals (
    id int PRIMARY KEY,
    amount numeric(10, 2),
    ratio float8,
    small real,
    doc json,
    docb jsonb,
    ints int[],
    texts text[],
    at timestamptz,
    stamp timestamp,
    day date,
    span interval,
    raw bytea,
    uid uuid,
    flag bool,
    feel mood,
    pos positive,
    pt point3,
    big bigint,
    label varchar(20)
);
INSERT INTO vals VALUES
    (1, 150.00, 1e30, 1.5, '{"a": 1,   "a" : 2, "b" : [1, 2.50, {"c": null}]}',
     '{"z": 1, "a": [1.10, null, "x"]}', '{1,NULL,3}', '{"a,b",NULL,"NULL","q\"t",""}',
     '2024-02-29 23:59:59.123456+05:30', '2024-02-29 23:59:59.5', '2024-02-29',
     '1 year 2 mons 3 days 04:05:06.5', '\xdeadbeef', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     true, 'happy', 12.3, ROW(1.5, 2.50, 'p'), 9007199254740993, 'ünïcödé "q"'),
    (2, 0.10, '-0', '-0', '[]', '[]', '{}', '{}', '1970-01-01 00:00:00+00', '0001-01-01 00:00',
     '0001-01-01', '-1 days', '\x', '00000000-0000-0000-0000-000000000000', false, 'sad', 0.1,
     ROW(NULL, NULL, NULL), -9223372036854775808, ''),
    (3, -99999999.99, 'NaN', 'NaN', '"text"', 'null', '{{1,2},{3,4}}', '{"\\"}',
     'infinity', '-infinity', 'infinity', '0', '\x00ff', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
     NULL, 'ok', 99999.9, ROW('-Infinity', 1e-20, ''), 0, NULL),
    (4, 1e7, 'Infinity', 3.4e38, '1.000', '1.000', NULL, '{NULL}', NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (5, NULL, 1.0000000000000002, 1e-30, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL);
GRANT SELECT, INSERT ON vals TO web_anon;
"#;

#[tokio::test]
async fn values_equal_to_jsonb() {
    let fx = Fixture::start(VALUES_SCHEMA, "{}").await;
    let columns = rest::column_names(&fx.db, "vals").await;
    let expected =
        rest::query_json_with(&fx.db, "SELECT to_jsonb(v) FROM vals v ORDER BY id", &[]).await;
    assert_eq!(expected.len(), 5);

    let list = fx.anon.get("/vals?sort=id").await;
    list.expect(200);
    let rows = list.data().as_array().expect("data is an array");
    assert_eq!(rows.len(), expected.len());
    for (row, oracle) in rows.iter().zip(&expected) {
        assert_eq!(row, oracle, "row {}", oracle["id"]);
        assert_eq!(
            rest::keys(row),
            columns,
            "key order of row {}",
            oracle["id"]
        );
    }
    assert_eq!(list.body["count"], 5);

    let first = &rows[0];
    assert_eq!(first["amount"], parse("150.00"));
    assert_eq!(first["ratio"], parse("1000000000000000000000000000000"));
    assert_eq!(
        first["doc"],
        parse(r#"{"a": 2, "b": [1, 2.50, {"c": null}]}"#)
    );
    assert_eq!(first["ints"], json!([1, null, 3]));
    assert_eq!(first["texts"], json!(["a,b", null, "NULL", "q\"t", ""]));
    assert_eq!(first["at"], "2024-02-29T18:29:59.123456+00:00");
    assert_eq!(first["raw"], "\\xdeadbeef");
    assert_eq!(first["pt"], parse(r#"{"x": 1.5, "y": 2.50, "label": "p"}"#));
    assert_eq!(first["big"], parse("9007199254740993"));
    assert_eq!(rows[1]["ratio"], parse("0"));
    assert_eq!(rows[2]["ratio"], "NaN");
    assert_eq!(rows[3]["ratio"], "Infinity");

    for (index, oracle) in expected.iter().enumerate() {
        let id = &oracle["id"];
        let one = fx.anon.get(&format!("/vals/{id}")).await;
        one.expect(200);
        assert_eq!(one.body, json!({"data": oracle}), "GET /vals/{id}");
        assert_eq!(rest::keys(one.data()), columns);
        let typed = rest::query_json_with(
            &fx.db,
            "SELECT to_jsonb(v) FROM vals v WHERE id = $1::text::int",
            &[&id.to_string()],
        )
        .await;
        assert_eq!(typed[0], expected[index]);
    }
    fx.stop().await;
}

#[tokio::test]
async fn written_values_read_back_equal() {
    let fx = Fixture::start(VALUES_SCHEMA, "{}").await;
    let originals =
        rest::query_json_with(&fx.db, "SELECT to_jsonb(v) FROM vals v ORDER BY id", &[]).await;
    let copies: Vec<Value> = originals
        .iter()
        .map(|row| {
            let mut copy = row.clone();
            copy["id"] = json!(row["id"].as_i64().unwrap() + 100);
            copy
        })
        .collect();

    let created = fx.anon.post("/vals", &Value::Array(copies.clone())).await;
    created.expect(201);
    let stored = rest::query_json_with(
        &fx.db,
        "SELECT to_jsonb(v) FROM vals v WHERE id > 100 ORDER BY id",
        &[],
    )
    .await;
    assert_eq!(created.body, json!({"data": stored}));
    assert_eq!(
        stored, copies,
        "values survive a write and a read unchanged"
    );
    fx.stop().await;
}

const KEYS_SCHEMA: &str = "
CREATE TABLE pairs (a text, b int, v text, PRIMARY KEY (b, a));
INSERT INTO pairs VALUES ('x', 1, 'one'), ('x, y', 2, 'comma and space'), ('50%/off', 3, 'slash');
CREATE TABLE nokey (n int, v text);
INSERT INTO nokey VALUES (1, 'one');
GRANT SELECT, INSERT, UPDATE, DELETE ON pairs, nokey TO authenticated;
";

#[tokio::test]
async fn composite_keys_address_rows() {
    let fx = Fixture::start(KEYS_SCHEMA, "{}").await;
    let pair = |b: i32, a: &str| format!("/pairs/{b},{}", encode(a));

    let one = fx.user.get(&pair(1, "x")).await;
    one.expect(200);
    assert_eq!(one.body, json!({"data": {"a": "x", "b": 1, "v": "one"}}));

    let path = pair(2, "x, y");
    assert_eq!(path, "/pairs/2,x%2C%20y");
    let comma = fx.user.get(&path).await;
    comma.expect(200);
    assert_eq!(
        comma.body,
        json!({"data": {"a": "x, y", "b": 2, "v": "comma and space"}})
    );

    let slash = fx.user.get(&pair(3, "50%/off")).await;
    slash.expect(200);
    assert_eq!(
        slash.body,
        json!({"data": {"a": "50%/off", "b": 3, "v": "slash"}})
    );

    let patched = fx.user.patch(&path, &json!({"v": "patched"})).await;
    patched.expect(200);
    assert_eq!(
        patched.body,
        json!({"data": {"a": "x, y", "b": 2, "v": "patched"}})
    );
    let stored = rest::query_json_with(
        &fx.db,
        "SELECT to_jsonb(p) FROM pairs p WHERE a = 'x, y' AND b = 2",
        &[],
    )
    .await;
    assert_eq!(stored, [json!({"a": "x, y", "b": 2, "v": "patched"})]);

    let deleted = fx.user.delete(&path).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let gone = fx.user.get(&path).await;
    gone.expect(404);
    assert_eq!(gone.body, not_found("public.pairs", "2,x%2C%20y"));
    let left =
        rest::query_json_with(&fx.db, "SELECT to_jsonb(p) FROM pairs p ORDER BY b", &[]).await;
    assert_eq!(
        left,
        [
            json!({"a": "x", "b": 1, "v": "one"}),
            json!({"a": "50%/off", "b": 3, "v": "slash"}),
        ]
    );

    let unencoded = fx.user.get("/pairs/2,x,%20y").await;
    unencoded.expect(400);
    assert_eq!(
        unencoded.body,
        json!({
            "code": "invalid_id",
            "message": "the primary key of public.pairs has 2 column(s) (b, a) but the id \
                        \"2,x,%20y\" gives 3; separate the values with commas and \
                        percent-encode commas inside a value as %2C",
        })
    );
    let short = fx.user.delete("/pairs/1").await;
    short.expect(400);
    assert_eq!(
        short.body,
        json!({
            "code": "invalid_id",
            "message": "the primary key of public.pairs has 2 column(s) (b, a) but the id \
                        \"1\" gives 1; separate the values with commas and percent-encode \
                        commas inside a value as %2C",
        })
    );
    let short_patch = fx.user.patch("/pairs/1", &json!({"v": "z"})).await;
    short_patch.expect(400);
    assert_eq!(short_patch.body["code"], "invalid_id");

    let no_key = no_primary_key("public", "nokey");
    let get = fx.user.get("/nokey/1").await;
    get.expect(405);
    assert_eq!(get.body, no_key);
    let patch = fx.user.patch("/nokey/1", &json!({"v": "z"})).await;
    patch.expect(405);
    assert_eq!(patch.body, no_key);
    let delete = fx.user.delete("/nokey/1").await;
    delete.expect(405);
    assert_eq!(delete.body, no_key);
    let list = fx.user.get("/nokey?n=1").await;
    list.expect(200);
    assert_eq!(
        list.body,
        json!({"data": [{"n": 1, "v": "one"}], "count": 1, "limit": 100, "offset": 0})
    );
    let unchanged = rest::query_json_with(&fx.db, "SELECT to_jsonb(t) FROM nokey t", &[]).await;
    assert_eq!(unchanged, [json!({"n": 1, "v": "one"})]);
    fx.stop().await;
}

#[tokio::test]
async fn views_list_without_ids() {
    let fx = Fixture::start(
        "CREATE VIEW paid_orders AS SELECT id, customer, total FROM orders WHERE status = 'paid';
         CREATE VIEW order_totals AS SELECT status, sum(total) AS total FROM orders GROUP BY status;
         GRANT SELECT ON paid_orders, order_totals TO web_anon;
         GRANT SELECT, INSERT ON paid_orders, order_totals TO authenticated;",
        "{}",
    )
    .await;
    let list = fx.anon.get("/paid_orders").await;
    list.expect(200);
    let expected = rest::query_json_with(
        &fx.db,
        "SELECT to_jsonb(p) FROM paid_orders p ORDER BY id",
        &[],
    )
    .await;
    assert_eq!(
        expected,
        [parse(r#"{"id": 1, "customer": "ada", "total": 150.00}"#)]
    );
    assert_eq!(
        list.body,
        json!({"data": expected, "count": 1, "limit": 100, "offset": 0})
    );
    assert_eq!(
        rest::keys(list.data().get(0).unwrap()),
        ["id", "customer", "total"]
    );

    let filtered = fx.anon.get("/paid_orders?total=lt.100").await;
    filtered.expect(200);
    assert_eq!(
        filtered.body,
        json!({"data": [], "count": 0, "limit": 100, "offset": 0})
    );

    let through_view = fx
        .user
        .post("/paid_orders", &json!({"customer": "viewer", "total": 5}))
        .await;
    through_view.expect(201);
    assert_eq!(
        through_view.body,
        json!({"data": parse(r#"{"id": 3, "customer": "viewer", "total": 5.00}"#)})
    );
    let stored = order_row(&fx.db, 3).await;
    assert_eq!(stored["status"], "pending");

    let by_id = fx.anon.get("/paid_orders/1").await;
    by_id.expect(405);
    assert_eq!(by_id.body, no_primary_key("public", "paid_orders"));

    let aggregate = fx
        .user
        .post("/order_totals", &json!({"status": "x", "total": 1}))
        .await;
    assert_eq!(
        aggregate.status, 405,
        "a write to a view that is not updatable is the client's error: {}",
        aggregate.text
    );
    assert_ne!(aggregate.body["code"], "internal");
    assert_eq!(
        aggregate.body["message"],
        "cannot insert into view \"order_totals\""
    );
    assert_eq!(
        aggregate.body["details"],
        json!({
            "sqlstate": "55000",
            "detail": "Views containing GROUP BY are not automatically updatable.",
            "hint": "To enable inserting into the view, provide an INSTEAD OF INSERT trigger or \
                     an unconditional ON INSERT DO INSTEAD rule.",
        })
    );
    let after = fx.anon.get("/paid_orders?select=id").await;
    after.expect(200);
    assert_eq!(after.data(), &json!([{"id": 1}]));
    fx.stop().await;
}

/// Asserts that a normal read still works, after an error.
async fn still_serves(client: &Rest) {
    let reply = client.get("/orders?select=id&sort=id").await;
    reply.expect(200);
    assert_eq!(
        reply.body,
        json!({"data": [{"id": 1}, {"id": 2}], "count": 2, "limit": 100, "offset": 0})
    );
}

const WRITE_ERRORS_SCHEMA: &str = "
CREATE TABLE items (
    id serial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders (id),
    qty int NOT NULL CHECK (qty > 0)
);
GRANT SELECT, INSERT ON items TO authenticated;
GRANT USAGE ON SEQUENCE items_id_seq TO authenticated;
CREATE TABLE secrets (id int PRIMARY KEY, v text);
";

#[tokio::test]
async fn bad_writes_get_exact_errors() {
    let fx = Fixture::start(WRITE_ERRORS_SCHEMA, "{max_body_bytes: 4096}").await;

    let word = fx
        .user
        .post(
            "/orders",
            &json!({"id": "seven", "customer": "x", "total": 1}),
        )
        .await;
    word.expect(400);
    assert_eq!(
        word.body,
        json!({
            "code": "invalid_value",
            "message": "column \"id\": invalid input syntax for type bigint: \"seven\"",
            "details": {"column": "id", "sqlstate": "22P02"},
        })
    );
    still_serves(&fx.anon).await;

    let in_batch = fx
        .user
        .post(
            "/items",
            &json!([{"order_id": 1, "qty": 1}, {"order_id": 1, "qty": "many"}]),
        )
        .await;
    in_batch.expect(400);
    assert_eq!(
        in_batch.body,
        json!({
            "code": "invalid_value",
            "message": "column \"qty\": invalid input syntax for type integer: \"many\"",
            "details": {"column": "qty", "sqlstate": "22P02"},
        })
    );

    let bad_json = fx
        .user
        .post_raw("/orders", b"{\"customer\":".to_vec())
        .await;
    bad_json.expect(400);
    assert_eq!(
        bad_json.body,
        json!({
            "code": "invalid_json",
            "message": "the request body is not valid JSON: EOF while parsing a value at line 1 \
                        column 12",
        })
    );
    still_serves(&fx.anon).await;

    let number = fx.user.post_raw("/orders", b"42".to_vec()).await;
    number.expect(400);
    assert_eq!(
        number.body,
        json!({
            "code": "invalid_body",
            "message": "the body is a number; send an object of column values or an array of them",
        })
    );
    let item = fx
        .user
        .post("/orders", &json!([{"customer": "x"}, 5]))
        .await;
    item.expect(400);
    assert_eq!(
        item.body,
        json!({
            "code": "invalid_body",
            "message": "item 1 of the body is a number, not an object of column values",
        })
    );
    let empty_patch = fx.user.patch("/orders/1", &json!({})).await;
    empty_patch.expect(400);
    assert_eq!(
        empty_patch.body,
        json!({
            "code": "invalid_body",
            "message": "the body sets no column; send an object like {\"status\": \"paid\"}",
        })
    );

    let unknown = fx
        .user
        .post("/orders", &json!({"customer": "x", "total": 1, "nope": 1}))
        .await;
    unknown.expect(400);
    assert_eq!(
        unknown.body,
        json!({
            "code": "unknown_column",
            "message": "table public.orders has no column \"nope\"",
            "details": {"column": "nope"},
        })
    );
    let unknown_patch = fx.user.patch("/orders/1", &json!({"nope": 1})).await;
    unknown_patch.expect(400);
    assert_eq!(unknown_patch.body, unknown.body);
    still_serves(&fx.anon).await;

    let expected_too_large = json!({
        "code": "payload_too_large",
        "message": "the request body is larger than 4096 bytes; send fewer rows per request or \
                    raise rest.max_body_bytes",
    });
    let just_over = format!("{{\"customer\": \"{}\", \"total\": 1}}", "x".repeat(4096));
    let over = fx.user.post_raw("/orders", just_over.into_bytes()).await;
    over.expect(413);
    assert_eq!(over.body, expected_too_large);
    let huge = format!(
        "[{}]",
        vec!["{\"customer\": \"x\", \"total\": 1}"; 400_000].join(",")
    );
    assert!(huge.len() > 10 * 1024 * 1024);
    let huge = fx.user.post_raw("/orders", huge.into_bytes()).await;
    huge.expect(413);
    assert_eq!(huge.body, expected_too_large);
    still_serves(&fx.anon).await;

    let duplicate = fx
        .user
        .post("/orders", &json!({"id": 1, "customer": "x", "total": 1}))
        .await;
    duplicate.expect(409);
    assert_eq!(
        duplicate.body,
        json!({
            "code": "unique_violation",
            "message": "duplicate key value violates unique constraint \"orders_pkey\"",
            "details": {
                "sqlstate": "23505",
                "detail": "Key (id)=(1) already exists.",
                "table": "orders",
                "constraint": "orders_pkey",
            },
        })
    );
    assert_eq!(duplicate.body["details"]["constraint"], "orders_pkey");
    still_serves(&fx.anon).await;

    let dangling = fx
        .user
        .post("/items", &json!({"order_id": 999, "qty": 1}))
        .await;
    dangling.expect(409);
    assert_eq!(
        dangling.body,
        json!({
            "code": "foreign_key_violation",
            "message": "insert or update on table \"items\" violates foreign key constraint \
                        \"items_order_id_fkey\"",
            "details": {
                "sqlstate": "23503",
                "detail": "Key (order_id)=(999) is not present in table \"orders\".",
                "table": "items",
                "constraint": "items_order_id_fkey",
            },
        })
    );

    let missing = fx
        .user
        .post(
            "/orders",
            &json!({"id": 50, "total": 1, "created_at": "2024-01-01T00:00:00Z"}),
        )
        .await;
    missing.expect(400);
    assert_eq!(
        missing.body,
        json!({
            "code": "not_null_violation",
            "message": "null value in column \"customer\" of relation \"orders\" violates \
                        not-null constraint",
            "details": {
                "sqlstate": "23502",
                "detail": "Failing row contains (50, null, 1.00, pending, null, 2024-01-01 \
                           00:00:00+00).",
                "table": "orders",
                "column": "customer",
            },
        })
    );

    let negative = fx
        .user
        .post("/items", &json!({"order_id": 1, "qty": 0}))
        .await;
    negative.expect(400);
    assert_eq!(negative.body["code"], "check_violation");
    assert_eq!(negative.body["details"]["constraint"], "items_qty_check");
    still_serves(&fx.anon).await;

    let anonymous_write = fx
        .anon
        .post("/orders", &json!({"customer": "x", "total": 1}))
        .await;
    anonymous_write.expect(401);
    assert_eq!(
        anonymous_write.body,
        json!({
            "code": "insufficient_privilege",
            "message": "permission denied for table orders (the request had no token, so it \
                        ran as the anonymous role; send Authorization: Bearer <JWT> for a role \
                        with this privilege)",
            "details": {"sqlstate": "42501"},
        })
    );
    assert_eq!(anonymous_write.www_authenticate.as_deref(), Some("Bearer"));
    let anonymous_delete = fx.anon.delete("/orders/1").await;
    anonymous_delete.expect(401);
    assert_eq!(anonymous_delete.body, anonymous_write.body);

    let forbidden = fx.user.get("/secrets").await;
    forbidden.expect(403);
    assert_eq!(
        forbidden.body,
        json!({
            "code": "insufficient_privilege",
            "message": "permission denied for table secrets",
            "details": {"sqlstate": "42501"},
        })
    );
    let forbidden_write = fx.user.patch("/items/1", &json!({"qty": 2})).await;
    forbidden_write.expect(403);
    assert_eq!(
        forbidden_write.body,
        json!({
            "code": "insufficient_privilege",
            "message": "permission denied for table items",
            "details": {"sqlstate": "42501"},
        })
    );
    still_serves(&fx.anon).await;
    still_serves(&fx.user).await;

    let orders = rest::query_json_with(
        &fx.db,
        "SELECT to_jsonb(array_agg(id ORDER BY id)) FROM orders",
        &[],
    )
    .await;
    assert_eq!(orders, [json!([1, 2])], "no failed write left a row");
    let items = fx.db.query_one("SELECT count(*) FROM items", &[]).await;
    assert_eq!(items.unwrap().get::<_, i64>(0), 0);
    fx.stop().await;
}

const DEFAULTS_SCHEMA: &str = "
CREATE TABLE counters (id serial PRIMARY KEY, n int NOT NULL DEFAULT 7, label text DEFAULT 'none');
GRANT SELECT, INSERT, UPDATE ON counters TO authenticated;
GRANT USAGE ON SEQUENCE counters_id_seq TO authenticated;
";

#[tokio::test]
async fn writes_fill_defaults_and_select() {
    let fx = Fixture::start(DEFAULTS_SCHEMA, "{}").await;

    let one = fx.user.post("/counters", &json!({})).await;
    one.expect(201);
    assert_eq!(
        one.body,
        json!({"data": {"id": 1, "n": 7, "label": "none"}})
    );
    let two = fx.user.post("/counters", &json!([{}, {"n": 2}, {}])).await;
    two.expect(201);
    assert_eq!(
        two.body,
        json!({"data": [
            {"id": 2, "n": 7, "label": "none"},
            {"id": 3, "n": 2, "label": "none"},
            {"id": 4, "n": 7, "label": "none"},
        ]})
    );
    let explicit_null = fx.user.post("/counters", &json!({"label": null})).await;
    explicit_null.expect(201);
    assert_eq!(
        explicit_null.body,
        json!({"data": {"id": 5, "n": 7, "label": null}})
    );
    let stored = rest::query_json_with(
        &fx.db,
        "SELECT to_jsonb(c) FROM counters c ORDER BY id",
        &[],
    )
    .await;
    assert_eq!(stored.len(), 5);
    assert_eq!(stored[4], json!({"id": 5, "n": 7, "label": null}));

    let null_status = fx
        .user
        .post(
            "/orders",
            &json!({"id": 60, "customer": "n", "total": 1, "status": null,
                    "created_at": "2024-01-01T00:00:00Z"}),
        )
        .await;
    null_status.expect(400);
    assert_eq!(
        null_status.body,
        json!({
            "code": "not_null_violation",
            "message": "null value in column \"status\" of relation \"orders\" violates \
                        not-null constraint",
            "details": {
                "sqlstate": "23502",
                "detail": "Failing row contains (60, n, 1.00, null, null, 2024-01-01 \
                           00:00:00+00).",
                "table": "orders",
                "column": "status",
            },
        })
    );

    let selected = fx
        .user
        .post(
            "/orders?select=status,id",
            &json!([{"customer": "s", "total": 1}, {"customer": "t", "total": 2}]),
        )
        .await;
    selected.expect(201);
    assert_eq!(
        selected.body,
        json!({"data": [{"status": "pending", "id": 3}, {"status": "pending", "id": 4}]})
    );
    assert_eq!(rest::keys(&selected.data()[0]), ["status", "id"]);

    let moved = fx
        .user
        .patch("/orders/4?select=id,customer", &json!({"id": 40}))
        .await;
    moved.expect(200);
    assert_eq!(moved.body, json!({"data": {"id": 40, "customer": "t"}}));
    let old = fx.user.get("/orders/4").await;
    old.expect(404);
    assert_eq!(old.body, not_found("public.orders", "4"));
    let new = fx.user.get("/orders/40").await;
    new.expect(200);
    assert_eq!(new.body, json!({"data": order_row(&fx.db, 40).await}));

    let bad_total = fx
        .user
        .patch("/orders/40", &json!({"status": "paid", "total": "abc"}))
        .await;
    bad_total.expect(400);
    assert_eq!(
        bad_total.body,
        json!({
            "code": "invalid_value",
            "message": "column \"total\": invalid input syntax for type numeric: \"abc\"",
            "details": {"column": "total", "sqlstate": "22P02"},
        })
    );
    let overflow = fx.user.patch("/orders/40", &json!({"total": 1e12})).await;
    overflow.expect(400);
    assert_eq!(overflow.body["code"], "invalid_value");
    assert_eq!(overflow.body["details"]["column"], "total");
    assert_eq!(overflow.body["details"]["sqlstate"], "22003");
    let unchanged = order_row(&fx.db, 40).await;
    assert_eq!(unchanged["status"], "pending");
    assert_eq!(unchanged["total"], parse("2.00"));
    fx.stop().await;
}

#[tokio::test]
async fn typed_filters_match_sql() {
    let fx = Fixture::start(VALUES_SCHEMA, "{}").await;
    let cases: &[(&str, &str, &str)] = &[
        ("ints", "eq.{1,NULL,3}", "ints = '{1,NULL,3}'"),
        (
            "ints",
            r#"in.("{1,NULL,3}","{}")"#,
            "ints IN ('{1,NULL,3}', '{}')",
        ),
        ("texts", "eq.{NULL}", "texts = '{NULL}'"),
        (
            "docb",
            r#"eq.{"a": [1.10, null, "x"], "z": 1}"#,
            r#"docb = '{"a": [1.10, null, "x"], "z": 1}'"#,
        ),
        ("flag", "eq.t", "flag"),
        ("flag", "is_null", "flag IS NULL"),
        ("ratio", "eq.NaN", "ratio = 'NaN'"),
        ("ratio", "gt.1e29", "ratio > 1e29"),
        ("ratio", "eq.-0", "ratio = 0"),
        ("small", "lt.1", "small < 1"),
        ("amount", "eq.150", "amount = 150"),
        ("amount", "gte.0.1", "amount >= 0.1"),
        (
            "at",
            "gte.2024-02-29T18:00:00Z",
            "at >= '2024-02-29T18:00:00Z'",
        ),
        ("stamp", "lt.2000-01-01", "stamp < '2000-01-01'"),
        ("day", "eq.infinity", "day = 'infinity'"),
        ("span", "gt.1 day", "span > '1 day'"),
        ("raw", r"eq.\xdeadbeef", r"raw = '\xdeadbeef'"),
        (
            "uid",
            "eq.A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "uid = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
        ),
        ("uid", "like.a0ee%", "uid::text LIKE 'a0ee%'"),
        ("feel", "gt.sad", "feel > 'sad'"),
        ("feel", "in.(ok,happy)", "feel IN ('ok', 'happy')"),
        ("pos", "gt.50", "pos > 50"),
        ("big", "eq.9007199254740993", "big = 9007199254740993"),
        ("label", "eq.ünïcödé \"q\"", "label = 'ünïcödé \"q\"'"),
        ("label", "ilike.ünï%\"Q%", "label ILIKE 'ünï%\"Q%'"),
        ("pt", "is_not_null", "pt IS NOT NULL"),
        ("pt", "eq.(1.5,2.50,p)", "pt = '(1.5,2.50,p)'::point3"),
        ("pt", "ne.(1.5,2.50,p)", "pt <> '(1.5,2.50,p)'::point3"),
    ];
    for (column, filter, condition) in cases {
        let expected = rest::query_json_with(
            &fx.db,
            &format!("SELECT jsonb_build_object('id', id) FROM vals WHERE {condition} ORDER BY id"),
            &[],
        )
        .await;
        assert!(!expected.is_empty(), "{condition} selects rows");
        let url = format!(
            "/vals?select=id&sort=id&{}",
            rest::query(&[(column, filter)])
        );
        let reply = fx.anon.get(&url).await;
        assert_eq!(reply.status, 200, "{column}={filter}: {}", reply.text);
        assert_eq!(reply.data(), &Value::Array(expected), "{column}={filter}");
    }
    fx.stop().await;
}
