package dev.fairlead.testkit;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.utils.AppInfoParser;

final class Util {
    private Util() {}

    /** Strips ExecutionException/CompletionException wrappers. */
    static Throwable unwrap(Throwable t) {
        Throwable c = t;
        while ((c instanceof ExecutionException || c instanceof CompletionException) && c.getCause() != null) {
            c = c.getCause();
        }
        return c;
    }

    static String describe(Throwable t) {
        Throwable c = unwrap(t);
        String m = c.getMessage();
        return c.getClass().getSimpleName() + (m == null ? "" : ": " + m);
    }

    /** Writes the file atomically: FILE.tmp, then rename over FILE. */
    static void writeAtomically(String file, String content) throws IOException {
        Path target = Path.of(file);
        Path tmp = Path.of(file + ".tmp");
        Files.writeString(tmp, content, StandardCharsets.UTF_8);
        try {
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (java.nio.file.AtomicMoveNotSupportedException e) {
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    static String clientVersion() {
        return AppInfoParser.getVersion();
    }

    /** The value of one metric as a JSON-friendly number (0 if absent or not finite). */
    static Number metric(java.util.Map<MetricName, ? extends Metric> metrics, String group, String name) {
        for (java.util.Map.Entry<MetricName, ? extends Metric> e : metrics.entrySet()) {
            MetricName n = e.getKey();
            if (n.group().equals(group) && n.name().equals(name)) {
                Object v = e.getValue().metricValue();
                if (v instanceof Number) {
                    double d = ((Number) v).doubleValue();
                    if (Double.isFinite(d)) {
                        return d;
                    }
                }
                return 0;
            }
        }
        return 0;
    }

    static long elapsedMs(long startNanos) {
        return (System.nanoTime() - startNanos) / 1_000_000L;
    }
}
