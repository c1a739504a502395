//! Which service and endpoint an HTTP path names: micro's API rules, and the explicit routes a
//! service registers in its endpoints' metadata. Pure: no registry, no I/O; the directory
//! hands it the routes it knows.

use regex::Regex;

/// A path longer than this is refused before it is split: no registered route or service name
/// comes near it, and splitting a huge path costs memory for nothing.
pub const PATH_BYTES_MAX: usize = 4096;
/// A path with more segments than this is refused (micro's rule names at most a handful).
pub const PATH_SEGMENTS_MAX: usize = 32;

/// Where a request goes, and why: `keelctl gateway routes` prints the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The registered service's name (`greeter`, `v1.foo`).
    pub service: String,
    /// micro's endpoint, `Service.Method` (`Say.Hello`).
    pub endpoint: String,
    /// How the service is reached: gRPC (transcoded JSON) or plain HTTP (reverse-proxied).
    pub handler: Handler,
    pub why: Why,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Rpc,
    Http,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// micro's default rule on the path's segments.
    DefaultRule,
    /// An endpoint registered `path` metadata that matched (the pattern, as registered).
    Registered { pattern: String },
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::DefaultRule => f.write_str("micro's default rule: /service/endpoint"),
            Why::Registered { pattern } => write!(f, "the endpoint's registered path {pattern:?}"),
        }
    }
}

/// Why a path names nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty: use /service/endpoint")]
    Empty,
    #[error("the path has an empty, '.' or '..' segment; paths are not normalised")]
    NotCanonical,
    #[error("the path is longer than {PATH_BYTES_MAX} bytes or {PATH_SEGMENTS_MAX} segments")]
    TooLong,
    #[error("the path segment {0:?} is not a name (letters, digits, '-', '_')")]
    BadSegment(String),
}

/// An explicit route, from an endpoint's metadata as go-micro's `api.Encode` writes it:
/// `path` (comma-separated; `^…` is a regular expression, else an exact path), `method`
/// (comma-separated HTTP methods; none = any), `host` (none = any), `handler` (`rpc`, `http`).
#[derive(Debug, Clone)]
pub struct Route {
    pub service: String,
    pub endpoint: String,
    pub handler: Handler,
    paths: Vec<PathMatcher>,
    methods: Vec<String>,
    hosts: Vec<String>,
}

#[derive(Debug, Clone)]
enum PathMatcher {
    Exact(String),
    Pattern(Regex),
}

impl PathMatcher {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Exact(exact) => exact == path,
            PathMatcher::Pattern(regex) => regex.is_match(path),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            PathMatcher::Exact(exact) => exact,
            PathMatcher::Pattern(regex) => regex.as_str(),
        }
    }
}

/// A registered pattern larger than this is ignored: patterns come from any service that can
/// register, and the regex crate's compile cost grows with them.
const PATTERN_BYTES_MAX: usize = 1024;

impl Route {
    /// The route an endpoint's metadata declares, if it declares a path. Patterns that do not
    /// compile are dropped (and logged): one bad registration must not stop routing.
    pub fn from_metadata(
        service: &str,
        endpoint: &str,
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> Option<Route> {
        let paths: Vec<PathMatcher> = split_list(metadata.get("path")?)
            .filter_map(|path| match path.strip_prefix('^') {
                None => Some(PathMatcher::Exact(path.to_string())),
                Some(_) if path.len() > PATTERN_BYTES_MAX => None,
                Some(_) => match Regex::new(path) {
                    Ok(regex) => Some(PathMatcher::Pattern(regex)),
                    Err(error) => {
                        tracing::warn!(service, endpoint, "ignoring registered path {path:?}: {error}");
                        None
                    }
                },
            })
            .collect();
        if paths.is_empty() {
            return None;
        }
        let handler = match metadata.get("handler").map(String::as_str) {
            Some("http") | Some("proxy") => Handler::Http,
            _ => Handler::Rpc,
        };
        Some(Route {
            service: service.to_string(),
            endpoint: endpoint.to_string(),
            handler,
            paths,
            methods: metadata.get("method").map(|m| split_list(m).map(str::to_uppercase).collect()).unwrap_or_default(),
            hosts: metadata.get("host").map(|h| split_list(h).map(str::to_lowercase).collect()).unwrap_or_default(),
        })
    }

    /// The route as one line: `greeter Say.Hello <- POST /hi, ^/greet/ (rpc)`.
    pub fn describe(&self) -> String {
        let paths: Vec<&str> = self.paths.iter().map(PathMatcher::as_str).collect();
        let methods = if self.methods.is_empty() { "any method".to_string() } else { self.methods.join("|") };
        let hosts = if self.hosts.is_empty() { String::new() } else { format!(" on {}", self.hosts.join("|")) };
        let handler = match self.handler {
            Handler::Rpc => "rpc",
            Handler::Http => "http",
        };
        format!("{} {} <- {methods} {}{hosts} ({handler})", self.service, self.endpoint, paths.join(", "))
    }

    /// The pattern this route matches `request` with, if it does.
    fn matches(&self, request: &RequestLine<'_>) -> Option<&str> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == request.method) {
            return None;
        }
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| host_matches(h, request.host)) {
            return None;
        }
        self.paths.iter().find(|p| p.matches(request.path)).map(PathMatcher::as_str)
    }
}

/// What routing looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLine<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The `Host` header without its port, lowercased; empty if there is none.
    pub host: &'a str,
    /// `Micro-Namespace`, else the gateway's `--namespace`; empty for none.
    pub namespace: &'a str,
}

/// Where `request` goes: the first registered route that matches it, else micro's default rule.
pub fn resolve(routes: &[Route], request: &RequestLine<'_>) -> Result<Target, PathError> {
    if let Some((route, pattern)) = routes.iter().find_map(|r| r.matches(request).map(|p| (r, p))) {
        return Ok(Target {
            service: route.service.clone(),
            endpoint: route.endpoint.clone(),
            handler: route.handler,
            why: Why::Registered { pattern: pattern.to_string() },
        });
    }
    let (service, endpoint) = default_rule(request.path)?;
    let service = match request.namespace {
        "" => service,
        namespace => format!("{namespace}.{service}"),
    };
    Ok(Target { service, endpoint, handler: Handler::Rpc, why: Why::DefaultRule })
}

/// micro's API rule: `/foo` → (`foo`, `Foo.Call`); `/foo/bar` → (`foo`, `Foo.Bar`);
/// `/v1/foo/bar` → (`v1.foo`, `Foo.Bar`); `/a/b/c/d` → (`a.b`, `C.D`): the service is every
/// segment but the last two, the endpoint the last two, each CamelCased on `-`.
pub fn default_rule(path: &str) -> Result<(String, String), PathError> {
    let segments = segments(path)?;
    let (service, method) = match segments.as_slice() {
        [] => return Err(PathError::Empty),
        [only] => (only.to_string(), format!("{}.Call", camel(only))),
        [service, method] => (service.to_string(), format!("{}.{}", camel(service), camel(method))),
        [version, service, method] if is_version(version) => {
            (format!("{version}.{service}"), format!("{}.{}", camel(service), camel(method)))
        }
        [service @ .., handler, method] => (service.join("."), format!("{}.{}", camel(handler), camel(method))),
    };
    Ok((service, method))
}

/// The path's segments, refusing what micro would have cleaned (`//`, `.`, `..`): a gateway
/// that normalised them could be steered past a route or a rule meant for the clean path.
fn segments(path: &str) -> Result<Vec<&str>, PathError> {
    if path.len() > PATH_BYTES_MAX {
        return Err(PathError::TooLong);
    }
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(PathError::Empty);
    }
    let segments: Vec<&str> = trimmed.split('/').collect();
    if segments.len() > PATH_SEGMENTS_MAX {
        return Err(PathError::TooLong);
    }
    for segment in &segments {
        if segment.is_empty() || *segment == "." || *segment == ".." {
            return Err(PathError::NotCanonical);
        }
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if !segment.chars().all(is_name) {
            return Err(PathError::BadSegment(segment.to_string()));
        }
    }
    Ok(segments)
}

fn is_version(segment: &str) -> bool {
    segment.len() > 1 && segment.starts_with('v') && segment[1..].bytes().all(|b| b.is_ascii_digit())
}

/// micro's `toCamel`: `say-hello` → `SayHello`, `hello` → `Hello`.
fn camel(segment: &str) -> String {
    segment
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|item| !item.is_empty())
}

/// micro's host rule: an exact name, or `*.example.com` for any one subdomain.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => host.strip_suffix(domain).is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn check(path: &str, service: &str, endpoint: &str) {
        assert_eq!(default_rule(path), Ok((service.to_string(), endpoint.to_string())), "{path}");
    }

    #[test]
    fn micro_default_rule() {
        check("/foo", "foo", "Foo.Call");
        check("/foo/", "foo", "Foo.Call");
        check("/foo/bar", "foo", "Foo.Bar");
        check("/greeter/say/hello", "greeter", "Say.Hello");
        check("/v1/foo/bar", "v1.foo", "Foo.Bar");
        check("/v12/foo/bar", "v12.foo", "Foo.Bar");
        check("/vx/foo/bar", "vx", "Foo.Bar");
        check("/a/b/c/d", "a.b", "C.D");
        check("/v1/a/b/c", "v1.a", "B.C");
        check("/foo-bar/say-hello-world", "foo-bar", "FooBar.SayHelloWorld");
    }

    #[test]
    fn paths_micro_would_clean_are_refused() {
        for path in ["/", "", "//foo", "/foo//bar", "/foo/./bar", "/foo/../bar", "/../foo", "/foo/.."] {
            assert!(default_rule(path).is_err(), "{path:?}");
        }
        assert_eq!(default_rule("/foo/b%61r"), Err(PathError::BadSegment("b%61r".into())));
        assert_eq!(default_rule(&"/a".repeat(PATH_SEGMENTS_MAX + 1)), Err(PathError::TooLong));
        assert_eq!(default_rule(&format!("/{}", "a".repeat(PATH_BYTES_MAX))), Err(PathError::TooLong));
    }

    fn request<'a>(method: &'a str, path: &'a str, host: &'a str) -> RequestLine<'a> {
        RequestLine { method, path, host, namespace: "" }
    }

    fn route(metadata: &[(&str, &str)]) -> Route {
        let metadata: BTreeMap<String, String> = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Route::from_metadata("greeter", "Say.Hello", &metadata).expect("a route")
    }

    #[test]
    fn registered_routes_win_over_the_default_rule() {
        let routes = [route(&[("path", "/hi, ^/greet/[a-z]+$"), ("method", "post")])];
        let target = resolve(&routes, &request("POST", "/hi", "")).expect("routed");
        assert_eq!((target.service.as_str(), target.endpoint.as_str()), ("greeter", "Say.Hello"));
        assert_eq!(target.why, Why::Registered { pattern: "/hi".into() });
        let target = resolve(&routes, &request("POST", "/greet/ada", "")).expect("routed");
        assert_eq!(target.why, Why::Registered { pattern: "^/greet/[a-z]+$".into() });
        // A method the route does not list falls through to the default rule.
        let target = resolve(&routes, &request("GET", "/hi", "")).expect("routed");
        assert_eq!((target.service.as_str(), target.why), ("hi", Why::DefaultRule));
    }

    #[test]
    fn hosts_and_handlers_from_metadata() {
        let routes = [route(&[("path", "/x"), ("host", "*.example.com"), ("handler", "http")])];
        assert_eq!(resolve(&routes, &request("GET", "/x", "api.example.com")).expect("routed").handler, Handler::Http);
        assert_eq!(resolve(&routes, &request("GET", "/x", "example.com")).expect("routed").why, Why::DefaultRule);
        assert!(Route::from_metadata("s", "E.F", &BTreeMap::new()).is_none(), "no path, no route");
        let bad = [("path".to_string(), "^([".to_string())].into_iter().collect();
        assert!(Route::from_metadata("s", "E.F", &bad).is_none(), "a pattern that does not compile is dropped");
    }

    #[test]
    fn the_namespace_prefixes_the_default_rule() {
        let line = RequestLine { method: "POST", path: "/greeter/say/hello", host: "", namespace: "go.micro.api" };
        assert_eq!(resolve(&[], &line).expect("routed").service, "go.micro.api.greeter");
    }

    proptest::proptest! {
        #[test]
        fn any_path_resolves_or_is_refused_without_panicking(path in "\\PC{0,64}") {
            if let Ok((service, endpoint)) = default_rule(&path) {
                proptest::prop_assert!(!service.is_empty());
                proptest::prop_assert_eq!(endpoint.matches('.').count(), 1);
            }
        }
    }
}
