//! Which service names and node ids keep go-micro's etcd key layout one-to-one, so that Keel
//! and go-micro always agree on a registration's key and two distinct names never share one.
//!
//! go-micro's etcd registry (v2.9 to v5, `registry/etcd/etcd.go`) builds a node's key as
//! `path.Join("/micro/registry/", strings.Replace(service, "/", "-", -1), strings.Replace(id, "/", "-", -1))`.
//! Two steps of that are not one-to-one: `pay/api` and `pay-api` become the same segment, and
//! `path.Join` drops empty segments and resolves `.` and `..` (a node id `..` would put the
//! key at `/micro/registry`, outside every service). Keel therefore writes only names that
//! are their own key segment ([`check_written`]); it still looks up any name go-micro can
//! register under the prefix ([`check_looked_up`]), `/` included, and readers keep only
//! registrations whose stored name is the one asked for.
//!
//! Pure checks, shared by the cluster and [`super::MemoryRegistry`] so both refuse the same
//! names with the same words.

/// Service names and node ids longer than this are refused: they are path segments of keys
/// that every watcher of the registry matches against, and real ones are far shorter
/// (go-micro's node ids are the service name plus a 36-character UUID).
pub const NAME_BYTES_MAX: usize = 256;

/// Why a name cannot be used. Display gives the reason, naming the field (`service name` or
/// `node id`); the cluster prefixes it with `registry: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {NAME_BYTES_MAX} bytes")]
    TooLong { field: &'static str },
    #[error(
        "{field} {name:?} contains '/': go-micro's etcd layout turns it into '-', so it would share its key with {dashed:?}"
    )]
    Slash { field: &'static str, name: String, dashed: String },
    #[error("{field} {name:?} is a path step: go-micro's path.Join would move its key out of the registry's layout")]
    PathStep { field: &'static str, name: String },
}

/// The field names errors use.
pub const SERVICE_NAME: &str = "service name";
pub const NODE_ID: &str = "node id";

/// A name Keel writes as a key segment (Register, Deregister): not empty, at most
/// [`NAME_BYTES_MAX`] bytes, no `/`, not `.` or `..`. Such a name is exactly its segment in
/// go-micro's key, so distinct names get distinct keys.
pub fn check_written(field: &'static str, name: &str) -> Result<(), NameError> {
    check_looked_up(field, name)?;
    if name.contains('/') {
        return Err(NameError::Slash { field, name: name.to_string(), dashed: name.replace('/', "-") });
    }
    Ok(())
}

/// A service name Keel looks up (GetService, Watch): any name go-micro can register under the
/// registry's prefix. `/` is allowed (go-micro stores `a/b` under `a-b/`; readers then keep
/// only registrations named `a/b`); empty, `.` and `..` are not, as their keys are not under
/// a service's own prefix.
pub fn check_looked_up(field: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { field });
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(NameError::TooLong { field });
    }
    // After go-micro's '/' → '-' a name is one segment, so only these whole names are steps.
    if name == "." || name == ".." {
        return Err(NameError::PathStep { field, name: name.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_names_are_their_own_key_segment() {
        for good in ["greeter", "go.micro.srv.greeter", "pay-api", "a..b", ".hidden", "x.", "ünïcödé", "a b"] {
            assert_eq!(check_written(SERVICE_NAME, good), Ok(()), "{good:?}");
        }
        let slash = check_written(SERVICE_NAME, "pay/api").expect_err("'/' is refused");
        assert_eq!(
            slash.to_string(),
            r#"service name "pay/api" contains '/': go-micro's etcd layout turns it into '-', so it would share its key with "pay-api""#
        );
        for step in [".", ".."] {
            assert!(matches!(check_written(NODE_ID, step), Err(NameError::PathStep { field: NODE_ID, .. })), "{step}");
        }
        assert_eq!(check_written(NODE_ID, ""), Err(NameError::Empty { field: NODE_ID }));
        let long = "x".repeat(NAME_BYTES_MAX + 1);
        assert_eq!(check_written(SERVICE_NAME, &long), Err(NameError::TooLong { field: SERVICE_NAME }));
        assert_eq!(check_written(SERVICE_NAME, &long[1..]), Ok(()));
    }

    #[test]
    fn looked_up_names_may_hold_a_slash() {
        assert_eq!(check_looked_up(SERVICE_NAME, "pay/api"), Ok(()));
        assert_eq!(check_looked_up(SERVICE_NAME, "/"), Ok(()));
        for bad in ["", ".", ".."] {
            assert!(check_looked_up(SERVICE_NAME, bad).is_err(), "{bad:?}");
        }
    }
}
