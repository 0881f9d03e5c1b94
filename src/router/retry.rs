//! Every re-send decision: whether a partition or a coordinator request that came back with an
//! error is sent again, and where (`decide`, `decide_coordinator`, `resend_forwarded`,
//! `ask_again`).
//!
//! Every rule here is a protocol fact, with its source in the broker's code where it is not
//! the error's plain meaning; each has a test below and an end-to-end test against a real broker
//! (tests/cluster/replay_rules.rs). The codes are named in `protocol`.
//!
//! * NOT_LEADER_OR_FOLLOWER (6) and FENCED_LEADER_EPOCH (74) mean "ask the current leader".
//!   Reads are always safe to re-send. A produce is safe to re-send when its batches are
//!   idempotent or transactional (producer id >= 0: the new leader de-duplicates by sequence),
//!   or when the broker's answer proves nothing was written: base_offset = -1, which the broker
//!   reports when it refused before appending. A 6 with base_offset >= 0 comes from a produce
//!   that was appended and then lost leadership while waiting for acks=all; its records may
//!   survive. Before a non-idempotent batch is replayed, fairlead reads the current leader's log
//!   at that offset (`written`): the same batch there means it survived (the client gets a
//!   success), another batch or no log there means it is gone (it is replayed); as long as the
//!   log cannot tell, the partition waits, and at the deadline the error goes to the client.
//! * LEADER_NOT_AVAILABLE (5) and UNKNOWN_LEADER_EPOCH (75) mean "an election is settling":
//!   wait a little and re-send, under the same rules.
//! * OFFSET_NOT_AVAILABLE (78) from ListOffsets means the new leader has not caught up its high
//!   watermark yet: retry the same leader.
//! * OUT_OF_ORDER_SEQUENCE_NUMBER (45) on an idempotent batch whose partition is being recovered
//!   means an earlier batch of the same producer is still being replayed: re-send it after.
//! * Transient produce errors, re-sent to the same leader after a back-off (while its in-sync
//!   set recovers, a SIGKILLed follower is fenced, a transaction coordinator moves):
//!   - NOT_ENOUGH_REPLICAS (19) is raised before anything is appended: the leader checks its
//!     in-sync set against min.insync.replicas for acks=all before `appendAsLeader` (apache/kafka
//!     core/src/main/scala/kafka/cluster/Partition.scala, `appendRecordsToLeader`), and KIP-890's
//!     transaction verification answers it before the append when the transaction coordinator
//!     cannot be reached (ReplicaManager maps that failure to NOT_ENOUGH_REPLICAS for producers).
//!     So every producer's batch may be re-sent: an idempotent one in any case; a
//!     non-idempotent one only when no later batch of its partition is in flight behind it (a
//!     later one could otherwise be appended first), and later ones wait until it is settled.
//!   - NOT_ENOUGH_REPLICAS_AFTER_APPEND (20: the in-sync set shrank below min.insync.replicas
//!     after the append, Partition.scala `checkEnoughReplicasReachOffset`) and REQUEST_TIMED_OUT
//!     (7: the followers did not catch up within the request's timeout_ms, DelayedProduce's
//!     expiry) come after the batch was appended: re-sent only for idempotent and transactional
//!     producers, whose re-send the broker recognises as a duplicate (its producer state keeps
//!     the last five batches per partition) and answers with the first append's offset once it
//!     is replicated. A non-idempotent batch could be written twice: its error passes through.
//! * A connection that closed with the request in flight: reads and idempotent produce are
//!   re-sent; a non-idempotent produce may have been written, so it is not.
//! * Anything else passes through to the client unchanged.
//!
//! Coordinator moves (group and transaction coordinators, [`decide_coordinator`]): a
//! coordinator error does not prove the request was not applied (a write that lost its
//! coordinator while waiting for replication is answered NOT_COORDINATOR although it is in the
//! log), so only APIs whose replay the coordinator accepts as a repeat are replayed:
//!
//! * NOT_COORDINATOR (16) and COORDINATOR_NOT_AVAILABLE (15) mean "find the coordinator again
//!   and ask it"; COORDINATOR_LOAD_IN_PROGRESS (14), raised before anything is done, "ask the
//!   same coordinator again in a moment"; a lost connection, "ask the coordinator again".
//! * Why each API is safe to repeat (Kafka 3.9 and 4.x coordinators):
//!   - JoinGroup: a member that joins again is the client's own retry (same member id, or
//!     MEMBER_ID_REQUIRED once more for a new member); static members are keyed by instance id.
//!   - SyncGroup: a stable group returns the stored assignment to a member that asks again.
//!   - Heartbeat: no state changes.
//!   - LeaveGroup: leaving twice leaves the group as once (the second is an UNKNOWN_MEMBER_ID
//!     per member, which the client only logs).
//!   - OffsetCommit and TxnOffsetCommit: the same offsets written again; the lanes keep a
//!     connection's commits to a group in order, so an older one never lands after a newer one.
//!   - OffsetFetch: a read.
//!   - InitProducerId (transactional): KIP-360 makes a repeat with the expected producer id and
//!     epoch return the same epoch; the first call of a producer (no expected epoch) bumps the
//!     epoch once more, which no one has used yet.
//!   - AddPartitionsToTxn (v0-3) and AddOffsetsToTxn: adding what is already in the
//!     transaction is answered NONE.
//!   - EndTxn: a repeat finds the transaction preparing (CONCURRENT_TRANSACTIONS, which the
//!     producer retries) or complete (NONE), also with KIP-890's epoch bump.
//!   - ConsumerGroupHeartbeat (KIP-848): the coordinator accepts a member's previous epoch only
//!     if the heartbeat names its owned partitions, which steady-state heartbeats do not. So it
//!     is replayed after a coordinator error, but if a heartbeat without its partitions is
//!     answered FENCED_MEMBER_EPOCH or UNKNOWN_MEMBER_ID by the replay, the client gets the
//!     original error instead ([`keep_original`]): its own retry, a full heartbeat, then
//!     succeeds. After a lost connection (no error to fall back on) it is replayed only when it
//!     carries its whole state (epoch 0 or below, or its partitions).
//! * Share groups (KIP-932): ShareFetch and ShareAcknowledge acquire and acknowledge records:
//!   a repeat is not a repeat. They are never replayed (they are not coordinator APIs here).
//! * Everything else passes through and is counted.
//!
//! Also here: how long a request may take and how long to wait between attempts ([`Budget`]),
//! when a silent former leader is given up on ([`former_leader_lost`]), what a client gets for
//! a partition no broker answered ([`code_without_answer`]), and which forwarded requests are
//! sent again when the client's broker connection drops ([`resend_forwarded`]).

use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;

use crate::protocol::{
    is_leadership_code, COORDINATOR_APIS, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
    FENCED_LEADER_EPOCH, FENCED_MEMBER_EPOCH, LEADER_NOT_AVAILABLE, NETWORK_EXCEPTION,
    NOT_COORDINATOR, NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER,
    OFFSET_NOT_AVAILABLE, OUT_OF_ORDER_SEQUENCE_NUMBER, REQUEST_TIMED_OUT, UNKNOWN_LEADER_EPOCH,
    UNKNOWN_MEMBER_ID,
};

/// What happened to one partition of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The broker answered this error code for the partition.
    Code(i16),
    /// The connection closed before an answer; the broker may or may not have acted.
    ConnectionLost,
    /// The request never left fairlead (no connection could be made).
    NotSent,
}

/// Facts about a produce partition that decide whether re-sending is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceFacts {
    /// Every batch carries a producer id (idempotent or transactional producer).
    pub idempotent: bool,
    /// base_offset of the partition's response (-1 when nothing was appended).
    pub base_offset: i64,
    /// An earlier batch of this partition, on this connection, is being replayed.
    pub partition_recovering: bool,
    /// No other batch of its partition (from this producer) is in flight: nothing sent after
    /// it can be appended before it.
    pub alone: bool,
}

impl ProduceFacts {
    /// Nothing of this partition's batches can be in any log.
    fn unwritten(&self) -> bool {
        self.base_offset < 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the partition to its current leader (after refreshing who that is).
    Reroute,
    /// An election is settling: wait, refresh, then send to the leader.
    WaitThenReroute,
    /// Send it again to the same leader after a short wait.
    RetrySame,
    /// A non-idempotent write that may have been appended: look in the current leader's log
    /// before deciding (see `written`).
    Verify,
    /// Give the client the answer as it is.
    PassThrough,
}

pub fn decide(api: ApiKey, failure: Failure, produce: Option<ProduceFacts>) -> Decision {
    // Reads (and DeleteRecords, which is idempotent) and idempotent writes are always safe to
    // re-send; a non-idempotent write only once it is known that nothing was written.
    let safe = produce.is_none_or(|p| p.idempotent || p.unwritten());
    let leadership = |then: Decision| match produce {
        Some(p) if !p.idempotent && !p.unwritten() => Decision::Verify,
        _ => then,
    };
    match failure {
        Failure::NotSent => Decision::Reroute,
        Failure::ConnectionLost => {
            if produce.is_none_or(|p| p.idempotent) {
                Decision::Reroute
            } else {
                Decision::PassThrough
            }
        }
        Failure::Code(NOT_LEADER_OR_FOLLOWER) | Failure::Code(FENCED_LEADER_EPOCH) => {
            leadership(Decision::Reroute)
        }
        Failure::Code(LEADER_NOT_AVAILABLE) | Failure::Code(UNKNOWN_LEADER_EPOCH) => {
            leadership(Decision::WaitThenReroute)
        }
        Failure::Code(OFFSET_NOT_AVAILABLE) if api == ApiKey::ListOffsets => Decision::RetrySame,
        Failure::Code(OUT_OF_ORDER_SEQUENCE_NUMBER) => match produce {
            Some(p) if p.idempotent && p.partition_recovering && safe => Decision::Reroute,
            _ => Decision::PassThrough,
        },
        Failure::Code(NOT_ENOUGH_REPLICAS) => match produce {
            Some(p) if p.idempotent || p.alone => Decision::RetrySame,
            _ => Decision::PassThrough,
        },
        Failure::Code(NOT_ENOUGH_REPLICAS_AFTER_APPEND | REQUEST_TIMED_OUT) => match produce {
            Some(p) if p.idempotent => Decision::RetrySame,
            _ => Decision::PassThrough,
        },
        Failure::Code(_) => Decision::PassThrough,
    }
}

/// What the coordinator rules need to know of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoordinatorFacts {
    /// Applied once, the request is accepted again unchanged. True for every coordinator API
    /// but a ConsumerGroupHeartbeat that does not carry its whole state.
    pub repeatable: bool,
}

/// Whether a coordinator request that met `failure` is sent again: to the coordinator found
/// anew (`Reroute`), to the same one after a wait (`RetrySame`), or not at all.
pub fn decide_coordinator(api: ApiKey, failure: Failure, facts: CoordinatorFacts) -> Decision {
    if !COORDINATOR_APIS.contains(&api) {
        return Decision::PassThrough;
    }
    match failure {
        Failure::NotSent => Decision::Reroute,
        Failure::ConnectionLost if facts.repeatable => Decision::Reroute,
        Failure::ConnectionLost => Decision::PassThrough,
        Failure::Code(NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE) => Decision::Reroute,
        Failure::Code(COORDINATOR_LOAD_IN_PROGRESS) => Decision::RetrySame,
        Failure::Code(_) => Decision::PassThrough,
    }
}

/// A FindCoordinator answered COORDINATOR_NOT_AVAILABLE: the key's coordinator is being
/// elected, or its partition of `__consumer_offsets` / `__transaction_state` is being created or
/// has no leader yet. A read: asked again after a wait, within the absorb budget, rather than
/// handing the client an error it would only retry.
pub fn ask_again(api: ApiKey, code: i16) -> bool {
    api == ApiKey::FindCoordinator && code == COORDINATOR_NOT_AVAILABLE
}

/// After a coordinator error was replayed: whether the client gets the original error instead
/// of the replay's answer (`replay_code`). A ConsumerGroupHeartbeat without its whole state is
/// fenced by a coordinator that had applied the first attempt; the client's own retry after
/// the original error is a full heartbeat, which is accepted.
pub fn keep_original(api: ApiKey, facts: CoordinatorFacts, replay_code: i16) -> bool {
    api == ApiKey::ConsumerGroupHeartbeat
        && !facts.repeatable
        && matches!(replay_code, FENCED_MEMBER_EPOCH | UNKNOWN_MEMBER_ID)
}

/// Codes fairlead may re-send a partition for (under the rules of [`decide`]): an answer that
/// still carries one after a re-send is a failed re-send.
pub fn is_retried_code(code: i16) -> bool {
    is_leadership_code(code)
        || matches!(
            code,
            REQUEST_TIMED_OUT
                | NOT_ENOUGH_REPLICAS
                | NOT_ENOUGH_REPLICAS_AFTER_APPEND
                | OUT_OF_ORDER_SEQUENCE_NUMBER
                | OFFSET_NOT_AVAILABLE
        )
}

/// The longest wait between two attempts (the first is `retry_backoff_ms`, doubling).
pub const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// The time a request may take, and the waits between its attempts.
#[derive(Debug, Clone)]
pub struct Budget {
    started: Instant,
    /// Waiting for a broker's answer to what was sent ends here: a broker that accepted a
    /// request and never answers (hung, paused) must not hold the client forever, so past what
    /// the broker may legitimately take plus the absorb budget its connection is abandoned and
    /// the outcome treated as unknown.
    answer_by: Instant,
    /// Absorbing ends here: what is not settled by then keeps the broker's answer.
    deadline: Instant,
    backoff: Duration,
}

impl Budget {
    /// `broker_wait`: how long the broker may legitimately take (Produce timeout, Fetch
    /// max_wait); `absorb`: how long fairlead may spend absorbing (`absorb_timeout_ms`);
    /// `hold_limit`: how long a read may be held at most (see `RoutedApi::hold_limit`).
    pub fn new(
        started: Instant,
        broker_wait: Duration,
        absorb: Duration,
        hold_limit: Option<Duration>,
        first_backoff: Duration,
    ) -> Budget {
        let absorb_by = started + absorb;
        Budget {
            started,
            answer_by: absorb_by + broker_wait,
            deadline: hold_limit.map_or(absorb_by, |h| absorb_by.min(started + h)),
            backoff: first_backoff,
        }
    }

    /// The same budget, ending `limit` after the start at the latest (what the client waits).
    pub fn within(mut self, limit: Duration) -> Budget {
        let end = self.started + limit;
        self.answer_by = self.answer_by.min(end);
        self.deadline = self.deadline.min(end);
        self
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn answer_by(&self) -> Instant {
        self.answer_by
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Waits before the next attempt (never past the deadline); each wait doubles the next, up
    /// to [`MAX_BACKOFF`].
    pub async fn back_off(&mut self) {
        let left = self.deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(self.backoff.min(left)).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// How long a partition must have had another leader before a request to its former leader that
/// has not been answered may be given up on early (see [`former_leader_lost`]).
pub const MOVED_FOR: Duration = Duration::from_secs(2);

/// How long a former leader must have said nothing on the connection before its request is
/// given up on. 2 s was too short: a live broker busy with an election (acks=all requests in
/// purgatory) stayed silent for that long once in a dozen acceptance runs, and a non-idempotent
/// write given up on is a NETWORK_EXCEPTION for the client.
pub const SILENT_FOR: Duration = Duration::from_secs(6);

/// A partition's leader changed `ago`, long enough ago to give up on its former leader.
pub fn moved_long_enough(ago: Duration) -> bool {
    ago >= MOVED_FOR
}

/// A request to a broker that no longer leads any of its partitions (each moved long enough
/// ago) is treated as lost once that broker has been silent on the connection for
/// [`SILENT_FOR`] (`silent`: None when there is no connection): a live former leader answers
/// NOT_LEADER at once, and one that is merely slow keeps answering other requests there.
pub fn former_leader_lost(silent: Option<Duration>) -> bool {
    silent.is_none_or(|d| d >= SILENT_FOR)
}

/// The code a client gets for a partition fairlead could not get any answer for: what it would
/// have seen talking to a broker that went away (reads: NOT_LEADER_OR_FOLLOWER, so it
/// refreshes and retries; writes: NETWORK_EXCEPTION, retriable, never a fake success).
pub fn code_without_answer(api: ApiKey) -> i16 {
    if api == ApiKey::Produce {
        NETWORK_EXCEPTION
    } else {
        NOT_LEADER_OR_FOLLOWER
    }
}

/// APIs that may be re-sent on a new connection when the client's broker connection drops with
/// them in flight: reads without side effects. Anything else gets the connection closed, as a
/// direct client would.
pub fn safe_to_resend(key: Option<ApiKey>) -> bool {
    matches!(
        key,
        Some(
            ApiKey::ApiVersions
                | ApiKey::Metadata
                | ApiKey::FindCoordinator
                | ApiKey::DescribeCluster
                | ApiKey::ListGroups
                | ApiKey::DescribeGroups
                | ApiKey::OffsetFetch
                | ApiKey::DescribeConfigs
                | ApiKey::DescribeAcls
                | ApiKey::DescribeLogDirs
                | ApiKey::DescribeProducers
                | ApiKey::DescribeTransactions
                | ApiKey::ListTransactions
                | ApiKey::DescribeTopicPartitions
        )
    )
}

/// How many times a forwarded request whose broker connection was lost is sent again.
pub const MAX_RESENDS: u32 = 3;

/// Whether a forwarded request (not routed: it went on the client's own broker connection) is
/// sent again after that connection was lost with it in flight, on attempt `attempt` (1 =
/// the first re-send). Never on a connection the client authenticated itself (SASL
/// passthrough): a new one would not carry its identity.
pub fn resend_forwarded(key: Option<ApiKey>, client_authenticated: bool, attempt: u32) -> bool {
    safe_to_resend(key) && !client_authenticated && attempt <= MAX_RESENDS
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;

    fn produce(idempotent: bool, base_offset: i64) -> Option<ProduceFacts> {
        Some(ProduceFacts {
            idempotent,
            base_offset,
            partition_recovering: false,
            alone: false,
        })
    }

    #[test]
    fn reads_are_always_rerouted_on_leadership_errors() {
        for api in [
            ApiKey::Fetch,
            ApiKey::ListOffsets,
            ApiKey::OffsetForLeaderEpoch,
            ApiKey::DeleteRecords,
        ] {
            assert_eq!(decide(api, Failure::Code(6), None), Reroute);
            assert_eq!(decide(api, Failure::Code(74), None), Reroute);
            assert_eq!(decide(api, Failure::Code(5), None), WaitThenReroute);
            assert_eq!(decide(api, Failure::Code(75), None), WaitThenReroute);
            assert_eq!(decide(api, Failure::ConnectionLost, None), Reroute);
            assert_eq!(decide(api, Failure::Code(3), None), PassThrough);
        }
    }

    #[test]
    fn idempotent_produce_is_always_replayed() {
        assert_eq!(
            decide(ApiKey::Produce, Failure::Code(6), produce(true, 42)),
            Reroute
        );
        assert_eq!(
            decide(ApiKey::Produce, Failure::Code(6), produce(true, -1)),
            Reroute
        );
        assert_eq!(
            decide(ApiKey::Produce, Failure::ConnectionLost, produce(true, -1)),
            Reroute
        );
    }

    #[test]
    fn non_idempotent_produce_whose_records_may_have_been_written_is_not_replayed() {
        // ... without first finding out whether the records are in the leader's log
        assert_eq!(
            decide(ApiKey::Produce, Failure::Code(6), produce(false, 17)),
            Verify
        );
        assert_eq!(
            decide(ApiKey::Produce, Failure::Code(6), produce(false, 0)),
            Verify
        );
        assert_eq!(
            decide(ApiKey::Produce, Failure::Code(75), produce(false, 0)),
            Verify
        );
        // no answer at all: no offset to look at, so the client decides
        assert_eq!(
            decide(ApiKey::Produce, Failure::ConnectionLost, produce(false, -1)),
            PassThrough
        );
    }

    #[test]
    fn non_idempotent_produce_refused_before_the_append_is_replayed() {
        assert_eq!(
            decide(ApiKey::Produce, Failure::Code(6), produce(false, -1)),
            Reroute
        );
        assert_eq!(
            decide(ApiKey::Produce, Failure::Code(5), produce(false, -1)),
            WaitThenReroute
        );
        assert_eq!(
            decide(ApiKey::Produce, Failure::NotSent, produce(false, -1)),
            Reroute
        );
    }

    #[test]
    fn out_of_order_sequence_is_replayed_only_behind_a_recovery() {
        let recovering = Some(ProduceFacts {
            idempotent: true,
            base_offset: -1,
            partition_recovering: true,
            alone: false,
        });
        assert_eq!(
            decide(ApiKey::Produce, Failure::Code(45), recovering),
            Reroute
        );
        assert_eq!(
            decide(ApiKey::Produce, Failure::Code(45), produce(true, -1)),
            PassThrough
        );
    }

    #[test]
    fn offset_not_available_retries_the_same_leader_for_list_offsets_only() {
        assert_eq!(
            decide(ApiKey::ListOffsets, Failure::Code(78), None),
            RetrySame
        );
        assert_eq!(decide(ApiKey::Fetch, Failure::Code(78), None), PassThrough);
    }

    #[test]
    fn other_produce_errors_pass_through() {
        for code in [3, 10, 56, 87] {
            assert_eq!(
                decide(ApiKey::Produce, Failure::Code(code), produce(true, -1)),
                PassThrough
            );
        }
    }

    #[test]
    fn not_enough_replicas_is_retried_for_idempotent_batches_and_lone_other_ones() {
        // Refused before the append: nothing was written.
        assert_eq!(
            decide(ApiKey::Produce, Failure::Code(19), produce(true, -1)),
            RetrySame
        );
        let lone = Some(ProduceFacts {
            alone: true,
            ..produce(false, -1).unwrap()
        });
        assert_eq!(decide(ApiKey::Produce, Failure::Code(19), lone), RetrySame);
        // A later batch of the partition is in flight and could be appended first.
        assert_eq!(
            decide(ApiKey::Produce, Failure::Code(19), produce(false, -1)),
            PassThrough
        );
    }

    #[test]
    fn errors_after_the_append_are_retried_only_for_idempotent_batches() {
        for code in [NOT_ENOUGH_REPLICAS_AFTER_APPEND, REQUEST_TIMED_OUT] {
            assert_eq!(
                decide(ApiKey::Produce, Failure::Code(code), produce(true, 12)),
                RetrySame,
                "{code}: the broker de-duplicates the re-send"
            );
            let lone = Some(ProduceFacts {
                alone: true,
                ..produce(false, 12).unwrap()
            });
            assert_eq!(
                decide(ApiKey::Produce, Failure::Code(code), lone),
                PassThrough,
                "{code}: written, and a re-send would write it again"
            );
        }
    }

    const REPEATABLE: CoordinatorFacts = CoordinatorFacts { repeatable: true };
    const NOT_REPEATABLE: CoordinatorFacts = CoordinatorFacts { repeatable: false };

    #[test]
    fn a_moved_coordinator_is_found_again_and_asked_for_every_coordinator_api() {
        for api in COORDINATOR_APIS {
            for code in [NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE] {
                assert_eq!(
                    decide_coordinator(api, Failure::Code(code), REPEATABLE),
                    Reroute,
                    "{api:?} {code}"
                );
            }
            assert_eq!(
                decide_coordinator(api, Failure::NotSent, REPEATABLE),
                Reroute
            );
        }
        // A heartbeat without its whole state is still replayed after an error: if the
        // coordinator had applied it, keep_original gives the client the error instead.
        assert_eq!(
            decide_coordinator(
                ApiKey::ConsumerGroupHeartbeat,
                Failure::Code(NOT_COORDINATOR),
                NOT_REPEATABLE
            ),
            Reroute
        );
    }

    #[test]
    fn a_loading_coordinator_is_asked_again() {
        for api in COORDINATOR_APIS {
            assert_eq!(
                decide_coordinator(api, Failure::Code(COORDINATOR_LOAD_IN_PROGRESS), REPEATABLE),
                RetrySame
            );
        }
    }

    #[test]
    fn a_lost_connection_replays_only_what_is_accepted_again() {
        assert_eq!(
            decide_coordinator(ApiKey::OffsetCommit, Failure::ConnectionLost, REPEATABLE),
            Reroute
        );
        assert_eq!(
            decide_coordinator(
                ApiKey::ConsumerGroupHeartbeat,
                Failure::ConnectionLost,
                NOT_REPEATABLE
            ),
            PassThrough
        );
    }

    #[test]
    fn other_errors_and_other_apis_pass_through() {
        for code in [0, 22, 25, 27, 47, 51, 90, 110] {
            assert_eq!(
                decide_coordinator(ApiKey::JoinGroup, Failure::Code(code), REPEATABLE),
                PassThrough,
                "{code}"
            );
        }
        // Share groups: acquiring and acknowledging records is not repeatable.
        for api in [
            ApiKey::ShareFetch,
            ApiKey::ShareAcknowledge,
            ApiKey::DescribeGroups,
        ] {
            assert_eq!(
                decide_coordinator(api, Failure::Code(NOT_COORDINATOR), REPEATABLE),
                PassThrough
            );
        }
    }

    #[test]
    fn a_heartbeat_fenced_by_its_own_replay_gets_the_original_error() {
        let hb = ApiKey::ConsumerGroupHeartbeat;
        assert!(keep_original(hb, NOT_REPEATABLE, FENCED_MEMBER_EPOCH));
        assert!(keep_original(hb, NOT_REPEATABLE, UNKNOWN_MEMBER_ID));
        assert!(!keep_original(hb, REPEATABLE, FENCED_MEMBER_EPOCH));
        assert!(!keep_original(hb, NOT_REPEATABLE, 0));
        assert!(!keep_original(
            ApiKey::Heartbeat,
            NOT_REPEATABLE,
            UNKNOWN_MEMBER_ID
        ));
    }

    #[test]
    fn a_find_coordinator_with_no_coordinator_yet_is_asked_again() {
        assert!(ask_again(
            ApiKey::FindCoordinator,
            COORDINATOR_NOT_AVAILABLE
        ));
        assert!(!ask_again(ApiKey::FindCoordinator, 29));
        assert!(!ask_again(ApiKey::Heartbeat, COORDINATOR_NOT_AVAILABLE));
    }
}
