//! Latency and throughput figures of one measured run, and the table that compares targets
//! side by side (medians over interleaved rounds, ratios against the first target).

use std::collections::BTreeMap;
use std::time::Duration;

/// What one run of one workload against one target measured.
#[derive(Debug, Clone)]
pub struct Run {
    /// Operations (or rows, for bulk-insert) per second.
    pub rate: f64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub errors: u64,
}

impl Run {
    /// From per-operation latencies (µs) over `elapsed`; `units` per operation (rows per
    /// INSERT for bulk-insert, else 1).
    pub fn from_latencies(mut latencies: Vec<u64>, elapsed: Duration, units: u64, errors: u64) -> Self {
        latencies.sort_unstable();
        let pick = |q: f64| -> u64 {
            if latencies.is_empty() {
                return 0;
            }
            let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies[i]
        };
        let rate = latencies.len() as f64 * units as f64 / elapsed.as_secs_f64().max(1e-9);
        Run { rate, p50_us: pick(0.50), p95_us: pick(0.95), p99_us: pick(0.99), errors }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// All runs: workload → target → runs (one per round).
#[derive(Default)]
pub struct Results {
    pub runs: BTreeMap<String, BTreeMap<String, Vec<Run>>>,
    pub targets: Vec<String>,
}

/// The medians of a target's runs of one workload.
pub struct Summary {
    pub rate: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub errors: u64,
}

impl Results {
    pub fn add(&mut self, workload: &str, target: &str, run: Run) {
        self.runs.entry(workload.to_string()).or_default().entry(target.to_string()).or_default().push(run);
    }

    pub fn summary(&self, workload: &str, target: &str) -> Option<Summary> {
        let runs = self.runs.get(workload)?.get(target)?;
        Some(Summary {
            rate: median(runs.iter().map(|r| r.rate).collect()),
            p50_us: median(runs.iter().map(|r| r.p50_us as f64).collect()),
            p95_us: median(runs.iter().map(|r| r.p95_us as f64).collect()),
            p99_us: median(runs.iter().map(|r| r.p99_us as f64).collect()),
            errors: runs.iter().map(|r| r.errors).sum(),
        })
    }

    /// A Markdown table: one row per workload and target, ratios against the first target.
    pub fn table(&self, units: &BTreeMap<String, &'static str>) -> String {
        let mut out = String::from(
            "| workload | target | rate | unit | p50 ms | p95 ms | p99 ms | rate vs first | p99 vs first | errors |\n\
             |---|---|---:|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for workload in self.runs.keys() {
            let base = self.targets.first().and_then(|t| self.summary(workload, t));
            for target in &self.targets {
                let Some(s) = self.summary(workload, target) else { continue };
                let (ratio, p99_ratio) = match &base {
                    Some(b) if b.rate > 0.0 && b.p99_us > 0.0 => {
                        (format!("{:.2}x", s.rate / b.rate), format!("{:.2}x", s.p99_us / b.p99_us))
                    }
                    _ => ("-".into(), "-".into()),
                };
                out.push_str(&format!(
                    "| {workload} | {target} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {ratio} | {p99_ratio} | {} |\n",
                    s.rate,
                    units.get(workload).copied().unwrap_or("ops/s"),
                    s.p50_us / 1000.0,
                    s.p95_us / 1000.0,
                    s.p99_us / 1000.0,
                    s.errors
                ));
            }
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let mut all = serde_json::Map::new();
        for workload in self.runs.keys() {
            let mut per = serde_json::Map::new();
            for target in &self.targets {
                if let Some(s) = self.summary(workload, target) {
                    per.insert(
                        target.clone(),
                        serde_json::json!({
                            "rate": s.rate, "p50_us": s.p50_us, "p95_us": s.p95_us, "p99_us": s.p99_us,
                            "errors": s.errors,
                            "rounds": self.runs[workload][target].iter().map(|r| r.rate).collect::<Vec<_>>(),
                        }),
                    );
                }
            }
            all.insert(workload.clone(), serde_json::Value::Object(per));
        }
        serde_json::Value::Object(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let run = Run::from_latencies((1..=100).collect(), Duration::from_secs(2), 1, 0);
        assert_eq!((run.p50_us, run.p95_us, run.p99_us), (51, 95, 99));
        assert_eq!(run.rate, 50.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let mut r = Results { targets: vec!["a".into(), "b".into()], ..Default::default() };
        r.add("w", "a", Run { rate: 100.0, p50_us: 1, p95_us: 1, p99_us: 10, errors: 0 });
        r.add("w", "b", Run { rate: 50.0, p50_us: 1, p95_us: 1, p99_us: 20, errors: 0 });
        let t = r.table(&BTreeMap::new());
        assert!(t.contains("| w | b | 50 | ops/s |") && t.contains("0.50x") && t.contains("2.00x"), "{t}");
    }
}
