//! Deterministic data for demos, tests and benchmarks: the same seed gives the same studio.

use super::kind;
use super::model::{BUDGET_CATEGORIES, BudgetLine, TALENT_ROLES, days_from_civil};
use super::store::{Change, NewProduction, Store, StudioError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ADJECTIVES: &[&str] =
    &["Silent", "Crimson", "Last", "Hidden", "Golden", "Broken", "Northern", "Electric", "Quiet", "Midnight", "Paper", "Iron"];
const NOUNS: &[&str] =
    &["Harbor", "Ledger", "Frontier", "Garden", "Signal", "Empire", "Orchard", "Tide", "Witness", "Summit", "Archive", "Voyage"];
const GENRES: &[&str] = &["drama", "thriller", "comedy", "documentary", "animation", "sci-fi"];
const CURRENCIES: &[&str] = &["USD", "USD", "USD", "EUR", "GBP"];
const FIRST: &[&str] = &["Ada", "Bea", "Cyrus", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivo", "Juno", "Kit", "Lena"];
const LAST: &[&str] = &["Vance", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Reyes", "Novak", "Adeyemi", "Brandt", "Costa"];

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// Populates `store` with `num_productions` productions (each with budget, schedule, projection),
/// two talents with deals per production, and a few payments.
pub fn seed(store: &Store, num_productions: usize, seed: u64) -> Result<(), StudioError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let base = days_from_civil(2027, 1, 1);
    for n in 0..num_productions {
        let start = base + rng.random_range(0..540);
        let lines = BUDGET_CATEGORIES
            .iter()
            .map(|c| BudgetLine { category: c.to_string(), amount: rng.random_range(1_000..50_000) * 10_000 })
            .collect();
        let new = NewProduction {
            title: format!("{} {} {}", pick(&mut rng, ADJECTIVES), pick(&mut rng, NOUNS), n + 1),
            genre: pick(&mut rng, GENRES).into(),
            currency: pick(&mut rng, CURRENCIES).into(),
            start_date: start,
            launch_date: start + rng.random_range(120..720),
            lines,
        };
        let (pid, _) = store.create_production(new)?;
        for _ in 0..2 {
            let name = format!("{} {}", pick(&mut rng, FIRST), pick(&mut rng, LAST));
            let (tid, _) = store.create_talent(&name, pick(&mut rng, TALENT_ROLES))?;
            store.set_deal(&tid, &pid, rng.random_range(50..5_000) * 100_000)?;
            let (pay, _) = store.create_payment(&pid, &tid, rng.random_range(10..500) * 100_000, start + rng.random_range(0..365))?;
            if rng.random_bool(0.5) {
                store.set_payment_status(&pay, "PAID")?;
            }
        }
    }
    Ok(())
}

/// Samples ranks `0..n` with probability ∝ 1/(rank+1)^s (rank 0 is the hottest key).
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n.max(1))
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Self { cdf }
    }

    pub fn uniform(n: usize) -> Self {
        Self::new(n, 0.0)
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Applies one realistic mutation to the production at rank `rank` of the live productions:
/// budget revisions and payments most often, launch-date moves regularly, status changes rarely.
pub fn random_mutation(store: &Store, rng: &mut StdRng, rank: usize) -> Result<Vec<Change>, StudioError> {
    let ids = store.list_ids(kind::PRODUCTION, None, rank + 1);
    let Some(pid) = ids.get(rank).or(ids.last()).cloned() else {
        return Ok(Vec::new());
    };
    let number = pid.rsplit('-').next().unwrap_or_default().to_string();
    let roll = rng.random_range(0..100);
    match roll {
        0..35 => {
            let category = pick(rng, BUDGET_CATEGORIES);
            store.set_budget_line(&format!("bud-{number}"), category, rng.random_range(1_000..50_000) * 10_000)
        }
        35..55 => {
            let read = store.batch_get(kind::SCHEDULE, &[format!("sch-{number}")]);
            let Some((_, _, super::model::Body::Schedule(s))) = read.found.first() else { return Ok(Vec::new()) };
            let launch = (s.launch_date + rng.random_range(-60..90)).max(s.start_date);
            store.reschedule(&format!("sch-{number}"), None, Some(launch))
        }
        55..85 => {
            let talents = store.list_ids(kind::TALENT, None, 64);
            let Some(tid) = talents.get(rng.random_range(0..talents.len().max(1))) else { return Ok(Vec::new()) };
            let (pay, mut changes) = store.create_payment(&pid, tid, rng.random_range(10..500) * 100_000, days_from_civil(2027, 6, 1))?;
            if rng.random_bool(0.5) {
                changes.extend(store.set_payment_status(&pay, "PAID")?);
            }
            Ok(changes)
        }
        85..95 => {
            let status = pick(rng, super::model::PRODUCTION_STATUSES);
            store.update_production(&pid, None, Some(status.to_string()))
        }
        _ => {
            let payments = store.list_ids(kind::PAYMENT, None, 32);
            match payments.get(rng.random_range(0..payments.len().max(1))) {
                Some(pay) => store.delete_payment(pay),
                None => Ok(Vec::new()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_studio() {
        let (a, b) = (Store::new(), Store::new());
        seed(&a, 5, 7).unwrap();
        seed(&b, 5, 7).unwrap();
        let ids = a.list_ids(kind::PRODUCTION, None, 100);
        assert_eq!(ids.len(), 5);
        for kind in kind::ALL {
            let ids = a.list_ids(kind, None, 1000);
            assert_eq!(a.batch_get(kind, &ids), b.batch_get(kind, &ids), "{kind}");
        }
        assert_eq!(a.count(kind::TALENT), 10);
    }

    #[test]
    fn zipf_prefers_low_ranks() {
        let z = Zipf::new(100, 1.1);
        let mut rng = StdRng::seed_from_u64(1);
        let mut hits = [0usize; 100];
        for _ in 0..20_000 {
            hits[z.sample(&mut rng)] += 1;
        }
        assert!(hits[0] > 5 * hits[9] && hits[9] > hits[99], "{:?}", &hits[..10]);
        let u = Zipf::uniform(4);
        let mut seen = [false; 4];
        for _ in 0..200 {
            seen[u.sample(&mut rng)] = true;
        }
        assert_eq!(seen, [true; 4]);
    }

    #[test]
    fn random_mutations_apply() {
        let store = Store::new();
        seed(&store, 3, 1).unwrap();
        let mut rng = StdRng::seed_from_u64(2);
        let changes: usize = (0..200).map(|i| random_mutation(&store, &mut rng, i % 3).unwrap().len()).sum();
        assert!(changes >= 200);
    }
}
