//! `slate schema`: check, register, diff and document the Avro contracts in `schemas/avro/`.
//!
//! `check` compares every schema with its earlier versions: the registered ones (default;
//! level from the registry), the ones in git (`--against git:REF`, level BACKWARD_TRANSITIVE
//! unless `--mode`) or none (`--against none`: each schema alone). It prints every finding with
//! the field, the rule and the fix, and fails when there is one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use super::{flag, load_config_without_subjects};
use crate::config::Config;
use crate::registry::{CompatibilityLevel, RegistryAuth};
use crate::schema::{self, Finding, PriorVersion, SchemaFile, SchemaRegistry};

#[derive(clap::Args, Debug)]
pub struct SchemaArgs {
    #[command(subcommand)]
    pub action: SchemaAction,
}

#[derive(Subcommand, Debug)]
pub enum SchemaAction {
    /// Check every schema against its earlier versions (registry or git) and lint the change.
    Check(CheckArgs),
    /// Register every schema under its subject(s); idempotent. Prints subject, version and id.
    Register(RegistryArgs),
    /// Field-level diff between two registered versions of a subject.
    Diff(DiffArgs),
    /// Write the Markdown reference of every record and field.
    Docs(DocsArgs),
    /// Write every live version of a registry (with ids) and its compatibility levels as JSON.
    Export(ExportArgs),
    /// Register an export's versions into a registry with their original ids and versions
    /// (the target is put in IMPORT mode meanwhile, then back).
    Import(ImportArgs),
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Schema registry URL to read (overrides `registry.url`).
    #[arg(long)]
    pub registry: Option<String>,
    /// Where to write the export; `-` is stdout.
    #[arg(long, short, default_value = "-")]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// An export written by `slate schema export`.
    pub file: PathBuf,
    /// Schema registry URL to write (overrides `registry.url`).
    #[arg(long)]
    pub registry: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RegistryArgs {
    /// Directory of the `.avsc` files.
    #[arg(long, default_value = "schemas/avro")]
    pub dir: PathBuf,
    /// Schema registry URL (overrides `registry.url`).
    #[arg(long)]
    pub registry: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub target: RegistryArgs,
    /// Compatibility level, e.g. BACKWARD_TRANSITIVE. Default: the subject's level in the
    /// registry, or BACKWARD_TRANSITIVE for `--against git:REF`.
    #[arg(long)]
    pub mode: Option<CompatibilityLevel>,
    /// Earlier versions to check against: `registry`, `git:REF` (e.g. `git:origin/main`) or `none`.
    #[arg(long, default_value = "registry")]
    pub against: Against,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Against {
    Registry,
    Git(String),
    None,
}

impl std::str::FromStr for Against {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "registry" => Ok(Against::Registry),
            "none" => Ok(Against::None),
            _ => match s.strip_prefix("git:") {
                Some(reference) if !reference.is_empty() => Ok(Against::Git(reference.to_owned())),
                _ => Err(format!("{s:?} is not a source of earlier versions; use registry, git:REF (e.g. git:HEAD~1) or none")),
            },
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The subject, e.g. slate.production.enriched-value.
    pub subject: String,
    /// Older version (default: the one before `--to`).
    #[arg(long)]
    pub from: Option<u32>,
    /// Newer version (default: latest).
    #[arg(long)]
    pub to: Option<u32>,
    /// Schema registry URL (overrides `registry.url`).
    #[arg(long)]
    pub registry: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct DocsArgs {
    #[arg(long, default_value = "schemas/avro")]
    pub dir: PathBuf,
    /// Output file; `-` prints to stdout.
    #[arg(long, default_value = "docs/schemas.md")]
    pub out: PathBuf,
}

pub async fn run(config_path: Option<&Path>, args: SchemaArgs) -> anyhow::Result<()> {
    match args.action {
        SchemaAction::Check(args) => check(config_path, args).await,
        SchemaAction::Register(args) => register(config_path, args).await,
        SchemaAction::Diff(args) => diff(config_path, args).await,
        SchemaAction::Docs(args) => docs(config_path, args),
        SchemaAction::Export(args) => export(config_path, args).await,
        SchemaAction::Import(args) => import(config_path, args).await,
    }
}

fn config_with(config_path: Option<&Path>, registry_url: Option<&str>) -> anyhow::Result<Config> {
    let flags = registry_url.map(|url| vec![flag("registry.url", format!("{url:?}"), "registry")]).unwrap_or_default();
    // These commands manage schema files; entities declared by a registry subject are the
    // registry's to evolve, so they are not read here (and `register` can create a subject).
    load_config_without_subjects(config_path, flags)
}

fn client(config: &Config) -> anyhow::Result<SchemaRegistry> {
    let cfg = &config.registry;
    let auth = match (&cfg.basic_auth, &cfg.bearer_token) {
        (Some(basic), _) => RegistryAuth::Basic { user: basic.username.clone(), pass: basic.password.expose().to_owned() },
        (None, Some(token)) => RegistryAuth::Bearer(token.expose().to_owned()),
        (None, None) => RegistryAuth::None,
    };
    let timeout = if cfg.timeout.is_zero() { Duration::from_secs(10) } else { cfg.timeout };
    Ok(SchemaRegistry::try_new(&cfg.url, auth, timeout)?)
}

fn load_files(dir: &Path) -> anyhow::Result<Vec<SchemaFile>> {
    schema::load_dir(dir).with_context(|| format!("cannot load the schemas of {}", dir.display()))
}

/// One checked (file, subject) and what was found.
struct Outcome {
    title: String,
    findings: Vec<Finding>,
}

async fn check(config_path: Option<&Path>, args: CheckArgs) -> anyhow::Result<()> {
    let config = config_with(config_path, args.target.registry.as_deref())?;
    let files = load_files(&args.target.dir)?;
    let mut outcomes = Vec::new();
    match &args.against {
        Against::Registry => {
            let registry = client(&config)?;
            println!("checking {} schema(s) in {} against {}", files.len(), args.target.dir.display(), config.registry.url);
            for file in &files {
                for subject in file.subjects(&config) {
                    let level = match args.mode {
                        Some(level) => level,
                        None => registry.level(&subject).await.with_context(|| {
                            format!("cannot read the compatibility level of {subject} (to check without a registry use --against git:REF)")
                        })?,
                    };
                    let priors = registry.prior_versions(&subject, level.is_transitive()).await?;
                    outcomes.push(outcome(file, &subject, level, &priors));
                }
            }
        }
        Against::Git(reference) => {
            let level = args.mode.unwrap_or(CompatibilityLevel::BackwardTransitive);
            println!("checking {} schema(s) in {} against git {reference} ({level})", files.len(), args.target.dir.display());
            for file in &files {
                let mut priors = schema::git_history(&args.target.dir, &file.file_name(), reference)?;
                if !level.is_transitive() {
                    priors.truncate(1);
                }
                outcomes.push(outcome(file, &file.subjects(&config).join(", "), level, &priors));
            }
        }
        Against::None => {
            println!("checking {} schema(s) in {} on their own", files.len(), args.target.dir.display());
            for file in &files {
                outcomes.push(outcome(file, &file.subjects(&config).join(", "), CompatibilityLevel::None, &[]));
            }
        }
    }
    report(&outcomes)
}

fn outcome(file: &SchemaFile, subject: &str, level: CompatibilityLevel, priors: &[PriorVersion]) -> Outcome {
    let findings = schema::check_all(level, &file.schema, priors);
    let against = match priors.len() {
        0 => "no earlier version".to_owned(),
        1 => format!("against {}", priors[0].label),
        n => format!("against {n} earlier versions"),
    };
    Outcome { title: format!("{} → {subject} ({level}, {against})", file.file_name()), findings }
}

fn report(outcomes: &[Outcome]) -> anyhow::Result<()> {
    let mut num_findings = 0;
    let mut num_failed = 0;
    for outcome in outcomes {
        if outcome.findings.is_empty() {
            println!("ok    {}", outcome.title);
            continue;
        }
        num_failed += 1;
        num_findings += outcome.findings.len();
        println!("FAIL  {}", outcome.title);
        for finding in &outcome.findings {
            println!("  {finding}");
        }
    }
    if num_findings > 0 {
        bail!("schema check failed: {num_findings} finding(s) in {num_failed} of {} schema check(s)", outcomes.len());
    }
    println!("{} schema check(s) passed", outcomes.len());
    Ok(())
}

async fn register(config_path: Option<&Path>, args: RegistryArgs) -> anyhow::Result<()> {
    let config = config_with(config_path, args.registry.as_deref())?;
    let files = load_files(&args.dir)?;
    let registry = client(&config)?;
    for file in &files {
        for subject in file.subjects(&config) {
            let registered = registry.register(&subject, &file.text).await.with_context(|| {
                format!("cannot register {} under {subject} (run `slate schema check` for the reason)", file.file_name())
            })?;
            println!("{}\tversion {}\tid {}\t{}", registered.subject, registered.version, registered.id, file.file_name());
        }
    }
    Ok(())
}

async fn diff(config_path: Option<&Path>, args: DiffArgs) -> anyhow::Result<()> {
    let config = config_with(config_path, args.registry.as_deref())?;
    let registry = client(&config)?;
    let subject = &args.subject;
    let versions = registry.versions(subject).await?;
    let latest = *versions.last().with_context(|| format!("subject {subject:?} has no versions in {}", config.registry.url))?;
    let to = args.to.unwrap_or(latest);
    let from = match args.from {
        Some(from) => from,
        None => *versions.iter().rev().find(|v| **v < to).with_context(|| format!("subject {subject:?} has no version before {to}"))?,
    };
    let (old, _) = registry.parsed(subject, &from.to_string()).await?;
    let (new, _) = registry.parsed(subject, &to.to_string()).await?;
    let changes = schema::diff(&old, &new);
    println!("{subject}: version {from} → {to}, {} change(s)", changes.len());
    for change in changes {
        println!("  {change}");
    }
    Ok(())
}

fn docs(config_path: Option<&Path>, args: DocsArgs) -> anyhow::Result<()> {
    let config = load_config_without_subjects(config_path, Vec::new())?;
    let files = load_files(&args.dir)?;
    let markdown = schema::render_docs(&files, &config);
    if args.out == Path::new("-") {
        print!("{markdown}");
        return Ok(());
    }
    std::fs::write(&args.out, markdown).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("wrote {} ({} records)", args.out.display(), files.len());
    Ok(())
}

async fn export(config_path: Option<&Path>, args: ExportArgs) -> anyhow::Result<()> {
    let config = config_with(config_path, args.registry.as_deref())?;
    let export = schema::transfer::export(&client(&config)?).await.with_context(|| format!("cannot export {}", config.registry.url))?;
    let text = serde_json::to_string_pretty(&export)? + "\n";
    if args.out == Path::new("-") {
        print!("{text}");
    } else {
        std::fs::write(&args.out, text).with_context(|| format!("cannot write {}", args.out.display()))?;
    }
    let subjects: std::collections::BTreeSet<&str> = export.versions.iter().map(|v| v.subject.as_str()).collect();
    eprintln!("exported {} version(s) of {} subject(s) from {}", export.versions.len(), subjects.len(), config.registry.url);
    Ok(())
}

async fn import(config_path: Option<&Path>, args: ImportArgs) -> anyhow::Result<()> {
    let config = config_with(config_path, args.registry.as_deref())?;
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let export: schema::transfer::Export =
        serde_json::from_str(&text).with_context(|| format!("{} is not an export of `slate schema export`", args.file.display()))?;
    let done = schema::transfer::import(&client(&config)?, &export)
        .await
        .with_context(|| format!("cannot import into {}", config.registry.url))?;
    println!("imported {} version(s) of {} subject(s) into {} with their ids", done.versions, done.subjects, config.registry.url);
    Ok(())
}
