//! REST list requests compared with the same query in SQL: filter operators in both forms,
//! select, sort, limit and offset. Also the errors of bad reads, injection attempts through names
//! and values, names that need quoting, and columns added, dropped or retyped while the gateway
//! runs.

use serde_json::{json, Value};

use crate::support::rest::{self, encode, query, Fixture, Rest};

const ITEMS_SCHEMA: &str = r#"
CREATE TABLE items (
    id int PRIMARY KEY,
    name text NOT NULL,
    qty int,
    price numeric(8, 2),
    tag text,
    day date
);
INSERT INTO items VALUES
    (1, 'Apple', 5, 1.50, 'fruit', '2024-01-01'),
    (2, 'apricot', 3, 2.25, 'fruit', '2024-01-02'),
    (3, 'Banana', 12, 0.99, NULL, '2024-01-03'),
    (4, 'a,b', 7, 10.00, 'odd', NULL),
    (5, 'say "hi"', 1, 100.00, 'odd', '2024-02-01'),
    (6, '100%', 0, NULL, '', '2024-02-02'),
    (7, 'under_score', NULL, 5.00, 'fruit', '2024-03-01'),
    (8, 'gt.5', 5, 5.00, NULL, '2024-03-02'),
    (9, 'v1.2', 9, 7.77, 'veg', '2024-03-03'),
    (10, 'back\slash', 2, 3.00, 'veg', NULL),
    (11, 'is_null', 4, 4.00, 'veg', '2024-04-01'),
    (12, 'ÄPFEL', 8, 8.00, 'fruit', '2024-04-02');
GRANT SELECT ON items TO web_anon;
"#;

/// Query parameters as (key, value) pairs, before percent-encoding.
type Params<'a> = &'a [(&'a str, &'a str)];

/// Rows of `items` matching `condition`, in `order`, as `to_jsonb` writes them.
async fn items_where(db: &tokio_postgres::Client, condition: &str, order: &str) -> Vec<Value> {
    let sql = format!("SELECT to_jsonb(t) FROM items t WHERE {condition} ORDER BY {order}");
    rest::query_json_with(db, &sql, &[]).await
}

/// Lists `/items?{query}` and asserts a 200 page whose rows are `expected`.
async fn assert_page(client: &Rest, query: &str, expected: &[Value], limit: u64, offset: u64) {
    let reply = client.get(&format!("/items?{query}")).await;
    assert_eq!(reply.status, 200, "GET /items?{query}: {}", reply.text);
    assert_eq!(
        reply.body,
        json!({"data": expected, "count": expected.len(), "limit": limit, "offset": offset}),
        "GET /items?{query}"
    );
}

#[tokio::test]
async fn filters_in_both_forms_match_sql() {
    let fx = Fixture::start(ITEMS_SCHEMA, "{}").await;
    let cases: &[(&str, &[Params])] = &[
        (
            "qty = 5",
            &[&[("qty", "eq.5")], &[("qty.eq", "5")], &[("qty", "5")]],
        ),
        ("qty <> 5", &[&[("qty", "ne.5")], &[("qty.ne", "5")]]),
        ("qty > 5", &[&[("qty", "gt.5")], &[("qty.gt", "5")]]),
        ("qty >= 5", &[&[("qty", "gte.5")], &[("qty.gte", "5")]]),
        ("qty < 5", &[&[("qty", "lt.5")], &[("qty.lt", "5")]]),
        ("qty <= 5", &[&[("qty", "lte.5")], &[("qty.lte", "5")]]),
        (
            "price > 4",
            &[&[("price", "gt.4")], &[("price.gt", "4.000")]],
        ),
        ("name > 'b'", &[&[("name", "gt.b")], &[("name.gt", "b")]]),
        (
            "day >= '2024-02-01'",
            &[&[("day", "gte.2024-02-01")], &[("day.gte", "2024-02-01")]],
        ),
        (
            "name LIKE 'A%'",
            &[&[("name", "like.A%")], &[("name.like", "A%")]],
        ),
        (
            r"name LIKE '%\_%'",
            &[&[("name", r"like.%\_%")], &[("name.like", r"%\_%")]],
        ),
        (
            "name LIKE '%1%'",
            &[&[("name", "like.%1%")], &[("name.like", "%1%")]],
        ),
        (
            "name ILIKE 'a%'",
            &[&[("name", "ilike.a%")], &[("name.ilike", "a%")]],
        ),
        (
            "name ILIKE 'äp%'",
            &[&[("name", "ilike.äp%")], &[("name.ilike", "äp%")]],
        ),
        (
            "qty::text LIKE '1%'",
            &[&[("qty", "like.1%")], &[("qty.like", "1%")]],
        ),
        (
            "day::text LIKE '2024-03%'",
            &[&[("day", "like.2024-03%")], &[("day.like", "2024-03%")]],
        ),
        (
            "qty IN (1, 3, 5)",
            &[
                &[("qty", "in.(1,3,5)")],
                &[("qty.in", "1,3,5")],
                &[("qty.in", "(1,3,5)")],
                &[("qty", "in.1,3,5")],
            ],
        ),
        (
            r#"name IN ('a,b', 'say "hi"', 'Apple', 'back\slash')"#,
            &[
                &[("name", r#"in.("a,b","say \"hi\"",Apple,"back\\slash")"#)],
                &[("name.in", r#""a,b","say \"hi\"",Apple,back\slash"#)],
            ],
        ),
        (
            "qty NOT IN (1, 3, 5)",
            &[&[("qty", "not_in.(1,3,5)")], &[("qty.not_in", "1,3,5")]],
        ),
        (
            "name NOT IN ('a,b', 'Apple')",
            &[
                &[("name", r#"not_in.("a,b",Apple)"#)],
                &[("name.not_in", r#""a,b","Apple""#)],
            ],
        ),
        (
            "false",
            &[
                &[("qty", "in.()")],
                &[("qty.in", "()")],
                &[("name", "in.()")],
            ],
        ),
        ("true", &[&[("qty", "not_in.()")], &[("qty.not_in", "()")]]),
        (
            "tag IS NULL",
            &[
                &[("tag", "is_null")],
                &[("tag.is_null", "")],
                &[("tag.is_null", "true")],
                &[("tag.is_not_null", "false")],
            ],
        ),
        (
            "tag IS NOT NULL",
            &[
                &[("tag", "is_not_null")],
                &[("tag.is_not_null", "")],
                &[("tag.is_not_null", "true")],
                &[("tag.is_null", "false")],
            ],
        ),
        (
            "tag = ''",
            &[&[("tag", "eq.")], &[("tag.eq", "")], &[("tag", "")]],
        ),
        (
            "name = 'gt.5'",
            &[&[("name", "eq.gt.5")], &[("name.eq", "gt.5")]],
        ),
        ("name > '5'", &[&[("name", "gt.5")]]),
        (
            "name = 'v1.2'",
            &[&[("name", "v1.2")], &[("name", "eq.v1.2")]],
        ),
        (
            "name = 'is_null'",
            &[&[("name", "eq.is_null")], &[("name.eq", "is_null")]],
        ),
        ("name = '100%'", &[&[("name", "100%")]]),
        (
            "qty >= 2 AND qty < 8 AND tag IS NOT NULL",
            &[
                &[("qty", "gte.2"), ("qty", "lt.8"), ("tag", "is_not_null")],
                &[("qty.gte", "2"), ("qty.lt", "8"), ("tag.is_null", "false")],
            ],
        ),
        (
            "tag IN ('fruit', 'veg') AND price <= 5 AND name ILIKE '%a%'",
            &[&[
                ("tag", "in.(fruit,veg)"),
                ("price", "lte.5"),
                ("name", "ilike.%a%"),
            ]],
        ),
    ];
    for (condition, forms) in cases {
        let expected = items_where(&fx.db, condition, "id").await;
        for pairs in *forms {
            let url = format!("{}&sort=id", query(pairs));
            assert_page(&fx.anon, &url, &expected, 100, 0).await;
        }
    }

    let some = items_where(&fx.db, "qty = 5", "id").await;
    assert_eq!(some.len(), 2, "the filter cases are not all empty");
    let quoted = items_where(&fx.db, "name IN ('a,b', 'say \"hi\"')", "id").await;
    assert_eq!(quoted.len(), 2);
    fx.stop().await;
}

#[tokio::test]
async fn select_sort_limit_offset_match_sql() {
    let fx = Fixture::start(ITEMS_SCHEMA, "{max_limit: 5, default_limit: 4}").await;

    let sorts = [
        ("id", "id"),
        ("name", "name"),
        ("-name", "name DESC"),
        ("name:desc", "name DESC"),
        ("name:asc", "name"),
        ("qty,id", "qty, id"),
        ("-qty,id", "qty DESC, id"),
        ("qty:desc,name:asc", "qty DESC, name"),
        ("tag,-id", "tag, id DESC"),
        ("-tag,id", "tag DESC, id"),
        ("price:desc,id:asc", "price DESC, id"),
        ("day,-qty,id", "day, qty DESC, id"),
    ];
    for (sort, order) in sorts {
        let all = items_where(&fx.db, "true", order).await;
        let expected: Vec<Value> = all.into_iter().take(5).collect();
        let url = query(&[("sort", sort), ("limit", "5")]);
        assert_page(&fx.anon, &url, &expected, 5, 0).await;
    }

    let pages = [
        ("sort=id", "true", "id", 4, 0),
        ("sort=id&limit=2&offset=3", "true", "id", 2, 3),
        ("sort=id&limit=100", "true", "id", 5, 0),
        ("sort=id&limit=1000000", "true", "id", 5, 0),
        ("sort=id&limit=0", "true", "id", 0, 0),
        ("sort=id&offset=10", "true", "id", 4, 10),
        ("sort=id&offset=50&limit=5", "true", "id", 5, 50),
        (
            "tag=eq.fruit&limit=2&offset=1&sort=-id",
            "tag = 'fruit'",
            "id DESC",
            2,
            1,
        ),
        (
            "offset=2&sort=-qty,id&limit=3",
            "true",
            "qty DESC, id",
            3,
            2,
        ),
    ];
    for (url, condition, order, limit, offset) in pages {
        let expected = rest::query_json_with(
            &fx.db,
            &format!(
                "SELECT to_jsonb(t) FROM items t WHERE {condition} ORDER BY {order} \
                 LIMIT {limit} OFFSET {offset}"
            ),
            &[],
        )
        .await;
        assert_page(&fx.anon, url, &expected, limit, offset).await;
    }

    let unsorted = fx.anon.get("/items").await;
    unsorted.expect(200);
    assert_eq!(unsorted.body["count"], 4);
    assert_eq!(unsorted.body["limit"], 4);
    assert_eq!(unsorted.body["offset"], 0);
    let all = items_where(&fx.db, "true", "id").await;
    for row in unsorted.data().as_array().unwrap() {
        assert!(all.contains(row), "{row} is a row of items");
    }

    let selected = fx.anon.get("/items?select=name,id&sort=-id&limit=3").await;
    selected.expect(200);
    let expected = rest::query_json_with(
        &fx.db,
        "SELECT jsonb_build_object('name', name, 'id', id) FROM items ORDER BY id DESC LIMIT 3",
        &[],
    )
    .await;
    assert_eq!(
        selected.body,
        json!({"data": expected, "count": 3, "limit": 3, "offset": 0})
    );
    for row in selected.data().as_array().unwrap() {
        assert_eq!(rest::keys(row), ["name", "id"]);
    }

    let filtered = fx
        .anon
        .get("/items?select=price&price=gte.5&sort=price,id&offset=1")
        .await;
    filtered.expect(200);
    let expected = rest::query_json_with(
        &fx.db,
        "SELECT jsonb_build_object('price', price) FROM items WHERE price >= 5 \
         ORDER BY price, id LIMIT 4 OFFSET 1",
        &[],
    )
    .await;
    assert_eq!(expected.len(), 4);
    assert_eq!(
        filtered.body,
        json!({"data": expected, "count": 4, "limit": 4, "offset": 1})
    );
    assert_eq!(
        filtered.data()[0],
        serde_json::from_str::<Value>(r#"{"price": 5.00}"#).unwrap()
    );
    fx.stop().await;
}

/// Asserts that a normal read of `orders` still works, after an error.
async fn still_serves(client: &Rest) {
    let reply = client
        .get("/orders?select=id,customer&sort=id&limit=2")
        .await;
    reply.expect(200);
    assert_eq!(
        reply.body,
        json!({
            "data": [{"id": 1, "customer": "ada"}, {"id": 2, "customer": "grace"}],
            "count": 2, "limit": 2, "offset": 0,
        })
    );
}

fn unknown_name(name: &str) -> Value {
    json!({
        "code": "unknown_column",
        "message": format!(
            "{name:?} is neither a column of this table nor a parameter (select, sort, limit, \
             offset, stream)"
        ),
        "details": {"column": name},
    })
}

fn no_column(name: &str) -> Value {
    json!({
        "code": "unknown_column",
        "message": format!("table public.orders has no column {name:?}"),
        "details": {"column": name},
    })
}

fn invalid_value(column: &str, message: &str, sqlstate: &str) -> Value {
    json!({
        "code": "invalid_value",
        "message": format!("column {column:?}: {message}"),
        "details": {"column": column, "sqlstate": sqlstate},
    })
}

fn invalid_parameter(name: &str, message: &str) -> Value {
    json!({
        "code": "invalid_parameter",
        "message": message,
        "details": {"parameter": name},
    })
}

#[tokio::test]
async fn bad_reads_get_exact_errors() {
    let fx = Fixture::start("", "{}").await;
    let unknown_table = json!({
        "code": "unknown_table",
        "message": "no table \"nope\" is served; tables are looked up in the schemas public, \
                    and the allow and block lists of rest.tables and rest.exclude_tables apply",
        "details": {"table": "nope"},
    });
    let replies = [
        fx.anon.get("/nope").await,
        fx.user.post("/nope", &json!({"a": 1})).await,
        fx.anon.get("/nope/1").await,
        fx.user.patch("/nope/1", &json!({"a": 1})).await,
        fx.user.delete("/nope/1").await,
    ];
    for reply in &replies {
        reply.expect(404);
        assert_eq!(reply.body, unknown_table);
    }
    still_serves(&fx.anon).await;

    let operators = "eq, ne, gt, gte, lt, lte, like, ilike, in, not_in, is_null, is_not_null";
    let cases: Vec<(String, Value)> = vec![
        ("nope=1".into(), unknown_name("nope")),
        ("nope.eq=1".into(), unknown_name("nope")),
        ("id=1&nope=is_null".into(), unknown_name("nope")),
        ("select=id,nope".into(), no_column("nope")),
        ("sort=-nope".into(), no_column("nope")),
        ("sort=id,nope:desc".into(), no_column("nope")),
        (
            "total.between=1".into(),
            json!({
                "code": "invalid_filter",
                "message": format!(
                    "unknown operator \"between\" in parameter \"total.between\"; use one of \
                     {operators}"
                ),
                "details": {"parameter": "total.between"},
            }),
        ),
        (
            "total=between.1".into(),
            invalid_value(
                "total",
                "invalid input syntax for type numeric: \"between.1\"",
                "22P02",
            ),
        ),
        (
            "id=gt.abc".into(),
            invalid_value(
                "id",
                "invalid input syntax for type bigint: \"abc\"",
                "22P02",
            ),
        ),
        (
            "id.gt=abc".into(),
            invalid_value(
                "id",
                "invalid input syntax for type bigint: \"abc\"",
                "22P02",
            ),
        ),
        (
            "customer=eq.ada&id=in.(1,x)".into(),
            invalid_value("id", "invalid input syntax for type bigint: \"x\"", "22P02"),
        ),
        (
            "id=99999999999999999999".into(),
            invalid_value(
                "id",
                "value \"99999999999999999999\" is out of range for type bigint",
                "22003",
            ),
        ),
        (
            "created_at=gt.notadate".into(),
            invalid_value(
                "created_at",
                "invalid input syntax for type timestamp with time zone: \"notadate\"",
                "22007",
            ),
        ),
        (
            "limit=-1".into(),
            invalid_parameter(
                "limit",
                "limit=\"-1\" is not a whole number of 0 or more; use for example limit=100",
            ),
        ),
        (
            "offset=x".into(),
            invalid_parameter(
                "offset",
                "offset=\"x\" is not a whole number of 0 or more; use for example offset=100",
            ),
        ),
        (
            "stream=maybe".into(),
            invalid_parameter("stream", "stream=\"maybe\" is not true or false"),
        ),
        (
            "select=".into(),
            invalid_parameter(
                "select",
                "select is empty; list columns like select=id,status",
            ),
        ),
        (
            "id=in.(1,2".into(),
            json!({
                "code": "invalid_filter",
                "message": "the list for column \"id\" opens with '(' but does not close: \
                            \"(1,2\"",
                "details": {"column": "id"},
            }),
        ),
        (
            "notes.is_null=maybe".into(),
            json!({
                "code": "invalid_filter",
                "message": "notes.is_null=\"maybe\": is_null takes no value, or true or false",
                "details": {"parameter": "notes.is_null"},
            }),
        ),
    ];
    let long_list = format!("id=in.({})", vec!["1"; 1001].join(","));
    let cases = [
        cases,
        vec![(
            long_list,
            json!({
                "code": "invalid_filter",
                "message": "the list for column \"id\" has 1001 items; at most 1000 are allowed",
                "details": {"column": "id"},
            }),
        )],
    ]
    .concat();
    for (url, expected) in &cases {
        let reply = fx.anon.get(&format!("/orders?{url}")).await;
        assert_eq!(reply.status, 400, "GET /orders?{url}: {}", reply.text);
        assert_eq!(&reply.body, expected, "GET /orders?{url}");
        still_serves(&fx.anon).await;
    }

    let by_word = fx.anon.get("/orders/abc").await;
    by_word.expect(400);
    assert_eq!(
        by_word.body,
        invalid_value(
            "id",
            "invalid input syntax for type bigint: \"abc\"",
            "22P02"
        )
    );
    let by_word = fx.user.delete("/orders/abc").await;
    by_word.expect(400);
    assert_eq!(
        by_word.body,
        invalid_value(
            "id",
            "invalid input syntax for type bigint: \"abc\"",
            "22P02"
        )
    );
    let with_sort = fx.anon.get("/orders/1?sort=id").await;
    with_sort.expect(400);
    assert_eq!(
        with_sort.body,
        json!({
            "code": "invalid_parameter",
            "message": "parameter \"sort\" does not apply here: a single row or a write takes \
                        only select; filter a list with GET /api/orders?...",
            "details": {"parameter": "sort"},
        })
    );
    let select_one = fx.anon.get("/orders/1?select=nope").await;
    select_one.expect(400);
    assert_eq!(select_one.body, no_column("nope"));
    still_serves(&fx.anon).await;
    fx.stop().await;
}

const INJECTION_ROWS: &str = r#"
INSERT INTO orders (customer, total) VALUES
    ('1 OR 1=1', 1),
    ('''); DROP TABLE orders; --', 2),
    ('%'' OR ''1''=''1', 3),
    ('x" OR "1"="1', 4);
"#;

/// Asserts a 200 list of `orders` filtered by `pairs` equal to the rows `condition` (with
/// `params` bound) selects.
async fn assert_literal(fx: &Fixture, pairs: &[(&str, &str)], condition: &str, params: &[&str]) {
    let sql = format!("SELECT to_jsonb(o) FROM orders o WHERE {condition} ORDER BY id");
    let expected = rest::query_json_with(&fx.db, &sql, params).await;
    let url = format!("/orders?{}&sort=id", query(pairs));
    let reply = fx.anon.get(&url).await;
    assert_eq!(reply.status, 200, "GET {url}: {}", reply.text);
    assert_eq!(
        reply.body,
        json!({"data": expected, "count": expected.len(), "limit": 100, "offset": 0}),
        "GET {url}"
    );
}

#[tokio::test]
async fn injection_attempts_change_nothing() {
    let fx = Fixture::start(INJECTION_ROWS, "{schemas: [public, walgate]}").await;
    let relations = rest::relation_count(&fx.db).await;
    let before =
        rest::query_json_with(&fx.db, "SELECT to_jsonb(o) FROM orders o ORDER BY id", &[]).await;
    assert_eq!(before.len(), 6);

    let names = [
        "orders;DROP TABLE orders",
        "orders\"",
        "\"orders\"",
        "orders--",
        "public.orders;--",
        "\"public\".\"orders\"",
        "pg_catalog.pg_authid",
        "pg_authid",
        "information_schema.tables",
        "walgate.webhook_deliveries",
        "webhook_deliveries",
        "../admin",
        "orders\0",
        "orders ",
    ];
    for name in names {
        // The hint after the first clause depends on the name, so only the clause that names
        // the table is compared.
        let prefix = format!("no table {name:?} is served; ");
        let segment = encode(name);
        let replies = [
            fx.anon.get(&format!("/{segment}")).await,
            fx.user.get(&format!("/{segment}?id=1")).await,
            fx.user
                .post(&format!("/{segment}"), &json!({"id": 1}))
                .await,
            fx.user.get(&format!("/{segment}/1")).await,
            fx.user
                .patch(&format!("/{segment}/1"), &json!({"id": 1}))
                .await,
            fx.user.delete(&format!("/{segment}/1")).await,
        ];
        for reply in replies {
            assert_eq!(reply.status, 404, "table {name:?}: {}", reply.text);
            assert_eq!(reply.body["code"], "unknown_table", "table {name:?}");
            assert_eq!(
                reply.body["details"],
                json!({"table": name}),
                "table {name:?}"
            );
            let message = reply.body["message"].as_str().unwrap_or_default();
            assert!(message.starts_with(&prefix), "table {name:?}: {message}");
        }
    }

    let keys = [
        ("id;DROP TABLE orders", "id;DROP TABLE orders"),
        ("\"id\"", "\"id\""),
        ("id\"", "id\""),
        ("id) OR (1=1", "id) OR (1=1"),
        (
            "customer\" = customer OR \"1",
            "customer\" = customer OR \"1",
        ),
        ("id\";--.eq", "id\";--"),
        ("orders.id", "orders.id"),
        ("1=1 OR id", "1=1 OR id"),
    ];
    for (key, column) in keys {
        let reply = fx
            .anon
            .get(&format!("/orders?{}", query(&[(key, "1")])))
            .await;
        assert_eq!(reply.status, 400, "filter key {key:?}: {}", reply.text);
        assert_eq!(reply.body, unknown_name(column), "filter key {key:?}");
    }

    let selects = [
        (
            "id,customer;DROP TABLE orders",
            "customer;DROP TABLE orders",
        ),
        ("\"id\"", "\"id\""),
        ("id FROM orders;--", "id FROM orders;--"),
        ("*", "*"),
        ("count(*)", "count(*)"),
        ("id,(SELECT 1)", "(SELECT 1)"),
        ("customer\"", "customer\""),
    ];
    for (select, column) in selects {
        let reply = fx
            .anon
            .get(&format!("/orders?{}", query(&[("select", select)])))
            .await;
        assert_eq!(reply.status, 400, "select {select:?}: {}", reply.text);
        assert_eq!(reply.body, no_column(column), "select {select:?}");
        let one = fx
            .anon
            .get(&format!("/orders/1?{}", query(&[("select", select)])))
            .await;
        assert_eq!(
            one.status, 400,
            "select {select:?} on one row: {}",
            one.text
        );
        assert_eq!(one.body, no_column(column), "select {select:?} on one row");
    }

    let sorts = [
        ("id;DROP TABLE orders", "id;DROP TABLE orders"),
        ("id desc", "id desc"),
        ("\"id\"", "\"id\""),
        ("id,(SELECT 1)", "(SELECT 1)"),
        ("-id;--", "id;--"),
        ("1", "1"),
        ("random()", "random()"),
    ];
    for (sort, column) in sorts {
        let reply = fx
            .anon
            .get(&format!("/orders?{}", query(&[("sort", sort)])))
            .await;
        assert_eq!(reply.status, 400, "sort {sort:?}: {}", reply.text);
        assert_eq!(reply.body, no_column(column), "sort {sort:?}");
    }

    let literals: &[(Params, &str, &[&str])] = &[
        (&[("customer", "1 OR 1=1")], "customer = $1", &["1 OR 1=1"]),
        (
            &[("customer", "eq.1 OR 1=1")],
            "customer = $1",
            &["1 OR 1=1"],
        ),
        (
            &[("customer", "eq.'); DROP TABLE orders; --")],
            "customer = $1",
            &["'); DROP TABLE orders; --"],
        ),
        (
            &[("customer", "like.%' OR '1'='1")],
            "customer LIKE $1",
            &["%' OR '1'='1"],
        ),
        (
            &[("customer", "x' OR 'x'='x")],
            "customer = $1",
            &["x' OR 'x'='x"],
        ),
        (
            &[("customer", "in.(ada') OR ('1'='1)")],
            "customer IN ($1)",
            &["ada') OR ('1'='1"],
        ),
        (
            &[("customer.ne", "x' OR 'a'='a")],
            "customer <> $1",
            &["x' OR 'a'='a"],
        ),
        (
            &[("customer", "ilike.%\" OR \"1\"=\"1")],
            "customer ILIKE $1",
            &["%\" OR \"1\"=\"1"],
        ),
        (&[("notes", "eq.$1")], "notes = $1", &["$1"]),
    ];
    for (pairs, condition, params) in literals {
        assert_literal(&fx, pairs, condition, params).await;
    }
    let one_row = rest::query_json_with(
        &fx.db,
        "SELECT to_jsonb(o) FROM orders o WHERE customer = '1 OR 1=1'",
        &[],
    )
    .await;
    assert_eq!(one_row.len(), 1, "the literal matches exactly one row");

    let typed = [
        ("id", "1 OR 1=1", "bigint"),
        ("id", "1; DROP TABLE orders", "bigint"),
        ("total", "0; DROP TABLE orders", "numeric"),
    ];
    for (column, value, type_name) in typed {
        let reply = fx
            .anon
            .get(&format!("/orders?{}", query(&[(column, value)])))
            .await;
        assert_eq!(reply.status, 400, "{column}={value:?}: {}", reply.text);
        assert_eq!(
            reply.body,
            invalid_value(
                column,
                &format!("invalid input syntax for type {type_name}: {value:?}"),
                "22P02"
            )
        );
    }

    let injected_id = encode("1 OR 1=1");
    let bigint_error = invalid_value(
        "id",
        "invalid input syntax for type bigint: \"1 OR 1=1\"",
        "22P02",
    );
    let get = fx.user.get(&format!("/orders/{injected_id}")).await;
    get.expect(400);
    assert_eq!(get.body, bigint_error);
    let patch = fx
        .user
        .patch(
            &format!("/orders/{injected_id}"),
            &json!({"status": "hacked"}),
        )
        .await;
    patch.expect(400);
    assert_eq!(patch.body, bigint_error);
    let delete = fx.user.delete(&format!("/orders/{injected_id}")).await;
    delete.expect(400);
    assert_eq!(delete.body, bigint_error);

    let key_injection = fx
        .user
        .post(
            "/orders",
            &json!({"customer\") VALUES ('x', 1); DROP TABLE orders; --": "x", "total": 1}),
        )
        .await;
    key_injection.expect(400);
    assert_eq!(
        key_injection.body,
        no_column("customer\") VALUES ('x', 1); DROP TABLE orders; --")
    );
    let value = "'); DROP TABLE orders; --";
    let created = fx
        .user
        .post(
            "/orders",
            &json!({"customer": value, "total": 7, "notes": "$1"}),
        )
        .await;
    created.expect(201);
    assert_eq!(created.data()["customer"], value);
    assert_eq!(created.data()["notes"], "$1");
    let new_id = created.data()["id"].as_i64().unwrap();
    let patched = fx
        .user
        .patch(
            &format!("/orders/{new_id}"),
            &json!({"status": "paid' WHERE true; --"}),
        )
        .await;
    patched.expect(200);
    assert_eq!(patched.data()["status"], "paid' WHERE true; --");

    assert_eq!(rest::relation_count(&fx.db).await, relations);
    let after = rest::query_json_with(
        &fx.db,
        "SELECT to_jsonb(o) FROM orders o WHERE id <> $1::text::bigint ORDER BY id",
        &[&new_id.to_string()],
    )
    .await;
    assert_eq!(after, before, "every other row of orders is unchanged");
    fx.stop().await;
}

#[tokio::test]
async fn schema_changes_are_served_at_once() {
    let fx = Fixture::start("", "{schema_refresh_ms: 0}").await;
    let first = fx.anon.get("/orders?select=id&sort=id").await;
    first.expect(200);
    assert_eq!(first.data(), &json!([{"id": 1}, {"id": 2}]));

    fx.db
        .batch_execute(
            "ALTER TABLE orders ADD COLUMN priority int NOT NULL DEFAULT 0;
             UPDATE orders SET priority = 5 WHERE id = 2;",
        )
        .await
        .unwrap();
    let added = fx.anon.get("/orders?priority=eq.5").await;
    assert_eq!(
        added.status, 200,
        "filter on an added column: {}",
        added.text
    );
    let expected = rest::query_json_with(
        &fx.db,
        "SELECT to_jsonb(o) FROM orders o WHERE priority = 5",
        &[],
    )
    .await;
    assert_eq!(
        added.body,
        json!({"data": expected, "count": 1, "limit": 100, "offset": 0})
    );
    assert_eq!(
        rest::keys(added.data().get(0).unwrap()),
        rest::column_names(&fx.db, "orders").await
    );

    fx.db
        .batch_execute("ALTER TABLE orders DROP COLUMN notes")
        .await
        .unwrap();
    let dropped = fx.anon.get("/orders?sort=id").await;
    assert_eq!(dropped.status, 200, "list after a drop: {}", dropped.text);
    let expected =
        rest::query_json_with(&fx.db, "SELECT to_jsonb(o) FROM orders o ORDER BY id", &[]).await;
    assert_eq!(
        dropped.body,
        json!({"data": expected, "count": 2, "limit": 100, "offset": 0})
    );
    let columns = rest::column_names(&fx.db, "orders").await;
    assert!(!columns.contains(&"notes".to_string()));
    assert_eq!(rest::keys(dropped.data().get(0).unwrap()), columns);
    let one = fx.anon.get("/orders/2").await;
    one.expect(200);
    assert_eq!(one.body, json!({"data": expected[1]}));

    fx.db
        .batch_execute(
            "CREATE TABLE late (id int PRIMARY KEY, v text);
             INSERT INTO late VALUES (1, 'new');
             GRANT SELECT ON late TO web_anon;",
        )
        .await
        .unwrap();
    let late = fx.anon.get("/late").await;
    assert_eq!(late.status, 200, "a table created later: {}", late.text);
    assert_eq!(
        late.body,
        json!({"data": [{"id": 1, "v": "new"}], "count": 1, "limit": 100, "offset": 0})
    );
    fx.stop().await;
}

const ODD_NAMES_SCHEMA: &str = r#"
CREATE TABLE "we""ird; table" (
    id int PRIMARY KEY,
    "a.b" int,
    "x""y" text,
    "Upper Case" text,
    "limit" int
);
INSERT INTO "we""ird; table" VALUES
    (1, 1, 'q1', 'U1', 10),
    (2, 2, 'q2', 'u2', 20),
    (3, 3, NULL, 'U3', 30);
GRANT SELECT, INSERT, UPDATE, DELETE ON "we""ird; table" TO authenticated;
"#;

#[tokio::test]
async fn quoted_names_are_served_exactly() {
    let fx = Fixture::start(ODD_NAMES_SCHEMA, "{}").await;
    let relations = rest::relation_count(&fx.db).await;
    let table = format!("/{}", encode("we\"ird; table"));
    let rows_where = |condition: &str, order: &str| {
        format!(r#"SELECT to_jsonb(t) FROM "we""ird; table" t WHERE {condition} ORDER BY {order}"#)
    };

    let cases: &[(Params, &str, &str)] = &[
        (&[("limit.eq", "20")], r#""limit" = 20"#, "id"),
        (
            &[("limit.gte", "20"), ("sort", "-id")],
            r#""limit" >= 20"#,
            "id DESC",
        ),
        (&[("a.b", "eq.2")], r#""a.b" = 2"#, "id"),
        (
            &[("a.b.gte", "2"), ("sort", "-a.b")],
            r#""a.b" >= 2"#,
            r#""a.b" DESC"#,
        ),
        (&[("x\"y", "is_null")], r#""x""y" IS NULL"#, "id"),
        (
            &[("x\"y.in", "q1,\"q2\"")],
            r#""x""y" IN ('q1', 'q2')"#,
            "id",
        ),
        (
            &[("Upper Case", "like.U%"), ("sort", "Upper Case:desc")],
            r#""Upper Case" LIKE 'U%'"#,
            r#""Upper Case" DESC"#,
        ),
        (
            &[("Upper Case.ilike", "u%"), ("sort", "x\"y,id")],
            r#""Upper Case" ILIKE 'u%'"#,
            r#""x""y", id"#,
        ),
    ];
    for (pairs, condition, order) in cases {
        let expected = rest::query_json_with(&fx.db, &rows_where(condition, order), &[]).await;
        assert!(!expected.is_empty(), "{condition} selects rows");
        let url = format!("{table}?{}", query(pairs));
        let reply = fx.user.get(&url).await;
        assert_eq!(reply.status, 200, "GET {url}: {}", reply.text);
        assert_eq!(
            reply.body,
            json!({"data": expected, "count": expected.len(), "limit": 100, "offset": 0}),
            "GET {url}"
        );
    }

    let url = format!(
        "{table}?{}",
        query(&[("select", "x\"y,Upper Case,a.b"), ("sort", "id")])
    );
    let selected = fx.user.get(&url).await;
    selected.expect(200);
    assert_eq!(
        selected.data(),
        &json!([
            {"x\"y": "q1", "Upper Case": "U1", "a.b": 1},
            {"x\"y": "q2", "Upper Case": "u2", "a.b": 2},
            {"x\"y": null, "Upper Case": "U3", "a.b": 3},
        ])
    );
    assert_eq!(
        rest::keys(&selected.data()[0]),
        ["x\"y", "Upper Case", "a.b"]
    );

    let row = json!({"id": 4, "a.b": 4, "x\"y": "q\"4", "Upper Case": "U4", "limit": 40});
    let created = fx.user.post(&table, &row).await;
    created.expect(201);
    assert_eq!(created.body, json!({"data": row}));
    let one = fx.user.get(&format!("{table}/4")).await;
    one.expect(200);
    assert_eq!(one.body, json!({"data": row}));
    let patched = fx
        .user
        .patch(
            &format!("{table}/4"),
            &json!({"x\"y": "'); DROP TABLE orders; --"}),
        )
        .await;
    patched.expect(200);
    assert_eq!(patched.data()["x\"y"], "'); DROP TABLE orders; --");
    let stored = rest::query_json_with(&fx.db, &rows_where("id = 4", "id"), &[]).await;
    assert_eq!(patched.body, json!({"data": stored[0]}));
    let deleted = fx.user.delete(&format!("{table}/4")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let left = rest::query_json_with(&fx.db, &rows_where("true", "id"), &[]).await;
    assert_eq!(left.len(), 3);
    assert_eq!(rest::relation_count(&fx.db).await, relations);
    fx.stop().await;
}

#[tokio::test]
async fn retyped_column_still_filters() {
    let fx = Fixture::start(ITEMS_SCHEMA, "{pool_size: 1, schema_refresh_ms: 0}").await;
    let before = items_where(&fx.db, "qty = 5", "id").await;
    assert_page(&fx.anon, "qty=eq.5&sort=id", &before, 100, 0).await;

    fx.db
        .batch_execute("ALTER TABLE items ALTER COLUMN qty TYPE text")
        .await
        .unwrap();
    // Waits out the minimum gap between catalog reloads and forces a reload, so the catalog
    // has the new type and only a cached statement can be stale.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let reloaded = fx.anon.get("/items?nope=1").await;
    reloaded.expect(400);
    let after = items_where(&fx.db, "qty = '5'", "id").await;
    assert_eq!(after.len(), 2);
    assert_eq!(after[0]["qty"], "5");
    assert_page(&fx.anon, "qty=eq.5&sort=id", &after, 100, 0).await;
    assert_page(
        &fx.anon,
        "qty=like.1%25&sort=id",
        &items_where(&fx.db, "qty LIKE '1%'", "id").await,
        100,
        0,
    )
    .await;
    fx.stop().await;
}
