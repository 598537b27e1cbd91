//! NDJSON streaming of list results: complete and exact output for a million rows, filters on
//! streams, errors before and after the first row, and the end of a request's query when its
//! client goes away (streams and pages).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::rest_kit::{assert_error, auth_yaml, claims, hs256, Api};
use crate::support;

const ROWS: usize = 1_000_000;

const BIG_SCHEMA: &str = "
CREATE ROLE reader NOLOGIN;
CREATE TABLE big (
    id bigint PRIMARY KEY,
    amount numeric(12, 2) NOT NULL,
    label text NOT NULL,
    ratio float8,
    seen timestamptz NOT NULL
);
INSERT INTO big
SELECT i,
       (i * 1.25)::numeric(12, 2),
       CASE WHEN i % 100000 = 0 THEN E'tab\\t\"quoted\"\\nline ü ' || i ELSE 'row ' || i END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE i::float8 / 3 END,
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'
FROM generate_series(1, 1000000) i;
GRANT SELECT ON big TO reader;
";

/// Starts a gateway whose API client reads as role `reader`.
async fn reader_api(
    cluster: &walgate::cluster::EphemeralCluster,
    yaml: &str,
) -> (walgate::gateway::Gateway, Api) {
    let config = support::gateway_config_with(cluster, &format!("{}{yaml}", auth_yaml()));
    let gateway = support::start_gateway_with(config).await;
    let api = Api::new(gateway.addr).with_token(&hs256(&claims("u1", "reader")));
    (gateway, api)
}

/// Indexes NDJSON lines by their `id`, checking that each line is a JSON object and that the
/// ids are exactly 1 to `ROWS`.
fn lines_by_id(lines: &[&str]) -> Vec<String> {
    let mut by_id: Vec<Option<String>> = vec![None; ROWS];
    for line in lines {
        let row: Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("line is not JSON ({err}): {line}"));
        let id = row["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no id in {line}")) as usize;
        assert!((1..=ROWS).contains(&id), "id {id} out of range");
        let slot = &mut by_id[id - 1];
        assert!(slot.is_none(), "id {id} appears twice");
        *slot = Some(line.to_string());
    }
    by_id
        .into_iter()
        .enumerate()
        .map(|(index, line)| line.unwrap_or_else(|| panic!("id {} is missing", index + 1)))
        .collect()
}

fn assert_ndjson_headers(reply: &crate::rest_kit::Reply) {
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(
        reply.header("content-length"),
        None,
        "a stream has no length"
    );
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
}

#[tokio::test]
async fn ndjson_streams_a_million_rows_exactly() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(BIG_SCHEMA).await.unwrap();
    let (_gateway, api) = reader_api(&cluster, "").await;

    let by_param = api.get("/api/big?stream=true").await;
    assert_ndjson_headers(&by_param);
    let param_lines = by_param.lines();
    assert_eq!(param_lines.len(), ROWS);
    let param_rows = lines_by_id(&param_lines);

    let by_accept = api
        .send(
            api.request(reqwest::Method::GET, "/api/big")
                .header("accept", "application/x-ndjson"),
        )
        .await;
    assert_ndjson_headers(&by_accept);
    let accept_lines = by_accept.lines();
    assert_eq!(accept_lines.len(), ROWS);
    let accept_rows = lines_by_id(&accept_lines);
    assert!(
        param_rows == accept_rows,
        "the Accept header streams the same rows as stream=true"
    );

    let samples: Vec<i64> = vec![1, 2, 7, 99_999, 100_000, 500_000, 999_999, 1_000_000];
    let expected = db
        .query(
            "SELECT id, to_jsonb(b) FROM big b WHERE id = ANY($1) ORDER BY id",
            &[&samples],
        )
        .await
        .unwrap();
    assert_eq!(expected.len(), samples.len());
    for row in expected {
        let id: i64 = row.get(0);
        let from_postgres: Value = row.get(1);
        let line = &param_rows[id as usize - 1];
        let streamed: Value = serde_json::from_str(line).unwrap();
        assert_eq!(streamed, from_postgres, "row {id}");
        let keys: Vec<&String> = streamed.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "amount", "label", "ratio", "seen"], "row {id}");
    }
    assert_eq!(
        param_rows[1],
        r#"{"id":2,"amount":2.50,"label":"row 2","ratio":0.6666666666666666,"seen":"2026-01-01T00:00:02+00:00"}"#
    );
    assert_eq!(
        param_rows[99_999],
        r#"{"id":100000,"amount":125000.00,"label":"tab\t\"quoted\"\nline ü 100000","ratio":33333.333333333336,"seen":"2026-01-02T03:46:40+00:00"}"#
    );
}

#[tokio::test]
async fn ndjson_streams_apply_query_parameters() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(
        "CREATE ROLE reader NOLOGIN;
         CREATE TABLE big (id bigint PRIMARY KEY, amount numeric(12, 2) NOT NULL, label text);
         INSERT INTO big
         SELECT i, (i * 1.25)::numeric(12, 2), CASE WHEN i % 1000 = 0 THEN 'round ' || i
                                                   ELSE 'row ' || i END
         FROM generate_series(1, 20000) i;
         GRANT SELECT ON big TO reader;",
    )
    .await
    .unwrap();
    let (_gateway, api) = reader_api(&cluster, "").await;

    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "/api/big?stream=true&select=id,label&id=lte.3&sort=-id",
            vec![
                r#"{"id":3,"label":"row 3"}"#,
                r#"{"id":2,"label":"row 2"}"#,
                r#"{"id":1,"label":"row 1"}"#,
            ],
        ),
        (
            "/api/big?stream=true&select=id,amount&amount=gt.24998.00&sort=id",
            vec![
                r#"{"id":19999,"amount":24998.75}"#,
                r#"{"id":20000,"amount":25000.00}"#,
            ],
        ),
        (
            "/api/big?stream=true&select=id&label=like.round%25&id.gt=15000&sort=id",
            vec![
                r#"{"id":16000}"#,
                r#"{"id":17000}"#,
                r#"{"id":18000}"#,
                r#"{"id":19000}"#,
                r#"{"id":20000}"#,
            ],
        ),
        (
            "/api/big?stream=true&select=id&sort=id&limit=2&offset=10",
            vec![r#"{"id":11}"#, r#"{"id":12}"#],
        ),
        (
            "/api/big?stream=true&select=label&id=in.(5,7)&sort=id",
            vec![r#"{"label":"row 5"}"#, r#"{"label":"row 7"}"#],
        ),
    ];
    for (path, expected) in cases {
        let reply = api.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        assert_eq!(reply.lines(), expected, "{path}");
    }

    let all = api.get("/api/big?stream=true&select=id").await;
    assert_eq!(
        all.lines().len(),
        20_000,
        "a stream is not capped at rest.max_limit"
    );

    let empty = api.get("/api/big?stream=true&id=gt.20000").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
    assert_eq!(empty.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(empty.text, "", "a stream without rows has an empty body");
}

/// Counts backends other than this one that run or hold open a REST read.
async fn rest_queries_in_flight(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity
         WHERE query LIKE '%row_to_json%'
           AND state IN ('active', 'idle in transaction')
           AND pid <> pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn dropped_stream_ends_its_query() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    // Rows are produced on demand, so the stream would run for minutes if nothing stopped it.
    db.batch_execute(
        "CREATE ROLE reader NOLOGIN;
         CREATE VIEW endless AS
         SELECT id, repeat('x', 200) AS pad
         FROM (SELECT generate_series(1, 100000000) AS id) numbers;
         CREATE FUNCTION slow_one() RETURNS int LANGUAGE sql AS 'SELECT pg_sleep(60); SELECT 1';
         CREATE VIEW sleepy AS SELECT slow_one() AS id;
         GRANT SELECT ON endless, sleepy TO reader;",
    )
    .await
    .unwrap();
    let (_gateway, api) = reader_api(&cluster, "rest:\n  pool_size: 2\n").await;

    let db = &db;
    for round in 0..3 {
        let mut response = api
            .request(reqwest::Method::GET, "/api/endless?stream=true")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut received = 0;
        while received < 256 * 1024 {
            let chunk = response.chunk().await.unwrap().expect("the stream goes on");
            received += chunk.len();
        }
        support::wait_until(
            Duration::from_secs(10),
            "the stream's query is in flight",
            || async move { rest_queries_in_flight(db).await == 1 },
        )
        .await;
        drop(response);
        support::wait_until(
            Duration::from_secs(5),
            &format!("the query of dropped stream {round} ends"),
            || async move { rest_queries_in_flight(db).await == 0 },
        )
        .await;
    }

    // A client that gives up before the first row arrives also ends the query.
    let waiting = api.request(reqwest::Method::GET, "/api/sleepy?stream=true");
    let gave_up = tokio::time::timeout(Duration::from_secs(1), waiting.send()).await;
    assert!(gave_up.is_err(), "the first row takes a minute");
    support::wait_until(
        Duration::from_secs(5),
        "the query of the abandoned slow stream ends",
        || async move { rest_queries_in_flight(db).await == 0 },
    )
    .await;

    let page = api.get("/api/endless?limit=2&select=id").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(
        page.json(),
        json!({"data": [{"id": 1}, {"id": 2}], "count": 2, "limit": 2, "offset": 0})
    );
    let stream = api.get("/api/endless?stream=true&select=id&limit=3").await;
    assert_eq!(
        stream.lines(),
        vec![r#"{"id":1}"#, r#"{"id":2}"#, r#"{"id":3}"#]
    );
}

#[tokio::test]
async fn dropped_page_request_ends_its_query() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(
        "CREATE ROLE reader NOLOGIN;
         CREATE FUNCTION slow_one() RETURNS int LANGUAGE sql AS 'SELECT pg_sleep(25); SELECT 1';
         CREATE VIEW sleepy AS SELECT slow_one() AS id;
         CREATE TABLE quick (id int PRIMARY KEY);
         INSERT INTO quick VALUES (1);
         GRANT SELECT ON sleepy, quick TO reader;",
    )
    .await
    .unwrap();
    let (_gateway, api) = reader_api(&cluster, "rest:\n  pool_size: 1\n").await;

    let waiting = api.request(reqwest::Method::GET, "/api/sleepy");
    let gave_up = tokio::time::timeout(Duration::from_secs(1), waiting.send()).await;
    assert!(gave_up.is_err(), "the page takes 25 s");
    let db = &db;
    support::wait_until(
        Duration::from_secs(5),
        "the query of the abandoned page request ends",
        || async move { rest_queries_in_flight(db).await == 0 },
    )
    .await;
    let next = tokio::time::timeout(Duration::from_secs(5), api.get("/api/quick"))
        .await
        .expect("the next request does not wait for the abandoned query");
    assert_eq!(
        next.json(),
        json!({"data": [{"id": 1}], "count": 1, "limit": 100, "offset": 0})
    );
}

#[tokio::test]
async fn stream_errors_before_and_after_first_row() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(
        "CREATE ROLE reader NOLOGIN;
         CREATE VIEW fragile AS
         SELECT i AS id, CASE WHEN i > 5000 THEN 1 / (i - i) ELSE i END AS v
         FROM generate_series(1, 100000) i;
         CREATE VIEW broken AS SELECT i AS id, 1 / (i - i) AS v FROM generate_series(1, 10) i;
         GRANT SELECT ON fragile, broken TO reader;",
    )
    .await
    .unwrap();
    let (_gateway, api) = reader_api(&cluster, "").await;

    let reply = api.get("/api/fragile?stream=true").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    let lines = reply.lines();
    let (last, rows) = lines.split_last().unwrap();
    assert_eq!(
        *last,
        r#"{"error":{"code":"data_exception","message":"division by zero","details":{"sqlstate":"22012"}}}"#
    );
    assert_eq!(
        rows.len(),
        5000,
        "every row read before the failing one is sent before the error line"
    );
    for (index, line) in rows.iter().enumerate() {
        let id = index + 1;
        assert_eq!(*line, format!(r#"{{"id":{id},"v":{id}}}"#));
    }

    let reply = api.get("/api/fragile?stream=true&id=abc").await;
    assert_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_value",
        "column \"id\": invalid input syntax for type integer: \"abc\"",
    );
    assert_eq!(
        reply.json()["details"],
        json!({"column": "id", "sqlstate": "22P02"})
    );

    let reply = api.get("/api/broken?stream=true").await;
    assert_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "data_exception",
        "division by zero",
    );
    assert_eq!(reply.json()["details"], json!({"sqlstate": "22012"}));

    let reply = api.get("/api/fragile?stream=true&id=lte.3").await;
    assert_eq!(
        reply.lines(),
        vec![
            r#"{"id":1,"v":1}"#,
            r#"{"id":2,"v":2}"#,
            r#"{"id":3,"v":3}"#
        ],
        "the gateway keeps serving the view after the failed stream"
    );
}
