package dev.fairlead.testkit;

import java.io.FileOutputStream;
import java.io.FileDescriptor;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Entry point of the testkit.
 *
 * <p>Commands: produce, consume, group-consume, txn-produce, admin, admin-shell. Exit codes: 0 success, 1 failure, 2 usage error.
 *
 * <p>Only JSON results go to stdout (through {@link #OUT}); {@code System.out} is redirected to stderr so
 * that nothing else (a library print, a stray log line) can ever end up on stdout.
 */
public final class Main {
    // Must run before any class with a static logger is initialized (USAGE below loads AdminOps).
    static {
        configureLogging();
    }

    /** The real stdout. Only result JSON lines are written here. */
    static PrintStream OUT;

    /** Counted down when the command has written its results; a SIGTERM hook waits for it. */
    static final CountDownLatch FINISHED = new CountDownLatch(1);

    static final String USAGE = String.join("\n",
        "usage: java -cp 'testkit.jar:lib/*' dev.fairlead.testkit.Main <command> [--name value]...",
        "",
        "  produce --bootstrap B --topic T --run-id ID --acked FILE --summary FILE",
        "          [--rate R] [--size S] [--count N] [--duration SEC] [--partitions P]",
        "          [--key K --value V] [--id-header H] [--prop k=v]...",
        "      sends until stdin EOF, --count records or --duration seconds, whichever first",
        "  consume --bootstrap B --topic T[,T2...] --consumed FILE --summary FILE",
        "          [--group G] [--drain-timeout SEC] [--id-header H] [--prop k=v]...",
        "      polls until stdin EOF, then drains to the end offsets (or --drain-timeout)",
        "  group-consume --bootstrap B --topic T[,T2...] --group G --consumed FILE --commits FILE --summary FILE",
        "          [--protocol classic|consumer] [--drain-timeout SEC] [--prop k=v]...",
        "      a group member that commitSyncs what it processed after every poll; drains at stdin EOF",
        "  txn-produce --bootstrap B --topic T --run-id ID --txn-log FILE --summary FILE",
        "          [--transactional-id X] [--records-per-txn N] [--abort-every K] [--txn-rate R]",
        "          [--count N] [--duration SEC] [--input-topic I --input-group G] [--prop k=v]...",
        "      transactions of N records, every K-th aborted; with --input-topic consume-transform-produce",
        "  admin --bootstrap B [--prop k=v]... <op> ['{json args}']",
        "      one operation, one JSON line on stdout",
        "  admin-shell --bootstrap B [--prop k=v]...",
        "      one JSON command per stdin line ({\"op\":...}), one JSON result line per command",
        "",
        "  admin ops: " + String.join(", ", AdminOps.OPS),
        "");

    private Main() {}

    public static void main(String[] args) {
        OUT = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
        System.setOut(System.err);

        int code;
        try {
            code = run(args);
        } catch (UsageException e) {
            System.err.println("testkit: " + e.getMessage());
            System.err.println();
            System.err.print(USAGE);
            code = 2;
        } catch (Throwable t) {
            System.err.println("testkit: fatal: " + t);
            t.printStackTrace(System.err);
            code = 1;
        }
        OUT.flush();
        System.err.flush();
        FINISHED.countDown();
        System.exit(code);
    }

    private static int run(String[] args) throws Exception {
        if (args.length == 0) {
            throw new UsageException("missing command");
        }
        String cmd = args[0];
        switch (cmd) {
            case "produce":
                installStopHook();
                return new ProduceCmd(Opts.parse(args, 1, ProduceCmd.OPTIONS, false)).run();
            case "consume":
                installStopHook();
                return new ConsumeCmd(Opts.parse(args, 1, ConsumeCmd.OPTIONS, false)).run();
            case "group-consume":
                installStopHook();
                return new GroupConsumeCmd(Opts.parse(args, 1, GroupConsumeCmd.OPTIONS, false)).run();
            case "txn-produce":
                installStopHook();
                return new TxnProduceCmd(Opts.parse(args, 1, TxnProduceCmd.OPTIONS, false)).run();
            case "admin":
                return AdminOps.oneShot(Opts.parse(args, 1, AdminOps.OPTIONS, true));
            case "admin-shell":
                return AdminOps.shell(Opts.parse(args, 1, AdminOps.OPTIONS, false));
            case "help":
            case "--help":
            case "-h":
                System.err.print(USAGE);
                return 0;
            default:
                throw new UsageException("unknown command: " + cmd);
        }
    }

    /**
     * slf4j-simple reads its configuration from system properties when the first logger is created, so they
     * are set here, before anything touches a logger. A -D on the java command line wins.
     */
    private static void configureLogging() {
        setDefault("org.slf4j.simpleLogger.logFile", "System.err");
        setDefault("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        setDefault("org.slf4j.simpleLogger.showDateTime", "true");
        setDefault("org.slf4j.simpleLogger.dateTimeFormat", "yyyy-MM-dd'T'HH:mm:ss.SSS");
        setDefault("org.slf4j.simpleLogger.showThreadName", "true");
        setDefault("org.slf4j.simpleLogger.showLogName", "true");
        setDefault("org.slf4j.simpleLogger.showShortLogName", "false");
        setDefault("org.slf4j.simpleLogger.levelInBrackets", "false");
    }

    private static void setDefault(String key, String value) {
        if (System.getProperty(key) == null) {
            System.setProperty(key, value);
        }
    }

    /** Process-wide stop request: stdin EOF or SIGTERM/SIGINT. */
    static volatile boolean stopRequested = false;
    static volatile String stopReason = null;

    static void requestStop(String reason) {
        if (!stopRequested) {
            stopReason = reason;
            stopRequested = true;
        }
    }

    /** On SIGTERM/SIGINT: ask the command to stop gracefully and give it time to write its summary. */
    private static void installStopHook() {
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            requestStop("signal");
            try {
                FINISHED.await(60, TimeUnit.SECONDS);
            } catch (InterruptedException ignored) {
                Thread.currentThread().interrupt();
            }
        }, "testkit-stop-hook"));
    }

    /** Reads (and discards) stdin on a daemon thread; requests a stop at EOF. */
    static void watchStdinEof() {
        Thread t = new Thread(() -> {
            byte[] buf = new byte[4096];
            try {
                while (System.in.read(buf) >= 0) {
                    // discard
                }
            } catch (Exception ignored) {
                // treat a broken stdin like EOF
            }
            requestStop("stdin-eof");
        }, "testkit-stdin");
        t.setDaemon(true);
        t.start();
    }

    static String errName(Throwable t) {
        Throwable c = Util.unwrap(t);
        return c.getClass().getSimpleName();
    }
}
