//! Query cancellation: the node-wide registry of connections by (pid, secret key), and the
//! per-query token that a running statement watches.
//!
//! At startup each pgwire connection registers here and sends its pid and secret key to the
//! client (BackendKeyData). A client cancels by opening a new connection to the same node with
//! a CancelRequest; pgwire hands it to [`Cancels`], which bumps the target connection's cancel
//! counter. A statement takes a [`CancelToken`] when it starts (a snapshot of that counter) and
//! fails with 57014 when the counter moves while it is planning or streaming rows. A cancel
//! that arrives while the connection is idle therefore affects nothing, as in PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{ClientInfo, PidSecretKeyGenerator, RandomPidSecretKeyGenerator};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::sync::watch;

/// Each connection's cancel counter, by (pid, secret key bytes).
type Counters = HashMap<(i32, Bytes), Arc<watch::Sender<u64>>>;

/// The connections of this node that can be cancelled.
#[derive(Default)]
pub(super) struct Cancels {
    connections: Mutex<Counters>,
    keys: RandomPidSecretKeyGenerator,
}

impl Cancels {
    /// Gives a new connection its pid and secret key and registers its cancel counter under
    /// them until the returned [`Registration`] drops.
    pub(super) fn register(
        self: &Arc<Self>,
        client: &dyn ClientInfo,
        counter: Arc<watch::Sender<u64>>,
    ) -> (i32, SecretKey, Registration) {
        let (pid, secret) = self.keys.generate(client);
        let key = (pid, secret.to_bytes());
        self.lock().insert(key.clone(), counter);
        (pid, secret, Registration { cancels: self.clone(), key })
    }

    /// Cancels the statement running on the connection with this pid and secret key, if any.
    fn cancel(&self, pid: i32, secret: &SecretKey) {
        let counter = self.lock().get(&(pid, secret.to_bytes())).cloned();
        match counter {
            Some(counter) => counter.send_modify(|n| *n += 1),
            None => tracing::debug!(pid, "cancel request for an unknown connection"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.cancel(request.pid, &request.secret_key);
    }
}

/// A connection's entry in [`Cancels`]; removes it when dropped (connection closed).
pub(super) struct Registration {
    cancels: Arc<Cancels>,
    key: (i32, Bytes),
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cancels.lock().remove(&self.key);
    }
}

/// Watches one connection's cancel counter from the moment a statement started.
pub(super) struct CancelToken {
    seen: watch::Receiver<u64>,
}

impl CancelToken {
    /// A token that fires on cancel requests made after this call.
    pub(super) fn new(counter: &watch::Sender<u64>) -> Self {
        CancelToken { seen: counter.subscribe() }
    }

    /// Resolves when a cancel request arrives; never if the connection goes away first.
    pub(super) async fn cancelled(&mut self) {
        if self.seen.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn token_fires_only_for_cancels_after_it_started() {
        let counter = Arc::new(watch::channel(0u64).0);
        let cancels = Arc::new(Cancels::default());
        let key = (7, SecretKey::I32(42));
        cancels.lock().insert((key.0, key.1.to_bytes()), counter.clone());

        // A cancel while idle does not affect a later statement.
        cancels.cancel(key.0, &key.1);
        let mut token = CancelToken::new(&counter);
        let idle = tokio::time::timeout(Duration::from_millis(20), token.cancelled()).await;
        assert!(idle.is_err());

        cancels.cancel(key.0, &key.1);
        tokio::time::timeout(Duration::from_secs(1), token.cancelled()).await.expect("cancelled");

        // A wrong secret cancels nothing.
        let mut token = CancelToken::new(&counter);
        cancels.cancel(key.0, &SecretKey::I32(43));
        assert!(tokio::time::timeout(Duration::from_millis(20), token.cancelled()).await.is_err());
    }

    #[test]
    fn registration_drop_unregisters() {
        let cancels = Arc::new(Cancels::default());
        let registration = Registration { cancels: cancels.clone(), key: (1, Bytes::from_static(b"abcd")) };
        cancels.lock().insert(registration.key.clone(), Arc::new(watch::channel(0u64).0));
        drop(registration);
        assert!(cancels.lock().is_empty());
    }
}
