package dev.fairlead.testkit;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

/**
 * Command-line options of the form {@code --name value}. {@code --prop key=value} may be repeated; every
 * other option may be given once. Unknown options are a usage error.
 */
final class Opts {
    private final Map<String, String> values = new HashMap<>();
    private final List<String[]> props = new ArrayList<>();
    final List<String> positional = new ArrayList<>();

    private Opts() {}

    static Opts parse(String[] args, int from, Set<String> allowed, boolean allowPositional)
            throws UsageException {
        Opts o = new Opts();
        for (int i = from; i < args.length; i++) {
            String a = args[i];
            if (a.startsWith("--")) {
                String name = a.substring(2);
                if (!name.equals("prop") && !allowed.contains(name)) {
                    throw new UsageException("unknown option: " + a);
                }
                if (i + 1 >= args.length) {
                    throw new UsageException("option " + a + " needs a value");
                }
                String v = args[++i];
                if (name.equals("prop")) {
                    int eq = v.indexOf('=');
                    if (eq <= 0) {
                        throw new UsageException("--prop needs key=value, got: " + v);
                    }
                    o.props.add(new String[] {v.substring(0, eq), v.substring(eq + 1)});
                } else if (o.values.putIfAbsent(name, v) != null) {
                    throw new UsageException("option " + a + " given twice");
                }
            } else if (allowPositional) {
                o.positional.add(a);
            } else {
                throw new UsageException("unexpected argument: " + a);
            }
        }
        return o;
    }

    String required(String name) throws UsageException {
        String v = values.get(name);
        if (v == null || v.isEmpty()) {
            throw new UsageException("missing required option --" + name);
        }
        return v;
    }

    String get(String name, String def) {
        return values.getOrDefault(name, def);
    }

    boolean has(String name) {
        return values.containsKey(name);
    }

    long getLong(String name, long def) throws UsageException {
        String v = values.get(name);
        if (v == null) {
            return def;
        }
        try {
            return Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " needs an integer, got: " + v);
        }
    }

    double getDouble(String name, double def) throws UsageException {
        String v = values.get(name);
        if (v == null) {
            return def;
        }
        try {
            double d = Double.parseDouble(v.trim());
            if (Double.isNaN(d) || d < 0) {
                throw new NumberFormatException();
            }
            return d;
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " needs a non-negative number, got: " + v);
        }
    }

    /** Puts every --prop key=value into p, overriding what is there. */
    Properties applyProps(Properties p) {
        for (String[] kv : props) {
            p.put(kv[0], kv[1]);
        }
        return p;
    }
}
