//! The peer port: strangers without the cluster's credentials, forged Raft messages, oversized and deeply nested peer messages, aborted snapshot streams.
