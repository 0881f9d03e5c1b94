//! The cluster as fairlead knows and reaches it, shared by every connection: configuration,
//! who leads what (the leadership cache and its refresher), fairlead's own broker connections,
//! the ports clients reach each broker at, and the incident log of leadership changes.

use std::sync::Arc;

use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use crate::codec::endpoints::EndpointList;
use crate::config::Config;
use crate::leadership::coordinators::{CoordinatorKey, Finder};
use crate::leadership::incidents::Incidents;
use crate::leadership::refresh::{RefreshError, Refreshed, Refresher, Trigger};
use crate::leadership::{Broker, LeaderChange, Leadership, Observed, TopicRef};
use crate::ports::{Advertised, Ports};
use crate::security::UpstreamSecurity;
use crate::upstream::pool::{Owner, Pool};
use crate::upstream::{Upstream, UpstreamConfig, UpstreamError, BOOTSTRAP_NODE};

pub struct Cluster {
    pub cfg: Arc<Config>,
    /// Who leads each partition, and where each broker is.
    pub leadership: Arc<Leadership>,
    /// fairlead's own Metadata requests, single-flight.
    pub refresher: Refresher,
    /// fairlead's own FindCoordinator requests, single-flight and batched.
    pub finder: Finder,
    /// fairlead's own broker connections (Metadata, log checks): never a client's request.
    pub pool: Arc<Pool>,
    /// The ports clients reach each broker at; new brokers get theirs as soon as they are seen.
    pub ports: Ports,
    /// How every broker connection is made (timeouts, TLS, SASL).
    pub upstream_cfg: UpstreamConfig,
    /// One log line per leadership change (see `leadership::incidents`).
    pub incidents: Incidents,
    advertised_host: StrBytes,
}

impl Cluster {
    pub fn new(cfg: Config, ports: Ports, security: Arc<UpstreamSecurity>) -> Arc<Cluster> {
        let cfg = Arc::new(cfg);
        let upstream_cfg = UpstreamConfig {
            connect_timeout: cfg.connect_timeout,
            max_frame_bytes: cfg.max_frame_bytes,
            security,
            as_client: None,
        };
        let leadership = Arc::new(Leadership::with_limits(cfg.metadata_scope));
        let pool = Arc::new(Pool::new(upstream_cfg.clone()));
        let refresher = Refresher::new(
            leadership.clone(),
            pool.clone(),
            cfg.bootstrap.clone(),
            cfg.request_timeout,
        );
        let finder = Finder::new(
            leadership.clone(),
            pool.clone(),
            cfg.bootstrap.clone(),
            cfg.request_timeout,
        );
        let advertised_host = StrBytes::from_string(cfg.advertised_host.clone());
        Arc::new(Cluster {
            cfg,
            leadership,
            refresher,
            finder,
            pool,
            ports,
            upstream_cfg,
            incidents: Incidents::default(),
            advertised_host,
        })
    }

    /// What clients may be told about brokers now: the brokers whose ports are bound, at the
    /// advertised host (see `ports::Advertised`). One snapshot per response, so one answer
    /// never names a broker in one place and leaves it out in another.
    pub fn advertised(&self) -> Advertised {
        self.ports.advertised(&self.advertised_host)
    }

    /// Refreshes leadership (single-flight; see `leadership::refresh`), opens listeners for new
    /// brokers and logs what moved.
    pub async fn refresh(
        &self,
        seen_generation: u64,
        trigger: Trigger,
    ) -> Result<Option<Refreshed>, RefreshError> {
        let r = self.refresher.refresh(seen_generation, trigger).await?;
        if let Some(r) = &r {
            self.after_update(&r.new_brokers, &r.changes);
            self.prune(&self.pool);
        }
        Ok(r)
    }

    /// A Metadata response on its way to a client: free information, about the topics fairlead
    /// tracks and those the client `asked` for by name (an answer for every topic does not make
    /// fairlead track every topic).
    pub fn learn_metadata(&self, resp: &MetadataResponse, asked: &dyn Fn(&str) -> bool) {
        let (added, changes) = self.leadership.apply_metadata(resp, asked);
        self.after_update(&added, &changes);
    }

    /// A KIP-951 CurrentLeader hint from a Produce or Fetch response.
    pub fn learn_leader(&self, topic: &TopicRef, partition: i32, leader: i32, epoch: i32) {
        let Some(name) = self.leadership.name_of(topic) else {
            return;
        };
        let id = self.leadership.topic_id(&name).unwrap_or_default();
        if let Some(c) =
            self.leadership
                .update_partition(&name, id, partition, Observed::leader(leader, epoch))
        {
            self.after_update(&[], &[c]);
        }
    }

    /// A FindCoordinator answer on its way to a client: `node` coordinates `key`.
    pub fn learn_coordinator(&self, key: CoordinatorKey, node: i32) {
        if node >= 0 {
            self.leadership.coordinators.learn(key, node);
        }
    }

    /// KIP-951 node endpoints: where the brokers a response names live.
    pub fn learn_endpoints(&self, list: &mut dyn EndpointList) {
        let mut added = Vec::new();
        list.visit(&mut |node, host, port, rack| {
            let b = Broker {
                id: *node,
                host: host.to_string(),
                port: *port,
                rack: rack.map(|r| r.to_string()),
            };
            if self.leadership.upsert_broker(b) {
                added.push(*node);
            }
        });
        self.after_update(&added, &[]);
    }

    /// Rewrites KIP-951 node endpoints to fairlead's addresses. A broker whose port is not
    /// bound is left out: a client given a leader hint without its endpoint asks for metadata,
    /// where another broker stands in for it.
    pub fn rewrite_endpoints(&self, list: &mut dyn EndpointList) {
        let advertised = self.advertised();
        list.retain_nodes(&mut |node| advertised.is_bound(node));
        list.visit(&mut |node, host, port, _| {
            if let Some(a) = advertised.address(*node) {
                (*host, *port) = a;
            }
        });
    }

    fn after_update(&self, new_brokers: &[i32], changes: &[LeaderChange]) {
        for id in new_brokers {
            self.ports.ensure_node(*id);
        }
        for c in changes {
            debug!(
                topic = c.topic.as_str(),
                partition = c.partition,
                old_leader = c.old_leader,
                new_leader = c.new_leader,
                leader_epoch = c.epoch,
                "partition leadership moved"
            );
            self.incidents.leader_changed(c);
        }
    }

    /// fairlead's own connection to broker `node` (Metadata, log checks): never carries a
    /// client's request, so nothing a client asks a broker to wait for can delay it.
    pub async fn upstream(&self, node: i32) -> Result<Arc<Upstream>, UpstreamError> {
        self.upstream_in(&self.pool, node, None).await
    }

    /// The connection to broker `node` in `pool` for `owner`'s requests (a producer's, or None:
    /// see `pool`), connecting if needed. Connections in `pool` to brokers that have left the
    /// cluster since it was last used are dropped first.
    pub async fn upstream_in(
        &self,
        pool: &Pool,
        node: i32,
        owner: Option<Owner>,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        self.prune(pool);
        let Some(b) = self.leadership.broker(node) else {
            return Err(UpstreamError::Connect {
                node,
                addr: String::new(),
                reason: "broker not in metadata".into(),
            });
        };
        pool.get(node, &b.addr(), owner).await
    }

    /// [`Cluster::upstream_in`] without waiting: `None` when a connection must be opened first.
    pub fn upstream_ready(
        &self,
        pool: &Pool,
        node: i32,
        owner: Option<Owner>,
    ) -> Option<Result<Arc<Upstream>, UpstreamError>> {
        self.prune(pool);
        let Some(b) = self.leadership.broker(node) else {
            return Some(Err(UpstreamError::Connect {
                node,
                addr: String::new(),
                reason: "broker not in metadata".into(),
            }));
        };
        pool.ready(node, &b.addr(), owner)
    }

    /// Drops `pool`'s connections to brokers that left the cluster since it was last pruned.
    fn prune(&self, pool: &Pool) {
        let version = self.leadership.brokers_version();
        if pool.brokers_version() != version {
            let brokers = self.leadership.brokers();
            pool.retain(version, |n| n == BOOTSTRAP_NODE || brokers.contains_key(&n));
        }
    }

    /// A dedicated connection for a client: to broker `node`, or (bootstrap connections, or
    /// the broker is unreachable and `fallback` allows) to any broker that answers.
    pub async fn connect_home(
        &self,
        node: Option<i32>,
        fallback: bool,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        let mut last = None;
        if let Some(node) = node {
            match self.leadership.broker(node) {
                Some(b) => match Upstream::connect(node, &b.addr(), &self.upstream_cfg, true).await
                {
                    Ok(up) => return Ok(up),
                    Err(e) => last = Some(e),
                },
                None => {
                    last = Some(UpstreamError::Connect {
                        node,
                        addr: String::new(),
                        reason: "broker not in metadata".into(),
                    })
                }
            }
            if !fallback {
                return Err(last.expect("set above"));
            }
        }
        let brokers = self.leadership.brokers();
        let mut candidates: Vec<(i32, String)> = brokers
            .values()
            .filter(|b| Some(b.id) != node)
            .map(|b| (b.id, b.addr()))
            .collect();
        // Spread bootstrap connections over the brokers.
        if !candidates.is_empty() {
            let k = rand::random_range(0..candidates.len());
            candidates.rotate_left(k);
        }
        candidates.extend(
            self.cfg
                .bootstrap
                .iter()
                .map(|a| (BOOTSTRAP_NODE, a.clone())),
        );
        for (id, addr) in candidates {
            match Upstream::connect(id, &addr, &self.upstream_cfg, true).await {
                Ok(up) => return Ok(up),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(UpstreamError::Connect {
            node: -1,
            addr: String::new(),
            reason: "no broker known".into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_to_brokers_that_left_are_dropped() {
        let mut brokers = Vec::new();
        let mut listeners = Vec::new();
        for id in [1, 2] {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            listeners.push(l);
            brokers.push(Broker {
                id,
                host: addr.ip().to_string(),
                port: addr.port().into(),
                rack: None,
            });
        }
        let cluster = crate::testing::cluster(Config::with_bootstrap("127.0.0.1:1"));
        cluster.leadership.set_brokers(brokers.clone());
        let pool = Pool::new(cluster.upstream_cfg.clone());
        cluster.upstream_in(&pool, 1, None).await.unwrap();
        cluster.upstream_in(&pool, 2, None).await.unwrap();
        assert_eq!(pool.nodes(), vec![1, 2]);
        cluster.leadership.set_brokers(brokers[..1].to_vec());
        cluster.upstream_in(&pool, 1, None).await.unwrap();
        assert_eq!(
            pool.nodes(),
            vec![1],
            "broker 2 left: its connection is dropped"
        );
        assert!(cluster.upstream_in(&pool, 2, None).await.is_err());
    }

    #[tokio::test]
    async fn node_endpoints_name_only_brokers_whose_port_is_bound() {
        use kafka_protocol::messages::produce_response::NodeEndpoint;
        use kafka_protocol::messages::BrokerId;
        // node_port_base 0: node N is served on port N. One port free, one held elsewhere.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let free_node = free.local_addr().unwrap().port() as i32;
        drop(free);
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let held_node = held.local_addr().unwrap().port() as i32;
        let mut cfg = Config::with_bootstrap("127.0.0.1:1");
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.node_port_base = 0;
        let cluster = crate::testing::cluster(cfg);
        cluster.ports.ensure_node(free_node);
        cluster.ports.ensure_node(held_node);
        let mut list: Vec<NodeEndpoint> = [free_node, held_node]
            .map(|n| {
                NodeEndpoint::default()
                    .with_node_id(BrokerId(n))
                    .with_host("kafka".into())
                    .with_port(9092)
            })
            .to_vec();
        cluster.rewrite_endpoints(&mut list);
        let got: Vec<_> = list
            .iter()
            .map(|e| (e.node_id.0, e.host.to_string(), e.port))
            .collect();
        assert_eq!(got, vec![(free_node, "127.0.0.1".to_string(), free_node)]);
    }
}
