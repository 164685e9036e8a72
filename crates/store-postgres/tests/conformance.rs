//! The store conformance suite (`followthrough_store::conformance`) against PostgreSQL,
//! every test in a fresh schema of the test database (see `common`).

mod common;

use common::{fresh, reopen};

followthrough_store::conformance_tests!(fresh, reopen);
