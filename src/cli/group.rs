//! `slate group show | reset`: a consumer group's offsets, and moving them to rebuild a sink (or
//! re-run the enricher) from the log without touching the source of truth.

use super::load_config;
use crate::config::Config;
use crate::kafka::group::{self, Move, PartitionOffsets, Scope, Target};
use crate::progress::Progress;
use anyhow::Context as _;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// Committed offsets, watermarks, lag and live members of a group.
    Show {
        #[command(flatten)]
        which: Which,
        /// Poll until the group's lag is 0 (progress on stderr); exit 1 after --timeout.
        #[arg(long)]
        wait: bool,
        /// With --wait: wait instead until the group has committed, on every partition, at
        /// least where GROUP has committed now: the rollout handover (the losing pipeline has
        /// processed every event the gaining one skipped before its restart).
        #[arg(long, requires = "wait", value_name = "GROUP")]
        past: Option<String>,
        /// How long --wait waits, e.g. `90s` or `10m`.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Move a stopped group's offsets (refused while it has live members).
    Reset {
        #[command(flatten)]
        which: Which,
        #[command(flatten)]
        to: To,
        /// Print the moves and commit nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the moves as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// The group, from a role's config or by name, and which topics of it.
#[derive(clap::Args, Debug)]
pub struct Which {
    /// The group of a slate role, from the config: `enricher` (`enricher.group_id`, its input
    /// topics) or a sink (`sinks.group_prefix` + sql|search|audit, the enriched topics).
    #[arg(long, value_enum, conflicts_with = "group")]
    role: Option<RoleGroup>,
    /// Any consumer group, by name (then --topic is required).
    #[arg(long, requires = "topic")]
    group: Option<String>,
    /// `TOPIC` or `TOPIC:P,P,…` (repeatable); default: every topic of --role, all partitions.
    #[arg(long, value_name = "TOPIC[:PARTITIONS]", value_parser = parse_topic)]
    topic: Vec<(String, Option<Vec<i32>>)>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum RoleGroup {
    Enricher,
    Sql,
    Search,
    Audit,
}

#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct To {
    /// Each partition's log start: the group re-reads everything retention kept.
    #[arg(long)]
    to_earliest: bool,
    /// Each partition's end: the group skips what is waiting.
    #[arg(long)]
    to_latest: bool,
    /// This offset on every chosen partition (clamped to the partition's log, with a note).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// The first message at or after this time: epoch milliseconds or RFC 3339
    /// (`2026-12-01T09:00:00Z`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to_timestamp: Option<i64>,
}

impl To {
    fn target(&self) -> Target {
        match (self.to_earliest, self.to_latest, self.to_offset, self.to_timestamp) {
            (true, ..) => Target::Earliest,
            (_, true, ..) => Target::Latest,
            (_, _, Some(o), _) => Target::Offset(o),
            (.., Some(t)) => Target::Timestamp(t),
            _ => unreachable!("clap requires one --to-* flag"),
        }
    }
}

fn parse_topic(s: &str) -> Result<(String, Option<Vec<i32>>), String> {
    match s.split_once(':') {
        None if !s.is_empty() => Ok((s.to_string(), None)),
        Some((t, ps)) if !t.is_empty() => {
            let parts =
                ps.split(',').map(|p| p.trim().parse::<i32>().map_err(|_| format!("`{p}` is not a partition number; write TOPIC:0,1,2")));
            Ok((t.to_string(), Some(parts.collect::<Result<_, _>>()?)))
        }
        _ => Err("an empty topic name; write TOPIC or TOPIC:0,1,2".into()),
    }
}

fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("`{s}` is neither epoch milliseconds nor RFC 3339 such as 2026-12-01T09:00:00Z: {e}"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0))
}

fn scope(config: &Config, which: &Which) -> anyhow::Result<Scope> {
    let (group, topics) = match (which.role, &which.group) {
        (Some(RoleGroup::Enricher), _) => (config.enricher.group_id.clone(), config.enricher.input_topics(config.entities())),
        (Some(role), _) => {
            let name = match role {
                RoleGroup::Sql => "sql",
                RoleGroup::Search => "search",
                _ => "audit",
            };
            (format!("{}{name}", config.sinks.group_prefix), crate::sink::runner::topics(&config.sinks, config.entities()))
        }
        (None, Some(g)) => (g.clone(), Vec::new()),
        (None, None) => anyhow::bail!("name the group: --role enricher|sql|search|audit, or --group NAME --topic TOPIC"),
    };
    let topics = if which.topic.is_empty() { topics.into_iter().map(|t| (t, None)).collect() } else { which.topic.clone() };
    Ok(Scope { group, topics })
}

/// Runs a blocking group call off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, group::GroupError> + Send + 'static) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await.context("group task")??)
}

pub async fn run(config_path: Option<&Path>, cmd: GroupCommand) -> anyhow::Result<i32> {
    let config = load_config(config_path, Vec::new()).await?;
    match cmd {
        GroupCommand::Show { which, wait, past, timeout, json } => {
            let scope = scope(&config, &which)?;
            let client = std::sync::Arc::new(group::client(&config.kafka, &scope.group)?);
            let read = || {
                let (c, s) = (client.clone(), scope.clone());
                blocking(move || Ok((group::members(&*c, &s.group)?, group::offsets(&*c, &s.topics)?)))
            };
            let (mut members, mut parts) = read().await?;
            if wait {
                // Where each partition must get to: the end (lag 0), or where `past` is now.
                let marks = match &past {
                    None => None,
                    Some(other) => {
                        let (k, s) = (config.kafka.clone(), scope.clone());
                        let other = other.clone();
                        let theirs = blocking(move || group::offsets(&group::client(&k, &other)?, &s.topics)).await?;
                        Some(theirs.iter().map(|p| ((p.topic.clone(), p.partition), p.position())).collect())
                    }
                };
                let behind = |parts: &[PartitionOffsets]| behind(parts, marks.as_ref());
                let start = behind(&parts) as u64;
                let idle = if members.is_empty() { "; no live member consumes it yet" } else { "" };
                let goal = match &past {
                    None => format!("its lag of {start} records to reach 0"),
                    Some(g) => format!("its {start} records behind group {g}'s committed offsets to reach 0"),
                };
                eprintln!("group {}: waiting for {goal} ({} live member(s){idle})", scope.group, members.len());
                let progress = Progress::stderr(format!("group {} catching up: records", scope.group), Some(start), false);
                let deadline = Instant::now() + timeout;
                while behind(&parts) > 0 {
                    if Instant::now() >= deadline {
                        eprintln!("group {}: still {} behind after {}", scope.group, behind(&parts), humantime::format_duration(timeout));
                        print_show(&scope.group, &members, &parts, json)?;
                        return Ok(1);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    (members, parts) = read().await?;
                    let done = start.saturating_sub(behind(&parts) as u64);
                    progress.inc(done.saturating_sub(progress.done()));
                }
                progress.finish();
            }
            print_show(&scope.group, &members, &parts, json)?;
            Ok(0)
        }
        GroupCommand::Reset { which, to, dry_run, json } => {
            let scope = scope(&config, &which)?;
            let client = std::sync::Arc::new(group::client(&config.kafka, &scope.group)?);
            let (c, s, target) = (client.clone(), scope.clone(), to.target());
            let moves = blocking(move || group::plan_reset(&c, &s, target)).await?;
            if !dry_run {
                let (c, g, m) = (client.clone(), scope.group.clone(), moves.clone());
                blocking(move || group::apply(&c, &g, &m)).await?;
            }
            print_reset(&scope.group, &moves, dry_run, json)?;
            Ok(0)
        }
    }
}

fn lag(parts: &[PartitionOffsets]) -> i64 {
    parts.iter().map(PartitionOffsets::lag).sum()
}

/// Records left before each partition reaches its mark (`marks`: topic, partition → offset),
/// or its end without marks.
fn behind(parts: &[PartitionOffsets], marks: Option<&std::collections::HashMap<(String, i32), i64>>) -> i64 {
    match marks {
        None => lag(parts),
        Some(marks) => parts.iter().map(|p| (marks.get(&(p.topic.clone(), p.partition)).copied().unwrap_or(0) - p.position()).max(0)).sum(),
    }
}

fn offset(o: Option<i64>) -> String {
    o.map_or_else(|| "-".into(), |o| o.to_string())
}

fn print_show(group: &str, members: &[String], parts: &[PartitionOffsets], json: bool) -> anyhow::Result<()> {
    if json {
        let v = serde_json::json!({ "group": group, "members": members, "lag": lag(parts), "partitions": parts });
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    println!("group {group}: {} live member(s){}{}", members.len(), if members.is_empty() { "" } else { ": " }, members.join(", "));
    println!("| topic | partition | committed | low | high | lag |\n|---|---:|---:|---:|---:|---:|");
    for p in parts {
        println!("| {} | {} | {} | {} | {} | {} |", p.topic, p.partition, offset(p.committed), p.low, p.high, p.lag());
    }
    println!("\ntotal lag: {} records", lag(parts));
    Ok(())
}

fn print_reset(group: &str, moves: &[Move], dry_run: bool, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(&serde_json::json!({ "group": group, "dry_run": dry_run, "moves": moves }))?);
        return Ok(());
    }
    println!("| topic | partition | committed | new offset | low | high | to read | note |\n|---|---:|---:|---:|---:|---:|---:|---|");
    for m in moves {
        let note = m.note.as_deref().unwrap_or("");
        println!("| {} | {} | {} | {} | {} | {} | {} | {note} |", m.topic, m.partition, offset(m.from), m.to, m.low, m.high, m.lag_after());
    }
    let read: i64 = moves.iter().map(Move::lag_after).sum();
    if dry_run {
        println!("\ndry run: nothing committed; without --dry-run group {group} would read {read} records from these offsets");
    } else {
        println!(
            "\nmoved {} partition(s) of group {group}; its members read {read} records from these offsets when they start",
            moves.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_counts_to_the_end_or_to_another_groups_offsets() {
        let p = |partition, committed, high| PartitionOffsets { topic: "t".into(), partition, committed, low: 0, high };
        let parts = [p(0, Some(5), 10), p(1, None, 4)];
        assert_eq!(behind(&parts, None), 5 + 4, "lag without marks");
        let marks = std::collections::HashMap::from([(("t".to_string(), 0), 7), (("t".to_string(), 1), 0)]);
        assert_eq!(behind(&parts, Some(&marks)), 2, "only the records before the other group's offsets");
    }

    #[test]
    fn topics_and_times_parse_or_say_how_to_write_them() {
        assert_eq!(parse_topic("a.b"), Ok(("a.b".into(), None)));
        assert_eq!(parse_topic("t:0,2"), Ok(("t".into(), Some(vec![0, 2]))));
        assert!(parse_topic("t:x").unwrap_err().contains("TOPIC:0,1,2"));
        assert!(parse_topic(":1").is_err());
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1000));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
