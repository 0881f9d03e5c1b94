package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
)

// The counts the Rust verifiers and the rolling test read must name Kafka errors by code
// whichever library returned them, however wrapped.
func TestErrorKeyNamesKafkaCodesOfBothLibraries(t *testing.T) {
	cases := map[string]error{
		"NOT_COORDINATOR (16)":           sarama.ErrNotCoordinatorForConsumer,
		"FENCED_LEADER_EPOCH (74)":       &sarama.ConsumerError{Topic: "t", Partition: 1, Err: sarama.ErrFencedLeaderEpoch},
		"NOT_ENOUGH_REPLICAS (19)":       fmt.Errorf("produce: %w", kerr.NotEnoughReplicas),
		"COORDINATOR_NOT_AVAILABLE (15)": kerr.CoordinatorNotAvailable,
		"read tcp N.N.N.N:N->N.N.N.N:N: use of closed network connection": errors.New(
			"read tcp 127.0.0.1:5123->127.0.0.1:21092: use of closed network connection"),
	}
	for want, err := range cases {
		if got := errorKey(err); got != want {
			t.Errorf("errorKey(%v) = %q, want %q", err, got, want)
		}
	}
	if _, ok := kafkaCode(errors.New("EOF")); ok {
		t.Error("a plain error has no Kafka code")
	}
}

func TestRecordsCountRedeliveriesAndDuplicates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "consumed")
	out, err := openLines(path)
	if err != nil {
		t.Fatal(err)
	}
	r := newRecords(out)
	r.add("t", 0, 10, []byte("feed:1"))
	r.add("t", 0, 11, []byte("feed:2"))
	r.add("t", 0, 10, []byte("feed:1")) // the same offset again: redelivered
	r.add("t", 0, 12, []byte("feed:2")) // the same key at another offset: a duplicate
	r.add("t", 1, 3, nil)
	out.Close()
	consumed, redelivered, duplicates := r.counts()
	if consumed != 5 || redelivered != 1 || duplicates != 1 {
		t.Errorf("consumed %d redelivered %d duplicates %d, want 5 1 1", consumed, redelivered, duplicates)
	}
	if next, _ := r.next(tp{"t", 0}); next != 13 {
		t.Errorf("next offset of t-0 = %d, want 13", next)
	}
	text, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	if len(lines) != 5 || lines[0] != "t 0 10 feed:1" || lines[4] != "t 1 3 -" {
		t.Errorf("consumed file:\n%s", text)
	}
}

func TestSeqOfReadsTheTestsKeys(t *testing.T) {
	if id, seq, ok := seqOf([]byte("txn:41")); !ok || id != "txn" || seq != 41 {
		t.Errorf("seqOf(txn:41) = %q %d %v", id, seq, ok)
	}
	for _, k := range []string{"", "nocolon", ":5", "a:b"} {
		if _, _, ok := seqOf([]byte(k)); ok {
			t.Errorf("seqOf(%q) should not parse", k)
		}
	}
}
