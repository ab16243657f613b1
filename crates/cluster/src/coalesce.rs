//! Coalesced forwarded reads. [`Router::call`](crate::Router) sends a read for a shard led
//! elsewhere to the leader's node; under load, many such reads go to the same few peers at
//! once, and each gRPC call costs more CPU (HTTP/2 framing, task hops, syscalls on both ends)
//! than serving the read. So reads for one peer share calls: when no call to the peer is in
//! flight a read goes at once, else it waits, and the next call takes every read waiting
//! (`Shard.CallMany`, answered in order). Only point reads (`ShardRead::Get`) take this path:
//! a batch is answered when its slowest member is, so writes (a replicated commit) and scans
//! (pages of rows, which gain nothing from sharing a call) go on their own calls. Measured on
//! the 3-node benchmark (docs/history/2026-11-27-benchmarks.md): point-select +16% with two calls in flight per
//! peer, +23% more with one; with scan pages coalesced too, scan-agg lost 25%.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use raftable_common::{Error, NodeId, Result};
use raftable_proto::shard_client::ShardClient as GrpcShardClient;
use raftable_proto::{ShardBatch, ShardRequest};
use tokio::sync::oneshot;

use crate::error::{from_status, shard_reply};
use crate::network::{Peers, MAX_MESSAGE};
use crate::node::OpResult;

/// Calls in flight to one peer before reads start to wait and coalesce (1 measured faster than
/// 2: bigger batches, fewer calls).
const IN_FLIGHT: usize = 1;

type Waiter = (ShardRequest, oneshot::Sender<Result<OpResult>>);

/// The per-peer queues of one node's forwarded reads.
pub(crate) struct Coalescer {
    peers: Arc<Peers>,
    queues: Mutex<HashMap<NodeId, Queue>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiter>,
    in_flight: usize,
}

impl Coalescer {
    pub(crate) fn new(peers: Arc<Peers>) -> Arc<Self> {
        Arc::new(Self { peers, queues: Mutex::default() })
    }

    /// Sends `request` (a point read) to node `id` and returns its answer. The caller bounds the
    /// wait; a read it stops waiting for is still sent or answered, and dropped.
    pub(crate) async fn read(self: &Arc<Self>, id: NodeId, request: ShardRequest) -> Result<OpResult> {
        let peers = self.peers.clone();
        self.read_with(id, request, move |requests| {
            let peers = peers.clone();
            async move { call(&peers, id, requests).await }
        })
        .await
    }

    /// [`Coalescer::read`] with the call itself given as `call` (a test can hold it open).
    async fn read_with<F, Fut>(self: &Arc<Self>, id: NodeId, request: ShardRequest, call: F) -> Result<OpResult>
    where
        F: Fn(Vec<ShardRequest>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<Result<OpResult>>>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut queues = self.queues.lock().expect("coalescer lock");
            let queue = queues.entry(id).or_default();
            queue.waiting.push((request, tx));
            queue.in_flight < IN_FLIGHT && {
                queue.in_flight += 1;
                true
            }
        };
        if start {
            tokio::spawn(self.clone().send(id, call));
        }
        rx.await.map_err(|_| Error::Retry("forwarded read abandoned".into()))?
    }

    /// One in-flight slot for `id`: sends what waits, one call at a time, until nothing does.
    async fn send<F, Fut>(self: Arc<Self>, id: NodeId, call: F)
    where
        F: Fn(Vec<ShardRequest>) -> Fut,
        Fut: Future<Output = Result<Vec<Result<OpResult>>>>,
    {
        loop {
            let batch = {
                let mut queues = self.queues.lock().expect("coalescer lock");
                let queue = queues.entry(id).or_default();
                if queue.waiting.is_empty() {
                    queue.in_flight -= 1;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            let (requests, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            match call(requests).await {
                Ok(results) => {
                    for (waiter, result) in waiters.into_iter().zip(results) {
                        let _ = waiter.send(result);
                    }
                }
                Err(e) => {
                    for waiter in waiters {
                        let _ = waiter.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// One call carrying `requests` to node `id`: `Call` for one, `CallMany` for several.
async fn call(peers: &Peers, id: NodeId, mut requests: Vec<ShardRequest>) -> Result<Vec<Result<OpResult>>> {
    let channel = peers.channel_to(id).await?;
    let mut client = GrpcShardClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let replies = if requests.len() == 1 {
        let request = requests.pop().expect("one request");
        vec![client.call(request).await.map_err(|s| from_status(&s, false))?.into_inner()]
    } else {
        let sent = requests.len();
        let replies =
            client.call_many(ShardBatch { requests }).await.map_err(|s| from_status(&s, false))?.into_inner().replies;
        if replies.len() != sent {
            return Err(Error::Retry(format!("node {id} answered {} of {sent} reads", replies.len())));
        }
        replies
    };
    Ok(replies.into_iter().map(|reply| shard_reply(Ok(reply), false)).collect())
}

#[cfg(test)]
mod tests {
    use raftable_common::Row;

    use super::*;

    /// Answers each request with one row whose key is the request's shard id, so a read can
    /// tell its own answer; records the size of every call.
    fn echo(
        sizes: Arc<Mutex<Vec<usize>>>,
        gate: Arc<tokio::sync::Semaphore>,
    ) -> impl Fn(Vec<ShardRequest>) -> futures::future::BoxFuture<'static, Result<Vec<Result<OpResult>>>>
           + Clone
           + Send
           + 'static {
        move |requests| {
            let (sizes, gate) = (sizes.clone(), gate.clone());
            Box::pin(async move {
                sizes.lock().unwrap().push(requests.len());
                gate.acquire().await.expect("gate open").forget();
                Ok(requests
                    .iter()
                    .map(|r| {
                        Ok(OpResult::Rows(vec![Row {
                            key: r.shard.to_be_bytes().to_vec(),
                            value: Vec::new(),
                            version: 0,
                        }]))
                    })
                    .collect())
            })
        }
    }

    /// While the call slots are taken, reads wait and go together in the next call, and every
    /// read gets its own answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_waiting_for_a_slot_share_one_call() {
        let coalescer = Coalescer::new(Arc::default());
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let call = echo(sizes.clone(), gate.clone());
        let read = |shard: u64| {
            let (coalescer, call) = (coalescer.clone(), call.clone());
            tokio::spawn(async move {
                let request = ShardRequest { shard, forward: false, payload: Vec::new() };
                coalescer.read_with(7, request, call).await
            })
        };
        let mut reads = Vec::new();
        // Reads, one after the other, take every slot and stay in flight until the gate opens.
        for shard in 0..IN_FLIGHT as u64 {
            reads.push((shard, read(shard)));
            while sizes.lock().unwrap().len() < shard as usize + 1 {
                tokio::task::yield_now().await;
            }
        }
        // Ten more arrive and wait.
        let first = IN_FLIGHT as u64;
        for shard in first..first + 10 {
            reads.push((shard, read(shard)));
        }
        while coalescer.queues.lock().unwrap().get(&7).map(|q| q.waiting.len()) != Some(10) {
            tokio::task::yield_now().await;
        }
        gate.add_permits(IN_FLIGHT + 1);
        for (shard, r) in reads {
            match r.await.unwrap().unwrap() {
                OpResult::Rows(rows) => assert_eq!(rows[0].key, shard.to_be_bytes().to_vec()),
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut expected = vec![1; IN_FLIGHT];
        expected.push(10);
        assert_eq!(*sizes.lock().unwrap(), expected, "single calls, then one call for the ten waiting");
        assert_eq!(coalescer.queues.lock().unwrap()[&7].in_flight, 0, "slots released");
    }
}
