//! etcd's request checks (v3rpc/key.go) that need the protobuf request: a Range's, and the sort
//! options inside a Txn. The checks of writes run on the command itself (`command::validate`),
//! before it is proposed, so that forwarded writes pass them too.

use keel_proto::etcd::{PbRangeRequest, PbTxnOpRequest, PbTxnRequest};

use crate::error::ServerError;

pub fn range(r: &PbRangeRequest) -> Result<(), ServerError> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    if !sort_options_valid(r) {
        return Err(ServerError::InvalidSortOption);
    }
    Ok(())
}

/// The part of etcd's txn checks that only the protobuf request can answer: the sort options
/// of its range ops, which the conversion to a command cannot represent when out of range.
/// Everything else (sizes, op counts, empty keys, duplicate keys) is checked on the command,
/// for local and forwarded requests alike (`command::validate`).
pub fn txn(r: &PbTxnRequest) -> Result<(), ServerError> {
    for op in r.success.iter().chain(&r.failure) {
        match &op.request {
            Some(PbTxnOpRequest::RequestRange(range)) if !sort_options_valid(range) => {
                return Err(ServerError::InvalidSortOption)
            }
            Some(PbTxnOpRequest::RequestTxn(nested)) => txn(nested)?,
            _ => {}
        }
    }
    Ok(())
}

fn sort_options_valid(r: &PbRangeRequest) -> bool {
    (0..=2).contains(&r.sort_order) && (0..=4).contains(&r.sort_target)
}

#[cfg(test)]
mod tests {
    use keel_proto::etcd::PbTxnRequestOp;

    use super::*;

    fn range_op(sort_order: i32) -> PbTxnRequestOp {
        PbTxnRequestOp {
            request: Some(PbTxnOpRequest::RequestRange(PbRangeRequest {
                key: "k".into(),
                sort_order,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn sort_options_of_nested_range_ops_are_checked() {
        let nested = PbTxnRequest { success: vec![range_op(7)], ..Default::default() };
        let outer = PbTxnRequest {
            failure: vec![PbTxnRequestOp { request: Some(PbTxnOpRequest::RequestTxn(nested)) }],
            ..Default::default()
        };
        assert_eq!(txn(&outer), Err(ServerError::InvalidSortOption));
        assert_eq!(txn(&PbTxnRequest { success: vec![range_op(1)], ..Default::default() }), Ok(()));
    }
}
