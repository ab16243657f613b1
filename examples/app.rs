//! An application using raftable through tokio-postgres, the way a service would: a table of
//! orders, prepared statements, parameters, point reads, a range scan, an update and an
//! aggregate, with retries on the retryable SQLSTATE 40001.
//!
//! Run against a running cluster (e.g. `cargo run --release -- demo` in another terminal):
//!     cargo run --example app -- "postgres://app@127.0.0.1:5433/app"

use std::time::Duration;

use tokio_postgres::{error::SqlState, NoTls};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "postgres://app@127.0.0.1:5433/app".into());
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection error: {e}");
        }
    });

    client.batch_execute("DROP TABLE IF EXISTS orders").await?;
    client
        .batch_execute(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, amount NUMERIC(10,2), \
             placed TIMESTAMP, shipped BOOLEAN DEFAULT false) WITH (shards = 4)",
        )
        .await?;

    let insert = client
        .prepare("INSERT INTO orders (id, customer, amount, placed) VALUES ($1, $2, $3::text::numeric, now())")
        .await?;
    for id in 1..=100i64 {
        let customer = format!("customer-{}", id % 7);
        let amount = format!("{}.{:02}", id * 3, id % 100);
        retry(|| async { client.execute(&insert, &[&id, &customer, &amount]).await }).await?;
    }
    println!("inserted 100 orders");

    let by_id = client.prepare("SELECT customer, amount::text FROM orders WHERE id = $1").await?;
    let row = client.query_one(&by_id, &[&42i64]).await?;
    println!("order 42: {} {}", row.get::<_, String>(0), row.get::<_, String>(1));

    let range = client.query("SELECT id FROM orders WHERE id BETWEEN $1 AND $2 ORDER BY id", &[&10i64, &15i64]).await?;
    println!("orders 10..=15: {:?}", range.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>());

    let shipped =
        retry(|| async { client.execute("UPDATE orders SET shipped = true WHERE id <= $1", &[&20i64]).await }).await?;
    println!("shipped {shipped} orders");

    for row in client
        .query("SELECT customer, count(*), sum(amount)::text FROM orders GROUP BY customer ORDER BY customer", &[])
        .await?
    {
        println!("{}: {} orders, {} total", row.get::<_, String>(0), row.get::<_, i64>(1), row.get::<_, String>(2));
    }
    client.batch_execute("DROP TABLE orders").await?;
    Ok(())
}

/// Retries a statement that failed with 40001 (the cluster was electing a leader; the statement
/// certainly did not apply).
async fn retry<T, F, Fut>(mut f: F) -> Result<T, tokio_postgres::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Err(e) if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) && attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            other => return other,
        }
    }
}
