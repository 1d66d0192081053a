//! A reader for the Prometheus text exposition format, as slate's own `/metrics` writes it.
//!
//! The dashboard works from the exposition text rather than from the metric objects so that it
//! reads any slate process the same way (in the demo it reads its own registry; pointed at
//! several processes it would read each one's `/metrics`). Only what the format needs for
//! counters, gauges and histograms is handled: `name{label="value",…} number` lines, `#` comment
//! lines skipped, label values with `\\`, `\"` and `\n` escapes.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// Parses every sample line; malformed lines are skipped (the format is our own, so a skipped
/// line is a bug the unit tests catch, not user input).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let (labels, rest) = if let Some(body) = rest.strip_prefix('{') { parse_labels(body)? } else { (BTreeMap::new(), rest) };
    // A sample may carry a timestamp after the value; slate's exporter never writes one.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name: name.to_string(), labels, value })
}

/// Parses `k="v",k2="v2"}` and returns the labels and what follows the closing brace.
fn parse_labels(body: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, c) => {
                    value.push(if c == 'n' { '\n' } else { c });
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        rest = &rest[end?..];
        labels.insert(key, value);
    }
}

/// The `le` buckets of one histogram series (cumulative counts), sorted by bound.
pub fn buckets<'a>(samples: &'a [Sample], name: &str, filter: impl Fn(&Sample) -> bool + 'a) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut out: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.name == bucket && filter(s))
        .filter_map(|s| {
            let le = match s.label("le")? {
                "+Inf" => f64::INFINITY,
                v => v.parse().ok()?,
            };
            Some((le, s.value))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Series of several processes (replicas, or one label set per sink) add up per bound.
    out.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 += later.1;
        }
        same
    });
    out
}

/// The `q` quantile (0..=1) of a histogram given as cumulative `(le, count)` buckets, by linear
/// interpolation inside the bucket it falls in (Prometheus' `histogram_quantile`). `None` when
/// the histogram holds no observations. A quantile in the `+Inf` bucket reports the highest
/// finite bound: the true value is only known to exceed it.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let (mut lower_bound, mut lower_count) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank && count > lower_count {
            if le.is_infinite() {
                return Some(lower_bound);
            }
            return Some(lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count));
        }
        if le.is_finite() {
            lower_bound = le;
        }
        lower_count = count;
    }
    Some(lower_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_our_own_exposition() {
        let m = crate::metrics::Metrics::new();
        m.sink_written_total.get_or_create(&crate::metrics::label("sink", "sql")).inc_by(7);
        m.sink_freshness_seconds.get_or_create(&crate::metrics::label("sink", "sql")).observe(0.3);
        let samples = parse(&m.encode());
        let written = samples.iter().find(|s| s.name == "slate_sink_written_total").expect("counter present");
        assert_eq!(written.label("sink"), Some("sql"));
        assert_eq!(written.value, 7.0);
        let b = buckets(&samples, "slate_sink_freshness_seconds", |s| s.label("sink") == Some("sql"));
        assert!(b.len() > 2, "{b:?}");
        assert_eq!(b.last().unwrap(), &(f64::INFINITY, 1.0));
    }

    #[test]
    fn buckets_of_several_processes_add_up_per_bound() {
        let text = "h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"+Inf\"} 5\n";
        assert_eq!(buckets(&parse(text), "h", |_| true), vec![(1.0, 7.0), (f64::INFINITY, 8.0)]);
    }

    #[test]
    fn label_escapes_and_odd_lines() {
        let s = parse("# HELP x y\nx{a=\"q\\\"uote\",b=\"new\\nline\"} 2\nbare 3.5\nnot a sample\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label("a"), Some("q\"uote"));
        assert_eq!(s[0].label("b"), Some("new\nline"));
        assert_eq!(s[1].value, 3.5);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        // 10 observations ≤ 1, 10 more in (1, 2], none above.
        let b = [(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(quantile(0.5, &b), Some(1.0));
        assert_eq!(quantile(0.75, &b), Some(1.5));
        assert_eq!(quantile(0.25, &b), Some(0.5));
        assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
        // Everything above the last finite bound: report that bound, not infinity.
        assert_eq!(quantile(0.99, &[(1.0, 0.0), (f64::INFINITY, 4.0)]), Some(1.0));
    }
}
