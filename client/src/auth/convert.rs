//! micro's types ↔ `keel.v1`'s protobuf messages, one set of conversions for the client
//! (`GrpcAuth`) and the cluster (`keel.v1.Auth`). A message that cannot be a rule is an
//! error's text; each side says whose fault it is.

use keel_proto::v1 as pb;

use super::{Access, Account, Resource, Rule};

/// Without a secret: the cluster sends one only in Generate's answer.
pub fn account_from_pb(account: pb::Account) -> Account {
    Account {
        id: account.id,
        r#type: account.r#type,
        scopes: account.scopes,
        metadata: account.metadata.into_iter().collect(),
        provider: account.provider,
        secret: None,
    }
}

/// Never with a secret.
pub fn account_to_pb(account: &Account) -> pb::Account {
    pb::Account {
        id: account.id.clone(),
        r#type: account.r#type.clone(),
        scopes: account.scopes.clone(),
        metadata: account.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        provider: account.provider.clone(),
        secret: String::new(),
    }
}

pub fn resource_to_pb(resource: &Resource) -> pb::Resource {
    pb::Resource { r#type: resource.r#type.clone(), name: resource.name.clone(), endpoint: resource.endpoint.clone() }
}

pub fn resource_from_pb(resource: pb::Resource) -> Resource {
    Resource { r#type: resource.r#type, name: resource.name, endpoint: resource.endpoint }
}

pub fn rule_to_pb(rule: &Rule) -> pb::Rule {
    let access = match rule.access {
        Access::Granted => pb::rule::Access::Granted,
        Access::Denied => pb::rule::Access::Denied,
    };
    pb::Rule {
        id: rule.id.clone(),
        scope: rule.scope.clone(),
        resource: Some(resource_to_pb(&rule.resource)),
        access: access as i32,
        priority: rule.priority,
    }
}

pub fn rule_from_pb(rule: pb::Rule) -> Result<Rule, String> {
    let access = match pb::rule::Access::try_from(rule.access) {
        Ok(pb::rule::Access::Granted) => Access::Granted,
        Ok(pb::rule::Access::Denied) => Access::Denied,
        Err(_) => return Err(format!("a rule with unknown access {}", rule.access)),
    };
    let resource = rule.resource.ok_or("a rule needs a resource")?;
    Ok(Rule { id: rule.id, scope: rule.scope, resource: resource_from_pb(resource), access, priority: rule.priority })
}
