//! The brokers a response names, as clients may see them: fairlead's addresses, and only those
//! it listens on. A broker whose port is not bound (`ports`) is left out of broker lists, and
//! where an answer names it as a partition's leader, a key's coordinator or the controller,
//! a broker whose port is bound stands in for it (`ports::Advertised::stand_in`, where the
//! choice is explained).

use kafka_protocol::messages::{
    DescribeClusterResponse, FindCoordinatorResponse, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::ports::Advertised;
use crate::protocol::COORDINATOR_NOT_AVAILABLE;

/// Metadata: the brokers listed, each partition's leader, the controller.
pub fn metadata(a: &Advertised, r: &mut MetadataResponse) {
    r.brokers.retain(|b| a.is_bound(b.node_id.0));
    for b in r.brokers.iter_mut() {
        (b.host, b.port) = a.address(b.node_id.0).expect("kept above");
    }
    r.controller_id.0 = a.stand_in(r.controller_id.0, &[]);
    for t in r.topics.iter_mut() {
        for p in t.partitions.iter_mut() {
            if !a.is_bound(p.leader_id.0) {
                let replicas: Vec<i32> = p.replica_nodes.iter().map(|r| r.0).collect();
                p.leader_id.0 = a.stand_in(p.leader_id.0, &replicas);
            }
        }
    }
}

/// FindCoordinator: the coordinator of each key answered without error (v0-3: the one at the
/// top level; v4+: each of `coordinators`).
pub fn find_coordinator(a: &Advertised, version: i16, r: &mut FindCoordinatorResponse) {
    if version < 4 {
        if r.error_code == 0 && r.node_id.0 >= 0 {
            (r.node_id.0, r.host, r.port, r.error_code) = coordinator(a, r.node_id.0);
        }
    } else {
        for c in r
            .coordinators
            .iter_mut()
            .filter(|c| c.error_code == 0 && c.node_id.0 >= 0)
        {
            (c.node_id.0, c.host, c.port, c.error_code) = coordinator(a, c.node_id.0);
        }
    }
}

/// (node, host, port, error) a client is told coordinates what broker `node` does. With no
/// broker port bound at all, what a broker answers when it knows no coordinator:
/// COORDINATOR_NOT_AVAILABLE, node -1.
fn coordinator(a: &Advertised, node: i32) -> (i32, StrBytes, i32, i16) {
    let node = a.stand_in(node, &[]);
    match a.address(node) {
        Some((host, port)) => (node, host, port, 0),
        None => (-1, StrBytes::default(), -1, COORDINATOR_NOT_AVAILABLE),
    }
}

/// DescribeCluster (brokers, not controllers: see `rewrite`): the brokers listed, the controller.
pub fn describe_cluster(a: &Advertised, r: &mut DescribeClusterResponse) {
    r.brokers.retain(|b| a.is_bound(b.broker_id.0));
    for b in r.brokers.iter_mut() {
        (b.host, b.port) = a.address(b.broker_id.0).expect("kept above");
    }
    r.controller_id.0 = a.stand_in(r.controller_id.0, &[]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::BrokerId;

    /// Brokers 1, 2, 3 in the cluster; fairlead listens for those in `bound`, node N on 9000+N.
    fn advertised(bound: &[i32]) -> Advertised {
        Advertised::new(
            "fl".into(),
            bound.iter().map(|n| (*n, 9000 + *n as u16)).collect(),
        )
    }

    fn partition(i: i32, leader: i32, replicas: &[i32]) -> MetadataResponsePartition {
        MetadataResponsePartition::default()
            .with_partition_index(i)
            .with_leader_id(BrokerId(leader))
            .with_leader_epoch(7)
            .with_replica_nodes(replicas.iter().map(|r| BrokerId(*r)).collect())
            .with_isr_nodes(replicas.iter().map(|r| BrokerId(*r)).collect())
    }

    fn metadata_response() -> MetadataResponse {
        MetadataResponse::default()
            .with_brokers(
                [1, 2, 3]
                    .map(|n| {
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(n))
                            .with_host("kafka".into())
                            .with_port(9092)
                    })
                    .to_vec(),
            )
            .with_controller_id(BrokerId(2))
            .with_topics(vec![MetadataResponseTopic::default().with_partitions(
                vec![
                    partition(0, 1, &[1, 2, 3]),
                    partition(1, 2, &[2, 3, 1]),
                    partition(2, 2, &[2, 1]),
                    partition(3, -1, &[2]),
                ],
            )])
    }

    fn leaders(r: &MetadataResponse) -> Vec<(i32, i32)> {
        r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.leader_id.0, p.leader_epoch))
            .collect()
    }

    #[test]
    fn metadata_lists_bound_brokers_only_and_a_bound_replica_leads_in_place_of_an_unbound_one() {
        let mut r = metadata_response();
        metadata(&advertised(&[1, 3]), &mut r);
        let brokers: Vec<_> = r
            .brokers
            .iter()
            .map(|b| (b.node_id.0, b.host.to_string(), b.port))
            .collect();
        assert_eq!(
            brokers,
            vec![(1, "fl".into(), 9001), (3, "fl".into(), 9003)]
        );
        // Epochs untouched; replicas and ISR untouched (they are ids, not addresses).
        assert_eq!(leaders(&r), vec![(1, 7), (3, 7), (1, 7), (-1, 7)]);
        assert_eq!(r.topics[0].partitions[1].replica_nodes.len(), 3);
        assert_eq!(r.controller_id.0, 3, "the next bound broker above 2");
    }

    #[test]
    fn metadata_with_every_port_bound_is_only_readdressed() {
        let mut r = metadata_response();
        let before = leaders(&r);
        metadata(&advertised(&[1, 2, 3]), &mut r);
        assert_eq!(r.brokers.len(), 3);
        assert!(r.brokers.iter().all(|b| b.port == 9000 + b.node_id.0));
        assert_eq!(leaders(&r), before);
        assert_eq!(r.controller_id.0, 2);
    }

    #[test]
    fn metadata_with_no_port_bound_names_no_broker() {
        let mut r = metadata_response();
        metadata(&advertised(&[]), &mut r);
        assert!(r.brokers.is_empty());
        assert_eq!(leaders(&r), vec![(-1, 7); 4]);
    }

    #[test]
    fn find_coordinator_names_a_bound_broker_in_place_of_an_unbound_one() {
        let a = advertised(&[1, 3]);
        let mut v3 = FindCoordinatorResponse::default()
            .with_node_id(BrokerId(2))
            .with_host("kafka".into())
            .with_port(9092);
        find_coordinator(&a, 3, &mut v3);
        assert_eq!(
            (v3.error_code, v3.node_id.0, v3.host.as_str(), v3.port),
            (0, 3, "fl", 9003)
        );

        let c = |key: &str, node: i32, error: i16| {
            Coordinator::default()
                .with_key(StrBytes::from_string(key.into()))
                .with_node_id(BrokerId(node))
                .with_host(if node < 0 { "" } else { "kafka" }.into())
                .with_port(if node < 0 { -1 } else { 9092 })
                .with_error_code(error)
        };
        let mut v4 = FindCoordinatorResponse::default().with_coordinators(vec![
            c("a", 1, 0),
            c("b", 2, 0),
            c("c", -1, 15),
        ]);
        find_coordinator(&a, 4, &mut v4);
        let got: Vec<_> = v4
            .coordinators
            .iter()
            .map(|c| (c.key.to_string(), c.error_code, c.node_id.0, c.port))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), 0, 1, 9001),
                ("b".into(), 0, 3, 9003),
                ("c".into(), 15, -1, -1)
            ]
        );
    }

    #[test]
    fn find_coordinator_with_no_port_bound_answers_coordinator_not_available() {
        let mut v3 = FindCoordinatorResponse::default()
            .with_node_id(BrokerId(2))
            .with_host("kafka".into())
            .with_port(9092);
        find_coordinator(&advertised(&[]), 3, &mut v3);
        assert_eq!(
            (v3.error_code, v3.node_id.0, v3.host.as_str(), v3.port),
            (15, -1, "", -1)
        );
    }

    #[test]
    fn describe_cluster_lists_bound_brokers_only() {
        let mut r = DescribeClusterResponse::default()
            .with_controller_id(BrokerId(2))
            .with_brokers(
                [1, 2, 3]
                    .map(|n| {
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(n))
                            .with_host("kafka".into())
                            .with_port(9092)
                    })
                    .to_vec(),
            );
        describe_cluster(&advertised(&[1, 3]), &mut r);
        let got: Vec<_> = r.brokers.iter().map(|b| (b.broker_id.0, b.port)).collect();
        assert_eq!(got, vec![(1, 9001), (3, 9003)]);
        assert_eq!(r.controller_id.0, 3);
    }
}
