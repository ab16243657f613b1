//! Generated tonic/prost code for `proto/raftable.proto`: the Raft, Shard and Meta services that
//! nodes speak to each other. `cluster` implements the servers and holds the clients.

#![allow(clippy::all)]

tonic::include_proto!("raftable");
