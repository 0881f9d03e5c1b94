// Starts Kroxylicious's proxy from its runtime library (io.kroxylicious:kroxylicious-runtime) with a
// YAML configuration file. Written for the peer benchmark: Maven Central serves the runtime but not
// the kroxylicious-app launcher, so benches/e2e/peers.py compiles this file instead.
//
//   java -cp 'libs/*:.' KroxyliciousLauncher CONFIG.yaml
import io.kroxylicious.proxy.KafkaProxy;
import io.kroxylicious.proxy.config.ConfigParser;
import io.kroxylicious.proxy.internal.config.Features;
import java.nio.file.Files;
import java.nio.file.Path;

public final class KroxyliciousLauncher {
    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: KroxyliciousLauncher CONFIG.yaml");
            System.exit(2);
        }
        ConfigParser parser = new ConfigParser();
        var config = parser.parseConfiguration(Files.readString(Path.of(args[0])));
        try (KafkaProxy proxy = new KafkaProxy(parser, config, Features.defaultFeatures())) {
            proxy.startup();
            System.err.println("kroxylicious started");
            proxy.block();
        }
    }
}
