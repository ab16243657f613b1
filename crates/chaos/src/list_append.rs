//! The checker of the list-append workload, after Elle (Kingsbury & Alvaro, "Elle: Inferring
//! Isolation Anomalies from Experimental Observations", VLDB 2020): a pure function of the
//! transactions the clients recorded (`history::ListTxn`) and the final read of every list.
//!
//! Appends make versions traceable: every element is appended once, so a read of a list names
//! every transaction that wrote it, in order, and the longest read of a key is its version
//! order (every other read must be a prefix of it). From that order the checker infers the
//! dependencies between transactions: ww (one appended right after another's append), wr (one
//! read a list whose last element another appended) and rw (one read a list that another's
//! append later extended). Under serializability that graph has no cycle; a cycle of ww edges
//! alone is G0, of ww and wr edges G1c, one with a single rw edge G-single, with more G2. Without
//! a graph: reading an aborted transaction's append (G1a), another transaction's intermediate
//! state (G1b), a read disagreeing with its own transaction's earlier reads and appends
//! (internal), an element twice (duplicate), one never appended (garbage), reads with no common
//! order, and acknowledged appends missing from the final read (lost).
//!
//! Real-time order is not checked: raftable promises serializability across gateway nodes, not
//! strict serializability (docs/transactions.md, "causal reverse").

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::Serialize;

use crate::history::{Counts, ListTxn, Mop, Outcome};

/// What the checker can find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Anomaly {
    /// Two reads of one key where neither is a prefix of the other: no version order fits both.
    IncompatibleOrder,
    /// An element twice in one read, or appended twice.
    Duplicate,
    /// An element in a read that no transaction appended to that key.
    Garbage,
    /// An acknowledged append missing from the final read.
    Lost,
    /// A read disagreeing with its own transaction's earlier reads and appends of the key.
    Internal,
    /// Aborted read: a committed transaction saw an append of one that failed.
    G1a,
    /// Intermediate read: a list ending in another transaction's append that was not its last
    /// to that key.
    G1b,
    /// A cycle of write-write dependencies.
    G0,
    /// A cycle of write-write and write-read dependencies.
    G1c,
    /// A cycle with exactly one read-write anti-dependency (read skew).
    GSingle,
    /// A cycle with two or more anti-dependencies (write skew).
    G2,
}

/// The verdict on a list-append history.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ListAppendReport {
    pub txns: Counts,
    /// Reads and appends of committed transactions.
    pub reads: usize,
    pub appends: usize,
    pub keys: usize,
    /// Dependency edges inferred (ww, wr, rw).
    pub edges: [usize; 3],
    /// How many of each anomaly.
    pub anomalies: BTreeMap<Anomaly, usize>,
    /// A few described instances of each.
    pub examples: Vec<String>,
}

impl ListAppendReport {
    pub fn passed(&self) -> bool {
        self.anomalies.is_empty()
    }
}

/// Examples kept per kind of anomaly.
const EXAMPLES: usize = 3;
/// Anti-dependency edges tried per cycle when telling G-single from G2.
const RW_TRIES: usize = 500;

const WW: u8 = 1;
const WR: u8 = 2;
const RW: u8 = 4;

/// Checks `txns`; `final_read`, when given, is every list as read after the run (keys absent
/// from it read as empty) and is checked like a committed transaction that read every key.
pub fn check(txns: &[ListTxn], final_read: Option<&BTreeMap<i64, Vec<i64>>>) -> ListAppendReport {
    let mut all = txns.to_vec();
    if let Some(lists) = final_read {
        let mut keys: Vec<i64> = lists.keys().copied().collect();
        keys.extend(txns.iter().flat_map(|t| &t.ops).map(Mop::key));
        keys.sort_unstable();
        keys.dedup();
        let ops = keys
            .iter()
            .map(|k| Mop::Read { key: *k, value: Some(lists.get(k).cloned().unwrap_or_default()) })
            .collect();
        all.push(ListTxn { client: usize::MAX, ops, outcome: Outcome::Ok });
    }
    let mut checker = Checker { txns: &all, report: ListAppendReport::default(), writers: HashMap::new() };
    checker.report.txns = Counts::of(txns.iter().map(|t| t.outcome));
    checker.index_appends();
    checker.check_reads();
    checker.check_internal();
    let orders = checker.version_orders();
    if final_read.is_some() {
        checker.check_lost(&orders);
    }
    let graph = checker.dependencies(&orders);
    checker.check_cycles(&graph);
    checker.report
}

/// Who appended an element, and whether it was that transaction's last append to the key.
#[derive(Clone, Copy)]
struct Writer {
    txn: usize,
    last: bool,
}

struct Checker<'a> {
    txns: &'a [ListTxn],
    report: ListAppendReport,
    writers: HashMap<(i64, i64), Writer>,
}

/// Dependency edges between transactions (indices into the history), each a mask of WW/WR/RW.
type Graph = BTreeMap<usize, BTreeMap<usize, u8>>;

impl Checker<'_> {
    fn flag(&mut self, kind: Anomaly, detail: impl FnOnce() -> String) {
        let n = self.report.anomalies.entry(kind).or_default();
        *n += 1;
        if *n <= EXAMPLES {
            self.report.examples.push(format!("{kind:?}: {}", detail()));
        }
    }

    fn committed(&self) -> impl Iterator<Item = (usize, &ListTxn)> {
        self.txns.iter().enumerate().filter(|(_, t)| t.outcome == Outcome::Ok)
    }

    /// A short description of transaction `i`.
    fn describe(&self, i: usize) -> String {
        let t = &self.txns[i];
        let ops: Vec<String> = t
            .ops
            .iter()
            .map(|op| match op {
                Mop::Append { key, value } => format!("append {key} {value}"),
                Mop::Read { key, value: Some(list) } => format!("read {key} {list:?}"),
                Mop::Read { key, value: None } => format!("read {key} ?"),
            })
            .collect();
        let who = if t.client == usize::MAX { "final read".to_string() } else { format!("client {}", t.client) };
        format!("T{i} ({who}, {:?}: {})", t.outcome, ops.join(", "))
    }

    fn index_appends(&mut self) {
        let txns = self.txns;
        for (i, t) in txns.iter().enumerate() {
            for (at, op) in t.ops.iter().enumerate() {
                if let Mop::Append { key, value } = op {
                    let last = !t.ops[at + 1..].iter().any(|o| matches!(o, Mop::Append { key: k, .. } if k == key));
                    if let Some(earlier) = self.writers.insert((*key, *value), Writer { txn: i, last }) {
                        let (a, b) = (self.describe(earlier.txn), self.describe(i));
                        self.flag(Anomaly::Duplicate, || format!("{value} appended to {key} twice: {a}; {b}"));
                    }
                }
            }
        }
    }

    /// Every committed read on its own: duplicates, garbage, aborted and intermediate reads.
    fn check_reads(&mut self) {
        let mut found = Vec::new();
        for (i, t) in self.committed() {
            for op in &t.ops {
                let Mop::Read { key, value: Some(list) } = op else { continue };
                let mut seen = HashSet::new();
                for e in list {
                    if !seen.insert(e) {
                        found.push((Anomaly::Duplicate, i, format!("{e} twice in key {key}")));
                    }
                    match self.writers.get(&(*key, *e)) {
                        None => found.push((Anomaly::Garbage, i, format!("{e} in key {key} never appended"))),
                        Some(w) if self.txns[w.txn].outcome == Outcome::Failed => {
                            found.push((Anomaly::G1a, i, format!("read {e} of {}", self.describe(w.txn))))
                        }
                        Some(_) => {}
                    }
                }
                if let Some(w) = list.last().and_then(|e| self.writers.get(&(*key, *e))) {
                    if w.txn != i && !w.last {
                        let writer = self.describe(w.txn);
                        found.push((Anomaly::G1b, i, format!("key {key} ends in a non-final append of {writer}")));
                    }
                }
            }
        }
        for (kind, i, detail) in found {
            let txn = self.describe(i);
            self.flag(kind, || format!("{txn}: {detail}"));
        }
    }

    /// Within each committed transaction, every read of a key is its earlier read plus its own
    /// appends since, or (before any read) ends with its own appends so far.
    fn check_internal(&mut self) {
        let mut found = Vec::new();
        for (i, t) in self.committed() {
            // Per key: the list as the transaction last knew it, or only its own appends.
            let mut state: HashMap<i64, (bool, Vec<i64>)> = HashMap::new();
            for op in &t.ops {
                match op {
                    Mop::Append { key, value } => state.entry(*key).or_default().1.push(*value),
                    Mop::Read { key, value: Some(list) } => {
                        let (known, expected) = state.entry(*key).or_default();
                        let fits = if *known { list == expected } else { list.ends_with(expected) };
                        if !fits {
                            found.push((i, format!("key {key}: read {list:?}, expected {expected:?}")));
                        }
                        *known = true;
                        expected.clone_from(list);
                    }
                    Mop::Read { value: None, .. } => {}
                }
            }
        }
        for (i, detail) in found {
            let txn = self.describe(i);
            self.flag(Anomaly::Internal, || format!("{txn}: {detail}"));
        }
    }

    /// Each key's version order: its longest committed read, when every other read is a prefix
    /// of it (keys without one order are flagged and left out of the graph).
    fn version_orders(&mut self) -> BTreeMap<i64, Vec<i64>> {
        let mut reads: BTreeMap<i64, Vec<&Vec<i64>>> = BTreeMap::new();
        let mut appends = 0;
        let txns = self.txns;
        for t in txns.iter().filter(|t| t.outcome == Outcome::Ok) {
            for op in &t.ops {
                match op {
                    Mop::Read { key, value: Some(list) } => reads.entry(*key).or_default().push(list),
                    Mop::Append { .. } => appends += 1,
                    Mop::Read { value: None, .. } => {}
                }
            }
        }
        self.report.reads = reads.values().map(Vec::len).sum();
        self.report.appends = appends;
        self.report.keys = reads.len();
        let mut orders = BTreeMap::new();
        let mut found = Vec::new();
        for (key, lists) in reads {
            let longest = lists.iter().max_by_key(|l| l.len()).expect("at least one read");
            match lists.iter().find(|l| !longest.starts_with(l)) {
                Some(other) => found.push(format!("key {key}: {other:?} is no prefix of {longest:?}")),
                None => {
                    orders.insert(key, (*longest).clone());
                }
            }
        }
        for detail in found {
            self.flag(Anomaly::IncompatibleOrder, || detail);
        }
        orders
    }

    /// Committed appends missing from the final read (the last version of each key).
    fn check_lost(&mut self, orders: &BTreeMap<i64, Vec<i64>>) {
        let mut found = Vec::new();
        for (i, t) in self.committed() {
            for op in &t.ops {
                if let Mop::Append { key, value } = op {
                    if orders.get(key).is_some_and(|order| !order.contains(value)) {
                        found.push((i, *key, *value));
                    }
                }
            }
        }
        for (i, key, value) in found {
            let txn = self.describe(i);
            self.flag(Anomaly::Lost, || format!("{value} of key {key}, appended by {txn}"));
        }
    }

    /// The ww, wr and rw edges between committed transactions (and unknown ones whose appends
    /// were seen, which therefore committed).
    fn dependencies(&mut self, orders: &BTreeMap<i64, Vec<i64>>) -> Graph {
        let mut graph = Graph::new();
        let edge = |graph: &mut Graph, from: usize, to: usize, kind: u8| {
            if from != to {
                *graph.entry(from).or_default().entry(to).or_default() |= kind;
            }
        };
        let writer = |key: i64, e: i64| {
            self.writers.get(&(key, e)).map(|w| w.txn).filter(|t| self.txns[*t].outcome != Outcome::Failed)
        };
        for (key, order) in orders {
            for pair in order.windows(2) {
                if let (Some(a), Some(b)) = (writer(*key, pair[0]), writer(*key, pair[1])) {
                    edge(&mut graph, a, b, WW);
                }
            }
        }
        for (i, t) in self.committed() {
            for op in &t.ops {
                let Mop::Read { key, value: Some(list) } = op else { continue };
                let Some(order) = orders.get(key) else { continue };
                if let Some(w) = list.last().and_then(|e| writer(*key, *e)) {
                    edge(&mut graph, w, i, WR);
                }
                if let Some(w) = order.get(list.len()).and_then(|e| writer(*key, *e)) {
                    edge(&mut graph, i, w, RW);
                }
            }
        }
        for targets in graph.values() {
            for mask in targets.values() {
                for (slot, kind) in [WW, WR, RW].into_iter().enumerate() {
                    self.report.edges[slot] += usize::from(mask & kind != 0);
                }
            }
        }
        graph
    }

    /// Every strongly connected component of the graph is a set of transactions with no serial
    /// order; each is flagged once, as the weakest anomaly it shows.
    fn check_cycles(&mut self, graph: &Graph) {
        for component in components(graph, WW | WR | RW, None) {
            let within: HashSet<usize> = component.iter().copied().collect();
            let (kind, cycle) = classify(graph, &within);
            let text: Vec<String> = cycle
                .iter()
                .map(|(txn, kind)| {
                    let arrow = match *kind {
                        WW => "-ww->",
                        WR => "-wr->",
                        _ => "-rw->",
                    };
                    format!("{} {arrow}", self.describe(*txn))
                })
                .collect();
            let size = component.len();
            self.flag(kind, || format!("{size} transactions in a cycle, e.g. {} (back to the first)", text.join(" ")));
        }
    }
}

/// The anomaly a cyclic component shows, with one cycle as (transaction, kind of its edge to
/// the next one).
fn classify(graph: &Graph, within: &HashSet<usize>) -> (Anomaly, Vec<(usize, u8)>) {
    for (kind, mask) in [(Anomaly::G0, WW), (Anomaly::G1c, WW | WR)] {
        if let Some(inner) = components(graph, mask, Some(within)).into_iter().next() {
            let start = inner[0];
            let inner: HashSet<usize> = inner.into_iter().collect();
            let first = graph[&start].iter().find(|(to, m)| inner.contains(*to) && *m & mask != 0);
            if let Some((next, m)) = first {
                if let Some(path) = path(graph, *next, start, mask, &inner) {
                    let mut cycle = vec![(start, lowest(m & mask))];
                    cycle.extend(path);
                    return (kind, cycle);
                }
            }
        }
    }
    // A cycle through one anti-dependency a -rw-> b: b reaches a over ww / wr edges.
    let anti = within
        .iter()
        .flat_map(|a| graph.get(a).into_iter().flatten().map(move |(b, m)| (*a, *b, *m)))
        .filter(|(_, b, m)| within.contains(b) && m & RW != 0);
    for (a, b, _) in anti.take(RW_TRIES) {
        if let Some(path) = path(graph, b, a, WW | WR, within) {
            let mut cycle = vec![(a, RW)];
            cycle.extend(path);
            return (Anomaly::GSingle, cycle);
        }
    }
    let start = *within.iter().min().expect("a non-empty component");
    let next = graph[&start].keys().find(|to| within.contains(*to)).copied().expect("a cyclic component");
    let mut cycle = vec![(start, lowest(graph[&start][&next]))];
    cycle.extend(path(graph, next, start, WW | WR | RW, within).unwrap_or_default());
    (Anomaly::G2, cycle)
}

/// The weakest kind in an edge mask (ww before wr before rw).
fn lowest(mask: u8) -> u8 {
    [WW, WR, RW].into_iter().find(|k| mask & k != 0).unwrap_or(RW)
}

/// A shortest path from `from` to `to` over edges of `mask` inside `within`, as (transaction,
/// kind of its edge onward), `from` first; `to` itself is left out.
fn path(graph: &Graph, from: usize, to: usize, mask: u8, within: &HashSet<usize>) -> Option<Vec<(usize, u8)>> {
    let mut parent: HashMap<usize, (usize, u8)> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    let mut seen = HashSet::from([from]);
    while let Some(node) = queue.pop_front() {
        for (next, m) in graph.get(&node).into_iter().flatten() {
            if m & mask == 0 || !within.contains(next) {
                continue;
            }
            if *next == to {
                let mut path = vec![(node, lowest(m & mask))];
                let mut at = node;
                while at != from {
                    let (prev, kind) = parent[&at];
                    path.push((prev, kind));
                    at = prev;
                }
                path.reverse();
                return Some(path);
            }
            if seen.insert(*next) {
                parent.insert(*next, (node, lowest(m & mask)));
                queue.push_back(*next);
            }
        }
    }
    None
}

/// The strongly connected components of more than one transaction, over edges of `mask`
/// (inside `within` when given): Tarjan's algorithm, iterative.
fn components(graph: &Graph, mask: u8, within: Option<&HashSet<usize>>) -> Vec<Vec<usize>> {
    let inside = |n: &usize| within.is_none_or(|w| w.contains(n));
    let successors = |n: usize| -> Vec<usize> {
        graph.get(&n).into_iter().flatten().filter(|(to, m)| *m & mask != 0 && inside(to)).map(|(to, _)| *to).collect()
    };
    let mut index: HashMap<usize, (usize, usize)> = HashMap::new(); // node -> (index, lowlink)
    let mut on_stack = HashSet::new();
    let mut stack = Vec::new();
    let mut found = Vec::new();
    let mut counter = 0;
    for root in graph.keys().copied().filter(inside) {
        if index.contains_key(&root) {
            continue;
        }
        // Frames of (node, its successors, next successor to visit).
        let mut frames = vec![(root, successors(root), 0usize)];
        index.insert(root, (counter, counter));
        counter += 1;
        stack.push(root);
        on_stack.insert(root);
        while let Some((node, succ, at)) = frames.last_mut() {
            if let Some(next) = succ.get(*at).copied() {
                *at += 1;
                let node = *node;
                match index.get(&next) {
                    None => {
                        index.insert(next, (counter, counter));
                        counter += 1;
                        stack.push(next);
                        on_stack.insert(next);
                        frames.push((next, successors(next), 0));
                    }
                    Some(&(next_index, _)) if on_stack.contains(&next) => {
                        let low = &mut index.get_mut(&node).expect("visited").1;
                        *low = (*low).min(next_index);
                    }
                    Some(_) => {}
                }
                continue;
            }
            let node = *node;
            frames.pop();
            let (node_index, node_low) = index[&node];
            if let Some((parent, _, _)) = frames.last() {
                let low = &mut index.get_mut(parent).expect("visited").1;
                *low = (*low).min(node_low);
            }
            if node_low == node_index {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack.remove(&member);
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort_unstable();
                    found.push(component);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(key: i64, value: i64) -> Mop {
        Mop::Append { key, value }
    }

    fn read(key: i64, list: &[i64]) -> Mop {
        Mop::Read { key, value: Some(list.to_vec()) }
    }

    fn txn(ops: Vec<Mop>) -> ListTxn {
        ListTxn { client: 0, ops, outcome: Outcome::Ok }
    }

    fn with(outcome: Outcome, ops: Vec<Mop>) -> ListTxn {
        ListTxn { client: 0, ops, outcome }
    }

    fn anomalies(txns: &[ListTxn], final_read: &[(i64, &[i64])]) -> Vec<Anomaly> {
        let lists: BTreeMap<i64, Vec<i64>> = final_read.iter().map(|(k, l)| (*k, l.to_vec())).collect();
        let report = check(txns, (!final_read.is_empty()).then_some(&lists));
        report.anomalies.keys().copied().collect()
    }

    #[test]
    fn a_serializable_history_passes() {
        let txns = [
            txn(vec![append(1, 10), append(2, 20)]),
            txn(vec![read(1, &[10]), append(1, 11), read(1, &[10, 11])]),
            with(Outcome::Failed, vec![append(2, 21)]),
            with(Outcome::Unknown, vec![append(2, 22)]),
            with(Outcome::Unknown, vec![append(1, 12)]),
            txn(vec![read(2, &[20, 22]), read(1, &[10, 11])]),
        ];
        let lists: BTreeMap<i64, Vec<i64>> = [(1, vec![10, 11]), (2, vec![20, 22])].into();
        let report = check(&txns, Some(&lists));
        assert!(report.passed(), "{report:?}");
        assert_eq!((report.txns.ok, report.txns.failed, report.txns.unknown), (3, 1, 2));
        assert_eq!(report.keys, 2);
        // T0 -ww-> T1 (key 1), T0 -ww-> T3 (key 2), T0 -wr-> T1, T5, final; T1 -wr-> T5, final.
        assert!(report.edges[0] >= 2 && report.edges[1] >= 3, "{report:?}");
    }

    #[test]
    fn g0_write_cycle() {
        // T0 appended before T1 on key 1, after it on key 2.
        let txns = [txn(vec![append(1, 1), append(2, 1)]), txn(vec![append(1, 2), append(2, 2)])];
        assert_eq!(anomalies(&txns, &[(1, &[1, 2]), (2, &[2, 1])]), vec![Anomaly::G0]);
    }

    #[test]
    fn g1a_aborted_read() {
        let txns = [with(Outcome::Failed, vec![append(1, 1)]), txn(vec![read(1, &[1])])];
        assert_eq!(anomalies(&txns, &[]), vec![Anomaly::G1a]);
    }

    #[test]
    fn g1b_intermediate_read() {
        let txns = [txn(vec![append(1, 1), append(1, 2)]), txn(vec![read(1, &[1])])];
        // The read also sits between the writer's two appends: a cycle with one rw edge.
        assert_eq!(anomalies(&txns, &[(1, &[1, 2])]), vec![Anomaly::G1b, Anomaly::GSingle]);
    }

    #[test]
    fn g1c_circular_information_flow() {
        // Each saw the other's append.
        let txns = [txn(vec![append(1, 1), read(2, &[2])]), txn(vec![append(2, 2), read(1, &[1])])];
        assert_eq!(anomalies(&txns, &[]), vec![Anomaly::G1c]);
    }

    #[test]
    fn g_single_read_skew() {
        // T1 saw T0's append to key 2 but not its append to key 1.
        let txns = [txn(vec![append(1, 1), append(2, 1)]), txn(vec![read(1, &[]), read(2, &[1])])];
        assert_eq!(anomalies(&txns, &[(1, &[1]), (2, &[1])]), vec![Anomaly::GSingle]);
    }

    #[test]
    fn g2_write_skew() {
        // Each read the key the other appended to before that append, then appended.
        let txns = [txn(vec![read(1, &[]), append(2, 1)]), txn(vec![read(2, &[]), append(1, 1)])];
        assert_eq!(anomalies(&txns, &[(1, &[1]), (2, &[1])]), vec![Anomaly::G2]);
    }

    #[test]
    fn internal_inconsistency() {
        // Its own append missing from its next read; a second read changing under it.
        let own = [txn(vec![append(1, 1), read(1, &[])])];
        assert_eq!(anomalies(&own, &[]), vec![Anomaly::Internal]);
        let unrepeatable = [txn(vec![append(1, 5)]), txn(vec![read(1, &[]), read(1, &[5])])];
        assert!(anomalies(&unrepeatable, &[]).contains(&Anomaly::Internal));
    }

    #[test]
    fn duplicates_garbage_lost_and_incompatible_orders() {
        let dup = [txn(vec![append(1, 1)]), txn(vec![read(1, &[1, 1])])];
        assert_eq!(anomalies(&dup, &[]), vec![Anomaly::Duplicate]);
        let garbage = [txn(vec![read(1, &[7])])];
        assert_eq!(anomalies(&garbage, &[]), vec![Anomaly::Garbage]);
        let lost = [txn(vec![append(1, 1)]), txn(vec![append(1, 2)])];
        assert_eq!(anomalies(&lost, &[(1, &[2])]), vec![Anomaly::Lost]);
        let forks =
            [txn(vec![append(1, 1)]), txn(vec![append(1, 2)]), txn(vec![read(1, &[1])]), txn(vec![read(1, &[2])])];
        assert_eq!(anomalies(&forks, &[]), vec![Anomaly::IncompatibleOrder]);
    }

    #[test]
    fn a_long_chain_and_a_long_cycle() {
        // 2,000 transactions appending in turn to one key: acyclic, and the iterative search
        // does not overflow the stack.
        let mut txns: Vec<ListTxn> = (0..2000).map(|i| txn(vec![append(1, i)])).collect();
        let order: Vec<i64> = (0..2000).collect();
        assert!(anomalies(&txns, &[(1, order.as_slice())]).is_empty());
        // Close it into one cycle through a second key written in the reverse order.
        for (i, t) in txns.iter_mut().enumerate() {
            t.ops.push(append(2, i as i64));
        }
        let reverse: Vec<i64> = (0..2000).rev().collect();
        let report = {
            let lists: BTreeMap<i64, Vec<i64>> = [(1, order), (2, reverse)].into();
            check(&txns, Some(&lists))
        };
        assert_eq!(report.anomalies.get(&Anomaly::G0), Some(&1), "{report:?}");
    }
}
