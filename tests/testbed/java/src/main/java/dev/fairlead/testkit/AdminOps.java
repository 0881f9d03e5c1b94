package dev.fairlead.testkit;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.ElectionNotNeededException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Admin operations, one-shot ({@code admin}) or as a line-oriented JSON shell ({@code admin-shell}).
 *
 * <p>Every operation that changes the cluster waits until describeTopics (polled every 100 ms) shows the
 * change, bounded by the "timeout_ms" argument (default 30000).
 */
final class AdminOps {
    static final Set<String> OPTIONS = Set.of("bootstrap");
    static final List<String> OPS = List.of(
        "create-topic", "delete-topic", "describe", "describe-cluster", "quorum", "move-leader", "move-all", "reassign",
        "elect-preferred", "wait-healthy", "end-offsets", "coordinators", "group-offsets");

    private static final Logger LOG = LoggerFactory.getLogger("testkit.admin");
    private static final long POLL_MS = 100;
    private static final long DEFAULT_TIMEOUT_MS = 30_000;

    /** An operation failure with a message for {"ok":false,"error":...}. */
    static class OpException extends Exception {
        private static final long serialVersionUID = 1L;

        OpException(String message) {
            super(message);
        }
    }

    /** An Admin API call did not answer before the operation's deadline. */
    static final class DeadlineException extends OpException {
        private static final long serialVersionUID = 1L;

        DeadlineException() {
            super("timed out waiting for the Admin API");
        }
    }

    private final Admin admin;

    AdminOps(Admin admin) {
        this.admin = admin;
    }

    static Admin createAdmin(Opts o) throws UsageException {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, o.required("bootstrap"));
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "testkit-admin");
        o.applyProps(p);
        return Admin.create(p);
    }

    // ---------------------------------------------------------------- entry points

    static int oneShot(Opts o) throws Exception {
        if (o.positional.isEmpty()) {
            throw new UsageException("admin needs an operation");
        }
        if (o.positional.size() > 2) {
            throw new UsageException("admin takes <op> and at most one JSON object argument");
        }
        String op = o.positional.get(0);
        if (!OPS.contains(op)) {
            throw new UsageException("unknown admin op: " + op);
        }
        Map<String, Object> args = new LinkedHashMap<>();
        if (o.positional.size() == 2) {
            Object parsed;
            try {
                parsed = Json.parse(o.positional.get(1));
            } catch (Json.ParseException e) {
                throw new UsageException("bad JSON argument: " + e.getMessage());
            }
            if (!(parsed instanceof Map)) {
                throw new UsageException("the JSON argument must be an object");
            }
            args.putAll(asMap(parsed));
        }
        Admin admin = createAdmin(o);
        Map<String, Object> result;
        try {
            result = new AdminOps(admin).execute(op, args);
        } finally {
            admin.close(java.time.Duration.ofSeconds(10));
        }
        Main.OUT.println(Json.write(result));
        Main.OUT.flush();
        return Boolean.TRUE.equals(result.get("ok")) ? 0 : 1;
    }

    static int shell(Opts o) throws Exception {
        Admin admin = createAdmin(o);
        try {
            AdminOps ops = new AdminOps(admin);
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            String line;
            while ((line = in.readLine()) != null) {
                if (line.trim().isEmpty()) {
                    continue;
                }
                Map<String, Object> result;
                Object id = null;
                try {
                    Object parsed = Json.parse(line);
                    if (!(parsed instanceof Map)) {
                        throw new OpException("a command must be a JSON object");
                    }
                    Map<String, Object> cmd = asMap(parsed);
                    id = cmd.get("id");
                    Object op = cmd.get("op");
                    if (!(op instanceof String)) {
                        throw new OpException("missing \"op\"");
                    }
                    result = ops.execute((String) op, cmd);
                } catch (Json.ParseException e) {
                    result = error("bad JSON: " + e.getMessage());
                } catch (OpException e) {
                    result = error(e.getMessage());
                }
                if (id != null) {
                    result.put("id", id);
                }
                Main.OUT.println(Json.write(result));
                Main.OUT.flush();
            }
        } finally {
            admin.close(java.time.Duration.ofSeconds(10));
        }
        return 0;
    }

    private static Map<String, Object> error(String message) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ok", false);
        m.put("error", message);
        return m;
    }

    /** Runs one op; never throws: failures become {"ok":false,"error":...}. */
    Map<String, Object> execute(String op, Map<String, Object> args) {
        long start = System.nanoTime();
        try {
            long timeoutMs = optLong(args, "timeout_ms", DEFAULT_TIMEOUT_MS);
            long deadline = start + timeoutMs * 1_000_000L;
            Map<String, Object> r;
            switch (op) {
                case "create-topic": r = createTopic(args, deadline); break;
                case "delete-topic": r = deleteTopic(args, deadline); break;
                case "describe": r = describeOp(args, deadline); break;
                case "describe-cluster": r = describeCluster(deadline); break;
                case "quorum": r = quorum(deadline); break;
                case "move-leader": r = moveLeader(args, deadline, start); break;
                case "move-all": r = moveAll(args, deadline, start); break;
                case "reassign": r = reassign(args, deadline, start); break;
                case "elect-preferred": r = electPreferred(args, deadline); break;
                case "wait-healthy": r = waitHealthy(args, deadline); break;
                case "end-offsets": r = endOffsets(args, deadline); break;
                case "coordinators": r = coordinators(args, deadline); break;
                case "group-offsets": r = groupOffsets(args, deadline); break;
                case "scram-upsert": r = scramUpsert(args, deadline); break;
                default: throw new OpException("unknown op: " + op);
            }
            if (!r.containsKey("elapsed_ms")) {
                r.put("elapsed_ms", Util.elapsedMs(start));
            }
            LOG.info("{} {} -> {}", op, Json.write(args), Json.write(r));
            return r;
        } catch (OpException e) {
            LOG.warn("{} {} failed: {}", op, Json.write(args), e.getMessage());
            return error(e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return error("interrupted");
        } catch (Exception e) {
            Throwable c = Util.unwrap(e);
            if (c instanceof org.apache.kafka.common.KafkaException) {
                LOG.warn("{} {} failed: {}", op, Json.write(args), Util.describe(c));
            } else {
                LOG.warn("{} {} failed", op, Json.write(args), e);
            }
            return error(Util.describe(e));
        }
    }

    private static Map<String, Object> ok() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ok", true);
        return m;
    }

    // ---------------------------------------------------------------- ops

    /** Creates a SCRAM user or sets its password: {"user", "password", "mechanism"?}. */
    private Map<String, Object> scramUpsert(Map<String, Object> args, long deadline) throws Exception {
        String user = reqString(args, "user");
        String password = reqString(args, "password");
        Object mech = args.getOrDefault("mechanism", "SCRAM-SHA-512");
        ScramMechanism m = ScramMechanism.fromMechanismName(String.valueOf(mech));
        if (m == ScramMechanism.UNKNOWN) {
            throw new OpException("unknown SCRAM mechanism " + mech);
        }
        int iterations = (int) optLong(args, "iterations", 4096);
        get(admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(
            user, new ScramCredentialInfo(m, iterations), password))).all(), deadline);
        return ok();
    }

    private Map<String, Object> createTopic(Map<String, Object> args, long deadline) throws Exception {
        String topic = reqString(args, "topic");
        Map<String, Object> assignmentArg = optMap(args, "assignment");
        NewTopic nt;
        int expectedPartitions;
        if (assignmentArg != null) {
            Map<Integer, List<Integer>> assignment = new TreeMap<>();
            for (Map.Entry<String, Object> e : assignmentArg.entrySet()) {
                assignment.put(parseInt(e.getKey(), "assignment key"), intList(e.getValue(), "assignment"));
            }
            nt = new NewTopic(topic, assignment);
            expectedPartitions = assignment.size();
        } else {
            int partitions = (int) optLong(args, "partitions", -1);
            int rf = (int) optLong(args, "replication_factor", -1);
            nt = new NewTopic(topic, partitions > 0 ? Optional.of(partitions) : Optional.empty(),
                rf > 0 ? Optional.of((short) rf) : Optional.empty());
            expectedPartitions = partitions;
        }
        Map<String, Object> configs = optMap(args, "configs");
        if (configs != null) {
            Map<String, String> c = new HashMap<>();
            configs.forEach((k, v) -> c.put(k, String.valueOf(v)));
            nt.configs(c);
        }
        boolean existed = false;
        try {
            get(admin.createTopics(List.of(nt)).all(), deadline);
        } catch (ExecutionException e) {
            if (!(Util.unwrap(e) instanceof TopicExistsException)) {
                throw e;
            }
            existed = true;
        }
        TopicDescription[] last = new TopicDescription[1];
        waitFor(deadline, "topic " + topic + " to be fully replicated", () -> {
            TopicDescription d = describe(topic, deadline);
            last[0] = d;
            if (expectedPartitions > 0 && d.partitions().size() != expectedPartitions) {
                return d.partitions().size() + " partitions, expected " + expectedPartitions;
            }
            return unhealthy(d);
        });
        Map<String, Object> r = ok();
        r.put("topic", topic);
        r.put("existed", existed);
        r.put("partitions", partitionsJson(last[0]));
        return r;
    }

    private Map<String, Object> deleteTopic(Map<String, Object> args, long deadline) throws Exception {
        String topic = reqString(args, "topic");
        boolean existed = true;
        try {
            get(admin.deleteTopics(List.of(topic)).all(), deadline);
        } catch (ExecutionException e) {
            if (!(Util.unwrap(e) instanceof UnknownTopicOrPartitionException)) {
                throw e;
            }
            existed = false;
        }
        waitFor(deadline, "topic " + topic + " to disappear", () -> {
            try {
                describe(topic, deadline);
                return "still described";
            } catch (ExecutionException e) {
                if (Util.unwrap(e) instanceof UnknownTopicOrPartitionException) {
                    return null;
                }
                throw e;
            }
        });
        Map<String, Object> r = ok();
        r.put("topic", topic);
        r.put("existed", existed);
        return r;
    }

    private Map<String, Object> describeOp(Map<String, Object> args, long deadline) throws Exception {
        String topic = reqString(args, "topic");
        TopicDescription d = describe(topic, deadline);
        Map<String, Object> r = ok();
        r.put("topic", topic);
        r.put("partitions", partitionsJson(d));
        return r;
    }

    private Map<String, Object> describeCluster(long deadline) throws Exception {
        DescribeClusterResult dc = admin.describeCluster();
        Collection<Node> nodes = get(dc.nodes(), deadline);
        Node controller = get(dc.controller(), deadline);
        List<Object> brokers = new ArrayList<>();
        List<Node> sorted = new ArrayList<>(nodes);
        sorted.sort((a, b) -> Integer.compare(a.id(), b.id()));
        for (Node n : sorted) {
            Map<String, Object> b = new LinkedHashMap<>();
            b.put("id", n.id());
            b.put("host", n.host());
            b.put("port", n.port());
            b.put("rack", n.rack());
            brokers.add(b);
        }
        Map<String, Object> r = ok();
        r.put("brokers", brokers);
        r.put("controller", controller == null ? -1 : controller.id());
        r.put("cluster_id", get(dc.clusterId(), deadline));
        return r;
    }

    /** The KRaft quorum: which node is the active controller. */
    private Map<String, Object> quorum(long deadline) throws Exception {
        org.apache.kafka.clients.admin.QuorumInfo q = get(admin.describeMetadataQuorum().quorumInfo(), deadline);
        Map<String, Object> r = ok();
        r.put("leader", q.leaderId());
        r.put("leader_epoch", q.leaderEpoch());
        return r;
    }

    private Map<String, Object> moveLeader(Map<String, Object> args, long deadline, long start) throws Exception {
        String topic = reqString(args, "topic");
        int partition = (int) reqLong(args, "partition");
        TopicDescription d = describe(topic, deadline);
        TopicPartitionInfo p = partitionInfo(d, partition);
        int old = leaderId(p);
        int to;
        if (args.get("to") != null) {
            to = (int) reqLong(args, "to");
            if (!ids(p.isr()).contains(to)) {
                throw new OpException("broker " + to + " is not in the ISR " + ids(p.isr())
                    + " of " + topic + "-" + partition);
            }
        } else {
            to = pickTarget(p);
        }
        TopicPartition tp = new TopicPartition(topic, partition);
        Map<TopicPartition, Integer> targets = Map.of(tp, to);
        Map<String, Object> phases = moveLeaders(topic, Map.of(tp, p), targets, deadline);
        Map<String, Object> r = ok();
        r.put("topic", topic);
        r.put("partition", partition);
        r.put("old_leader", old);
        r.put("new_leader", to);
        r.put("elapsed_ms", Util.elapsedMs(start));
        r.putAll(phases);
        return r;
    }

    private Map<String, Object> moveAll(Map<String, Object> args, long deadline, long start) throws Exception {
        String topic = reqString(args, "topic");
        TopicDescription d = describe(topic, deadline);
        Map<TopicPartition, TopicPartitionInfo> infos = new LinkedHashMap<>();
        Map<TopicPartition, Integer> targets = new LinkedHashMap<>();
        List<Object> moves = new ArrayList<>();
        for (TopicPartitionInfo p : d.partitions()) {
            TopicPartition tp = new TopicPartition(topic, p.partition());
            int to = pickTarget(p);
            infos.put(tp, p);
            targets.put(tp, to);
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("partition", p.partition());
            m.put("old_leader", leaderId(p));
            m.put("new_leader", to);
            moves.add(m);
        }
        Map<String, Object> phases = moveLeaders(topic, infos, targets, deadline);
        Map<String, Object> r = ok();
        r.put("topic", topic);
        r.put("moves", moves);
        r.put("elapsed_ms", Util.elapsedMs(start));
        r.putAll(phases);
        return r;
    }

    /** The first ISR member that is not the current leader. */
    private static int pickTarget(TopicPartitionInfo p) throws OpException {
        int leader = leaderId(p);
        for (Node n : p.isr()) {
            if (n.id() != leader) {
                return n.id();
            }
        }
        throw new OpException("partition " + p.partition() + " has no ISR member other than the leader "
            + leader + " (isr " + ids(p.isr()) + ")");
    }

    /**
     * Moves leadership of each partition to its target: makes the target the first (preferred) replica with
     * one alterPartitionReassignments call (same replica set, reordered), waits until the reassignments are
     * gone and describe shows the new order, then one preferred election for all, and waits for the leaders.
     */
    private Map<String, Object> moveLeaders(String topic, Map<TopicPartition, TopicPartitionInfo> infos,
                                            Map<TopicPartition, Integer> targets, long deadline) throws Exception {
        long t0 = System.nanoTime();
        Map<TopicPartition, List<Integer>> order = new HashMap<>();
        Map<TopicPartition, Optional<NewPartitionReassignment>> reassign = new HashMap<>();
        for (Map.Entry<TopicPartition, Integer> e : targets.entrySet()) {
            List<Integer> replicas = ids(infos.get(e.getKey()).replicas());
            List<Integer> reordered = new ArrayList<>();
            reordered.add(e.getValue());
            for (int r : replicas) {
                if (r != e.getValue()) {
                    reordered.add(r);
                }
            }
            order.put(e.getKey(), reordered);
            if (!reordered.equals(replicas)) {
                reassign.put(e.getKey(), Optional.of(new NewPartitionReassignment(reordered)));
            }
        }
        if (!reassign.isEmpty()) {
            get(admin.alterPartitionReassignments(reassign).all(), deadline);
            waitFor(deadline, "replica reorder of " + topic, () -> {
                Map<TopicPartition, PartitionReassignment> ongoing =
                    get(admin.listPartitionReassignments(reassign.keySet()).reassignments(), deadline);
                if (!ongoing.isEmpty()) {
                    return "reassignments still listed: " + ongoing.keySet();
                }
                TopicDescription d = describe(topic, deadline);
                for (TopicPartition tp : reassign.keySet()) {
                    List<Integer> now = ids(partitionInfo(d, tp.partition()).replicas());
                    if (!now.equals(order.get(tp))) {
                        return tp + " replicas " + now + ", want " + order.get(tp);
                    }
                }
                return null;
            });
        }
        long t1 = System.nanoTime();
        electAndWait(topic, targets, deadline);
        Map<String, Object> phases = new LinkedHashMap<>();
        phases.put("reorder_ms", (t1 - t0) / 1_000_000L);
        phases.put("elect_ms", Util.elapsedMs(t1));
        return phases;
    }

    /**
     * Runs a preferred election for the partitions and waits until each has its target leader. If some
     * partition has not moved after a second, the election is repeated for the stragglers.
     */
    private void electAndWait(String topic, Map<TopicPartition, Integer> targets, long deadline) throws Exception {
        String[] lastElectionError = new String[1];
        Set<TopicPartition> pending = new HashSet<>(targets.keySet());
        elect(pending, deadline, lastElectionError);
        long[] lastElect = {System.nanoTime()};
        waitFor(deadline, "leaders of " + topic, () -> {
            TopicDescription d = describe(topic, deadline);
            pending.clear();
            StringBuilder why = new StringBuilder();
            for (Map.Entry<TopicPartition, Integer> e : targets.entrySet()) {
                int leader = leaderId(partitionInfo(d, e.getKey().partition()));
                if (leader != e.getValue()) {
                    pending.add(e.getKey());
                    why.append(e.getKey()).append(" leader ").append(leader)
                        .append(" want ").append(e.getValue()).append("; ");
                }
            }
            if (pending.isEmpty()) {
                return null;
            }
            if (System.nanoTime() - lastElect[0] > 1_000_000_000L) {
                elect(pending, deadline, lastElectionError);
                lastElect[0] = System.nanoTime();
            }
            if (lastElectionError[0] != null) {
                why.append("last election error: ").append(lastElectionError[0]);
            }
            return why.toString();
        });
    }

    /** Preferred election; ElectionNotNeededException is fine, other per-partition errors are remembered. */
    private void elect(Set<TopicPartition> partitions, long deadline, String[] lastError) throws Exception {
        Map<TopicPartition, Optional<Throwable>> res =
            get(admin.electLeaders(ElectionType.PREFERRED, new HashSet<>(partitions)).partitions(), deadline);
        for (Map.Entry<TopicPartition, Optional<Throwable>> e : res.entrySet()) {
            if (e.getValue().isPresent() && !(e.getValue().get() instanceof ElectionNotNeededException)) {
                lastError[0] = e.getKey() + ": " + Util.describe(e.getValue().get());
                LOG.info("election {}", lastError[0]);
            }
        }
    }

    private Map<String, Object> reassign(Map<String, Object> args, long deadline, long start) throws Exception {
        String topic = reqString(args, "topic");
        int partition = (int) reqLong(args, "partition");
        List<Integer> target = intList(args.get("replicas"), "replicas");
        if (target.isEmpty()) {
            throw new OpException("\"replicas\" must not be empty");
        }
        TopicDescription d = describe(topic, deadline);
        TopicPartitionInfo p = partitionInfo(d, partition);
        TopicPartition tp = new TopicPartition(topic, partition);
        get(admin.alterPartitionReassignments(
            Map.of(tp, Optional.of(new NewPartitionReassignment(target)))).all(), deadline);
        TopicPartitionInfo[] last = new TopicPartitionInfo[1];
        waitFor(deadline, "reassignment of " + tp + " to " + target, () -> {
            Map<TopicPartition, PartitionReassignment> ongoing =
                get(admin.listPartitionReassignments(Set.of(tp)).reassignments(), deadline);
            if (!ongoing.isEmpty()) {
                PartitionReassignment pr = ongoing.get(tp);
                return "still reassigning: adding " + pr.addingReplicas() + " removing " + pr.removingReplicas();
            }
            TopicPartitionInfo now = partitionInfo(describe(topic, deadline), partition);
            last[0] = now;
            List<Integer> replicas = ids(now.replicas());
            if (!replicas.equals(target)) {
                return "replicas " + replicas;
            }
            if (!target.contains(leaderId(now))) {
                return "leader " + leaderId(now);
            }
            if (!new TreeSet<>(ids(now.isr())).equals(new TreeSet<>(target))) {
                return "isr " + ids(now.isr());
            }
            return null;
        });
        Map<String, Object> r = ok();
        r.put("topic", topic);
        r.put("partition", partition);
        r.put("old_replicas", ids(p.replicas()));
        r.put("new_replicas", ids(last[0].replicas()));
        r.put("old_leader", leaderId(p));
        r.put("new_leader", leaderId(last[0]));
        r.put("elapsed_ms", Util.elapsedMs(start));
        return r;
    }

    private Map<String, Object> electPreferred(Map<String, Object> args, long deadline) throws Exception {
        String topic = optString(args, "topic");
        List<String> topics = topic != null ? List.of(topic) : allTopics(deadline);
        Map<String, TopicDescription> descs = describeAll(topics, deadline);
        Set<TopicPartition> partitions = new HashSet<>();
        for (TopicDescription d : descs.values()) {
            for (TopicPartitionInfo p : d.partitions()) {
                partitions.add(new TopicPartition(d.name(), p.partition()));
            }
        }
        String[] lastError = new String[1];
        if (!partitions.isEmpty()) {
            elect(partitions, deadline, lastError);
        }
        long[] lastElect = {System.nanoTime()};
        int[] changed = {0};
        waitFor(deadline, "preferred leaders", () -> {
            Map<String, TopicDescription> now = describeAll(topics, deadline);
            Set<TopicPartition> pending = new HashSet<>();
            for (TopicDescription d : now.values()) {
                for (TopicPartitionInfo p : d.partitions()) {
                    if (p.replicas().isEmpty()) {
                        continue;
                    }
                    int preferred = p.replicas().get(0).id();
                    if (ids(p.isr()).contains(preferred) && leaderId(p) != preferred) {
                        pending.add(new TopicPartition(d.name(), p.partition()));
                    }
                }
            }
            if (pending.isEmpty()) {
                return null;
            }
            if (System.nanoTime() - lastElect[0] > 1_000_000_000L) {
                elect(pending, deadline, lastError);
                lastElect[0] = System.nanoTime();
            }
            return "not on preferred leader: " + new TreeSet<>(pending.stream().map(Object::toString)
                .collect(java.util.stream.Collectors.toList()))
                + (lastError[0] == null ? "" : "; last election error: " + lastError[0]);
        });
        // how many partitions had a different leader before
        for (TopicDescription d : descs.values()) {
            for (TopicPartitionInfo p : d.partitions()) {
                if (!p.replicas().isEmpty() && leaderId(p) != p.replicas().get(0).id()) {
                    changed[0]++;
                }
            }
        }
        Map<String, Object> r = ok();
        r.put("partitions", partitions.size());
        r.put("moved", changed[0]);
        return r;
    }

    private Map<String, Object> waitHealthy(Map<String, Object> args, long deadline) throws Exception {
        List<String> topicsArg = args.get("topics") == null ? null : stringList(args.get("topics"), "topics");
        List<Integer> brokers = args.get("brokers") == null ? List.of(1, 2, 3) : intList(args.get("brokers"), "brokers");
        waitFor(deadline, "a healthy cluster", () -> {
            Collection<Node> nodes = get(admin.describeCluster().nodes(), deadline);
            Set<Integer> live = new TreeSet<>();
            for (Node n : nodes) {
                live.add(n.id());
            }
            if (!live.containsAll(brokers)) {
                return "brokers " + live + ", want " + brokers;
            }
            List<String> topics = topicsArg != null ? topicsArg : allTopics(deadline);
            Map<String, TopicDescription> descs = describeAll(topics, deadline);
            for (TopicDescription d : descs.values()) {
                String why = unhealthy(d);
                if (why != null) {
                    return d.name() + ": " + why;
                }
            }
            return null;
        });
        return ok();
    }

    private Map<String, Object> endOffsets(Map<String, Object> args, long deadline) throws Exception {
        String topic = reqString(args, "topic");
        String spec = args.get("spec") == null ? "latest" : reqString(args, "spec");
        OffsetSpec offsetSpec;
        switch (spec) {
            case "latest": offsetSpec = OffsetSpec.latest(); break;
            case "earliest": offsetSpec = OffsetSpec.earliest(); break;
            default: throw new OpException("spec must be latest or earliest");
        }
        TopicDescription d = describe(topic, deadline);
        Map<TopicPartition, OffsetSpec> req = new HashMap<>();
        for (TopicPartitionInfo p : d.partitions()) {
            req.put(new TopicPartition(topic, p.partition()), offsetSpec);
        }
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> res = get(admin.listOffsets(req).all(), deadline);
        Map<Integer, Long> sorted = new TreeMap<>();
        res.forEach((tp, info) -> sorted.put(tp.partition(), info.offset()));
        Map<String, Object> offsets = new LinkedHashMap<>();
        sorted.forEach((k, v) -> offsets.put(Integer.toString(k), v));
        Map<String, Object> r = ok();
        r.put("topic", topic);
        r.put("offsets", offsets);
        return r;
    }

    /**
     * Which broker coordinates each group and transactional id. "coordinator" is what the Admin API
     * found (describeConsumerGroups, which sends FindCoordinator; describeTransactions' coordinatorId), -1
     * when it could not say; "partition" and "leader" are the internal topic's partition that holds the
     * group or transactional id (abs(hashCode) % partitions, as the brokers place them) and its leader now.
     */
    private Map<String, Object> coordinators(Map<String, Object> args, long deadline) throws Exception {
        List<String> groups = args.get("groups") == null ? List.of() : stringList(args.get("groups"), "groups");
        List<String> txnIds = args.get("transactional_ids") == null ? List.of()
            : stringList(args.get("transactional_ids"), "transactional_ids");
        Map<String, Object> r = ok();
        Map<String, Object> g = new LinkedHashMap<>();
        if (!groups.isEmpty()) {
            TopicDescription offsets = describe("__consumer_offsets", deadline);
            Map<String, KafkaFuture<org.apache.kafka.clients.admin.ConsumerGroupDescription>> described =
                admin.describeConsumerGroups(groups).describedGroups();
            for (String group : groups) {
                Map<String, Object> e = placement(group, offsets);
                int coordinator = -1;
                String state = null;
                try {
                    org.apache.kafka.clients.admin.ConsumerGroupDescription d = get(described.get(group), deadline);
                    coordinator = d.coordinator() == null ? -1 : d.coordinator().id();
                    state = String.valueOf(d.state());
                    e.put("members", d.members().size());
                } catch (ExecutionException ex) {
                    e.put("error", Util.describe(ex));
                }
                e.put("coordinator", coordinator);
                e.put("state", state);
                g.put(group, e);
            }
        }
        r.put("groups", g);
        Map<String, Object> t = new LinkedHashMap<>();
        if (!txnIds.isEmpty()) {
            TopicDescription state = describe("__transaction_state", deadline);
            org.apache.kafka.clients.admin.DescribeTransactionsResult dtr = admin.describeTransactions(txnIds);
            for (String id : txnIds) {
                Map<String, Object> e = placement(id, state);
                int coordinator = -1;
                try {
                    org.apache.kafka.clients.admin.TransactionDescription d = get(dtr.description(id), deadline);
                    coordinator = d.coordinatorId();
                    e.put("state", String.valueOf(d.state()));
                } catch (ExecutionException ex) {
                    e.put("error", Util.describe(ex));
                }
                e.put("coordinator", coordinator);
                t.put(id, e);
            }
        }
        r.put("transactions", t);
        return r;
    }

    private static Map<String, Object> placement(String key, TopicDescription internal) {
        int n = internal.partitions().size();
        int h = key.hashCode();
        int partition = (h == Integer.MIN_VALUE ? 0 : Math.abs(h)) % n;
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("partition", partition);
        int leader = -1;
        for (TopicPartitionInfo p : internal.partitions()) {
            if (p.partition() == partition) {
                leader = leaderId(p);
            }
        }
        e.put("leader", leader);
        return e;
    }

    /** A group's committed offsets: {"offsets": {"topic": {"partition": offset}}} (Admin listConsumerGroupOffsets). */
    private Map<String, Object> groupOffsets(Map<String, Object> args, long deadline) throws Exception {
        String group = reqString(args, "group");
        Map<TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> res =
            get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata(), deadline);
        Map<String, Map<Integer, Long>> sorted = new TreeMap<>();
        res.forEach((tp, om) -> {
            if (om != null) {
                sorted.computeIfAbsent(tp.topic(), k -> new TreeMap<>()).put(tp.partition(), om.offset());
            }
        });
        Map<String, Object> offsets = new LinkedHashMap<>();
        sorted.forEach((topic, parts) -> {
            Map<String, Object> m = new LinkedHashMap<>();
            parts.forEach((p, o) -> m.put(Integer.toString(p), o));
            offsets.put(topic, m);
        });
        Map<String, Object> r = ok();
        r.put("group", group);
        r.put("offsets", offsets);
        return r;
    }

    // ---------------------------------------------------------------- helpers: cluster

    private TopicDescription describe(String topic, long deadline) throws Exception {
        return get(admin.describeTopics(List.of(topic)).allTopicNames(), deadline).get(topic);
    }

    private Map<String, TopicDescription> describeAll(List<String> topics, long deadline) throws Exception {
        if (topics.isEmpty()) {
            return Map.of();
        }
        return new TreeMap<>(get(admin.describeTopics(topics).allTopicNames(), deadline));
    }

    private List<String> allTopics(long deadline) throws Exception {
        Set<String> names = get(admin.listTopics(new ListTopicsOptions().listInternal(true)).names(), deadline);
        return new ArrayList<>(new TreeSet<>(names));
    }

    /** null if every partition has a leader and a full ISR, else why not. */
    private static String unhealthy(TopicDescription d) {
        for (TopicPartitionInfo p : d.partitions()) {
            if (leaderId(p) < 0) {
                return "partition " + p.partition() + " has no leader";
            }
            if (!new TreeSet<>(ids(p.isr())).equals(new TreeSet<>(ids(p.replicas())))) {
                return "partition " + p.partition() + " isr " + ids(p.isr()) + " replicas " + ids(p.replicas());
            }
        }
        return null;
    }

    private static TopicPartitionInfo partitionInfo(TopicDescription d, int partition) throws OpException {
        for (TopicPartitionInfo p : d.partitions()) {
            if (p.partition() == partition) {
                return p;
            }
        }
        throw new OpException("topic " + d.name() + " has no partition " + partition);
    }

    private static int leaderId(TopicPartitionInfo p) {
        Node l = p.leader();
        return l == null || l.isEmpty() ? -1 : l.id();
    }

    private static List<Integer> ids(List<Node> nodes) {
        List<Integer> l = new ArrayList<>(nodes.size());
        for (Node n : nodes) {
            l.add(n.id());
        }
        return l;
    }

    private static List<Object> partitionsJson(TopicDescription d) {
        List<Object> l = new ArrayList<>();
        for (TopicPartitionInfo p : d.partitions()) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("partition", p.partition());
            m.put("leader", leaderId(p));
            m.put("replicas", ids(p.replicas()));
            m.put("isr", ids(p.isr()));
            l.add(m);
        }
        return l;
    }

    private static <T> T get(KafkaFuture<T> f, long deadline) throws Exception {
        long remainingMs = Math.max(1, (deadline - System.nanoTime()) / 1_000_000L);
        try {
            return f.get(remainingMs, TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.TimeoutException e) {
            throw new DeadlineException();
        }
    }

    interface Check {
        /** null when the condition holds, else a description of what is not there yet. */
        String check() throws Exception;
    }

    /** Polls the check every 100 ms until it holds; errors while polling are retried until the deadline. */
    private static void waitFor(long deadline, String what, Check c) throws Exception {
        String last = null;
        while (true) {
            try {
                String why = c.check();
                if (why == null) {
                    return;
                }
                last = why;
            } catch (DeadlineException e) {
                // keep the last real reason, if any: this call was only cut short by the deadline
                if (last == null) {
                    last = e.getMessage();
                }
            } catch (OpException e) {
                last = e.getMessage();
            } catch (ExecutionException | org.apache.kafka.common.KafkaException e) {
                last = Util.describe(e);
            }
            if (System.nanoTime() - deadline >= 0) {
                throw new OpException("timeout waiting for " + what + ": " + last);
            }
            Thread.sleep(Math.max(1, Math.min(POLL_MS, (deadline - System.nanoTime()) / 1_000_000L)));
        }
    }

    // ---------------------------------------------------------------- helpers: arguments

    @SuppressWarnings("unchecked")
    private static Map<String, Object> asMap(Object o) {
        return (Map<String, Object>) o;
    }

    private static String reqString(Map<String, Object> args, String key) throws OpException {
        Object v = args.get(key);
        if (!(v instanceof String) || ((String) v).isEmpty()) {
            throw new OpException("missing string argument \"" + key + "\"");
        }
        return (String) v;
    }

    private static String optString(Map<String, Object> args, String key) throws OpException {
        return args.get(key) == null ? null : reqString(args, key);
    }

    private static long reqLong(Map<String, Object> args, String key) throws OpException {
        Object v = args.get(key);
        if (v instanceof Long) {
            return (Long) v;
        }
        if (v instanceof String) {
            try {
                return Long.parseLong((String) v);
            } catch (NumberFormatException ignored) {
                // fall through
            }
        }
        throw new OpException("missing integer argument \"" + key + "\"");
    }

    private static long optLong(Map<String, Object> args, String key, long def) throws OpException {
        return args.get(key) == null ? def : reqLong(args, key);
    }

    private static Map<String, Object> optMap(Map<String, Object> args, String key) throws OpException {
        Object v = args.get(key);
        if (v == null) {
            return null;
        }
        if (!(v instanceof Map)) {
            throw new OpException("\"" + key + "\" must be an object");
        }
        return asMap(v);
    }

    private static int parseInt(String s, String what) throws OpException {
        try {
            return Integer.parseInt(s.trim());
        } catch (NumberFormatException e) {
            throw new OpException(what + " must be an integer: " + s);
        }
    }

    private static List<Integer> intList(Object v, String what) throws OpException {
        if (!(v instanceof List)) {
            throw new OpException("\"" + what + "\" must be a list of integers");
        }
        List<Integer> l = new ArrayList<>();
        for (Object o : (List<?>) v) {
            if (!(o instanceof Long)) {
                throw new OpException("\"" + what + "\" must be a list of integers");
            }
            l.add(((Long) o).intValue());
        }
        return l;
    }

    private static List<String> stringList(Object v, String what) throws OpException {
        if (!(v instanceof List)) {
            throw new OpException("\"" + what + "\" must be a list of strings");
        }
        List<String> l = new ArrayList<>();
        for (Object o : (List<?>) v) {
            if (!(o instanceof String)) {
                throw new OpException("\"" + what + "\" must be a list of strings");
            }
            l.add((String) o);
        }
        return l;
    }
}
