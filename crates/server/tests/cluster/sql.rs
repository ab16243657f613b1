//! SQL through the real pgwire port of node processes: the client scenario with
//! tokio-postgres (extended protocol, binary results), lost-update freedom under concurrent
//! increments, and the sqllogictest files of `sql-tests/` on a 1-node and a 3-node cluster.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use raftable_sql_tests::{run_file, slt_files, Target};
use tokio_postgres::types::Type;

use crate::harness::{wait_for, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_scenario_on_every_node() {
    let cluster = Cluster::start(3, &[]).await;
    let a = cluster.sql(1).await;
    a.batch_execute(
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner TEXT NOT NULL, balance NUMERIC(12,2), \
                     opened DATE, active BOOLEAN DEFAULT true) WITH (shards = 3)",
    )
    .await
    .unwrap();
    // Insert with parameters through node 2.
    let b = cluster.sql(2).await;
    let insert = b
        .prepare("INSERT INTO accounts (id, owner, balance, opened) VALUES ($1, $2, $3::text::numeric, $4)")
        .await
        .unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    for id in 1..=50i64 {
        let balance = format!("{}.50", id * 10);
        let n = b.execute(&insert, &[&id, &format!("owner{id}"), &balance, &day]).await.unwrap();
        assert_eq!(n, 1);
    }
    // Point and range selects through node 3, binary results.
    let c = cluster.sql(3).await;
    let row = c.query_one("SELECT owner, active, opened FROM accounts WHERE id = $1", &[&7i64]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "owner7");
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, chrono::NaiveDate>(2), day);
    let rows =
        c.query("SELECT id FROM accounts WHERE id BETWEEN $1 AND $2 ORDER BY id", &[&10i64, &14i64]).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(), vec![10, 11, 12, 13, 14]);
    // One prepared query (planned and optimized once), executed with different values.
    let range = c.prepare("SELECT count(*), min(id) FROM accounts WHERE id >= $1 AND id < $2").await.unwrap();
    for (lo, hi, count) in [(1i64, 51i64, 50i64), (20, 25, 5), (49, 100, 2)] {
        let row = c.query_one(&range, &[&lo, &hi]).await.unwrap();
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (count, lo));
    }
    // Parameters without a type at prepare (a LIMIT; one compared with a column and tested
    // with IS NULL) are bound and optimized at each execution, and work.
    let limited = c.prepare_typed("SELECT id FROM accounts ORDER BY id LIMIT $1", &[Type::INT8]).await.unwrap();
    assert_eq!(c.query(&limited, &[&3i64]).await.unwrap().len(), 3);
    // Left untyped by the client, a LIMIT / OFFSET parameter is bigint, as in PostgreSQL.
    let limited = c.prepare("SELECT id FROM accounts ORDER BY id LIMIT $1 OFFSET $2").await.unwrap();
    assert_eq!(limited.params(), &[Type::INT8, Type::INT8]);
    let ids: Vec<i64> = c.query(&limited, &[&2i64, &4i64]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [5, 6]);
    // Result columns are named and typed as PostgreSQL does: a literal that fits is int4.
    let described =
        c.prepare("SELECT 1, 1 AS one, count(*), owner::text, 3000000000 FROM accounts GROUP BY owner").await.unwrap();
    let columns: Vec<(&str, &Type)> = described.columns().iter().map(|c| (c.name(), c.type_())).collect();
    assert_eq!(
        columns,
        [
            ("?column?", &Type::INT4),
            ("one", &Type::INT4),
            ("count", &Type::INT8),
            ("owner", &Type::TEXT),
            ("?column?", &Type::INT8)
        ]
    );
    let row = c.query_one("SELECT 41 + 1, 7 AS seven", &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i32>("seven")), (42, 7));
    let either =
        c.prepare_typed("SELECT count(*) FROM accounts WHERE id = $1 OR $1 IS NULL", &[Type::INT4]).await.unwrap();
    assert_eq!(c.query_one(&either, &[&7i32]).await.unwrap().get::<_, i64>(0), 1);
    assert_eq!(c.query_one(&either, &[&None::<i32>]).await.unwrap().get::<_, i64>(0), 50);
    // A prepared now() is evaluated at each execution, not when the statement was planned.
    let now = c.prepare("SELECT CAST(now() AS TEXT)").await.unwrap();
    let first: String = c.query_one(&now, &[]).await.unwrap().get(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while c.query_one(&now, &[]).await.unwrap().get::<_, String>(0) == first {
        assert!(std::time::Instant::now() < deadline, "prepared now() stays at {first}");
    }
    // The primary key in pg_catalog, as drivers' metadata queries read it.
    let key = c
        .query_one(
            "SELECT c2.relname, i.indisprimary, i.indkey, pg_catalog.pg_get_indexdef(i.indexrelid, 0, true), \
             pg_catalog.pg_get_constraintdef(con.oid, true), con.conkey, c.relhasindex \
             FROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i \
             LEFT JOIN pg_catalog.pg_constraint con ON (conrelid = i.indrelid AND conindid = i.indexrelid) \
             WHERE c.relname = 'accounts' AND c.oid = i.indrelid AND i.indexrelid = c2.oid",
            &[],
        )
        .await
        .unwrap();
    // indkey and conkey are arrays, as in PostgreSQL (int2vector and int2[]).
    assert_eq!(
        (row_text(&key, 0), key.get::<_, bool>(1), key.get::<_, Vec<i16>>(2), row_text(&key, 3)),
        (
            "accounts_pkey".into(),
            true,
            vec![1],
            "CREATE UNIQUE INDEX accounts_pkey ON public.accounts USING btree (id)".into()
        )
    );
    assert_eq!(
        (row_text(&key, 4), key.get::<_, Vec<i16>>(5), key.get::<_, bool>(6)),
        ("PRIMARY KEY (id)".into(), vec![1], true)
    );
    // RowDescription names a table column's table OID and column number, the same in every
    // session (pgJDBC looks nullability up by them), and pg_attribute answers by them.
    let point = a.prepare("SELECT owner, id AS key FROM accounts WHERE id = $1").await.unwrap();
    let general = c.prepare("SELECT x.id, count(*) FROM accounts x GROUP BY x.id").await.unwrap();
    let origin = |c: &tokio_postgres::Column| (c.table_oid(), c.column_id());
    let oid = point.columns()[0].table_oid().expect("a table OID");
    assert_eq!(point.columns().iter().map(origin).collect::<Vec<_>>(), [(Some(oid), Some(2)), (Some(oid), Some(1))]);
    assert_eq!(general.columns().iter().map(origin).collect::<Vec<_>>(), [(Some(oid), Some(1)), (None, None)]);
    let aliased = c.prepare("SELECT id AS key FROM accounts WHERE id > $1 ORDER BY id LIMIT 3").await.unwrap();
    assert_eq!(origin(&aliased.columns()[0]), (Some(oid), Some(1)));
    // A subquery named like the table is not the table.
    let shadow = c.prepare("SELECT accounts.id FROM (SELECT balance AS id FROM accounts) accounts").await.unwrap();
    assert_eq!(origin(&shadow.columns()[0]), (None, None));
    // A UNION is described with its coerced types (binary results of the numeric branch were
    // read as int8 when the left branch's type was described).
    let union = c.prepare("SELECT 1 AS n UNION ALL SELECT 2.5 ORDER BY n").await.unwrap();
    assert_eq!(union.columns()[0].type_(), &Type::NUMERIC);
    let text: Vec<String> = c
        .simple_query("SELECT 1 AS n UNION ALL SELECT 2.5")
        .await
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(text.len(), 2);
    // What runs may differ from what was planned: an untyped parameter in the select list.
    let echo = c.prepare("SELECT $1 AS echo").await.unwrap();
    assert_eq!(c.query_one(&echo, &[&"hi"]).await.unwrap().get::<_, String>(0), "hi");
    // The definitions come from the table itself, in a session that has not read the catalog.
    let fresh = cluster.sql(1).await;
    let defs = fresh
        .query_one(
            "SELECT pg_catalog.pg_get_indexdef($1::int4 + 536870912, 1, false), \
             pg_catalog.pg_get_constraintdef($1::int4 + 1073741824)",
            &[&(oid as i32)],
        )
        .await
        .unwrap();
    assert_eq!((row_text(&defs, 0), row_text(&defs, 1)), ("id".into(), "PRIMARY KEY (id)".into()));
    let attribute = b
        .query_one(
            "SELECT c.relname, a.attname, a.attnotnull FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_attribute a ON (c.oid = a.attrelid) \
             JOIN (SELECT $1::bigint AS oid, CAST($2 AS SMALLINT) AS attnum) vals \
             ON (c.oid = vals.oid AND a.attnum = vals.attnum)",
            &[&i64::from(oid), &1i16],
        )
        .await
        .unwrap();
    assert_eq!(
        (row_text(&attribute, 0), row_text(&attribute, 1), attribute.get::<_, bool>(2)),
        ("accounts".into(), "id".into(), true)
    );
    // Update and delete, with their counts.
    assert_eq!(a.execute("UPDATE accounts SET owner = $1 WHERE id <= $2", &[&"renamed", &5i64]).await.unwrap(), 5);
    assert_eq!(c.execute("DELETE FROM accounts WHERE id > $1", &[&40i64]).await.unwrap(), 10);
    // A duplicate key is 23505 and the connection stays usable.
    let err = b.execute(&insert, &[&1i64, &"dup", &"1.00", &day]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23505");
    let row = b
        .query_one("SELECT count(*), count(*) FILTER (WHERE owner = 'renamed'), max(id) FROM accounts", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2)), (40, 5, 40));
    // Cluster state is visible in SQL.
    let nodes = a.query("SELECT node_id FROM raftable.nodes WHERE alive ORDER BY node_id", &[]).await.unwrap();
    assert_eq!(nodes.len(), 3);
    let shards = a.query("SELECT shard_id FROM raftable.shards WHERE table_name = 'accounts'", &[]).await.unwrap();
    assert_eq!(shards.len(), 3);
    // Multi-row inserts of parameters (the fast path of prepared INSERTs): a NULL, a default,
    // the count, ON CONFLICT DO NOTHING counting only new rows, a duplicate failing the whole
    // statement with 23505, a NOT NULL violation with 23502.
    let multi = b.prepare("INSERT INTO accounts (id, owner, opened) VALUES ($1, $2, $3), ($4, $5, $6)").await.unwrap();
    let (none, some) = (None::<chrono::NaiveDate>, Some(day));
    assert_eq!(b.execute(&multi, &[&101i64, &"m1", &some, &102i64, &"m2", &none]).await.unwrap(), 2);
    let err = b.execute(&multi, &[&103i64, &"m3", &some, &101i64, &"m1", &some]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23505");
    let err = b.execute(&multi, &[&104i64, &None::<String>, &some, &105i64, &"m5", &some]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23502");
    let ignore = b
        .prepare("INSERT INTO accounts (id, owner, opened) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT DO NOTHING")
        .await
        .unwrap();
    assert_eq!(b.execute(&ignore, &[&102i64, &"again", &some, &106i64, &"m6", &some]).await.unwrap(), 1);
    let rows = c.query("SELECT id, owner, opened, active FROM accounts WHERE id > 100 ORDER BY id", &[]).await.unwrap();
    let got: Vec<(i64, String, Option<chrono::NaiveDate>, bool)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    let want = [(101, "m1", some), (102, "m2", none), (106, "m6", some)];
    assert_eq!(got, want.map(|(i, o, d)| (i, o.to_string(), d, true)).to_vec());
    a.batch_execute("DROP TABLE accounts").await.unwrap();
    let err = c.query("SELECT * FROM accounts", &[]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42P01");
}

/// Eight clients incrementing one row 1000 times each, through different nodes: every
/// acknowledged increment is kept (compare-and-put plus re-evaluation on a lost race), none is
/// applied twice. An increment whose outcome is unknown (08007: a leader lost its leadership
/// with the write proposed, which a starved CI machine can cause) may or may not count; the
/// client then reconnects, as an application would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_lose_nothing() {
    let cluster = Cluster::start(3, &[]).await;
    let setup = cluster.sql(1).await;
    setup
        .batch_execute("CREATE TABLE counter (k INT PRIMARY KEY, n BIGINT NOT NULL); INSERT INTO counter VALUES (1, 0)")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for client in 0..8u64 {
        let node = client % 3 + 1;
        let mut conn = cluster.sql(node).await;
        let url = format!("postgres://raftable@{}/raftable", cluster.proc(node).pg);
        tasks.push(tokio::spawn(async move {
            let (mut acknowledged, mut unknown) = (0i64, 0i64);
            let sql = "UPDATE counter SET n = n + 1 WHERE k = 1";
            let mut stmt = conn.prepare(sql).await.unwrap();
            for _ in 0..1000 {
                match conn.execute(&stmt, &[]).await {
                    Ok(rows) => {
                        assert_eq!(rows, 1);
                        acknowledged += 1;
                    }
                    Err(e) if e.code().map(|c| c.code()) == Some("08007") => {
                        unknown += 1;
                        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                        tokio::spawn(connection);
                        conn = client;
                        stmt = conn.prepare(sql).await.unwrap();
                    }
                    Err(e) => panic!("increment failed: {e:?}"),
                }
            }
            (acknowledged, unknown)
        }));
    }
    let (mut acknowledged, mut unknown) = (0, 0);
    for t in tasks {
        let (a, u) = t.await.unwrap();
        (acknowledged, unknown) = (acknowledged + a, unknown + u);
    }
    let n: i64 = setup.query_one("SELECT n FROM counter WHERE k = 1", &[]).await.unwrap().get(0);
    assert!(
        acknowledged <= n && n <= acknowledged + unknown,
        "{acknowledged} acknowledged, {unknown} unknown, final {n}"
    );
    assert_eq!(acknowledged + unknown, 8000);
}

fn slt_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../sql-tests/slt")
}

/// The shard ids `raftable.shards` lists.
async fn shard_ids(client: &tokio_postgres::Client) -> BTreeSet<u64> {
    let rows = client.query("SELECT shard_id FROM raftable.shards", &[]).await.unwrap();
    rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect()
}

/// DROP TABLE gives back its and its index's shards: they leave the shard map and every
/// replica is deleted, also the one of a node that was down during the drop, once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_tables_release_their_shards_on_every_node() {
    let mut cluster = Cluster::start(3, &[]).await;
    let a = cluster.sql(1).await;
    let before = shard_ids(&a).await;
    a.batch_execute(
        "CREATE TABLE gone (k INT PRIMARY KEY, v INT) WITH (shards = 2); CREATE INDEX gone_v ON gone (v); \
         INSERT INTO gone SELECT g, g * 2 FROM generate_series(1, 50) g",
    )
    .await
    .unwrap();
    let dropped: BTreeSet<u64> = shard_ids(&a).await.difference(&before).copied().collect();
    assert!(dropped.len() >= 3, "two table shards and the index's: {dropped:?}");
    let everywhere = Duration::from_secs(30);
    wait_for("node 3 hosts every shard of the table", everywhere, || async {
        let hosted = cluster.replicas().await;
        dropped.iter().all(|s| hosted.contains_key(&(3, *s))).then_some(())
    })
    .await;

    cluster.kill(3).await;
    a.batch_execute("DROP TABLE gone").await.unwrap();
    for id in [1, 2] {
        let what = format!("node {id} has no trace of the dropped shards");
        wait_for(&what, everywhere, || no_trace(&cluster, &dropped, id)).await;
    }
    assert!(shard_ids(&a).await.is_disjoint(&dropped));

    cluster.restart(3).await;
    let what = "node 3 deletes its replicas of the dropped shards";
    wait_for(what, everywhere, || no_trace(&cluster, &dropped, 3)).await;
    // The name is free again, and the new table starts empty.
    let c = cluster.sql(3).await;
    c.batch_execute("CREATE TABLE gone (k INT PRIMARY KEY, v INT)").await.unwrap();
    let row = c.query_one("SELECT count(*) FROM gone", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
}

/// Some when node `id` neither hosts nor maps any of `shards`.
async fn no_trace(cluster: &Cluster, shards: &BTreeSet<u64>, id: u64) -> Option<()> {
    let status = cluster.status(id).await.ok()?;
    (!status.shards.iter().any(|s| shards.contains(&s.shard))).then_some(())
}

async fn run_all(nodes: u64) {
    let cluster = Cluster::start(nodes, &[]).await;
    let files = slt_files(&slt_dir());
    assert!(!files.is_empty(), "no .slt files found in {}", slt_dir().display());
    let url = format!("postgres://raftable@{}/raftable", cluster.proc(nodes).pg);
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = run_file(&url, file, Target::Raftable).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{} of {} files failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqllogictest_one_node() {
    run_all(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqllogictest_three_nodes() {
    run_all(3).await;
}

/// A Python interpreter with psycopg 3: `RAFTABLE_TEST_PYTHON`, else a virtualenv under
/// `~/.cache/raftable-venv`, created (with `pip install psycopg[binary]`) if missing.
fn python_with_psycopg() -> PathBuf {
    if let Ok(p) = std::env::var("RAFTABLE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").expect("HOME");
    let venv = PathBuf::from(home).join(".cache/raftable-venv");
    let python = venv.join("bin/python");
    let has_psycopg = |p: &PathBuf| {
        std::process::Command::new(p).args(["-c", "import psycopg"]).status().map(|s| s.success()).unwrap_or(false)
    };
    if !has_psycopg(&python) {
        let ok = std::process::Command::new("python3").arg("-m").arg("venv").arg(&venv).status().unwrap().success();
        assert!(ok, "python3 -m venv failed");
        let pip = venv.join("bin/pip");
        let ok = std::process::Command::new(pip).args(["install", "-q", "psycopg[binary]"]).status().unwrap().success();
        assert!(ok, "pip install psycopg failed");
    }
    python
}

/// The Python example (psycopg 3, text and binary cursors) runs its whole scenario.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_scenario() {
    let python = python_with_psycopg();
    let cluster = Cluster::start(3, &[]).await;
    let pg = &cluster.proc(2).pg;
    let (host, port) = pg.rsplit_once(':').unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/app.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(format!("host={host} port={port} user=app dbname=app"))
        .output()
        .await
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("ok"), "examples/app.py failed:\n{text}");
}

/// psql (simple query protocol) runs the scenario, including `\dt` and `\d` on the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_scenario() {
    let cluster = Cluster::start(1, &[]).await;
    let (host, port) = cluster.proc(1).pg.rsplit_once(':').map(|(h, p)| (h.to_string(), p.to_string())).unwrap();
    let script = "CREATE TABLE psql_t (id BIGINT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE PRECISION);\n\
                  INSERT INTO psql_t VALUES (1, 'one', 1.5), (2, 'two', 2.5), (3, 'three', NULL);\n\
                  SELECT name FROM psql_t WHERE id = 2;\n\
                  SELECT count(*) AS n FROM psql_t WHERE id BETWEEN 1 AND 3;\n\
                  UPDATE psql_t SET score = 9 WHERE id = 3;\n\
                  DELETE FROM psql_t WHERE id = 1;\n\
                  SELECT sum(score) AS total FROM psql_t;\n\
                  \\dt\n\
                  \\d psql_t\n\
                  DROP TABLE psql_t;\n\
                  CREATE SCHEMA psql_s;\n\
                  CREATE TABLE psql_s.parent (id INT PRIMARY KEY);\n\
                  CREATE TABLE psql_s.child (id INT PRIMARY KEY, p INT REFERENCES psql_s.parent (id) ON DELETE CASCADE);\n\
                  \\dn\n\
                  \\d psql_s.child\n\
                  \\d psql_s.parent\n";
    let mut child = tokio::process::Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", &host, "-p", &port, "-U", "app", "-d", "app", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql is installed");
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, script.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "psql failed:\n{text}");
    // `\d` lists the primary key as PostgreSQL does (pg_class, pg_index, pg_get_indexdef).
    let pkey = "\"psql_t_pkey\" PRIMARY KEY, btree (id)";
    for expected in ["INSERT 0 3", "two", "UPDATE 1", "DELETE 1", "11.5", "psql_t", "bigint", pkey, "DROP TABLE"] {
        assert!(text.contains(expected), "psql output lacks {expected:?}:\n{text}");
    }
    // A schema's tables, and foreign keys listed on both sides as PostgreSQL 15's psql shows
    // them (psql asks only when pg_class.relhastriggers is true, and then reads pg_trigger).
    let key = "FOREIGN KEY (p) REFERENCES psql_s.parent(id) ON DELETE CASCADE";
    for expected in [
        "Table \"psql_s.child\"".to_string(),
        format!("Foreign-key constraints:\n    \"child_p_fkey\" {key}"),
        format!("Referenced by:\n    TABLE \"psql_s.child\" CONSTRAINT \"child_p_fkey\" {key}"),
    ] {
        assert!(text.contains(&expected), "psql output lacks {expected:?}:\n{text}");
    }
}

fn row_text(row: &tokio_postgres::Row, i: usize) -> String {
    row.get(i)
}
