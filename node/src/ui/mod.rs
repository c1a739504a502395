//! The dashboard: every member serves `/ui` on its client port, beside gRPC, `/health` and
//! `/metrics`. Pages are rendered here from this member's own applied state (maud: HTML written
//! as Rust, escaped by default); a few lines of JS (`assets/ui.js`) keep the open page live by
//! listening to `/ui/live`, a server-sent event stream that says when what the page shows has
//! changed, and fetching the page's `<main>` again. Nothing is polled and no page loads more
//! than one page of anything.
//!
//! While etcd auth is enabled every page asks for a login first (`session.rs`), and shows only
//! what the signed-in user may read: keys by its etcd permissions, the native services' pages
//! (Services, Config, Events) to the users the native services answer (root). The dashboard
//! changes nothing.

mod assets;
mod cluster;
mod config;
mod events;
mod format;
mod keys;
mod layout;
mod live;
mod services;
mod session;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::Redirect;
use axum::routing::get;
use axum::Router;

use crate::member::Member;

pub use format::fuzz_key_param;

/// How long a page waits, in all, for the leader to say how long leases have left.
const LEASE_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(300);

/// Seconds left on each of the leases `ids` (0, no lease, is skipped), as far as the leader
/// answers within [`LEASE_LOOKUP_TIMEOUT`]: only the leader's clock knows, and a page does not
/// wait longer for a figure it can show without.
async fn leases_left(member: &Member, ids: impl IntoIterator<Item = i64>) -> std::collections::HashMap<i64, i64> {
    let mut left = std::collections::HashMap::new();
    let lookups = async {
        for id in ids.into_iter().filter(|&id| id != 0) {
            if let Ok(Some(time)) = member.lease_time_to_live(id).await {
                left.insert(id, time.remaining_secs);
            }
        }
    };
    let _ = tokio::time::timeout(LEASE_LOOKUP_TIMEOUT, lookups).await;
    left
}

/// The largest login form the member reads (a name and a password).
const LOGIN_BODY_BYTES_MAX: usize = 16 * 1024;

/// What every page handler shares: the member, and the samples behind the Cluster page's
/// charts.
pub(crate) struct Ui {
    member: Arc<Member>,
    samples: cluster::Samples,
}

/// The dashboard's routes, under `/ui`.
pub fn router(member: Arc<Member>) -> Router {
    let ui = Arc::new(Ui { samples: cluster::Samples::default(), member });
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/cluster") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/cluster") }))
        .route("/ui/cluster", get(cluster::page))
        .route("/ui/services", get(services::page))
        .route("/ui/keys", get(keys::page))
        .route("/ui/config", get(config::page))
        .route("/ui/events", get(events::page))
        .route("/ui/live", get(live::stream))
        .route(
            "/ui/login",
            get(session::login_form).post(session::login).layer(DefaultBodyLimit::max(LOGIN_BODY_BYTES_MAX)),
        )
        .route("/ui/logout", axum::routing::post(session::logout))
        .route("/ui/assets/{name}", get(assets::asset))
        .with_state(ui)
}
