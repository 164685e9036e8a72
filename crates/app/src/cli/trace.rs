//! `followthrough trace OBJECT [--json]`.

use std::process::ExitCode;

use anyhow::Context as _;
use followthrough_core::ObjectRef;

use crate::config::Validated;
use crate::trace;

pub fn run(config: Validated, object: &str, json: bool) -> anyhow::Result<ExitCode> {
    let object: ObjectRef = object.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = config.store.open(false).await?;
        store
            .ready()
            .await
            .context("the store is not ready; run `followthrough migrate`")?;
        let redactor = crate::server::redactor(&config);
        let Some(trace) = trace::build(store.as_ref(), &object, &redactor).await? else {
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
