//! The native services and leases: huge TTLs and limits, deep config paths, bad names, retention overflow, unknown acks.
