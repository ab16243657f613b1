//! The cluster layer's errors in one place: every conversion between raftable's [`Error`] and
//! gRPC's [`Status`] (both ways, for every call a node serves or makes: `service`, `network`,
//! `router`, `coalesce`, `placement`), and openraft's client errors into [`Error`] (`group`,
//! `read_index`).
//!
//! - A service handler's error leaves as [`to_status`]: a gRPC code and message for any gRPC
//!   client, and the error itself (bincode) in the status details, so that a raftable client
//!   gets back the very variant the peer returned: a `Retry` stays retryable, an `Unknown`
//!   stays unknown, a `UniqueViolation` keeps its constraint.
//! - A failed call comes back as [`from_status`]: the peer's error if the status carries one;
//!   else the call failed in transport, and whether it may have applied decides: `Retry` if
//!   the request never left ([`not_sent`]) or changes nothing (a read), `Unknown` for a write.
//!   Shard calls carry their command's result in the reply payload ([`shard_reply`]), so a
//!   status on them is a transport failure or a malformed request.
//! - openraft's refusals become `NotLeader` (with the leader as hint) or `Retry` where nothing
//!   was appended, `Unknown` where a proposal may still commit ([`proposed_write_error`],
//!   [`read_error`]).

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use raftable_common::{Error, NodeId, Result, ShardId};
use raftable_proto::ShardReply;
use raftable_storage::NodeInfo;
use tonic::{Code, Status};

use crate::network::decode;
use crate::node::OpResult;

/// Largest error carried in a status's details (a trailer header; HTTP/2 peers limit their
/// size). A larger one leaves with its code and message only, and the caller judges the
/// failure like a transport one: `Unknown` for a write, never a wrong success.
const MAX_DETAILS: usize = 4 << 10;

/// `e` as the status a service handler returns.
pub(crate) fn to_status(e: Error) -> Status {
    let code = match &e {
        Error::NotLeader { .. } | Error::Retry(_) => Code::Unavailable,
        Error::Unknown(_) => Code::Unknown,
        Error::InvalidData(_) => Code::DataLoss,
        Error::Io(_) | Error::Internal(_) => Code::Internal,
        Error::Unsupported(_) => Code::Unimplemented,
        Error::DuplicateKey { .. } | Error::UniqueViolation { .. } | Error::DuplicateTable(_) => Code::AlreadyExists,
        Error::ConditionFailed { .. }
        | Error::SnapshotTooOld(_)
        | Error::TxnConflict(_)
        | Error::TxnAborted(_)
        | Error::Locked { .. } => Code::Aborted,
        _ => Code::InvalidArgument,
    };
    let mut details = bincode::serialize(&e).expect("errors always serialize");
    if details.len() > MAX_DETAILS {
        details.clear();
    }
    Status::with_details(code, e.to_string(), details.into())
}

/// The error of a failed call; `write` says whether the call changes state (then a transport
/// failure after the request may have reached the peer leaves the outcome unknown).
pub(crate) fn from_status(status: &Status, write: bool) -> Error {
    if let Some(e) = peer_error(status) {
        return e;
    }
    if !write || not_sent(status) {
        Error::Retry(format!("peer unreachable: {}", status.message()))
    } else {
        Error::Unknown(format!("peer failed mid-request: {}", status.message()))
    }
}

/// The error a raftable peer answered with ([`to_status`]), if the status carries one.
fn peer_error(status: &Status) -> Option<Error> {
    if status.details().is_empty() {
        return None;
    }
    bincode::deserialize(status.details()).ok()
}

/// Whether a failed call never reached the peer: tonic could not connect (refused, timed out,
/// no route), which it reports as `Unavailable` caused by a [`tonic::ConnectError`]. Any other
/// failure may have come after the request was sent, whatever its message says ("connection
/// closed before message completed" is hyper's for a peer that died mid-request).
pub(crate) fn not_sent(status: &Status) -> bool {
    if status.code() != Code::Unavailable || !status.details().is_empty() {
        return false;
    }
    let mut cause = std::error::Error::source(status);
    while let Some(e) = cause {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A reply whose payload cannot be decoded: for a write, whether it applied is unknown.
pub(crate) fn undecodable(e: &Error, write: bool) -> Error {
    let msg = format!("undecodable reply: {e}");
    if write {
        Error::Unknown(msg)
    } else {
        Error::Retry(msg)
    }
}

/// The result of one shard command sent over the `Shard` service: the command's own result
/// from the reply payload, or the call's failure.
pub(crate) fn shard_reply(reply: std::result::Result<ShardReply, Status>, write: bool) -> Result<OpResult> {
    match reply {
        Ok(reply) => decode::<Result<OpResult>>(&reply.payload).map_err(|e| undecodable(&e, write))?,
        Err(status) => Err(from_status(&status, write)),
    }
}

/// A failed `client_write` of a proposal made while this replica believed it led: a
/// `ForwardToLeader` now means the entry was appended and then truncated (another replica may
/// still hold it and a later leader commit it), so the outcome is unknown (see `Group::write`).
pub(crate) fn proposed_write_error(shard: ShardId, e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Error::Unknown(format!(
            "shard {shard}: leadership lost with the write proposed (leader now {:?})",
            f.leader_id
        )),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Error::Internal(format!("membership error on a plain write: {e}"))
        }
        // The group stopped (node shutting down) with the proposal possibly in its log.
        RaftError::Fatal(f) => Error::Unknown(format!("raft group stopped: {f}")),
    }
}

/// A failed read-index round. Every failure leaves nothing applied, so all are retryable.
pub(crate) fn read_error(e: RaftError<NodeId, CheckIsLeaderError<NodeId, NodeInfo>>) -> Error {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            Error::Retry(format!("leadership not confirmed by a quorum: {q}"))
        }
        RaftError::Fatal(f) => Error::Retry(format!("raft group stopped: {f}")),
    }
}

/// `NotLeader`, with the leader openraft names as the hint if it knows where it is.
fn not_leader(f: ForwardToLeader<NodeId, NodeInfo>) -> Error {
    let leader = match (f.leader_id, f.leader_node) {
        (Some(id), Some(node)) => Some((id, node.rpc_addr)),
        _ => None,
    };
    Error::NotLeader { leader }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every variant.
    fn every_variant() -> Vec<Error> {
        let s = || "m".to_string();
        vec![
            Error::InvalidInput(s()),
            Error::SyntaxError(s()),
            Error::UndefinedTable(s()),
            Error::UndefinedColumn(s()),
            Error::AmbiguousColumn(s()),
            Error::DuplicateColumn(s()),
            Error::InvalidTableDefinition(s()),
            Error::SequenceLimit(s()),
            Error::ObjectNotInPrerequisiteState(s()),
            Error::GeneratedAlways(s()),
            Error::DependentObjectsStillExist(s()),
            Error::CheckViolation(s()),
            Error::UniqueIndexBuild { index: s() },
            Error::InvalidColumnReference(s()),
            Error::ForeignKeyViolation(s()),
            Error::InvalidForeignKey(s()),
            Error::WrongObjectType(s()),
            Error::UndefinedSchema(s()),
            Error::DuplicateSchema(s()),
            Error::NullValueNotAllowed(s()),
            Error::GroupingError(s()),
            Error::DuplicateTable(s()),
            Error::UndefinedObject(s()),
            Error::UndefinedFunction(s()),
            Error::DatatypeMismatch(s()),
            Error::NotNullViolation(s()),
            Error::InvalidText(s()),
            Error::InvalidDatetime(s()),
            Error::DatetimeOutOfRange(s()),
            Error::InvalidPowerArgument(s()),
            Error::OutOfRange(s()),
            Error::StringTooLong(s()),
            Error::DivisionByZero,
            Error::Unsupported(s()),
            Error::StackDepthExceeded(s()),
            Error::ProgramLimitExceeded(s()),
            Error::CardinalityViolation(s()),
            Error::UniqueViolation { constraint: "t_pkey".into() },
            Error::DuplicateKey { key: vec![0, 1, 0xff] },
            Error::ConditionFailed { key: vec![2] },
            Error::SnapshotTooOld(s()),
            Error::TxnConflict(s()),
            Error::TxnAborted(s()),
            Error::InFailedTransaction,
            Error::ReadOnlyTransaction(s()),
            Error::NoActiveTransaction(s()),
            Error::UndefinedSavepoint(s()),
            Error::Locked {
                key: vec![1, 2],
                txn: raftable_common::TxnMeta {
                    id: raftable_common::TxnId(7 << 64 | 9),
                    anchor: 4,
                    anchor_key: vec![1, 3],
                },
                ts: raftable_common::Ts(77),
            },
            Error::NotLeader { leader: Some((3, "127.0.0.1:5533".into())) },
            Error::NotLeader { leader: None },
            Error::Retry(s()),
            Error::Unknown(s()),
            Error::InvalidData(s()),
            Error::Io(s()),
            Error::Internal(s()),
        ]
    }

    /// A number per variant. The match fails to compile when a variant is added, and
    /// [`every_variant_is_listed`] fails until the new one is in [`every_variant`].
    fn variant(e: &Error) -> usize {
        match e {
            Error::InvalidInput(_) => 0,
            Error::SyntaxError(_) => 1,
            Error::UndefinedTable(_) => 2,
            Error::UndefinedColumn(_) => 3,
            Error::AmbiguousColumn(_) => 4,
            Error::DuplicateColumn(_) => 5,
            Error::GroupingError(_) => 6,
            Error::DuplicateTable(_) => 7,
            Error::UndefinedObject(_) => 8,
            Error::UndefinedFunction(_) => 9,
            Error::DatatypeMismatch(_) => 10,
            Error::NotNullViolation(_) => 11,
            Error::InvalidText(_) => 12,
            Error::InvalidDatetime(_) => 13,
            Error::OutOfRange(_) => 14,
            Error::StringTooLong(_) => 15,
            Error::DivisionByZero => 16,
            Error::Unsupported(_) => 17,
            Error::CardinalityViolation(_) => 18,
            Error::UniqueViolation { .. } => 19,
            Error::DuplicateKey { .. } => 20,
            Error::ConditionFailed { .. } => 21,
            Error::NotLeader { .. } => 22,
            Error::Retry(_) => 23,
            Error::Unknown(_) => 24,
            Error::InvalidData(_) => 25,
            Error::Io(_) => 26,
            Error::Internal(_) => 27,
            Error::StackDepthExceeded(_) => 28,
            Error::ProgramLimitExceeded(_) => 29,
            Error::SnapshotTooOld(_) => 30,
            Error::TxnConflict(_) => 31,
            Error::TxnAborted(_) => 32,
            Error::Locked { .. } => 33,
            Error::InFailedTransaction => 34,
            Error::ReadOnlyTransaction(_) => 35,
            Error::NoActiveTransaction(_) => 36,
            Error::UndefinedSavepoint(_) => 37,
            Error::InvalidTableDefinition(_) => 38,
            Error::SequenceLimit(_) => 39,
            Error::ObjectNotInPrerequisiteState(_) => 40,
            Error::GeneratedAlways(_) => 41,
            Error::DependentObjectsStillExist(_) => 42,
            Error::CheckViolation(_) => 43,
            Error::UniqueIndexBuild { .. } => 44,
            Error::InvalidColumnReference(_) => 45,
            Error::ForeignKeyViolation(_) => 46,
            Error::InvalidForeignKey(_) => 47,
            Error::WrongObjectType(_) => 48,
            Error::UndefinedSchema(_) => 49,
            Error::DuplicateSchema(_) => 50,
            Error::NullValueNotAllowed(_) => 51,
            Error::DatetimeOutOfRange(_) => 52,
            Error::InvalidPowerArgument(_) => 53,
        }
    }

    #[test]
    fn every_variant_is_listed() {
        let listed: std::collections::BTreeSet<usize> = every_variant().iter().map(variant).collect();
        assert_eq!(listed, (0..=53).collect());
    }

    /// A status as the client reads it off the wire: tonic's own header encoding and decoding.
    fn over_the_wire(status: &Status) -> Status {
        let mut headers = tonic::codegen::http::HeaderMap::new();
        status.add_header(&mut headers).expect("status headers");
        Status::from_header_map(&headers).expect("a status")
    }

    #[test]
    fn every_variant_comes_back_as_itself() {
        for e in every_variant() {
            let status = over_the_wire(&to_status(e.clone()));
            for write in [false, true] {
                let back = from_status(&status, write);
                assert_eq!(back, e, "write: {write}");
                assert_eq!(back.is_retryable(), e.is_retryable(), "{e:?}");
                assert!(!not_sent(&status), "{e:?}: a peer's answer was sent");
            }
        }
    }

    #[test]
    fn an_error_too_large_to_carry_is_judged_like_a_transport_failure() {
        let huge = to_status(Error::Internal("x".repeat(MAX_DETAILS)));
        assert!(huge.details().is_empty());
        assert!(matches!(from_status(&huge, true), Error::Unknown(_)));
        assert!(matches!(from_status(&huge, false), Error::Retry(_)));
    }

    #[test]
    fn codes_tell_other_clients_what_happened() {
        let code = |e: Error| to_status(e).code();
        assert_eq!(code(Error::Retry("election".into())), Code::Unavailable);
        assert_eq!(code(Error::NotLeader { leader: None }), Code::Unavailable);
        assert_eq!(code(Error::Unknown("deadline".into())), Code::Unknown);
        assert_eq!(code(Error::InvalidInput("node id 0".into())), Code::InvalidArgument);
        assert_eq!(code(Error::Internal("bug".into())), Code::Internal);
        assert_eq!(to_status(Error::Retry("election".into())).message(), "retry: election");
    }

    /// The status tonic makes of a failed connection attempt.
    fn refused() -> Status {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let status = Status::from_error(Box::new(tonic::ConnectError(Box::new(io))));
        assert_eq!(status.code(), Code::Unavailable);
        status
    }

    #[tokio::test]
    async fn a_refused_connection_was_not_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let channel = crate::network::endpoint(&addr).expect("endpoint").connect_lazy();
        let request = raftable_proto::StatusRequest { digests: false };
        let status = raftable_proto::meta_client::MetaClient::new(channel).status(request).await.unwrap_err();
        assert!(not_sent(&status), "{status:?}");
        assert!(matches!(from_status(&status, true), Error::Retry(_)));
    }

    #[test]
    fn transport_failures_by_whether_the_request_may_have_applied() {
        // No connection was made: nothing was sent, even a write may be retried.
        assert!(not_sent(&refused()));
        assert!(matches!(from_status(&refused(), true), Error::Retry(_)));
        // Failed after connecting (hyper's words for a peer that died mid-request).
        let broken = Status::unavailable("connection closed before message completed");
        assert!(!not_sent(&broken));
        assert!(matches!(from_status(&broken, false), Error::Retry(_)));
        assert!(matches!(from_status(&broken, true), Error::Unknown(_)));
        let cancelled = Status::cancelled("timeout");
        assert!(matches!(from_status(&cancelled, true), Error::Unknown(_)));
        // A peer's Retry whose message mentions connecting was still answered by the peer.
        let answered = to_status(Error::Retry("cannot connect to node 3".into()));
        assert!(!not_sent(&answered));
    }

    #[test]
    fn shard_replies() {
        let payload = |r: Result<OpResult>| ShardReply { payload: crate::network::encode(&r) };
        let unique = Error::UniqueViolation { constraint: "t_pkey".into() };
        assert_eq!(shard_reply(Ok(payload(Err(unique.clone()))), true).unwrap_err(), unique);
        assert!(
            matches!(shard_reply(Ok(payload(Ok(OpResult::Rows(vec![])))), false), Ok(OpResult::Rows(r)) if r.is_empty())
        );
        let garbage = ShardReply { payload: vec![0xff; 3] };
        assert!(matches!(shard_reply(Ok(garbage.clone()), true), Err(Error::Unknown(_))));
        assert!(matches!(shard_reply(Ok(garbage), false), Err(Error::Retry(_))));
        let bad = to_status(Error::InvalidInput("undecodable payload".into()));
        assert!(matches!(shard_reply(Err(bad), true), Err(Error::InvalidInput(_))));
    }
}
