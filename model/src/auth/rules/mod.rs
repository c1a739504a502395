//! micro's access rules and its `Verify`, with micro's exact semantics, so a rule written for a
//! go-micro service means the same thing to Keel.
//!
//! A rule matches a resource when its type, name and endpoint each equal the resource's
//! (ignoring ASCII case, as micro's `strings.EqualFold` does) or are `*`; an endpoint of the form
//! `/a/*` also matches every endpoint under the path `/a/` (and `/a` itself is matched by
//! `/a/*`, micro's rule for web paths). Matching rules are tried from the highest priority down,
//! in the order given at equal priority (a stable sort); the first whose scope applies decides:
//! scope `""` applies to everyone, even callers without an account; `*` to any account; any
//! other scope to accounts that hold it. No rule deciding means deny.

use serde::{Deserialize, Serialize};

/// The scope of a rule that applies to everyone, signed in or not (micro's `ScopePublic`).
pub const SCOPE_PUBLIC: &str = "";
/// The scope of a rule that applies to any signed-in account (micro's `ScopeAccount`).
pub const SCOPE_ANY_ACCOUNT: &str = "*";
/// The wildcard of a resource's type, name or endpoint.
pub const WILDCARD: &str = "*";

/// The longest rule id, resource field or scope: a rule is replicated state and is matched on
/// every request, so its fields stay short.
pub const RULE_FIELD_BYTES_MAX: usize = 512;
/// The most rules a cluster holds: every request is checked against the matching ones.
pub const RULES_MAX: usize = 10_000;

/// What a rule guards: `service:keel.v1.Config:Config.Get`, `web:my-site:/admin/*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    /// `service`, `web`, … or `*`.
    pub r#type: String,
    /// The service's name, or `*`.
    pub name: String,
    /// `Service.Method`, a web path, `/path/*`, or `*`.
    pub endpoint: String,
}

/// Whether a matching rule lets the caller in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    Granted,
    Denied,
}

/// One access rule, as micro's `auth.Rule`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Unique within the cluster; creating a rule with an existing id replaces it.
    pub id: String,
    /// [`SCOPE_PUBLIC`], [`SCOPE_ANY_ACCOUNT`], or a scope accounts may hold.
    pub scope: String,
    pub resource: Resource,
    pub access: Access,
    /// Higher is tried first.
    pub priority: i32,
}

/// The part of an account a rule looks at.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub scopes: &'a [String],
}

/// micro's `ErrForbidden`: no rule grants the caller the resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("access to the resource is forbidden")]
pub struct Forbidden;

/// Whether `caller` (`None`: not signed in) may reach `resource` under `rules`, taken in their
/// stored order (which breaks ties between equal priorities).
pub fn verify<'r>(
    rules: impl IntoIterator<Item = &'r Rule>,
    caller: Option<Caller<'_>>,
    resource: &Resource,
) -> Result<(), Forbidden> {
    let mut matching: Vec<&Rule> = rules.into_iter().filter(|rule| rule_matches(&rule.resource, resource)).collect();
    // Stable: equal priorities keep their stored order, as micro's sort.SliceStable does.
    matching.sort_by_key(|rule| std::cmp::Reverse(rule.priority));
    for rule in matching {
        if scope_applies(&rule.scope, caller) {
            return match rule.access {
                Access::Granted => Ok(()),
                Access::Denied => Err(Forbidden),
            };
        }
    }
    Err(Forbidden)
}

/// Refuses a rule that could never mean what it says: empty or oversized fields, and wildcards
/// micro does not have (`foo*`, `*.Get`, `/a/*/b`), which would silently never match.
pub fn check_rule(rule: &Rule) -> Result<(), String> {
    if rule.id.is_empty() {
        return Err("a rule needs an id".into());
    }
    let fields = [
        ("id", &rule.id),
        ("scope", &rule.scope),
        ("resource type", &rule.resource.r#type),
        ("resource name", &rule.resource.name),
        ("resource endpoint", &rule.resource.endpoint),
    ];
    for (what, value) in fields {
        if value.len() > RULE_FIELD_BYTES_MAX {
            return Err(format!("the rule's {what} is longer than {RULE_FIELD_BYTES_MAX} bytes"));
        }
        if value.chars().any(char::is_control) {
            return Err(format!("the rule's {what} holds a control character"));
        }
    }
    for (what, value) in [("type", &rule.resource.r#type), ("name", &rule.resource.name)] {
        if value.is_empty() {
            return Err(format!("the rule's resource {what} is empty: use \"*\" for any"));
        }
        if value.contains('*') && value != WILDCARD {
            return Err(format!("the rule's resource {what} {value:?} has a wildcard that is not the whole field"));
        }
    }
    check_endpoint_pattern(&rule.resource.endpoint)
}

fn check_endpoint_pattern(endpoint: &str) -> Result<(), String> {
    if endpoint.is_empty() {
        return Err("the rule's resource endpoint is empty: use \"*\" for any".into());
    }
    let stars = endpoint.matches('*').count();
    let path_wildcard = endpoint.ends_with("/*") && stars == 1;
    if stars == 0 || endpoint == WILDCARD || path_wildcard {
        return Ok(());
    }
    Err(format!("the rule's resource endpoint {endpoint:?} has a wildcard other than \"*\" or a trailing \"/*\""))
}

fn rule_matches(pattern: &Resource, resource: &Resource) -> bool {
    field_matches(&pattern.r#type, &resource.r#type)
        && field_matches(&pattern.name, &resource.name)
        && endpoint_matches(&pattern.endpoint, &resource.endpoint)
}

fn field_matches(pattern: &str, value: &str) -> bool {
    pattern == WILDCARD || pattern.eq_ignore_ascii_case(value)
}

/// micro's endpoint rule: `*`, the endpoint itself, or `P/*` where `P` is the endpoint cut at
/// one of its `/` (or the whole endpoint): `/a/b` is matched by `/*`, `/a/*` and `/a/b/*`.
fn endpoint_matches(pattern: &str, endpoint: &str) -> bool {
    if field_matches(pattern, endpoint) {
        return true;
    }
    let Some(prefix) = pattern.strip_suffix("/*") else { return false };
    if !endpoint.contains('/') {
        // micro only derives path wildcards for endpoints that have a `/`.
        return false;
    }
    let prefix_len = prefix.len();
    endpoint.len() >= prefix_len
        && endpoint.is_char_boundary(prefix_len)
        && endpoint[..prefix_len].eq_ignore_ascii_case(prefix)
        && (endpoint.len() == prefix_len || endpoint.as_bytes()[prefix_len] == b'/')
}

fn scope_applies(scope: &str, caller: Option<Caller<'_>>) -> bool {
    if scope == SCOPE_PUBLIC {
        return true;
    }
    let Some(caller) = caller else { return false };
    scope == SCOPE_ANY_ACCOUNT || caller.scopes.iter().any(|held| held.eq_ignore_ascii_case(scope))
}

#[cfg(test)]
mod tests;
