//! RETURNING: the list planned once as DataFusion expressions over the table's visible
//! columns (qualified by the table's name or alias), evaluated by `exec` over the rows a
//! statement wrote (INSERT, UPDATE: the new rows; DELETE: the deleted ones). Output columns
//! are named as PostgreSQL names them.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::logical_expr::Expr;
use datafusion::sql::sqlparser::ast::SelectItem;
use raftable_common::{Error, Result};

use super::context::{output_schema, Tables};
use crate::ast::ident;
use crate::columns::output_name;
use crate::error::from_datafusion;
use crate::table::TableDef;

/// A planned RETURNING list.
pub(crate) struct Returning {
    /// One expression per output column, over `input`.
    pub exprs: Vec<Expr>,
    /// The visible columns of the rows written.
    pub input: DFSchemaRef,
    /// The columns it returns.
    pub schema: SchemaRef,
}

impl Returning {
    /// Plans `items` for rows of `def`, named `alias` (else the table's name) in the statement.
    pub(crate) fn plan(tables: &Tables<'_>, def: &TableDef, alias: Option<&str>, items: &[SelectItem]) -> Result<Self> {
        let qualifier = alias.unwrap_or(&def.name).to_string();
        let input =
            DFSchema::try_from_qualified_schema(qualifier.as_str(), &def.visible_schema()).map_err(from_datafusion)?;
        let mut exprs = Vec::new();
        let mut names = Vec::new();
        for item in items {
            match item {
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    for column in input.columns() {
                        names.push(column.name.clone());
                        exprs.push(Expr::Column(column));
                    }
                }
                SelectItem::UnnamedExpr(e) => {
                    exprs.push(tables.expr(e, &input)?);
                    names.push(output_name(e));
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    exprs.push(tables.expr(expr, &input)?);
                    names.push(ident(alias));
                }
                other => return Err(Error::unsupported(format!("RETURNING {other}"))),
            }
        }
        let schema = output_schema(&exprs, &names, &input)?;
        Ok(Returning { exprs, input: std::sync::Arc::new(input), schema })
    }
}
