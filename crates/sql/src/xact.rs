//! Transaction ids and their outcomes, as PostgreSQL gives them: `txid_current()` /
//! `pg_current_xact_id()` (the session's transaction's id) and `txid_status(id)` /
//! `pg_xact_status(id)` (committed or aborted), so that a client whose connection broke during
//! COMMIT settles the outcome through any other node (`raftable_txn::status` says how).
//!
//! The session runs these as its own commands ([`XactCall::of`] recognizes them: a SELECT of
//! one such call and nothing else; inside a larger query they are unknown functions). Here:
//! where status rows live ([`XactShards`]): one shard of their own, outside every table, made
//! by the first node that needs it and recorded in the meta group under `0x00 'x'`; and the
//! deletion of this node's expired ones ([`XactShards::collect`], every [`COLLECT_INTERVAL`]).

use std::sync::Arc;
use std::time::Duration;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr, Statement, UnaryOperator, Value,
};
use raftable_common::{Error, Result, ShardId, ShardRead, ShardWrite, WriteOp, META_SHARD};
use raftable_txn::status::{self, XactStatus};
use raftable_txn::{Coordinator, Txn};
use serde::{Deserialize, Serialize};

use crate::ast::ident;
use crate::cluster::Cluster;
use crate::encoding::bucket_range;

/// A statement that is a transaction-id function call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum XactCall {
    /// `SELECT txid_current()` (or `pg_current_xact_id()`), named `column`.
    Current { column: String },
    /// `SELECT txid_status(xid)` (or `pg_xact_status`), named `column`.
    Status { column: String, xid: i64 },
}

impl XactCall {
    /// The call `stmt` is, if it is `SELECT f(args) [AS name]` of one of the functions and
    /// nothing more.
    pub(crate) fn of(stmt: &Statement) -> Result<Option<XactCall>> {
        let Statement::Query(query) = stmt else { return Ok(None) };
        if query.with.is_some() || query.order_by.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
            return Ok(None);
        }
        let SetExpr::Select(select) = query.body.as_ref() else { return Ok(None) };
        if !select.from.is_empty() || select.selection.is_some() || select.having.is_some() || select.distinct.is_some()
        {
            return Ok(None);
        }
        let [item] = select.projection.as_slice() else { return Ok(None) };
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(ident(alias))),
            _ => return Ok(None),
        };
        let Expr::Function(f) = expr else { return Ok(None) };
        let [name] = f.name.0.as_slice() else { return Ok(None) };
        let Some(name) = name.as_ident().map(ident) else { return Ok(None) };
        let FunctionArguments::List(list) = &f.args else { return Ok(None) };
        let args: Vec<&Expr> = list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect();
        if args.len() != list.args.len() || f.over.is_some() || f.filter.is_some() {
            return Ok(None);
        }
        let column = alias.unwrap_or_else(|| name.clone());
        Ok(match (name.as_str(), args.as_slice()) {
            ("txid_current" | "pg_current_xact_id", []) => Some(XactCall::Current { column }),
            ("txid_status" | "pg_xact_status", [arg]) => Some(XactCall::Status { column, xid: xid_argument(arg)? }),
            _ => None,
        })
    }
}

/// The id a status call names: an integer constant, possibly cast (`'123'::xid8`); whether
/// it is a valid id is `status`'s to say.
fn xid_argument(e: &Expr) -> Result<i64> {
    let not_constant = || Error::unsupported("txid_status() of anything but a constant transaction id".to_string());
    let text = match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.clone(),
            Value::SingleQuotedString(s) => s.clone(),
            _ => return Err(not_constant()),
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => return xid_argument(expr),
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => format!("-{}", xid_argument(expr)?),
        _ => return Err(not_constant()),
    };
    text.trim().parse().map_err(|_| Error::InvalidText(format!("invalid input syntax for type bigint: \"{text}\"")))
}

/// Where status rows live: the shard and its key prefix, as recorded in the meta group.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Location {
    shard: ShardId,
    prefix: Vec<u8>,
}

/// The meta group's record of [`Location`].
const LOCATION_KEY: &[u8] = &[0x00, b'x'];

/// The node's knowledge of where status rows live, found (or made) at first use.
#[derive(Default)]
pub(crate) struct XactShards {
    location: tokio::sync::OnceCell<Location>,
}

impl XactShards {
    /// The status shard, made if no node made it yet: a fresh table id's one-bucket range
    /// (no table ever has it), its shard created, then recorded if no other node recorded
    /// one first (a loser's shard stays unused).
    async fn location(&self, cluster: &dyn Cluster) -> Result<&Location> {
        self.location
            .get_or_try_init(|| async {
                if let Some(found) = recorded(cluster).await? {
                    return Ok(found);
                }
                let id = cluster.next_id("table").await?;
                let id = u32::try_from(id).map_err(|_| Error::Internal("table ids exhausted".into()))?;
                let range = bucket_range(id, 0, 1);
                let shard = cluster.create_shards(vec![range.clone()]).await?[0];
                let location = Location { shard, prefix: range.start };
                let op = WriteOp::PutIfAbsent { key: LOCATION_KEY.to_vec(), value: bincode::serialize(&location)? };
                match cluster.write(META_SHARD, ShardWrite::new(vec![op])).await {
                    Ok(_) => Ok(location),
                    Err(Error::DuplicateKey { .. }) => {
                        recorded(cluster).await?.ok_or_else(|| Error::Internal("status shard record vanished".into()))
                    }
                    Err(e) => Err(e),
                }
            })
            .await
    }

    /// `txid_current()`: the transaction's id; its commit will write its status row.
    pub(crate) async fn current(&self, cluster: &dyn Cluster, txn: &Txn) -> Result<i64> {
        let xid = status::xid_of(txn.id())?;
        let Location { shard, prefix } = self.location(cluster).await?;
        txn.insert_at_commit(*shard, status::status_key(prefix, xid), status::COMMITTED.to_vec());
        Ok(xid)
    }

    /// `txid_status(xid)`: the outcome of transaction `xid`, fencing it if it has not ended;
    /// None if it is too old to know.
    pub(crate) async fn status(
        &self,
        cluster: &dyn Cluster,
        coordinator: &Arc<Coordinator>,
        xid: i64,
    ) -> Result<Option<XactStatus>> {
        status::check(xid)?;
        let Location { shard, prefix } = self.location(cluster).await?;
        status::status(coordinator, xid, *shard, prefix).await
    }

    /// Deletes this node's expired status rows, if any node made the status shard yet.
    pub(crate) async fn collect(&self, cluster: &dyn Cluster, coordinator: &Arc<Coordinator>) -> Result<usize> {
        let location = match self.location.get() {
            Some(location) => location.clone(),
            None => match recorded(cluster).await? {
                Some(location) => location,
                None => return Ok(0),
            },
        };
        status::collect(coordinator, location.shard, &location.prefix).await
    }
}

/// How often a node deletes its expired status rows.
pub(crate) const COLLECT_INTERVAL: Duration = Duration::from_secs(300);

async fn recorded(cluster: &dyn Cluster) -> Result<Option<Location>> {
    let rows = cluster.read(META_SHARD, ShardRead::Get { key: LOCATION_KEY.to_vec() }).await?;
    rows.first().map(|row| bincode::deserialize(&row.value).map_err(Error::from)).transpose()
}
