//! PostgreSQL types on the wire: which pg type stands for which Arrow type, and the codecs of
//! their values. The rest of the front end uses these; nothing here uses the rest of it
//! (`params`, `results`, `extended`), so imports point one way.
//!
//! - `mapping`: pg type ↔ Arrow type ([`pg_type`], [`planned_type`]), PostgreSQL's type names
//!   for messages, and the zone of TIMESTAMPTZ values.
//! - `text`: text-format values in (PostgreSQL's input functions), for bound parameters.
//! - `binary`: binary-format values in (PostgreSQL's send formats), for bound parameters.
//! - `numeric`: NUMERIC values out, text and binary, for Decimal128 result columns.

mod binary;
mod mapping;
mod numeric;
mod text;

pub(super) use binary::from_binary;
pub(super) use mapping::{pg_type, planned_type};
pub(super) use numeric::Numeric;
pub(super) use text::from_text;
