//! What the clients saw: every operation with its invocation and completion time (nanoseconds
//! since the run started) and its outcome. The workloads (`workload`) record into a [`Recorder`];
//! the checkers (`linearizability`, `checks`) read the finished history.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

/// How an operation ended, as the client can know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// The server acknowledged it.
    Ok,
    /// The server answered with an error: the operation certainly did not apply.
    Failed,
    /// The connection broke or timed out mid-flight (or the server said 08007): it may or may
    /// not have applied.
    Unknown,
}

/// One operation on the register of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RegisterOp {
    /// A read; `value` is what it returned (None: no row), meaningful only when Ok.
    Read { value: Option<i64> },
    /// An unconditional write of `value`.
    Write { value: i64 },
    /// Compare-and-set: `UPDATE ... SET v = new WHERE k = $k AND v = old`. `swapped` is whether
    /// it reported one row changed (meaningful only when Ok).
    Cas { old: i64, new: i64, swapped: bool },
}

/// A register operation as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RegisterEvent {
    pub client: usize,
    pub key: i64,
    pub op: RegisterOp,
    pub outcome: Outcome,
    /// When the client sent it.
    pub invoked: u64,
    /// When the client got the answer (for Unknown: when it gave up).
    pub completed: u64,
}

/// One attempt to add an element (set workload) or one increment (counter workload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub value: i64,
    pub outcome: Outcome,
}

/// A whole-table read of the bank workload: the sum and the smallest balance, and how many
/// accounts it saw (meaningful only when Ok).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BankRead {
    pub total: i64,
    pub min: i64,
    pub accounts: i64,
    pub outcome: Outcome,
}

/// One micro-operation of a list-append transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Mop {
    /// Appends `value` (unique in the run) to the list at `key`.
    Append { key: i64, value: i64 },
    /// Reads the list at `key`; `value` is what it returned (an absent row is the empty list),
    /// None when the transaction did not get that far or its outcome is unknown.
    Read { key: i64, value: Option<Vec<i64>> },
}

impl Mop {
    pub fn key(&self) -> i64 {
        match self {
            Mop::Append { key, .. } | Mop::Read { key, .. } => *key,
        }
    }
}

/// One transaction of the list-append workload: BEGIN, its micro-operations in order, COMMIT.
/// Ok: COMMIT succeeded; Failed: an error rolled it back; Unknown: the connection broke or
/// COMMIT's answer was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListTxn {
    pub client: usize,
    pub ops: Vec<Mop>,
    pub outcome: Outcome,
}

/// The histories of one run, shared by every client task.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    inner: Arc<Mutex<Histories>>,
}

/// Everything recorded.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Histories {
    pub register: Vec<RegisterEvent>,
    pub set: Vec<Attempt>,
    pub counter: Vec<Attempt>,
    /// Transfers of the bank workload (`value`: the amount; 0 when it found too little money
    /// and changed nothing).
    pub transfers: Vec<Attempt>,
    pub bank_reads: Vec<BankRead>,
    pub list_append: Vec<ListTxn>,
    /// Blocks whose COMMIT answer was lost, by what `txid_status` said: committed (ok),
    /// aborted (failed), or nothing within the deadline (unknown).
    pub settled: Counts,
}

impl Recorder {
    pub fn new(start: Instant) -> Self {
        Self { start, inner: Arc::default() }
    }

    /// Nanoseconds since the run started: the clock of every recorded time.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn register(&self, event: RegisterEvent) {
        self.inner.lock().expect("history lock").register.push(event);
    }

    pub fn set(&self, attempt: Attempt) {
        self.inner.lock().expect("history lock").set.push(attempt);
    }

    pub fn counter(&self, attempt: Attempt) {
        self.inner.lock().expect("history lock").counter.push(attempt);
    }

    pub fn transfer(&self, attempt: Attempt) {
        self.inner.lock().expect("history lock").transfers.push(attempt);
    }

    pub fn bank_read(&self, read: BankRead) {
        self.inner.lock().expect("history lock").bank_reads.push(read);
    }

    pub fn list_txn(&self, txn: ListTxn) {
        self.inner.lock().expect("history lock").list_append.push(txn);
    }

    pub fn settled(&self, outcome: Outcome) {
        let settled = &mut self.inner.lock().expect("history lock").settled;
        match outcome {
            Outcome::Ok => settled.ok += 1,
            Outcome::Failed => settled.failed += 1,
            Outcome::Unknown => settled.unknown += 1,
        }
    }

    pub fn snapshot(&self) -> Histories {
        self.inner.lock().expect("history lock").clone()
    }
}

/// Operation counts by outcome.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
}

impl Counts {
    pub fn of(outcomes: impl Iterator<Item = Outcome>) -> Counts {
        let mut c = Counts::default();
        for o in outcomes {
            match o {
                Outcome::Ok => c.ok += 1,
                Outcome::Failed => c.failed += 1,
                Outcome::Unknown => c.unknown += 1,
            }
        }
        c
    }
}
