//! Typed rows from either backend, so a test reads a table the same way on both.

use sqlx::postgres::PgRow;
use sqlx::{Row as _, TypeInfo as _, ValueRef as _};

/// One column's value.
pub trait Column: Sized {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> Self;
    fn from_postgres(row: &PgRow, index: usize) -> Self;
}

impl Column for String {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> Self {
        row.get(index).unwrap()
    }

    fn from_postgres(row: &PgRow, index: usize) -> Self {
        row.try_get(index).unwrap()
    }
}

impl Column for bool {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> Self {
        row.get(index).unwrap()
    }

    fn from_postgres(row: &PgRow, index: usize) -> Self {
        row.try_get(index).unwrap()
    }
}

/// SQLite has one integer type; PostgreSQL's `INTEGER` columns are 32 bits while
/// `BIGINT` columns and `COUNT(*)` are 64, so both widths read as `i64`.
impl Column for i64 {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> Self {
        row.get(index).unwrap()
    }

    fn from_postgres(row: &PgRow, index: usize) -> Self {
        let raw = row.try_get_raw(index).unwrap();
        match raw.type_info().name() {
            "INT4" => row.try_get::<i32, _>(index).map(i64::from).unwrap(),
            "INT2" => row.try_get::<i16, _>(index).map(i64::from).unwrap(),
            _ => row.try_get(index).unwrap(),
        }
    }
}

impl<T: Column> Column for Option<T> {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> Self {
        let null = row.get_ref(index).unwrap() == rusqlite::types::ValueRef::Null;
        (!null).then(|| T::from_sqlite(row, index))
    }

    fn from_postgres(row: &PgRow, index: usize) -> Self {
        let null = row.try_get_raw(index).unwrap().is_null();
        (!null).then(|| T::from_postgres(row, index))
    }
}

/// A row: a tuple of [`Column`]s, in the order the query selects them.
pub trait Row: Sized {
    fn from_sqlite(row: &rusqlite::Row<'_>) -> Self;
    fn from_postgres(row: &PgRow) -> Self;
}

macro_rules! tuple_row {
    ($($column:ident $index:tt),+) => {
        impl<$($column: Column),+> Row for ($($column,)+) {
            fn from_sqlite(row: &rusqlite::Row<'_>) -> Self {
                ($($column::from_sqlite(row, $index),)+)
            }

            fn from_postgres(row: &PgRow) -> Self {
                ($($column::from_postgres(row, $index),)+)
            }
        }
    };
}

tuple_row!(A 0);
tuple_row!(A 0, B 1);
tuple_row!(A 0, B 1, C 2);
tuple_row!(A 0, B 1, C 2, D 3);
tuple_row!(A 0, B 1, C 2, D 3, E 4);
