//! Cluster integration tests: real `raftable` processes on loopback (ports from port 0, a temp
//! dir per test), driven over gRPC, with crashes by SIGKILL. Every wait is a condition polled
//! until a deadline, never a fixed sleep.

mod harness;
mod limits;
mod mvcc;
mod replication;
mod scale;
mod sql;
mod tso;
mod txn;
