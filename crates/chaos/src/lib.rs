//! raftable's fault-injection suite, Jepsen style: real node processes on loopback, clients
//! over pgwire recording what they saw, a nemesis injecting real faults, and checkers that
//! decide whether anything acknowledged was lost, reordered or half-applied.
//!
//! Flow of a run ([`runner::run`]): `procs` starts the nodes (`raftable start
//! --fault-injection`); `workload` clients run register / set / counter / bank / list-append operations and
//! record them (`history`); `nemesis` injects one fault at a time (SIGKILL, SIGSTOP, partitions and
//! delays through the nodes' `SetFaults` admin call, slow or failing fsync), heals and waits for
//! recovery, timing leader failovers; after the final heal and reads, `linearizability` and
//! `checks` judge the histories, the final state and the replicas, and `list_append` the
//! list-append transactions (Elle's dependency-graph checker).

pub mod checks;
pub mod history;
pub mod linearizability;
pub mod list_append;
pub mod nemesis;
pub mod procs;
pub mod runner;
pub mod workload;
