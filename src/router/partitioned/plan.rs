//! Where each partition of a request goes: its leader as fairlead knows it, with the client's
//! stale leader epoch replaced by the fresh one; the client's own broker when fairlead does not
//! know the partition, or when it may serve it as a follower (KIP-392).

use std::sync::Arc;

use super::{Part, RoutedApi};
use crate::cluster::Cluster;
use crate::leadership::refresh::Trigger;
use crate::metrics;
use crate::router::lanes::SETTLE;

/// What planning found beyond each partition's destination.
pub(super) struct Planned {
    /// A leader epoch was replaced: the request must be re-encoded even if it all goes home.
    pub changed: bool,
}

/// Sets each part's destination (`node`) and whether its leader changed a moment ago.
pub(super) fn plan<A: RoutedApi>(
    cluster: &Arc<Cluster>,
    envelope: &A::Req,
    version: i16,
    parts: &mut [Part<A>],
    home_node: i32,
) -> Planned {
    let leadership = &cluster.leadership;
    let generation = leadership.generation();
    let home_may_serve = A::home_may_serve(envelope, version);
    let mut changed = false;
    let mut unknown = false;
    for part in parts.iter_mut() {
        let Some(route) = leadership
            .route_of(&part.topic, part.partition(), home_node)
            .filter(|r| r.leader >= 0)
        else {
            // Unknown here: the client's broker answers for it while fairlead learns about it
            // (a refresh at most once per topic per second: see `leadership::scope`).
            unknown |= leadership.want(&part.topic);
            part.node = home_node;
            continue;
        };
        part.settling = route
            .changed_at
            .is_some_and(|at| at.elapsed().is_ok_and(|e| e < SETTLE));
        // A stale epoch is fenced even by the right broker (74): give the fresh one.
        if let Some(client_epoch) = A::leader_epoch(&part.req) {
            if client_epoch >= 0 && route.epoch > client_epoch {
                A::set_leader_epoch(&mut part.req, route.epoch);
                changed = true;
            }
        }
        part.node = if route.leader != home_node && route.home_is_replica && home_may_serve {
            home_node
        } else {
            route.leader
        };
    }
    if unknown {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let _ = cluster.refresh(generation, Trigger::Unknown).await;
        });
    }
    Planned { changed }
}

/// Partitions sent somewhere other than where the client sent them (proactive routing). Counted
/// once they have left, never when planned: a part that went home after all (no connection of
/// the client's identity at its leader) or was never sent is no reroute.
pub(super) fn count_reroutes<A: RoutedApi>(cluster: &Cluster, rerouted: &[&Part<A>]) {
    if rerouted.is_empty() {
        return;
    }
    metrics::rerouted(A::KEY as i16, rerouted.len());
    for part in rerouted {
        cluster
            .incidents
            .rerouted(&cluster.leadership, &part.topic, part.partition());
        if metrics::topic_labels() {
            if let Some(name) = cluster.leadership.name_of(&part.topic) {
                metrics::topic_rerouted(A::KEY as i16, &name, 1);
            }
        }
    }
}
