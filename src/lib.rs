//! fairlead: a Kafka sidecar proxy that absorbs leader changes (partition leaders, and group and
//! transaction coordinators).
//!
//! Clients talk to fairlead as if it were the cluster. When a partition's leader moves, a
//! client with stale metadata would get NOT_LEADER_OR_FOLLOWER (6) or FENCED_LEADER_EPOCH (74);
//! fairlead instead refreshes leadership, sends the partition to its new leader, and answers
//! the client as if nothing happened, replaying only what is safe to replay.
//!
//! A request flows through the modules in this order:
//!
//! * `listener`: accept loops on the ports of `ports`: the bootstrap port and one port per
//!   broker (`node_port_base + node id`).
//! * `connection`: one task pair per client: reader (route, send) and writer (answer in order).
//! * `codec`: length-prefixed frames and headers, zero-copy; message bodies via kafka-protocol.
//! * `router`: what to do with a request; `router::partitioned` splits partition-routed APIs by
//!   leader and merges the answers; `router::coordinator` follows group and transaction
//!   coordinators; `router::retry` is the one place that decides what may be re-sent;
//!   `router::lanes` keeps per-partition produce order and per-key coordinator order.
//! * `rewrite`: broker addresses in responses replaced by fairlead's; ApiVersions capped.
//! * `upstream`: connections to brokers, multiplexed by correlation id.
//! * `leadership`: who leads what (partitions, refreshed single-flight and epoch-guarded; groups
//!   and transactional ids, looked up batched).
//! * `cluster`: that knowledge and fairlead's own broker connections, shared by every connection.
//! * `security`: TLS to brokers and on listeners, SASL (PLAIN, SCRAM) with fairlead's credentials.
//! * `protocol`: the protocol's vocabulary (error codes, the API sets fairlead routes), used by
//!   all of the above.
//! * `capacity`: maps shrink once a burst's entries are gone (the room given back).
//! * `metrics`, [`config`], `admin`, [`server`]: operations.
//! * [`webhook`]: `fairlead webhook`, the Kubernetes sidecar injector (docker/helm/fairlead).

#![forbid(unsafe_code)]

pub mod config;
pub mod server;
#[doc(hidden)]
pub mod testing;
pub mod webhook;

pub use admin::status;

mod admin;
mod capacity;
mod cluster;
mod codec;
mod connection;
mod leadership;
mod listener;
mod metrics;
mod ports;
mod protocol;
mod rewrite;
mod router;
mod security;
mod upstream;
