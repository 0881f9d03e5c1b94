package dev.fairlead.testkit;

import java.io.BufferedWriter;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * group-consume: a consumer group member that commits what it processed synchronously after every poll that
 * returned records (and for revoked partitions, and once more after the drain), and records every commit.
 *
 * <p>Consumed file: "topic partition offset key" per record, as {@code consume} writes it. Commits file:
 * "topic partition offset" per partition of every commitSync that returned normally (offset = the next one
 * to read), in commit order. Commit and poll exceptions are counted by class name and never end the run,
 * except a non-retriable poll exception (fatal).
 */
final class GroupConsumeCmd {
    static final Set<String> OPTIONS = Set.of(
        "bootstrap", "topic", "group", "protocol", "consumed", "commits", "summary", "drain-timeout");

    private static final Logger LOG = LoggerFactory.getLogger("testkit.group-consume");
    private static final Duration POLL = Duration.ofMillis(200);

    private final List<String> topics = new ArrayList<>();
    private final String group;
    private final String protocol;
    private final String consumedFile;
    private final String commitsFile;
    private final String summaryFile;
    private final double drainTimeoutSec;
    private final Properties props;

    private long consumed;
    private long redelivered;
    private long commitsOk;
    private long commitFailures;
    private long rebalances;
    private long revocations;
    private long maxCommitMs;
    private final Map<String, Long> commitExceptions = new TreeMap<>();
    private final Map<String, Long> pollExceptions = new TreeMap<>();
    /** Next offset to commit per partition: the last processed offset + 1, not yet committed. */
    private final Map<TopicPartition, Long> pending = new HashMap<>();
    private final Map<TopicPartition, Long> lastCommitted = new TreeMap<>(
        (a, b) -> a.topic().equals(b.topic()) ? Integer.compare(a.partition(), b.partition())
            : a.topic().compareTo(b.topic()));
    private final Map<TopicPartition, ConsumeCmd.RangeSet> seen = new HashMap<>();
    private BufferedWriter commitsOut;
    private KafkaConsumer<byte[], byte[]> consumer;

    GroupConsumeCmd(Opts o) throws UsageException {
        String bootstrap = o.required("bootstrap");
        for (String t : o.required("topic").split(",")) {
            if (!t.trim().isEmpty()) {
                topics.add(t.trim());
            }
        }
        if (topics.isEmpty()) {
            throw new UsageException("--topic needs at least one topic");
        }
        group = o.required("group");
        protocol = o.get("protocol", "classic");
        if (!protocol.equals("classic") && !protocol.equals("consumer")) {
            throw new UsageException("--protocol must be classic or consumer, got: " + protocol);
        }
        consumedFile = o.required("consumed");
        commitsFile = o.required("commits");
        summaryFile = o.required("summary");
        drainTimeoutSec = o.getDouble("drain-timeout", 60);

        props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "testkit-group-" + protocol);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        o.applyProps(props);
    }

    int run() throws Exception {
        long start = System.nanoTime();
        Main.watchStdinEof();
        int code = 0;
        boolean drained = false;
        String fatal = null;

        try (BufferedWriter out = new BufferedWriter(
                new OutputStreamWriter(new FileOutputStream(consumedFile), StandardCharsets.UTF_8), 1 << 16);
             BufferedWriter commits = new BufferedWriter(
                new OutputStreamWriter(new FileOutputStream(commitsFile), StandardCharsets.UTF_8), 1 << 16)) {
            commitsOut = commits;
            consumer = new KafkaConsumer<>(props);
            try {
                consumer.subscribe(topics, new Listener());
                long lastFlush = System.nanoTime();
                Map<TopicPartition, Long> drainTargets = null;
                long drainDeadline = 0;
                while (true) {
                    if (drainTargets == null && Main.stopRequested) {
                        LOG.info("stop requested ({}): draining", Main.stopReason);
                        drainDeadline = System.nanoTime() + (long) (drainTimeoutSec * 1e9);
                        drainTargets = new HashMap<>();
                    }
                    if (drainTargets != null) {
                        try {
                            if (ConsumeCmd.caughtUp(consumer, drainTargets)) {
                                drained = true;
                                break;
                            }
                        } catch (Exception e) {
                            if (!(Util.unwrap(e) instanceof RetriableException)) {
                                throw e;
                            }
                            count(pollExceptions, e);
                        }
                        if (System.nanoTime() - drainDeadline >= 0) {
                            LOG.warn("drain timeout after {} s", drainTimeoutSec);
                            break;
                        }
                    }
                    ConsumerRecords<byte[], byte[]> records;
                    try {
                        records = consumer.poll(POLL);
                    } catch (WakeupException e) {
                        continue;
                    } catch (Exception e) {
                        if (!(Util.unwrap(e) instanceof RetriableException)) {
                            throw e;
                        }
                        LOG.warn("poll: {}", Util.describe(e));
                        count(pollExceptions, e);
                        continue;
                    }
                    for (ConsumerRecord<byte[], byte[]> r : records) {
                        handle(r, out);
                    }
                    if (!records.isEmpty()) {
                        // What is written to the consumed file is what a commit may cover.
                        out.flush();
                        commit(new HashSet<>(pending.keySet()));
                    }
                    if (System.nanoTime() - lastFlush > 500_000_000L) {
                        out.flush();
                        commits.flush();
                        lastFlush = System.nanoTime();
                    }
                }
                out.flush();
                if (!pending.isEmpty()) {
                    commit(new HashSet<>(pending.keySet()));
                }
            } catch (Exception e) {
                fatal = Util.describe(e);
                LOG.error("fatal: {}", fatal, e);
                count(pollExceptions, e);
                code = 1;
            } finally {
                try {
                    consumer.close(Duration.ofSeconds(30));
                } catch (Exception e) {
                    LOG.warn("close: {}", Util.describe(e));
                    count(pollExceptions, e);
                }
            }
        }

        Map<String, Object> m = new LinkedHashMap<>();
        m.put("group", group);
        m.put("group_protocol", protocol);
        m.put("consumed", consumed);
        m.put("redelivered", redelivered);
        m.put("commits_ok", commitsOk);
        m.put("commit_failures", commitFailures);
        m.put("commit_exceptions", commitExceptions);
        m.put("poll_exceptions", pollExceptions);
        Map<String, Long> all = new TreeMap<>(commitExceptions);
        pollExceptions.forEach((k, v) -> all.merge(k, v, Long::sum));
        m.put("exceptions", all);
        Map<String, Object> last = new LinkedHashMap<>();
        lastCommitted.forEach((tp, off) -> last.put(tp.topic() + "-" + tp.partition(), off));
        m.put("last_committed", last);
        m.put("uncommitted", pending.size());
        m.put("max_commit_ms", maxCommitMs);
        m.put("rebalances", rebalances);
        m.put("revocations", revocations);
        m.put("drained", drained);
        m.put("elapsed_ms", Util.elapsedMs(start));
        m.put("client_version", Util.clientVersion());
        if (fatal != null) {
            m.put("fatal", fatal);
        }
        String json = Json.write(m);
        Util.writeAtomically(summaryFile, json + "\n");
        Main.OUT.println(json);
        Main.OUT.flush();
        return code;
    }

    /** commitSync of the processed offsets of these partitions; a failure is counted and left pending. */
    private void commit(Set<TopicPartition> partitions) throws IOException {
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
        for (TopicPartition tp : partitions) {
            Long next = pending.get(tp);
            if (next != null) {
                offsets.put(tp, new OffsetAndMetadata(next));
            }
        }
        if (offsets.isEmpty()) {
            return;
        }
        long t0 = System.nanoTime();
        try {
            consumer.commitSync(offsets);
        } catch (WakeupException e) {
            throw e;
        } catch (Exception e) {
            commitFailures++;
            count(commitExceptions, e);
            LOG.warn("commitSync {} failed after {} ms: {}", offsets, Util.elapsedMs(t0), Util.describe(e));
            return;
        }
        maxCommitMs = Math.max(maxCommitMs, Util.elapsedMs(t0));
        commitsOk++;
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offsets.entrySet()) {
            TopicPartition tp = e.getKey();
            long off = e.getValue().offset();
            commitsOut.write(tp.topic() + " " + tp.partition() + " " + off + "\n");
            lastCommitted.put(tp, off);
            if (pending.get(tp) != null && pending.get(tp) == off) {
                pending.remove(tp);
            }
        }
    }

    private final class Listener implements ConsumerRebalanceListener {
        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            revocations++;
            LOG.info("revoked {}", partitions);
            // Commit what was processed before the partitions go (the usual at-least-once pattern).
            try {
                commit(new HashSet<>(partitions));
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
            for (TopicPartition tp : partitions) {
                pending.remove(tp);
            }
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            revocations++;
            LOG.warn("lost {}", partitions);
            for (TopicPartition tp : partitions) {
                pending.remove(tp);
            }
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            rebalances++;
            LOG.info("assigned {}", partitions);
        }
    }

    private void handle(ConsumerRecord<byte[], byte[]> r, BufferedWriter out) throws IOException {
        consumed++;
        String key = r.key() == null ? "-" : new String(r.key(), StandardCharsets.UTF_8);
        out.write(r.topic() + " " + r.partition() + " " + r.offset() + " " + key + "\n");
        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
        if (!seen.computeIfAbsent(tp, k -> new ConsumeCmd.RangeSet()).add(r.offset())) {
            redelivered++;
        }
        pending.put(tp, r.offset() + 1);
    }

    private static void count(Map<String, Long> m, Exception e) {
        m.merge(Main.errName(e), 1L, Long::sum);
    }
}
