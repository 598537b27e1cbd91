//! SQL statements for REST requests.
//!
//! Every identifier comes from the catalog ([`Table`]) and is quoted. Every value from the
//! request is a bound parameter, sent in text form and cast to the column's type, so
//! PostgreSQL's own input functions convert it.
//!
//! Rows are read as one JSON text per row. `row_to_json` over the selected columns keeps column
//! order, and columns whose `row_to_json` form differs from `to_jsonb` (floats, json, arrays,
//! composites, domains) pass through `to_jsonb` first, so values match the change events.

use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};

use super::error::RestError;
use super::params::{Filter, FilterOp, SortKey};
use super::schema::{quote_ident, Column, Table};

/// A value bound in text form; PostgreSQL parses it with the input function of the type it
/// infers for the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextParam(pub Option<String>);

impl ToSql for TextParam {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match &self.0 {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// How to check one parameter on its own when a statement fails with a data error, so the
/// error can name the column at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub column: String,
    /// A statement with one parameter that fails the same way the value did.
    pub sql: String,
    pub value: String,
}

/// A statement with its parameters.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub sql: String,
    pub params: Vec<TextParam>,
    pub probes: Vec<Probe>,
}

impl Query {
    fn bind(&mut self, value: String, probe: Option<(&Column, String)>) -> String {
        if let Some((column, sql)) = probe {
            self.probes.push(Probe {
                column: column.name.clone(),
                sql,
                value: value.clone(),
            });
        }
        self.params.push(TextParam(Some(value)));
        format!("${}", self.params.len())
    }

    /// Binds a value compared with `column`, cast to the column's type. The cast puts the
    /// type in the statement text, so a cached statement is not reused after the column's
    /// type changes, and composite values are read as the column's type, not as `record`.
    fn bind_for(&mut self, column: &Column, value: &str) -> String {
        let probe = format!("SELECT $1::text::{}", column.type_sql);
        let param = self.bind(value.to_string(), Some((column, probe)));
        format!("{param}::{}", column.type_sql)
    }

    /// Returns the parameters as the slice tokio-postgres takes.
    pub fn param_refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|param| param as &(dyn ToSql + Sync))
            .collect()
    }
}

/// The columns a read returns: `select` when given, else all, in table order.
pub fn selected<'t>(
    table: &'t Table,
    select: Option<&[String]>,
) -> Result<Vec<&'t Column>, RestError> {
    match select {
        None => Ok(table.columns.iter().collect()),
        Some(names) => names
            .iter()
            .map(|name| {
                table
                    .column(name)
                    .ok_or_else(|| unknown_column(table, name))
            })
            .collect(),
    }
}

/// Builds the error for a column name the table does not have.
pub fn unknown_column(table: &Table, name: &str) -> RestError {
    RestError::bad_request(
        "unknown_column",
        format!("table {} has no column {name:?}", table.display_name()),
    )
    .with_detail("column", name)
}

fn projection(columns: &[&Column]) -> String {
    let list: Vec<String> = columns
        .iter()
        .map(|column| {
            let name = quote_ident(&column.name);
            if column.wrap_jsonb {
                format!("to_jsonb({name}) AS {name}")
            } else {
                name
            }
        })
        .collect();
    // An empty list selects a row with no columns, which row_to_json writes as `{}`.
    list.join(", ")
}

/// Builds the `RETURNING` list of a write from the columns the response shows only, so a
/// role that may write but not read some columns can still write.
fn returning_list(columns: &[&Column], qualifier: &str) -> String {
    if columns.is_empty() {
        return "NULL".into();
    }
    let names: Vec<String> = columns
        .iter()
        .map(|column| format!("{qualifier}{}", quote_ident(&column.name)))
        .collect();
    names.join(", ")
}

/// Wraps a row source in the JSON projection: one text column per row.
fn json_rows(columns: &[&Column], from: &str) -> String {
    format!(
        "SELECT row_to_json(_w.*)::text FROM (SELECT {} FROM {from}) _w",
        projection(columns)
    )
}

/// Columns, filters, order and page of a read.
pub struct ReadSpec<'a> {
    pub columns: Vec<&'a Column>,
    pub filters: &'a [Filter],
    pub sort: &'a [SortKey],
    pub limit: Option<u64>,
    pub offset: u64,
}

/// `SELECT` with filters, sort, limit and offset, one JSON text per row.
pub fn read(table: &Table, spec: &ReadSpec<'_>) -> Result<Query, RestError> {
    let mut query = Query::default();
    let mut from = table.sql_name();
    let conditions = where_clause(table, spec.filters, &mut query)?;
    if !conditions.is_empty() {
        from.push_str(" WHERE ");
        from.push_str(&conditions.join(" AND "));
    }
    if !spec.sort.is_empty() {
        let keys = spec
            .sort
            .iter()
            .map(|key| {
                let column = table
                    .column(&key.column)
                    .ok_or_else(|| unknown_column(table, &key.column))?;
                let direction = if key.descending { " DESC" } else { "" };
                Ok(format!("{}{direction}", quote_ident(&column.name)))
            })
            .collect::<Result<Vec<_>, RestError>>()?;
        from.push_str(" ORDER BY ");
        from.push_str(&keys.join(", "));
    }
    if let Some(limit) = spec.limit {
        from.push_str(&format!(" LIMIT {limit}"));
    }
    if spec.offset > 0 {
        from.push_str(&format!(" OFFSET {}", spec.offset));
    }
    query.sql = json_rows(&spec.columns, &from);
    Ok(query)
}

fn where_clause(
    table: &Table,
    filters: &[Filter],
    query: &mut Query,
) -> Result<Vec<String>, RestError> {
    let mut conditions = Vec::with_capacity(filters.len());
    for filter in filters {
        let column = table
            .column(&filter.column)
            .ok_or_else(|| unknown_column(table, &filter.column))?;
        let name = quote_ident(&column.name);
        let compare = |query: &mut Query, operator: &str| {
            let param = query.bind_for(column, &filter.values[0]);
            format!("{name} {operator} {param}")
        };
        let condition = match filter.op {
            FilterOp::Eq => compare(query, "="),
            FilterOp::Ne => compare(query, "<>"),
            FilterOp::Gt => compare(query, ">"),
            FilterOp::Gte => compare(query, ">="),
            FilterOp::Lt => compare(query, "<"),
            FilterOp::Lte => compare(query, "<="),
            FilterOp::Like | FilterOp::Ilike => {
                let operator = if filter.op == FilterOp::Like {
                    "LIKE"
                } else {
                    "ILIKE"
                };
                let param = query.bind(filter.values[0].clone(), None);
                if column.textual {
                    format!("{name} {operator} {param}")
                } else {
                    format!("{name}::text {operator} {param}::text")
                }
            }
            FilterOp::In | FilterOp::NotIn => {
                let negated = filter.op == FilterOp::NotIn;
                if filter.values.is_empty() {
                    // Nothing is in an empty list.
                    (if negated { "true" } else { "false" }).to_string()
                } else {
                    let params: Vec<String> = filter
                        .values
                        .iter()
                        .map(|value| query.bind_for(column, value))
                        .collect();
                    let operator = if negated { "NOT IN" } else { "IN" };
                    format!("{name} {operator} ({})", params.join(", "))
                }
            }
            FilterOp::IsNull => format!("{name} IS NULL"),
            FilterOp::IsNotNull => format!("{name} IS NOT NULL"),
        };
        conditions.push(condition);
    }
    Ok(conditions)
}

/// Conditions matching one row by its primary key, `key_values` in key order.
pub fn key_filters(table: &Table, key_values: Vec<String>) -> Vec<Filter> {
    table
        .primary_key
        .iter()
        .zip(key_values)
        .map(|(&index, value)| Filter {
            column: table.columns[index].name.clone(),
            op: FilterOp::Eq,
            values: vec![value],
        })
        .collect()
}

/// `INSERT` of rows that all set the same `keys`, given as one JSON array parameter, returning
/// the inserted rows as JSON text in the order given.
pub fn insert(table: &Table, keys: &[&Column], rows_json: String, returning: &[&Column]) -> Query {
    let mut query = Query::default();
    let param = query.bind(rows_json, None);
    let target = table.sql_name();
    let columns: Vec<String> = keys.iter().map(|c| quote_ident(&c.name)).collect();
    let values: Vec<String> = keys
        .iter()
        .map(|c| format!("_r.{}", quote_ident(&c.name)))
        .collect();
    let insert = if keys.is_empty() {
        format!(
            "INSERT INTO {target} SELECT FROM json_array_elements({param}::json) RETURNING {}",
            returning_list(returning, "")
        )
    } else {
        format!(
            "INSERT INTO {target} ({}) SELECT {} FROM json_populate_recordset(NULL::{target}, \
             {param}::json) AS _r RETURNING {}",
            columns.join(", "),
            values.join(", "),
            returning_list(returning, "")
        )
    };
    query.sql = format!("WITH _ins AS ({insert}) {}", json_rows(returning, "_ins"));
    query
}

/// `UPDATE` of the row with the given key, setting `keys` from one JSON object parameter.
pub fn update(
    table: &Table,
    keys: &[&Column],
    row_json: String,
    key_values: Vec<String>,
    returning: &[&Column],
) -> Query {
    let mut query = Query::default();
    let param = query.bind(row_json, None);
    let target = table.sql_name();
    let assignments: Vec<String> = keys
        .iter()
        .map(|c| {
            let name = quote_ident(&c.name);
            format!("{name} = _r.{name}")
        })
        .collect();
    let conditions = key_conditions(table, key_values, &mut query, "_t.");
    query.sql = format!(
        "WITH _upd AS (UPDATE {target} AS _t SET {} FROM json_populate_record(NULL::{target}, \
         {param}::json) AS _r WHERE {} RETURNING {}) {}",
        assignments.join(", "),
        conditions.join(" AND "),
        returning_list(returning, "_t."),
        json_rows(returning, "_upd")
    );
    query
}

/// `DELETE` of the row with the given key; the statement returns the number of rows deleted.
pub fn delete(table: &Table, key_values: Vec<String>) -> Query {
    let mut query = Query::default();
    let conditions = key_conditions(table, key_values, &mut query, "");
    query.sql = format!(
        "WITH _del AS (DELETE FROM {} WHERE {} RETURNING 1) SELECT count(*) FROM _del",
        table.sql_name(),
        conditions.join(" AND ")
    );
    query
}

fn key_conditions(
    table: &Table,
    key_values: Vec<String>,
    query: &mut Query,
    qualifier: &str,
) -> Vec<String> {
    table
        .primary_key
        .iter()
        .zip(key_values)
        .map(|(&index, value)| {
            let column = &table.columns[index];
            let param = query.bind_for(column, &value);
            format!("{qualifier}{} = {param}", quote_ident(&column.name))
        })
        .collect()
}

/// Builds a statement that converts one JSON value the way `json_populate_record` does for
/// `column`, to find which field of a written row PostgreSQL rejected.
pub fn write_probe(table: &Table, column: &Column, value: &serde_json::Value) -> Probe {
    let mut object = serde_json::Map::new();
    object.insert(column.name.clone(), value.clone());
    Probe {
        column: column.name.clone(),
        sql: format!(
            "SELECT (json_populate_record(NULL::{}, $1::json)).{}",
            table.sql_name(),
            quote_ident(&column.name)
        ),
        value: serde_json::Value::Object(object).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, type_sql: &str, wrap: bool, textual: bool) -> Column {
        Column {
            name: name.into(),
            type_sql: type_sql.into(),
            wrap_jsonb: wrap,
            textual,
        }
    }

    fn orders() -> Table {
        Table {
            schema: "public".into(),
            name: "orders".into(),
            columns: vec![
                column("id", "pg_catalog.int8", false, false),
                column("status", "pg_catalog.text", false, true),
                column("ratio", "pg_catalog.float8", true, false),
                column("we\"ird", "pg_catalog.int4", false, false),
            ],
            primary_key: vec![0],
        }
    }

    fn filter(column: &str, op: FilterOp, values: &[&str]) -> Filter {
        Filter {
            column: column.into(),
            op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn read_binds_every_value_and_quotes_every_name() {
        let table = orders();
        let filters = vec![
            filter("status", FilterOp::Eq, &["x'); DROP TABLE orders; --"]),
            filter("id", FilterOp::In, &["1", "2"]),
            filter("we\"ird", FilterOp::IsNull, &[]),
            filter("id", FilterOp::Like, &["1%"]),
        ];
        let sort = vec![SortKey {
            column: "ratio".into(),
            descending: true,
        }];
        let spec = ReadSpec {
            columns: selected(&table, None).unwrap(),
            filters: &filters,
            sort: &sort,
            limit: Some(10),
            offset: 5,
        };
        let query = read(&table, &spec).unwrap();
        assert_eq!(
            query.sql,
            "SELECT row_to_json(_w.*)::text FROM (SELECT \"id\", \"status\", to_jsonb(\"ratio\") \
             AS \"ratio\", \"we\"\"ird\" FROM \"public\".\"orders\" WHERE \"status\" = \
             $1::pg_catalog.text AND \"id\" IN ($2::pg_catalog.int8, $3::pg_catalog.int8) AND \"we\"\"ird\" IS NULL AND \"id\"::text LIKE $4::text ORDER BY \
             \"ratio\" DESC LIMIT 10 OFFSET 5) _w"
        );
        assert_eq!(
            query.params[0],
            TextParam(Some("x'); DROP TABLE orders; --".into()))
        );
        assert_eq!(query.probes.len(), 3);
        assert_eq!(query.probes[1].sql, "SELECT $1::text::pg_catalog.int8");
    }

    #[test]
    fn unknown_columns_are_refused_by_name() {
        let table = orders();
        let filters = vec![filter("nope", FilterOp::Eq, &["1"])];
        let spec = ReadSpec {
            columns: selected(&table, None).unwrap(),
            filters: &filters,
            sort: &[],
            limit: None,
            offset: 0,
        };
        let err = read(&table, &spec).err().unwrap();
        assert_eq!(err.message, "table public.orders has no column \"nope\"");
        let err = selected(&table, Some(&["id".into(), "id;--".into()]))
            .err()
            .unwrap();
        assert_eq!(err.details["column"], "id;--");
    }

    #[test]
    fn writes_take_values_from_json_parameters() {
        let table = orders();
        let keys = vec![&table.columns[1]];
        let returning = selected(&table, Some(&["id".into()])).unwrap();
        let query = insert(&table, &keys, "[{\"status\":\"a\"}]".into(), &returning);
        assert_eq!(
            query.sql,
            "WITH _ins AS (INSERT INTO \"public\".\"orders\" (\"status\") SELECT _r.\"status\" \
             FROM json_populate_recordset(NULL::\"public\".\"orders\", $1::json) AS _r RETURNING \
             \"id\") SELECT row_to_json(_w.*)::text FROM (SELECT \"id\" FROM _ins) _w"
        );
        let query = update(&table, &keys, "{}".into(), vec!["7".into()], &returning);
        assert!(
            query
                .sql
                .contains("WHERE _t.\"id\" = $2::pg_catalog.int8 RETURNING _t.\"id\")"),
            "{}",
            query.sql
        );
        assert_eq!(query.params[1], TextParam(Some("7".into())));
        let query = delete(&table, vec!["7".into()]);
        assert_eq!(
            query.sql,
            "WITH _del AS (DELETE FROM \"public\".\"orders\" WHERE \"id\" = \
             $1::pg_catalog.int8 RETURNING 1) SELECT count(*) FROM _del"
        );
    }
}
