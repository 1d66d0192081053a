use clap::Parser;
use slate::cli::{Cli, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Before anything decodes Avro: bounds what a corrupt length prefix can make it allocate.
    slate::enrich::avro::limit_allocations();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
