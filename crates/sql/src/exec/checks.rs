//! CHECK constraints at write time: [`Checks::compile`] plans a table's constraints (kept as
//! SQL text in its definition, `table::CheckDef`) once per statement, and every write path
//! (`write::InsertRun`, the upsert's `DO UPDATE`, `modify`'s UPDATE) calls [`Checks::verify`]
//! on the rows it is about to write: a row for which a constraint is false (not NULL, as in
//! PostgreSQL) fails the statement with 23514 naming it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::parser::Parser;
use raftable_common::{Error, Result};

use crate::error::from_datafusion;
use crate::plan::context::Tables;
use crate::table::TableDef;

/// A table's CHECK constraints, planned: (name, expression over every column).
#[derive(Default)]
pub(crate) struct Checks(Vec<(String, Arc<dyn PhysicalExpr>)>);

impl Checks {
    /// Plans `def`'s constraints in the session's context (42703 and the like for one that does
    /// not plan, which CREATE TABLE reports).
    pub(crate) fn compile(ctx: &SessionContext, def: &TableDef) -> Result<Checks> {
        if def.checks.is_empty() {
            return Ok(Checks::default());
        }
        let state = ctx.state();
        let tables = Tables::none(&state);
        let schema = DFSchema::try_from(def.full_schema()).map_err(from_datafusion)?;
        let mut out = Vec::with_capacity(def.checks.len());
        for check in &def.checks {
            let ast = Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
                .try_with_sql(&check.expr)
                .and_then(|mut p| p.parse_expr())
                .map_err(|e| Error::SyntaxError(e.to_string()))?;
            let expr = tables.expr(&ast, &schema)?;
            out.push((check.name.clone(), super::physical_expr(&state, expr, &schema)?));
        }
        Ok(Checks(out))
    }

    /// Fails with 23514 if a constraint is false for one of the rows (`columns`: every column
    /// of the table, as stored).
    pub(crate) fn verify(&self, def: &TableDef, columns: &[ArrayRef]) -> Result<()> {
        if self.0.is_empty() || columns.first().is_none_or(|c| c.is_empty()) {
            return Ok(());
        }
        let batch = RecordBatch::try_new(Arc::new(def.full_schema()), columns.to_vec()).map_err(Error::internal)?;
        for (name, check) in &self.0 {
            let result = check.evaluate(&batch).map_err(from_datafusion)?.into_array(batch.num_rows());
            let result = result.map_err(from_datafusion)?;
            let result = datafusion::arrow::compute::cast(&result, &datafusion::arrow::datatypes::DataType::Boolean)
                .map_err(Error::internal)?;
            let ok = datafusion::common::cast::as_boolean_array(&result).map_err(from_datafusion)?;
            if (0..ok.len()).any(|i| ok.is_valid(i) && !ok.value(i)) {
                return Err(Error::CheckViolation(format!(
                    "new row for relation \"{}\" violates check constraint \"{name}\"",
                    def.name
                )));
            }
        }
        Ok(())
    }
}
