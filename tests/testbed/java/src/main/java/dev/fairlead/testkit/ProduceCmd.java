package dev.fairlead.testkit;

import java.io.BufferedWriter;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import org.apache.kafka.clients.producer.Callback;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * produce: sends "ID:seq" records at a fixed rate, seq % P to partition P, and records every ack.
 *
 * <p>With --key and --value every record has that same key and value (as heartbeats or status events
 * do); with --id-header the record's "ID:seq" also travels in a header of that name, so the records can
 * still be told apart.
 *
 * <p>Acked file: "partition seq offset" per acknowledged record. Summary: see {@link #summary}.
 */
final class ProduceCmd {
    static final Set<String> OPTIONS = Set.of(
        "bootstrap", "topic", "run-id", "acked", "summary", "rate", "size", "count", "duration", "partitions",
        "key", "value", "id-header");

    private static final Logger LOG = LoggerFactory.getLogger("testkit.produce");

    /** When the schedule falls behind by more than this (e.g. send blocked), it restarts instead of bursting. */
    private static final long MAX_BEHIND_NANOS = 1_000_000_000L;

    private final String bootstrap;
    private final String topic;
    private final String runId;
    private final String ackedFile;
    private final String summaryFile;
    private final double rate;
    private final int size;
    private final long count;
    private final double durationSec;
    private final int partitionsOpt;
    /** Every record's key and value when set, instead of its ID:seq. */
    private final byte[] fixedKey;
    private final byte[] fixedValue;
    /** The header that carries each record's ID:seq, when set. */
    private final String idHeader;
    private final Properties props;

    private final AtomicLong acked = new AtomicLong();
    private final AtomicLong failed = new AtomicLong();
    private final Map<String, AtomicLong> errors = new ConcurrentHashMap<>();
    private BufferedWriter ackedOut;
    private volatile IOException ackedWriteError;
    private long startupMs;

    ProduceCmd(Opts o) throws UsageException {
        bootstrap = o.required("bootstrap");
        topic = o.required("topic");
        runId = o.required("run-id");
        ackedFile = o.required("acked");
        summaryFile = o.required("summary");
        rate = o.getDouble("rate", 200);
        long s = o.getLong("size", 100);
        if (s < 0 || s > Integer.MAX_VALUE) {
            throw new UsageException("--size out of range: " + s);
        }
        size = (int) s;
        count = o.getLong("count", 0);
        durationSec = o.getDouble("duration", 0);
        long p = o.getLong("partitions", 0);
        if (p < 0 || p > Integer.MAX_VALUE) {
            throw new UsageException("--partitions out of range: " + p);
        }
        partitionsOpt = (int) p;
        String k = o.get("key", null);
        fixedKey = k == null ? null : k.getBytes(StandardCharsets.UTF_8);
        String v = o.get("value", null);
        fixedValue = v == null ? null : v.getBytes(StandardCharsets.UTF_8);
        idHeader = o.get("id-header", null);

        props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "testkit-producer-" + runId);
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        o.applyProps(props);
    }

    int run() throws Exception {
        ackedOut = new BufferedWriter(
            new OutputStreamWriter(new FileOutputStream(ackedFile), StandardCharsets.UTF_8), 1 << 16);
        Main.watchStdinEof();

        long start = System.nanoTime();
        long sent = 0;
        String stopReason;
        Map<String, Object> summary;

        Thread flusher = new Thread(() -> {
            while (!Thread.currentThread().isInterrupted()) {
                try {
                    Thread.sleep(500);
                } catch (InterruptedException e) {
                    return;
                }
                flushAcked();
            }
        }, "testkit-acked-flusher");
        flusher.setDaemon(true);
        flusher.start();

        KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props);
        try {
            int partitions = partitionsOpt;
            if (partitions == 0) {
                java.util.List<PartitionInfo> infos = producer.partitionsFor(topic);
                partitions = infos == null ? 0 : infos.size();
                if (partitions == 0) {
                    throw new IllegalStateException("topic " + topic + " has no partitions (does it exist?)");
                }
            }
            LOG.info("producing to {} ({} partitions) at {} records/s", topic, partitions, rate);

            // --duration, the schedule and elapsed_ms count from the first send, not from process start
            startupMs = Util.elapsedMs(start);
            start = System.nanoTime();
            long durationNanos = durationSec > 0 ? (long) (durationSec * 1e9) : Long.MAX_VALUE;
            long scheduleStart = start;
            long scheduleBase = 0; // seq at which the current schedule started
            long seq = 0;
            while (true) {
                if (Main.stopRequested) {
                    stopReason = Main.stopReason;
                    break;
                }
                if (count > 0 && seq >= count) {
                    stopReason = "count";
                    break;
                }
                long now = System.nanoTime();
                if (now - start >= durationNanos) {
                    stopReason = "duration";
                    break;
                }
                if (rate > 0) {
                    long due = scheduleStart + (long) ((seq - scheduleBase) * 1e9 / rate);
                    if (now - due > MAX_BEHIND_NANOS) {
                        scheduleStart = now;
                        scheduleBase = seq;
                    } else if (due > now) {
                        long deadline = Math.min(due, start + durationNanos);
                        LockSupport.parkNanos(Math.min(deadline - now, 50_000_000L));
                        continue; // re-check the stop conditions
                    }
                }
                send(producer, seq, partitions);
                seq++;
                sent = seq;
            }
            LOG.info("stopping after {} records: {}", sent, stopReason);
            try {
                producer.flush();
            } catch (Exception e) {
                LOG.warn("flush failed: {}", Util.describe(e));
            }
            summary = summary(sent, partitions, stopReason, producer, start);
        } finally {
            try {
                producer.close(Duration.ofSeconds(30));
            } catch (Exception e) {
                LOG.warn("close failed: {}", Util.describe(e));
            }
            flusher.interrupt();
        }
        synchronized (this) {
            ackedOut.flush();
            ackedOut.close();
        }
        // Counters may have moved during close (callbacks of records aborted by a forced close).
        fillCounters(summary, start);
        String json = Json.write(summary);
        Util.writeAtomically(summaryFile, json + "\n");
        Main.OUT.println(json);
        Main.OUT.flush();
        if (ackedWriteError != null) {
            throw ackedWriteError;
        }
        return 0;
    }

    private void send(KafkaProducer<byte[], byte[]> producer, long seq, int partitions) {
        String id = runId + ":" + seq;
        byte[] key = fixedKey != null ? fixedKey : id.getBytes(StandardCharsets.UTF_8);
        byte[] value = fixedValue != null ? fixedValue : value(id);
        int partition = (int) (seq % partitions);
        AckCallback cb = new AckCallback(seq);
        try {
            ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, partition, key, value);
            if (idHeader != null) {
                record.headers().add(idHeader, id.getBytes(StandardCharsets.UTF_8));
            }
            producer.send(record, cb);
        } catch (Exception e) {
            // Thrown synchronously (the callback was not called): count it here, keep going.
            cb.onCompletion(null, e);
        }
    }

    private byte[] value(String id) {
        byte[] v = new byte[size];
        byte[] prefix = (id + ":").getBytes(StandardCharsets.UTF_8);
        int n = Math.min(prefix.length, size);
        System.arraycopy(prefix, 0, v, 0, n);
        for (int i = n; i < size; i++) {
            v[i] = (byte) ('a' + (i % 26));
        }
        return v;
    }

    private final class AckCallback implements Callback {
        private final long seq;
        private final AtomicBoolean done = new AtomicBoolean();

        AckCallback(long seq) {
            this.seq = seq;
        }

        @Override
        public void onCompletion(RecordMetadata md, Exception e) {
            if (!done.compareAndSet(false, true)) {
                return;
            }
            if (e == null) {
                acked.incrementAndGet();
                writeAck(md.partition() + " " + seq + " " + md.offset() + "\n");
            } else {
                failed.incrementAndGet();
                errors.computeIfAbsent(Main.errName(e), k -> new AtomicLong()).incrementAndGet();
                // What an application would log: the demo and humans read these lines.
                LOG.warn("send of record {} failed: {}", seq, Util.describe(e));
            }
        }
    }

    private synchronized void writeAck(String line) {
        try {
            ackedOut.write(line);
        } catch (IOException e) {
            ackedWriteError = e;
        }
    }

    private synchronized void flushAcked() {
        try {
            ackedOut.flush();
        } catch (IOException e) {
            ackedWriteError = e;
        }
    }

    private Map<String, Object> summary(long sent, int partitions, String stopReason,
                                        KafkaProducer<byte[], byte[]> producer, long start) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("run_id", runId);
        m.put("topic", topic);
        m.put("sent", sent);
        m.put("acked", 0L);
        m.put("failed", 0L);
        m.put("errors", Map.of());
        Map<org.apache.kafka.common.MetricName, ? extends org.apache.kafka.common.Metric> metrics = producer.metrics();
        m.put("record_send_total", Util.metric(metrics, "producer-metrics", "record-send-total"));
        m.put("record_retry_total", Util.metric(metrics, "producer-metrics", "record-retry-total"));
        m.put("record_error_total", Util.metric(metrics, "producer-metrics", "record-error-total"));
        // Produce round trips (ms), as the client measured them: windowed by the client (two samples
        // of 30 s), so they cover the last minute of a run.
        m.put("request_latency_avg", Util.metric(metrics, "producer-metrics", "request-latency-avg"));
        m.put("request_latency_max", Util.metric(metrics, "producer-metrics", "request-latency-max"));
        m.put("elapsed_ms", 0L);
        m.put("client_version", Util.clientVersion());
        m.put("partitions", partitions);
        m.put("stop_reason", stopReason);
        m.put("startup_ms", startupMs);
        return m;
    }

    private void fillCounters(Map<String, Object> m, long start) {
        m.put("acked", acked.get());
        m.put("failed", failed.get());
        Map<String, Object> errs = new TreeMap<>();
        errors.forEach((k, v) -> errs.put(k, v.get()));
        m.put("errors", errs);
        m.put("elapsed_ms", Util.elapsedMs(start));
    }
}
