//! The PostgreSQL wire-protocol front end: what `psql`, drivers and ORMs connect to.
//!
//! [`serve`] accepts client connections on the node's pg listener and runs each with the
//! `pgwire` crate's protocol loop (no TLS yet). Per connection, the flow is:
//!
//! 1. startup (`startup`): any user, no password; ParameterStatus and BackendKeyData sent.
//! 2. queries: the simple protocol (`simple`) or the extended one (`extended`) hand each
//!    statement to the connection's `sql::Session` (`connection`), which plans it with
//!    DataFusion and reads and writes the shards through the cluster router.
//! 3. results (`results`): Arrow batches are encoded to DataRows as the client reads them;
//!    bound parameters (`params`) are decoded to Arrow scalars on the way in.
//! 4. errors (`sqlstate`): every raftable error maps to a SQLSTATE in one function; an
//!    unknown outcome is FATAL and closes the connection, any other error only fails the
//!    statement. Malformed protocol messages close the connection (pgwire).
//!
//! A CancelRequest (`cancel`) on a new connection to the same node aborts the target
//! connection's running read with 57014.
//!
//! Who owns what:
//! - `connection`: the per-connection state (session, prepared statements, cancel token) and
//!   the statement runner both protocols share.
//! - `simple`, `extended`: the two query protocols' message handling.
//! - `params`: a Bind message's values decoded for the statement (NULL, text or binary).
//! - `results`: RowDescription, DataRows, command tags, notices, transaction status.
//! - `types`: the pg type ↔ Arrow type mapping, type names, the zone of TIMESTAMPTZ, and the
//!   value codecs (text and binary in, NUMERIC out). `params`, `results` and `extended` use it;
//!   it uses none of them.
//! - `sqlstate`: raftable errors as ErrorResponses.
//! - `startup`, `cancel`: connection start and CancelRequest.

mod cancel;
mod connection;
mod extended;
mod params;
mod results;
mod simple;
mod sqlstate;
mod startup;
mod types;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::PgWireServerHandlers;
use raftable_common::Result;
use raftable_sql::Engine;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use cancel::Cancels;
use connection::{Connection, Handler};
use startup::Startup;

/// Serves PostgreSQL clients on `listener` until `shutdown` resolves; then stops accepting and
/// closes the open connections (a statement in flight on one of them ends with it).
pub async fn serve(
    engine: Arc<Engine>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let cancels = Arc::new(Cancels::default());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    tracing::warn!(error = %e, "pg connection task failed");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let handlers = Handlers::new(Arc::new(Connection::new(engine.session())), cancels.clone());
                    connections.spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                            tracing::debug!(%peer, error = %e, "pg connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a pg connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// The handlers of one connection, made when it is accepted.
struct Handlers {
    queries: Arc<Handler>,
    startup: Arc<Startup>,
    cancels: Arc<Cancels>,
}

impl Handlers {
    fn new(conn: Arc<Connection>, cancels: Arc<Cancels>) -> Self {
        let startup = Startup { conn: conn.clone(), cancels: cancels.clone(), registration: Mutex::new(None) };
        Handlers { queries: Arc::new(Handler::new(conn)), startup: Arc::new(startup), cancels }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancels.clone()
    }
}
