//! `slate publish`: hand ID-only change events to slate from a script. One event from flags, or
//! JSON lines from a file or stdin (`uuid` and `ts` optional). Every refused line and every
//! event the broker did not acknowledge is reported on stderr with its line number; each ack is
//! a JSON line on stdout. Exit status 1 when anything was refused or failed.

use super::load_config;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use anyhow::Context as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    /// The entity of one event (with --id), as the catalogue names it.
    #[arg(long, requires = "id")]
    entity: Option<String>,
    /// The entity id of one event (with --entity).
    #[arg(long, requires = "entity")]
    id: Option<String>,
    /// The change type of one event.
    #[arg(long = "type", default_value = "UPDATE", value_parser = ["CREATE", "UPDATE", "DELETE"])]
    change_type: String,
    /// Events as JSON lines from this file (`-`: stdin), e.g.
    /// {"type": "UPDATE", "entity": "invoice", "id": "inv-1"}.
    #[arg(long, conflicts_with_all = ["entity", "id"], required_unless_present = "entity")]
    file: Option<PathBuf>,
    /// Lines queued before their acknowledgements are awaited (bounds memory).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    chunk: u32,
}

#[derive(Default)]
struct Tally {
    published: usize,
    refused: usize,
    failed: usize,
}

pub async fn run(config_path: Option<&Path>, args: PublishArgs) -> anyhow::Result<i32> {
    let config = load_config(config_path, Vec::new()).await?;
    let publisher = Publisher::new(&config, Metrics::new()).context("cannot create the Kafka producer")?;
    let mut tally = Tally::default();
    match (&args.file, &args.entity, &args.id) {
        (None, Some(entity), Some(id)) => {
            let line = serde_json::json!({"type": args.change_type, "entity": entity, "id": id}).to_string();
            publish_chunk(&publisher, &[(1, line)], &mut tally).await;
        }
        (Some(path), _, _) => {
            let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?))
            };
            let mut chunk = Vec::new();
            for (n, line) in reader.lines().enumerate() {
                let line = line.with_context(|| format!("cannot read line {}", n + 1))?;
                if line.trim().is_empty() {
                    continue;
                }
                chunk.push((n + 1, line));
                if chunk.len() == args.chunk as usize {
                    publish_chunk(&publisher, &chunk, &mut tally).await;
                    chunk.clear();
                }
            }
            publish_chunk(&publisher, &chunk, &mut tally).await;
        }
        _ => anyhow::bail!("give --entity and --id for one event, or --file for JSON lines"),
    }
    eprintln!("published {}, refused {}, failed {}", tally.published, tally.refused, tally.failed);
    Ok(if tally.refused + tally.failed > 0 { 1 } else { 0 })
}

async fn publish_chunk(publisher: &Publisher, lines: &[(usize, String)], tally: &mut Tally) {
    let mut events = Vec::with_capacity(lines.len());
    let mut numbers = Vec::with_capacity(lines.len());
    for (n, line) in lines {
        match publisher.parse(line.as_bytes()) {
            Ok(event) => {
                events.push(event);
                numbers.push(*n);
            }
            Err(refused) => {
                eprintln!("line {n}: refused: {refused}");
                tally.refused += 1;
            }
        }
    }
    for ((n, event), outcome) in numbers.iter().zip(&events).zip(publisher.publish(&events).await) {
        match outcome {
            Ok(ack) => {
                println!("{}", serde_json::to_string(&ack).expect("an ack serializes"));
                tally.published += 1;
            }
            Err(e) => {
                eprintln!("line {n} ({}): not acknowledged: {e}", event.uuid);
                tally.failed += 1;
            }
        }
    }
}
