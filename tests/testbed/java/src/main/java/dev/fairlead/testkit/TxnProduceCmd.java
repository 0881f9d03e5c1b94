package dev.fairlead.testkit;

import java.io.BufferedWriter;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * txn-produce: a transactional producer. Transaction t (0, 1, 2, ...) is aborted when
 * {@code t % abort-every == abort-every - 1}, committed otherwise.
 *
 * <p>Records get a run-wide sequence number: key "ID:seq", value "ID:seq:txn=T" (plus ":src=P/O" in
 * transform mode), so a read_committed reader can match every record to its transaction. Modes:
 * <ul>
 *   <li>generate (default): --records-per-txn records per transaction, spread over the output partitions;</li>
 *   <li>transform (--input-topic and --input-group): consume-transform-produce. A classic group member reads
 *       the input topic (max.poll.records = --records-per-txn), each poll that returns records becomes one
 *       transaction with one output record per input record, and sendOffsetsToTransaction commits the input
 *       offsets inside the transaction (AddOffsetsToTxn + TxnOffsetCommit). After an abort the consumer seeks
 *       back, so those input records are processed again in a later transaction.</li>
 * </ul>
 *
 * <p>Transaction log (--txn-log): one JSON object per line, written once the transaction ended:
 * {"txn":T,"intent":"commit"|"abort","first_seq":S,"records":N,"outcome":"ok"|"ExceptionName",
 * "attempts":["ExceptionName",...],"final":"committed"|"aborted"|"unknown","ms":M,"sources":{"P":[from,to]}}.
 * "outcome" is "ok" when the operation the client asked for (commitTransaction or abortTransaction) returned
 * normally, possibly after retries of a TimeoutException (each listed in "attempts"); "final" is what the
 * client knows: committed (commitTransaction returned), aborted (abortTransaction returned, possibly after a
 * failed commit) or unknown (the producer had to be replaced).
 */
final class TxnProduceCmd {
    static final Set<String> OPTIONS = Set.of(
        "bootstrap", "topic", "run-id", "transactional-id", "txn-log", "summary", "records-per-txn",
        "abort-every", "txn-rate", "count", "duration", "input-topic", "input-group");

    private static final Logger LOG = LoggerFactory.getLogger("testkit.txn-produce");
    /** commitTransaction/abortTransaction that time out are retried this many times (the API allows it). */
    private static final int MAX_END_ATTEMPTS = 5;

    private final String topic;
    private final String runId;
    private final String transactionalId;
    private final String txnLogFile;
    private final String summaryFile;
    private final int recordsPerTxn;
    private final long abortEvery;
    private final double txnRate;
    private final long count;
    private final double durationSec;
    private final String inputTopic;
    private final String inputGroup;
    private final Properties producerProps;
    private final Properties consumerProps;

    private long seq;
    private long committed;
    private long aborted;
    private long unknown;
    private long outcomeFailures;
    private long producersCreated;
    private long maxEndMs;
    private long inputConsumed;
    private long rebalances;
    private final Map<String, Long> exceptions = new TreeMap<>();
    private final Map<String, AtomicLong> sendErrors = new ConcurrentHashMap<>();

    TxnProduceCmd(Opts o) throws UsageException {
        String bootstrap = o.required("bootstrap");
        topic = o.required("topic");
        runId = o.required("run-id");
        transactionalId = o.get("transactional-id", "testkit-txn-" + runId);
        txnLogFile = o.required("txn-log");
        summaryFile = o.required("summary");
        long n = o.getLong("records-per-txn", 10);
        if (n <= 0 || n > 100_000) {
            throw new UsageException("--records-per-txn out of range: " + n);
        }
        recordsPerTxn = (int) n;
        abortEvery = o.getLong("abort-every", 4);
        txnRate = o.getDouble("txn-rate", 5);
        count = o.getLong("count", 0);
        durationSec = o.getDouble("duration", 0);
        inputTopic = o.get("input-topic", null);
        inputGroup = o.get("input-group", null);
        if ((inputTopic == null) != (inputGroup == null)) {
            throw new UsageException("--input-topic and --input-group go together");
        }

        producerProps = new Properties();
        producerProps.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        producerProps.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        producerProps.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        producerProps.put(ProducerConfig.CLIENT_ID_CONFIG, "testkit-txn-" + runId);
        producerProps.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        producerProps.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        consumerProps = new Properties();
        consumerProps.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        consumerProps.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        consumerProps.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        consumerProps.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        consumerProps.put(ConsumerConfig.CLIENT_ID_CONFIG, "testkit-txn-input-" + runId);
        consumerProps.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        consumerProps.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        consumerProps.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, Integer.toString(recordsPerTxn));
        if (inputGroup != null) {
            consumerProps.put(ConsumerConfig.GROUP_ID_CONFIG, inputGroup);
        }
        // --prop applies to both clients; a "consumer." prefix sends a setting to the input consumer only.
        Properties all = o.applyProps(new Properties());
        for (String k : all.stringPropertyNames()) {
            if (k.startsWith("consumer.")) {
                consumerProps.put(k.substring("consumer.".length()), all.getProperty(k));
            } else {
                producerProps.put(k, all.getProperty(k));
            }
        }
    }

    int run() throws Exception {
        long start = System.nanoTime();
        Main.watchStdinEof();
        String stopReason = null;
        String fatal = null;
        int code = 0;
        KafkaConsumer<byte[], byte[]> consumer = null;
        KafkaProducer<byte[], byte[]> producer = null;
        try (BufferedWriter log = new BufferedWriter(
                new OutputStreamWriter(new FileOutputStream(txnLogFile), StandardCharsets.UTF_8), 1 << 16)) {
            try {
                producer = newProducer();
                int partitions = partitions(producer);
                if (inputTopic != null) {
                    consumer = new KafkaConsumer<>(consumerProps);
                    consumer.subscribe(List.of(inputTopic), new ConsumerRebalanceListener() {
                        @Override
                        public void onPartitionsRevoked(java.util.Collection<TopicPartition> p) {
                            LOG.info("revoked {}", p);
                        }

                        @Override
                        public void onPartitionsAssigned(java.util.Collection<TopicPartition> p) {
                            rebalances++;
                            LOG.info("assigned {}", p);
                        }
                    });
                }
                long durationNanos = durationSec > 0 ? (long) (durationSec * 1e9) : Long.MAX_VALUE;
                long loopStart = System.nanoTime();
                long txn = 0;
                while (true) {
                    if (Main.stopRequested) {
                        stopReason = Main.stopReason;
                        break;
                    }
                    if (count > 0 && txn >= count) {
                        stopReason = "count";
                        break;
                    }
                    if (System.nanoTime() - loopStart >= durationNanos) {
                        stopReason = "duration";
                        break;
                    }
                    if (txnRate > 0) {
                        long due = loopStart + (long) (txn * 1e9 / txnRate);
                        long now = System.nanoTime();
                        if (due > now) {
                            Thread.sleep(Math.min(50, (due - now) / 1_000_000L + 1));
                            continue;
                        }
                    }
                    List<ConsumerRecord<byte[], byte[]>> input = null;
                    if (consumer != null) {
                        ConsumerRecords<byte[], byte[]> recs;
                        try {
                            recs = consumer.poll(Duration.ofMillis(200));
                        } catch (Exception e) {
                            if (!(Util.unwrap(e) instanceof RetriableException)) {
                                throw e;
                            }
                            count(e);
                            LOG.warn("poll: {}", Util.describe(e));
                            continue;
                        }
                        if (recs.isEmpty()) {
                            continue;
                        }
                        input = new ArrayList<>();
                        recs.forEach(input::add);
                        inputConsumed += input.size();
                    }
                    producer = transaction(producer, consumer, txn, input, partitions, log);
                    txn++;
                    log.flush();
                }
            } catch (Exception e) {
                fatal = Util.describe(e);
                LOG.error("fatal: {}", fatal, e);
                count(e);
                code = 1;
                stopReason = "fatal";
            } finally {
                if (producer != null) {
                    try {
                        producer.close(Duration.ofSeconds(30));
                    } catch (Exception e) {
                        LOG.warn("producer close: {}", Util.describe(e));
                        count(e);
                    }
                }
                if (consumer != null) {
                    try {
                        consumer.close(Duration.ofSeconds(30));
                    } catch (Exception e) {
                        LOG.warn("consumer close: {}", Util.describe(e));
                        count(e);
                    }
                }
            }
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("run_id", runId);
        m.put("topic", topic);
        m.put("transactional_id", transactionalId);
        m.put("mode", inputTopic == null ? "generate" : "transform");
        m.put("transactions", committed + aborted + unknown);
        m.put("committed", committed);
        m.put("aborted", aborted);
        m.put("unknown", unknown);
        m.put("outcome_failures", outcomeFailures);
        m.put("records", seq);
        m.put("input_consumed", inputConsumed);
        m.put("rebalances", rebalances);
        m.put("exceptions", exceptions);
        Map<String, Object> se = new TreeMap<>();
        sendErrors.forEach((k, v) -> se.put(k, v.get()));
        m.put("send_errors", se);
        m.put("producers_created", producersCreated);
        m.put("max_end_ms", maxEndMs);
        m.put("stop_reason", stopReason);
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

    private KafkaProducer<byte[], byte[]> newProducer() {
        KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(producerProps);
        producersCreated++;
        // initTransactions retries coordinator errors until max.block.ms; a timeout may be retried (KIP-360).
        for (int attempt = 1; ; attempt++) {
            try {
                p.initTransactions();
                return p;
            } catch (TimeoutException e) {
                count(e);
                LOG.warn("initTransactions attempt {}: {}", attempt, Util.describe(e));
                if (attempt >= MAX_END_ATTEMPTS) {
                    throw e;
                }
            }
        }
    }

    private int partitions(KafkaProducer<byte[], byte[]> p) {
        List<PartitionInfo> infos = p.partitionsFor(topic);
        if (infos == null || infos.isEmpty()) {
            throw new IllegalStateException("topic " + topic + " has no partitions (does it exist?)");
        }
        return infos.size();
    }

    /** One transaction; returns the producer to use next (a new one if this one had to be replaced). */
    private KafkaProducer<byte[], byte[]> transaction(KafkaProducer<byte[], byte[]> producer,
            KafkaConsumer<byte[], byte[]> consumer, long txn, List<ConsumerRecord<byte[], byte[]>> input,
            int partitions, BufferedWriter log) throws IOException {
        boolean commit = abortEvery <= 0 || txn % abortEvery != abortEvery - 1;
        long firstSeq = seq;
        int n = input == null ? recordsPerTxn : input.size();
        List<String> attempts = new ArrayList<>();
        String outcome = null;
        String fin = null;
        Map<String, Object> sources = new TreeMap<>();
        Map<TopicPartition, Long> rewind = new HashMap<>();
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
        if (input != null) {
            for (ConsumerRecord<byte[], byte[]> r : input) {
                TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                rewind.putIfAbsent(tp, r.offset());
                offsets.put(tp, new OffsetAndMetadata(r.offset() + 1));
                String k = Integer.toString(r.partition());
                Object range = sources.get(k);
                long from = range == null ? r.offset() : ((long[]) range)[0];
                sources.put(k, new long[] {from, r.offset()});
            }
        }
        long t0 = System.nanoTime();
        boolean replace = false;
        try {
            producer.beginTransaction();
            for (int i = 0; i < n; i++) {
                long s = seq++;
                String key = runId + ":" + s;
                String value = key + ":txn=" + txn;
                int partition = (int) (s % partitions);
                if (input != null) {
                    ConsumerRecord<byte[], byte[]> r = input.get(i);
                    value += ":src=" + r.partition() + "/" + r.offset();
                    partition = r.partition() % partitions;
                }
                producer.send(new ProducerRecord<>(topic, partition, key.getBytes(StandardCharsets.UTF_8),
                    value.getBytes(StandardCharsets.UTF_8)), (md, e) -> {
                        if (e != null) {
                            sendErrors.computeIfAbsent(Main.errName(e), x -> new AtomicLong()).incrementAndGet();
                        }
                    });
            }
            if (consumer != null) {
                producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
            }
            long t1 = System.nanoTime();
            for (int attempt = 1; ; attempt++) {
                try {
                    if (commit) {
                        producer.commitTransaction();
                        fin = "committed";
                    } else {
                        producer.abortTransaction();
                        fin = "aborted";
                    }
                    outcome = "ok";
                    break;
                } catch (TimeoutException e) {
                    // The API allows calling the same method again after a timeout.
                    attempts.add(Main.errName(e));
                    count(e);
                    LOG.warn("txn {} {} attempt {}: {}", txn, commit ? "commit" : "abort", attempt, Util.describe(e));
                    if (attempt >= MAX_END_ATTEMPTS) {
                        throw e;
                    }
                }
            }
            maxEndMs = Math.max(maxEndMs, Util.elapsedMs(t1));
        } catch (ProducerFencedException | OutOfOrderSequenceException | AuthorizationException
                 | UnsupportedVersionException | InvalidProducerEpochException | TimeoutException e) {
            // Fatal for this producer: the transaction's fate is decided by the coordinator (a new
            // producer's initTransactions aborts it if it is still open).
            attempts.add(Main.errName(e));
            count(e);
            outcome = Main.errName(e);
            fin = "unknown";
            replace = true;
            LOG.warn("txn {}: {}: replacing the producer", txn, Util.describe(e));
        } catch (KafkaException e) {
            // Abortable: the client must abort.
            attempts.add(Main.errName(e));
            count(e);
            outcome = Main.errName(e);
            LOG.warn("txn {} {}: {}: aborting", txn, commit ? "commit" : "abort", Util.describe(e));
            try {
                producer.abortTransaction();
                fin = "aborted";
            } catch (Exception e2) {
                attempts.add(Main.errName(e2));
                count(e2);
                fin = "unknown";
                replace = true;
                LOG.warn("txn {} abort after failure: {}: replacing the producer", txn, Util.describe(e2));
            }
        }
        if (!"ok".equals(outcome)) {
            outcomeFailures++;
        }
        switch (fin) {
            case "committed": committed++; break;
            case "aborted": aborted++; break;
            default: unknown++; break;
        }
        if (consumer != null && !"committed".equals(fin)) {
            // The input offsets were not committed with the transaction: process those records again.
            rewind.forEach(consumer::seek);
        }
        Map<String, Object> line = new LinkedHashMap<>();
        line.put("txn", txn);
        line.put("intent", commit ? "commit" : "abort");
        line.put("first_seq", firstSeq);
        line.put("records", n);
        line.put("outcome", outcome);
        line.put("attempts", attempts);
        line.put("final", fin);
        line.put("ms", Util.elapsedMs(t0));
        if (input != null) {
            Map<String, Object> src = new TreeMap<>();
            sources.forEach((k, v) -> src.put(k, List.of(((long[]) v)[0], ((long[]) v)[1])));
            line.put("sources", src);
        }
        log.write(Json.write(line));
        log.write('\n');
        if (replace) {
            try {
                producer.close(Duration.ofSeconds(5));
            } catch (Exception e) {
                count(e);
            }
            return newProducer();
        }
        return producer;
    }

    private void count(Exception e) {
        exceptions.merge(Main.errName(e), 1L, Long::sum);
    }
}
