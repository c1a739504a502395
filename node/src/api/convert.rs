//! Conversions between etcd's protobuf messages and Keel's own command types. Pure mapping:
//! enum values outside etcd's range were already rejected by `validate`.

use keel_proto::etcd::{
    PbCompare, PbDeleteRequest, PbDeleteResponse, PbKeyValue, PbPutRequest, PbPutResponse, PbRangeRequest,
    PbRangeResponse, PbResponseHeader, PbResponseOp, PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest,
    PbTxnRequestOp, PbTxnResponse,
};

use crate::command::*;

pub fn range_request(pb: PbRangeRequest) -> RangeRequest {
    RangeRequest {
        key: pb.key,
        range_end: pb.range_end,
        limit: pb.limit,
        revision: pb.revision,
        sort_order: match pb.sort_order {
            1 => SortOrder::Ascend,
            2 => SortOrder::Descend,
            _ => SortOrder::None,
        },
        sort_target: match pb.sort_target {
            1 => SortTarget::Version,
            2 => SortTarget::Create,
            3 => SortTarget::Mod,
            4 => SortTarget::Value,
            _ => SortTarget::Key,
        },
        serializable: pb.serializable,
        keys_only: pb.keys_only,
        count_only: pb.count_only,
        min_mod_revision: pb.min_mod_revision,
        max_mod_revision: pb.max_mod_revision,
        min_create_revision: pb.min_create_revision,
        max_create_revision: pb.max_create_revision,
    }
}

pub fn put_request(pb: PbPutRequest) -> PutRequest {
    PutRequest {
        key: pb.key,
        value: pb.value,
        lease: pb.lease,
        prev_kv: pb.prev_kv,
        ignore_value: pb.ignore_value,
        ignore_lease: pb.ignore_lease,
    }
}

pub fn delete_request(pb: PbDeleteRequest) -> DeleteRangeRequest {
    DeleteRangeRequest { key: pb.key, range_end: pb.range_end, prev_kv: pb.prev_kv }
}

pub fn txn_request(pb: PbTxnRequest) -> TxnRequest {
    TxnRequest {
        compare: pb.compare.into_iter().map(compare).collect(),
        success: pb.success.into_iter().filter_map(request_op).collect(),
        failure: pb.failure.into_iter().filter_map(request_op).collect(),
    }
}

/// An op with no request set is skipped, as etcd skips it.
fn request_op(pb: PbTxnRequestOp) -> Option<RequestOp> {
    Some(match pb.request? {
        PbTxnOpRequest::RequestRange(r) => RequestOp::Range(range_request(r)),
        PbTxnOpRequest::RequestPut(r) => RequestOp::Put(put_request(r)),
        PbTxnOpRequest::RequestDeleteRange(r) => RequestOp::DeleteRange(delete_request(r)),
        PbTxnOpRequest::RequestTxn(r) => RequestOp::Txn(txn_request(r)),
    })
}

/// The operand comes from `target_union` when it matches `target`; otherwise it is the zero
/// value, as in etcd's compareKV.
fn compare(pb: PbCompare) -> Compare {
    let union = pb.target_union;
    let target = match pb.target {
        1 => CompareTarget::Create(match union {
            Some(PbTargetUnion::CreateRevision(v)) => v,
            _ => 0,
        }),
        2 => CompareTarget::Mod(match union {
            Some(PbTargetUnion::ModRevision(v)) => v,
            _ => 0,
        }),
        3 => CompareTarget::Value(match union {
            Some(PbTargetUnion::Value(v)) => v,
            _ => Vec::new(),
        }),
        4 => CompareTarget::Lease(match union {
            Some(PbTargetUnion::Lease(v)) => v,
            _ => 0,
        }),
        _ => CompareTarget::Version(match union {
            Some(PbTargetUnion::Version(v)) => v,
            _ => 0,
        }),
    };
    let result = match pb.result {
        1 => CompareResult::Greater,
        2 => CompareResult::Less,
        3 => CompareResult::NotEqual,
        _ => CompareResult::Equal,
    };
    Compare { result, target, key: pb.key, range_end: pb.range_end }
}

pub fn key_value(kv: KeyValue) -> PbKeyValue {
    PbKeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn range_response(header: Option<PbResponseHeader>, r: RangeResponse) -> PbRangeResponse {
    PbRangeResponse { header, kvs: r.kvs.into_iter().map(key_value).collect(), more: r.more, count: r.count }
}

pub fn put_response(header: Option<PbResponseHeader>, r: PutResponse) -> PbPutResponse {
    PbPutResponse { header, prev_kv: r.prev_kv.map(key_value) }
}

pub fn delete_response(header: Option<PbResponseHeader>, r: DeleteRangeResponse) -> PbDeleteResponse {
    PbDeleteResponse { header, deleted: r.deleted, prev_kvs: r.prev_kvs.into_iter().map(key_value).collect() }
}

pub fn txn_response(header: Option<PbResponseHeader>, r: TxnResponse) -> PbTxnResponse {
    PbTxnResponse { header, succeeded: r.succeeded, responses: r.responses.into_iter().map(response_op).collect() }
}

/// Responses inside a txn carry only the revision in their header, as etcd's do.
fn inner_header(revision: i64) -> Option<PbResponseHeader> {
    Some(PbResponseHeader { revision, ..Default::default() })
}

fn response_op(op: ResponseOp) -> PbResponseOp {
    let response = match op {
        ResponseOp::Range(r) => PbTxnOpResponse::ResponseRange(range_response(inner_header(r.header_revision), r)),
        ResponseOp::Put(r) => PbTxnOpResponse::ResponsePut(put_response(inner_header(r.header_revision), r)),
        ResponseOp::DeleteRange(r) => {
            PbTxnOpResponse::ResponseDeleteRange(delete_response(inner_header(r.header_revision), r))
        }
        ResponseOp::Txn(r) => PbTxnOpResponse::ResponseTxn(txn_response(inner_header(r.header_revision), r)),
    };
    PbResponseOp { response: Some(response) }
}
