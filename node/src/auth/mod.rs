//! etcd's authentication, the parts a member does on its own: reading `--auth-token`, signing
//! and verifying JWT tokens (`jwt.rs`), hashing passwords (`password.rs`); and micro's tokens
//! (`micro_token.rs`: access and refresh JWTs signed with a key derived from the cluster's).
//!
//! None of this is replicated state and none of it runs inside apply: a password is hashed on
//! the member that receives the request (bcrypt is slow on purpose, and must not let one
//! client stall the log), and a JWT is checked by whichever member the client talks to, with no
//! round trip to another. Who may do what is decided by `keel_model::auth`.

pub mod jwt;
pub mod micro_token;
pub mod options;
pub mod password;
pub mod simple;
