//! `slate shadow compare`: one comparison of the live pipeline with its shadow (`[shadow]`),
//! printed as a table or JSON; exit status 1 when the shadow does not match.

use super::load_config;
use crate::shadow::compare::State;
use crate::shadow::{Report, Validator};
use std::path::Path;
use std::time::Duration;

#[derive(clap::Subcommand, Debug)]
pub enum ShadowCommand {
    /// Compare the live and shadow outputs per key once; exits 1 on any difference.
    Compare(CompareArgs),
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The shadow's output topic prefix (overrides `shadow.shadow_prefix`).
    #[arg(long)]
    pub shadow_prefix: Option<String>,
    /// The live output topic prefix (overrides `shadow.live_prefix`).
    #[arg(long)]
    pub live_prefix: Option<String>,
    /// Grace period before a one-sided or newer key counts (overrides `shadow.grace`), e.g. 30s.
    #[arg(long)]
    pub grace: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config_path: Option<&Path>, command: ShadowCommand) -> anyhow::Result<i32> {
    let ShadowCommand::Compare(args) = command;
    let mut flags = Vec::new();
    if let Some(p) = &args.shadow_prefix {
        flags.push(super::flag("shadow.shadow_prefix", format!("{p:?}"), "shadow-prefix"));
    }
    if let Some(p) = &args.live_prefix {
        flags.push(super::flag("shadow.live_prefix", format!("{p:?}"), "live-prefix"));
    }
    if let Some(g) = &args.grace {
        flags.push(super::flag("shadow.grace", format!("{g:?}"), "grace"));
    }
    let config = load_config(config_path, flags).await?;
    let mut validator = Validator::new(&config)?;
    let report = tokio::time::timeout(Duration::from_secs(600), validator.compare()).await??;
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["ok"] = report.ok().into();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_report(&report);
    }
    Ok(if report.ok() { 0 } else { 1 })
}

fn print_report(r: &Report) {
    println!("live `{}*` vs shadow `{}*` (grace {} ms)\n", r.live_prefix, r.shadow_prefix, r.grace_ms);
    println!("| store | entity | equal | different | pending | missing live | missing shadow | stale live | stale shadow |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (entity, e) in &r.entities {
        for (store, s) in &e.stores {
            let n: Vec<String> = State::ALL.iter().map(|st| s.result.count(*st).to_string()).collect();
            println!("| {store} | {entity} | {} |", n.join(" | "));
        }
    }
    for (entity, e) in &r.entities {
        for (store, s) in &e.stores {
            let shape = &s.shape;
            if !shape.is_same() {
                println!(
                    "\n{store} {entity}: fields only live {:?}, only shadow {:?}, type differs {:?} (not compared)",
                    shape.only_live, shape.only_shadow, shape.retyped
                );
            }
            for sample in &s.result.samples {
                let fields: Vec<String> = sample
                    .fields
                    .iter()
                    .map(|f| {
                        match f.delta.as_ref().and_then(|d| d.as_i64().map(|i| format!("{i:+}")).or(d.as_f64().map(|x| format!("{x:+}")))) {
                            Some(d) => format!("{}: {} -> {} ({d})", f.field, f.live, f.shadow),
                            None => format!("{}: {} -> {}", f.field, f.live, f.shadow),
                        }
                    })
                    .collect();
                println!(
                    "{store} {entity} {} {}: live v{:?}, shadow v{:?} {}",
                    sample.id,
                    sample.state.as_str(),
                    sample.live_version,
                    sample.shadow_version,
                    fields.join("; ")
                );
            }
        }
    }
    for m in &r.mismatches {
        println!("\nmismatch: {m}");
    }
    for store in r.stores() {
        if let Some(ratio) = r.match_ratio(store) {
            println!("\n{store}: {:.2}% of compared keys match", ratio * 100.0);
        }
    }
    println!("\n{}", if r.ok() { "shadow matches" } else { "shadow DIFFERS" });
}
