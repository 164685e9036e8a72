//! `followthrough trace OBJECT [--json]`.

use std::process::ExitCode;

use anyhow::Context as _;
use followthrough_core::ObjectRef;
use followthrough_store::Store as _;
use followthrough_store_sqlite::SqliteStore;

use crate::config::Validated;
use crate::trace;

pub fn run(config: Validated, object: &str, json: bool) -> anyhow::Result<ExitCode> {
    let object: ObjectRef = object.parse()?;
    if !config.store_path.exists() {
        anyhow::bail!(
            "no store at {} (has followthrough run here?)",
            config.store_path.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = SqliteStore::open(&config.store_path, false)?;
        store
            .ready()
            .await
            .context("the store is not ready; run `followthrough migrate`")?;
        let redactor = crate::server::redactor(&config);
        let Some(trace) = trace::build(&store, &object, &redactor).await? else {
            eprintln!("{object}: followthrough has no record of this object");
            return Ok(ExitCode::from(1));
        };
        if json {
            println!("{}", serde_json::to_string_pretty(&trace)?);
        } else {
            print!("{}", trace.render());
        }
        Ok(ExitCode::SUCCESS)
    })
}
