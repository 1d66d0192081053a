//! Fault injection for the studio's read APIs: latency, jitter, errors and hangs.

use crate::config::FaultConfig;
use crate::metrics::{Metrics, label};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("injected error: the studio is failing on purpose (studio.faults.error_rate)")]
    Error,
    #[error("injected timeout: the studio hung on purpose (studio.faults.timeout_rate)")]
    Timeout,
}

pub struct Faults {
    config: RwLock<FaultConfig>,
    rng: Mutex<SmallRng>,
    metrics: Metrics,
}

impl Faults {
    pub fn new(config: FaultConfig, seed: u64, metrics: Metrics) -> Self {
        Self { config: RwLock::new(config), rng: Mutex::new(SmallRng::seed_from_u64(seed)), metrics }
    }

    pub fn config(&self) -> FaultConfig {
        self.config.read().expect("faults lock poisoned").clone()
    }

    /// Replaces the fault settings at runtime (the `/admin/faults` endpoint, outage tests).
    pub fn set(&self, config: FaultConfig) {
        *self.config.write().expect("faults lock poisoned") = config;
    }

    /// Waits the configured latency, then maybe fails. Call once per read request.
    pub async fn inject(&self) -> Result<(), Fault> {
        let cfg = self.config();
        let (delay, roll) = {
            let mut rng = self.rng.lock().expect("faults rng lock poisoned");
            let jitter = if cfg.jitter.is_zero() { Duration::ZERO } else { cfg.jitter.mul_f64(rng.random::<f64>()) };
            (cfg.latency + jitter, rng.random::<f64>())
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if roll < cfg.error_rate {
            self.metrics.studio_injected_faults_total.get_or_create(&label("kind", "error")).inc();
            return Err(Fault::Error);
        }
        if roll < cfg.error_rate + cfg.timeout_rate {
            self.metrics.studio_injected_faults_total.get_or_create(&label("kind", "timeout")).inc();
            tokio::time::sleep(cfg.timeout_delay).await;
            return Err(Fault::Timeout);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn error_rate_is_honoured() {
        let cfg = FaultConfig { error_rate: 0.3, ..FaultConfig::default() };
        let faults = Faults::new(cfg, 9, Metrics::new());
        let mut errors = 0;
        for _ in 0..2000 {
            if faults.inject().await == Err(Fault::Error) {
                errors += 1;
            }
        }
        assert!((450..750).contains(&errors), "{errors} errors of 2000 at rate 0.3");
        faults.set(FaultConfig::default());
        assert_eq!(faults.inject().await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_hang_then_fail() {
        let cfg = FaultConfig { timeout_rate: 1.0, timeout_delay: Duration::from_secs(5), ..FaultConfig::default() };
        let faults = Faults::new(cfg, 1, Metrics::new());
        let started = tokio::time::Instant::now();
        assert_eq!(faults.inject().await, Err(Fault::Timeout));
        assert!(started.elapsed() >= Duration::from_secs(5));
    }
}
