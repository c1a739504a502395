//! The Services page: the registry as go-micro lays it out under `/micro/registry/`, read from
//! this member's keyspace. The list shows each service's versions and node count; a service's
//! own page shows its nodes (address, metadata, endpoints, the lease that keeps them and the time
//! it has left, asked of the leader). Live on the registry's prefix: a node appears as it
//! registers and goes as it deregisters or its lease expires.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_client::registry::Service;
use maud::{html, Markup};
use serde::Deserialize;

use super::format::encode;
use super::layout::{self, not_permitted, Live, Section};
use super::session::Viewer;
use super::Ui;
use crate::command::RangeRequest;
use crate::keys::prefix_range_end;
use crate::limits::UI_PAGE_ENTRIES_MAX;
use crate::member::Member;
use crate::registry;

/// How often a service's page shows its nodes' leases again.
const LEASE_REFRESH_SECS: u32 = 1;

#[derive(Deserialize, Default)]
pub(super) struct ServicesQuery {
    service: Option<String>,
    /// The list resumes after this service name.
    after: Option<String>,
}

pub(super) async fn page(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    viewer: Viewer,
    Query(query): Query<ServicesQuery>,
) -> Response {
    let body = if !viewer.may_use_native(&ui.member) {
        not_permitted("the registry")
    } else {
        match read(&ui.member) {
            Ok(registry) => match &query.service {
                Some(name) => service_page(&ui.member, &registry, name).await,
                None => list(&registry, query.after.as_deref()),
            },
            Err(error) => html! { p.error role="alert" { (error) } },
        }
    };
    // A service's page also counts its leases down: keep-alives renew them without a write.
    let tick_secs = query.service.as_ref().map(|_| LEASE_REFRESH_SECS);
    let live = Live { prefix: Some(registry::PREFIX.as_bytes().to_vec()), tick_secs };
    layout::respond(&headers, Section::Services, "Services", &viewer, Some(&live), body)
}

/// The registry now: services by name and version, and the lease each node key holds.
struct Registry {
    services: Vec<Service>,
    leases: HashMap<Vec<u8>, i64>,
    revision: i64,
}

fn read(member: &Member) -> Result<Registry, String> {
    let prefix = registry::PREFIX.as_bytes().to_vec();
    let request = RangeRequest { range_end: prefix_range_end(&prefix), key: prefix, ..RangeRequest::default() };
    let response = member.shared().range(&request).map_err(|error| format!("reading the registry: {error}"))?;
    let leases = response.kvs.iter().map(|kv| (kv.key.clone(), kv.lease)).collect();
    let services = registry::group(response.kvs.iter().filter_map(|kv| registry::decode(&kv.value)));
    Ok(Registry { services, leases, revision: response.header_revision })
}

fn list(registry: &Registry, after: Option<&str>) -> Markup {
    let mut by_name: BTreeMap<&str, (Vec<&str>, usize)> = BTreeMap::new();
    for service in &registry.services {
        let entry = by_name.entry(&service.name).or_default();
        entry.0.push(&service.version);
        entry.1 += service.nodes.len();
    }
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    let page: Vec<_> = by_name.range::<str, _>((start, Bound::Unbounded)).take(UI_PAGE_ENTRIES_MAX + 1).collect();
    let more = page.len() > UI_PAGE_ENTRIES_MAX;
    let page = page.get(..UI_PAGE_ENTRIES_MAX).unwrap_or(&page);
    html! {
        h1 { "Services" }
        p.muted { (by_name.len()) " services, " (registry.services.iter().map(|s| s.nodes.len()).sum::<usize>())
                  " nodes, at revision " (registry.revision) }
        @if by_name.is_empty() {
            p { "Nothing is registered." }
        } @else {
            table aria-label="Services" {
                thead { tr { th { "Service" } th { "Versions" } th.num { "Nodes" } } }
                tbody {
                    @for (name, (versions, nodes)) in page {
                        tr data-service=(name) {
                            td { a href=(format!("/ui/services?service={}", encode(name))) { (name) } }
                            td { (versions.iter().map(|&v| if v.is_empty() { "(none)" } else { v }).collect::<Vec<_>>().join(", ")) }
                            td.num { (nodes) }
                        }
                    }
                }
            }
            @if more {
                @if let Some((last, _)) = page.last() {
                    p.pager { a rel="next" href=(format!("/ui/services?after={}", encode(last))) { "Next services →" } }
                }
            }
        }
    }
}

async fn service_page(member: &Member, registry: &Registry, name: &str) -> Markup {
    let versions: Vec<&Service> = registry.services.iter().filter(|s| s.name == name).collect();
    let leases = lease_times(member, registry, &versions).await;
    html! {
        p.crumbs { a href="/ui/services" { "Services" } " / " }
        h1 { (name) }
        @if versions.is_empty() {
            p { "No node of " (name) " is registered." }
        }
        @for service in &versions {
            h2 { "Version " (if service.version.is_empty() { "(none)" } else { service.version.as_str() }) }
            @if !service.metadata.is_empty() { (metadata(&service.metadata)) }
            @if !service.endpoints.is_empty() {
                p { "Endpoints: " @for (i, endpoint) in service.endpoints.iter().enumerate() {
                    @if i > 0 { ", " } code { (endpoint.name) }
                } }
            }
            table aria-label="Nodes" {
                thead { tr { th { "Node" } th { "Address" } th { "Metadata" } th { "Lease" } th.num { "TTL left" } } }
                tbody {
                    @for node in service.nodes.iter().take(UI_PAGE_ENTRIES_MAX) {
                        @let lease = registry.leases.get(&registry::node_key(name, &node.id)).copied().unwrap_or(0);
                        tr data-node=(node.id) {
                            td { code { (node.id) } }
                            td { code { (node.address) } }
                            td { (metadata(&node.metadata)) }
                            td { @if lease == 0 { span.muted { "none" } } @else { code { (format!("{lease:x}")) } } }
                            td.num { @match leases.get(&lease) {
                                Some(left) => { (left) " s" },
                                None => span.muted { "—" },
                            } }
                        }
                    }
                }
            }
            @if service.nodes.len() > UI_PAGE_ENTRIES_MAX {
                p.muted { "The first " (UI_PAGE_ENTRIES_MAX) " of " (service.nodes.len()) " nodes are shown." }
            }
        }
    }
}

/// Seconds left on each lease that keeps a node of `versions` registered (the first page's).
async fn lease_times(member: &Member, registry: &Registry, versions: &[&Service]) -> HashMap<i64, i64> {
    let mut ids: Vec<i64> = versions
        .iter()
        .flat_map(|service| service.nodes.iter().map(|node| registry::node_key(&service.name, &node.id)))
        .filter_map(|key| registry.leases.get(&key).copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(UI_PAGE_ENTRIES_MAX);
    super::leases_left(member, ids).await
}

fn metadata(metadata: &BTreeMap<String, String>) -> Markup {
    html! {
        @for (key, value) in metadata {
            code { (key) "=" (value) } " "
        }
    }
}
