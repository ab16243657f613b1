//! The clients: tasks that run operations over pgwire (tokio-postgres, prepared statements)
//! against any node and record each one with its outcome (`history`). They know nothing about
//! the faults; a client whose connection breaks records the operation in flight as unknown and
//! reconnects, to the next node in turn.
//!
//! Outcome rules (what the server promises): an error response with a SQLSTATE other than 08007
//! means the statement did not apply (Failed); 08007, a broken connection or no answer within
//! the operation timeout means it may have (Unknown).
//!
//! Writes in explicit blocks (register writes and compare-and-sets, counter increments, bank
//! transfers, list-append transactions) learn their transaction's id as they begin
//! (`BEGIN; SELECT txid_current()`), as a PostgreSQL client that must not guess would. A COMMIT
//! whose answer is lost is then settled through another node with `txid_status(id)`:
//! committed (Ok) or aborted (Failed), so it stays Unknown only if no node could answer.
//! A block that never sent COMMIT did not apply (the server drops an open block with its
//! connection), and a read that got no answer changed nothing (Failed, dropped by the checker). Set inserts stay autocommit statements, so the one-shard fast path meets the
//! faults too; their lost answers stay Unknown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, Statement};

use crate::history::{Attempt, BankRead, ListTxn, Mop, Outcome, Recorder, RegisterEvent, RegisterOp};

/// How long a client keeps asking other nodes how a transaction whose COMMIT answer it lost
/// ended (the server settles within its lock expiry once a quorum is up).
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// One `txid_status` call's limit: the server may wait out a lock's expiry and push it.
const STATUS_TIMEOUT: Duration = Duration::from_secs(20);

/// The tables of the workloads; `probe` is the failover probe's (`nemesis`). The registers'
/// values, the balances and the lists are indexed (the lists uniquely), so every write of
/// theirs also changes index entries in other shards, in the same transaction; the run ends by
/// checking every index against its rows (`raftable.index_check`).
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE reg (k BIGINT PRIMARY KEY, v BIGINT NOT NULL)",
    "CREATE INDEX reg_v ON reg (v)",
    "CREATE TABLE elements (id BIGINT PRIMARY KEY)",
    "CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
    "CREATE TABLE probe (k BIGINT PRIMARY KEY, v BIGINT NOT NULL)",
    "CREATE TABLE bank (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)",
    "CREATE INDEX bank_balance ON bank (balance)",
    "CREATE TABLE lists (k BIGINT PRIMARY KEY, v TEXT NOT NULL)",
    "CREATE UNIQUE INDEX lists_v_k ON lists (v, k)",
];

/// The final check of every index against its table's rows.
pub const INDEX_CHECK: &str =
    "SELECT table_name, index_name, rows, entries, missing, orphaned, duplicates FROM raftable.index_check";

/// The bank workload's accounts (ids 0..ACCOUNTS, spread over the table's shards) and each
/// one's opening balance: every read must sum to `ACCOUNTS * OPENING`.
pub const ACCOUNTS: i64 = 8;
pub const OPENING: i64 = 100;

/// The bank workload's whole-table read.
pub const BANK_READ: &str = "SELECT CAST(sum(balance) AS BIGINT), min(balance), count(*) FROM bank";

/// The list-append workload's final read.
pub const LISTS_READ: &str = "SELECT k, v FROM lists";

/// A list as stored: its elements joined by commas (None: no row, the empty list).
pub fn parse_list(text: Option<&str>) -> Vec<i64> {
    text.into_iter().flat_map(|t| t.split(',')).filter_map(|e| e.parse().ok()).collect()
}

/// The list-append workload's keys, shared by its clients: a few keys in use at a time (so
/// transactions meet), each retired after a number of appends and replaced by a fresh key (so
/// lists stay short and the checker sees many version orders).
#[derive(Debug)]
pub struct ListKeys {
    active: Vec<(i64, u32)>,
    next: i64,
}

impl ListKeys {
    const ACTIVE: i64 = 6;
    const APPENDS_PER_KEY: u32 = 24;

    pub fn new() -> std::sync::Mutex<ListKeys> {
        std::sync::Mutex::new(ListKeys { active: (0..Self::ACTIVE).map(|k| (k, 0)).collect(), next: Self::ACTIVE })
    }

    /// A key for the next micro-operation, counting it as appended to when `append`.
    fn pick(&mut self, rng: &mut StdRng, append: bool) -> i64 {
        let slot = rng.gen_range(0..self.active.len());
        let key = self.active[slot].0;
        if append {
            self.active[slot].1 += 1;
            if self.active[slot].1 >= Self::APPENDS_PER_KEY {
                self.active[slot] = (self.next, 0);
                self.next += 1;
            }
        }
        key
    }
}

/// What a client does.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Reads, writes and compare-and-sets on `keys` registers (keys 0..keys, initially 0).
    Register { keys: i64 },
    /// Inserts of unique elements.
    Set,
    /// Increments of one counter row.
    Counter,
    /// Transfers between accounts in explicit blocks (read both balances, move money if there
    /// is enough, commit), and whole-table reads.
    Bank,
    /// Transactions of 1-4 reads and appends over a few lists (`ListKeys`), judged by the
    /// list-append checker.
    ListAppend,
}

/// Client settings shared by every task.
#[derive(Clone)]
pub struct Settings {
    /// Postgres URLs of every node; client `i` starts at node `i % len` and moves on to the
    /// next one whenever it cannot connect.
    pub urls: Vec<String>,
    /// Give up on an operation (outcome unknown) after this long.
    pub op_timeout: Duration,
    /// Pause between a client's operations.
    pub think: Duration,
    pub seed: u64,
    /// Where the latest bank COMMIT went: the index of its node in `urls`, plus one (the
    /// `kill-gateway` fault kills that node).
    pub gateway: Arc<std::sync::atomic::AtomicUsize>,
    pub list_keys: Arc<std::sync::Mutex<ListKeys>>,
}

/// The running clients.
pub struct Clients {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Clients {
    pub fn start(kinds: &[Kind], settings: &Settings, recorder: &Recorder) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = kinds
            .iter()
            .enumerate()
            .map(|(id, kind)| {
                let client = Worker {
                    id,
                    kind: *kind,
                    settings: settings.clone(),
                    recorder: recorder.clone(),
                    rng: StdRng::seed_from_u64(settings.seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9)),
                    seq: 0,
                    last_seen: Default::default(),
                    node: id,
                    broken: false,
                };
                tokio::spawn(client.run(stop.clone()))
            })
            .collect();
        Clients { stop, tasks }
    }

    /// Stops every client after its current operation.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// A connection with the statements of one workload prepared.
pub struct Conn {
    pub client: Client,
    task: JoinHandle<()>,
    statements: Vec<Statement>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    /// Connects to `url` and prepares `statements`, within `timeout`.
    pub async fn open(url: &str, statements: &[&str], timeout: Duration) -> Option<Conn> {
        let connect = async {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await.ok()?;
            let task = tokio::spawn(async move {
                let _ = connection.await;
            });
            let mut prepared = Vec::new();
            for sql in statements {
                prepared.push(client.prepare(sql).await.ok()?);
            }
            Some(Conn { client, task, statements: prepared })
        };
        tokio::time::timeout(timeout, connect).await.ok().flatten()
    }

    pub fn statement(&self, i: usize) -> &Statement {
        &self.statements[i]
    }
}

/// The outcome of a failed call (see the module doc).
pub fn outcome_of(error: &tokio_postgres::Error) -> Outcome {
    match error.code() {
        Some(code) if code.code() != "08007" => Outcome::Failed,
        _ => Outcome::Unknown,
    }
}

const READ: usize = 0;
const WRITE: usize = 1;
const CAS: usize = 2;

fn statements(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Register { .. } => &[
            "SELECT v FROM reg WHERE k = $1",
            "INSERT INTO reg (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            "UPDATE reg SET v = $3 WHERE k = $1 AND v = $2",
        ],
        Kind::Set => &["INSERT INTO elements (id) VALUES ($1)"],
        Kind::Counter => &["UPDATE counter SET n = n + 1 WHERE id = 0"],
        Kind::Bank => &[
            "SELECT balance FROM bank WHERE id = $1",
            "UPDATE bank SET balance = balance + $2 WHERE id = $1",
            BANK_READ,
        ],
        Kind::ListAppend => &[
            "SELECT v FROM lists WHERE k = $1",
            "INSERT INTO lists (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = lists.v || ',' || excluded.v",
        ],
    }
}

struct Worker {
    id: usize,
    kind: Kind,
    settings: Settings,
    recorder: Recorder,
    rng: StdRng,
    /// Operations issued so far: makes every written value unique.
    seq: i64,
    /// The last value this client saw per register key: the `old` of its next CAS there.
    last_seen: std::collections::HashMap<i64, i64>,
    /// The node (index in `settings.urls`) this client is connected to, or tries next.
    node: usize,
    /// A call of the current operation went unanswered: the connection is not reused.
    broken: bool,
}

impl Worker {
    async fn run(mut self, stop: Arc<AtomicBool>) {
        let mut conn: Option<Conn> = None;
        while !stop.load(Ordering::Relaxed) {
            let c = match conn.take() {
                Some(c) if !c.client.is_closed() => c,
                _ => {
                    let url = &self.settings.urls[self.node % self.settings.urls.len()];
                    match Conn::open(url, statements(self.kind), self.settings.op_timeout).await {
                        Some(c) => c,
                        None => {
                            self.node += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                }
            };
            self.broken = false;
            if self.operate(&c).await != Outcome::Unknown && !self.broken {
                conn = Some(c);
            } else {
                // The statement may still be running: never reuse the connection.
                self.node += 1;
            }
            tokio::time::sleep(self.settings.think).await;
        }
    }

    /// A value no other operation of the run writes.
    fn unique(&mut self) -> i64 {
        self.seq += 1;
        ((self.id as i64 + 1) << 32) | self.seq
    }

    /// Runs one operation, records it, returns its outcome.
    async fn operate(&mut self, conn: &Conn) -> Outcome {
        let timeout = self.settings.op_timeout;
        match self.kind {
            Kind::Register { keys } => {
                let key = self.rng.gen_range(0..keys);
                let roll = self.rng.gen_range(0..4);
                let invoked = self.recorder.now();
                let (op, outcome) = match roll {
                    0 | 1 => {
                        let r = self.ask(conn.client.query_opt(conn.statement(READ), &[&key])).await;
                        let value = r.as_ref().ok().and_then(|row| row.as_ref().map(|row| row.get::<_, i64>(0)));
                        if let Some(v) = value {
                            self.last_seen.insert(key, v);
                        }
                        // A read changes nothing: one that got no answer is as if not made.
                        (RegisterOp::Read { value }, if r.is_ok() { Outcome::Ok } else { Outcome::Failed })
                    }
                    2 => {
                        let value = self.unique();
                        let r = self.block(conn, WRITE, &[&key, &value], |_| true).await;
                        if r.is_ok() {
                            self.last_seen.insert(key, value);
                        }
                        (RegisterOp::Write { value }, r.err().unwrap_or(Outcome::Ok))
                    }
                    _ => {
                        let old = self.last_seen.get(&key).copied().unwrap_or(0);
                        let new = self.unique();
                        // Commits only a swap: a settled commit is a swap.
                        let r = self.block(conn, CAS, &[&key, &old, &new], |rows| rows == 1).await;
                        let swapped = matches!(r, Ok(1));
                        if swapped {
                            self.last_seen.insert(key, new);
                        }
                        (RegisterOp::Cas { old, new, swapped }, r.err().unwrap_or(Outcome::Ok))
                    }
                };
                let completed = self.recorder.now();
                self.recorder.register(RegisterEvent { client: self.id, key, op, outcome, invoked, completed });
                outcome
            }
            Kind::Set => {
                let value = self.unique();
                let r = call(timeout, conn.client.execute(conn.statement(0), &[&value])).await;
                let outcome = r.err().unwrap_or(Outcome::Ok);
                self.recorder.set(Attempt { value, outcome });
                outcome
            }
            Kind::Bank => {
                if self.rng.gen_range(0..3) == 0 {
                    let r = call(timeout, conn.client.query_one(conn.statement(2), &[])).await;
                    let outcome = r.as_ref().err().copied().unwrap_or(Outcome::Ok);
                    let (total, min, accounts) = match &r {
                        Ok(row) => (row.get(0), row.get(1), row.get(2)),
                        Err(_) => (0, 0, 0),
                    };
                    self.recorder.bank_read(BankRead { total, min, accounts, outcome });
                    return outcome;
                }
                let from = self.rng.gen_range(0..ACCOUNTS);
                let to = (from + self.rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
                let amount = self.rng.gen_range(1..=20i64);
                let gateway = self.node % self.settings.urls.len() + 1;
                let (moved, outcome) = match self.transfer(conn, from, to, amount, gateway).await {
                    Ok(moved) => (moved, Outcome::Ok),
                    Err(outcome) => (amount, outcome),
                };
                self.recorder.transfer(Attempt { value: moved, outcome });
                outcome
            }
            Kind::ListAppend => {
                let ops = self.list_ops();
                let gateway = self.node % self.settings.urls.len() + 1;
                let (ops, outcome) = self.list_txn(conn, ops, gateway).await;
                self.recorder.list_txn(ListTxn { client: self.id, ops, outcome });
                outcome
            }
            Kind::Counter => {
                let r = self.block(conn, 0, &[], |_| true).await;
                // Zero rows updated would mean the counter row vanished: the final read shows it.
                let outcome = r.err().unwrap_or(Outcome::Ok);
                self.recorder.counter(Attempt { value: 1, outcome });
                outcome
            }
        }
    }
}

impl Worker {
    /// The micro-operations of a list-append transaction (reads without their values yet).
    fn list_ops(&mut self) -> Vec<Mop> {
        let n = self.rng.gen_range(1..=4);
        (0..n)
            .map(|_| {
                let append = self.rng.gen_bool(0.5);
                let key = self.settings.list_keys.lock().expect("list keys").pick(&mut self.rng, append);
                if append {
                    Mop::Append { key, value: self.unique() }
                } else {
                    Mop::Read { key, value: None }
                }
            })
            .collect()
    }
}

impl Worker {
    /// Awaits one call of the current operation (see [`call`]); an unanswered one marks the
    /// connection broken.
    async fn ask<T>(
        &mut self,
        request: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Outcome> {
        let r = call(self.settings.op_timeout, request).await;
        if matches!(r, Err(Outcome::Unknown)) {
            self.broken = true;
        }
        r
    }

    /// Opens a block and learns its transaction's id, in one round trip. Nothing is written
    /// yet, so a failure here is a failed operation whatever the cause.
    async fn begin(&mut self, conn: &Conn) -> Result<i64, Outcome> {
        let messages = self.ask(conn.client.simple_query("BEGIN; SELECT txid_current()")).await;
        let xid = messages.ok().and_then(|messages| {
            messages.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
                _ => None,
            })
        });
        xid.ok_or(Outcome::Failed)
    }

    /// Ends a block: ROLLBACK after a statement failed (the block did not apply); otherwise the
    /// caller already chose. An unanswered statement before COMMIT did not apply either: the
    /// connection is dropped, and its open block with it.
    async fn abandon(&mut self, conn: &Conn, outcome: Outcome) -> Outcome {
        if outcome == Outcome::Failed {
            let _ = self.ask(conn.client.batch_execute("ROLLBACK")).await;
        }
        Outcome::Failed
    }

    /// COMMIT of the block whose id is `xid`: a lost answer is settled (see the module docs).
    async fn commit(&mut self, conn: &Conn, xid: i64) -> Result<(), Outcome> {
        match self.ask(conn.client.batch_execute("COMMIT")).await {
            Err(Outcome::Unknown) => match self.settle(xid).await {
                Outcome::Ok => Ok(()),
                outcome => Err(outcome),
            },
            other => other,
        }
    }

    /// Asks the other nodes in turn how transaction `xid` ended: Ok (committed), Failed
    /// (aborted), Unknown if none answered within [`SETTLE_DEADLINE`].
    async fn settle(&mut self, xid: i64) -> Outcome {
        let deadline = std::time::Instant::now() + SETTLE_DEADLINE;
        let sql = format!("SELECT txid_status({xid})");
        while std::time::Instant::now() < deadline {
            self.node += 1;
            let url = &self.settings.urls[self.node % self.settings.urls.len()];
            let Some(conn) = Conn::open(url, &[], self.settings.op_timeout).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if let Ok(messages) = call(STATUS_TIMEOUT, conn.client.simple_query(&sql)).await {
                let status = messages.iter().find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                    _ => None,
                });
                match status.as_deref() {
                    Some("committed") => return self.settled(Outcome::Ok),
                    Some("aborted") => return self.settled(Outcome::Failed),
                    _ => {}
                }
            }
        }
        self.settled(Outcome::Unknown)
    }

    fn settled(&self, outcome: Outcome) -> Outcome {
        self.recorder.settled(outcome);
        outcome
    }

    /// One write statement (`statement`, with `params`) in a block of its own, committed if
    /// `commit(rows it changed)`, else rolled back. Returns the rows changed.
    async fn block(
        &mut self,
        conn: &Conn,
        statement: usize,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        commit: impl Fn(u64) -> bool,
    ) -> Result<u64, Outcome> {
        let xid = self.begin(conn).await?;
        let rows = match self.ask(conn.client.execute(conn.statement(statement), params)).await {
            Ok(rows) => rows,
            Err(outcome) => return Err(self.abandon(conn, outcome).await),
        };
        if !commit(rows) {
            // Without COMMIT the block does not apply, answered or not.
            let _ = self.ask(conn.client.batch_execute("ROLLBACK")).await;
            return Ok(rows);
        }
        self.commit(conn, xid).await.map(|()| rows)
    }

    /// One list-append transaction in an explicit block; fills in the values read. An error
    /// before `COMMIT` rolls the block back (Failed); `COMMIT`'s outcome is settled if lost.
    /// `gateway` (this client's node, plus one) is published before `COMMIT` for the
    /// `kill-gateway` fault.
    async fn list_txn(&mut self, conn: &Conn, mut ops: Vec<Mop>, gateway: usize) -> (Vec<Mop>, Outcome) {
        let xid = match self.begin(conn).await {
            Ok(xid) => xid,
            Err(outcome) => return (ops, outcome),
        };
        for op in &mut ops {
            let done = match op {
                Mop::Read { key, value } => {
                    self.ask(conn.client.query_opt(conn.statement(0), &[&*key])).await.map(|row| {
                        *value = Some(parse_list(row.as_ref().map(|r| r.get::<_, &str>(0))));
                    })
                }
                Mop::Append { key, value } => {
                    let element = value.to_string();
                    self.ask(conn.client.execute(conn.statement(1), &[&*key, &element])).await.map(|_| ())
                }
            };
            if let Err(outcome) = done {
                return (ops, self.abandon(conn, outcome).await);
            }
        }
        self.settings.gateway.store(gateway, Ordering::Relaxed);
        let outcome = self.commit(conn, xid).await.err().unwrap_or(Outcome::Ok);
        (ops, outcome)
    }

    /// One transfer in an explicit block: reads both balances, moves `amount` if `from` has
    /// it, commits. Returns the amount moved (0: too little money, rolled back). An error
    /// before `COMMIT` rolls the block back (Failed); `COMMIT`'s outcome is settled if lost.
    /// `gateway` as for [`Worker::list_txn`].
    async fn transfer(&mut self, conn: &Conn, from: i64, to: i64, amount: i64, gateway: usize) -> Result<i64, Outcome> {
        let xid = self.begin(conn).await?;
        let moves = async {
            let balance: i64 = self.ask(conn.client.query_one(conn.statement(0), &[&from])).await?.get(0);
            self.ask(conn.client.query_one(conn.statement(0), &[&to])).await?;
            if balance < amount {
                return Ok(false);
            }
            self.ask(conn.client.execute(conn.statement(1), &[&from, &-amount])).await?;
            self.ask(conn.client.execute(conn.statement(1), &[&to, &amount])).await?;
            Ok(true)
        };
        match moves.await {
            Ok(false) => {
                let _ = self.ask(conn.client.batch_execute("ROLLBACK")).await;
                Ok(0)
            }
            Ok(true) => {
                self.settings.gateway.store(gateway, Ordering::Relaxed);
                self.commit(conn, xid).await.map(|()| amount)
            }
            Err(outcome) => Err(self.abandon(conn, outcome).await),
        }
    }
}

/// Awaits a call within `timeout`, mapping failures to their outcome.
pub async fn call<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Outcome> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(outcome_of(&e)),
        Err(_) => Err(Outcome::Unknown),
    }
}
