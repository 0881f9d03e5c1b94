//! Helpers for rebuilding topic -> partitions nesting from flat partition lists.

use kafka_protocol::messages::{fetch_response, produce_response};
use kafka_protocol::protocol::StrBytes;

use super::partitioned::{EndpointList, EndpointVisitor};
use crate::leadership::TopicRef;

/// Groups partitions by topic, topics in order of first appearance, partitions in order.
pub fn by_topic<'a, P>(
    parts: impl IntoIterator<Item = (&'a TopicRef, P)>,
) -> Vec<(&'a TopicRef, Vec<P>)> {
    let mut out: Vec<(&TopicRef, Vec<P>)> = Vec::new();
    for (t, p) in parts {
        match out.iter_mut().find(|(k, _)| *k == t) {
            Some((_, v)) => v.push(p),
            None => out.push((t, vec![p])),
        }
    }
    out
}

/// Owned variant of [`by_topic`].
pub fn by_topic_owned<P>(parts: Vec<(TopicRef, P)>) -> Vec<(TopicRef, Vec<P>)> {
    let mut out: Vec<(TopicRef, Vec<P>)> = Vec::new();
    for (t, p) in parts {
        match out.iter_mut().find(|(k, _)| *k == t) {
            Some((_, v)) => v.push(p),
            None => out.push((t, vec![p])),
        }
    }
    out
}

/// The topic reference a (name, id) pair stands for: the id when set (v13+ APIs), else the name.
pub fn topic_ref(name: &StrBytes, id: &uuid::Uuid) -> TopicRef {
    if id.is_nil() {
        TopicRef::Name(name.clone())
    } else {
        TopicRef::Id(*id)
    }
}

/// Splits a topic reference back into (name, id) fields.
pub fn name_and_id(t: &TopicRef) -> (StrBytes, uuid::Uuid) {
    match t {
        TopicRef::Name(n) => (n.clone(), uuid::Uuid::nil()),
        TopicRef::Id(id) => (StrBytes::default(), *id),
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
            fn len(&self) -> usize {
                Vec::len(self)
            }
        }
    };
}

endpoint_list!(produce_response::NodeEndpoint);
endpoint_list!(fetch_response::NodeEndpoint);

/// Adds endpoints of `from` not already in `into` (by node id).
pub fn union_endpoints<T: Clone>(into: &mut Vec<T>, from: &[T], id: impl Fn(&T) -> i32) {
    for e in from {
        if !into.iter().any(|x| id(x) == id(e)) {
            into.push(e.clone());
        }
    }
}
