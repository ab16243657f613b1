//! Differential testing against PostgreSQL: seeded random queries ([`generate`]) over a fixed
//! schema of tricky values ([`schema`]) run on PostgreSQL 15 and on raftable; the outcomes are
//! compared ([`compare`]); each mismatch is minimised (its query shrunk while the same kind of
//! mismatch remains) and grouped into a category by the kind and the minimised query's features;
//! one example per category can be written as `.slt` regression records (PostgreSQL's answer as
//! the expected output). The `sql-diff` binary drives it; `sql-tests/run-differential.sh` runs it
//! against a throwaway PostgreSQL and a 1-node raftable.
//!
//! A mismatch whose verdict and features cover an already minimised category's is counted in that
//! category without being minimised again, which keeps a long run with a common difference from
//! spending its time shrinking the same difference over and over.

pub mod compare;
pub mod generate;
pub mod schema;

use std::collections::BTreeSet;
use std::fmt::Write;
use std::mem::discriminant;

use rand::rngs::StdRng;
use rand::SeedableRng;

use self::compare::{compare, Engine, Outcome, Verdict};
use self::generate::{Feature, Generator, Query};
use sqllogictest::ColumnType;

use crate::{column_type, SqlError};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub postgres: String,
    pub raftable: String,
    pub seed: u64,
    pub queries: u64,
    /// Features the generator leaves out (known, documented differences).
    pub exclude: BTreeSet<String>,
    /// Query executions (on both engines) spent minimising one mismatch.
    pub minimise_budget: usize,
}

/// One category of mismatch: its kind, the minimised query's features, how many generated
/// queries fell into it, and its minimised example with both outcomes.
#[derive(Debug, Clone)]
pub struct Category {
    pub verdict: Verdict,
    pub features: BTreeSet<Feature>,
    pub count: u64,
    pub example: Query,
    pub postgres: Outcome,
    pub raftable: Outcome,
    /// The query as generated, before minimising.
    pub original: String,
}

impl Category {
    /// `values [cmp, int-division]`: the kind and the features.
    pub fn name(&self) -> String {
        let features: Vec<&str> = self.features.iter().copied().collect();
        format!("{} [{}]", kind(&self.verdict), features.join(", "))
    }
}

fn kind(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Types(t) => format!("types {t}"),
        Verdict::UnexpectedError(code) => format!("raftable error {code}"),
        Verdict::MissingError(code) => format!("missing error {code}"),
        Verdict::ErrorClass(codes) => format!("error class {codes}"),
        Verdict::Values | Verdict::NoAnswer => verdict.to_string(),
    }
}

/// The run's totals and its mismatch categories.
#[derive(Debug, Default)]
pub struct Report {
    pub queries: u64,
    /// Queries both engines answered with rows (and agreed or not).
    pub answered: u64,
    /// Queries both engines refused.
    pub errors: u64,
    pub mismatches: u64,
    pub categories: Vec<Category>,
}

impl Report {
    /// A summary line, then one paragraph per category (largest first).
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} queries: {} answered by both, {} refused by both, {} mismatches in {} categories\n",
            self.queries,
            self.answered,
            self.errors,
            self.mismatches,
            self.categories.len()
        );
        let mut categories: Vec<&Category> = self.categories.iter().collect();
        categories.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name().cmp(&b.name())));
        for c in categories {
            let _ = write!(
                out,
                "\n{:>6}  {}\n        {}\n        postgres: {}\n        raftable: {}\n",
                c.count,
                c.name(),
                c.example.sql(),
                indent(&c.postgres.to_string()),
                indent(&c.raftable.to_string())
            );
        }
        out
    }

    /// The categories' examples as `.slt` records expecting PostgreSQL's outcome, after the
    /// statements that create the schema.
    pub fn slt(&self, seed: u64) -> String {
        let mut out = format!(
            "# Minimised differential mismatches (sql-diff --seed {seed}); expected output: PostgreSQL 15.\n\n"
        );
        for statement in schema::SETUP {
            let _ = write!(out, "statement ok\n{statement}\n\n");
        }
        for c in &self.categories {
            let _ = writeln!(out, "# {}", c.name());
            out.push_str(&slt_record(&c.example, &c.postgres));
            out.push('\n');
        }
        out
    }
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n        ")
}

/// One `.slt` record asserting `outcome` for `query`.
fn slt_record(query: &Query, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Rows { types, rows } => {
            let letters: String = types.iter().map(|t| column_type(t).to_char()).collect();
            let mut out =
                format!("query {letters}{}\n{}\n----\n", if query.ordered() { "" } else { " rowsort" }, query.sql());
            for row in rows {
                let values: Vec<&str> = row
                    .iter()
                    .map(|v| match v.as_deref() {
                        None => "NULL",
                        Some("") => "(empty)",
                        Some(v) => v,
                    })
                    .collect();
                out.push_str(&values.join(" "));
                out.push('\n');
            }
            out
        }
        Outcome::Error { code, .. } => format!("statement error {code}\n{}\n", query.sql()),
        Outcome::Failed(why) => format!("# PostgreSQL gave no answer ({why})\n"),
    }
}

/// Creates the schema on both engines, then runs `config.queries` generated queries.
pub async fn run(config: &Config, mut progress: impl FnMut(&Report)) -> Result<Report, SqlError> {
    let mut postgres = Engine::connect(&config.postgres).await?;
    let mut raftable = Engine::connect(&config.raftable).await?;
    for statement in schema::SETUP {
        postgres.execute(statement).await?;
        raftable.execute(statement).await?;
    }
    let mut generator = Generator::new(StdRng::seed_from_u64(config.seed), config.exclude.clone());
    let mut report = Report::default();
    for n in 1..=config.queries {
        let query = generator.query();
        let sql = query.sql();
        let p = postgres.run(&sql).await;
        let r = raftable.run(&sql).await;
        report.queries += 1;
        match compare(&p, &r, query.ordered()) {
            None => match p {
                Outcome::Rows { .. } => report.answered += 1,
                _ => report.errors += 1,
            },
            Some(verdict) => {
                report.mismatches += 1;
                let features = query.features();
                let known = report
                    .categories
                    .iter_mut()
                    .find(|c| discriminant(&c.verdict) == discriminant(&verdict) && c.features.is_subset(&features));
                match known {
                    Some(category) => category.count += 1,
                    None => {
                        let category =
                            minimise(&mut postgres, &mut raftable, query, verdict, p, r, config.minimise_budget).await;
                        match report.categories.iter_mut().find(|c| c.name() == category.name()) {
                            Some(same) => same.count += 1,
                            None => report.categories.push(category),
                        }
                    }
                }
            }
        }
        if n % 1000 == 0 {
            progress(&report);
        }
    }
    Ok(report)
}

/// Shrinks `query` while the engines still disagree the same way (greedily: the first simpler
/// variant that keeps the mismatch replaces the query), within `budget` executions.
async fn minimise(
    postgres: &mut Engine,
    raftable: &mut Engine,
    query: Query,
    verdict: Verdict,
    p: Outcome,
    r: Outcome,
    mut budget: usize,
) -> Category {
    let original = query.sql();
    let mut best = (query, verdict, p, r);
    'shrink: while budget > 0 {
        for candidate in best.0.shrink() {
            if budget == 0 {
                break 'shrink;
            }
            budget -= 1;
            let sql = candidate.sql();
            let p = postgres.run(&sql).await;
            let r = raftable.run(&sql).await;
            if let Some(v) = compare(&p, &r, candidate.ordered()) {
                if discriminant(&v) == discriminant(&best.1) {
                    best = (candidate, v, p, r);
                    continue 'shrink;
                }
            }
        }
        break;
    }
    let (example, verdict, postgres, raftable) = best;
    Category { features: example.features(), verdict, count: 1, example, postgres, raftable, original }
}
