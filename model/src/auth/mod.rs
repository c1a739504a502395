//! Who may do what: the two rule systems Keel enforces, as pure functions over replicated state.
//!
//! - [`rules`]: micro's rules (`Verify`), for Keel's native services and, through the front
//!   door, users' own services: resources by type, name and endpoint; scopes; grant or deny by
//!   priority; default deny.
//! - [`etcd`]: etcd's auth store as replicated state (users, roles, the auth revision), the
//!   commands that change it, and etcd's `IsAdminPermitted` / `isOpPermitted` over it.
//! - [`micro`]: micro's accounts (bcrypt hashes of their secrets, a generation that ends old
//!   tokens) and rules as replicated state, and the commands that change them.
//! - [`permissions`]: etcd's key permissions (READ / WRITE / READWRITE over a key or a range),
//!   checked the way etcd 3.4 checks them: a request's whole range must be covered by the union
//!   of the user's permitted ranges.
//!
//! No I/O, no clock, no hashing of secrets: the node hashes passwords on the member that
//! receives the request (never inside apply) and signs tokens; what is decided here is only
//! whether a known identity may touch a resource.

pub mod etcd;
pub mod micro;
pub mod permissions;
pub mod rules;
