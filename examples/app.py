#!/usr/bin/env python3
"""An application using raftable through psycopg 3 (binary protocol where it helps), the way a
service would: create, insert with parameters, point and range select, update, delete,
aggregate, drop.

Run against a running cluster (e.g. `cargo run --release -- demo` in another terminal):
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install 'psycopg[binary]'
    /tmp/venv/bin/python examples/app.py "host=127.0.0.1 port=5433 user=app dbname=app"
"""
import sys

import psycopg

dsn = sys.argv[1] if len(sys.argv) > 1 else "host=127.0.0.1 port=5433 user=app dbname=app"

with psycopg.connect(dsn, autocommit=True) as conn:
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS py_items")
    cur.execute("CREATE TABLE py_items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price DOUBLE PRECISION)")
    for i in range(1, 21):
        cur.execute("INSERT INTO py_items (id, name, price) VALUES (%s, %s, %s)", (i, f"item{i}", i * 1.5))
    cur.execute("SELECT name, price FROM py_items WHERE id = %s", (7,))
    assert cur.fetchone() == ("item7", 10.5)
    cur.execute("SELECT id FROM py_items WHERE id >= %s AND id < %s ORDER BY id", (5, 8))
    assert [r[0] for r in cur.fetchall()] == [5, 6, 7]
    cur.execute("UPDATE py_items SET price = price * 2 WHERE id <= %s", (10,))
    assert cur.rowcount == 10
    cur.execute("DELETE FROM py_items WHERE id > %s", (15,))
    assert cur.rowcount == 5
    # Binary results through psycopg 3's binary cursor.
    bcur = conn.cursor(binary=True)
    bcur.execute("SELECT count(*), sum(price) FROM py_items")
    count, total = bcur.fetchone()
    assert count == 15, count
    print(f"{count} items, total price {total}")
    cur.execute("DROP TABLE py_items")
print("ok")
