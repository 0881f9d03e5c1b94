//! Helpers for rebuilding topic -> partitions nesting from flat partition lists.

use kafka_protocol::protocol::StrBytes;

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
