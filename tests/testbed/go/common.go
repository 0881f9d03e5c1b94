package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ---------------------------------------------------------------------------------------------
// Flags

func newFlags(cmd string) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

// parse parses the flags and checks the required ones; false (exit 2) on a usage error.
func parse(fs *flag.FlagSet, args []string, required ...string) bool {
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected arguments %v\n", fs.Name(), fs.Args())
		return false
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, r := range required {
		if !set[r] {
			fmt.Fprintf(os.Stderr, "%s: --%s is required\n", fs.Name(), r)
			return false
		}
	}
	return true
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// Stopping: stdin EOF (the tests close the pipe) or SIGTERM/SIGINT.

// stopSignal returns a channel closed at stdin EOF or on SIGTERM/SIGINT, and how it was stopped.
func stopSignal() (<-chan struct{}, func() string) {
	ch := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	reason := ""
	stop := func(why string) {
		once.Do(func() {
			mu.Lock()
			reason = why
			mu.Unlock()
			close(ch)
		})
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop("stdin-eof")
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		stop("signal")
	}()
	return ch, func() string {
		mu.Lock()
		defer mu.Unlock()
		return reason
	}
}

// ---------------------------------------------------------------------------------------------
// Output files: lines written by many goroutines, flushed every half second and at close.

type lineFile struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	done chan struct{}
}

func openLines(path string) (*lineFile, error) {
	if path == "" {
		return &lineFile{}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	l := &lineFile{f: f, w: bufio.NewWriter(f), done: make(chan struct{})}
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				l.Flush()
			case <-l.done:
				return
			}
		}
	}()
	return l, nil
}

func (l *lineFile) Line(s string) {
	if l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.WriteString(s)
	l.w.WriteByte('\n')
}

func (l *lineFile) JSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	l.Line(string(b))
}

func (l *lineFile) Flush() {
	if l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.w.Flush()
}

func (l *lineFile) Close() {
	if l.w == nil {
		return
	}
	close(l.done)
	l.Flush()
	_ = l.f.Close()
}

// writeSummary writes FILE.tmp, renames it over FILE and prints the summary on stdout.
func writeSummary(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	if path == "" {
		return nil
	}
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// ---------------------------------------------------------------------------------------------
// Errors the client library returned to the application, by Kafka error code where there is
// one, and a timeline of them (the events file) to line up with fairlead's log and the
// observers'.

type tally struct {
	mu     sync.Mutex
	counts map[string]int
	total  int
	events *lineFile
}

func newTally(events *lineFile) *tally {
	return &tally{counts: map[string]int{}, events: events}
}

// kafkaCode is the Kafka error code an error carries (sarama's KError, franz-go's kerr), if any.
func kafkaCode(err error) (int16, bool) {
	var se sarama.KError
	if errors.As(err, &se) {
		return int16(se), true
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code, true
	}
	return 0, false
}

var digits = regexp.MustCompile(`[0-9]+`)

// errorKey names an error for the counts: "NOT_COORDINATOR (16)" for a Kafka error, else its
// text with numbers (ports, ids) replaced by N so that the same failure counts once.
func errorKey(err error) string {
	if code, ok := kafkaCode(err); ok {
		return codeName(code)
	}
	return digits.ReplaceAllString(err.Error(), "N")
}

func codeName(code int16) string {
	if e := kerr.ErrorForCode(code); e != nil {
		var ke *kerr.Error
		if errors.As(e, &ke) {
			return fmt.Sprintf("%s (%d)", ke.Message, code)
		}
	}
	return fmt.Sprintf("UNKNOWN (%d)", code)
}

// add counts an error the library gave the application at `where` (e.g. "commit", "group",
// "fetch t-3", "produce") and writes it to the events file.
func (t *tally) add(where string, err error) {
	key := errorKey(err)
	t.mu.Lock()
	t.counts[key]++
	t.total++
	t.mu.Unlock()
	ev := map[string]any{"ts": now(), "event": "error", "where": where, "error": err.Error(), "key": key}
	if code, ok := kafkaCode(err); ok {
		ev["code"] = code
	}
	t.events.JSON(ev)
}

// addCode counts a Kafka error code the application read from a response it asked for itself.
func (t *tally) addCode(where string, code int16) {
	key := codeName(code)
	t.mu.Lock()
	t.counts[key]++
	t.total++
	t.mu.Unlock()
	t.events.JSON(map[string]any{"ts": now(), "event": "error", "where": where, "code": code, "key": key})
}

func (t *tally) snapshot() (map[string]int, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.counts))
	for k, v := range t.counts {
		out[k] = v
	}
	return out, t.total
}

func now() string {
	return time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
}

// ---------------------------------------------------------------------------------------------
// The libraries' own logs: to stderr with a UTC timestamp (fairlead logs in UTC too), and the
// lines that report trouble counted by their text with numbers replaced by N.

type logCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

// trouble: log lines that say a request failed or was given up on (sarama logs these instead of
// returning an error: "abandoned subscription ... because ...", "... retrying ...").
var trouble = regexp.MustCompile(`(?i)abandon|because|retrying|error|fail|closed|not available|not_coordinator|epoch`)

func (c *logCounter) see(line string) {
	if trouble.MatchString(line) {
		c.count(line)
	}
}

// count counts a log line by its text with numbers replaced by N.
func (c *logCounter) count(line string) {
	key := digits.ReplaceAllString(strings.TrimSpace(line), "N")
	if len(key) > 200 {
		key = key[:200]
	}
	c.mu.Lock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[key]++
	c.mu.Unlock()
}

func (c *logCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// stampedLog is an io.Writer for sarama's Logger: each line to stderr with a timestamp.
type stampedLog struct {
	prefix  string
	counter *logCounter
	mu      sync.Mutex
}

func (s *stampedLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		fmt.Fprintf(os.Stderr, "%s %s %s\n", now(), s.prefix, line)
		s.counter.see(line)
	}
	return len(p), nil
}

// ---------------------------------------------------------------------------------------------
// Misc

// moduleVersion is the version of a dependency this binary was built with.
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "?"
	}
	for _, d := range info.Deps {
		if d.Path == path {
			return d.Version
		}
	}
	return "?"
}

// seqOf parses a key "ID:seq" (the producers of the tests write those).
func seqOf(key []byte) (string, int64, bool) {
	s := string(key)
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return "", 0, false
	}
	var n int64
	if _, err := fmt.Sscan(s[i+1:], &n); err != nil {
		return "", 0, false
	}
	return s[:i], n, true
}

type tp struct {
	topic     string
	partition int32
}

func (x tp) String() string { return fmt.Sprintf("%s-%d", x.topic, x.partition) }

// records keeps what a consumer read and counts redeliveries (the same offset read again, e.g.
// after a rebalance) and duplicates (the same ID:seq at another offset).
type records struct {
	mu          sync.Mutex
	out         *lineFile
	seenOffsets map[tp]map[int64]struct{}
	seenSeqs    map[string]int64 // "topic|ID:seq" -> offset first read at
	consumed    int
	redelivered int
	duplicates  int
	perTP       map[tp]int64 // last offset read + 1
	lastAt      map[tp]time.Time
}

func newRecords(out *lineFile) *records {
	return &records{
		out:         out,
		seenOffsets: map[tp]map[int64]struct{}{},
		seenSeqs:    map[string]int64{},
		perTP:       map[tp]int64{},
		lastAt:      map[tp]time.Time{},
	}
}

func (r *records) add(topic string, partition int32, offset int64, key []byte) {
	k := tp{topic, partition}
	keyText := "-"
	if key != nil {
		keyText = string(key)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out.Line(fmt.Sprintf("%s %d %d %s", topic, partition, offset, keyText))
	r.consumed++
	offs := r.seenOffsets[k]
	if offs == nil {
		offs = map[int64]struct{}{}
		r.seenOffsets[k] = offs
	}
	if _, again := offs[offset]; again {
		r.redelivered++
	} else {
		offs[offset] = struct{}{}
		if _, _, ok := seqOf(key); ok {
			sk := topic + "|" + keyText
			if first, dup := r.seenSeqs[sk]; dup && first != offset {
				r.duplicates++
			} else if !dup {
				r.seenSeqs[sk] = offset
			}
		}
	}
	if offset+1 > r.perTP[k] {
		r.perTP[k] = offset + 1
	}
	r.lastAt[k] = time.Now()
}

// next is the offset after the last one read on a partition (0: none read).
func (r *records) next(k tp) (int64, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.perTP[k], r.lastAt[k]
}

func (r *records) counts() (consumed, redelivered, duplicates int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.consumed, r.redelivered, r.duplicates
}
