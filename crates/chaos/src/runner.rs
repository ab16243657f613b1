//! One chaos run, start to verdict: start the cluster (`procs`), create the workload tables,
//! start the clients (`workload`), let the nemesis inject faults on a schedule (`nemesis`),
//! heal, stop the clients, do the final reads, and judge: linearizability of every register,
//! the set, counter and bank checks (`checks`), the list-append checker (`list_append`), replica
//! convergence, and no unexpected exit, panic or fatal error in any node's log.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use raftable_common::META_SHARD;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

use crate::checks::{self, BankReport, CounterReport, Replica, SetReport};
use crate::history::{Counts, Outcome, Recorder, RegisterEvent, RegisterOp};
use crate::linearizability;
use crate::list_append::{self, ListAppendReport};
use crate::nemesis::{heal, Fault, FaultRecord, Nemesis, ProbeKeys};
use crate::procs::Cluster;
use crate::workload::{
    call, parse_list, Clients, Conn, Kind, ListKeys, Settings, ACCOUNTS, BANK_READ, INDEX_CHECK, LISTS_READ, OPENING,
    SCHEMA,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub profile: String,
    pub nodes: u64,
    /// How long the nemesis injects faults (setup, healing and checks come on top).
    pub duration: Duration,
    pub seed: u64,
    /// The `raftable` binary.
    pub raftable: PathBuf,
    /// Faults in the order they are injected, repeated until `duration` is over.
    pub faults: Vec<Fault>,
    /// Range of how long each fault is held.
    pub hold: (Duration, Duration),
    pub register_clients: usize,
    pub set_clients: usize,
    pub counter_clients: usize,
    pub bank_clients: usize,
    pub list_append_clients: usize,
    /// Register keys (spread over the table's shards).
    pub keys: i64,
    pub think: Duration,
    pub op_timeout: Duration,
    /// Extra arguments for every `raftable start` (e.g. Raft timing).
    pub node_args: Vec<String>,
}

/// The verdict of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub profile: String,
    pub nodes: u64,
    pub seed: u64,
    /// Wall time of the whole run, seconds.
    pub elapsed_s: f64,
    pub faults: Vec<FaultRecord>,
    pub register: Counts,
    /// Register operations whose outcome is unknown because the client's timeout passed (the
    /// others: its connection broke, or the server said 08007).
    pub register_timed_out: usize,
    /// Blocks whose COMMIT answer was lost, settled by `txid_status` through another node:
    /// committed (ok), aborted (failed), unsettled (unknown).
    pub settled: Counts,
    pub set: SetReport,
    pub counter: CounterReport,
    pub bank: BankReport,
    pub list_append: ListAppendReport,
    /// Each index checked against its rows at the end: `table.index: rows, entries`.
    pub indexes: Vec<String>,
    /// Leader kills timed, and kill → first successful write, median and max in ms.
    pub failovers: usize,
    pub failover_median_ms: Option<f64>,
    pub failover_max_ms: Option<f64>,
    /// Leader pauses timed, and pause → first successful write through another node.
    pub pauses: usize,
    pub pause_median_ms: Option<f64>,
    pub pause_max_ms: Option<f64>,
    /// Everything that went wrong. Empty: the run passed.
    pub violations: Vec<String>,
    /// The run's directory, kept when the run failed.
    pub dir: Option<String>,
}

pub async fn run(opts: &Options) -> Result<Report, String> {
    let started = Instant::now();
    let mut cluster = Cluster::start(&opts.raftable, opts.nodes, &opts.node_args).await?;
    let mut violations = Vec::new();
    let setup = setup(&cluster, opts).await;
    let (probe, shards) = match setup {
        Ok(v) => v,
        Err(e) => {
            let dir = cluster.keep_dir();
            return Err(format!("setup failed: {e} (run dir kept at {})", dir.display()));
        }
    };
    cluster
        .wait("a healthy cluster", Duration::from_secs(60), |c| async move { c.healthy().await.then_some(()) })
        .await?;

    let recorder = Recorder::new(started);
    let urls: Vec<String> = cluster.ids().iter().map(|id| cluster.pg_url(*id)).collect();
    let gateway = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let settings = Settings {
        urls,
        op_timeout: opts.op_timeout,
        think: opts.think,
        seed: opts.seed,
        gateway: gateway.clone(),
        list_keys: std::sync::Arc::new(ListKeys::new()),
    };
    let mut kinds = vec![Kind::Register { keys: opts.keys }; opts.register_clients];
    kinds.extend(std::iter::repeat_n(Kind::Set, opts.set_clients));
    kinds.extend(std::iter::repeat_n(Kind::Counter, opts.counter_clients));
    kinds.extend(std::iter::repeat_n(Kind::Bank, opts.bank_clients));
    kinds.extend(std::iter::repeat_n(Kind::ListAppend, opts.list_append_clients));
    let clients = Clients::start(&kinds, &settings, &recorder);

    let rng = StdRng::seed_from_u64(opts.seed);
    let mut nemesis = Nemesis { rng, hold: opts.hold, start: started, probe, shards, gateway };
    let mut records = Vec::new();
    let nemesis_start = Instant::now();
    // Let the clients get going before the first fault.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for fault in opts.faults.iter().cycle() {
        if nemesis_start.elapsed() >= opts.duration {
            break;
        }
        tracing::info!(?fault, "injecting");
        match nemesis.run(&mut cluster, *fault).await {
            Ok(record) => {
                tracing::info!(?record, "healed");
                records.push(record);
            }
            Err(e) => {
                violations.push(format!("{fault:?}: {e}"));
                break;
            }
        }
        for (id, status) in cluster.exited() {
            violations.push(format!("node {id} exited unexpectedly ({status}):\n{}", cluster.log_tail(id, 30)));
            if let Err(e) = cluster.restart(id).await {
                violations.push(e);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Heal everything, let the clients see a healthy cluster, then stop them.
    for (id, status) in cluster.exited() {
        violations.push(format!("node {id} exited unexpectedly ({status}):\n{}", cluster.log_tail(id, 30)));
    }
    if let Err(e) = heal_all(&mut cluster).await {
        violations.push(format!("final heal: {e}"));
    }
    let healthy = cluster.wait("a healthy cluster after healing", Duration::from_secs(60), |c| async move {
        c.healthy().await.then_some(())
    });
    if let Err(e) = healthy.await {
        violations.push(e);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    clients.stop().await;

    match final_reads(&cluster, opts, &recorder).await {
        Ok(finals) => {
            let histories = recorder.snapshot();
            for v in linearizability::check(&histories.register, Some(0)) {
                violations.push(format!("register key {}: {}", v.key, v.message));
            }
            let set = checks::check_set(&histories.set, &finals.elements);
            if !set.passed() {
                violations.push(format!("set: {set:?}"));
            }
            let counter = checks::check_counter(&histories.counter, finals.counter);
            if !counter.passed() {
                violations.push(format!("counter: {counter:?}"));
            }
            let bank = checks::check_bank(
                &histories.transfers,
                &histories.bank_reads,
                finals.bank,
                ACCOUNTS,
                ACCOUNTS * OPENING,
            );
            if !bank.passed(ACCOUNTS, ACCOUNTS * OPENING) {
                violations.push(format!("bank: {bank:?}"));
            }
            let list_append = list_append::check(&histories.list_append, Some(&finals.lists));
            if opts.list_append_clients > 0 && (list_append.txns.ok == 0 || list_append.reads == 0) {
                // A checker of nothing passes: the workload itself must have worked.
                violations.push(format!("list-append: no transaction with a read committed: {:?}", list_append.txns));
            }
            if !list_append.passed() {
                violations.push(format!(
                    "list-append: {:?}: {}",
                    list_append.anomalies,
                    list_append.examples.join("; ")
                ));
            }
            if let Err(e) = converged(&cluster, opts).await {
                violations.push(e);
            }
            let indexes = match index_check(&cluster, opts).await {
                Ok((summary, problems)) => {
                    violations.extend(problems);
                    summary
                }
                Err(e) => {
                    violations.push(e);
                    Vec::new()
                }
            };
            for (id, status) in cluster.exited() {
                violations.push(format!("node {id} exited unexpectedly ({status})"));
            }
            violations.extend(cluster.log_failures());
            let timed = |fault| -> Vec<f64> {
                records.iter().filter(|r| r.fault == fault).filter_map(|r| r.failover_ms).collect()
            };
            let (failovers, pauses) = (timed(Fault::KillLeader), timed(Fault::PauseLeader));
            let mut report = Report {
                profile: opts.profile.clone(),
                nodes: opts.nodes,
                seed: opts.seed,
                elapsed_s: started.elapsed().as_secs_f64(),
                failovers: failovers.len(),
                failover_median_ms: median(&failovers),
                failover_max_ms: failovers.iter().copied().reduce(f64::max),
                pauses: pauses.len(),
                pause_median_ms: median(&pauses),
                pause_max_ms: pauses.iter().copied().reduce(f64::max),
                faults: records,
                register: Counts::of(histories.register.iter().map(|e| e.outcome)),
                register_timed_out: histories
                    .register
                    .iter()
                    .filter(|e| e.outcome == Outcome::Unknown)
                    .filter(|e| e.completed.saturating_sub(e.invoked) >= opts.op_timeout.as_nanos() as u64)
                    .count(),
                settled: histories.settled.clone(),
                set,
                counter,
                bank,
                list_append,
                indexes,
                violations,
                dir: None,
            };
            if !report.violations.is_empty() {
                let history = serde_json::to_string(&histories).unwrap_or_default();
                let _ = std::fs::write(cluster.dir().join("history.json"), history);
                report.dir = Some(cluster.keep_dir().display().to_string());
            }
            Ok(report)
        }
        Err(e) => {
            let dir = cluster.keep_dir();
            Err(format!(
                "final reads failed: {e}; violations so far: {violations:?} (run dir kept at {})",
                dir.display()
            ))
        }
    }
}

/// Creates the tables and initial rows; returns the probe table's key per shard and every
/// data shard.
async fn setup(cluster: &Cluster, opts: &Options) -> Result<(ProbeKeys, Vec<u64>), String> {
    let conn = Conn::open(&cluster.pg_url(1), &[], Duration::from_secs(10)).await.ok_or("cannot connect to node 1")?;
    let sql = |e: tokio_postgres::Error| e.to_string();
    for statement in SCHEMA {
        conn.client.batch_execute(statement).await.map_err(sql)?;
    }
    let rows: Vec<String> = (0..opts.keys).map(|k| format!("({k}, 0)")).collect();
    conn.client.batch_execute(&format!("INSERT INTO reg (k, v) VALUES {}", rows.join(", "))).await.map_err(sql)?;
    conn.client.batch_execute("INSERT INTO counter (id, n) VALUES (0, 0)").await.map_err(sql)?;
    let accounts: Vec<String> = (0..ACCOUNTS).map(|id| format!("({id}, {OPENING})")).collect();
    conn.client
        .batch_execute(&format!("INSERT INTO bank (id, balance) VALUES {}", accounts.join(", ")))
        .await
        .map_err(sql)?;

    let mut shards = Vec::new();
    let mut probe_shards = Vec::new();
    for row in conn.client.query("SELECT shard_id, table_name FROM raftable.shards", &[]).await.map_err(sql)? {
        let (shard, table): (i64, Option<String>) = (row.get(0), row.get(1));
        if table.is_some() {
            shards.push(shard as u64);
        }
        if table.as_deref() == Some("probe") {
            probe_shards.push(shard as u64);
        }
    }
    let mut probe = ProbeKeys::default();
    for k in 0..1000i64 {
        if probe.by_shard.len() == probe_shards.len() {
            break;
        }
        let plan =
            conn.client.simple_query(&format!("EXPLAIN SELECT v FROM probe WHERE k = {k}")).await.map_err(sql)?;
        let text: String = plan
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some((0..r.len()).filter_map(|i| r.get(i)).collect()),
                _ => None,
            })
            .collect::<Vec<String>>()
            .join(" ");
        let shard = text
            .split("shard ")
            .skip(1)
            .find_map(|rest| rest.split_once(": get").and_then(|(id, _)| id.trim().parse::<u64>().ok()));
        if let Some(shard) = shard {
            if !probe.by_shard.iter().any(|(s, _)| *s == shard) {
                probe.by_shard.push((shard, k));
            }
        }
    }
    if probe.by_shard.len() != probe_shards.len() || probe_shards.is_empty() {
        return Err(format!("probe keys found for {:?} of shards {probe_shards:?}", probe.by_shard));
    }
    Ok((probe, shards))
}

/// Resumes paused nodes, restarts stopped ones, clears every injected fault.
async fn heal_all(cluster: &mut Cluster) -> Result<(), String> {
    for id in cluster.ids() {
        if cluster.running().contains(&id) && !cluster.responsive().contains(&id) {
            cluster.pause(id, false).await?;
        }
        if !cluster.running().contains(&id) {
            cluster.restart(id).await?;
        }
    }
    heal(cluster).await
}

/// What the final reads saw.
struct Finals {
    elements: Vec<i64>,
    counter: i64,
    /// Sum, smallest balance and accounts.
    bank: (i64, i64, i64),
    lists: BTreeMap<i64, Vec<i64>>,
}

/// Reads every register (recorded as client operations, so the checker orders them too), the
/// set, the counter, the bank and the lists, retrying through any node until each read succeeds.
async fn final_reads(cluster: &Cluster, opts: &Options, recorder: &Recorder) -> Result<Finals, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let statements = [
        "SELECT v FROM reg WHERE k = $1",
        "SELECT id FROM elements",
        "SELECT n FROM counter WHERE id = 0",
        BANK_READ,
        LISTS_READ,
    ];
    let mut counter = None;
    let mut node = 0usize;
    let ids = cluster.ids();
    let mut conn: Option<Conn> = None;
    let mut key = 0i64;
    let mut elements = None;
    let mut bank = None;
    loop {
        if Instant::now() >= deadline {
            return Err("no final read succeeded within 60 s".into());
        }
        let c = match conn.take() {
            Some(c) if !c.client.is_closed() => c,
            _ => {
                node += 1;
                let url = cluster.pg_url(ids[node % ids.len()]);
                match Conn::open(&url, &statements, Duration::from_secs(5)).await {
                    Some(c) => c,
                    None => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
        };
        let timeout = opts.op_timeout;
        if key < opts.keys {
            let invoked = recorder.now();
            let r = call(timeout, c.client.query_opt(c.statement(0), &[&key])).await;
            let value = r.as_ref().ok().and_then(|row| row.as_ref().map(|row| row.get::<_, i64>(0)));
            let outcome = r.as_ref().err().copied().unwrap_or(Outcome::Ok);
            let completed = recorder.now();
            let op = RegisterOp::Read { value };
            recorder.register(RegisterEvent { client: usize::MAX, key, op, outcome, invoked, completed });
            if r.is_ok() {
                key += 1;
            }
        } else if elements.is_none() {
            if let Ok(rows) = call(timeout, c.client.query(c.statement(1), &[])).await {
                elements = Some(rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>());
            }
        } else if counter.is_none() {
            if let Ok(row) = call(timeout, c.client.query_one(c.statement(2), &[])).await {
                counter = Some(row.get(0));
            }
        } else if bank.is_none() {
            if let Ok(row) = call(timeout, c.client.query_one(c.statement(3), &[])).await {
                bank = Some((row.get(0), row.get(1), row.get(2)));
            }
        } else if let Ok(rows) = call(timeout, c.client.query(c.statement(4), &[])).await {
            let lists = rows.iter().map(|r| (r.get(0), parse_list(r.get(1)))).collect();
            return Ok(Finals {
                elements: elements.unwrap_or_default(),
                counter: counter.unwrap_or_default(),
                bank: bank.unwrap_or_default(),
                lists,
            });
        }
        conn = Some(c);
    }
}

/// Checks every secondary index against its table's rows through any node (retrying for up
/// to 60 s): returns a line per index, and the inconsistencies (entries missing, orphaned, or
/// a unique index's values held twice).
async fn index_check(cluster: &Cluster, opts: &Options) -> Result<(Vec<String>, Vec<String>), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let ids = cluster.ids();
    let mut node = 0usize;
    loop {
        if Instant::now() >= deadline {
            return Err("index check: no node answered within 60 s".into());
        }
        node += 1;
        let url = cluster.pg_url(ids[node % ids.len()]);
        let Some(c) = Conn::open(&url, &[INDEX_CHECK], Duration::from_secs(5)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(rows) = call(opts.op_timeout * 4, c.client.query(c.statement(0), &[])).await else { continue };
        let (mut summary, mut problems) = (Vec::new(), Vec::new());
        for r in &rows {
            let (table, index): (String, String) = (r.get(0), r.get(1));
            let [rows, entries, missing, orphaned, duplicates]: [i64; 5] = std::array::from_fn(|i| r.get(i + 2));
            summary.push(format!("{table}.{index}: {rows} rows, {entries} entries"));
            if missing + orphaned + duplicates > 0 {
                problems.push(format!(
                    "index {index} of {table}: {rows} rows, {entries} entries, {missing} missing, {orphaned} \
                     orphaned, {duplicates} duplicate values"
                ));
            }
        }
        if rows.len() < 3 {
            problems.push(format!("index check: {} indexes checked, 3 expected", rows.len()));
        }
        return Ok((summary, problems));
    }
}

/// Waits until every replica of every shard reports the same applied index and data digest.
async fn converged(cluster: &Cluster, opts: &Options) -> Result<(), String> {
    let replicas = cluster.ids().len().min(replication_factor(&opts.node_args));
    let mut last = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        // Every node at once, so replicas are caught as close together as possible.
        let ids = cluster.responsive();
        let statuses = futures::future::join_all(ids.iter().map(|id| cluster.status_of(*id, true))).await;
        let mut reported = Vec::new();
        for (id, status) in ids.into_iter().zip(statuses) {
            if let Some(status) = status {
                reported.extend(status.shards.iter().filter(|s| s.hosted).map(|s| Replica {
                    node: id,
                    shard: s.shard,
                    applied: s.applied,
                    digest: s.digest,
                }));
            }
        }
        // The meta group takes a liveness heartbeat from every node every second.
        last = checks::divergent(&reported, replicas, &[META_SHARD]);
        if last.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("replicas did not converge within 60 s: {}", last.join("; ")))
}

/// The replication factor the nodes run with: `--replication-factor` among the node
/// arguments, else the nodes' default.
fn replication_factor(node_args: &[String]) -> usize {
    let mut args = node_args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--replication-factor") {
            Some("") => args.next().map(String::as_str),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        if let Some(n) = value.and_then(|v| v.parse().ok()) {
            return n;
        }
    }
    raftable_cluster::RaftSettings::default().replication_factor
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}
