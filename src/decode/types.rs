//! PostgreSQL types as needed to turn their text output into JSON.
//!
//! [`TypeRegistry`] reads `pg_type` (and `pg_attribute` for composites) and resolves a type OID
//! to a [`PgType`] tree, which determines how [`write_json`](super::value::write_json) converts
//! the type's text. Domains take the kind of their base type, arrays carry their element type
//! and composites their attribute types.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Row;

/// The rule that turns a type's text into JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeKind {
    /// `bool`: `t`/`f` become `true`/`false`.
    Bool,
    /// int2, int4, int8, float4, float8 and numeric: JSON numbers in `numeric_out` form.
    Number,
    /// `json`: normalised as jsonb would store it.
    Json,
    /// `jsonb`: embedded as it is.
    Jsonb,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    /// Every other type (text, enums, ranges, money, interval, uuid, bytea, oid, ...): its text
    /// as a JSON string.
    Text,
    /// An array type. `delimiter` separates items in the text: the element type's `typdelim`,
    /// or `b' '` for `int2vector` and `oidvector`, whose text has no braces.
    Array {
        element: Arc<PgType>,
        delimiter: u8,
    },
    /// A composite type with its non-dropped attributes in `attnum` order.
    Composite {
        fields: Vec<(String, Arc<PgType>)>,
    },
}

/// A resolved type. A domain keeps its own OID and name and takes its base type's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    pub oid: u32,
    pub name: String,
    pub kind: TypeKind,
}

/// Error from resolving a type OID.
#[derive(Debug, thiserror::Error)]
pub enum TypeError {
    #[error("type OID {oid} not found in pg_type (while resolving type OID {requested})")]
    NotFound { oid: u32, requested: u32 },
    #[error("reading the catalog entries for type OID {oid} failed: {source}")]
    Catalog {
        oid: u32,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("type OID {oid} nests types more than {MAX_DEPTH} levels deep")]
    TooDeep { oid: u32 },
}

/// Deepest chain of domains, arrays and composites that is resolved.
const MAX_DEPTH: usize = 100;

/// OIDs below this are assigned by initdb (`FirstNormalObjectId`), so their entries never change.
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

const INT2VECTOR_OID: u32 = 22;
const OIDVECTOR_OID: u32 = 30;

/// The `pg_type` columns (and composite attributes) that resolution needs.
const TYPE_ROW_SELECT: &str = "
    SELECT t.oid, t.typname::text, t.typtype, t.typelem, t.typlen, t.typbasetype,
           element.typdelim AS element_delimiter, attributes.names, attributes.types
    FROM pg_type t
    LEFT JOIN pg_type element ON element.oid = t.typelem
    LEFT JOIN LATERAL (
        SELECT array_agg(a.attname::text ORDER BY a.attnum) AS names,
               array_agg(a.atttypid ORDER BY a.attnum) AS types
        FROM pg_attribute a
        WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0
          AND NOT a.attisdropped
    ) attributes ON true";

/// Returns the query for every built-in type, which runs once on first use.
fn builtin_types_query() -> String {
    format!("{TYPE_ROW_SELECT} WHERE t.oid < {FIRST_NORMAL_OBJECT_ID}")
}

/// Returns the query that reads a type and every type it depends on: base types of domains,
/// elements of arrays and attribute types of composites, recursively.
fn type_closure_query() -> String {
    format!(
        "WITH RECURSIVE closure(oid) AS (
            SELECT $1::oid
            UNION
            SELECT dependency.oid
            FROM closure c
            JOIN pg_type t ON t.oid = c.oid
            CROSS JOIN LATERAL (
                SELECT t.typbasetype WHERE t.typtype = 'd'
                UNION ALL
                SELECT t.typelem WHERE t.typelem <> 0 AND t.typlen = -1
                UNION ALL
                SELECT a.atttypid FROM pg_attribute a
                WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0
                  AND NOT a.attisdropped
            ) dependency(oid)
        )
        {TYPE_ROW_SELECT} WHERE t.oid IN (SELECT oid FROM closure)"
    )
}

/// One `pg_type` entry.
#[derive(Debug, Clone)]
struct CatalogRow {
    oid: u32,
    name: String,
    typtype: u8,
    typelem: u32,
    typlen: i16,
    typbasetype: u32,
    element_delimiter: u8,
    attributes: Vec<(String, u32)>,
}

impl CatalogRow {
    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        let names: Option<Vec<String>> = row.try_get("names")?;
        let types: Option<Vec<u32>> = row.try_get("types")?;
        let attributes = names
            .unwrap_or_default()
            .into_iter()
            .zip(types.unwrap_or_default())
            .collect();
        let element_delimiter: Option<i8> = row.try_get("element_delimiter")?;
        Ok(Self {
            oid: row.try_get("oid")?,
            name: row.try_get("typname")?,
            typtype: row.try_get::<_, i8>("typtype")? as u8,
            typelem: row.try_get("typelem")?,
            typlen: row.try_get("typlen")?,
            typbasetype: row.try_get("typbasetype")?,
            element_delimiter: element_delimiter.map_or(b',', |delimiter| delimiter as u8),
            attributes,
        })
    }

    /// True for types with `array_out` text: `typelem` set on a variable-length type. Fixed-size
    /// types with `typelem` (`point`, `name`, ...) print their own text.
    fn is_array(&self) -> bool {
        self.typelem != 0 && self.typlen == -1
    }
}

/// Resolves type OIDs to [`PgType`] trees, caching them.
pub struct TypeRegistry {
    client: Arc<tokio_postgres::Client>,
    /// Built-in `pg_type` entries, loaded on first use (empty until then) and kept for the
    /// registry's life.
    builtins: HashMap<u32, CatalogRow>,
    resolved: HashMap<u32, Arc<PgType>>,
}

impl TypeRegistry {
    /// Creates a registry that reads the catalog through `client`, a plain connection to the
    /// database whose changes are decoded.
    pub fn new(client: Arc<tokio_postgres::Client>) -> Self {
        Self {
            client,
            builtins: HashMap::new(),
            resolved: HashMap::new(),
        }
    }

    /// Resolves a type OID, from the cache when possible.
    ///
    /// The first call loads every built-in type in one query. A type outside the cache costs
    /// one more query, which reads it and everything it depends on. Domains resolve to the kind
    /// of their base type (keeping the domain's OID and name), arrays to their element type and
    /// delimiter, composites to their attributes' types.
    pub async fn resolve(&mut self, oid: u32) -> Result<Arc<PgType>, TypeError> {
        if let Some(ty) = self.resolved.get(&oid) {
            return Ok(Arc::clone(ty));
        }
        if self.builtins.is_empty() {
            self.builtins = self.query_rows(&builtin_types_query(), &[], oid).await?;
        }
        let fresh = if self.builtins.contains_key(&oid) {
            HashMap::new()
        } else {
            self.query_rows(&type_closure_query(), &[&oid], oid).await?
        };
        let mut builder = Builder {
            requested: oid,
            fresh: &fresh,
            builtins: &self.builtins,
            resolved: &self.resolved,
            built: HashMap::new(),
        };
        let ty = builder.build(oid, 0)?;
        let built = builder.built;
        self.resolved.extend(built);
        Ok(ty)
    }

    /// Forgets `oid` and every cached type that contains it, so that the next resolve re-reads
    /// them. Call it when pgoutput sends a Type message or a relation's column types change.
    pub fn invalidate(&mut self, oid: u32) {
        self.resolved.remove(&oid);
        self.resolved.retain(|_, ty| !contains_type(ty, oid));
    }

    /// Forgets every cached type. Built-in catalog entries are kept: initdb fixes them.
    pub fn clear(&mut self) {
        self.resolved.clear();
    }

    async fn query_rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        oid: u32,
    ) -> Result<HashMap<u32, CatalogRow>, TypeError> {
        let catalog_error = |source| TypeError::Catalog { oid, source };
        let rows = self
            .client
            .query(sql, params)
            .await
            .map_err(catalog_error)?;
        rows.iter()
            .map(|row| CatalogRow::from_row(row).map(|entry| (entry.oid, entry)))
            .collect::<Result<_, _>>()
            .map_err(catalog_error)
    }
}

/// True if `ty` is `oid` or has it anywhere inside.
fn contains_type(ty: &PgType, oid: u32) -> bool {
    if ty.oid == oid {
        return true;
    }
    match &ty.kind {
        TypeKind::Array { element, .. } => contains_type(element, oid),
        TypeKind::Composite { fields } => fields.iter().any(|(_, field)| contains_type(field, oid)),
        _ => false,
    }
}

/// Builds [`PgType`] trees from catalog rows.
///
/// Rows just read (`fresh`) win over cached types, so resolving a changed composite also
/// refreshes the user-defined types inside it.
struct Builder<'a> {
    requested: u32,
    fresh: &'a HashMap<u32, CatalogRow>,
    builtins: &'a HashMap<u32, CatalogRow>,
    resolved: &'a HashMap<u32, Arc<PgType>>,
    built: HashMap<u32, Arc<PgType>>,
}

impl Builder<'_> {
    fn build(&mut self, oid: u32, depth: usize) -> Result<Arc<PgType>, TypeError> {
        if let Some(ty) = self.built.get(&oid) {
            return Ok(Arc::clone(ty));
        }
        let row = match self.fresh.get(&oid) {
            Some(row) => row,
            None => {
                if let Some(ty) = self.resolved.get(&oid) {
                    return Ok(Arc::clone(ty));
                }
                self.builtins.get(&oid).ok_or(TypeError::NotFound {
                    oid,
                    requested: self.requested,
                })?
            }
        };
        if depth >= MAX_DEPTH {
            return Err(TypeError::TooDeep {
                oid: self.requested,
            });
        }
        let kind = self.kind_of(row, depth)?;
        let ty = Arc::new(PgType {
            oid,
            name: row.name.clone(),
            kind,
        });
        self.built.insert(oid, Arc::clone(&ty));
        Ok(ty)
    }

    fn kind_of(&mut self, row: &CatalogRow, depth: usize) -> Result<TypeKind, TypeError> {
        if row.typtype == b'd' {
            return Ok(self.build(row.typbasetype, depth + 1)?.kind.clone());
        }
        if row.typtype == b'c' {
            let mut fields = Vec::with_capacity(row.attributes.len());
            for (name, attribute_type) in &row.attributes {
                fields.push((name.clone(), self.build(*attribute_type, depth + 1)?));
            }
            return Ok(TypeKind::Composite { fields });
        }
        if row.is_array() {
            let element = self.build(row.typelem, depth + 1)?;
            let delimiter = match row.oid {
                INT2VECTOR_OID | OIDVECTOR_OID => b' ',
                _ => row.element_delimiter,
            };
            return Ok(TypeKind::Array { element, delimiter });
        }
        Ok(builtin_kind(row.oid))
    }
}

/// Returns the kind of a base type that is neither an array nor a composite.
fn builtin_kind(oid: u32) -> TypeKind {
    match oid {
        16 => TypeKind::Bool,
        20 | 21 | 23 | 700 | 701 | 1700 => TypeKind::Number,
        114 => TypeKind::Json,
        3802 => TypeKind::Jsonb,
        1082 => TypeKind::Date,
        1083 => TypeKind::Time,
        1266 => TypeKind::TimeTz,
        1114 => TypeKind::Timestamp,
        1184 => TypeKind::TimestampTz,
        // NOTE: to_jsonb converts a non-built-in type with a cast to json or jsonb (hstore, for
        // one) through that cast, giving an object where this gives the type's text.
        _ => TypeKind::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(oid: u32, name: &str, typtype: u8) -> CatalogRow {
        CatalogRow {
            oid,
            name: name.into(),
            typtype,
            typelem: 0,
            typlen: 4,
            typbasetype: 0,
            element_delimiter: b',',
            attributes: Vec::new(),
        }
    }

    fn array_row(oid: u32, name: &str, element: u32, delimiter: u8) -> CatalogRow {
        CatalogRow {
            typelem: element,
            typlen: -1,
            element_delimiter: delimiter,
            ..row(oid, name, b'b')
        }
    }

    fn domain_row(oid: u32, name: &str, base: u32) -> CatalogRow {
        CatalogRow {
            typbasetype: base,
            ..row(oid, name, b'd')
        }
    }

    fn catalog(rows: Vec<CatalogRow>) -> HashMap<u32, CatalogRow> {
        rows.into_iter().map(|row| (row.oid, row)).collect()
    }

    fn build(rows: &HashMap<u32, CatalogRow>, oid: u32) -> Result<Arc<PgType>, TypeError> {
        let resolved = HashMap::new();
        let mut builder = Builder {
            requested: oid,
            fresh: rows,
            builtins: &HashMap::new(),
            resolved: &resolved,
            built: HashMap::new(),
        };
        builder.build(oid, 0)
    }

    #[test]
    fn domains_take_base_kind_keep_name() {
        let rows = catalog(vec![
            row(23, "int4", b'b'),
            domain_row(16400, "positive", 23),
            domain_row(16401, "small_positive", 16400),
        ]);
        let ty = build(&rows, 16401).unwrap();
        assert_eq!(ty.oid, 16401);
        assert_eq!(ty.name, "small_positive");
        assert_eq!(ty.kind, TypeKind::Number);
    }

    #[test]
    fn arrays_of_domains_and_domains_over_arrays() {
        let rows = catalog(vec![
            row(23, "int4", b'b'),
            domain_row(16400, "positive", 23),
            array_row(16402, "_positive", 16400, b','),
            domain_row(16403, "positives", 16402),
        ]);
        let ty = build(&rows, 16403).unwrap();
        let TypeKind::Array { element, delimiter } = &ty.kind else {
            panic!("expected an array, got {ty:?}");
        };
        assert_eq!(*delimiter, b',');
        assert_eq!(element.name, "positive");
        assert_eq!(element.kind, TypeKind::Number);
    }

    #[test]
    fn vectors_and_box_delimiters() {
        let rows = catalog(vec![
            row(21, "int2", b'b'),
            array_row(INT2VECTOR_OID, "int2vector", 21, b','),
            CatalogRow {
                typelem: 600,
                typlen: 32,
                element_delimiter: b',',
                ..row(603, "box", b'b')
            },
            array_row(1020, "_box", 603, b';'),
        ]);
        let vector = build(&rows, INT2VECTOR_OID).unwrap();
        assert!(matches!(
            vector.kind,
            TypeKind::Array {
                delimiter: b' ',
                ..
            }
        ));
        let boxes = build(&rows, 1020).unwrap();
        let TypeKind::Array { element, delimiter } = &boxes.kind else {
            panic!("expected an array, got {boxes:?}");
        };
        assert_eq!(*delimiter, b';');
        assert_eq!(
            element.kind,
            TypeKind::Text,
            "box has typelem but is no array"
        );
    }

    #[test]
    fn composites_list_attributes_in_order() {
        let rows = catalog(vec![
            row(23, "int4", b'b'),
            row(25, "text", b'b'),
            CatalogRow {
                attributes: vec![("id".into(), 23), ("label".into(), 25)],
                ..row(16410, "pair", b'c')
            },
        ]);
        let ty = build(&rows, 16410).unwrap();
        let TypeKind::Composite { fields } = &ty.kind else {
            panic!("expected a composite, got {ty:?}");
        };
        let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["id", "label"]);
        assert_eq!(fields[0].1.kind, TypeKind::Number);
        assert_eq!(fields[1].1.kind, TypeKind::Text);
    }

    #[test]
    fn missing_type_names_oid() {
        let rows = catalog(vec![domain_row(16400, "orphan", 99999)]);
        let err = build(&rows, 16400).unwrap_err();
        assert!(matches!(
            err,
            TypeError::NotFound {
                oid: 99999,
                requested: 16400
            }
        ));
        assert!(err.to_string().contains("99999"), "{err}");
    }

    #[test]
    fn self_referencing_domain_stops() {
        let rows = catalog(vec![domain_row(16400, "loop", 16400)]);
        assert!(matches!(
            build(&rows, 16400),
            Err(TypeError::TooDeep { .. })
        ));
    }

    #[test]
    fn contains_type_finds_nested() {
        let rows = catalog(vec![
            row(23, "int4", b'b'),
            CatalogRow {
                attributes: vec![("id".into(), 23)],
                ..row(16410, "inner", b'c')
            },
            array_row(16411, "_inner", 16410, b','),
        ]);
        let ty = build(&rows, 16411).unwrap();
        assert!(contains_type(&ty, 16410));
        assert!(contains_type(&ty, 23));
        assert!(!contains_type(&ty, 25));
    }

    #[test]
    fn builtin_kinds() {
        assert_eq!(builtin_kind(16), TypeKind::Bool);
        assert_eq!(builtin_kind(1700), TypeKind::Number);
        assert_eq!(builtin_kind(114), TypeKind::Json);
        assert_eq!(builtin_kind(3802), TypeKind::Jsonb);
        assert_eq!(builtin_kind(1184), TypeKind::TimestampTz);
        assert_eq!(builtin_kind(790), TypeKind::Text, "money is text");
    }
}
