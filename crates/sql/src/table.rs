//! What a table is: its columns, its primary key and how its rows spread over hash buckets and
//! shards ([`TableDef`]). The catalog (`crate::catalog`) stores and caches these definitions;
//! every stage below planning (`encoding`, `scan`, the writes of `exec`) reads them.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::scalar::ScalarValue;
use raftable_common::{Error, Result, ShardId};
use serde::{Deserialize, Serialize};

use crate::types::SqlType;

/// A user table's OID (`pg_class`, RowDescription) is this plus its raftable id: the same in
/// every session and on every node. datafusion-pg-catalog numbers the other objects upwards
/// from 16384 and PostgreSQL's own are below that, so these never meet
/// (`catalog::pg_catalog` numbers the primary key's index and constraint above these).
const TABLE_OID: i64 = 0x1000_0000;

/// Name of the hidden row id column of a table declared without a primary key.
pub const ROWID: &str = "rowid";

/// One column of a table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
    /// A constant default, already coerced to the column's type, as JSON-encoded text of the
    /// value (`None`: NULL).
    pub default: Option<String>,
    /// The generated row id of a table without a primary key: not shown by `SELECT *`.
    pub hidden: bool,
    /// A default computed for each row (then `default` is None).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed: Option<Computed>,
    /// `GENERATED { ALWAYS | BY DEFAULT } AS IDENTITY` (its default is the `nextval` of the
    /// column's sequence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// Where ALTER TABLE ADD / DROP COLUMN left it.
    #[serde(default, skip_serializing_if = "ColumnState::is_public")]
    pub state: ColumnState,
    /// Added by ALTER TABLE: rows stored before hold nothing for it (their value ends before
    /// its slot, `encoding::RowDecoder`) and read as `missing`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub added: bool,
    /// What rows stored before the column was added hold in it: the constant default it was
    /// added with, as text like `default` (None: NULL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    /// `COMMENT ON COLUMN` (`pg_description`, `col_description`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A column's life through ALTER TABLE, so that nodes on the definitions before and after a
/// change (for up to the catalog lease) never lose each other's writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnState {
    #[default]
    Public,
    /// Being added: written (with its default) by every write, not yet seen by any statement,
    /// so no value but its default can be written before every node writes it.
    WriteOnly,
    /// Dropped: its slot stays in stored rows (written NULL from now on); never seen again.
    Dropped,
}

impl ColumnState {
    pub fn is_public(&self) -> bool {
        *self == ColumnState::Public
    }
}

impl ColumnDef {
    /// A visible column without a default.
    pub fn new(name: impl Into<String>, ty: SqlType, nullable: bool) -> Self {
        ColumnDef {
            name: name.into(),
            ty,
            nullable,
            default: None,
            hidden: false,
            computed: None,
            identity: None,
            state: ColumnState::Public,
            added: false,
            missing: None,
            comment: None,
        }
    }

    /// Whether statements see it: not the hidden row id, not being added, not dropped.
    pub fn is_visible(&self) -> bool {
        !self.hidden && self.state.is_public()
    }

    /// The sequence whose `nextval` is the column's default, if it has one.
    pub fn sequence(&self) -> Option<&str> {
        match &self.computed {
            Some(Computed::Nextval(s)) => Some(s),
            _ => None,
        }
    }

    /// Whether it has a default of any kind.
    pub fn has_default(&self) -> bool {
        self.default.is_some() || self.computed.is_some()
    }

    /// Whether a column being added takes a default that differs per row (`nextval`,
    /// `gen_random_uuid()`: no `missing` value stands for it), which writers compute while it
    /// is write-only and the ADD COLUMN's backfill gives the rows stored before.
    pub fn filled_per_row(&self) -> bool {
        self.added && self.computed.is_some() && self.missing.is_none()
    }
}

/// A column default computed when a row is inserted (a constant one is `ColumnDef::default`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Computed {
    /// `nextval('<sequence>')`.
    Nextval(String),
    /// `now()`.
    Now,
    /// `CURRENT_TIMESTAMP`.
    CurrentTimestamp,
    /// `LOCALTIMESTAMP`.
    LocalTimestamp,
    /// `CURRENT_DATE`.
    CurrentDate,
    /// `gen_random_uuid()`.
    RandomUuid,
}

impl Computed {
    /// The default as PostgreSQL prints it (`pg_get_expr` of `pg_attrdef.adbin`).
    pub fn display(&self) -> String {
        match self {
            Computed::Nextval(s) => format!("nextval('{}'::regclass)", s.replace('\'', "''")),
            Computed::Now => "now()".into(),
            Computed::CurrentTimestamp => "CURRENT_TIMESTAMP".into(),
            Computed::LocalTimestamp => "LOCALTIMESTAMP".into(),
            Computed::CurrentDate => "CURRENT_DATE".into(),
            Computed::RandomUuid => "gen_random_uuid()".into(),
        }
    }
}

/// How an identity column takes values given by an INSERT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Identity {
    /// `GENERATED ALWAYS`: a given value is an error (428C9) unless the INSERT says
    /// `OVERRIDING SYSTEM VALUE`.
    Always,
    /// `GENERATED BY DEFAULT`: a given value is taken.
    ByDefault,
}

/// A sequence: its bounds and step, kept in the meta group beside the tables
/// (`catalog::Catalog`); its next value lives in a counter row of its own (`crate::sequence`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceDef {
    /// From the same counter as table ids, so a sequence's OID never meets a table's.
    pub id: u32,
    pub name: String,
    /// `smallint`, `integer` or `bigint`.
    pub ty: SqlType,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cache: i64,
    pub cycle: bool,
    /// `OWNED BY table.column`: dropped with the table (SERIAL and identity columns).
    pub owned_by: Option<(String, String)>,
}

impl SequenceDef {
    /// The sequence's OID in `pg_class` (a table OID: sequences and tables share the id counter).
    pub fn oid(&self) -> i32 {
        (TABLE_OID + i64::from(self.id & 0x0fff_ffff)) as i32
    }
}

/// The schema every unqualified name means (raftable has no `search_path` yet).
pub const PUBLIC: &str = "public";

/// A relation's name in the catalog: its bare name in schema `public`, `schema.name` in any
/// other (neither part holds a dot: `ast::table_name` refuses one).
pub fn qualify(schema: &str, name: &str) -> String {
    if schema == PUBLIC {
        name.to_string()
    } else {
        format!("{schema}.{name}")
    }
}

/// A catalog name's schema and bare name (see [`qualify`]).
pub fn split_name(name: &str) -> (&str, &str) {
    name.split_once('.').unwrap_or((PUBLIC, name))
}

/// `'name'`, `'schema.name'` or `'"Name"'` as the catalog name of the relation it denotes
/// (`table::qualify`; PostgreSQL's regclass input: unquoted parts fold to lower case).
pub(crate) fn relation_name(text: &str) -> Result<String> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(Error::InvalidText(format!("invalid name syntax: {text}"))),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(Error::InvalidText(format!("invalid name syntax: {text}")));
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => {}
            Some(_) => return Err(Error::InvalidText(format!("invalid name syntax: {text}"))),
        }
    }
    match parts.as_slice() {
        [name] => Ok(name.clone()),
        [schema, name] => Ok(qualify(schema, name)),
        _ => Err(Error::InvalidText(format!("improper relation name (too many dotted names): {text}"))),
    }
}

/// A schema made by `CREATE SCHEMA` (`public` always exists and has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDef {
    /// From the table-id counter.
    pub id: u32,
    pub name: String,
    /// `AUTHORIZATION role`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A view: a stored query, expanded into each statement that names it (`plan::views`), as
/// PostgreSQL's rewriter does. Kept in the meta group beside tables and sequences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// From the table-id counter (its OID is a table OID).
    pub id: u32,
    pub name: String,
    /// The query, as SQL text.
    pub query: String,
    /// The view's columns: their names (given or the query's) and Arrow types (as Arrow
    /// prints them), fixed when the view is created, as in PostgreSQL.
    pub columns: Vec<(String, String)>,
    /// Ids of the tables and views the query reads: they cannot be dropped without the view
    /// (2BP01, or `CASCADE`), and a table renamed is renamed in the query.
    pub depends: Vec<u32>,
    /// `COMMENT ON VIEW`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl ViewDef {
    /// The view's OID in `pg_class` (ids share the table-id counter).
    pub fn oid(&self) -> i32 {
        (TABLE_OID + i64::from(self.id & 0x0fff_ffff)) as i32
    }

    /// Whether the query names `word` (a column, a relation): a word of its text.
    pub fn mentions(&self, word: &str) -> bool {
        self.query.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w == word)
    }

    /// The view's columns as an Arrow schema.
    pub fn schema(&self) -> Result<SchemaRef> {
        let fields = self
            .columns
            .iter()
            .map(|(name, ty)| {
                let ty =
                    ty.parse().map_err(|e| Error::InvalidData(format!("view \"{}\" column type: {e}", self.name)))?;
                Ok(Field::new(name, ty, true))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Schema::new(fields)))
    }
}

/// A table definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableDef {
    pub id: u32,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Indexes of the primary key columns, in key order.
    pub pk: Vec<usize>,
    /// Number of hash buckets = shards.
    pub buckets: u16,
    /// Shard of each bucket.
    pub shards: Vec<ShardId>,
    /// CHECK constraints, in the order they were declared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDef>,
    /// Secondary indexes, in the order they were created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexDef>,
    /// FOREIGN KEY constraints of this table (the referencing side), in declared order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_keys: Vec<ForeignKeyDef>,
    /// Ids of the tables with a foreign key to this one (this one too if it references
    /// itself): whoever deletes or updates a row here looks there for rows still referencing it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referenced_by: Vec<u32>,
    /// Bumped by every change of the definition (`catalog::Catalog::replace`): a transaction
    /// that wrote with version `v` commits only while the current one is at most `v + 1`
    /// (`exec::commit`), so no write made without an index's entries lands after its backfill.
    #[serde(default)]
    pub version: u64,
    /// `COMMENT ON TABLE` (`pg_description`, `obj_description`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A FOREIGN KEY: the values of `columns` in each row of its table must be those of
/// `parent_columns` (its primary key or a unique index's columns, in the order referenced) in a
/// row of table `parent`, unless one of them is NULL (MATCH SIMPLE). Checked and acted on in
/// the writing transaction by `exec::foreign_keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKeyDef {
    pub name: String,
    /// Indexes into the referencing table's `columns`.
    pub columns: Vec<usize>,
    /// The referenced table's id (its name may change).
    pub parent: u32,
    /// Indexes into the referenced table's `columns`, one per entry of `columns`.
    pub parent_columns: Vec<usize>,
    pub on_delete: KeyAction,
    pub on_update: KeyAction,
    /// `DEFERRABLE`, `INITIALLY DEFERRED`: a deferred key is checked at the COMMIT of a
    /// transaction block (`exec::foreign_keys::Deferred`), others when the statement runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferrable: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferred: bool,
}

/// What deleting or updating a referenced row does to the rows referencing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyAction {
    /// Fail (23503) if a row still references it (checked at the statement's end).
    NoAction,
    /// Fail (23503) if a row references it.
    Restrict,
    /// Delete (or, ON UPDATE, update) the referencing rows too.
    Cascade,
    /// Set the referencing columns to NULL.
    SetNull,
    /// Set the referencing columns to their defaults (which must be referenced in turn).
    SetDefault,
}

impl KeyAction {
    /// The action as `information_schema.referential_constraints` names it.
    pub fn rule(self) -> &'static str {
        match self {
            KeyAction::NoAction => "NO ACTION",
            KeyAction::Restrict => "RESTRICT",
            KeyAction::Cascade => "CASCADE",
            KeyAction::SetNull => "SET NULL",
            KeyAction::SetDefault => "SET DEFAULT",
        }
    }

    /// The action as `pg_constraint.confdeltype` / `confupdtype` codes it.
    pub fn code(self) -> &'static str {
        match self {
            KeyAction::NoAction => "a",
            KeyAction::Restrict => "r",
            KeyAction::Cascade => "c",
            KeyAction::SetNull => "n",
            KeyAction::SetDefault => "d",
        }
    }

    /// The action as SQL spells it.
    pub fn sql(self) -> &'static str {
        match self {
            KeyAction::NoAction => "NO ACTION",
            KeyAction::Restrict => "RESTRICT",
            KeyAction::Cascade => "CASCADE",
            KeyAction::SetNull => "SET NULL",
            KeyAction::SetDefault => "SET DEFAULT",
        }
    }
}

/// A secondary index: its entries live in a key space and shards of their own
/// (`encoding::index_entry`), written in the same transaction as the row (`exec::indexes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// From the table-id counter: its keys are `0x01 ‖ id ‖ bucket ‖ ...` like a table's.
    pub id: u32,
    pub name: String,
    /// Indexes into the table's `columns`, in key order.
    pub columns: Vec<usize>,
    pub unique: bool,
    /// Number of hash buckets = shards (a hash of the indexed values picks one).
    pub buckets: u16,
    pub shards: Vec<ShardId>,
    pub state: IndexState,
    /// Made by a `UNIQUE` constraint (`pg_constraint` shows it; `DROP CONSTRAINT` drops it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub constraint: bool,
    /// Each column's order as CREATE INDEX gave it, PostgreSQL's `pg_index.indoption` bits
    /// ([`INDOPTION_DESC`], [`INDOPTION_NULLS_FIRST`]); empty: all ascending, NULLs last. The
    /// catalog shows it; the entries are kept in one order whatever it says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<i16>,
}

/// `pg_index.indoption` bit of a descending column.
pub const INDOPTION_DESC: i16 = 1;
/// `pg_index.indoption` bit of a column whose NULLs sort first.
pub const INDOPTION_NULLS_FIRST: i16 = 2;

/// An index's life through CREATE and DROP INDEX (`TRANSACTIONS.md` §3), one catalog step
/// each, so that nodes one step apart never orphan or miss an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IndexState {
    /// Writers delete entries but add none; readers ignore it.
    DeleteOnly,
    /// Writers maintain entries fully (the backfill runs now); readers ignore it.
    WriteOnly,
    /// Complete: queries may read it.
    Public,
}

impl IndexDef {
    /// The `indoption` bits of key column `n` (0-based).
    pub fn option(&self, n: usize) -> i16 {
        self.options.get(n).copied().unwrap_or(0)
    }

    /// Whether writes add entries (not only delete them).
    pub fn writable(&self) -> bool {
        self.state != IndexState::DeleteOnly
    }

    /// The index's OID in `pg_class` (ids share the table-id counter).
    pub fn oid(&self) -> i32 {
        (TABLE_OID + i64::from(self.id & 0x0fff_ffff)) as i32
    }
}

/// Whether `a` and `b` hold the same columns, in any order.
pub fn same_columns(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && a.iter().all(|c| b.contains(c))
}

/// A CHECK constraint: its name and its expression as SQL text over the table's columns
/// (planned by `exec::checks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDef {
    pub name: String,
    pub expr: String,
}

impl CheckDef {
    /// Whether the expression names `column` (a word of its text).
    pub fn mentions(&self, column: &str) -> bool {
        self.expr.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w == column)
    }
}

impl TableDef {
    /// The schema of every column, hidden, added and dropped ones included (as stored).
    pub fn full_schema(&self) -> Schema {
        Schema::new(self.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow(), c.nullable)).collect::<Vec<_>>())
    }

    /// The schema SQL sees: visible columns only.
    pub fn visible_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .filter(|c| c.is_visible())
                .map(|c| Field::new(&c.name, c.ty.arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// Indexes (into `columns`) of the visible columns.
    pub fn visible(&self) -> Vec<usize> {
        self.columns.iter().enumerate().filter(|(_, c)| c.is_visible()).map(|(i, _)| i).collect()
    }

    /// The column `name` names (the hidden row id too, never a column being added or dropped).
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns.iter().position(|c| c.name == name && c.state.is_public()).ok_or_else(|| {
            Error::UndefinedColumn(format!("column \"{name}\" of relation \"{}\" does not exist", self.name))
        })
    }

    /// The constant default value of column `i` as a scalar of its type (NULL when it has none
    /// or a computed one).
    pub fn default_value(&self, i: usize) -> Result<ScalarValue> {
        let col = &self.columns[i];
        match &col.default {
            None => ScalarValue::try_from(&col.ty.arrow()).map_err(crate::error::from_datafusion),
            Some(text) => crate::types::coerce_scalar(&col.ty, &col.name, &ScalarValue::Utf8(Some(text.clone()))),
        }
    }

    /// The value rows stored before column `i` was added read (`ColumnDef::missing`), as a
    /// scalar of its type (NULL when it has none).
    pub fn missing_value(&self, i: usize) -> Result<ScalarValue> {
        let col = &self.columns[i];
        match &col.missing {
            None => ScalarValue::try_from(&col.ty.arrow()).map_err(crate::error::from_datafusion),
            Some(text) => crate::types::coerce_scalar(&col.ty, &col.name, &ScalarValue::Utf8(Some(text.clone()))),
        }
    }

    /// The lowest OID of a user table, index or sequence.
    /// The table's name without its schema: what `pg_class.relname` shows and the default
    /// names of its constraints and indexes start with.
    pub fn bare_name(&self) -> &str {
        split_name(&self.name).1
    }

    /// The name of the table's primary key (its index and constraint): `<table>_pkey`.
    pub fn pkey_name(&self) -> String {
        format!("{}_pkey", self.bare_name())
    }

    pub fn oid_base() -> i32 {
        TABLE_OID as i32
    }

    /// The table's OID in `pg_class`.
    pub fn oid(&self) -> i32 {
        (TABLE_OID + i64::from(self.id & 0x0fff_ffff)) as i32
    }

    /// The column's number in `pg_attribute` (1-based among the visible columns; none for the
    /// hidden row id).
    pub fn attnum(&self, column: usize) -> Option<i16> {
        self.visible().iter().position(|c| *c == column).map(|p| p as i16 + 1)
    }

    /// The index named `name`, if the table has one.
    pub fn index(&self, name: &str) -> Option<&IndexDef> {
        self.indexes.iter().find(|i| i.name == name)
    }

    /// The key a foreign key referencing `columns` (in any order) finds its rows by: the
    /// primary key (`Some(None)`, not the hidden row id), or a public unique index
    /// (`Some(Some(index))`); None if `columns` are neither.
    pub fn referenced_key(&self, columns: &[usize]) -> Option<Option<&IndexDef>> {
        if same_columns(&self.pk, columns) && !self.has_rowid() {
            return Some(None);
        }
        let index = self
            .indexes
            .iter()
            .find(|i| i.unique && i.state == IndexState::Public && same_columns(&i.columns, columns));
        index.map(Some)
    }

    pub fn has_rowid(&self) -> bool {
        self.pk.len() == 1 && self.columns[self.pk[0]].hidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_names_read_as_regclass_does() {
        assert_eq!(relation_name("Users_ID_seq").unwrap(), "users_id_seq");
        assert_eq!(relation_name("public.s").unwrap(), "s");
        assert_eq!(relation_name("\"My\"\"Seq\"").unwrap(), "My\"Seq");
        assert_eq!(relation_name("Other.s").unwrap(), "other.s");
        assert!(matches!(relation_name("a.b.c"), Err(Error::InvalidText(_))));
        assert!(matches!(relation_name("\"open"), Err(Error::InvalidText(_))));
        assert!(matches!(relation_name(""), Err(Error::InvalidText(_))));
        assert_eq!(split_name(&qualify("s", "t")), ("s", "t"));
        assert_eq!(split_name(&qualify(PUBLIC, "t")), (PUBLIC, "t"));
    }
}
