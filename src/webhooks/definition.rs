//! Trigger definitions: the YAML list of which row changes call which webhooks.
//!
//! The format and every rule are documented in `docs/triggers.md`. Parsing validates
//! everything that can be checked offline and names the trigger, the field and the fix in each
//! error; [`check_catalog`] then checks the tables and columns against the database.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;
use serde_yaml_ng::{Mapping, Value};

use crate::change::Operation;
use crate::decode::INTERNAL_SCHEMA;
use crate::report::error_chain;
use crate::webhooks::signing::SigningKey;

/// Every field a trigger may have, in documentation order.
const FIELDS: [&str; 12] = [
    "name",
    "schema",
    "table",
    "operations",
    "webhook_url",
    "headers",
    "retry_count",
    "enabled",
    "columns",
    "timeout_ms",
    "secret",
    "concurrency",
];

const MAX_NAME_CHARS: usize = 100;
/// PostgreSQL's identifier limit, NAMEDATALEN - 1 bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Headers walgate sets itself: HTTP framing, the JSON content type and the Standard Webhooks
/// headers.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Error from loading, validating or checking trigger definitions. No variant's text contains
/// a secret or a header value.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("cannot read trigger file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// YAML syntax error; the text keeps serde_yaml_ng's line and column.
    #[error("invalid trigger file {path}: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("invalid trigger file: expected a list of triggers, found {found}; start each trigger with \"- name:\"")]
    NotAList { found: String },
    /// A trigger breaks a rule. `trigger` is `trigger "name"`, or `trigger #N` (counting from
    /// 1) when the name is missing or invalid.
    #[error("{trigger}: {message}")]
    Invalid { trigger: String, message: String },
    #[error("catalog query for trigger tables failed: {}", error_chain(.0))]
    Query(#[from] tokio_postgres::Error),
}

/// The operations a trigger fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Operations {
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
}

/// One validated trigger: which changes of one table call which webhook, and how.
#[derive(Debug)]
pub struct Trigger {
    pub name: String,
    pub schema: String,
    pub table: String,
    pub operations: Operations,
    /// An `http` or `https` URL with a host.
    pub webhook_url: Url,
    /// Extra request headers, in file order, with `${VAR}` references expanded. Values are
    /// marked sensitive so that `Debug` output hides them.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Retries after the first attempt, 0 to 100.
    pub retry_count: u32,
    pub enabled: bool,
    /// When present (never empty), an UPDATE fires only if one of these columns changed.
    pub columns: Option<Vec<String>>,
    /// Timeout of one request, 100 ms to 300 s.
    pub timeout: Duration,
    /// Key for Standard Webhooks signatures; requests are unsigned without one.
    pub secret: Option<SigningKey>,
    /// Maximum requests in flight for this trigger, 1 to 1024.
    pub concurrency: usize,
}

impl Trigger {
    /// Tells whether a change of this kind fires the trigger: false when the trigger is
    /// disabled, and always false for TRUNCATE. The `columns` filter is not applied here.
    pub fn fires_on(&self, operation: Operation) -> bool {
        self.enabled
            && match operation {
                Operation::Insert => self.operations.insert,
                Operation::Update => self.operations.update,
                Operation::Delete => self.operations.delete,
                Operation::Truncate => false,
            }
    }
}

/// A validated list of triggers with an index by table.
#[derive(Debug, Default)]
pub struct TriggerSet {
    triggers: Vec<Arc<Trigger>>,
    by_name: HashMap<String, usize>,
    /// Enabled triggers by schema, then table, so that look-ups borrow `&str` keys.
    by_table: HashMap<String, HashMap<String, Vec<Arc<Trigger>>>>,
}

impl TriggerSet {
    /// A set without triggers.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses and validates YAML: a list of triggers, where an empty text, a text of only
    /// comments, or `[]` is an empty set. `env` looks up `${VAR}` references in `headers` and
    /// `secret`.
    ///
    /// # Errors
    /// The first problem found, as documented on [`TriggerError`].
    pub fn parse(
        yaml: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TriggerSet, TriggerError> {
        parse_with_path(yaml, env, Path::new("<inline>"))
    }

    /// Reads the file at `path` and parses it with the process environment, where an empty
    /// variable counts as unset, as in the gateway settings.
    pub fn load(path: &Path) -> Result<TriggerSet, TriggerError> {
        let text = std::fs::read_to_string(path).map_err(|source| TriggerError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        parse_with_path(&text, &env, path)
    }

    /// All triggers, enabled or not, in file order.
    pub fn triggers(&self) -> &[Arc<Trigger>] {
        &self.triggers
    }

    /// The trigger with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Trigger>> {
        self.by_name.get(name).map(|&index| &self.triggers[index])
    }

    /// Enabled triggers on a table, in file order; empty when there are none. Names are
    /// compared exactly, as stored in the catalog.
    pub fn for_table(&self, schema: &str, table: &str) -> &[Arc<Trigger>] {
        self.by_table
            .get(schema)
            .and_then(|tables| tables.get(table))
            .map_or(&[], Vec::as_slice)
    }

    /// True when the set has no triggers at all (enabled or not).
    pub fn is_empty(&self) -> bool {
        self.triggers.is_empty()
    }

    fn from_triggers(triggers: Vec<Arc<Trigger>>) -> Self {
        let mut set = Self::empty();
        for (index, trigger) in triggers.iter().enumerate() {
            set.by_name.insert(trigger.name.clone(), index);
            if trigger.enabled {
                set.by_table
                    .entry(trigger.schema.clone())
                    .or_default()
                    .entry(trigger.table.clone())
                    .or_default()
                    .push(trigger.clone());
            }
        }
        set.triggers = triggers;
        set
    }
}

fn parse_with_path(
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
    path: &Path,
) -> Result<TriggerSet, TriggerError> {
    let document: Option<Value> =
        serde_yaml_ng::from_str(yaml).map_err(|source| TriggerError::Yaml {
            path: path.to_path_buf(),
            source,
        })?;
    let items = match document {
        None | Some(Value::Null) => return Ok(TriggerSet::empty()),
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            return Err(TriggerError::NotAList {
                found: describe_kind(&other).into(),
            })
        }
    };
    let mut triggers: Vec<Arc<Trigger>> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let trigger = parse_trigger(index + 1, item, env)?;
        if let Some(first) = triggers.iter().position(|t| t.name == trigger.name) {
            return Err(TriggerError::Invalid {
                trigger: format!("trigger #{}", index + 1),
                message: format!(
                    "duplicate name {:?}, already used by trigger #{}; give every trigger a \
                     unique name",
                    trigger.name,
                    first + 1
                ),
            });
        }
        triggers.push(Arc::new(trigger));
    }
    Ok(TriggerSet::from_triggers(triggers))
}

/// The fields of one trigger's mapping, with the label its errors start with.
struct Fields<'a> {
    map: &'a Mapping,
    label: String,
}

fn parse_trigger(
    position: usize,
    item: &Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Trigger, TriggerError> {
    let Value::Mapping(map) = item else {
        return Err(TriggerError::Invalid {
            trigger: format!("trigger #{position}"),
            message: format!(
                "expected a mapping of fields such as name, table, operations and webhook_url, \
                 found {}",
                describe_kind(item)
            ),
        });
    };
    let label = match map.get("name").and_then(Value::as_str) {
        Some(name) if is_valid_name(name) => format!("trigger {name:?}"),
        _ => format!("trigger #{position}"),
    };
    let fields = Fields { map, label };
    fields.reject_unknown()?;
    fields.build(env)
}

impl Fields<'_> {
    fn build(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Trigger, TriggerError> {
        let name = self.name()?;
        let schema = self.identifier("schema", Some("public"))?;
        let table = self.identifier("table", None)?;
        let operations = self.operations()?;
        let webhook_url = self.webhook_url()?;
        let headers = self.headers(env)?;
        let retry_count = self.number("retry_count", 0, 100, 3)?;
        let enabled = self.enabled()?;
        let columns = self.columns(&operations)?;
        let timeout_ms = self.number("timeout_ms", 100, 300_000, 10_000)?;
        let secret = self.secret(env)?;
        let concurrency = self.number("concurrency", 1, 1024, 16)?;
        Ok(Trigger {
            name,
            schema,
            table,
            operations,
            webhook_url,
            headers,
            retry_count: retry_count as u32,
            enabled,
            columns,
            timeout: Duration::from_millis(timeout_ms),
            secret,
            concurrency: concurrency as usize,
        })
    }

    fn error(&self, message: String) -> TriggerError {
        TriggerError::Invalid {
            trigger: self.label.clone(),
            message,
        }
    }

    fn reject_unknown(&self) -> Result<(), TriggerError> {
        for key in self.map.keys() {
            let known = key.as_str().is_some_and(|key| FIELDS.contains(&key));
            if !known {
                return Err(self.error(format!(
                    "unknown field {}; valid fields are {}",
                    describe(key),
                    FIELDS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The field's value; an explicit `null` counts as absent.
    fn get(&self, field: &str) -> Option<&Value> {
        self.map.get(field).filter(|value| !value.is_null())
    }

    fn required(&self, field: &str) -> Result<&Value, TriggerError> {
        self.get(field).ok_or_else(|| {
            let example = match field {
                "name" => "order_created",
                "table" => "orders",
                "operations" => "[create]",
                _ => "https://api.example.com/hooks/orders",
            };
            self.error(format!(
                "missing required field {field:?}; add {field}: {example}"
            ))
        })
    }

    fn name(&self) -> Result<String, TriggerError> {
        let value = self.required("name")?;
        match value.as_str() {
            Some(name) if is_valid_name(name) => Ok(name.to_string()),
            _ => Err(self.error(format!(
                "invalid name {}; use 1 to {MAX_NAME_CHARS} letters, digits, \"_\", \"-\" or \
                 \".\"",
                describe(value)
            ))),
        }
    }

    /// A schema or table name: 1 to 63 bytes, never walgate's own schema.
    fn identifier(&self, field: &str, default: Option<&str>) -> Result<String, TriggerError> {
        let value = match (self.get(field), default) {
            (None, Some(default)) => return Ok(default.to_string()),
            (None, None) => self.required(field)?,
            (Some(value), _) => value,
        };
        let text = value
            .as_str()
            .filter(|text| !text.is_empty() && text.len() <= MAX_IDENTIFIER_BYTES);
        let Some(text) = text else {
            return Err(self.error(format!(
                "invalid {field} {}; use the name as stored in the catalog, 1 to \
                 {MAX_IDENTIFIER_BYTES} bytes",
                describe(value)
            )));
        };
        if field == "schema" && text == INTERNAL_SCHEMA {
            return Err(self.error(format!(
                "schema {text:?} is walgate's own schema, whose changes emit no events; use the \
                 schema of an application table"
            )));
        }
        Ok(text.to_string())
    }

    fn operations(&self) -> Result<Operations, TriggerError> {
        let value = self.required("operations")?;
        let Some(items) = value.as_sequence() else {
            return Err(self.error(format!(
                "invalid operations {}; use a list such as [create, update]",
                describe(value)
            )));
        };
        if items.is_empty() {
            return Err(self.error(
                "operations is empty; list at least one of create, update or delete".into(),
            ));
        }
        let mut operations = Operations::default();
        for item in items {
            let flag = match item.as_str() {
                Some("create") => &mut operations.insert,
                Some("update") => &mut operations.update,
                Some("delete") => &mut operations.delete,
                _ => {
                    return Err(self.error(format!(
                        "unknown operation {} in operations; use create, update or delete",
                        describe(item)
                    )))
                }
            };
            if *flag {
                return Err(self.error(format!(
                    "duplicate operation {} in operations; list each operation once",
                    describe(item)
                )));
            }
            *flag = true;
        }
        Ok(operations)
    }

    fn webhook_url(&self) -> Result<Url, TriggerError> {
        let value = self.required("webhook_url")?;
        let fix = "use an absolute http:// or https:// URL such as https://api.example.com/hooks";
        let Some(text) = value.as_str() else {
            return Err(self.error(format!("invalid webhook_url {}; {fix}", describe(value))));
        };
        let url = Url::parse(text)
            .map_err(|err| self.error(format!("invalid webhook_url {text:?} ({err}); {fix}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            let mut redacted = url.clone();
            // Leave a password embedded in the URL out of the message.
            let _ = redacted.set_password(None);
            return Err(self.error(format!(
                "invalid webhook_url {:?}: it needs the scheme http or https and a host; {fix}",
                redacted.as_str()
            )));
        }
        Ok(url)
    }

    fn headers(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, TriggerError> {
        let Some(value) = self.get("headers") else {
            return Ok(Vec::new());
        };
        let Some(map) = value.as_mapping() else {
            return Err(self.error(format!(
                "invalid headers: expected a mapping of header names to values such as \
                 X-Api-Key: ${{API_KEY}}, found {}",
                describe_kind(value)
            )));
        };
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(map.len());
        for (key, value) in map {
            let name = self.header_name(key)?;
            if headers.iter().any(|(seen, _)| *seen == name) {
                return Err(self.error(format!(
                    "duplicate header {:?} in headers; header names are case-insensitive, so \
                     list each once",
                    name.as_str()
                )));
            }
            let value = self.header_value(&name, value, env)?;
            headers.push((name, value));
        }
        Ok(headers)
    }

    fn header_name(&self, key: &Value) -> Result<HeaderName, TriggerError> {
        let name = key
            .as_str()
            .and_then(|text| HeaderName::from_bytes(text.as_bytes()).ok());
        let Some(name) = name else {
            return Err(self.error(format!(
                "invalid header name {} in headers; use letters, digits and \"-\", like \
                 X-Api-Key",
                describe(key)
            )));
        };
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(self.error(format!(
                "header {:?} in headers is set by walgate; remove it",
                name.as_str()
            )));
        }
        Ok(name)
    }

    fn header_value(
        &self,
        name: &HeaderName,
        value: &Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<HeaderValue, TriggerError> {
        let place = format!("headers.{name}");
        let text = match value {
            Value::String(text) => {
                expand_env(text, env).map_err(|err| self.env_error(err, &place))?
            }
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            other => {
                return Err(self.error(format!(
                    "invalid value for header {:?}: expected text, found {}",
                    name.as_str(),
                    describe_kind(other)
                )))
            }
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            self.error(format!(
                "invalid value for header {:?}: it contains a line break or another control \
                 character; remove it",
                name.as_str()
            ))
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn number(&self, field: &str, min: u64, max: u64, default: u64) -> Result<u64, TriggerError> {
        let Some(value) = self.get(field) else {
            return Ok(default);
        };
        match value.as_u64() {
            Some(number) if (min..=max).contains(&number) => Ok(number),
            _ => Err(self.error(format!(
                "invalid {field} {}; use a whole number from {min} to {max}",
                describe(value)
            ))),
        }
    }

    fn enabled(&self) -> Result<bool, TriggerError> {
        let Some(value) = self.get("enabled") else {
            return Ok(true);
        };
        value.as_bool().ok_or_else(|| {
            self.error(format!(
                "invalid enabled {}; use true or false",
                describe(value)
            ))
        })
    }

    fn columns(&self, operations: &Operations) -> Result<Option<Vec<String>>, TriggerError> {
        let Some(value) = self.get("columns") else {
            return Ok(None);
        };
        let Some(items) = value.as_sequence() else {
            return Err(self.error(format!(
                "invalid columns {}; use a list of column names such as [status, total]",
                describe(value)
            )));
        };
        if items.is_empty() {
            return Err(self.error(
                "columns is empty; list at least one column, or remove columns to fire on every \
                 update"
                    .into(),
            ));
        }
        if !operations.update {
            return Err(self.error(
                "columns applies only to update, but operations does not include update; add \
                 update to operations or remove columns"
                    .into(),
            ));
        }
        let mut columns: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            let column = item
                .as_str()
                .filter(|text| !text.is_empty() && text.len() <= MAX_IDENTIFIER_BYTES);
            let Some(column) = column else {
                return Err(self.error(format!(
                    "invalid column {} in columns; use a column name as stored in the catalog",
                    describe(item)
                )));
            };
            if columns.iter().any(|seen| seen == column) {
                return Err(self.error(format!(
                    "duplicate column {column:?} in columns; list each column once"
                )));
            }
            columns.push(column.to_string());
        }
        Ok(Some(columns))
    }

    fn secret(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<SigningKey>, TriggerError> {
        let Some(value) = self.get("secret") else {
            return Ok(None);
        };
        let Some(text) = value.as_str() else {
            return Err(self.error(format!(
                "invalid secret: expected text, found {}; quote the secret",
                describe_kind(value)
            )));
        };
        let text = expand_env(text, env).map_err(|err| self.env_error(err, "secret"))?;
        let key = SigningKey::parse(&text).map_err(|err| self.error(err.to_string()))?;
        Ok(Some(key))
    }

    fn env_error(&self, err: EnvError, place: &str) -> TriggerError {
        let escape = "or write $${ for a literal ${";
        self.error(match err {
            EnvError::Unset(name) => {
                format!("environment variable {name:?} in {place} is not set; set it, {escape}")
            }
            EnvError::InvalidName(name) => format!(
                "invalid environment variable name {name:?} in {place}; use letters, digits \
                 and \"_\", {escape}"
            ),
            EnvError::Unterminated => {
                format!("unterminated ${{ in {place}; close it with }}, {escape}")
            }
        })
    }
}

/// Trigger names: 1 to 100 ASCII letters, digits, `_`, `-` or `.`.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Error from expanding a `${VAR}` reference. It carries the variable name, never a value.
enum EnvError {
    Unset(String),
    InvalidName(String),
    Unterminated,
}

/// Replaces each `${VAR}` with the variable's value; `$${` stands for a literal `${`, and any
/// other `$` is kept as it is. Variable names are ASCII letters, digits and `_`.
fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or(EnvError::Unterminated)?;
            let name = &after[..end];
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(EnvError::InvalidName(name.to_string()));
            }
            out.push_str(&env(name).ok_or_else(|| EnvError::Unset(name.to_string()))?);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Formats a scalar as written (strings quoted), or names the kind of a collection. Use it only
/// for values that are not secrets.
fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => "null".into(),
        other => describe_kind(other).into(),
    }
}

/// Names the kind of a value, without its content.
fn describe_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Catalog facts about the tables that triggers use.
#[derive(Debug, Default, Clone)]
pub struct TableKeys {
    /// Primary-key columns by schema, then table.
    keys: HashMap<String, HashMap<String, Vec<String>>>,
}

impl TableKeys {
    /// Primary-key column names of a table, in key order; empty when it has none or was not
    /// checked.
    pub fn primary_key(&self, schema: &str, table: &str) -> &[String] {
        self.keys
            .get(schema)
            .and_then(|tables| tables.get(table))
            .map_or(&[], Vec::as_slice)
    }
}

/// A table as the catalog describes it.
struct TableFacts {
    columns: Vec<String>,
    primary_key: Vec<String>,
    /// The table and its partitions whose replica identity is not FULL, as (schema, table).
    not_full: Vec<(String, String)>,
}

const TABLE_QUERY: &str = "
SELECT
    ARRAY(SELECT a.attname::text FROM pg_attribute a
          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum),
    ARRAY(SELECT a.attname::text
          FROM pg_index i
          CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
          WHERE i.indrelid = c.oid AND i.indisprimary
          ORDER BY k.position),
    not_full.schemas,
    not_full.tables
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL (
    -- The table first, then its partitions at any depth.
    SELECT COALESCE(array_agg(pn.nspname::text ORDER BY pc.oid <> c.oid, pc.oid), '{}') AS schemas,
           COALESCE(array_agg(pc.relname::text ORDER BY pc.oid <> c.oid, pc.oid), '{}') AS tables
    FROM pg_class pc JOIN pg_namespace pn ON pn.oid = pc.relnamespace
    WHERE pc.relreplident <> 'f' AND pc.relkind IN ('r', 'p')
      AND pc.oid IN (SELECT c.oid UNION ALL SELECT relid FROM pg_partition_tree(c.oid))
) AS not_full
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')";

/// Checks every trigger, enabled or not, against the database. Its table must exist as an
/// ordinary or partitioned table, and every `columns` entry must be a column of it. A trigger
/// with `columns` needs `REPLICA IDENTITY FULL` on its table and all partitions, because
/// UPDATE events carry no old values to compare otherwise. Returns the tables' primary keys.
///
/// # Errors
/// [`TriggerError::Invalid`] for the first trigger that fails a check, in file order, and
/// [`TriggerError::Query`] when the catalog query fails.
pub async fn check_catalog(
    set: &TriggerSet,
    client: &tokio_postgres::Client,
) -> Result<TableKeys, TriggerError> {
    let mut tables: HashMap<(String, String), Option<TableFacts>> = HashMap::new();
    for trigger in set.triggers() {
        let key = (trigger.schema.clone(), trigger.table.clone());
        if !tables.contains_key(&key) {
            let facts = table_facts(client, &key.0, &key.1).await?;
            tables.insert(key.clone(), facts);
        }
        check_trigger(trigger, tables[&key].as_ref())?;
    }
    let mut keys = TableKeys::default();
    for ((schema, table), facts) in tables {
        let primary_key = facts.map(|facts| facts.primary_key).unwrap_or_default();
        keys.keys
            .entry(schema)
            .or_default()
            .insert(table, primary_key);
    }
    Ok(keys)
}

async fn table_facts(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> Result<Option<TableFacts>, TriggerError> {
    let Some(row) = client.query_opt(TABLE_QUERY, &[&schema, &table]).await? else {
        return Ok(None);
    };
    let schemas: Vec<String> = row.get(2);
    let tables: Vec<String> = row.get(3);
    Ok(Some(TableFacts {
        columns: row.get(0),
        primary_key: row.get(1),
        not_full: schemas.into_iter().zip(tables).collect(),
    }))
}

fn check_trigger(trigger: &Trigger, facts: Option<&TableFacts>) -> Result<(), TriggerError> {
    let error = |message: String| TriggerError::Invalid {
        trigger: format!("trigger {:?}", trigger.name),
        message,
    };
    let qualified = quote_table(&trigger.schema, &trigger.table);
    let Some(facts) = facts else {
        return Err(error(format!(
            "unknown table {qualified}: no ordinary or partitioned table has this schema and \
             table; create it, or correct schema and table (names are case-sensitive)"
        )));
    };
    let Some(columns) = &trigger.columns else {
        return Ok(());
    };
    if let Some(unknown) = columns.iter().find(|c| !facts.columns.contains(c)) {
        return Err(error(format!(
            "unknown column {unknown:?} in columns; table {qualified} has the columns {}",
            facts.columns.join(", ")
        )));
    }
    if let Some((schema, table)) = facts.not_full.first() {
        let target = quote_table(schema, table);
        return Err(error(format!(
            "columns needs REPLICA IDENTITY FULL on {target}, because UPDATE events carry no \
             old values to compare otherwise; run ALTER TABLE {target} REPLICA IDENTITY FULL"
        )));
    }
    Ok(())
}

/// `"schema"."table"`, quoted as SQL identifiers.
fn quote_table(schema: &str, table: &str) -> String {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    format!("{}.{}", quote(schema), quote(table))
}
