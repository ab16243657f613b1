//! The extended query protocol: Parse prepares exactly one statement with the client's
//! parameter types; Describe reports parameter types and result columns; Execute decodes the
//! bound parameters, runs the statement and streams its rows, suspending the portal at the
//! client's row limit and resuming it on the next Execute.
//!
//! Flow: pgwire session (Bind, Close, Sync and the statement/portal store are pgwire's; Parse
//! calls the [`QueryParser`] here) → `Connection` → `sql::Session` → shards.

use std::fmt::Debug;
use std::sync::{Arc, PoisonError};

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::Ident;
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, Type, DEFAULT_NAME};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::ParameterDescription;
use pgwire::messages::extendedquery::{
    Describe, Execute, Parse, ParseComplete, PortalSuspended, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{EmptyQueryResponse, TransactionStatus};
use pgwire::messages::PgWireBackendMessage;
use raftable_sql::Output;

use super::connection::{Connection, Handler, PreparedStmt};
use super::params;
use super::results::{command_complete, describe, fields, row_stream, rows_complete, send_notices, send_rows};
use super::sqlstate::user_error;
use super::types;

#[async_trait]
impl QueryParser for Connection {
    type Statement = PreparedStmt;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        declared: &[Option<Type>],
    ) -> PgWireResult<Option<PreparedStmt>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.parse(sql).await?;
        let stmt = match statements.len() {
            0 => return Ok(None),
            1 => statements.remove(0),
            _ => return Err(user_error("42601", "cannot insert multiple commands into a prepared statement")),
        };
        let planned: Vec<Option<DataType>> =
            declared.iter().map(|t| t.as_ref().and_then(types::planned_type)).collect();
        let prepared = self.prepare(&stmt, &planned, &mut self.token()).await?;
        Ok(Some(PreparedStmt { prepared, read_only: stmt.is_read_only() }))
    }

    fn get_parameter_types(&self, stmt: &PreparedStmt) -> PgWireResult<Vec<Type>> {
        Ok(stmt.prepared.params.iter().map(types::pg_type).collect())
    }

    fn get_result_schema(&self, stmt: &PreparedStmt, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.prepared.schema {
            Some(schema) => Ok(fields(schema, format.unwrap_or(&Format::UnifiedText))?.to_vec()),
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = PreparedStmt;
    type QueryParser = Connection;

    fn query_parser(&self) -> Arc<Connection> {
        self.conn.clone()
    }

    /// Stores the statement like pgwire's default, remembering its name for `DEALLOCATE ALL`.
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.clone().unwrap_or_else(|| DEFAULT_NAME.to_owned());
        match StoredStatement::parse(&*client, &message, self.conn.clone()).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        self.statements.lock().unwrap_or_else(PoisonError::into_inner).insert(name);
        client.send(PgWireBackendMessage::ParseComplete(ParseComplete::new())).await?;
        Ok(())
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.conn.check_open()?;
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => portal,
            Some(Entry::Empty) => {
                client.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(name.to_owned())),
        };
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut status = client.transaction_status();
        let max_rows = usize::try_from(message.max_rows).unwrap_or(0);
        let result = self.execute_portal(client, &portal, max_rows, &mut status).await;
        // After an error too (see `simple`).
        status = self.conn.transaction_status().await;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        result
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.conn.check_open()?;
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let fields = match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                let (types, fields) = match client.portal_store().get_statement(name) {
                    Some(Entry::Value(stmt)) => (parameter_types(&stmt), result_fields(&stmt.statement, None)?),
                    Some(Entry::Empty) => (Vec::new(), None),
                    None => return Err(PgWireError::StatementNotFound(name.to_owned())),
                };
                let types = types.iter().map(Type::oid).collect();
                client.feed(PgWireBackendMessage::ParameterDescription(ParameterDescription::new(types))).await?;
                fields
            }
            TARGET_TYPE_BYTE_PORTAL => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => {
                    result_fields(&portal.statement.statement, Some(&portal.result_column_format))?
                }
                Some(Entry::Empty) => None,
                None => return Err(PgWireError::PortalNotFound(name.to_owned())),
            },
            other => return Err(PgWireError::InvalidTargetType(other)),
        };
        client.send(describe(fields.as_deref().map(Vec::as_slice))).await?;
        Ok(())
    }

    /// Unused: `on_execute` runs portals itself, to stream rows and resume suspended portals.
    async fn do_query<C>(
        &self,
        _client: &mut C,
        _portal: &Portal<PreparedStmt>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(PgWireError::ApiError("portals are executed by on_execute".into()))
    }
}

impl Handler {
    /// SQL `DEALLOCATE name` / `DEALLOCATE ALL`: drops statements that Parse stored (psycopg
    /// sends `DEALLOCATE ALL` after DDL). Returns the command tag.
    pub(super) fn deallocate<S: PortalStore>(&self, store: &S, name: &Ident) -> PgWireResult<&'static str> {
        let mut names = self.statements.lock().unwrap_or_else(PoisonError::into_inner);
        if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
            std::mem::take(&mut *names).iter().for_each(|n| store.rm_statement(n));
            return Ok("DEALLOCATE ALL");
        }
        let name = if name.quote_style.is_none() { name.value.to_lowercase() } else { name.value.clone() };
        if store.get_statement(&name).is_none() {
            return Err(user_error("26000", format!("prepared statement \"{name}\" does not exist")));
        }
        store.rm_statement(&name);
        names.remove(&name);
        Ok("DEALLOCATE")
    }

    /// Runs a portal the first time, or fetches the next rows of a suspended one.
    async fn execute_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<PreparedStmt>,
        max_rows: usize,
        status: &mut TransactionStatus,
    ) -> PgWireResult<()>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmt = &portal.statement.statement;
        let state = portal.state();
        let mut state = state.lock().await;
        let mut token = self.conn.token();
        // Finished unless it suspends again: a failed portal is never run a second time.
        let mut rows = match std::mem::replace(&mut *state, PortalExecutionState::Finished) {
            PortalExecutionState::Suspended(rows) => rows,
            PortalExecutionState::Finished => {
                let name = if portal.name == DEFAULT_NAME { "" } else { portal.name.as_str() };
                return Err(user_error("55000", format!("portal \"{name}\" cannot be run")));
            }
            PortalExecutionState::Initial => {
                let params = self.decode_params(portal)?;
                let output = self.conn.execute(stmt, params, &mut token).await?;
                *status = self.conn.transaction_status().await;
                match output {
                    Output::Command { tag } => {
                        send_notices(client, self.conn.notices().await).await?;
                        client.send(command_complete(&tag)).await?;
                        return Ok(());
                    }
                    Output::Rows { command, schema, stream } => {
                        let fields = fields(&schema, &portal.result_column_format)?;
                        let mut rows =
                            QueryResponse::new(fields.clone(), row_stream(stream, fields, self.conn.clone()));
                        rows.set_command_tag(command);
                        rows
                    }
                }
            }
        };
        let cancel = stmt.read_only.then_some(&mut token);
        let (sent, more) = send_rows(client, rows.data_rows(), max_rows, cancel).await?;
        if more {
            client.send(PgWireBackendMessage::PortalSuspended(PortalSuspended::new())).await?;
        } else {
            send_notices(client, self.conn.notices().await).await?;
            let complete = rows_complete(rows.command_tag(), sent);
            client.send(complete).await?;
        }
        // An exhausted portal stays runnable, answering with no rows, as in PostgreSQL.
        *state = PortalExecutionState::Suspended(rows);
        Ok(())
    }

    /// The portal's parameter values, decoded to the types the statement was prepared with.
    fn decode_params(&self, portal: &Portal<PreparedStmt>) -> PgWireResult<Vec<ScalarValue>> {
        let stored = &portal.statement;
        let types = &stored.statement.prepared.params;
        let values = &portal.parameters;
        if values.len() != types.len() {
            let name = if stored.id == DEFAULT_NAME { "" } else { stored.id.as_str() };
            let message = format!(
                "bind message supplies {} parameters, but prepared statement \"{name}\" requires {}",
                values.len(),
                types.len()
            );
            return Err(user_error("08P01", message));
        }
        if let Format::Individual(codes) = &portal.parameter_format {
            if codes.len() != values.len() {
                let message =
                    format!("bind message has {} parameter formats but {} parameters", codes.len(), values.len());
                return Err(user_error("08P01", message));
            }
        }
        let mut decoded = Vec::with_capacity(values.len());
        for (i, (value, target)) in values.iter().zip(types).enumerate() {
            let declared = stored.parameter_types.get(i).and_then(Option::as_ref);
            let binary = portal.parameter_format.is_binary(i);
            decoded.push(params::decode(value.as_deref(), binary, declared, target).map_err(|e| self.conn.fail(&e))?);
        }
        Ok(decoded)
    }
}

/// The parameter types to describe: the client's where it declared one, else the planned one.
fn parameter_types(stmt: &StoredStatement<PreparedStmt>) -> Vec<Type> {
    let planned = &stmt.statement.prepared.params;
    let declared = |i: usize| stmt.parameter_types.get(i).cloned().flatten().filter(|t| *t != Type::UNKNOWN);
    planned.iter().enumerate().map(|(i, dt)| declared(i).unwrap_or_else(|| types::pg_type(dt))).collect()
}

/// The result columns of `stmt` in `format` (text when describing a statement), or `None`
/// for a statement that returns no rows.
fn result_fields(stmt: &PreparedStmt, format: Option<&Format>) -> PgWireResult<Option<Arc<Vec<FieldInfo>>>> {
    stmt.prepared.schema.as_ref().map(|schema| fields(schema, format.unwrap_or(&Format::UnifiedText))).transpose()
}
