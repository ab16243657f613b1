//! The set, counter and convergence checkers: pure functions of what the clients saw and what
//! the final reads and the replicas report. The runner (`runner`) calls them after healing.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::history::{Attempt, BankRead, Counts, Outcome};

/// The set workload's verdict: every acknowledged insert present exactly once, no failed insert
/// present, nothing present that was never attempted.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SetReport {
    pub acknowledged: usize,
    pub unknown: usize,
    pub failed: usize,
    pub present: usize,
    /// Acknowledged but missing: lost writes.
    pub lost: Vec<i64>,
    /// Reported failed but present: an error that lied.
    pub failed_but_present: Vec<i64>,
    /// Present but never attempted.
    pub unexpected: Vec<i64>,
    /// Present more than once.
    pub duplicated: Vec<i64>,
}

impl SetReport {
    pub fn passed(&self) -> bool {
        self.lost.is_empty()
            && self.failed_but_present.is_empty()
            && self.unexpected.is_empty()
            && self.duplicated.is_empty()
    }
}

pub fn check_set(attempts: &[Attempt], final_read: &[i64]) -> SetReport {
    let mut by_value: HashMap<i64, Outcome> = HashMap::new();
    for a in attempts {
        by_value.insert(a.value, a.outcome);
    }
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for v in final_read {
        *counts.entry(*v).or_default() += 1;
    }
    let outcomes = Counts::of(attempts.iter().map(|a| a.outcome));
    let mut report = SetReport {
        acknowledged: outcomes.ok,
        unknown: outcomes.unknown,
        failed: outcomes.failed,
        present: counts.len(),
        ..Default::default()
    };
    for (v, n) in &counts {
        if *n > 1 {
            report.duplicated.push(*v);
        }
        match by_value.get(v) {
            None => report.unexpected.push(*v),
            Some(Outcome::Failed) => report.failed_but_present.push(*v),
            Some(_) => {}
        }
    }
    let present: HashSet<i64> = counts.keys().copied().collect();
    let mut lost: Vec<i64> =
        attempts.iter().filter(|a| a.outcome == Outcome::Ok && !present.contains(&a.value)).map(|a| a.value).collect();
    lost.sort_unstable();
    report.lost = lost;
    report
}

/// The counter workload's verdict: the final value counts every acknowledged increment and no
/// failed one.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CounterReport {
    pub acknowledged: i64,
    pub unknown: i64,
    pub failed: i64,
    pub final_value: i64,
}

impl CounterReport {
    pub fn passed(&self) -> bool {
        self.acknowledged <= self.final_value && self.final_value <= self.acknowledged + self.unknown
    }
}

pub fn check_counter(attempts: &[Attempt], final_value: i64) -> CounterReport {
    let outcomes = Counts::of(attempts.iter().map(|a| a.outcome));
    CounterReport {
        acknowledged: outcomes.ok as i64,
        unknown: outcomes.unknown as i64,
        failed: outcomes.failed as i64,
        final_value,
    }
}

/// The bank workload's verdict: every successful read (and the final one) saw every account,
/// the total the bank opened with, and no negative balance. A transfer applied in part, or a
/// read that saw part of one, breaks the total.
#[derive(Debug, Default, Clone, Serialize)]
pub struct BankReport {
    pub transfers: Counts,
    /// Transfers acknowledged that moved money (the others found too little).
    pub moved: usize,
    pub reads: usize,
    /// Successful reads that broke an invariant, as (total, min, accounts).
    pub bad_reads: Vec<(i64, i64, i64)>,
    /// The final read after healing.
    pub final_read: (i64, i64, i64),
}

impl BankReport {
    pub fn passed(&self, accounts: i64, total: i64) -> bool {
        let good = |(t, min, n): (i64, i64, i64)| t == total && min >= 0 && n == accounts;
        self.bad_reads.is_empty() && good(self.final_read)
    }
}

pub fn check_bank(
    transfers: &[Attempt],
    reads: &[BankRead],
    final_read: (i64, i64, i64),
    accounts: i64,
    total: i64,
) -> BankReport {
    let ok: Vec<&BankRead> = reads.iter().filter(|r| r.outcome == Outcome::Ok).collect();
    BankReport {
        transfers: Counts::of(transfers.iter().map(|t| t.outcome)),
        moved: transfers.iter().filter(|t| t.outcome == Outcome::Ok && t.value > 0).count(),
        reads: ok.len(),
        bad_reads: ok
            .iter()
            .filter(|r| r.total != total || r.min < 0 || r.accounts != accounts)
            .map(|r| (r.total, r.min, r.accounts))
            .collect(),
        final_read,
    }
}

/// One replica's state as its node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replica {
    pub node: u64,
    pub shard: u64,
    pub applied: u64,
    pub digest: u64,
}

/// Shards whose replicas disagree (applied index or data digest) or that have fewer than
/// `replicas` replicas reporting, each with a description. Empty: converged.
///
/// `busy` shards never stop taking writes (the meta group's liveness heartbeats), so their
/// replicas are rarely caught at one applied index: for them, replicas at the same index must
/// have the same digest, and at least two must be at the same index (unless there is one).
pub fn divergent(reported: &[Replica], replicas: usize, busy: &[u64]) -> Vec<String> {
    let mut by_shard: BTreeMap<u64, Vec<&Replica>> = BTreeMap::new();
    for r in reported {
        by_shard.entry(r.shard).or_default().push(r);
    }
    by_shard
        .into_iter()
        .filter_map(|(shard, rs)| {
            let same = if busy.contains(&shard) {
                let mut by_index: BTreeMap<u64, HashSet<u64>> = BTreeMap::new();
                for r in &rs {
                    by_index.entry(r.applied).or_default().insert(r.digest);
                }
                let pairs = rs.iter().filter(|r| rs.iter().filter(|o| o.applied == r.applied).count() > 1).count();
                by_index.values().all(|digests| digests.len() == 1) && (rs.len() == 1 || pairs >= 2)
            } else {
                rs.windows(2).all(|w| w[0].applied == w[1].applied && w[0].digest == w[1].digest)
            };
            (!same || rs.len() < replicas).then(|| {
                let each: Vec<String> = rs
                    .iter()
                    .map(|r| format!("node {} applied {} digest {:016x}", r.node, r.applied, r.digest))
                    .collect();
                format!("shard {shard}: {} of {replicas} replicas: {}", rs.len(), each.join(", "))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(value: i64, outcome: Outcome) -> Attempt {
        Attempt { value, outcome }
    }

    #[test]
    fn set_passes_when_every_acknowledged_insert_is_there_once() {
        let attempts = [a(1, Outcome::Ok), a(2, Outcome::Unknown), a(3, Outcome::Unknown), a(4, Outcome::Failed)];
        let r = check_set(&attempts, &[1, 3]);
        assert!(r.passed(), "{r:?}");
        assert_eq!((r.acknowledged, r.unknown, r.failed, r.present), (1, 2, 1, 2));
    }

    #[test]
    fn set_catches_lost_lying_unexpected_and_duplicated_elements() {
        let attempts = [a(1, Outcome::Ok), a(2, Outcome::Ok), a(4, Outcome::Failed)];
        let r = check_set(&attempts, &[2, 2, 4, 9]);
        assert!(!r.passed());
        assert_eq!(r.lost, vec![1]);
        assert_eq!(r.failed_but_present, vec![4]);
        assert_eq!(r.unexpected, vec![9]);
        assert_eq!(r.duplicated, vec![2]);
    }

    #[test]
    fn bank_reads_must_see_the_whole_total_and_no_debt() {
        let read = |total, min, outcome| BankRead { total, min, accounts: 8, outcome };
        let transfers = [a(5, Outcome::Ok), a(0, Outcome::Ok), a(3, Outcome::Unknown)];
        let good = [read(800, 40, Outcome::Ok), read(0, 0, Outcome::Failed)];
        let report = check_bank(&transfers, &good, (800, 12, 8), 8, 800);
        assert!(report.passed(8, 800), "{report:?}");
        assert_eq!((report.moved, report.reads, report.transfers.unknown), (1, 1, 1));
        // Part of a transfer seen, money created, a negative balance, a lost account.
        for bad in [read(795, 40, Outcome::Ok), read(805, 40, Outcome::Ok), read(800, -3, Outcome::Ok)] {
            assert!(!check_bank(&transfers, &[bad], (800, 0, 8), 8, 800).passed(8, 800), "{bad:?}");
        }
        assert!(!check_bank(&transfers, &good, (800, 0, 7), 8, 800).passed(8, 800));
        assert!(!check_bank(&transfers, &good, (790, 0, 8), 8, 800).passed(8, 800));
    }

    #[test]
    fn counter_bounds() {
        let attempts = [a(1, Outcome::Ok), a(1, Outcome::Ok), a(1, Outcome::Unknown), a(1, Outcome::Failed)];
        assert!(check_counter(&attempts, 2).passed());
        assert!(check_counter(&attempts, 3).passed());
        assert!(!check_counter(&attempts, 1).passed(), "an acknowledged increment was lost");
        assert!(!check_counter(&attempts, 4).passed(), "a failed increment applied");
    }

    #[test]
    fn divergence_is_reported_per_shard() {
        let r = |node, shard, applied, digest| Replica { node, shard, applied, digest };
        let same = [r(1, 5, 10, 7), r(2, 5, 10, 7), r(3, 5, 10, 7)];
        assert!(divergent(&same, 3, &[]).is_empty());
        let behind = [r(1, 5, 10, 7), r(2, 5, 9, 7), r(3, 5, 10, 7)];
        assert_eq!(divergent(&behind, 3, &[]).len(), 1);
        let differ = [r(1, 5, 10, 7), r(2, 5, 10, 8), r(3, 5, 10, 7), r(1, 6, 3, 1), r(2, 6, 3, 1), r(3, 6, 3, 1)];
        let d = divergent(&differ, 3, &[]);
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("shard 5"), "{d:?}");
        let missing = [r(1, 5, 10, 7), r(2, 5, 10, 7)];
        assert_eq!(divergent(&missing, 3, &[]).len(), 1);
    }

    #[test]
    fn a_busy_shard_compares_replicas_at_the_same_index() {
        let r = |node, applied, digest| Replica { node, shard: 0, applied, digest };
        // One replica a write behind: the two at index 10 agree.
        assert!(divergent(&[r(1, 10, 7), r(2, 9, 6), r(3, 10, 7)], 3, &[0]).is_empty());
        // Two at the same index with different data.
        assert_eq!(divergent(&[r(1, 10, 7), r(2, 9, 6), r(3, 10, 8)], 3, &[0]).len(), 1);
        // No two at one index: nothing compared yet, not converged.
        assert_eq!(divergent(&[r(1, 10, 7), r(2, 9, 6), r(3, 11, 8)], 3, &[0]).len(), 1);
    }
}
