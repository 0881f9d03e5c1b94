// gokit: Go Kafka clients (IBM/sarama and twmb/franz-go, unmodified) driven by fairlead's
// integration tests, beside the Java testkit and the librdkafka driver. See README.md.
//
//	gokit group-consume  ...  sarama consumer group member, manual synchronous commits
//	gokit txn-transform  ...  franz-go transactional consume-transform-produce (GroupTransactSession)
//	gokit read-committed ...  sarama consumer, every partition from the start, read_committed
//
// Only the summary goes to stdout; logs (the client libraries' own, with UTC timestamps) go
// to stderr. Every command stops gracefully at stdin EOF or SIGTERM.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: gokit <command> [--flag value]...

commands:
  group-consume   --bootstrap B --topic T --group G --consumed FILE --commits FILE --summary FILE
                  [--events FILE] [--drain-timeout SEC] [--kafka-version V] [--client-id ID]
  txn-transform   --bootstrap B --input-topic I --input-group G --topic OUT --run-id ID
                  --txn-log FILE --summary FILE [--transactional-id X] [--records-per-txn N]
                  [--abort-every K] [--txn-rate R] [--events FILE] [--client-id ID]
  read-committed  --bootstrap B --topic T --consumed FILE --summary FILE
                  [--events FILE] [--drain-timeout SEC] [--quiet SEC] [--kafka-version V]
                  [--client-id ID]
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var code int
	switch os.Args[1] {
	case "group-consume":
		code = groupConsume(os.Args[2:])
	case "txn-transform":
		code = txnTransform(os.Args[2:])
	case "read-committed":
		code = readCommitted(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n%s", os.Args[1], usage)
		code = 2
	}
	os.Exit(code)
}
