//! One rule for every name the native services put into the cluster's keys: event topics,
//! consumer groups and consumers, store databases and tables, config namespaces, path segments
//! and object keys. The cluster and the in-memory implementations check names here, so both
//! refuse the same names with the same words.
//!
//! A name is refused when it is empty, longer than [`NAME_BYTES_MAX`], holds a control
//! character (NUL included: some layouts join two names with NUL, and control characters have
//! no business in a key a human reads back), or holds a separator of its key layout (`/` in
//! `/micro/events/<topic>/<offset>`, `.` in a dotted config path). Everything else is allowed:
//! go-micro's dotted topics (`go.micro.topic.foo`), `default`, `user-1`, non-ASCII letters.
//!
//! It must not know the key layouts themselves: each [`NameRule`] says which separators its
//! layout uses.

/// The longest name: names are segments of keys that every read, watch and index entry carries,
/// and 256 bytes is far beyond any sensible topic, table or namespace.
pub const NAME_BYTES_MAX: usize = 256;

/// What a name is, for the error message, and the separators its key layout uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRule {
    /// The service whose words the error uses (`events`, `store`, `config`).
    pub service: &'static str,
    /// The field, as the error names it (`topic`, `group`, `table`...).
    pub field: &'static str,
    /// Characters the key layout uses to separate this name from its neighbours.
    pub separators: &'static [char],
}

/// `/micro/events/<topic>/<offset>`.
pub const TOPIC: NameRule = NameRule { service: "events", field: "topic", separators: &['/'] };
/// A group's state is keyed `<topic>\0<group>` (NUL is a control character, refused anyway);
/// `/` keeps group names usable as key segments, as topics are.
pub const GROUP: NameRule = NameRule { service: "events", field: "group", separators: &['/'] };
/// A consumer's name is a value, never part of a key: only the common rule applies.
pub const CONSUMER: NameRule = NameRule { service: "events", field: "consumer", separators: &[] };
/// `/micro/store/<database>/<table>/<key>`.
pub const STORE_DATABASE: NameRule = NameRule { service: "store", field: "database", separators: &['/'] };
/// `/micro/store/<database>/<table>/<key>`.
pub const STORE_TABLE: NameRule = NameRule { service: "store", field: "table", separators: &['/'] };
/// `/micro/config/<namespace>/<a>/<b>`.
pub const CONFIG_NAMESPACE: NameRule = NameRule { service: "config", field: "namespace", separators: &['/'] };
/// A segment of a dotted path (`app.db.host`) is a key segment too.
pub const CONFIG_SEGMENT: NameRule = NameRule { service: "config", field: "path segment", separators: &['/', '.'] };
/// An object key of a value that is set becomes a key segment. Dots are allowed (a document may
/// well be keyed by `go.micro.srv.greeter`), though a dotted path cannot address below it.
pub const CONFIG_OBJECT_KEY: NameRule = NameRule { service: "config", field: "object key", separators: &['/'] };

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{}: {} is empty", .rule.service, .rule.field)]
    Empty { rule: NameRule },
    #[error("{}: {} is longer than {NAME_BYTES_MAX} bytes", .rule.service, .rule.field)]
    TooLong { rule: NameRule },
    /// The name is quoted with Rust's escapes, so no control character reaches a log or terminal.
    #[error("{}: {} {name:?} must not contain control characters", .rule.service, .rule.field)]
    Control { rule: NameRule, name: String },
    #[error("{}: {} {name:?} must not contain {separator:?}", .rule.service, .rule.field)]
    Separator { rule: NameRule, name: String, separator: char },
}

impl NameRule {
    /// `Ok` when `name` may be used as this kind of name.
    pub fn check(&self, name: &str) -> Result<(), NameError> {
        if name.is_empty() {
            return Err(NameError::Empty { rule: *self });
        }
        if name.len() > NAME_BYTES_MAX {
            return Err(NameError::TooLong { rule: *self });
        }
        if name.chars().any(char::is_control) {
            return Err(NameError::Control { rule: *self, name: name.to_string() });
        }
        if let Some(separator) = name.chars().find(|c| self.separators.contains(c)) {
            return Err(NameError::Separator { rule: *self, name: name.to_string(), separator });
        }
        Ok(())
    }
}

impl From<NameError> for crate::Error {
    fn from(error: NameError) -> Self {
        crate::Error::InvalidArgument(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_micro_names_pass() {
        for name in ["go.micro.topic.foo", "default", "orders", "user-1", "ünïcode", "a b", "x".repeat(256).as_str()]
        {
            for rule in [TOPIC, GROUP, CONSUMER, STORE_DATABASE, STORE_TABLE, CONFIG_NAMESPACE, CONFIG_OBJECT_KEY] {
                assert_eq!(rule.check(name), Ok(()), "{} {name:?}", rule.field);
            }
        }
        assert_eq!(CONFIG_SEGMENT.check("host"), Ok(()));
    }

    #[test]
    fn separators_controls_and_lengths_are_refused_with_the_field_named() {
        let cases = [
            (TOPIC, "a/b", "events: topic \"a/b\" must not contain '/'"),
            (TOPIC, "a\0b", "events: topic \"a\\0b\" must not contain control characters"),
            (GROUP, "g\n", "events: group \"g\\n\" must not contain control characters"),
            (CONSUMER, "c\u{7f}", "events: consumer \"c\\u{7f}\" must not contain control characters"),
            (STORE_TABLE, "", "store: table is empty"),
            (CONFIG_SEGMENT, "a.b", "config: path segment \"a.b\" must not contain '.'"),
            (CONFIG_NAMESPACE, &"n".repeat(NAME_BYTES_MAX + 1), "config: namespace is longer than 256 bytes"),
        ];
        for (rule, name, message) in cases {
            assert_eq!(rule.check(name).map_err(|e| e.to_string()), Err(message.to_string()), "{name:?}");
        }
        assert_eq!(CONSUMER.check("host/1"), Ok(()), "a consumer is never a key segment");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Whatever the name, the rule answers, and what it accepts is safe in every layout.
        #[test]
        fn accepted_names_hold_no_control_character_or_separator(name in "\\PC{0,8}[\\x00-\\x1f/.]?\\PC{0,8}") {
            for rule in [TOPIC, GROUP, CONSUMER, STORE_DATABASE, STORE_TABLE, CONFIG_NAMESPACE, CONFIG_SEGMENT, CONFIG_OBJECT_KEY] {
                if rule.check(&name).is_ok() {
                    proptest::prop_assert!(!name.is_empty() && name.len() <= NAME_BYTES_MAX);
                    proptest::prop_assert!(!name.chars().any(|c| c.is_control() || rule.separators.contains(&c)));
                }
            }
        }
    }
}
