//! The fixed schema every differential query reads: two small tables whose values sit where
//! engines tend to disagree (NULLs, zero, negative zero, the ends of each integer range, NaN and
//! infinities, empty and padded text, LIKE metacharacters, a leap day, dangling references).
//! [`SETUP`] runs once on each engine before the first query; `generate` draws columns from
//! [`TABLES`].

use super::generate::Ty;

/// One column a query may read.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: Ty,
}

/// One table: its name, its single-column integer primary key `id` and its other columns.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
}

const fn col(name: &'static str, ty: Ty) -> Column {
    Column { name, ty }
}

/// The tables, `id` first.
pub const TABLES: &[Table] = &[
    Table {
        name: "dt1",
        columns: &[
            col("id", Ty::Int),
            col("a", Ty::Int),
            col("b", Ty::BigInt),
            col("c", Ty::Text),
            col("d", Ty::Double),
            col("e", Ty::Numeric),
            col("f", Ty::Bool),
            col("g", Ty::Date),
        ],
    },
    Table { name: "dt2", columns: &[col("id", Ty::Int), col("t1_id", Ty::Int), col("x", Ty::Int), col("y", Ty::Text)] },
];

/// The statements that create and fill [`TABLES`] (after dropping any earlier copies).
pub const SETUP: &[&str] = &[
    "DROP TABLE IF EXISTS dt1",
    "DROP TABLE IF EXISTS dt2",
    "CREATE TABLE dt1 (id integer PRIMARY KEY, a integer, b bigint, c text, d double precision, \
     e numeric(10,2), f boolean, g date)",
    "CREATE TABLE dt2 (id integer PRIMARY KEY, t1_id integer, x integer, y text)",
    "INSERT INTO dt1 VALUES \
     (1, 0, 0, '', 0, 0.00, false, '2000-01-01'), \
     (2, 1, 1, 'a', 1.5, 1.25, true, '2026-12-07'), \
     (3, -1, -1, 'A', -2.5, -1.50, false, '1999-12-31'), \
     (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
     (5, 2147483647, 9223372036854775807, 'abc', 1e10, 99999999.99, true, '2024-02-29'), \
     (6, -2147483648, -9223372036854775808, 'ABC ', -0.0, -99999999.99, NULL, '1970-01-01'), \
     (7, 42, 42, 'hello world', 3.14159, 3.14, true, '2026-01-01'), \
     (8, 7, 100, 'a%b_c', 0.1, 0.10, false, NULL), \
     (9, 7, -100, 'x', 'NaN', 10.00, true, '2026-06-30'), \
     (10, NULL, 5, 'hello', 'Infinity', 2.50, NULL, '2026-02-28'), \
     (11, 3, 3, ' padded ', '-Infinity', -0.01, false, '2025-12-31'), \
     (12, 100, 1000000, 'Hello', 2.5, 2.50, true, '2026-03-01')",
    "INSERT INTO dt2 VALUES \
     (1, 1, 10, 'one'), (2, 2, 20, 'two'), (3, 2, NULL, 'two again'), (4, 4, 0, NULL), \
     (5, 7, -5, 'seven'), (6, 99, 1, 'dangling'), (7, NULL, 7, 'no parent'), \
     (8, 12, 100, ''), (9, 7, 42, 'x'), (10, 9, 3, 'a%b_c')",
];
