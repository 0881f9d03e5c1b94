package dev.fairlead.testkit;

import java.io.BufferedWriter;
import java.io.FileOutputStream;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collection;
import java.util.HashMap;
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
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * consume: reads topics (as a group member with --group, else by assigning every partition from the
 * beginning), writes every record to the consumed file and checks duplicates and ordering per producer run.
 * With --id-header H a record's "ID:seq" is the value of its last header H rather than its key (for
 * producers that send equal keys, see produce --id-header).
 *
 * <p>Definitions, per record with key "ID:seq" read at (topic, partition, offset):
 * <ul>
 *   <li>redelivered: this (topic, partition, offset) was read before (e.g. after a rebalance);</li>
 *   <li>duplicate: a new offset, but (topic, ID, seq) was already read at another offset;</li>
 *   <li>order violation: a new offset above the last one read for (topic, partition, ID), with a lower seq
 *       than the record at that last offset;</li>
 *   <li>distinct: records that are neither redelivered nor duplicates (records whose key is not "ID:seq"
 *       count as distinct when their offset is new).</li>
 * </ul>
 * So consumed = distinct + redelivered + duplicates.
 */
final class ConsumeCmd {
    static final Set<String> OPTIONS = Set.of(
        "bootstrap", "topic", "consumed", "summary", "group", "drain-timeout", "id-header");

    private static final Logger LOG = LoggerFactory.getLogger("testkit.consume");
    private static final Duration POLL = Duration.ofMillis(200);
    private static final int MAX_LOGGED = 20;
    private int loggedAnomalies;

    private final List<String> topics = new ArrayList<>();
    private final String consumedFile;
    private final String summaryFile;
    private final String group;
    private final double drainTimeoutSec;
    /** Where a record's ID:seq is, when not in its key. */
    private final String idHeader;
    private final Properties props;

    // counters
    private long consumed;
    private long distinct;
    private long redelivered;
    private long duplicates;
    private long orderViolations;
    private long rebalances;
    private final Map<String, Long> errors = new TreeMap<>();
    private final Map<String, long[]> perRun = new TreeMap<>(); // ID -> {consumed, duplicates, order_violations}

    // state
    private final Map<TopicPartition, RangeSet> seenOffsets = new HashMap<>();
    private final Map<String, BitSet> seenSeqs = new HashMap<>();          // topic + '\0' + ID -> seqs
    private final Map<String, long[]> lastByPartitionRun = new HashMap<>(); // topic\0partition\0ID -> {offset, seq}

    ConsumeCmd(Opts o) throws UsageException {
        String bootstrap = o.required("bootstrap");
        for (String t : o.required("topic").split(",")) {
            if (!t.trim().isEmpty()) {
                topics.add(t.trim());
            }
        }
        if (topics.isEmpty()) {
            throw new UsageException("--topic needs at least one topic");
        }
        consumedFile = o.required("consumed");
        summaryFile = o.required("summary");
        group = o.get("group", null);
        drainTimeoutSec = o.getDouble("drain-timeout", 60);
        idHeader = o.get("id-header", null);

        props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "testkit-consumer");
        if (group != null) {
            props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "true");
        }
        // without a group.id the client refuses enable.auto.commit=true, so it is not set then
        o.applyProps(props);
    }

    int run() throws Exception {
        long start = System.nanoTime();
        Main.watchStdinEof();
        int code = 0;
        boolean drained = false;
        String fatal = null;

        try (BufferedWriter out = new BufferedWriter(
                new OutputStreamWriter(new FileOutputStream(consumedFile), StandardCharsets.UTF_8), 1 << 16)) {
            KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props);
            try {
                subscribeOrAssign(consumer);
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
                            if (caughtUp(consumer, drainTargets)) {
                                drained = true;
                                break;
                            }
                        } catch (Exception e) {
                            if (!(Util.unwrap(e) instanceof RetriableException)) {
                                throw e;
                            }
                            countError(e);
                        }
                        if (System.nanoTime() - drainDeadline >= 0) {
                            LOG.warn("drain timeout after {} s", drainTimeoutSec);
                            break;
                        }
                    }
                    ConsumerRecords<byte[], byte[]> records;
                    try {
                        records = consumer.poll(POLL);
                    } catch (Exception e) {
                        if (!(Util.unwrap(e) instanceof RetriableException)) {
                            throw e;
                        }
                        LOG.warn("poll: {}", Util.describe(e));
                        countError(e);
                        continue;
                    }
                    for (ConsumerRecord<byte[], byte[]> r : records) {
                        handle(r, out);
                    }
                    if (System.nanoTime() - lastFlush > 1_000_000_000L) {
                        out.flush();
                        lastFlush = System.nanoTime();
                    }
                }
            } catch (Exception e) {
                fatal = Util.describe(e);
                LOG.error("fatal: {}", fatal, e);
                countError(e);
                code = 1;
            } finally {
                try {
                    consumer.close(Duration.ofSeconds(30));
                } catch (Exception e) {
                    LOG.warn("close: {}", Util.describe(e));
                    countError(e);
                }
            }
        }

        Map<String, Object> m = new LinkedHashMap<>();
        m.put("consumed", consumed);
        m.put("distinct", distinct);
        m.put("redelivered", redelivered);
        m.put("duplicates", duplicates);
        m.put("order_violations", orderViolations);
        m.put("drained", drained);
        Map<String, Object> runs = new LinkedHashMap<>();
        perRun.forEach((id, c) -> {
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("consumed", c[0]);
            r.put("duplicates", c[1]);
            r.put("order_violations", c[2]);
            runs.put(id, r);
        });
        m.put("per_run", runs);
        m.put("errors", errors);
        m.put("elapsed_ms", Util.elapsedMs(start));
        m.put("client_version", Util.clientVersion());
        m.put("rebalances", rebalances);
        if (fatal != null) {
            m.put("fatal", fatal);
        }
        String json = Json.write(m);
        Util.writeAtomically(summaryFile, json + "\n");
        Main.OUT.println(json);
        Main.OUT.flush();
        return code;
    }

    private void subscribeOrAssign(KafkaConsumer<byte[], byte[]> consumer) {
        if (group != null) {
            consumer.subscribe(topics, new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                    LOG.info("revoked {}", partitions);
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                    rebalances++;
                    LOG.info("assigned {}", partitions);
                }
            });
            return;
        }
        List<TopicPartition> tps = new ArrayList<>();
        for (String t : topics) {
            List<PartitionInfo> infos = consumer.partitionsFor(t);
            if (infos == null || infos.isEmpty()) {
                throw new IllegalStateException("topic " + t + " has no partitions (does it exist?)");
            }
            for (PartitionInfo p : infos) {
                tps.add(new TopicPartition(p.topic(), p.partition()));
            }
        }
        consumer.assign(tps);
        consumer.seekToBeginning(tps);
    }

    /**
     * True when every assigned partition's position has reached the end offset fetched at drain start
     * (partitions assigned later get their end offset when first seen). An empty assignment never counts
     * as caught up: the group has not given this member anything yet.
     */
    static boolean caughtUp(KafkaConsumer<byte[], byte[]> consumer, Map<TopicPartition, Long> targets) {
        Set<TopicPartition> assigned = consumer.assignment();
        if (assigned.isEmpty()) {
            return false;
        }
        List<TopicPartition> missing = new ArrayList<>();
        for (TopicPartition tp : assigned) {
            if (!targets.containsKey(tp)) {
                missing.add(tp);
            }
        }
        if (!missing.isEmpty()) {
            targets.putAll(consumer.endOffsets(missing));
            LOG.info("drain targets: {}", targets);
        }
        for (TopicPartition tp : assigned) {
            if (consumer.position(tp) < targets.get(tp)) {
                return false;
            }
        }
        return true;
    }

    private void handle(ConsumerRecord<byte[], byte[]> r, BufferedWriter out) throws java.io.IOException {
        consumed++;
        byte[] idBytes = r.key();
        if (idHeader != null) {
            org.apache.kafka.common.header.Header h = r.headers().lastHeader(idHeader);
            idBytes = h == null ? null : h.value();
        }
        String key = idBytes == null ? null : new String(idBytes, StandardCharsets.UTF_8);
        out.write(r.topic());
        out.write(' ');
        out.write(Integer.toString(r.partition()));
        out.write(' ');
        out.write(Long.toString(r.offset()));
        out.write(' ');
        out.write(key == null ? "-" : key);
        out.write('\n');

        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
        RangeSet seen = seenOffsets.computeIfAbsent(tp, k -> new RangeSet());
        String id = null;
        long seq = -1;
        if (key != null) {
            int colon = key.lastIndexOf(':');
            if (colon > 0) {
                try {
                    seq = Long.parseLong(key.substring(colon + 1));
                    id = key.substring(0, colon);
                } catch (NumberFormatException ignored) {
                    // not a testkit key
                }
            }
        }
        long[] run = id == null ? null : perRun.computeIfAbsent(id, k -> new long[3]);
        if (run != null) {
            run[0]++;
        }
        if (!seen.add(r.offset())) {
            redelivered++;
            return;
        }
        if (id == null || seq < 0 || seq > Integer.MAX_VALUE) {
            distinct++;
            return;
        }
        BitSet seqs = seenSeqs.computeIfAbsent(r.topic() + '\0' + id, k -> new BitSet());
        if (seqs.get((int) seq)) {
            duplicates++;
            run[1]++;
            if (shouldLogAnomaly()) {
                LOG.warn("duplicate {} at {}-{} offset {}", key, r.topic(), r.partition(), r.offset());
            }
        } else {
            seqs.set((int) seq);
            distinct++;
        }
        long[] last = lastByPartitionRun.computeIfAbsent(
            r.topic() + '\0' + r.partition() + '\0' + id, k -> new long[] {-1, -1});
        if (r.offset() > last[0]) {
            if (last[0] >= 0 && seq < last[1]) {
                orderViolations++;
                run[2]++;
                if (shouldLogAnomaly()) {
                    LOG.warn("order violation {} at {}-{} offset {}: after seq {} at offset {}",
                        key, r.topic(), r.partition(), r.offset(), last[1], last[0]);
                }
            }
            last[0] = r.offset();
            last[1] = seq;
        }
    }

    /** The first MAX_LOGGED duplicates/order violations are logged (WARN), then one note, then none. */
    private boolean shouldLogAnomaly() {
        loggedAnomalies++;
        if (loggedAnomalies == MAX_LOGGED + 1) {
            LOG.warn("more duplicates/order violations: not logged (see the summary counts)");
        }
        return loggedAnomalies <= MAX_LOGGED;
    }

    private void countError(Exception e) {
        errors.merge(Main.errName(e), 1L, Long::sum);
    }

    /** A set of longs kept as disjoint ranges; offsets of one partition are read mostly in order. */
    static final class RangeSet {
        private final TreeMap<Long, Long> ranges = new TreeMap<>(); // start -> end (inclusive)

        /** Adds v; false if it was already present. */
        boolean add(long v) {
            Map.Entry<Long, Long> lo = ranges.floorEntry(v);
            if (lo != null && lo.getValue() >= v) {
                return false;
            }
            long start = v;
            long end = v;
            if (lo != null && lo.getValue() == v - 1) {
                start = lo.getKey();
            }
            Long nextEnd = ranges.get(v + 1);
            if (nextEnd != null) {
                ranges.remove(v + 1);
                end = nextEnd;
            }
            ranges.put(start, end);
            return true;
        }
    }
}
