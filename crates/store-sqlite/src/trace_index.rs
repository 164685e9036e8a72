//! The per-object indexes that only traces read, kept in bulk.
//!
//! Which events an object received, its journal, its outbox rows and its property history
//! are read per object by the trace, the console and the admin API, never by the engine.
//! As ordinary indexes they cost the writer dearly: a batch of the engine touches
//! thousands of different objects, so each index keyed by object had a page dirtied, and
//! written to the WAL at commit, per event. Here the rows are appended unindexed and,
//! every [`EVERY`], the writer enters the new rows' `(object, seq)` into
//! `<table>_by_object` in one pass sorted by object: a page written then takes every entry
//! its objects gained since the last pass, not one. `trace_index_marks` holds how far
//! each table is entered, updated in the same transaction as the entries.
//!
//! A per-object read ([`seqs_of_object`]) takes the entered rows from the index and scans
//! the rows past the mark by `seq`, which is the table's rowid, so it sees every committed
//! row whether or not a pass has run. The scan is a few seconds of rows at full load and
//! nothing once the writer is idle (a pass also runs when it has had no job for
//! [`EVERY`], and at close).
//!
//! The marks rely on a new row never taking a `seq` at or below its table's mark. The
//! inbox has AUTOINCREMENT, and the outbox and the property history are never pruned.
//! The journal takes `MAX(seq) + 1` and is pruned by age, so a prune that removes its
//! newest rows (or all of them) would let new rows reuse numbers: [`clamp_journal_mark`]
//! lowers the mark to what is left after each prune.

use std::time::Duration;

use followthrough_store::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

use crate::sql_error;

/// How often the writer enters new rows. Longer makes each page written take more
/// entries and the scan of unentered rows longer; two seconds is ~40,000 events at full
/// load, about four visits per object in the end-to-end bench.
pub(crate) const EVERY: Duration = Duration::from_secs(2);

/// The schema version that brought these tables.
pub(crate) const SINCE_VERSION: i64 = 8;

/// Most rows entered per table per pass, so a pass after a long backlog cannot hold the
/// writer for long; the rest waits for the next pass.
const MOST_ROWS_PER_PASS: i64 = 200_000;

/// A table indexed in bulk: its rows have `seq INTEGER PRIMARY KEY` and an `object`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    Inbox,
    Journal,
    Outbox,
    PropertyHistory,
}

impl Source {
    const ALL: [Source; 4] = [
        Source::Inbox,
        Source::Journal,
        Source::Outbox,
        Source::PropertyHistory,
    ];

    fn table(self) -> &'static str {
        match self {
            Source::Inbox => "inbox",
            Source::Journal => "journal",
            Source::Outbox => "outbox",
            Source::PropertyHistory => "property_history",
        }
    }

    fn index(self) -> &'static str {
        match self {
            Source::Inbox => "inbox_by_object",
            Source::Journal => "journal_by_object",
            Source::Outbox => "outbox_by_object",
            Source::PropertyHistory => "property_history_by_object",
        }
    }
}

/// A subquery giving the `seq` of every row of `source` whose object is `?1`: the entered
/// ones from the index, then the ones past the mark. For `WHERE seq IN (...)`.
pub(crate) fn seqs_of_object(source: Source) -> String {
    format!(
        "SELECT seq FROM {index} WHERE object = ?1
         UNION ALL
         SELECT seq FROM {table}
         WHERE seq > (SELECT indexed_through FROM trace_index_marks WHERE source = '{table}')
           AND object = ?1",
        index = source.index(),
        table = source.table(),
    )
}

/// The tables a pass goes through, one per step: the writer commits each step on its
/// own, so a pass holds the writer's other jobs back for one table's entries at most.
pub(crate) const STEPS: usize = Source::ALL.len();

/// Step `step` of a pass: enters the rows of one table added since its last pass, up to
/// [`MOST_ROWS_PER_PASS`]. Runs on the writer, inside its transaction. Returns the rows
/// entered.
pub(crate) fn enter_new_rows(connection: &Connection, step: usize) -> Result<u64, StoreError> {
    enter_new_rows_up_to(connection, Source::ALL[step % STEPS], MOST_ROWS_PER_PASS)
}

fn enter_new_rows_up_to(
    connection: &Connection,
    source: Source,
    most: i64,
) -> Result<u64, StoreError> {
    let table = source.table();
    let mark = mark(connection, source)?;
    let newest: i64 = connection
        .prepare_cached(&format!("SELECT COALESCE(MAX(seq), 0) FROM {table}"))
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .map_err(sql_error)?;
    let through = newest.min(mark + most);
    if through <= mark {
        return Ok(0);
    }
    // Sorted by object so the B-tree is filled page by page; the journal's rows about no
    // object (requests) are not entered.
    let entered = connection
        .prepare_cached(&format!(
            "INSERT INTO {index} (object, seq)
             SELECT object, seq FROM {table}
             WHERE seq > ?1 AND seq <= ?2 AND object IS NOT NULL
             ORDER BY object, seq",
            index = source.index(),
        ))
        .and_then(|mut statement| statement.execute(params![mark, through]))
        .map_err(sql_error)? as u64;
    set_mark(connection, source, through)?;
    Ok(entered)
}

/// Removes the entries of rows about to be deleted: those of `source` whose seq is in
/// the temporary table `doomed` (one column, `seq`). Call before deleting the rows.
pub(crate) fn forget(
    connection: &Connection,
    source: Source,
    doomed: &str,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(&format!(
            "DELETE FROM {index} WHERE (object, seq) IN
               (SELECT object, seq FROM {table} WHERE seq IN (SELECT seq FROM {doomed}))",
            index = source.index(),
            table = source.table(),
        ))
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(sql_error)
}

/// After pruning the journal: if the prune took its newest rows, the next rows reuse
/// their numbers, so the mark goes back to the newest row left (0 if none) or those new
/// rows would be neither entered nor past the mark.
pub(crate) fn clamp_journal_mark(connection: &Connection) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "UPDATE trace_index_marks
             SET indexed_through = (SELECT COALESCE(MAX(seq), 0) FROM journal)
             WHERE source = 'journal'
               AND indexed_through > (SELECT COALESCE(MAX(seq), 0) FROM journal)",
        )
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(sql_error)
}

fn mark(connection: &Connection, source: Source) -> Result<i64, StoreError> {
    connection
        .prepare_cached("SELECT indexed_through FROM trace_index_marks WHERE source = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([source.table()], |row| row.get(0))
                .optional()
        })
        .map_err(sql_error)?
        .ok_or_else(|| StoreError::Corrupt(format!("no trace index mark for {}", source.table())))
}

fn set_mark(connection: &Connection, source: Source, through: i64) -> Result<(), StoreError> {
    connection
        .prepare_cached("UPDATE trace_index_marks SET indexed_through = ?2 WHERE source = ?1")
        .and_then(|mut statement| statement.execute(params![source.table(), through]))
        .map(drop)
        .map_err(sql_error)
}

#[cfg(test)]
mod tests {
    use followthrough_core::{ObjectRef, Timestamp};
    use followthrough_store::{JournalEntry, JournalKind};
    use serde_json::json;

    use super::*;
    use crate::queries;

    fn database() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut connection = crate::open_connection(&dir.path().join("t.db")).unwrap();
        crate::migrations::apply(&mut connection).unwrap();
        (dir, connection)
    }

    fn contact(id: &str) -> ObjectRef {
        ObjectRef::new("hubspot", "contact", id)
    }

    fn note(connection: &Connection, object: Option<&ObjectRef>, summary: &str) {
        let entry = JournalEntry {
            at: Timestamp(1),
            object: object.cloned(),
            kind: JournalKind::Rule,
            summary: summary.into(),
            detail: json!({}),
        };
        queries::insert_journal(connection, &entry).unwrap();
    }

    fn summaries(connection: &Connection, object: &ObjectRef) -> Vec<String> {
        queries::journal_for(connection, object)
            .unwrap()
            .into_iter()
            .map(|e| e.summary)
            .collect()
    }

    fn entered(connection: &Connection) -> Vec<(String, i64)> {
        connection
            .prepare("SELECT object, seq FROM journal_by_object ORDER BY object, seq")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A pass enters each row once, no more than its bound at a time, leaves out the
    /// rows about no object, and a read finds an object's rows in order wherever they are.
    #[test]
    fn passes_enter_each_row_once_and_reads_see_entered_and_newer_rows_alike() {
        let (_dir, connection) = database();
        let (a, b) = (contact("1"), contact("2"));
        note(&connection, Some(&a), "a1");
        note(&connection, None, "a request");
        note(&connection, Some(&b), "b1");
        note(&connection, Some(&a), "a2");
        assert_eq!(summaries(&connection, &a), ["a1", "a2"], "before any pass");

        // A bound of 2 rows per table: the first pass stops after the request row.
        assert_eq!(
            enter_new_rows_up_to(&connection, Source::Journal, 2).unwrap(),
            1
        );
        assert_eq!(entered(&connection), [("hubspot:contact:1".to_owned(), 1)]);
        assert_eq!(summaries(&connection, &a), ["a1", "a2"], "half entered");

        note(&connection, Some(&a), "a3");
        enter_new_rows_up_to(&connection, Source::Journal, 2).unwrap();
        assert_eq!(
            summaries(&connection, &a),
            ["a1", "a2", "a3"],
            "a3 not entered yet"
        );
        enter_new_rows_up_to(&connection, Source::Journal, 2).unwrap();
        assert_eq!(
            entered(&connection),
            [
                ("hubspot:contact:1".to_owned(), 1),
                ("hubspot:contact:1".to_owned(), 4),
                ("hubspot:contact:1".to_owned(), 5),
                ("hubspot:contact:2".to_owned(), 3),
            ]
        );
        let pass: u64 = (0..STEPS)
            .map(|step| enter_new_rows(&connection, step).unwrap())
            .sum();
        assert_eq!(pass, 0, "nothing new");
        assert_eq!(summaries(&connection, &a), ["a1", "a2", "a3"]);
        assert_eq!(summaries(&connection, &b), ["b1"]);
    }

    /// Every per-object read finds the entered rows through its `_by_object` table and
    /// reaches the newer ones by `seq`: none scans its whole table.
    #[test]
    fn per_object_reads_use_the_bulk_indexes_and_scan_only_past_the_mark() {
        let (_dir, connection) = database();
        for source in Source::ALL {
            let sql = format!(
                "SELECT * FROM {} WHERE seq IN ({}) ORDER BY seq",
                source.table(),
                seqs_of_object(source)
            );
            let plan: Vec<String> = connection
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([""], |row| row.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("\n");
            assert!(
                plan.contains(&format!(
                    "SEARCH {} USING PRIMARY KEY (object=?)",
                    source.index()
                )),
                "{plan}"
            );
            assert!(
                plan.contains(&format!(
                    "SEARCH {} USING INTEGER PRIMARY KEY (rowid>?)",
                    source.table()
                )),
                "{plan}"
            );
            assert!(!plan.contains("SCAN"), "{plan}");
        }
    }
}
