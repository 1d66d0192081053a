//! Medians over repetitions and the printed table.

use super::ModeReport;
use super::worker::{Mode, WorkerResult};
use super::workload::Freshness;

pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 }
}

/// The `q`-quantile (0..=1) by nearest rank.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

pub fn summarize(mode: Mode, runs: &[(Mode, WorkerResult, Freshness)]) -> ModeReport {
    let mine: Vec<_> = runs.iter().filter(|(m, _, _)| *m == mode).collect();
    ModeReport {
        mode,
        drained_events: mine.first().map(|(_, r, _)| r.processed).unwrap_or(0),
        events_per_sec: median(mine.iter().map(|(_, r, _)| r.processed as f64 / r.elapsed_secs.max(1e-9)).collect()),
        source_calls_per_event: median(mine.iter().map(|(_, r, _)| r.source_calls as f64 / r.processed.max(1) as f64).collect()),
        freshness_p50_ms: median(mine.iter().map(|(_, _, f)| quantile(&f.millis, 0.50)).collect()),
        freshness_p99_ms: median(mine.iter().map(|(_, _, f)| quantile(&f.millis, 0.99)).collect()),
        peak_rss_mib: median(mine.iter().map(|(_, r, _)| r.peak_rss_kib as f64 / 1024.0).collect()),
    }
}

pub fn table(reports: &[ModeReport], args: &super::EnrichBenchArgs) -> String {
    let get = |m: Mode| reports.iter().find(|r| r.mode == m);
    let mut out = format!(
        "slate bench enrich — medians of {} runs; source latency {}, Zipf {} keys; freshness at {} events/s offered for {}s\n\n",
        args.repeat, args.latency, args.zipf, args.rate, args.steady_secs
    );
    let raw_rate = get(Mode::Raw).map(|r| r.events_per_sec);
    out.push_str(
        "| mode | events drained | events/s | vs raw pipe | source calls/event | freshness p50 | freshness p99 | peak RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        let vs_raw = raw_rate.map_or("-".to_string(), |raw| format!("{:.0}%", 100.0 * r.events_per_sec / raw));
        out.push_str(&format!(
            "| {} | {} | {:.0} | {vs_raw} | {:.4} | {:.0} ms | {:.0} ms | {:.0} MiB |\n",
            r.mode.name(),
            r.drained_events,
            r.events_per_sec,
            r.source_calls_per_event,
            r.freshness_p50_ms,
            r.freshness_p99_ms,
            r.peak_rss_mib
        ));
    }
    if let (Some(s), Some(n), Some(raw)) = (get(Mode::Slate), get(Mode::Naive), get(Mode::Raw)) {
        out.push_str(&format!(
            "\nslate vs naive: {:.1}x throughput (target >= 20x); slate vs raw pipe: {:.0}% (target >= 50%); source calls per event: {:.4} (target <= 0.05)\n",
            s.events_per_sec / n.events_per_sec,
            100.0 * s.events_per_sec / raw.events_per_sec,
            s.source_calls_per_event
        ));
    }
    if let (Some(s), Some(x)) = (get(Mode::Slate), get(Mode::SlateExactlyOnce)) {
        out.push_str(&format!(
            "exactly_once vs at_least_once: {:.0}% of the throughput, freshness p50 {:.0} ms vs {:.0} ms\n",
            100.0 * x.events_per_sec / s.events_per_sec,
            x.freshness_p50_ms,
            s.freshness_p50_ms
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.5), 50.0);
        assert_eq!(quantile(&xs, 0.99), 99.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
