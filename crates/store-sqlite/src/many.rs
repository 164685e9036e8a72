//! Writing many rows with one statement.
//!
//! Each execution of a statement has a fixed cost besides its rows: SQLite opens the
//! table and its indexes, and ends the statement (`sqlite3VdbeHalt`); rusqlite checks
//! the statement out of its cache and resets it. A unit of the engine writes thousands
//! of rows of each kind, and with one execution per row that fixed cost was about a
//! third of each journal row's insert (measured with callgrind: 10.9k instructions per
//! row before, 6k after). So the writer binds [`ROWS_PER_STATEMENT`] rows to one
//! statement, `head (row), (row), ... tail`, and executes the rest one by one with the
//! one-row statement, so only two statements per kind sit in the cache.
//!
//! For plain inserts only (`ON CONFLICT DO NOTHING` included): upserts of many rows
//! (runs, current properties), a delete through `IN (SELECT ...)` and an insert with
//! `RETURNING` all measured dearer than one statement per row, and stay that way.

use rusqlite::{Connection, Statement, ToSql};

/// Rows bound to one statement. 32 rows of up to 11 parameters stay far under SQLite's
/// limit on parameters (32,766), and past a few dozen rows a statement gains little.
pub(crate) const ROWS_PER_STATEMENT: usize = 32;

/// A statement whose text repeats `row` once per row: `{head}{row}, {row}...{tail}`.
pub(crate) struct Shape {
    pub head: &'static str,
    pub row: &'static str,
    pub tail: &'static str,
}

impl Shape {
    pub(crate) fn text(&self, rows: usize) -> String {
        format!(
            "{}{}{}",
            self.head,
            vec![self.row; rows].join(", "),
            self.tail
        )
    }
}

/// The parameters of one statement, bound in order.
pub(crate) struct Params<'a, 'conn> {
    statement: &'a mut Statement<'conn>,
    next: usize,
}

impl Params<'_, '_> {
    pub(crate) fn push<T: ToSql>(&mut self, value: T) -> rusqlite::Result<&mut Self> {
        self.next += 1;
        self.statement.raw_bind_parameter(self.next, value)?;
        Ok(self)
    }
}

/// Executes `shape` for every row of `rows`, `bind` pushing each row's parameters in the
/// order `shape.row` names them. Rows are written in their order. Returns how many rows
/// the statements inserted (a row left out by `ON CONFLICT DO NOTHING` is not counted).
pub(crate) fn execute<T>(
    connection: &Connection,
    shape: &Shape,
    rows: &[T],
    mut bind: impl FnMut(&mut Params<'_, '_>, &T) -> rusqlite::Result<()>,
) -> rusqlite::Result<usize> {
    let mut changed = 0;
    let mut chunks = rows.chunks_exact(ROWS_PER_STATEMENT);
    if chunks.len() > 0 {
        let mut many = connection.prepare_cached(&shape.text(ROWS_PER_STATEMENT))?;
        for chunk in &mut chunks {
            let mut params = Params {
                statement: &mut many,
                next: 0,
            };
            for row in chunk {
                bind(&mut params, row)?;
            }
            changed += many.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut one = connection.prepare_cached(&shape.text(1))?;
        for row in rest {
            bind(
                &mut Params {
                    statement: &mut one,
                    next: 0,
                },
                row,
            )?;
            changed += one.raw_execute()?;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row lands, in order, whether it falls in a full statement or the rest.
    #[test]
    fn rows_in_full_statements_and_the_rest_are_all_written_in_order() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY, label TEXT NOT NULL)")
            .unwrap();
        let shape = Shape {
            head: "INSERT INTO t (label) VALUES ",
            row: "(?)",
            tail: "",
        };
        for count in [0, 1, ROWS_PER_STATEMENT, ROWS_PER_STATEMENT * 2 + 5] {
            connection.execute("DELETE FROM t", []).unwrap();
            let labels: Vec<String> = (0..count).map(|i| format!("row {i}")).collect();
            execute(&connection, &shape, &labels, |params, label| {
                params.push(label)?;
                Ok(())
            })
            .unwrap();
            let written: Vec<String> = connection
                .prepare("SELECT label FROM t ORDER BY n")
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(written, labels, "{count} rows");
        }
    }

    /// Rows left out by `ON CONFLICT DO NOTHING` (here, or earlier in the same
    /// statement) are not counted: ingest tells new events from duplicates this way.
    #[test]
    fn the_count_leaves_out_rows_a_conflict_skipped() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .unwrap();
        connection
            .execute("INSERT INTO t VALUES ('old')", [])
            .unwrap();
        let shape = Shape {
            head: "INSERT INTO t (k) VALUES ",
            row: "(?)",
            tail: " ON CONFLICT (k) DO NOTHING",
        };
        // 40 rows: one known already, one repeated inside the full statement, one
        // repeated in the one-row rest.
        let mut keys: Vec<String> = (0..37).map(|i| format!("k{i}")).collect();
        keys.insert(3, "old".into());
        keys.insert(10, "k1".into());
        keys.push("k36".into());
        assert_eq!(keys.len(), 40);
        let inserted = execute(&connection, &shape, &keys, |params, key| {
            params.push(key)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(inserted, 37);
    }
}
