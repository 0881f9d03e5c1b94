//! KIP-951 node endpoints: the broker addresses that Produce (v10+), Fetch (v16+), ShareFetch
//! and ShareAcknowledge responses carry next to a leadership error. One view over the four
//! message types, so learning them (the cluster) and rewriting them (for clients) are written
//! once.

use kafka_protocol::messages::{
    fetch_response, produce_response, share_acknowledge_response, share_fetch_response,
};
use kafka_protocol::protocol::StrBytes;

/// Called with (node id, host, port, rack) of each endpoint; may change host and port.
pub type EndpointVisitor<'a> = dyn FnMut(&mut i32, &mut StrBytes, &mut i32, Option<&StrBytes>) + 'a;

/// A list of node endpoints, whatever the response type.
pub trait EndpointList {
    fn visit(&mut self, f: &mut EndpointVisitor<'_>);
    /// Keeps the endpoints whose node id `keep` accepts.
    fn retain_nodes(&mut self, keep: &mut dyn FnMut(i32) -> bool);
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

macro_rules! endpoint_list {
    ($t:ty) => {
        impl EndpointList for Vec<$t> {
            fn visit(&mut self, f: &mut EndpointVisitor<'_>) {
                for e in self.iter_mut() {
                    f(&mut e.node_id.0, &mut e.host, &mut e.port, e.rack.as_ref());
                }
            }
            fn retain_nodes(&mut self, keep: &mut dyn FnMut(i32) -> bool) {
                self.retain(|e| keep(e.node_id.0));
            }
            fn len(&self) -> usize {
                Vec::len(self)
            }
        }
    };
}

endpoint_list!(produce_response::NodeEndpoint);
endpoint_list!(fetch_response::NodeEndpoint);
endpoint_list!(share_fetch_response::NodeEndpoint);
endpoint_list!(share_acknowledge_response::NodeEndpoint);

/// Adds endpoints of `from` not already in `into` (by node id).
pub fn union_endpoints<T: Clone>(into: &mut Vec<T>, from: &[T], id: impl Fn(&T) -> i32) {
    for e in from {
        if !into.iter().any(|x| id(x) == id(e)) {
            into.push(e.clone());
        }
    }
}
