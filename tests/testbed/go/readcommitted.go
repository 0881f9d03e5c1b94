package main

import (
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// read-committed: a sarama consumer (no group) reading every partition of a topic from the
// start with isolation.level=read_committed, as a downstream reader of a transactional
// producer's output would.
//
// At stop it drains: it asks (through the client under test) for each partition's end offset,
// and a partition is drained once a record at end-1 was read, or once the client has seen a
// high watermark at or past the end and read nothing from the partition for --quiet seconds (a
// read_committed reader never sees the control records and aborted records at the end of a
// log, and sarama does not tell its position).
func readCommitted(args []string) int {
	fs := newFlags("read-committed")
	bootstrap := fs.String("bootstrap", "", "bootstrap servers")
	topic := fs.String("topic", "", "topic")
	consumedPath := fs.String("consumed", "", "consumed file")
	summaryPath := fs.String("summary", "", "summary file")
	eventsPath := fs.String("events", "", "events file (JSON lines)")
	drainTimeout := fs.Int("drain-timeout", 60, "seconds to drain at stop")
	quiet := fs.Int("quiet", 3, "seconds without a record that end a partition's drain")
	kafkaVersion := fs.String("kafka-version", "4.1.0", "sarama Config.Version")
	clientID := fs.String("client-id", "gokit-sarama-read-committed", "client.id")
	if !parse(fs, args, "bootstrap", "topic", "consumed", "summary") {
		return 2
	}
	started := time.Now()
	stop, stopReason := stopSignal()
	consumedOut, err := openLines(*consumedPath)
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
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted

	summary := map[string]any{
		"topic": *topic, "client": "sarama", "client_version": moduleVersion("github.com/IBM/sarama"),
		"isolation": "read_committed",
	}
	errs := newTally(events)
	recs := newRecords(consumedOut)
	client, err := sarama.NewClient(splitList(*bootstrap), cfg)
	if err != nil {
		summary["fatal"] = err.Error()
		_ = writeSummary(*summaryPath, summary)
		return 1
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		summary["fatal"] = err.Error()
		_ = writeSummary(*summaryPath, summary)
		return 1
	}
	var parts []int32
	for {
		parts, err = client.Partitions(*topic)
		if err == nil && len(parts) > 0 {
			break
		}
		if err != nil {
			errs.add("partitions", err)
		}
		select {
		case <-stop:
			summary["fatal"] = "stopped before the topic's partitions were known"
			_ = writeSummary(*summaryPath, summary)
			return 1
		case <-time.After(200 * time.Millisecond):
		}
	}
	var wg sync.WaitGroup
	pcs := map[int32]sarama.PartitionConsumer{}
	for _, p := range parts {
		pc, err := consumer.ConsumePartition(*topic, p, sarama.OffsetOldest)
		if err != nil {
			summary["fatal"] = fmt.Sprintf("consume partition %d: %v", p, err)
			_ = writeSummary(*summaryPath, summary)
			return 1
		}
		pcs[p] = pc
		wg.Add(2)
		go func() {
			defer wg.Done()
			for msg := range pc.Messages() {
				recs.add(msg.Topic, msg.Partition, msg.Offset, msg.Key)
			}
		}()
		go func() {
			defer wg.Done()
			for err := range pc.Errors() {
				errs.add(fmt.Sprintf("fetch %s-%d", *topic, p), err)
			}
		}()
	}

	<-stop
	drained := false
	deadline := time.Now().Add(time.Duration(*drainTimeout) * time.Second)
	ends := map[int32]int64{}
	for len(ends) < len(parts) && time.Now().Before(deadline) {
		for _, p := range parts {
			if _, ok := ends[p]; ok {
				continue
			}
			end, err := client.GetOffset(*topic, p, sarama.OffsetNewest)
			if err != nil {
				errs.add("end-offsets", err)
				continue
			}
			ends[p] = end
		}
		if len(ends) < len(parts) {
			time.Sleep(200 * time.Millisecond)
		}
	}
	reachedAt := map[int32]time.Time{}
	for len(ends) == len(parts) && time.Now().Before(deadline) {
		all := true
		for _, p := range parts {
			end := ends[p]
			next, last := recs.next(tp{*topic, p})
			if end == 0 || next >= end {
				continue
			}
			if pcs[p].HighWaterMarkOffset() >= end {
				if reachedAt[p].IsZero() {
					reachedAt[p] = time.Now()
				}
				since := reachedAt[p]
				if last.After(since) {
					since = last
				}
				if time.Since(since) >= time.Duration(*quiet)*time.Second {
					continue
				}
			}
			all = false
		}
		if all {
			drained = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, pc := range pcs {
		pc.AsyncClose()
	}
	wg.Wait()
	_ = consumer.Close()
	_ = client.Close()
	consumedOut.Close()

	consumed, redelivered, duplicates := recs.counts()
	errCounts, errTotal := errs.snapshot()
	endsOut := map[string]int64{}
	for p, e := range ends {
		endsOut[fmt.Sprint(p)] = e
	}
	summary["consumed"] = consumed
	summary["redelivered"] = redelivered
	summary["duplicates"] = duplicates
	summary["end_offsets"] = endsOut
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
