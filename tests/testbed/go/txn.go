package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// txn-transform: franz-go's GroupTransactSession, the library's own exactly-once
// consume-transform-produce loop. A group member of the input group reads the input topic
// (read_committed, stable offsets); each poll of up to --records-per-txn records becomes one
// transaction: Begin, one output record per input record (to the input's partition), End, which
// flushes, commits the input offsets in the transaction (AddOffsetsToTxn + TxnOffsetCommit to
// the group's coordinator), heartbeats, and sends EndTxn. Transaction t is aborted on purpose
// when t % K == K-1 (--abort-every K; 0: never). After a transaction that did not commit the
// session rewinds the input to the committed offsets, so those records are transformed again.
func txnTransform(args []string) int {
	fs := newFlags("txn-transform")
	bootstrap := fs.String("bootstrap", "", "bootstrap servers")
	input := fs.String("input-topic", "", "input topic")
	group := fs.String("input-group", "", "input consumer group")
	output := fs.String("topic", "", "output topic")
	runID := fs.String("run-id", "", "run id (record keys are ID:seq)")
	txnLogPath := fs.String("txn-log", "", "transaction log (JSON lines)")
	summaryPath := fs.String("summary", "", "summary file")
	eventsPath := fs.String("events", "", "events file (JSON lines)")
	txnID := fs.String("transactional-id", "", "transactional.id (default gokit-txn-ID)")
	perTxn := fs.Int("records-per-txn", 12, "at most this many input records per transaction")
	abortEvery := fs.Int("abort-every", 0, "abort transaction t when t % K == K-1 (0: never)")
	txnRate := fs.Float64("txn-rate", 5, "at most this many transactions per second")
	clientID := fs.String("client-id", "gokit-franz-txn", "client.id")
	if !parse(fs, args, "bootstrap", "input-topic", "input-group", "topic", "run-id", "txn-log", "summary") {
		return 2
	}
	if *txnID == "" {
		*txnID = "gokit-txn-" + *runID
	}
	started := time.Now()
	stop, stopReason := stopSignal()
	txnLog, err := openLines(*txnLogPath)
	if err != nil {
		return fatalUsage(err)
	}
	events, err := openLines(*eventsPath)
	if err != nil {
		return fatalUsage(err)
	}
	logs := &logCounter{}
	errs := newTally(events)
	var mu sync.Mutex
	rebalances, revocations, lost := 0, 0, 0
	stopping := false
	sendErrors := map[string]int{}

	newSession := func() (*kgo.GroupTransactSession, error) {
		return kgo.NewGroupTransactSession(
			kgo.SeedBrokers(splitList(*bootstrap)...),
			kgo.ClientID(*clientID),
			kgo.TransactionalID(*txnID),
			kgo.ConsumerGroup(*group),
			kgo.ConsumeTopics(*input),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.RequireStableFetchOffsets(),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.WithLogger(&kgoLog{counter: logs}),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
				mu.Lock()
				rebalances++
				mu.Unlock()
				events.JSON(map[string]any{"ts": now(), "event": "assigned", "partitions": a})
			}),
			kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
				mu.Lock()
				if !stopping {
					revocations++
				}
				mu.Unlock()
				events.JSON(map[string]any{"ts": now(), "event": "revoked", "partitions": r})
			}),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) {
				mu.Lock()
				lost++
				mu.Unlock()
				events.JSON(map[string]any{"ts": now(), "event": "lost", "partitions": l})
			}),
		)
	}
	summary := map[string]any{
		"run_id": *runID, "topic": *output, "transactional_id": *txnID, "mode": "transform",
		"client": "franz-go", "client_version": moduleVersion("github.com/twmb/franz-go"),
	}
	sess, err := newSession()
	if err != nil {
		summary["fatal"] = err.Error()
		_ = writeSummary(*summaryPath, summary)
		return 1
	}
	producers := 1
	ctx := context.Background()
	var txns, committed, aborted, unknown, outcomeFailures, records, inputConsumed int
	var maxEnd time.Duration
	seq := int64(0)
	var lastBegin time.Time
	minGap := time.Duration(0)
	if *txnRate > 0 {
		minGap = time.Duration(float64(time.Second) / *txnRate)
	}

loop:
	for {
		select {
		case <-stop:
			break loop
		default:
		}
		if wait := minGap - time.Since(lastBegin); wait > 0 {
			select {
			case <-stop:
				break loop
			case <-time.After(wait):
			}
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := sess.PollRecords(pctx, *perTxn)
		cancel()
		if fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			errs.add(fmt.Sprintf("fetch %s-%d", topic, p), err)
		})
		in := fetches.Records()
		if len(in) == 0 {
			continue
		}
		lastBegin = time.Now()
		t := txns
		txns++
		intent := "commit"
		if *abortEvery > 0 && t%*abortEvery == *abortEvery-1 {
			intent = "abort"
		}
		entry := map[string]any{"txn": t, "intent": intent, "first_seq": seq, "records": len(in)}
		if err := sess.Begin(); err != nil {
			errs.add("begin", err)
		}
		sources := map[string][2]int64{}
		var sendMu sync.Mutex
		for _, r := range in {
			s := seq
			seq++
			key := fmt.Sprintf("%s:%d", *runID, s)
			src := fmt.Sprint(r.Partition)
			rng, ok := sources[src]
			if !ok {
				rng = [2]int64{r.Offset, r.Offset}
			}
			if r.Offset < rng[0] {
				rng[0] = r.Offset
			}
			if r.Offset > rng[1] {
				rng[1] = r.Offset
			}
			sources[src] = rng
			out := &kgo.Record{
				Topic:     *output,
				Partition: r.Partition,
				Key:       []byte(key),
				Value:     []byte(fmt.Sprintf("%s:txn=%d:src=%d/%d", key, t, r.Partition, r.Offset)),
			}
			sess.Produce(ctx, out, func(_ *kgo.Record, err error) {
				if err == nil {
					return
				}
				// Records still buffered when a transaction is aborted on purpose fail so.
				if intent == "abort" && errors.Is(err, kgo.ErrAborting) {
					return
				}
				sendMu.Lock()
				sendErrors[errorKey(err)]++
				sendMu.Unlock()
				errs.add("produce", err)
			})
		}
		records += len(in)
		inputConsumed += len(in)
		t0 := time.Now()
		ok, err := sess.End(ctx, kgo.TransactionEndTry(intent == "commit"))
		took := time.Since(t0)
		if took > maxEnd {
			maxEnd = took
		}
		entry["ms"] = took.Milliseconds()
		entry["sources"] = sources
		entry["attempts"] = []string{}
		replace := false
		switch {
		case err == nil && ok:
			entry["final"] = "committed"
			committed++
		case err == nil:
			entry["final"] = "aborted"
			aborted++
		case strings.HasPrefix(err.Error(), "unable to commit transaction offsets"):
			// The offsets were refused; the session aborted the transaction.
			entry["final"] = "aborted"
			aborted++
		default:
			// "No returned error is retryable": the transactional id is in a failed state.
			entry["final"] = "unknown"
			unknown++
			replace = true
		}
		asked := map[string]string{"commit": "committed", "abort": "aborted"}[intent]
		switch {
		case err != nil:
			entry["outcome"] = errorKey(err)
			entry["error"] = err.Error()
			errs.add("end", err)
		case entry["final"] != asked:
			// The session aborted a transaction asked to commit (a rebalance, a refused
			// TxnOffsetCommit, a failed heartbeat): no error returned, but not as asked.
			entry["outcome"] = "aborted by the session"
		default:
			entry["outcome"] = "ok"
		}
		if entry["outcome"] != "ok" {
			outcomeFailures++
		}
		entry["ts"] = now()
		txnLog.JSON(entry)
		events.JSON(map[string]any{"ts": now(), "event": "txn", "txn": t, "final": entry["final"],
			"outcome": entry["outcome"], "ms": took.Milliseconds()})
		if replace {
			sess.Close()
			sess, err = newSession()
			if err != nil {
				summary["fatal"] = err.Error()
				break
			}
			producers++
		}
	}
	mu.Lock()
	stopping = true
	mu.Unlock()
	if sess != nil {
		sess.Close()
	}
	txnLog.Close()
	errCounts, errTotal := errs.snapshot()
	mu.Lock()
	summary["rebalances"] = rebalances
	summary["revocations"] = revocations
	summary["lost"] = lost
	summary["send_errors"] = sendErrors
	mu.Unlock()
	summary["transactions"] = txns
	summary["committed"] = committed
	summary["aborted"] = aborted
	summary["unknown"] = unknown
	summary["outcome_failures"] = outcomeFailures
	summary["records"] = records
	summary["input_consumed"] = inputConsumed
	summary["producers_created"] = producers
	summary["max_end_ms"] = maxEnd.Milliseconds()
	summary["errors"] = errCounts
	summary["errors_total"] = errTotal
	summary["log_events"] = logs.snapshot()
	summary["stop_reason"] = stopReason()
	summary["elapsed_ms"] = time.Since(started).Milliseconds()
	events.Close()
	if err := writeSummary(*summaryPath, summary); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, fatal := summary["fatal"]; fatal {
		return 1
	}
	return 0
}

// kgoLog: franz-go's log to stderr with UTC timestamps, at info level; its warnings and errors
// are counted by message.
type kgoLog struct {
	counter *logCounter
	mu      sync.Mutex
}

func (l *kgoLog) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (l *kgoLog) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var b strings.Builder
	b.WriteString(msg)
	for i := 0; i+1 < len(keyvals); i += 2 {
		fmt.Fprintf(&b, " %v=%v", keyvals[i], keyvals[i+1])
	}
	l.mu.Lock()
	fmt.Fprintf(os.Stderr, "%s [franz-go] %s %s\n", now(), level, b.String())
	l.mu.Unlock()
	if level == kgo.LogLevelWarn || level == kgo.LogLevelError {
		l.counter.count(level.String() + " " + b.String())
	}
}
