//! The linearizability checker of the register workload: per key, is there a total order of the
//! operations, consistent with real time (an operation that completed before another was invoked
//! comes first), in which every read returns the latest write and every compare-and-set saw what
//! it reports?
//!
//! The search is Wing & Gong's, with Lowe's just-in-time linearization and memoization (as in
//! Knossos and Porcupine): walk the history's call/return events in time order; at a call, try to
//! linearize that operation now (the model accepts its result, and the pair (set of linearized
//! operations, register value) was not tried before); at a return of an operation not yet
//! linearized, undo the last choice. Operations whose outcome is unknown (the connection broke
//! mid-flight) never return: they may take effect at any time after their invocation or never,
//! and linearizing one last is the same as it never happening. Failed operations certainly did
//! not apply and are left out; unknown reads say nothing and are left out too.

use std::collections::HashSet;

use crate::history::{Outcome, RegisterEvent, RegisterOp};

/// A history the checker rejected (or could not decide within its budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: i64,
    pub message: String,
}

/// Search steps and memoized states allowed per key before the checker gives up (and reports
/// that as a failure: an undecided history is not a passing one).
const STEP_BUDGET: u64 = 50_000_000;
const STATE_BUDGET: usize = 2_000_000;

/// Checks every key's register history; `initial` is each register's value before the run.
/// Returns one violation per key that has no linearization.
pub fn check(events: &[RegisterEvent], initial: Option<i64>) -> Vec<Violation> {
    let mut keys: Vec<i64> = events.iter().map(|e| e.key).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let ops: Vec<&RegisterEvent> = events.iter().filter(|e| e.key == key).collect();
            check_key(&ops, initial).err().map(|message| Violation { key, message })
        })
        .collect()
}

/// An operation as the search sees it.
struct Op<'a> {
    event: &'a RegisterEvent,
    /// False for unknown outcomes (the result is not known, the return never comes).
    known: bool,
    call: u64,
    ret: u64,
}

/// The register model: the value after `op` from `state`, or None if `op`'s result is
/// impossible in `state`.
fn step(state: Option<i64>, op: &Op) -> Option<Option<i64>> {
    match op.event.op {
        RegisterOp::Read { value } => (state == value).then_some(state),
        RegisterOp::Write { value } => Some(Some(value)),
        RegisterOp::Cas { old, new, swapped } => {
            let matches = state == Some(old);
            if !op.known || swapped == matches {
                Some(if matches { Some(new) } else { state })
            } else {
                None
            }
        }
    }
}

const NIL: usize = usize::MAX;

fn check_key(events: &[&RegisterEvent], initial: Option<i64>) -> Result<(), String> {
    let ops: Vec<Op> = events
        .iter()
        .filter_map(|e| match (e.outcome, e.op) {
            (Outcome::Failed, _) | (Outcome::Unknown, RegisterOp::Read { .. }) => None,
            (Outcome::Ok, _) => Some(Op { event: e, known: true, call: e.invoked, ret: e.completed }),
            (Outcome::Unknown, _) => Some(Op { event: e, known: false, call: e.invoked, ret: u64::MAX }),
        })
        .collect();
    let n = ops.len();
    // Events in time order; at equal times calls first (the more permissive reading).
    // Node 0 is the list head; node k >= 1 is events[k - 1].
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, false, i));
        events.push((op.ret, true, i));
    }
    events.sort_unstable();
    let nodes = events.len() + 1;
    let mut next: Vec<usize> = (1..=nodes).map(|k| if k == nodes { NIL } else { k }).collect();
    let mut prev: Vec<usize> = (0..nodes).map(|k| k.saturating_sub(1)).collect();
    let mut ret_node = vec![0usize; n];
    for (k, (_, is_return, op)) in events.iter().enumerate() {
        if *is_return {
            ret_node[*op] = k + 1;
        }
    }
    let remove = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        next[prev[x]] = next[x];
        if next[x] != NIL {
            prev[next[x]] = prev[x];
        }
    };
    let restore = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        next[prev[x]] = x;
        if next[x] != NIL {
            prev[next[x]] = x;
        }
    };

    let mut linearized = vec![0u64; n.div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, Option<i64>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<i64>)> = Vec::new();
    let mut state = initial;
    let mut entry = next[0];
    let (mut deepest, mut stuck_at) = (0usize, None::<usize>);
    let mut steps = 0u64;
    while next[0] != NIL {
        steps += 1;
        if steps > STEP_BUDGET || seen.len() > STATE_BUDGET {
            return Err(format!(
                "undecided (not a proven violation): {n} operations, search budget exhausted after {steps} steps \
                 and {} states",
                seen.len()
            ));
        }
        let (is_return, op) = if entry == NIL { (true, NIL) } else { (events[entry - 1].1, events[entry - 1].2) };
        if !is_return {
            if let Some(after) = step(state, &ops[op]) {
                linearized[op / 64] |= 1 << (op % 64);
                if seen.insert((linearized.clone(), after)) {
                    stack.push((entry, state));
                    state = after;
                    remove(&mut next, &mut prev, entry);
                    remove(&mut next, &mut prev, ret_node[op]);
                    entry = next[0];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            entry = next[entry];
            continue;
        }
        // The return of an operation that could not be linearized before it: backtrack.
        if stack.len() >= deepest && op != NIL {
            (deepest, stuck_at) = (stack.len(), Some(op));
        }
        let Some((call, before)) = stack.pop() else {
            return Err(describe(&ops, deepest, stuck_at));
        };
        let undone = events[call - 1].2;
        state = before;
        linearized[undone / 64] &= !(1 << (undone % 64));
        restore(&mut next, &mut prev, ret_node[undone]);
        restore(&mut next, &mut prev, call);
        entry = next[call];
    }
    Ok(())
}

fn describe(ops: &[Op], deepest: usize, stuck_at: Option<usize>) -> String {
    match stuck_at {
        Some(i) => {
            let e = ops[i].event;
            format!(
                "not linearizable ({} operations): at best {deepest} could be ordered; then client {}'s {:?} \
                 (invoked {:.3} s, completed {:.3} s) has no place",
                ops.len(),
                e.client,
                e.op,
                e.invoked as f64 / 1e9,
                e.completed as f64 / 1e9
            )
        }
        None => format!("not linearizable ({} operations)", ops.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(client: usize, op: RegisterOp, outcome: Outcome, invoked: u64, completed: u64) -> RegisterEvent {
        RegisterEvent { client, key: 1, op, outcome, invoked, completed }
    }
    fn read(v: i64) -> RegisterOp {
        RegisterOp::Read { value: Some(v) }
    }
    fn write(v: i64) -> RegisterOp {
        RegisterOp::Write { value: v }
    }
    fn cas(old: i64, new: i64, swapped: bool) -> RegisterOp {
        RegisterOp::Cas { old, new, swapped }
    }
    use Outcome::{Failed, Ok as Done, Unknown};

    #[test]
    fn sequential_and_overlapping_histories_pass() {
        let h = [
            ev(0, write(1), Done, 0, 10),
            ev(1, read(1), Done, 20, 30),
            ev(0, cas(1, 2, true), Done, 40, 50),
            ev(1, cas(1, 3, false), Done, 60, 70),
            ev(0, read(2), Done, 80, 90),
        ];
        assert_eq!(check(&h, Some(0)), vec![]);
        // A read overlapping a write may see either value.
        let h = [ev(0, write(1), Done, 0, 100), ev(1, read(0), Done, 10, 20), ev(2, read(1), Done, 30, 40)];
        assert_eq!(check(&h, Some(0)), vec![]);
    }

    #[test]
    fn a_stale_read_fails() {
        let h = [ev(0, write(1), Done, 0, 10), ev(0, write(2), Done, 20, 30), ev(1, read(1), Done, 40, 50)];
        let v = check(&h, Some(0));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("not linearizable"), "{}", v[0].message);
    }

    #[test]
    fn a_lost_acknowledged_write_fails() {
        let h = [ev(0, write(5), Done, 0, 10), ev(1, read(0), Done, 20, 30)];
        assert_eq!(check(&h, Some(0)).len(), 1);
    }

    #[test]
    fn a_failed_write_that_applied_anyway_fails() {
        let h = [ev(0, write(9), Failed, 0, 10), ev(1, read(9), Done, 20, 30)];
        assert_eq!(check(&h, Some(0)).len(), 1);
    }

    #[test]
    fn an_unknown_write_may_apply_late_or_never_but_not_undo_itself() {
        let applied = [ev(0, write(5), Unknown, 0, 10), ev(1, read(0), Done, 20, 30), ev(1, read(5), Done, 40, 50)];
        assert_eq!(check(&applied, Some(0)), vec![]);
        let never = [ev(0, write(5), Unknown, 0, 10), ev(1, read(0), Done, 20, 30)];
        assert_eq!(check(&never, Some(0)), vec![]);
        let flickers = [ev(0, write(5), Unknown, 0, 10), ev(1, read(5), Done, 20, 30), ev(1, read(0), Done, 40, 50)];
        assert_eq!(check(&flickers, Some(0)).len(), 1);
    }

    #[test]
    fn compare_and_set_results_must_match_the_value() {
        // Reported swapped although the value was never 7.
        let h = [ev(0, cas(7, 8, true), Done, 0, 10)];
        assert_eq!(check(&h, Some(0)).len(), 1);
        // Reported not swapped although the value was 0 all along.
        let h = [ev(0, cas(0, 8, false), Done, 0, 10), ev(1, read(0), Done, 20, 30)];
        assert_eq!(check(&h, Some(0)).len(), 1);
        // A swap followed by a read of the old value.
        let h = [ev(0, cas(0, 8, true), Done, 0, 10), ev(1, read(0), Done, 20, 30)];
        assert_eq!(check(&h, Some(0)).len(), 1);
        // An unknown CAS that found its value swaps when it lands.
        let h = [ev(0, cas(0, 8, false), Unknown, 0, 10), ev(1, read(8), Done, 20, 30)];
        assert_eq!(check(&h, Some(0)), vec![]);
    }

    #[test]
    fn keys_are_checked_apart_and_violations_name_their_key() {
        let mut h = vec![ev(0, write(1), Done, 0, 10), ev(1, read(1), Done, 20, 30)];
        h.push(RegisterEvent { key: 2, ..ev(0, write(4), Done, 0, 10) });
        h.push(RegisterEvent { key: 2, ..ev(1, read(0), Done, 20, 30) });
        let v = check(&h, Some(0));
        assert_eq!(v.iter().map(|v| v.key).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_long_concurrent_history_is_decided_quickly() {
        // Four clients, 2000 operations each, overlapping in pairs, all consistent.
        let mut h = Vec::new();
        let mut value = 0;
        for round in 0..2000u64 {
            let t = round * 100;
            value += 1;
            h.push(ev(0, write(value), Done, t, t + 60));
            h.push(ev(1, read(value - 1), Done, t + 1, t + 50));
            h.push(ev(2, read(value), Done, t + 61, t + 90));
            h.push(ev(3, cas(value, value, true), Done, t + 70, t + 95));
        }
        assert_eq!(check(&h, Some(0)), vec![]);
    }
}
