#!/usr/bin/env python3
"""fairlead test bed: Python driver for real, unmodified non-JVM Kafka clients.

Runs confluent-kafka (librdkafka) or kafka-python against a Kafka cluster (or fairlead in
front of one) and writes the same machine-readable files as the Java driver:

  produce --client confluent|kafka-python --bootstrap B --topic T --run-id ID
          --acked FILE --summary FILE [--rate R] [--size S] [--count N] [--duration SEC]
          [--partitions P] [--prop k=v]... [--no-stdin]
  consume --client confluent|kafka-python --bootstrap B --topic T[,T2] --consumed FILE
          --summary FILE [--group G] [--drain-timeout SEC] [--prop k=v]... [--no-stdin]
  group-consume --client confluent --bootstrap B --topic T[,T2] --group G --consumed FILE
          --commits FILE --summary FILE [--protocol classic|consumer] [--drain-timeout SEC]
          [--prop k=v]... [--no-stdin]

The producer sends record seq = 0,1,2,... with key "ID:seq", a value of S bytes starting with
"ID:seq:", to partition seq % P, at R records/s, until stdin reaches EOF (or SIGTERM/SIGINT),
--count records were sent or --duration elapsed. Acked file lines: "partition seq offset".

The consumer writes "topic partition offset key" per record ("-" for a null key) and, once
stdin reaches EOF, drains every assigned partition up to the high watermark taken then.
group-consume does the same as a group member that commits what it processed synchronously after
every consume() that returned records, and writes "topic partition offset" per partition of every
commit that succeeded to --commits.

Both print their summary JSON as the last stdout line and write it to --summary (atomically),
also after a fatal error (with "fatal" set). Exit codes: 0 success, 1 failure, 2 usage. Only
the summary goes to stdout; client logs and driver notes go to stderr (-v: INFO, -vv: DEBUG).
--prop k=v passes any client setting (kafka-python: linger.ms or linger_ms; ints, floats,
true/false and none are converted; api_version=2.6 becomes a tuple).

Summary keys beyond the Java driver's: "client" (library and librdkafka versions),
"internal_errors" (errors the client handled itself and only logged or retried, e.g.
NOT_LEADER_FOR_PARTITION: from librdkafka's log lines, which need --prop debug=msg (producer) or
debug=fetch (consumer) to include them; from kafka-python's produce responses and fetcher),
"retry_metric", "librdkafka_stats" (confluent producer), "api_version" (kafka-python: the
broker version it inferred), "not_drained" (consumer).

Run it with the venv made by setup-venv: <repo>/.cache/venv/bin/python driver.py ...
"""

import argparse
import collections
import json
import logging
import os
import re
import signal
import sys
import threading
import time

CLIENTS = ("confluent", "kafka-python")
FILLER = b"abcdefghijklmnopqrstuvwxyz0123456789"
FLUSH_TIMEOUT_S = 30.0
METADATA_TIMEOUT_S = 30.0
FILE_FLUSH_INTERVAL_S = 0.2

log = logging.getLogger("driver")


# ---------------------------------------------------------------------------------------------
# Shared plumbing


class Fatal(Exception):
    """A failure that ends the run with exit code 1."""


class StopSignal:
    """Set when stdin reaches EOF (unless --no-stdin) or on SIGTERM/SIGINT."""

    def __init__(self, watch_stdin):
        self.event = threading.Event()
        self.reason = None
        self._signals = 0
        if watch_stdin:
            threading.Thread(target=self._watch_stdin, name="stdin-eof", daemon=True).start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _watch_stdin(self):
        # os.read on the descriptor, not sys.stdin.buffer: a daemon thread blocked inside the
        # buffered reader holds its lock, and the interpreter aborts on it at exit.
        try:
            fd = sys.stdin.fileno()
            while os.read(fd, 65536):
                pass
        except (OSError, ValueError, AttributeError):
            pass  # a closed or missing stdin counts as EOF
        self.set("stdin-eof")

    def _on_signal(self, signum, _frame):
        self._signals += 1
        if self._signals > 1:
            # A second signal: give up at once (no summary).
            os._exit(1)
        self.set("signal")

    def set(self, reason):
        if not self.event.is_set():
            self.reason = reason
            log.info("stop requested: %s", reason)
        self.event.set()

    def is_set(self):
        return self.event.is_set()


def write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, separators=(",", ":"), sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def emit_summary(path, summary):
    write_json_atomic(path, summary)
    sys.stdout.write(json.dumps(summary, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class LineFile:
    """An output file of text lines, written under a lock and flushed at most every 200 ms."""

    def __init__(self, path):
        self.fh = open(path, "w", encoding="utf-8", buffering=1 << 16)
        self.lock = threading.Lock()
        self.last_flush = time.monotonic()

    def write(self, line):
        with self.lock:
            self.fh.write(line)

    def maybe_flush(self):
        now = time.monotonic()
        if now - self.last_flush >= FILE_FLUSH_INTERVAL_S:
            with self.lock:
                self.fh.flush()
            self.last_flush = now

    def close(self):
        with self.lock:
            self.fh.flush()
            self.fh.close()


def parse_props(items):
    props = {}
    for item in items or []:
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"--prop needs key=value, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise argparse.ArgumentTypeError(f"--prop with an empty key: {item!r}")
        props[k] = v
    return props


def kafka_python_value(key, value):
    """Maps a --prop string to the Python type kafka-python expects."""
    v = value.strip()
    low = v.lower()
    if key == "api_version":
        if low in ("", "none", "null", "auto"):
            return None
        try:
            return tuple(int(x) for x in v.split("."))
        except ValueError:
            raise Fatal(f"api_version must look like 3.9 or 2.8.0, got {value!r}")
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if re.fullmatch(r"[+-]?\d+", v):
        return int(v)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?|[+-]?inf", low):
        return float(v)
    if key == "bootstrap_servers" and "," in v:
        return [s.strip() for s in v.split(",") if s.strip()]
    return v


def kafka_python_config(props):
    """--prop keys may be given Java-style (linger.ms) or Python-style (linger_ms)."""
    out = {}
    for k, v in props.items():
        key = k.replace(".", "_").replace("-", "_")
        out[key] = kafka_python_value(key, v)
    return out


def confluent_version():
    import confluent_kafka

    v = confluent_kafka.version()  # a (str, int) tuple in older releases, a str in newer ones
    return v[0] if isinstance(v, tuple) else v


def confluent_client_name():
    import confluent_kafka

    lib = confluent_kafka.libversion()
    lib = lib[0] if isinstance(lib, tuple) else lib
    return f"confluent {confluent_version()} / librdkafka {lib}"


def kafka_python_version():
    import kafka

    return kafka.__version__


def kafka_python_client_name():
    return f"kafka-python {kafka_python_version()}"


def broker_version_str(api_version):
    if not api_version:
        return None
    return ".".join(str(x) for x in api_version)


class ErrorCounts:
    """Thread-safe counts by error name."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()

    def add(self, name, n=1):
        with self.lock:
            self.counts[name] += n

    def as_dict(self):
        with self.lock:
            return dict(sorted(self.counts.items()))


class KafkaPythonLogErrors(logging.Handler):
    """Counts the Kafka error names that kafka-python only logs (it retries them internally).

    kafka-python reports e.g. NotLeaderForPartitionError on a produce retry as a WARNING and on a
    fetch only as a DEBUG line of kafka.consumer.fetcher; neither reaches the application.
    """

    ERROR_NAME = re.compile(r"\b([A-Z][A-Za-z]*Error)\b")

    FETCH_LINES = ("Error fetching partition", "Retriable error fetching partition",
                   "Fetch to node %s failed")
    # Counted by kafka_python_hook_produce_errors instead (this line names the error "type").
    SKIP = ("%s: Got error produce response",)

    def __init__(self, counts):
        super().__init__(level=logging.DEBUG)
        self.counts = counts
        self.enabled = True

    def emit(self, record):
        if not self.enabled:
            return
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg.startswith(self.SKIP):
            return
        if record.levelno < logging.WARNING and not msg.startswith(self.FETCH_LINES):
            return
        try:
            names = set()
            for arg in record.args if isinstance(record.args, tuple) else ():
                if isinstance(arg, BaseException):
                    names.add(type(arg).__name__)
                elif isinstance(arg, type) and issubclass(arg, BaseException):
                    names.add(arg.__name__)
                elif isinstance(arg, str) and self.ERROR_NAME.fullmatch(arg):
                    names.add(arg)
            if not names and record.levelno >= logging.WARNING:
                names.update(self.ERROR_NAME.findall(record.getMessage()))
            for n in names:
                self.counts.add(n)
        except Exception:  # never let accounting break the client
            pass


LOG_COUNTERS = []  # counting handlers, switched off before the client is closed


def stop_log_counting():
    for h in LOG_COUNTERS:
        h.enabled = False


def install_kafka_python_log_counting(counts):
    handler = KafkaPythonLogErrors(counts)
    LOG_COUNTERS.append(handler)
    kafka_logger = logging.getLogger("kafka")
    kafka_logger.addHandler(handler)
    if kafka_logger.getEffectiveLevel() > logging.WARNING:
        kafka_logger.setLevel(logging.WARNING)
    # Partition-level fetch errors are DEBUG lines of the fetcher only; enable just that logger
    # (its records do not reach the stderr handler, which stays at WARNING).
    logging.getLogger("kafka.consumer.fetcher").setLevel(logging.DEBUG)
    return handler


class LibrdkafkaLogErrors(logging.Handler):
    """Counts broker error names found in librdkafka's log lines (via the 'logger' setting).

    librdkafka retries partition-level errors such as NOT_LEADER_FOR_PARTITION internally; they
    surface, if at all, only in its log ("... Broker: Not leader for partition"). Which lines are
    logged depends on log_level and the 'debug' contexts (both settable with --prop).
    """

    def __init__(self, counts):
        super().__init__(level=logging.DEBUG)
        self.counts = counts
        self.enabled = True
        from confluent_kafka import KafkaError

        descs = {}
        for name in dir(KafkaError):
            code = getattr(KafkaError, name)
            if name.isupper() and isinstance(code, int) and code > 0:
                desc = KafkaError(code).str()
                if desc.startswith("Broker: "):
                    descs[desc[len("Broker: "):]] = name
        # Longest first, so that "Not leader for partition" wins over a shorter prefix.
        self.descs = sorted(descs.items(), key=lambda kv: -len(kv[0]))

    def emit(self, record):
        if not self.enabled:
            return
        try:
            msg = record.getMessage()
            if "Broker: " not in msg:
                return
            for part in msg.split("Broker: ")[1:]:
                for desc, name in self.descs:
                    if part.startswith(desc):
                        self.counts.add(name)
                        break
        except Exception:
            pass


def make_librdkafka_logger(counts):
    lg = logging.getLogger("librdkafka")
    lg.setLevel(logging.DEBUG)
    handler = LibrdkafkaLogErrors(counts)
    LOG_COUNTERS.append(handler)
    lg.addHandler(handler)
    return lg


# ---------------------------------------------------------------------------------------------
# produce


class ProduceRun:
    def __init__(self, args, stop):
        self.args = args
        self.stop = stop
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self.errors = ErrorCounts()
        self.internal_errors = ErrorCounts()
        self.lock = threading.Lock()
        self.closed = False  # delivery reports arriving after the summary are ignored
        self.acked_file = LineFile(args.acked)
        self.prefix = args.run_id
        self.stop_reason = None
        self.created = time.monotonic()

    def key_value(self, seq):
        head = f"{self.prefix}:{seq}".encode("utf-8")
        key = head
        head += b":"
        size = self.args.size
        if size <= len(head):
            value = head[:size]
        else:
            n = size - len(head)
            reps = n // len(FILLER) + 1
            value = head + (FILLER * reps)[:n]
        return key, value

    def on_ack(self, seq, partition, offset):
        with self.lock:
            if self.closed:
                return
            self.acked += 1
        self.acked_file.write(f"{partition} {seq} {offset if offset >= 0 else -1}\n")

    def on_fail(self, name):
        with self.lock:
            if self.closed:
                return
            self.failed += 1
        self.errors.add(name)

    def due(self, start):
        """Seconds to wait before the next record may be sent (<= 0: send now)."""
        if self.args.rate <= 0:
            return 0.0
        return (start + self.sent / self.args.rate) - time.monotonic()

    def should_stop(self, start):
        a = self.args
        if self.stop.is_set():
            self.stop_reason = self.stop.reason
        elif a.count is not None and self.sent >= a.count:
            self.stop_reason = "count"
        elif a.duration is not None and time.monotonic() - start >= a.duration:
            self.stop_reason = "duration"
        return self.stop_reason is not None

    def pace_start(self, start):
        """Restarts the schedule when it fell behind by more than a second (e.g. a blocked
        send), as the Java driver does, instead of bursting to catch up."""
        if self.args.rate > 0:
            behind = -self.due(start)
            if behind > 1.0:
                start += behind
        return start

    def finish(self, extra):
        with self.lock:
            self.closed = True
            unresolved = self.sent - self.acked - self.failed
            if unresolved > 0:
                self.failed += unresolved
                self.errors.add("UNRESOLVED_AT_EXIT", unresolved)
        self.acked_file.close()
        summary = {
            "run_id": self.args.run_id,
            "topic": self.args.topic,
            "sent": self.sent,
            "acked": self.acked,
            "failed": self.failed,
            "errors": self.errors.as_dict(),
        }
        summary.update(extra)
        summary["stop_reason"] = self.stop_reason
        return summary


def produce_confluent(run, args, stop):
    from confluent_kafka import KafkaException, Producer

    last_stats = {"json": None, "n": 0}

    def error_cb(err):
        run.errors.add(err.name())
        log.warning("librdkafka error: %s", err)

    def stats_cb(js):
        last_stats["json"] = js
        last_stats["n"] += 1

    conf = {
        "bootstrap.servers": args.bootstrap,
        "client.id": f"pydriver-producer-{args.run_id}",
        "linger.ms": "5",
        "statistics.interval.ms": "1000",
    }
    conf.update(args.props)
    try:
        stats_interval_ms = int(conf.get("statistics.interval.ms", "0") or 0)
    except ValueError:
        raise Fatal(f"statistics.interval.ms is not an integer: {conf['statistics.interval.ms']!r}")
    conf["error_cb"] = error_cb
    conf["logger"] = make_librdkafka_logger(run.internal_errors)
    if stats_interval_ms > 0:
        conf["stats_cb"] = stats_cb
    try:
        producer = Producer(conf)
    except KafkaException as e:
        raise Fatal(f"cannot create the confluent producer: {e}")

    partitions = args.partitions or confluent_partition_count(producer, args.topic)
    log.info("producing to %s (%d partitions) at %s records/s", args.topic, partitions, args.rate)

    def on_delivery(err, msg):
        try:
            seq = int(msg.key().decode("utf-8").rsplit(":", 1)[1])
        except Exception:
            seq = -1
        if err is None:
            run.on_ack(seq, msg.partition(), msg.offset())
        else:
            run.on_fail(err.name())

    start = time.monotonic()
    pace = start
    while not run.should_stop(start):
        wait = run.due(pace)
        if wait > 0:
            producer.poll(min(wait, 0.05))
            run.acked_file.maybe_flush()
            continue
        seq = run.sent
        key, value = run.key_value(seq)
        try:
            producer.produce(args.topic, value=value, key=key, partition=seq % partitions,
                             on_delivery=on_delivery)
        except BufferError:
            # Local queue full: back-pressure, not a failure. Serve callbacks and retry.
            producer.poll(0.05)
            continue
        except KafkaException as e:
            run.sent += 1
            run.on_fail(e.args[0].name() if e.args and hasattr(e.args[0], "name") else "KafkaException")
            continue
        run.sent += 1
        producer.poll(0)
        run.acked_file.maybe_flush()
        pace = run.pace_start(pace)

    log.info("stopping after %d records; flushing", run.sent)
    remaining = producer.flush(FLUSH_TIMEOUT_S)
    if remaining:
        log.warning("%d records still undelivered after %.0f s; purging them", remaining, FLUSH_TIMEOUT_S)
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer.flush(5)
    elapsed_ms = int((time.monotonic() - run.created) * 1000)

    # One more statistics report after the flush, so the retry count covers the whole run.
    if stats_interval_ms > 0:
        seen = last_stats["n"]
        deadline = time.monotonic() + 2.0 * stats_interval_ms / 1000.0 + 1.0
        while last_stats["n"] == seen and time.monotonic() < deadline:
            producer.poll(0.1)
    retries = -1
    stats_extra = {}
    if last_stats["json"]:
        try:
            stats = json.loads(last_stats["json"])
            brokers = stats.get("brokers", {}).values()
            retries = sum(int(b.get("txretries", 0)) for b in brokers)
            stats_extra = {
                "txerrs": sum(int(b.get("txerrs", 0)) for b in brokers),
                "req_timeouts": sum(int(b.get("req_timeouts", 0)) for b in brokers),
                "rxerrs": sum(int(b.get("rxerrs", 0)) for b in brokers),
                # Messages transmitted, retransmissions included: txmsgs - sent estimates the
                # message-level retries (e.g. after NOT_LEADER_FOR_PARTITION), which txretries
                # (whole requests retried) does not count.
                "txmsgs": int(stats.get("txmsgs", 0)),
                "retransmits_est": max(0, int(stats.get("txmsgs", 0)) - run.sent),
            }
        except (ValueError, TypeError, AttributeError) as e:
            log.warning("cannot parse librdkafka statistics: %s", e)

    summary = run.finish({
        "record_send_total": run.sent,
        "record_retry_total": retries,
        "record_error_total": None,  # filled below (failed deliveries)
        "retry_metric": "librdkafka txretries (requests)",
        "librdkafka_stats": stats_extra,
        "internal_errors": run.internal_errors.as_dict(),
        "partitions": partitions,
        "elapsed_ms": elapsed_ms,
        "client": confluent_client_name(),
        "client_version": confluent_version(),
    })
    summary["record_error_total"] = summary["failed"]
    stop_log_counting()
    return summary


def confluent_partition_count(client, topic):
    """Partition count from metadata; retries while the topic is unknown or being created."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + METADATA_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        try:
            md = client.list_topics(topic, timeout=5)
            t = md.topics.get(topic)
            if t is not None and t.error is None and t.partitions:
                return len(t.partitions)
            last = t.error if t is not None else "topic missing from metadata"
        except KafkaException as e:
            last = e
        time.sleep(0.5)
    raise Fatal(f"no metadata for topic {topic} after {METADATA_TIMEOUT_S:.0f} s: {last}")


def kafka_python_attach_totals(producer):
    """Adds cumulative totals to the sensors kafka-python keeps only as rates.

    kafka-python's producer-metrics has record-retry-rate/record-error-rate/record-send-rate but
    no *-total; a Total stat on the same sensors gives the Java-style counters.
    """
    names = (("record-retries", "record-retry-total"),
             ("errors", "record-error-total"),
             ("records-per-request", "record-send-total"))
    m = getattr(producer, "_metrics", None)
    if m is None:
        return
    try:
        from kafka.metrics.stats import Total
    except ImportError:
        return
    existing = producer.metrics() or {}
    have = existing.get("producer-metrics", {})
    for sensor_name, metric in names:
        if metric in have:
            continue
        sensor = m.get_sensor(sensor_name)
        if sensor is None:
            continue
        try:
            sensor.add(m.metric_name(metric, "producer-metrics", "total (added by driver.py)"), Total())
        except Exception as e:  # pragma: no cover - depends on the library version
            log.warning("cannot add %s to kafka-python metrics: %s", metric, e)


def kafka_python_hook_produce_errors(producer, counts):
    """Counts the partition-level errors of produce responses (which kafka-python retries).

    kafka-python handles them inside its sender thread; its retry warning even names the error
    class "type". Wrapping Sender._complete_batch sees every partition response.
    """
    sender = getattr(producer, "_sender", None)
    orig = getattr(sender, "_complete_batch", None)
    if orig is None:
        log.warning("kafka-python internals changed: produce errors are not counted")
        return
    from kafka.errors import NoError

    def complete_batch(batch, partition_response, *a, **kw):
        try:
            err = partition_response.error
            if err is not None and err is not NoError:
                counts.add(err.__name__ if isinstance(err, type) else type(err).__name__)
        except Exception:
            pass
        return orig(batch, partition_response, *a, **kw)

    sender._complete_batch = complete_batch


def produce_kafka_python(run, args, stop):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError, KafkaTimeoutError

    install_kafka_python_log_counting(run.internal_errors)
    conf = {
        "bootstrap_servers": [s.strip() for s in args.bootstrap.split(",") if s.strip()],
        "client_id": f"pydriver-producer-{args.run_id}",
        "linger_ms": 5,
    }
    conf.update(kafka_python_config(args.props))
    try:
        producer = KafkaProducer(**conf)
    except Exception as e:
        raise Fatal(f"cannot create the kafka-python producer: {type(e).__name__}: {e}")
    kafka_python_attach_totals(producer)
    kafka_python_hook_produce_errors(producer, run.internal_errors)
    api_version = producer.config.get("api_version")

    if args.partitions:
        partitions = args.partitions
    else:
        deadline = time.monotonic() + METADATA_TIMEOUT_S
        parts = None
        while not parts and time.monotonic() < deadline:
            try:
                parts = producer.partitions_for(args.topic)
            except KafkaError as e:
                log.info("waiting for metadata of %s: %s", args.topic, e)
                time.sleep(0.5)
        if not parts:
            raise Fatal(f"no metadata for topic {args.topic} after {METADATA_TIMEOUT_S:.0f} s")
        partitions = len(parts)
    log.info("producing to %s (%d partitions) at %s records/s, broker api_version %s",
             args.topic, partitions, args.rate, broker_version_str(api_version))

    def ok(seq, md):
        run.on_ack(seq, md.partition, md.offset)

    def fail(seq, exc):
        run.on_fail(type(exc).__name__)

    start = time.monotonic()
    pace = start
    while not run.should_stop(start):
        wait = run.due(pace)
        if wait > 0:
            time.sleep(min(wait, 0.05))
            run.acked_file.maybe_flush()
            continue
        seq = run.sent
        key, value = run.key_value(seq)
        try:
            fut = producer.send(args.topic, value=value, key=key, partition=seq % partitions)
        except Exception as e:
            run.sent += 1
            run.on_fail(type(e).__name__)
            continue
        run.sent += 1
        fut.add_callback(ok, seq)
        fut.add_errback(fail, seq)
        run.acked_file.maybe_flush()
        pace = run.pace_start(pace)

    log.info("stopping after %d records; flushing", run.sent)
    try:
        producer.flush(timeout=FLUSH_TIMEOUT_S)
    except KafkaTimeoutError:
        log.warning("flush did not complete within %.0f s", FLUSH_TIMEOUT_S)
    elapsed_ms = int((time.monotonic() - run.created) * 1000)

    metrics = (producer.metrics() or {}).get("producer-metrics", {})

    def total(name):
        v = metrics.get(name)
        return int(v) if isinstance(v, (int, float)) else -1

    summary = run.finish({
        "record_send_total": total("record-send-total"),
        "record_retry_total": total("record-retry-total"),
        "record_error_total": total("record-error-total"),
        "retry_metric": "kafka-python producer-metrics record-retry-total (records)",
        "internal_errors": run.internal_errors.as_dict(),
        "partitions": partitions,
        "api_version": broker_version_str(api_version),
        "elapsed_ms": elapsed_ms,
        "client": kafka_python_client_name(),
        "client_version": kafka_python_version(),
    })
    stop_log_counting()
    try:
        producer.close(timeout=5)
    except Exception as e:
        log.warning("producer close: %s", e)
    return summary


def cmd_produce(args, stop):
    """Returns (summary, exit code). A fatal error still writes a summary, with "fatal"."""
    run = ProduceRun(args, stop)
    try:
        if args.client == "confluent":
            return produce_confluent(run, args, stop), 0
        return produce_kafka_python(run, args, stop), 0
    except Fatal as e:
        log.error("fatal: %s", e)
        stop_log_counting()
        if args.client == "confluent":
            client, client_version = confluent_client_name(), confluent_version()
        else:
            client, client_version = kafka_python_client_name(), kafka_python_version()
        run.stop_reason = "fatal"
        summary = run.finish({
            "record_send_total": run.sent,
            "record_retry_total": -1,
            "record_error_total": run.failed,
            "elapsed_ms": int((time.monotonic() - run.created) * 1000),
            "client": client,
            "client_version": client_version,
            "fatal": str(e),
        })
        return summary, 1


# ---------------------------------------------------------------------------------------------
# consume


class Checker:
    """Per-record bookkeeping of the consume command (the same definitions as the Java driver).

    Per record with key "ID:seq" read at (topic, partition, offset):
    - redelivered: this (topic, partition, offset) was read before (e.g. after a rebalance);
    - duplicate: a new offset, but (topic, ID, seq) was already read at another offset;
    - order violation: a new offset above the last one read for (topic, partition, ID), with a
      lower seq than the record at that last offset;
    - distinct: records that are neither redelivered nor duplicates (records whose key is not
      "ID:seq" count as distinct when their offset is new).
    So consumed = distinct + redelivered + duplicates.
    """

    KEY = re.compile(r"^(.+):(\d+)$")

    def __init__(self):
        self.consumed = 0
        self.distinct = 0
        self.redelivered = 0
        self.duplicates = 0
        self.order_violations = 0
        self.offsets = collections.defaultdict(set)  # (topic, partition) -> offsets read
        self.next_offset = {}  # (topic, partition) -> highest offset read + 1
        self.seqs = collections.defaultdict(set)  # (topic, ID) -> seqs read
        self.last = {}  # (topic, partition, ID) -> (offset, seq) of the highest offset read
        self.per_run = {}  # ID -> {"consumed", "duplicates", "order_violations"}

    LOGGED = 10  # of each kind; the summary has the counts

    def _note(self, n, fmt, *args):
        if n <= self.LOGGED:
            log.warning(fmt, *args)
            if n == self.LOGGED:
                log.warning("(further ones of this kind are counted, not logged)")

    def record(self, topic, partition, offset, key):
        self.consumed += 1
        tp = (topic, partition)
        if offset + 1 > self.next_offset.get(tp, -1):
            self.next_offset[tp] = offset + 1
        m = self.KEY.match(key) if key is not None else None
        run = seq = pr = None
        if m:
            run, seq = m.group(1), int(m.group(2))
            pr = self.per_run.get(run)
            if pr is None:
                pr = self.per_run[run] = {"consumed": 0, "duplicates": 0, "order_violations": 0}
            pr["consumed"] += 1
        seen = self.offsets[tp]
        if offset in seen:
            self.redelivered += 1
            return
        seen.add(offset)
        if run is None:
            self.distinct += 1
            return
        seqs = self.seqs[(topic, run)]
        if seq in seqs:
            self.duplicates += 1
            pr["duplicates"] += 1
            self._note(self.duplicates, "duplicate %s at %s-%d offset %d", key, topic, partition, offset)
        else:
            seqs.add(seq)
            self.distinct += 1
        k = (topic, partition, run)
        last = self.last.get(k)
        if last is None or offset > last[0]:
            if last is not None and seq < last[1]:
                self.order_violations += 1
                pr["order_violations"] += 1
                self._note(self.order_violations, "order violation %s at %s-%d offset %d: after seq %d at offset %d",
                            key, topic, partition, offset, last[1], last[0])
            self.last[k] = (offset, seq)


def key_text(key):
    if key is None:
        return None
    if isinstance(key, bytes):
        key = key.decode("utf-8", errors="backslashreplace")
    return key


def key_field(text):
    if text is None:
        return "-"
    if text == "":
        return '""'
    if any(c.isspace() or not c.isprintable() for c in text):
        return text.encode("unicode_escape").decode("ascii").replace(" ", "\\x20")
    return text


class ConfluentConsumer:
    def __init__(self, args, errors, internal_errors):
        from confluent_kafka import Consumer, KafkaException

        self.errors = errors
        self.rebalances = 0
        conf = {
            "bootstrap.servers": args.bootstrap,
            # librdkafka wants a group.id even for assign(); it is never used to join a group.
            "group.id": args.group or f"pydriver-assign-{os.getpid()}-{int(time.time() * 1000)}",
            "client.id": "pydriver-consumer",
            "auto.offset.reset": "earliest",
        }
        if args.group is None:
            conf["enable.auto.commit"] = "false"
        conf.update(args.props)
        conf["error_cb"] = self._error_cb
        conf["logger"] = make_librdkafka_logger(internal_errors)
        # Diagnostics: FAIRLEAD_RDKAFKA_DEBUG=fetch,consumer,... writes librdkafka's debug log
        # for those contexts next to the consumed-records file.
        debug = os.environ.get("FAIRLEAD_RDKAFKA_DEBUG")
        if debug:
            conf["debug"] = debug
            handler = logging.FileHandler(args.consumed + ".rdkafka.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            handler.setLevel(logging.DEBUG)
            rdlog = logging.getLogger("librdkafka")
            rdlog.addHandler(handler)
            rdlog.propagate = False
        try:
            self.c = Consumer(conf)
        except KafkaException as e:
            raise Fatal(f"cannot create the confluent consumer: {e}")
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self.TopicPartition = TopicPartition
        if args.group is None:
            tps = []
            for t in args.topics:
                n = confluent_partition_count(self.c, t)
                tps += [TopicPartition(t, p, OFFSET_BEGINNING) for p in range(n)]
            self.c.assign(tps)
        else:
            self.c.subscribe(args.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _error_cb(self, err):
        self.errors.add(err.name())
        log.warning("librdkafka error: %s", err)

    def _on_assign(self, _c, parts):
        self.rebalances += 1
        log.info("assigned: %s", ",".join(f"{p.topic}-{p.partition}" for p in parts) or "(none)")

    def _on_revoke(self, _c, parts):
        log.info("revoked: %s", ",".join(f"{p.topic}-{p.partition}" for p in parts) or "(none)")

    def poll(self, timeout):
        from confluent_kafka import KafkaError

        out = []
        for msg in self.c.consume(num_messages=500, timeout=timeout):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                self.errors.add(err.name())
                log.warning("consume error on %s-%s: %s", msg.topic(), msg.partition(), err)
                if err.fatal():
                    raise Fatal(f"fatal consumer error: {err}")
                continue
            out.append((msg.topic(), msg.partition(), msg.offset(), key_text(msg.key())))
        return out

    def assignment(self):
        return [(tp.topic, tp.partition) for tp in self.c.assignment()]

    def watermarks(self, tps):
        out = {}
        for t, p in tps:
            try:
                lo, hi = self.c.get_watermark_offsets(self.TopicPartition(t, p), timeout=5, cached=False)
                out[(t, p)] = (lo, hi)
            except Exception as e:
                log.warning("watermarks of %s-%d: %s", t, p, e)
        return out

    def positions(self, tps):
        out = {}
        try:
            for tp in self.c.position([self.TopicPartition(t, p) for t, p in tps]):
                if tp.offset >= 0:
                    out[(tp.topic, tp.partition)] = tp.offset
        except Exception as e:
            log.warning("position: %s", e)
        return out

    def close(self):
        self.c.close()


class KafkaPythonConsumer:
    def __init__(self, args, errors, internal_errors):
        from kafka import KafkaConsumer, TopicPartition
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        self.errors = errors
        self.TopicPartition = TopicPartition
        install_kafka_python_log_counting(internal_errors)
        self.rebalances = 0
        conf = {
            "bootstrap_servers": [s.strip() for s in args.bootstrap.split(",") if s.strip()],
            "group_id": args.group,
            "client_id": "pydriver-consumer",
            "auto_offset_reset": "earliest",
        }
        if args.group is None:
            conf["enable_auto_commit"] = False
        conf.update(kafka_python_config(args.props))
        try:
            self.c = KafkaConsumer(**conf)
        except Exception as e:
            raise Fatal(f"cannot create the kafka-python consumer: {type(e).__name__}: {e}")
        self.api_version = self.c.config.get("api_version")
        if args.group is None:
            tps = []
            for t in args.topics:
                deadline = time.monotonic() + METADATA_TIMEOUT_S
                parts = None
                while not parts and time.monotonic() < deadline:
                    try:
                        parts = self.c.partitions_for_topic(t)
                    except Exception as e:
                        log.info("waiting for metadata of %s: %s", t, e)
                    if not parts:
                        time.sleep(0.5)
                if not parts:
                    raise Fatal(f"no metadata for topic {t} after {METADATA_TIMEOUT_S:.0f} s")
                tps += [TopicPartition(t, p) for p in sorted(parts)]
            self.c.assign(tps)
            self.c.seek_to_beginning(*tps)
        else:
            outer = self

            class Listener(ConsumerRebalanceListener):
                def on_partitions_revoked(self, revoked):
                    log.info("revoked: %s", ",".join(f"{p.topic}-{p.partition}" for p in revoked) or "(none)")

                def on_partitions_assigned(self, assigned):
                    outer.rebalances += 1
                    log.info("assigned: %s", ",".join(f"{p.topic}-{p.partition}" for p in assigned) or "(none)")

            self.c.subscribe(topics=args.topics, listener=Listener())

    def poll(self, timeout):
        out = []
        from kafka.errors import KafkaError

        try:
            batches = self.c.poll(timeout_ms=int(timeout * 1000), max_records=500)
        except Exception as e:
            # As the Java driver: retriable errors are counted and polling goes on, others end
            # the run.
            self.errors.add(type(e).__name__)
            if not (isinstance(e, KafkaError) and getattr(e, "retriable", False)):
                raise Fatal(f"poll: {type(e).__name__}: {e}")
            log.warning("poll error: %s: %s", type(e).__name__, e)
            time.sleep(0.1)
            return out
        for tp, records in batches.items():
            for r in records:
                out.append((tp.topic, tp.partition, r.offset, key_text(r.key)))
        return out

    def assignment(self):
        return [(tp.topic, tp.partition) for tp in self.c.assignment()]

    def watermarks(self, tps):
        parts = [self.TopicPartition(t, p) for t, p in tps]
        try:
            lo = self.c.beginning_offsets(parts)
            hi = self.c.end_offsets(parts)
        except Exception as e:
            self.errors.add(type(e).__name__)
            log.warning("watermarks: %s: %s", type(e).__name__, e)
            return {}
        return {(tp.topic, tp.partition): (lo.get(tp, 0), hi[tp]) for tp in parts if tp in hi}

    def positions(self, tps):
        out = {}
        for t, p in tps:
            try:
                out[(t, p)] = self.c.position(self.TopicPartition(t, p), timeout_ms=100)
            except Exception:
                pass
        return out

    def close(self):
        self.c.close()


def cmd_consume(args, stop):
    """Returns (summary, exit code)."""
    errors = ErrorCounts()
    internal_errors = ErrorCounts()
    start = time.monotonic()
    out = LineFile(args.consumed)
    check = Checker()
    backend = None
    fatal = None
    drain_start = None
    watermarks = {}  # (topic, partition) -> (low, high) taken when the drain started
    drained = False
    waiting_on = []
    try:
        if args.client == "confluent":
            backend = ConfluentConsumer(args, errors, internal_errors)
        else:
            backend = KafkaPythonConsumer(args, errors, internal_errors)
        while True:
            for topic, partition, offset, key in backend.poll(0.2):
                check.record(topic, partition, offset, key)
                out.write(f"{topic} {partition} {offset} {key_field(key)}\n")
            out.maybe_flush()
            if not stop.is_set():
                continue
            now = time.monotonic()
            if drain_start is None:
                drain_start = now
                log.info("stop requested (%s): draining (up to %.0f s)", stop.reason, args.drain_timeout)
            # Every assigned partition must reach the high watermark taken at drain start
            # (partitions assigned later: when first seen). An empty assignment never counts as
            # drained: the group has not given this member anything yet.
            assigned = backend.assignment()
            missing = [tp for tp in assigned if tp not in watermarks]
            if missing:
                got = backend.watermarks(missing)
                watermarks.update(got)
                if got:
                    log.info("drain targets: %s", {f"{t}-{p}": hw for (t, p), (_, hw) in got.items()})
            waiting_on = []
            for tp in assigned:
                wm = watermarks.get(tp)
                if wm is None or max(check.next_offset.get(tp, -1), wm[0]) < wm[1]:
                    waiting_on.append(tp)
            if waiting_on:
                # The client's position can be past the last record read (transaction markers).
                pos = backend.positions([tp for tp in waiting_on if tp in watermarks])
                waiting_on = [tp for tp in waiting_on
                              if tp not in watermarks or pos.get(tp, -1) < watermarks[tp][1]]
            if assigned and not waiting_on:
                drained = True
                break
            if now - drain_start >= args.drain_timeout:
                log.warning("drain timeout after %.0f s: %s", args.drain_timeout,
                            f"{len(waiting_on)} partitions short of their high watermark"
                            if assigned else "nothing assigned")
                break
    except Fatal as e:
        fatal = str(e)
        log.error("fatal: %s", fatal)
    finally:
        out.close()
        stop_log_counting()
        if backend is not None:
            try:
                backend.close()
            except Exception as e:
                log.warning("consumer close: %s: %s", type(e).__name__, e)
                errors.add(type(e).__name__)
    if args.client == "confluent":
        client, client_version = confluent_client_name(), confluent_version()
    else:
        client, client_version = kafka_python_client_name(), kafka_python_version()
    summary = {
        "consumed": check.consumed,
        "distinct": check.distinct,
        "redelivered": check.redelivered,
        "duplicates": check.duplicates,
        "order_violations": check.order_violations,
        "drained": drained,
        "per_run": check.per_run,
        "errors": errors.as_dict(),
        "elapsed_ms": int((time.monotonic() - start) * 1000),
        "client": client,
        "client_version": client_version,
        "rebalances": backend.rebalances if backend is not None else 0,
        "internal_errors": internal_errors.as_dict(),
    }
    if not drained and waiting_on:
        summary["not_drained"] = [f"{t}-{p}" for t, p in waiting_on]
    if args.client == "kafka-python" and backend is not None:
        summary["api_version"] = broker_version_str(backend.api_version)
    if fatal is not None:
        summary["fatal"] = fatal
    return summary, (1 if fatal is not None else 0)


# ---------------------------------------------------------------------------------------------
# group-consume (confluent only): a group member committing synchronously what it processed


class GroupCommitter:
    """Synchronous commits of processed offsets, with every success and failure recorded."""

    def __init__(self, consumer, commits_file):
        from confluent_kafka import KafkaException, TopicPartition

        self.c = consumer
        self.KafkaException = KafkaException
        self.TopicPartition = TopicPartition
        self.out = commits_file
        self.pending = {}  # (topic, partition) -> next offset to commit (last processed + 1)
        self.last_committed = {}
        self.commits_ok = 0
        self.commit_failures = 0
        self.exceptions = ErrorCounts()
        self.max_commit_ms = 0

    def commit(self, tps=None):
        """commit(asynchronous=False) of the pending offsets of tps (default: all pending)."""
        keys = [tp for tp in (self.pending if tps is None else tps) if tp in self.pending]
        if not keys:
            return
        offsets = [self.TopicPartition(t, p, self.pending[(t, p)]) for t, p in keys]
        t0 = time.monotonic()
        try:
            result = self.c.commit(offsets=offsets, asynchronous=False)
        except self.KafkaException as e:
            err = e.args[0] if e.args else None
            name = err.name() if hasattr(err, "name") else type(e).__name__
            self.commit_failures += 1
            self.exceptions.add(name)
            log.warning("commit %s failed after %d ms: %s", keys, (time.monotonic() - t0) * 1000, e)
            return
        ms = int((time.monotonic() - t0) * 1000)
        failed = [tp for tp in result or [] if tp.error is not None]
        if failed:
            self.commit_failures += 1
            for tp in failed:
                self.exceptions.add(tp.error.name())
            log.warning("commit failed for %s", [(tp.topic, tp.partition, str(tp.error)) for tp in failed])
        else:
            self.commits_ok += 1
            self.max_commit_ms = max(self.max_commit_ms, ms)
        bad = {(tp.topic, tp.partition) for tp in failed}
        for tp in offsets:
            k = (tp.topic, tp.partition)
            if k in bad:
                continue
            self.out.write(f"{tp.topic} {tp.partition} {tp.offset}\n")
            self.last_committed[k] = tp.offset
            if self.pending.get(k) == tp.offset:
                del self.pending[k]


def cmd_group_consume(args, stop):
    """Returns (summary, exit code)."""
    from confluent_kafka import Consumer, KafkaError, KafkaException

    errors = ErrorCounts()
    internal_errors = ErrorCounts()
    poll_errors = ErrorCounts()
    start = time.monotonic()
    out = LineFile(args.consumed)
    commits = LineFile(args.commits)
    check = Checker()
    state = {"rebalances": 0, "revocations": 0}
    fatal = None
    drained = False
    waiting_on = []
    c = None
    committer = None

    def error_cb(err):
        errors.add(err.name())
        log.warning("librdkafka error: %s", err)

    def on_assign(_c, parts):
        state["rebalances"] += 1
        log.info("assigned: %s", ",".join(f"{p.topic}-{p.partition}" for p in parts) or "(none)")

    def on_revoke(_c, parts):
        state["revocations"] += 1
        log.info("revoked: %s", ",".join(f"{p.topic}-{p.partition}" for p in parts) or "(none)")
        tps = [(p.topic, p.partition) for p in parts]
        committer.commit(tps)
        for tp in tps:
            committer.pending.pop(tp, None)

    def on_lost(_c, parts):
        state["revocations"] += 1
        log.warning("lost: %s", ",".join(f"{p.topic}-{p.partition}" for p in parts) or "(none)")
        for p in parts:
            committer.pending.pop((p.topic, p.partition), None)

    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": "pydriver-group",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": "false",
    }
    if args.protocol != "classic":
        conf["group.protocol"] = args.protocol
    conf.update(args.props)
    conf["error_cb"] = error_cb
    conf["logger"] = make_librdkafka_logger(internal_errors)
    debug = os.environ.get("FAIRLEAD_RDKAFKA_DEBUG")
    if debug:
        conf["debug"] = debug
        handler = logging.FileHandler(args.consumed + ".rdkafka.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        handler.setLevel(logging.DEBUG)
        rdlog = logging.getLogger("librdkafka")
        rdlog.addHandler(handler)
        rdlog.propagate = False
    watermarks = {}
    try:
        try:
            c = Consumer(conf)
        except KafkaException as e:
            raise Fatal(f"cannot create the confluent consumer: {e}")
        from confluent_kafka import TopicPartition

        committer = GroupCommitter(c, commits)
        c.subscribe(args.topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
        drain_start = None
        while True:
            got = 0
            for msg in c.consume(num_messages=500, timeout=0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    poll_errors.add(err.name())
                    log.warning("consume error on %s-%s: %s", msg.topic(), msg.partition(), err)
                    if err.fatal():
                        raise Fatal(f"fatal consumer error: {err}")
                    continue
                key = key_text(msg.key())
                check.record(msg.topic(), msg.partition(), msg.offset(), key)
                out.write(f"{msg.topic()} {msg.partition()} {msg.offset()} {key_field(key)}\n")
                committer.pending[(msg.topic(), msg.partition())] = msg.offset() + 1
                got += 1
            if got:
                # What is in the consumed file is what a commit may cover.
                out.maybe_flush()
                with out.lock:
                    out.fh.flush()
                committer.commit()
            commits.maybe_flush()
            if not stop.is_set():
                continue
            now = time.monotonic()
            if drain_start is None:
                drain_start = now
                log.info("stop requested (%s): draining (up to %.0f s)", stop.reason, args.drain_timeout)
            assigned = [(tp.topic, tp.partition) for tp in c.assignment()]
            for tp in assigned:
                if tp not in watermarks:
                    try:
                        lo, hi = c.get_watermark_offsets(TopicPartition(*tp), timeout=5, cached=False)
                        watermarks[tp] = (lo, hi)
                    except Exception as e:
                        log.warning("watermarks of %s-%d: %s", tp[0], tp[1], e)
            waiting_on = []
            for tp in assigned:
                wm = watermarks.get(tp)
                if wm is None or max(check.next_offset.get(tp, -1), wm[0]) < wm[1]:
                    waiting_on.append(tp)
            if assigned and not waiting_on:
                drained = True
                break
            if now - drain_start >= args.drain_timeout:
                log.warning("drain timeout after %.0f s: %s", args.drain_timeout,
                            f"{len(waiting_on)} partitions short of their high watermark"
                            if assigned else "nothing assigned")
                break
        committer.commit()
    except Fatal as e:
        fatal = str(e)
        log.error("fatal: %s", fatal)
    finally:
        out.close()
        stop_log_counting()
        if c is not None:
            try:
                c.close()
            except Exception as e:
                log.warning("consumer close: %s: %s", type(e).__name__, e)
                poll_errors.add(type(e).__name__)
        commits.close()
    commit_exc = committer.exceptions.as_dict() if committer else {}
    all_exc = collections.Counter(commit_exc)
    all_exc.update(poll_errors.as_dict())
    summary = {
        "group": args.group,
        "group_protocol": args.protocol,
        "consumed": check.consumed,
        "redelivered": check.redelivered,
        "commits_ok": committer.commits_ok if committer else 0,
        "commit_failures": committer.commit_failures if committer else 0,
        "commit_exceptions": commit_exc,
        "poll_exceptions": poll_errors.as_dict(),
        "exceptions": dict(sorted(all_exc.items())),
        "last_committed": {f"{t}-{p}": o for (t, p), o in sorted((committer.last_committed if committer else {}).items())},
        "uncommitted": len(committer.pending) if committer else 0,
        "max_commit_ms": committer.max_commit_ms if committer else 0,
        "rebalances": state["rebalances"],
        "revocations": state["revocations"],
        "drained": drained,
        "errors": errors.as_dict(),
        "internal_errors": internal_errors.as_dict(),
        "elapsed_ms": int((time.monotonic() - start) * 1000),
        "client": confluent_client_name(),
        "client_version": confluent_version(),
    }
    if not drained and waiting_on:
        summary["not_drained"] = [f"{t}-{p}" for t, p in waiting_on]
    if fatal is not None:
        summary["fatal"] = fatal
    return summary, (1 if fatal is not None else 0)


# ---------------------------------------------------------------------------------------------
# command line


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"driver.py: error: {message}", file=sys.stderr)
        sys.exit(2)


def positive_int(s):
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
    return v


def non_negative_int(s):
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def non_negative_float(s):
    v = float(s)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def build_parser():
    p = Parser(prog="driver.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    def common(sp):
        sp.add_argument("--client", required=True, choices=CLIENTS)
        sp.add_argument("--bootstrap", required=True)
        sp.add_argument("--summary", required=True)
        sp.add_argument("--prop", action="append", default=[], metavar="KEY=VALUE",
                        help="client setting, overrides the driver's defaults (repeatable)")
        sp.add_argument("--no-stdin", action="store_true",
                        help="do not stop on stdin EOF (stop with --count/--duration or SIGTERM)")
        sp.add_argument("--verbose", "-v", action="count", default=0,
                        help="stderr logs: once INFO (driver and clients), twice DEBUG (also the "
                             "librdkafka 'debug' contexts and kafka-python's fetcher)")

    pp = sub.add_parser("produce", help="send records at a steady rate")
    common(pp)
    pp.add_argument("--topic", required=True)
    pp.add_argument("--run-id", required=True)
    pp.add_argument("--acked", required=True)
    pp.add_argument("--rate", type=non_negative_float, default=200.0,
                    help="records/s in total (default 200; 0 = as fast as possible)")
    pp.add_argument("--size", type=non_negative_int, default=100, help="value bytes (default 100)")
    pp.add_argument("--count", type=non_negative_int)
    pp.add_argument("--duration", type=non_negative_float)
    pp.add_argument("--partitions", type=positive_int)

    cp = sub.add_parser("consume", help="read records, check them, drain on stdin EOF")
    common(cp)
    cp.add_argument("--topic", required=True, help="topic or comma-separated topics")
    cp.add_argument("--consumed", required=True)
    cp.add_argument("--group")
    cp.add_argument("--drain-timeout", type=non_negative_float, default=60.0)

    gp = sub.add_parser("group-consume", help="a group member committing synchronously (confluent only)")
    common(gp)
    gp.add_argument("--topic", required=True, help="topic or comma-separated topics")
    gp.add_argument("--group", required=True)
    gp.add_argument("--protocol", choices=("classic", "consumer"), default="classic")
    gp.add_argument("--consumed", required=True)
    gp.add_argument("--commits", required=True)
    gp.add_argument("--drain-timeout", type=non_negative_float, default=60.0)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.props = parse_props(args.prop)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    if args.command == "group-consume" and args.client != "confluent":
        parser.error("group-consume is implemented for --client confluent only")
    if args.command in ("consume", "group-consume"):
        args.topics = [t.strip() for t in args.topic.split(",") if t.strip()]
        if not args.topics:
            parser.error("--topic names no topic")

    # One stderr handler on the root logger; its own level decides what is shown, since the
    # counting handlers above enable DEBUG records on a few client loggers.
    stderr = logging.StreamHandler(sys.stderr)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    stderr.setLevel(level)
    stderr.setFormatter(logging.Formatter(
        "%(asctime)s driver[%(process)d] %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(stderr)
    logging.getLogger().setLevel(level)
    log.setLevel(level)
    stop = StopSignal(watch_stdin=not args.no_stdin)
    if args.command == "produce":
        summary, code = cmd_produce(args, stop)
    elif args.command == "group-consume":
        summary, code = cmd_group_consume(args, stop)
    else:
        summary, code = cmd_consume(args, stop)
    emit_summary(args.summary, summary)
    return code


if __name__ == "__main__":
    sys.exit(main())
