//! Trigger definitions: parsing, defaults, every validation message, `${VAR}` references and
//! the catalog check against a throwaway cluster.

use std::time::Duration;

use walgate::change::Operation;
use walgate::webhooks::definition::{check_catalog, Operations, TriggerError, TriggerSet};

use crate::support;

const SEED: &str = r#"- name: order_created
  table: orders
  operations: [create]
  webhook_url: "https://api.example.com/hooks/order-created"
  headers:
    X-Secret: webhook-secret-key
  retry_count: 3
- name: order_updated
  table: orders
  operations: [update]
  webhook_url: "https://api.example.com/hooks/order-updated"
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(yaml: &str) -> Result<TriggerSet, TriggerError> {
    TriggerSet::parse(yaml, &no_env)
}

/// The error message for `yaml`, which must be invalid.
fn error(yaml: &str) -> String {
    error_with_env(yaml, &no_env)
}

fn error_with_env(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    match TriggerSet::parse(yaml, env) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(err) => err.to_string(),
    }
}

/// A valid trigger named `t` with `extra` appended as further fields.
fn trigger_with(extra: &str) -> String {
    format!(
        "- name: t\n  table: orders\n  operations: [create, update]\n  \
         webhook_url: https://hooks.example.com/t\n{extra}"
    )
}

#[test]
fn seed_loads_with_expected_values() {
    let set = parse(SEED).unwrap();
    assert_eq!(set.triggers().len(), 2);
    assert!(!set.is_empty());

    let created = set.get("order_created").unwrap();
    assert_eq!(created.name, "order_created");
    assert_eq!(created.schema, "public");
    assert_eq!(created.table, "orders");
    let insert_only = Operations {
        insert: true,
        update: false,
        delete: false,
    };
    assert_eq!(created.operations, insert_only);
    assert_eq!(
        created.webhook_url.as_str(),
        "https://api.example.com/hooks/order-created"
    );
    assert_eq!(created.headers.len(), 1);
    assert_eq!(created.headers[0].0.as_str(), "x-secret");
    assert_eq!(created.headers[0].1.to_str().unwrap(), "webhook-secret-key");
    assert!(created.headers[0].1.is_sensitive());
    assert_eq!(created.retry_count, 3);
    assert!(created.enabled);
    assert_eq!(created.columns, None);
    assert_eq!(created.timeout, Duration::from_millis(10_000));
    assert!(created.secret.is_none());
    assert_eq!(created.concurrency, 16);

    let updated = set.get("order_updated").unwrap();
    let update_only = Operations {
        insert: false,
        update: true,
        delete: false,
    };
    assert_eq!(updated.operations, update_only);
    assert!(updated.headers.is_empty());
    assert_eq!(updated.retry_count, 3);
}

#[test]
fn seed_indexes_triggers_by_table() {
    let set = parse(SEED).unwrap();
    let names: Vec<&str> = set
        .for_table("public", "orders")
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["order_created", "order_updated"]);
    assert!(set.for_table("public", "customers").is_empty());
    assert!(set.for_table("sales", "orders").is_empty());
    assert!(set.get("missing").is_none());
}

#[test]
fn fires_on_follows_operations_and_enabled() {
    let set = parse(SEED).unwrap();
    let created = set.get("order_created").unwrap();
    assert!(created.fires_on(Operation::Insert));
    assert!(!created.fires_on(Operation::Update));
    assert!(!created.fires_on(Operation::Delete));
    assert!(!created.fires_on(Operation::Truncate));

    let yaml = "- name: off\n  table: orders\n  operations: [create, update, delete]\n  \
                webhook_url: http://127.0.0.1:9/x\n  enabled: false\n";
    let set = parse(yaml).unwrap();
    let off = set.get("off").unwrap();
    assert!(!off.enabled);
    assert!(!off.fires_on(Operation::Insert));
    assert!(set.for_table("public", "orders").is_empty());
}

#[test]
fn empty_inputs_give_empty_sets() {
    for yaml in ["", "   \n", "# every trigger commented out\n", "[]", "~"] {
        let set = parse(yaml).unwrap_or_else(|err| panic!("{yaml:?}: {err}"));
        assert!(set.is_empty(), "{yaml:?}");
        assert!(set.triggers().is_empty(), "{yaml:?}");
    }
    assert!(TriggerSet::empty().is_empty());
}

#[test]
fn optional_fields_are_read() {
    let yaml = trigger_with(
        "  schema: sales\n  retry_count: 0\n  enabled: true\n  columns: [status, total]\n  \
         timeout_ms: 2500\n  secret: whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\n  concurrency: 1\n",
    );
    let set = parse(&yaml).unwrap();
    let trigger = set.get("t").unwrap();
    assert_eq!(trigger.schema, "sales");
    assert_eq!(trigger.retry_count, 0);
    assert_eq!(
        trigger.columns.as_deref(),
        Some(&["status".to_string(), "total".to_string()][..])
    );
    assert_eq!(trigger.timeout, Duration::from_millis(2500));
    assert_eq!(trigger.concurrency, 1);
    let secret = trigger.secret.as_ref().unwrap();
    assert_eq!(
        secret.sign(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#
        ),
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
    );
    assert!(!format!("{trigger:?}").contains("C2FVsBQ"));
    assert_eq!(set.for_table("sales", "orders").len(), 1);
}

#[test]
fn environment_references_expand() {
    let env = |name: &str| match name {
        "TOKEN" => Some("abc123".to_string()),
        "REGION" => Some("eu".to_string()),
        "SIGNING_SECRET" => Some("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_string()),
        _ => None,
    };
    let yaml = trigger_with(
        "  headers:\n    Authorization: Bearer ${TOKEN}\n    X-Route: ${REGION}-${TOKEN}\n    \
         X-Literal: \"$${TOKEN} costs $5 and $$\"\n  secret: ${SIGNING_SECRET}\n",
    );
    let set = TriggerSet::parse(&yaml, &env).unwrap();
    let trigger = set.get("t").unwrap();
    let values: Vec<(&str, &str)> = trigger
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
        .collect();
    assert_eq!(
        values,
        [
            ("authorization", "Bearer abc123"),
            ("x-route", "eu-abc123"),
            ("x-literal", "${TOKEN} costs $5 and $$"),
        ]
    );
    let secret = trigger.secret.as_ref().unwrap();
    assert_eq!(
        secret.sign(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#
        ),
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
    );
}

#[test]
fn unset_variable_is_named() {
    let yaml = trigger_with("  headers:\n    X-Api-Key: ${API_KEY}\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": environment variable "API_KEY" in headers.x-api-key is not set; set it, or write $${ for a literal ${"#
    );
    let yaml = trigger_with("  secret: ${WEBHOOK_SECRET}\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": environment variable "WEBHOOK_SECRET" in secret is not set; set it, or write $${ for a literal ${"#
    );
}

#[test]
fn malformed_references_are_rejected() {
    let yaml = trigger_with("  secret: \"${OPEN\"\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": unterminated ${ in secret; close it with }, or write $${ for a literal ${"#
    );
    let yaml = trigger_with("  headers:\n    X-Key: \"${NOT-A-NAME}\"\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": invalid environment variable name "NOT-A-NAME" in headers.x-key; use letters, digits and "_", or write $${ for a literal ${"#
    );
}

#[test]
fn unknown_field_is_named() {
    let yaml = trigger_with("  retries: 5\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": unknown field "retries"; valid fields are name, schema, table, operations, webhook_url, headers, retry_count, enabled, columns, timeout_ms, secret, concurrency"#
    );
}

#[test]
fn missing_fields_are_named() {
    let yaml = "- table: orders\n  operations: [create]\n  webhook_url: https://h.example/x\n";
    assert_eq!(
        error(yaml),
        r#"trigger #1: missing required field "name"; add name: order_created"#
    );
    let yaml = format!(
        "{SEED}- name: third\n  operations: [create]\n  webhook_url: https://h.example/x\n"
    );
    assert_eq!(
        error(&yaml),
        r#"trigger "third": missing required field "table"; add table: orders"#
    );
    let yaml = "- name: t\n  table: orders\n  webhook_url: https://h.example/x\n";
    assert_eq!(
        error(yaml),
        r#"trigger "t": missing required field "operations"; add operations: [create]"#
    );
    let yaml = "- name: t\n  table: orders\n  operations: [create]\n";
    assert_eq!(
        error(yaml),
        r#"trigger "t": missing required field "webhook_url"; add webhook_url: https://api.example.com/hooks/orders"#
    );
}

#[test]
fn invalid_names_use_position() {
    let yaml = format!("{SEED}- name: \"order created!\"\n  table: orders\n  operations: [create]\n  webhook_url: https://h.example/x\n");
    assert_eq!(
        error(&yaml),
        r#"trigger #3: invalid name "order created!"; use 1 to 100 letters, digits, "_", "-" or ".""#
    );
    let yaml = "- name: \"\"\n  table: orders\n  operations: [create]\n  webhook_url: https://h.example/x\n";
    assert!(error(yaml).starts_with(r#"trigger #1: invalid name """#));
    let long = "n".repeat(101);
    let yaml = format!("- name: {long}\n  table: orders\n  operations: [create]\n  webhook_url: https://h.example/x\n");
    assert!(error(&yaml).starts_with("trigger #1: invalid name"));
    let yaml = format!(
        "- name: {}\n  table: orders\n  operations: [create]\n  webhook_url: https://h.example/x\n",
        "n".repeat(100)
    );
    assert!(parse(&yaml).is_ok());
}

#[test]
fn duplicate_name_is_rejected() {
    let yaml = format!("{SEED}- name: order_created\n  table: orders\n  operations: [delete]\n  webhook_url: https://h.example/x\n");
    assert_eq!(
        error(&yaml),
        r#"trigger #3: duplicate name "order_created", already used by trigger #1; give every trigger a unique name"#
    );
}

#[test]
fn operations_are_checked() {
    let yaml = SEED.replace("operations: [create]", "operations: [insert]");
    assert_eq!(
        error(&yaml),
        r#"trigger "order_created": unknown operation "insert" in operations; use create, update or delete"#
    );
    let yaml = SEED.replace("operations: [create]", "operations: [create, create]");
    assert_eq!(
        error(&yaml),
        r#"trigger "order_created": duplicate operation "create" in operations; list each operation once"#
    );
    let yaml = SEED.replace("operations: [create]", "operations: []");
    assert_eq!(
        error(&yaml),
        r#"trigger "order_created": operations is empty; list at least one of create, update or delete"#
    );
    let yaml = SEED.replace("operations: [create]", "operations: create");
    assert_eq!(
        error(&yaml),
        r#"trigger "order_created": invalid operations "create"; use a list such as [create, update]"#
    );
    let yaml = SEED.replace("operations: [create]", "operations: [truncate]");
    assert!(error(&yaml).contains(r#"unknown operation "truncate""#));
}

#[test]
fn webhook_url_is_checked() {
    let yaml = SEED.replace(
        "\"https://api.example.com/hooks/order-created\"",
        "not a url",
    );
    assert_eq!(
        error(&yaml),
        r#"trigger "order_created": invalid webhook_url "not a url" (relative URL without a base); use an absolute http:// or https:// URL such as https://api.example.com/hooks"#
    );
    let yaml = SEED.replace(
        "\"https://api.example.com/hooks/order-created\"",
        "ftp://user:pw@files.example.com/in",
    );
    assert_eq!(
        error(&yaml),
        r#"trigger "order_created": invalid webhook_url "ftp://user@files.example.com/in": it needs the scheme http or https and a host; use an absolute http:// or https:// URL such as https://api.example.com/hooks"#
    );
    let yaml = SEED.replace(
        "\"https://api.example.com/hooks/order-created\"",
        "\"mailto:ops@example.com\"",
    );
    assert!(error(&yaml).contains("it needs the scheme http or https and a host"));
    let yaml = SEED.replace("\"https://api.example.com/hooks/order-created\"", "42");
    assert!(error(&yaml).starts_with(r#"trigger "order_created": invalid webhook_url 42;"#));
}

#[test]
fn headers_are_checked() {
    let yaml = trigger_with("  headers:\n    \"X Secret\": value\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": invalid header name "X Secret" in headers; use letters, digits and "-", like X-Api-Key"#
    );
    let yaml = trigger_with("  headers:\n    X-Key: one\n    x-key: two\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": duplicate header "x-key" in headers; header names are case-insensitive, so list each once"#
    );
    let yaml = trigger_with("  headers:\n    Webhook-Signature: forged\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": header "webhook-signature" in headers is set by walgate; remove it"#
    );
    let yaml = trigger_with("  headers:\n    Content-Type: text/plain\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": header "content-type" in headers is set by walgate; remove it"#
    );
    let yaml = trigger_with("  headers:\n    X-Key: [a, b]\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": invalid value for header "x-key": expected text, found a list"#
    );
    let yaml = trigger_with("  headers: \"X-Key: hunter2\"\n");
    let message = error(&yaml);
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.starts_with(r#"trigger "t": invalid headers: expected a mapping"#));
}

#[test]
fn header_values_stay_out_of_errors() {
    let env = |name: &str| (name == "TOKEN").then(|| "hunter2\r\nX-Injected: 1".to_string());
    let yaml = trigger_with("  headers:\n    Authorization: Bearer ${TOKEN}\n");
    let message = error_with_env(&yaml, &env);
    assert_eq!(
        message,
        r#"trigger "t": invalid value for header "authorization": it contains a line break or another control character; remove it"#
    );
    let yaml = trigger_with("  headers:\n    X-Count: 3\n    X-Flag: true\n");
    let set = parse(&yaml).unwrap();
    let trigger = set.get("t").unwrap();
    assert_eq!(trigger.headers[0].1.to_str().unwrap(), "3");
    assert_eq!(trigger.headers[1].1.to_str().unwrap(), "true");
    assert!(!format!("{trigger:?}").contains("true\""));
}

#[test]
fn numbers_are_range_checked() {
    let cases = [
        (
            "retry_count: 101",
            r#"trigger "t": invalid retry_count 101; use a whole number from 0 to 100"#,
        ),
        (
            "retry_count: -1",
            r#"trigger "t": invalid retry_count -1; use a whole number from 0 to 100"#,
        ),
        (
            "retry_count: three",
            r#"trigger "t": invalid retry_count "three"; use a whole number from 0 to 100"#,
        ),
        (
            "timeout_ms: 99",
            r#"trigger "t": invalid timeout_ms 99; use a whole number from 100 to 300000"#,
        ),
        (
            "timeout_ms: 1.5",
            r#"trigger "t": invalid timeout_ms 1.5; use a whole number from 100 to 300000"#,
        ),
        (
            "concurrency: 0",
            r#"trigger "t": invalid concurrency 0; use a whole number from 1 to 1024"#,
        ),
        (
            "concurrency: 1025",
            r#"trigger "t": invalid concurrency 1025; use a whole number from 1 to 1024"#,
        ),
        (
            "enabled: yes",
            r#"trigger "t": invalid enabled "yes"; use true or false"#,
        ),
    ];
    for (field, expected) in cases {
        assert_eq!(
            error(&trigger_with(&format!("  {field}\n"))),
            expected,
            "{field}"
        );
    }
    for field in [
        "retry_count: 100",
        "timeout_ms: 100",
        "timeout_ms: 300000",
        "concurrency: 1024",
    ] {
        assert!(
            parse(&trigger_with(&format!("  {field}\n"))).is_ok(),
            "{field}"
        );
    }
}

#[test]
fn schema_and_table_are_checked() {
    let yaml = trigger_with("  schema: \"\"\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": invalid schema ""; use the name as stored in the catalog, 1 to 63 bytes"#
    );
    let yaml = trigger_with("  schema: walgate\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": schema "walgate" is walgate's own schema, whose changes emit no events; use the schema of an application table"#
    );
    let yaml = SEED.replace("table: orders", &format!("table: {}", "t".repeat(64)));
    assert!(error(&yaml).starts_with(r#"trigger "order_created": invalid table "ttt"#));
}

#[test]
fn columns_are_checked() {
    let yaml = trigger_with("  columns: []\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": columns is empty; list at least one column, or remove columns to fire on every update"#
    );
    let yaml = trigger_with("  columns: [status, status]\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": duplicate column "status" in columns; list each column once"#
    );
    let yaml = trigger_with("  columns: status\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "t": invalid columns "status"; use a list of column names such as [status, total]"#
    );
    let yaml = SEED.replace("  retry_count: 3\n", "  columns: [status]\n");
    assert_eq!(
        error(&yaml),
        r#"trigger "order_created": columns applies only to update, but operations does not include update; add update to operations or remove columns"#
    );
}

#[test]
fn secret_errors_hide_the_secret() {
    let yaml = trigger_with("  secret: \"whsec_hunter2!!\"\n");
    let message = error(&yaml);
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message
        .starts_with(r#"trigger "t": secret starts with whsec_ but the rest is not valid base64"#));
    let yaml = trigger_with("  secret: \"\"\n");
    assert!(error(&yaml).starts_with(r#"trigger "t": secret is empty;"#));
    let yaml = trigger_with("  secret: 123456\n");
    let message = error(&yaml);
    assert_eq!(
        message,
        r#"trigger "t": invalid secret: expected text, found a number; quote the secret"#
    );
}

#[test]
fn document_shape_is_checked() {
    assert_eq!(
        error("name: t\ntable: orders\n"),
        r#"invalid trigger file: expected a list of triggers, found a mapping; start each trigger with "- name:""#
    );
    assert_eq!(
        error("- just a string\n"),
        "trigger #1: expected a mapping of fields such as name, table, operations and webhook_url, found text"
    );
    let message = error("- name: t\n  table: [orders\n");
    assert!(
        message.starts_with("invalid trigger file <inline>: "),
        "{message}"
    );
    assert!(message.contains("line 2 column"), "{message}");
}

#[test]
fn load_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("triggers.yaml");
    std::fs::write(&path, SEED).unwrap();
    let set = TriggerSet::load(&path).unwrap();
    assert_eq!(set.triggers().len(), 2);

    let missing = dir.path().join("missing.yaml");
    let message = TriggerSet::load(&missing).unwrap_err().to_string();
    assert!(message.starts_with(&format!("cannot read trigger file {}: ", missing.display())));

    std::fs::write(&path, "- name: [\n").unwrap();
    let message = TriggerSet::load(&path).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("invalid trigger file {}: ", path.display())),
        "{message}"
    );
}

#[test]
fn example_file_loads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/triggers.example.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let env = |name: &str| Some(format!("value-of-{name}"));
    let set = TriggerSet::parse(&text, &env).unwrap();
    assert!(!set.is_empty());
}

const SCHEMA_SQL: &str = "
CREATE TABLE orders (id bigint PRIMARY KEY, status text, total numeric);
CREATE TABLE order_lines (order_id bigint, line_no int, sku text, PRIMARY KEY (line_no, order_id));
CREATE TABLE audit_log (at timestamptz, note text);
CREATE SCHEMA sales;
CREATE TABLE sales.invoices (number text PRIMARY KEY, paid boolean);
ALTER TABLE sales.invoices REPLICA IDENTITY FULL;
CREATE TABLE readings (sensor int, at date, value real, PRIMARY KEY (sensor, at))
    PARTITION BY RANGE (at);
CREATE TABLE readings_2026 PARTITION OF readings FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
ALTER TABLE readings REPLICA IDENTITY FULL;
";

fn hook(name: &str, table: &str, extra: &str) -> String {
    format!(
        "- name: {name}\n  {table}\n  operations: [create, update, delete]\n  \
         webhook_url: https://hooks.example.com/{name}\n{extra}"
    )
}

#[tokio::test]
async fn catalog_check_reports_primary_keys() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(SCHEMA_SQL).await.unwrap();

    let yaml = [
        hook("a", "table: orders", ""),
        hook("b", "table: order_lines", ""),
        hook("c", "table: audit_log", "  enabled: false\n"),
        hook(
            "d",
            "schema: sales\n  table: invoices",
            "  columns: [paid]\n",
        ),
        hook("e", "table: readings", ""),
    ]
    .concat();
    let set = parse(&yaml).unwrap();
    let keys = check_catalog(&set, &db).await.unwrap();
    assert_eq!(keys.primary_key("public", "orders"), ["id"]);
    assert_eq!(
        keys.primary_key("public", "order_lines"),
        ["line_no", "order_id"]
    );
    assert!(keys.primary_key("public", "audit_log").is_empty());
    assert_eq!(keys.primary_key("sales", "invoices"), ["number"]);
    assert_eq!(keys.primary_key("public", "readings"), ["sensor", "at"]);
    assert!(keys.primary_key("public", "unknown").is_empty());

    let unknown_table = parse(&hook("x", "table: ordrs", "")).unwrap();
    assert_eq!(
        check_catalog(&unknown_table, &db)
            .await
            .unwrap_err()
            .to_string(),
        r#"trigger "x": unknown table "public"."ordrs": no ordinary or partitioned table has this schema and table; create it, or correct schema and table (names are case-sensitive)"#
    );
    let wrong_schema = parse(&hook("x", "schema: sales\n  table: orders", "")).unwrap();
    let message = check_catalog(&wrong_schema, &db)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(r#"trigger "x": unknown table "sales"."orders""#),
        "{message}"
    );

    let unknown_column = parse(&hook(
        "x",
        "schema: sales\n  table: invoices",
        "  columns: [paid, amount]\n",
    ))
    .unwrap();
    assert_eq!(
        check_catalog(&unknown_column, &db)
            .await
            .unwrap_err()
            .to_string(),
        r#"trigger "x": unknown column "amount" in columns; table "sales"."invoices" has the columns number, paid"#
    );

    let not_full = parse(&hook("x", "table: orders", "  columns: [status]\n")).unwrap();
    assert_eq!(
        check_catalog(&not_full, &db).await.unwrap_err().to_string(),
        r#"trigger "x": columns needs REPLICA IDENTITY FULL on "public"."orders", because UPDATE events carry no old values to compare otherwise; run ALTER TABLE "public"."orders" REPLICA IDENTITY FULL"#
    );

    let partition_not_full = parse(&hook("x", "table: readings", "  columns: [value]\n")).unwrap();
    assert_eq!(
        check_catalog(&partition_not_full, &db)
            .await
            .unwrap_err()
            .to_string(),
        r#"trigger "x": columns needs REPLICA IDENTITY FULL on "public"."readings_2026", because UPDATE events carry no old values to compare otherwise; run ALTER TABLE "public"."readings_2026" REPLICA IDENTITY FULL"#
    );
    db.batch_execute("ALTER TABLE readings_2026 REPLICA IDENTITY FULL")
        .await
        .unwrap();
    check_catalog(&partition_not_full, &db).await.unwrap();

    let empty = check_catalog(&TriggerSet::empty(), &db).await.unwrap();
    assert!(empty.primary_key("public", "orders").is_empty());
}
