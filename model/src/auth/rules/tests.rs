use proptest::prelude::*;

use super::*;

fn resource(spec: &str) -> Resource {
    let mut parts = spec.splitn(3, ':');
    let mut next = || parts.next().unwrap_or_default().to_string();
    Resource { r#type: next(), name: next(), endpoint: next() }
}

fn rule(id: &str, scope: &str, spec: &str, access: Access, priority: i32) -> Rule {
    Rule { id: id.into(), scope: scope.into(), resource: resource(spec), access, priority }
}

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

/// (rules, caller scopes or None for no account, resource, expected).
fn check(rules: &[Rule], caller: Option<&[&str]>, spec: &str, expected: Result<(), Forbidden>) {
    let held = caller.map(scopes);
    let caller = held.as_deref().map(|scopes| Caller { scopes });
    assert_eq!(verify(rules, caller, &resource(spec)), expected, "{spec} as {held:?} under {rules:?}");
}

const ALLOWED: Result<(), Forbidden> = Ok(());
const FORBIDDEN: Result<(), Forbidden> = Err(Forbidden);

#[test]
fn no_rules_deny_everyone() {
    check(&[], None, "service:foo:Foo.Bar", FORBIDDEN);
    check(&[], Some(&["admin"]), "service:foo:Foo.Bar", FORBIDDEN);
}

#[test]
fn scopes_public_any_account_and_named() {
    let public = [rule("p", SCOPE_PUBLIC, "*:*:*", Access::Granted, 0)];
    check(&public, None, "service:foo:Foo.Bar", ALLOWED);
    let any = [rule("a", SCOPE_ANY_ACCOUNT, "*:*:*", Access::Granted, 0)];
    check(&any, None, "service:foo:Foo.Bar", FORBIDDEN);
    check(&any, Some(&[]), "service:foo:Foo.Bar", ALLOWED);
    let named = [rule("n", "admin", "*:*:*", Access::Granted, 0)];
    check(&named, Some(&["user"]), "service:foo:Foo.Bar", FORBIDDEN);
    check(&named, Some(&["user", "ADMIN"]), "service:foo:Foo.Bar", ALLOWED);
}

#[test]
fn resources_match_exactly_by_wildcard_or_by_path() {
    let rules = |spec| [rule("r", SCOPE_PUBLIC, spec, Access::Granted, 0)];
    check(&rules("service:foo:Foo.Bar"), None, "service:foo:Foo.Bar", ALLOWED);
    check(&rules("SERVICE:Foo:foo.bar"), None, "service:foo:Foo.Bar", ALLOWED);
    check(&rules("service:foo:Foo.Bar"), None, "service:foo:Foo.Baz", FORBIDDEN);
    check(&rules("service:*:Foo.Bar"), None, "service:other:Foo.Bar", ALLOWED);
    check(&rules("*:foo:*"), None, "web:foo:/x", ALLOWED);
    check(&rules("service:foo:Foo.*"), None, "service:foo:Foo.Bar", FORBIDDEN);
    check(&rules("web:site:/admin/*"), None, "web:site:/admin/users/1", ALLOWED);
    check(&rules("web:site:/admin/*"), None, "web:site:/admin", ALLOWED);
    check(&rules("web:site:/admin/*"), None, "web:site:/administrator", FORBIDDEN);
    check(&rules("web:site:/*"), None, "web:site:/anything/at/all", ALLOWED);
    check(&rules("service:foo:Foo.Bar/*"), None, "service:foo:Foo.Bar", FORBIDDEN);
}

#[test]
fn the_highest_priority_decides_and_ties_keep_their_order() {
    let rules = [
        rule("deny-public", SCOPE_PUBLIC, "*:*:*", Access::Denied, 1),
        rule("admins", "admin", "service:foo:*", Access::Granted, 10),
        rule("everyone", SCOPE_ANY_ACCOUNT, "*:*:*", Access::Granted, 0),
    ];
    check(&rules, Some(&["admin"]), "service:foo:Foo.Bar", ALLOWED);
    // The public deny outranks the account grant, and applies to accounts too.
    check(&rules, Some(&["user"]), "service:foo:Foo.Bar", FORBIDDEN);
    check(&rules, None, "service:foo:Foo.Bar", FORBIDDEN);
    let tie = [
        rule("first", SCOPE_ANY_ACCOUNT, "*:*:*", Access::Denied, 5),
        rule("second", SCOPE_ANY_ACCOUNT, "*:*:*", Access::Granted, 5),
    ];
    check(&tie, Some(&[]), "service:foo:Foo.Bar", FORBIDDEN);
    let reversed = [tie[1].clone(), tie[0].clone()];
    check(&reversed, Some(&[]), "service:foo:Foo.Bar", ALLOWED);
}

#[test]
fn a_rule_whose_scope_does_not_apply_is_skipped_not_final() {
    let rules = [
        rule("admins-denied", "admin", "*:*:*", Access::Denied, 10),
        rule("public", SCOPE_PUBLIC, "*:*:*", Access::Granted, 0),
    ];
    check(&rules, None, "service:foo:Foo.Bar", ALLOWED);
    check(&rules, Some(&["admin"]), "service:foo:Foo.Bar", FORBIDDEN);
}

#[test]
fn rules_that_could_never_match_as_written_are_refused() {
    let refused =
        [("", "*:*:*"), ("r", "*:*:Foo.*"), ("r", "*:*:/a/*/b"), ("r", "serv*:*:*"), ("r", ":*:*"), ("r", "*:*:")];
    for (id, spec) in refused {
        let candidate = rule(id, SCOPE_PUBLIC, spec, Access::Granted, 0);
        assert!(check_rule(&candidate).is_err(), "{id:?} {spec:?} must be refused");
    }
    let long = "x".repeat(RULE_FIELD_BYTES_MAX + 1);
    assert!(check_rule(&rule(&long, SCOPE_PUBLIC, "*:*:*", Access::Granted, 0)).is_err());
    for spec in ["*:*:*", "service:foo:Foo.Bar", "web:site:/admin/*", "web:site:/*"] {
        check_rule(&rule("r", "admin", spec, Access::Granted, 0)).expect(spec);
    }
}

/// micro's `Verify`, transcribed step by step: the list of endpoints a rule may name, a filter,
/// a stable sort and the scope cascade.
fn micro_verify(rules: &[Rule], caller: Option<&[String]>, resource: &Resource) -> Result<(), Forbidden> {
    let include = |list: &[String], value: &str| list.iter().any(|s| s.eq_ignore_ascii_case(value));
    let types = vec![WILDCARD.to_string(), resource.r#type.clone()];
    let names = vec![WILDCARD.to_string(), resource.name.clone()];
    let mut endpoints = vec![WILDCARD.to_string(), resource.endpoint.clone()];
    let components: Vec<&str> = resource.endpoint.split('/').collect();
    if components.len() > 1 {
        for i in 1..=components.len() {
            endpoints.push(format!("{}/*", components[..i].join("/")));
        }
    }
    let mut filtered: Vec<&Rule> = rules
        .iter()
        .filter(|r| {
            include(&types, &r.resource.r#type)
                && include(&names, &r.resource.name)
                && include(&endpoints, &r.resource.endpoint)
        })
        .collect();
    filtered.sort_by_key(|rule| std::cmp::Reverse(rule.priority));
    for rule in filtered {
        let decision = if rule.access == Access::Denied { Err(Forbidden) } else { Ok(()) };
        if rule.scope == SCOPE_PUBLIC {
            return decision;
        }
        let Some(held) = caller else { continue };
        if rule.scope == SCOPE_ANY_ACCOUNT || include(held, &rule.scope) {
            return decision;
        }
    }
    Err(Forbidden)
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![Just("*".to_string()), Just("".to_string()), "[aAbB]{1,2}"]
}

fn endpoint() -> impl Strategy<Value = String> {
    prop_oneof![Just("*".to_string()), "[aA.]{1,3}", "(/[aAb]{0,2}){1,3}", "(/[aAb]{0,2}){0,2}/\\*",]
}

fn arbitrary_rule() -> impl Strategy<Value = Rule> {
    (word(), word(), word(), endpoint(), any::<bool>(), -2i32..3).prop_map(
        |(scope, r#type, name, endpoint, granted, priority)| Rule {
            id: "r".into(),
            scope,
            resource: Resource { r#type, name, endpoint },
            access: if granted { Access::Granted } else { Access::Denied },
            priority,
        },
    )
}

proptest! {
    #[test]
    fn verify_agrees_with_micro(
        rules in prop::collection::vec(arbitrary_rule(), 0..8),
        caller in prop::option::of(prop::collection::vec(word(), 0..3)),
        r#type in word(),
        name in word(),
        endpoint in endpoint(),
    ) {
        let resource = Resource { r#type, name, endpoint };
        let ours = verify(&rules, caller.as_deref().map(|scopes| Caller { scopes }), &resource);
        prop_assert_eq!(ours, micro_verify(&rules, caller.as_deref(), &resource));
    }
}
