//! The simple query protocol (a Query message): the query string is split into statements,
//! each prepared and executed in order with its own response; the first error ends the query
//! (later statements do not run), as in PostgreSQL.
//!
//! Flow: pgwire session (this handler) → `Connection` → `sql::Session` → shards; rows stream
//! back through `results` as the client reads them.

use std::fmt::Debug;

use async_trait::async_trait;
use datafusion::sql::sqlparser::ast::Statement;
use futures::{Sink, SinkExt};
use pgwire::api::portal::Format;
use pgwire::api::query::{send_ready_for_query, SimpleQueryHandler};
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::response::{EmptyQueryResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::PgWireBackendMessage;
use raftable_sql::{Output, Stmt};

use super::connection::{Handler, PreparedStmt};
use super::results::{command_complete, describe, fields, row_stream, rows_complete, send_notices, send_rows};

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.conn.check_open()?;
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut status = client.transaction_status();
        let result = self.run_query(client, &query.query, &mut status).await;
        // After an error too: a failed block is `E`, a block its error ended (a failed COMMIT)
        // is over.
        status = self.conn.transaction_status().await;
        // On error pgwire sends the ErrorResponse and ReadyForQuery from this state.
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        result?;
        send_ready_for_query(client, status).await
    }

    /// Unused: `on_query` runs and answers each statement itself, streaming its rows.
    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(PgWireError::ApiError("simple queries are answered by on_query".into()))
    }
}

impl Handler {
    /// Runs every statement of `sql` in order, sending each one's response.
    async fn run_query<C>(&self, client: &mut C, sql: &str, status: &mut TransactionStatus) -> PgWireResult<()>
    where
        C: ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = self.conn.parse(sql).await?;
        if statements.is_empty() {
            client.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
        }
        for stmt in &statements {
            self.run_statement(client, stmt, status).await?;
        }
        Ok(())
    }

    /// Prepares and executes one statement: RowDescription, DataRows and CommandComplete for
    /// rows, CommandComplete for a command; its notices go before the CommandComplete.
    async fn run_statement<C>(&self, client: &mut C, stmt: &Stmt, status: &mut TransactionStatus) -> PgWireResult<()>
    where
        C: ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(Statement::Deallocate { name, .. }) = stmt.sql() {
            let tag = self.deallocate(client.portal_store(), name)?;
            client.feed(command_complete(tag)).await?;
            return Ok(());
        }
        let mut token = self.conn.token();
        let prepared = self.conn.prepare(stmt, &[], &mut token).await?;
        let stmt = PreparedStmt { prepared, read_only: stmt.is_read_only() };
        let output = self.conn.execute(&stmt, Vec::new(), &mut token).await?;
        *status = self.conn.transaction_status().await;
        match output {
            Output::Command { tag } => {
                send_notices(client, self.conn.notices().await).await?;
                client.feed(command_complete(&tag)).await?;
            }
            Output::Rows { command, schema, stream } => {
                let fields = fields(&schema, &Format::UnifiedText)?;
                client.feed(describe(Some(fields.as_slice()))).await?;
                send_notices(client, self.conn.notices().await).await?;
                let mut rows = row_stream(stream, fields, self.conn.clone());
                let cancel = stmt.read_only.then_some(&mut token);
                let (sent, _) = send_rows(client, &mut rows, 0, cancel).await?;
                send_notices(client, self.conn.notices().await).await?;
                client.feed(rows_complete(command, sent)).await?;
            }
        }
        Ok(())
    }
}
