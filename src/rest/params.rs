//! The query-string grammar of list requests.
//!
//! - Filters: `col=op.value` or `col.op=value`; a bare `col=value` means `eq`. Operators are
//!   `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `like`, `ilike`, `in`, `not_in`, `is_null` and
//!   `is_not_null`. `in` and `not_in` take a comma-separated list, optionally in parentheses;
//!   an item in double quotes may contain commas, with `\"` and `\\` as escapes. `is_null` and
//!   `is_not_null` take no value (`col=is_null`, `col.is_null=` or `col.is_null=true`).
//! - `select=a,b`, `sort=a,-b,c:desc`, `limit=N`, `offset=N`, `stream=true`.
//!
//! Several filters are combined with AND. The reserved words `select`, `sort`, `limit`, `offset`
//! and `stream` are always parameters, so adding a column of that name never changes what a
//! request means. Such a column is filtered with `col.op=value`, as in `limit.eq=5`. Any other
//! key that is exactly a column name is a filter on that column, even when it contains a dot.

use crate::rest::error::RestError;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

impl FilterOp {
    /// Every operator, with its name in requests.
    pub const ALL: [(&'static str, FilterOp); 12] = [
        ("eq", FilterOp::Eq),
        ("ne", FilterOp::Ne),
        ("gt", FilterOp::Gt),
        ("gte", FilterOp::Gte),
        ("lt", FilterOp::Lt),
        ("lte", FilterOp::Lte),
        ("like", FilterOp::Like),
        ("ilike", FilterOp::Ilike),
        ("in", FilterOp::In),
        ("not_in", FilterOp::NotIn),
        ("is_null", FilterOp::IsNull),
        ("is_not_null", FilterOp::IsNotNull),
    ];

    fn parse(name: &str) -> Option<FilterOp> {
        Self::ALL
            .iter()
            .find(|(candidate, _)| *candidate == name)
            .map(|(_, op)| *op)
    }

    fn names() -> String {
        Self::ALL
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One filter: a column, an operator and its values (one for comparisons, any number for
/// `in` and `not_in`, none for the null tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub column: String,
    pub op: FilterOp,
    pub values: Vec<String>,
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub column: String,
    pub descending: bool,
}

/// A parsed list request. Column names are not checked against the table here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    pub filters: Vec<Filter>,
    pub select: Option<Vec<String>>,
    pub sort: Vec<SortKey>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    /// `stream=true` or `stream=false`; None when the request leaves it to the Accept header.
    pub stream: Option<bool>,
}

impl ListParams {
    /// Returns every column name the request mentions, for checking against the catalog.
    pub fn columns(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.filters.iter().map(|f| f.column.as_str()).collect();
        names.extend(self.sort.iter().map(|s| s.column.as_str()));
        if let Some(select) = &self.select {
            names.extend(select.iter().map(String::as_str));
        }
        names
    }
}

/// Most items one `in` or `not_in` filter may list.
pub const MAX_IN_ITEMS: usize = 1000;

/// Parses a raw (still percent-encoded) query string. `is_column` reports whether a name is a
/// column of the table, which decides how a key with a dot is read.
pub fn parse_list_params(
    query: Option<&str>,
    is_column: &dyn Fn(&str) -> bool,
) -> Result<ListParams, RestError> {
    let mut params = ListParams::default();
    let Some(query) = query else {
        return Ok(params);
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let (key, value) = (key.as_ref(), value.as_ref());
        match key {
            "select" => params.select = Some(parse_select(value)?),
            "sort" => params.sort = parse_sort(value)?,
            "limit" => params.limit = Some(parse_count("limit", value)?),
            "offset" => params.offset = Some(parse_count("offset", value)?),
            "stream" => params.stream = Some(parse_bool("stream", value)?),
            _ if is_column(key) => params.filters.push(value_filter(key, value)?),
            _ => params.filters.push(keyed_filter(key, value, is_column)?),
        }
    }
    Ok(params)
}

/// `col=op.value` or `col=value`.
fn value_filter(column: &str, value: &str) -> Result<Filter, RestError> {
    if let Some(op) = null_test(value) {
        return Ok(Filter {
            column: column.into(),
            op,
            values: Vec::new(),
        });
    }
    if let Some((name, rest)) = value.split_once('.') {
        if let Some(op) = FilterOp::parse(name) {
            return filter(column, op, rest);
        }
    }
    filter(column, FilterOp::Eq, value)
}

/// `col.op=value`, where `col` is not itself a column name.
fn keyed_filter(
    key: &str,
    value: &str,
    is_column: &dyn Fn(&str) -> bool,
) -> Result<Filter, RestError> {
    let Some((column, op_name)) = key.rsplit_once('.') else {
        return Err(unknown_name(key));
    };
    let Some(op) = FilterOp::parse(op_name) else {
        if is_column(column) {
            return Err(RestError::bad_request(
                "invalid_filter",
                format!(
                    "unknown operator {op_name:?} in parameter {key:?}; use one of {}",
                    FilterOp::names()
                ),
            )
            .with_detail("parameter", key));
        }
        return Err(unknown_name(key));
    };
    if !is_column(column) {
        return Err(unknown_name(column));
    }
    if matches!(op, FilterOp::IsNull | FilterOp::IsNotNull) {
        let negate = match value {
            "" | "true" => false,
            "false" => true,
            other => {
                return Err(RestError::bad_request(
                    "invalid_filter",
                    format!("{key}={other:?}: {op_name} takes no value, or true or false"),
                )
                .with_detail("parameter", key))
            }
        };
        let op = match (op, negate) {
            (FilterOp::IsNull, true) => FilterOp::IsNotNull,
            (FilterOp::IsNotNull, true) => FilterOp::IsNull,
            (op, _) => op,
        };
        return Ok(Filter {
            column: column.into(),
            op,
            values: Vec::new(),
        });
    }
    filter(column, op, value)
}

fn null_test(value: &str) -> Option<FilterOp> {
    match value {
        "is_null" | "is_null." => Some(FilterOp::IsNull),
        "is_not_null" | "is_not_null." => Some(FilterOp::IsNotNull),
        _ => None,
    }
}

fn filter(column: &str, op: FilterOp, value: &str) -> Result<Filter, RestError> {
    let values = match op {
        FilterOp::In | FilterOp::NotIn => parse_list(column, value)?,
        FilterOp::IsNull | FilterOp::IsNotNull => {
            if !value.is_empty() {
                return Err(RestError::bad_request(
                    "invalid_filter",
                    format!("the null test on column {column:?} takes no value, got {value:?}"),
                )
                .with_detail("column", column));
            }
            Vec::new()
        }
        _ => vec![value.to_string()],
    };
    Ok(Filter {
        column: column.into(),
        op,
        values,
    })
}

/// Splits `a,b,"c,d"` or `(a,b)` into items.
fn parse_list(column: &str, value: &str) -> Result<Vec<String>, RestError> {
    let inner = match value.strip_prefix('(') {
        Some(rest) => rest.strip_suffix(')').ok_or_else(|| {
            RestError::bad_request(
                "invalid_filter",
                format!(
                    "the list for column {column:?} opens with '(' but does not close: {value:?}"
                ),
            )
            .with_detail("column", column)
        })?,
        None => value,
    };
    if inner.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |why: &str| {
        RestError::bad_request(
            "invalid_filter",
            format!("the list for column {column:?} is malformed ({why}): {value:?}"),
        )
        .with_detail("column", column)
    };
    let mut items = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => {
                        item.push(chars.next().ok_or_else(|| bad("a trailing backslash"))?)
                    }
                    Some('"') => break,
                    Some(c) => item.push(c),
                    None => return Err(bad("an unclosed quote")),
                }
            }
            match chars.next() {
                None => {
                    items.push(item);
                    break;
                }
                Some(',') => items.push(item),
                Some(_) => return Err(bad("text after a closing quote")),
            }
        } else {
            loop {
                match chars.next() {
                    Some(',') => break,
                    Some(c) => item.push(c),
                    None => {
                        items.push(item);
                        return finish_list(column, items);
                    }
                }
            }
            items.push(item);
        }
    }
    finish_list(column, items)
}

fn finish_list(column: &str, items: Vec<String>) -> Result<Vec<String>, RestError> {
    if items.len() > MAX_IN_ITEMS {
        return Err(RestError::bad_request(
            "invalid_filter",
            format!(
                "the list for column {column:?} has {} items; at most {MAX_IN_ITEMS} are allowed",
                items.len()
            ),
        )
        .with_detail("column", column));
    }
    Ok(items)
}

fn parse_select(value: &str) -> Result<Vec<String>, RestError> {
    let columns: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(String::from)
        .collect();
    if columns.is_empty() {
        return Err(RestError::bad_request(
            "invalid_parameter",
            "select is empty; list columns like select=id,status",
        )
        .with_detail("parameter", "select"));
    }
    for (index, column) in columns.iter().enumerate() {
        if columns[..index].contains(column) {
            return Err(RestError::bad_request(
                "invalid_parameter",
                format!("select lists column {column:?} twice; list each column once"),
            )
            .with_detail("parameter", "select"));
        }
    }
    Ok(columns)
}

fn parse_sort(value: &str) -> Result<Vec<SortKey>, RestError> {
    let mut keys = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (column, descending) = if let Some(column) = part.strip_prefix('-') {
            (column, true)
        } else if let Some((column, direction)) = part.rsplit_once(':') {
            match direction {
                "asc" => (column, false),
                "desc" => (column, true),
                other => {
                    return Err(RestError::bad_request(
                        "invalid_parameter",
                        format!(
                            "sort direction {other:?} in {part:?} is not asc or desc; write \
                             {column}:desc or -{column}"
                        ),
                    )
                    .with_detail("parameter", "sort"))
                }
            }
        } else {
            (part, false)
        };
        keys.push(SortKey {
            column: column.to_string(),
            descending,
        });
    }
    Ok(keys)
}

fn parse_count(name: &'static str, value: &str) -> Result<u64, RestError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= i64::MAX as u64)
        .ok_or_else(|| {
            RestError::bad_request(
                "invalid_parameter",
                format!("{name}={value:?} is not a whole number of 0 or more; use for example {name}=100"),
            )
            .with_detail("parameter", name)
        })
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, RestError> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(RestError::bad_request(
            "invalid_parameter",
            format!("{name}={value:?} is not true or false"),
        )
        .with_detail("parameter", name)),
    }
}

fn unknown_name(name: &str) -> RestError {
    RestError::bad_request(
        "unknown_column",
        format!(
            "{name:?} is neither a column of this table nor a parameter (select, sort, limit, \
             offset, stream)"
        ),
    )
    .with_detail("column", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(name: &str) -> bool {
        matches!(name, "id" | "status" | "a.b" | "limit" | "total")
    }

    fn parse(query: &str) -> Result<ListParams, RestError> {
        parse_list_params(Some(query), &columns)
    }

    fn one(query: &str) -> Filter {
        let params = parse(query).unwrap();
        assert_eq!(params.filters.len(), 1, "{query}");
        params.filters.into_iter().next().unwrap()
    }

    #[test]
    fn both_filter_forms_and_bare_values() {
        assert_eq!(
            one("total=gte.100"),
            Filter {
                column: "total".into(),
                op: FilterOp::Gte,
                values: vec!["100".into()]
            }
        );
        assert_eq!(one("total.gte=100"), one("total=gte.100"));
        assert_eq!(one("status=paid").op, FilterOp::Eq);
        assert_eq!(one("status=paid").values, vec!["paid"]);
        assert_eq!(one("status=eq.gt.5").values, vec!["gt.5"]);
        assert_eq!(one("status=v1.2").values, vec!["v1.2"]);
    }

    #[test]
    fn null_tests_in_each_form() {
        assert_eq!(one("status=is_null").op, FilterOp::IsNull);
        assert_eq!(one("status.is_null=").op, FilterOp::IsNull);
        assert_eq!(one("status.is_null=true").op, FilterOp::IsNull);
        assert_eq!(one("status.is_null=false").op, FilterOp::IsNotNull);
        assert_eq!(one("status=is_not_null").op, FilterOp::IsNotNull);
        assert_eq!(one("status.is_not_null=").values, Vec::<String>::new());
        let err = parse("status.is_null=maybe").unwrap_err();
        assert_eq!(err.code, "invalid_filter");
    }

    #[test]
    fn lists_with_parentheses_and_quotes() {
        assert_eq!(one("id=in.(1,2,3)").values, vec!["1", "2", "3"]);
        assert_eq!(one("id.in=1,2").values, vec!["1", "2"]);
        assert_eq!(
            one("status=not_in.(\"a,b\",c,\"d\\\"e\")").values,
            vec!["a,b", "c", "d\"e"]
        );
        assert_eq!(one("id=in.()").values, Vec::<String>::new());
        assert_eq!(one("status=in.(,x)").values, vec!["", "x"]);
        let err = parse("id=in.(1,2").unwrap_err();
        assert!(err.message.contains("does not close"), "{}", err.message);
        let err = parse("status=in.(\"a\"b)").unwrap_err();
        assert!(
            err.message.contains("after a closing quote"),
            "{}",
            err.message
        );
    }

    #[test]
    fn dotted_column_and_reserved_column_names() {
        assert_eq!(one("a.b=eq.1").column, "a.b");
        let filter = one("limit.eq=5");
        assert_eq!((filter.column.as_str(), filter.op), ("limit", FilterOp::Eq));
        let params = parse("limit=5").unwrap();
        assert!(params.filters.is_empty(), "limit stays a parameter");
        assert_eq!(params.limit, Some(5));
    }

    #[test]
    fn percent_encoding_is_decoded() {
        assert_eq!(one("status=like.pa%25").values, vec!["pa%"]);
        assert_eq!(one("status=a+b").values, vec!["a b"]);
    }

    #[test]
    fn select_sort_limit_offset_stream() {
        let params = parse_list_params(
            Some("select=id,total&sort=-total,id:desc,status:asc,x&limit=10&offset=20&stream=true"),
            &|n| n == "zzz",
        )
        .unwrap();
        assert_eq!(
            params.select,
            Some(vec!["id".to_string(), "total".to_string()])
        );
        let sort: Vec<(&str, bool)> = params
            .sort
            .iter()
            .map(|key| (key.column.as_str(), key.descending))
            .collect();
        assert_eq!(
            sort,
            vec![
                ("total", true),
                ("id", true),
                ("status", false),
                ("x", false)
            ]
        );
        assert_eq!(
            (params.limit, params.offset, params.stream),
            (Some(10), Some(20), Some(true))
        );
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let err = parse("limit.gt=x&offset=-1").unwrap_err();
        assert_eq!(err.code, "invalid_parameter");
        assert_eq!(
            err.message,
            "offset=\"-1\" is not a whole number of 0 or more; use for example offset=100"
        );
        let err = parse_list_params(Some("limit=ten"), &|_| false).unwrap_err();
        assert_eq!(err.details["parameter"], "limit");
        let err = parse("total.between=1").unwrap_err();
        assert!(
            err.message.starts_with("unknown operator \"between\""),
            "{}",
            err.message
        );
        let err = parse("nope=1").unwrap_err();
        assert_eq!(err.code, "unknown_column");
        let err = parse("nope.eq=1").unwrap_err();
        assert_eq!(err.details["column"], "nope");
        let err = parse("select=").unwrap_err();
        assert_eq!(err.code, "invalid_parameter");
    }

    #[test]
    fn duplicate_select_and_bad_direction() {
        let err = parse("select=id,id").unwrap_err();
        assert_eq!(
            err.message,
            "select lists column \"id\" twice; list each column once"
        );
        let err = parse("sort=total:up").unwrap_err();
        assert_eq!(
            err.message,
            "sort direction \"up\" in \"total:up\" is not asc or desc; write total:desc or -total"
        );
    }

    #[test]
    fn long_lists_are_refused() {
        let query = format!("id=in.({})", vec!["1"; MAX_IN_ITEMS + 1].join(","));
        let err = parse(&query).unwrap_err();
        assert!(err.message.contains("at most 1000"), "{}", err.message);
    }
}
