package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// group-consume: a sarama consumer group member (classic protocol) that commits what it
// processed, synchronously, after every batch of records it was handed.
//
// sarama's session.Commit() neither returns nor reports (on the Errors channel) a commit the
// coordinator refused with NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or
// COORDINATOR_LOAD_IN_PROGRESS: it keeps the offsets for "next time". So the commit is sarama's
// own OffsetCommit request, built as sarama's offset manager builds it (same version, the
// session's generation and member id), sent on sarama's own connection to the group
// coordinator (client.Coordinator), and its answer read per partition: the commits file then
// holds exactly the commits the coordinator accepted, and every refusal is counted with its
// code. On a coordinator error the coordinator is looked up again (client.RefreshCoordinator),
// as sarama's offset manager does, and the offsets stay pending for the next commit.
func groupConsume(args []string) int {
	fs := newFlags("group-consume")
	bootstrap := fs.String("bootstrap", "", "bootstrap servers")
	topics := fs.String("topic", "", "topic[,topic...]")
	group := fs.String("group", "", "consumer group")
	consumedPath := fs.String("consumed", "", "consumed file")
	commitsPath := fs.String("commits", "", "commits file")
	summaryPath := fs.String("summary", "", "summary file")
	eventsPath := fs.String("events", "", "events file (JSON lines)")
	drainTimeout := fs.Int("drain-timeout", 60, "seconds to drain at stop")
	kafkaVersion := fs.String("kafka-version", "4.1.0", "sarama Config.Version")
	clientID := fs.String("client-id", "gokit-sarama-group", "client.id")
	if !parse(fs, args, "bootstrap", "topic", "group", "consumed", "commits", "summary") {
		return 2
	}
	started := time.Now()
	stop, stopReason := stopSignal()

	consumedOut, err := openLines(*consumedPath)
	if err != nil {
		return fatalUsage(err)
	}
	commitsOut, err := openLines(*commitsPath)
	if err != nil {
		return fatalUsage(err)
	}
	events, err := openLines(*eventsPath)
	if err != nil {
		return fatalUsage(err)
	}
	logs := &logCounter{}
	sarama.Logger = log.New(&stampedLog{prefix: "[sarama]", counter: logs}, "", 0)

	version, err := sarama.ParseKafkaVersion(*kafkaVersion)
	if err != nil {
		return fatalUsage(err)
	}
	cfg := sarama.NewConfig()
	cfg.Version = version
	cfg.ClientID = *clientID
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest

	errs := newTally(events)
	g := &groupMember{
		group:    *group,
		recs:     newRecords(consumedOut),
		commits:  commitsOut,
		errs:     errs,
		events:   events,
		version:  version,
		done:     map[tp]int64{},
		dirty:    make(chan struct{}, 1),
		stopping: false,
	}
	summary := map[string]any{
		"group": *group, "client": "sarama", "client_version": moduleVersion("github.com/IBM/sarama"),
	}
	client, err := sarama.NewClient(splitList(*bootstrap), cfg)
	if err != nil {
		summary["fatal"] = err.Error()
		_ = writeSummary(*summaryPath, summary)
		return 1
	}
	g.client = client
	cg, err := sarama.NewConsumerGroupFromClient(*group, client)
	if err != nil {
		summary["fatal"] = err.Error()
		_ = writeSummary(*summaryPath, summary)
		return 1
	}
	go func() {
		for err := range cg.Errors() {
			errs.add("group", err)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	consuming := make(chan struct{})
	go func() {
		defer close(consuming)
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, splitList(*topics), g); err != nil && ctx.Err() == nil {
				errs.add("consume", err)
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()

	<-stop
	// Drain: consume up to the end offsets as they are now, commit, leave the group.
	drained := g.drain(splitList(*topics), time.Duration(*drainTimeout)*time.Second)
	g.commitNow()
	g.mu.Lock()
	g.stopping = true
	g.mu.Unlock()
	cancel()
	<-consuming
	_ = cg.Close()
	_ = client.Close()
	consumedOut.Close()
	commitsOut.Close()

	consumed, redelivered, duplicates := g.recs.counts()
	errCounts, errTotal := errs.snapshot()
	g.mu.Lock()
	lastCommitted := map[string]int64{}
	for k, v := range g.done {
		lastCommitted[k.String()] = v
	}
	uncommitted := 0
	for k, next := range g.recs.perTP {
		if g.done[k] < next {
			uncommitted++
		}
	}
	summary["consumed"] = consumed
	summary["redelivered"] = redelivered
	summary["duplicates"] = duplicates
	summary["commits_ok"] = g.commitsOK
	summary["commit_failures"] = g.commitFailures
	summary["max_commit_ms"] = g.maxCommit.Milliseconds()
	summary["last_committed"] = lastCommitted
	summary["uncommitted"] = uncommitted
	summary["rebalances"] = g.rebalances
	summary["revocations"] = g.revocations
	g.mu.Unlock()
	summary["errors"] = errCounts
	summary["errors_total"] = errTotal
	summary["log_events"] = logs.snapshot()
	summary["drained"] = drained
	summary["stop_reason"] = stopReason()
	summary["elapsed_ms"] = time.Since(started).Milliseconds()
	events.Close()
	if err := writeSummary(*summaryPath, summary); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func fatalUsage(err error) int {
	fmt.Fprintln(os.Stderr, err)
	return 2
}

type groupMember struct {
	group   string
	client  sarama.Client
	recs    *records
	commits *lineFile
	errs    *tally
	events  *lineFile
	version sarama.KafkaVersion
	dirty   chan struct{}

	mu             sync.Mutex
	session        sarama.ConsumerGroupSession
	done           map[tp]int64 // committed (accepted by the coordinator)
	commitsOK      int
	commitFailures int
	maxCommit      time.Duration
	rebalances     int
	revocations    int
	stopping       bool
	// One commit at a time (the committer, a revocation, the final commit).
	commitMu sync.Mutex
}

func (g *groupMember) Setup(sess sarama.ConsumerGroupSession) error {
	g.mu.Lock()
	g.rebalances++
	g.session = sess
	g.mu.Unlock()
	g.events.JSON(map[string]any{"ts": now(), "event": "assigned", "generation": sess.GenerationID(),
		"member": sess.MemberID(), "claims": sess.Claims()})
	go g.committer(sess)
	return nil
}

func (g *groupMember) Cleanup(sess sarama.ConsumerGroupSession) error {
	// As the Java testkit does in onPartitionsRevoked: commit what was processed before the
	// partitions go.
	g.commit(sess)
	g.mu.Lock()
	if !g.stopping {
		g.revocations++
	}
	if g.session == sess {
		g.session = nil
	}
	stopping := g.stopping
	g.mu.Unlock()
	g.events.JSON(map[string]any{"ts": now(), "event": "revoked", "generation": sess.GenerationID(),
		"stopping": stopping})
	return nil
}

func (g *groupMember) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			g.recs.add(msg.Topic, msg.Partition, msg.Offset, msg.Key)
			// The end of what the client handed over at once: commit it.
			if len(claim.Messages()) == 0 {
				select {
				case g.dirty <- struct{}{}:
				default:
				}
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

// committer commits after every batch, at most every 100 ms, until the session ends.
func (g *groupMember) committer(sess sarama.ConsumerGroupSession) {
	for {
		select {
		case <-g.dirty:
		case <-time.After(time.Second):
		case <-sess.Context().Done():
			return
		}
		g.commit(sess)
		select {
		case <-time.After(100 * time.Millisecond):
		case <-sess.Context().Done():
			return
		}
	}
}

// commitNow commits on the current session, if there is one.
func (g *groupMember) commitNow() {
	g.mu.Lock()
	sess := g.session
	g.mu.Unlock()
	if sess != nil {
		g.commit(sess)
	}
}

// commitVersion is the OffsetCommit version sarama's offset manager uses for this Config.Version.
func commitVersion(v sarama.KafkaVersion) int16 {
	switch {
	case v.IsAtLeast(sarama.V2_4_0_0):
		return 8
	case v.IsAtLeast(sarama.V2_3_0_0):
		return 7
	case v.IsAtLeast(sarama.V2_1_0_0):
		return 6
	case v.IsAtLeast(sarama.V2_0_0_0):
		return 4
	default:
		return 2
	}
}

// commit sends one OffsetCommit with every claimed partition whose processed offset is ahead
// of its committed one.
func (g *groupMember) commit(sess sarama.ConsumerGroupSession) {
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	req := &sarama.OffsetCommitRequest{
		Version:                 commitVersion(g.version),
		ConsumerGroup:           g.group,
		ConsumerGroupGeneration: sess.GenerationID(),
		ConsumerID:              sess.MemberID(),
	}
	if req.Version >= 2 && req.Version < 5 {
		req.RetentionTime = -1
	}
	want := map[tp]int64{}
	g.mu.Lock()
	for topic, parts := range sess.Claims() {
		for _, p := range parts {
			k := tp{topic, p}
			next, _ := g.recs.next(k)
			if next > g.done[k] {
				want[k] = next
				req.AddBlockWithLeaderEpoch(topic, p, next, -1, 0, "")
			}
		}
	}
	g.mu.Unlock()
	if len(want) == 0 {
		return
	}
	t0 := time.Now()
	coord, err := g.client.Coordinator(g.group)
	var resp *sarama.OffsetCommitResponse
	if err == nil {
		resp, err = coord.CommitOffset(req)
	}
	took := time.Since(t0)
	if err != nil {
		g.errs.add("commit", err)
		g.mu.Lock()
		g.commitFailures++
		g.mu.Unlock()
		if errors.Is(err, sarama.ErrNotCoordinatorForConsumer) || errors.Is(err, sarama.ErrConsumerCoordinatorNotAvailable) {
			_ = g.client.RefreshCoordinator(g.group)
		} else if coord != nil {
			// As sarama's offset manager does after a failed commit request.
			_ = coord.Close()
		}
		return
	}
	failed := false
	refresh := false
	g.mu.Lock()
	for k, off := range want {
		code, found := resp.Errors[k.topic][k.partition]
		if !found {
			failed = true
			g.errs.add("commit "+k.String(), sarama.ErrIncompleteResponse)
			continue
		}
		if code == sarama.ErrNoError {
			if off > g.done[k] {
				g.done[k] = off
			}
			g.commits.Line(fmt.Sprintf("%s %d %d", k.topic, k.partition, off))
			continue
		}
		failed = true
		g.errs.addCode("commit "+k.String(), int16(code))
		switch code {
		case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable:
			refresh = true
		}
	}
	if failed {
		g.commitFailures++
	} else {
		g.commitsOK++
		if took > g.maxCommit {
			g.maxCommit = took
		}
	}
	g.mu.Unlock()
	if refresh {
		_ = g.client.RefreshCoordinator(g.group)
	}
}

// drain consumes until every partition of the topics is read up to its end offset as it was
// when the drain began. The end offsets are asked for through the client under test.
func (g *groupMember) drain(topics []string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	ends := map[tp]int64{}
	for _, topic := range topics {
		for {
			parts, err := g.client.Partitions(topic)
			if err == nil {
				ok := true
				for _, p := range parts {
					end, err := g.client.GetOffset(topic, p, sarama.OffsetNewest)
					if err != nil {
						g.errs.add("end-offsets", err)
						ok = false
						break
					}
					ends[tp{topic, p}] = end
				}
				if ok {
					break
				}
			} else {
				g.errs.add("end-offsets", err)
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for {
		all := true
		for k, end := range ends {
			if next, _ := g.recs.next(k); next < end {
				all = false
				break
			}
		}
		if all {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
