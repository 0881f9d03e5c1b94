"""Other Kafka proxies that benches/e2e/run measures beside direct and fairlead (`--sides`).

Each peer is fetched and built from a package registry into .cache/peers/ (which git ignores) the
first time it is asked for; nothing of theirs is in this repository. Each fronts the test bed's
three brokers with one local port per broker, as fairlead does, with nothing else switched on:

  kafka-proxy   grepplabs/kafka-proxy (Go), `go install github.com/grepplabs/kafka-proxy@VERSION`
                with GOBIN in .cache/peers/kafka-proxy/VERSION/bin; run as
                `kafka-proxy server --bootstrap-server-mapping BROKER,LOCAL` once per broker and
                `--dynamic-listeners-disable`. Clients bootstrap at the three local addresses.
  kroxylicious  Kroxylicious (Java), io.kroxylicious:kroxylicious-runtime:VERSION and its runtime
                dependencies resolved by Maven into .cache/peers/kroxylicious/VERSION/libs. Maven
                Central serves the runtime library but not the kroxylicious-app launcher, so
                peers/KroxyliciousLauncher.java (ours: parse the YAML, start KafkaProxy, block) is
                compiled beside it and run as `java -cp libs/*:classes KroxyliciousLauncher FILE`
                with one virtual cluster, a `portIdentifiesNode` gateway (bootstrap port, then one
                port per node id 1-3) and no filters. It runs on the JDK on the PATH (17 here) when
                its classes are for 17 or older, else on FAIRLEAD_BENCH_JAVA_HOME or the Temurin 25
                JDK beside it.

Versions: FAIRLEAD_BENCH_KAFKA_PROXY_VERSION (default below), FAIRLEAD_BENCH_KROXYLICIOUS_VERSION.
A Go module that needs a newer Go than the machine's is retried once with GOTOOLCHAIN=go1.27.3
(the approved newer toolchain, taken from the Go module proxy like a module).

Ports (plus FAIRLEAD_TESTBED_PORT_OFFSET, as for fairlead's): kafka-proxy serves node N on
28192 + N and its HTTP endpoint on 28465; Kroxylicious bootstraps on 28292 and serves node N on
28292 + N.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import zipfile

import benchlib as bl

PEERS = ("kafka-proxy", "kroxylicious", "haproxy")
PEER_DIR = os.path.join(bl.ROOT, ".cache", "peers")

KAFKA_PROXY_MODULE = "github.com/grepplabs/kafka-proxy"
KAFKA_PROXY_VERSION = os.environ.get("FAIRLEAD_BENCH_KAFKA_PROXY_VERSION") or "v0.4.3"
KROXYLICIOUS_VERSION = os.environ.get("FAIRLEAD_BENCH_KROXYLICIOUS_VERSION") or "0.12.0"
KROXYLICIOUS_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "KroxyliciousLauncher.java")
NEWER_GO = "go1.27.3"

KAFKA_PROXY_BASE = 28192 + bl.PORT_OFFSET
KAFKA_PROXY_HTTP = 28465 + bl.PORT_OFFSET
KROXYLICIOUS_BOOTSTRAP = 28292 + bl.PORT_OFFSET
# HAProxy serves node N on 28392 + N: the ports the test bed's EXTERNAL listener advertises
# (`testbed up --extra-listener 28392`, plus the offset).
HAPROXY_ADVERTISED_BASE = 28392 + bl.PORT_OFFSET


class Unavailable(Exception):
    """A peer that cannot be fetched, built or started here; the message says why (the error)."""


def _tail(text, lines=12):
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# fetch and build


def prepare(side):
    """Fetches and builds a peer (once; later runs reuse .cache/peers). Returns what start() needs;
    raises Unavailable with the registry's or the build's own error."""
    if side == "kafka-proxy":
        return _prepare_kafka_proxy(KAFKA_PROXY_VERSION)
    if side == "kroxylicious":
        return _prepare_kroxylicious(KROXYLICIOUS_VERSION)
    if side == "haproxy":
        return _prepare_haproxy()
    raise ValueError(side)


def _prepare_haproxy():
    """HAProxy from the Debian package (apt-get install haproxy when it is missing)."""
    if not bl.have("haproxy"):
        if not bl.have("apt-get"):
            raise Unavailable("haproxy: not installed and no apt-get to install it")
        bl.log("installing HAProxy: apt-get install -y haproxy")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (sudo + ["apt-get", "update", "-qq"], sudo + ["apt-get", "install", "-y", "-qq", "haproxy"]):
            r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                raise Unavailable(f"haproxy: `{' '.join(cmd)}` failed (exit {r.returncode}):\n{_tail(r.stdout)}")
    v = subprocess.run(["haproxy", "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    version = (v.strip().splitlines() or ["?"])[0]
    return {"side": "haproxy", "version": version, "source": f"{version} (Debian package), TCP mode, 1 thread"}


def _prepare_kafka_proxy(version):
    home = os.path.join(PEER_DIR, "kafka-proxy", version)
    binary = os.path.join(home, "bin", "kafka-proxy")
    info = {"side": "kafka-proxy", "version": version, "binary": binary,
            "source": f"{KAFKA_PROXY_MODULE}@{version} (Go module proxy)"}
    if os.path.exists(binary):
        return info
    if not bl.have("go"):
        raise Unavailable("kafka-proxy: no `go` command on this machine")
    os.makedirs(home, exist_ok=True)
    bl.log(f"building kafka-proxy: go install {KAFKA_PROXY_MODULE}@{version} (GOBIN={home}/bin)")
    env = {**os.environ, "GOBIN": os.path.join(home, "bin"), "CGO_ENABLED": "0"}
    cmd = ["go", "install", f"{KAFKA_PROXY_MODULE}@{version}"]
    r = subprocess.run(cmd, env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0 and re.search(r"requires go >= |toolchain", r.stdout) and "GOTOOLCHAIN" not in os.environ:
        bl.log(f"kafka-proxy {version} needs a newer Go: retrying with GOTOOLCHAIN={NEWER_GO}")
        env["GOTOOLCHAIN"] = NEWER_GO
        r = subprocess.run(cmd, env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        info["gotoolchain"] = NEWER_GO
    with open(os.path.join(home, "build.log"), "w") as fh:
        fh.write(r.stdout)
    if r.returncode != 0 or not os.path.exists(binary):
        raise Unavailable(f"kafka-proxy: `{' '.join(cmd)}` failed (exit {r.returncode}):\n{_tail(r.stdout)}")
    return info


KROXYLICIOUS_POM = """<?xml version="1.0" encoding="UTF-8"?>
<!-- written by benches/e2e/peers.py: resolves Kroxylicious's proxy runtime and its runtime
     dependencies from Maven Central into libs/ -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.fairlead.bench</groupId>
  <artifactId>kroxylicious-peer</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.kroxylicious</groupId>
      <artifactId>kroxylicious-runtime</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


def _prepare_kroxylicious(version):
    home = os.path.join(PEER_DIR, "kroxylicious", version)
    libs = os.path.join(home, "libs")
    info = {"side": "kroxylicious", "version": version, "libs": libs,
            "source": f"io.kroxylicious:kroxylicious-runtime:{version} (Maven Central) + peers/KroxyliciousLauncher.java"}
    if not os.path.exists(os.path.join(home, ".complete")):
        if not bl.have("mvn"):
            raise Unavailable("kroxylicious: no `mvn` command on this machine")
        os.makedirs(home, exist_ok=True)
        pom = os.path.join(home, "pom.xml")
        with open(pom, "w") as fh:
            fh.write(KROXYLICIOUS_POM.replace("{version}", version))
        shutil.rmtree(libs, ignore_errors=True)
        bl.log(f"resolving Kroxylicious {version} from Maven Central into {libs}")
        cmd = ["mvn", "-B", "-q", "-U", "-Dstyle.color=never", "-f", pom, "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={libs}"]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with open(os.path.join(home, "resolve.log"), "w") as fh:
            fh.write(r.stdout)
        if r.returncode != 0:
            out = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout)
            errs = [l for l in out.splitlines() if "Failed to execute goal" in l]
            raise Unavailable(f"kroxylicious: `mvn dependency:copy-dependencies` of "
                              f"io.kroxylicious:kroxylicious-runtime:{version} failed (exit {r.returncode}):\n"
                              + "\n".join(errs[:2] or [_tail(out)]))
        open(os.path.join(home, ".complete"), "w").close()
    info["java"] = _java_for(libs)
    info["classes"] = _compile_launcher(home, libs, info["java"])
    return info


def _compile_launcher(home, libs, java):
    """Compiles peers/KroxyliciousLauncher.java against libs/ with the javac beside `java`."""
    classes = os.path.join(home, "classes")
    target = os.path.join(classes, "KroxyliciousLauncher.class")
    if os.path.exists(target) and os.path.getmtime(target) >= os.path.getmtime(KROXYLICIOUS_LAUNCHER):
        return classes
    javac = os.path.join(os.path.dirname(java), "javac") if os.sep in java else "javac"
    cmd = [javac, "-cp", os.path.join(libs, "*"), "-d", classes, KROXYLICIOUS_LAUNCHER]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise Unavailable(f"kroxylicious: compiling {KROXYLICIOUS_LAUNCHER} failed (exit {r.returncode}):\n{_tail(r.stdout)}")
    return classes


def _class_major(libs, cls="io/kroxylicious/proxy/KafkaProxy.class"):
    for jar in sorted(os.listdir(libs)):
        if not jar.startswith("kroxylicious-runtime-"):
            continue
        with zipfile.ZipFile(os.path.join(libs, jar)) as z:
            head = z.read(cls)[:8]
        return int.from_bytes(head[6:8], "big")
    raise Unavailable(f"kroxylicious: no kroxylicious-runtime jar in {libs}")


def _java_for(libs):
    """The java to run Kroxylicious with: the PATH's when the classes are for Java 17 (class file
    61) or older, else a newer JDK."""
    major = _class_major(libs)
    if major <= 61:
        return "java"
    for home in (os.environ.get("FAIRLEAD_BENCH_JAVA_HOME"), "/usr/lib/jvm/temurin-25-jdk-amd64"):
        if home and os.path.exists(os.path.join(home, "bin", "java")):
            return os.path.join(home, "bin", "java")
    raise Unavailable(f"kroxylicious: its classes need Java {major - 44}; set FAIRLEAD_BENCH_JAVA_HOME to such a JDK")


# ---------------------------------------------------------------------------------------------
# running


def brokers(bootstrap):
    """{node id: 'host:port'} of the test bed's brokers: its bootstrap lists nodes 1, 2, 3 in order
    (tests/testbed/testbed, bootstrap())."""
    addrs = bootstrap.split(",")
    if len(addrs) != 3:
        bl.die(f"expected the test bed's three brokers, got bootstrap {bootstrap}")
    return {n: a for n, a in enumerate(addrs, start=1)}


def _port_open(port):
    try:
        with socket.create_connection((bl.LISTEN_HOST, port), timeout=0.3):
            return True
    except OSError:
        return False


class PeerProxy:
    """A peer as a child process for one round: same interface as benchlib.Fairlead."""

    def __init__(self, info, bootstrap, log_path, fronts=None, options=(), global_options=()):
        """`fronts` (HAProxy only) {node: broker address}: HAProxy serves node N on 28392 + N and
        forwards to that address (metadata-scale's fake broker), instead of to the test bed's
        EXTERNAL listener; `options` and `global_options` (HAProxy only) go into its `defaults`
        and `global` sections as they are (`option splice-response`, `stats socket PATH`)."""
        self.info, self.log_path = info, log_path
        self.side = info["side"]
        self.p = None
        if self.side == "haproxy":
            if fronts is None:
                extra = bl.extra_listener()
                if not extra:
                    raise Unavailable(
                        "haproxy: the test bed runs without the listener HAProxy fronts; restart it with "
                        f"`tests/testbed/testbed up --extra-listener {HAPROXY_ADVERTISED_BASE}` (run does this itself "
                        "when no cluster runs)")
                want = {n: f"{bl.LISTEN_HOST}:{HAPROXY_ADVERTISED_BASE + n}" for n in extra}
                if any(extra[n][1] != want[n] for n in extra):
                    raise Unavailable(f"haproxy: the test bed's EXTERNAL listener advertises {extra}, not {want}")
                fronts = {n: extra[n][0] for n in extra}
            want = {n: f"{bl.LISTEN_HOST}:{HAPROXY_ADVERTISED_BASE + n}" for n in fronts}
            self.ports = [HAPROXY_ADVERTISED_BASE + n for n in sorted(fronts)]
            self.check_ports = self.ports
            self.bootstrap = ",".join(want[n] for n in sorted(fronts))
            cfg = os.path.splitext(log_path)[0] + ".cfg"
            with open(cfg, "w") as fh:
                fh.write(haproxy_config({n: (want[n], fronts[n]) for n in fronts}, options, global_options))
            self.cmd = ["haproxy", "-db", "-f", cfg]
            return
        nodes = brokers(bootstrap)
        if self.side == "kafka-proxy":
            self.ports = [KAFKA_PROXY_BASE + n for n in sorted(nodes)]
            self.check_ports = self.ports + [KAFKA_PROXY_HTTP]
            self.bootstrap = ",".join(f"{bl.LISTEN_HOST}:{p}" for p in self.ports)
            self.cmd = [info["binary"], "server", "--dynamic-listeners-disable",
                        "--http-listen-address", f"{bl.LISTEN_HOST}:{KAFKA_PROXY_HTTP}"]
            for n in sorted(nodes):
                self.cmd += ["--bootstrap-server-mapping",
                             f"{nodes[n]},{bl.LISTEN_HOST}:{KAFKA_PROXY_BASE + n}"]
        else:
            self.ports = [KROXYLICIOUS_BOOTSTRAP] + [KROXYLICIOUS_BOOTSTRAP + n for n in sorted(nodes)]
            self.check_ports = self.ports
            self.bootstrap = f"{bl.LISTEN_HOST}:{KROXYLICIOUS_BOOTSTRAP}"
            cfg = os.path.splitext(log_path)[0] + ".yaml"
            with open(cfg, "w") as fh:
                fh.write(kroxylicious_config(",".join(nodes[n] for n in sorted(nodes)), min(nodes), max(nodes)))
            classpath = os.path.join(info["libs"], "*") + os.pathsep + info["classes"]
            self.cmd = [info["java"], "-Xms256m", "-Xmx512m", "-cp", classpath, "KroxyliciousLauncher", cfg]

    def start(self, timeout=120):
        for port in self.check_ports:
            if _port_open(port):
                bl.die(f"port {port} is in use: is another benchmark (or a leftover {self.side}) running?")
        self.logf = open(self.log_path, "ab")
        self.logf.write((" ".join(self.cmd) + "\n").encode())
        self.logf.flush()
        self.p = bl.track(subprocess.Popen(self.cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.p.poll() is not None:
                self.logf.close()
                raise Unavailable(f"{self.side} exited ({self.p.returncode}) at start-up; see {self.log_path}:\n"
                                  + _tail(open(self.log_path, errors="replace").read()))
            if all(_port_open(p) for p in self.ports):
                return self
            time.sleep(0.2)
        self.stop()
        raise Unavailable(f"{self.side} did not open ports {self.ports} within {timeout}s; see {self.log_path}")

    @property
    def pid(self):
        return self.p.pid

    def cpu(self):
        return bl.proc_cpu_seconds(self.p.pid)

    def rss_kib(self):
        return bl.proc_status_kib(self.p.pid, "VmRSS")

    def hwm_kib(self):
        return bl.proc_status_kib(self.p.pid, "VmHWM")

    def stop(self):
        if self.p is None or self.p.poll() is not None:
            return None if self.p is None else self.p.returncode
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            bl.log(f"{self.side} did not stop within 30s of SIGTERM: killing it")
            self.p.kill()
            self.p.wait()
        self.logf.close()
        return self.p.returncode


def haproxy_config(nodes, options=(), global_options=()):
    """TCP mode, one frontend per broker (node -> (HAProxy's address, the broker's EXTERNAL
    listener)), one thread: the cheapest forwarder, the floor fairlead is compared with.
    `options`, `global_options`: more lines for the `defaults` and `global` sections."""
    # maxconn 4096: HAProxy raises its descriptor limit to about twice maxconn and refuses to start
    # when the hard limit is lower (20000 here: maxconn 20000 wanted 40016). A benchmark opens a
    # few dozen connections.
    out = ["# written by benches/e2e/peers.py for one benchmark round", "global", "    nbthread 1", "    maxconn 4096"]
    out += [f"    {o}" for o in global_options]
    out += ["defaults", "    mode tcp", "    timeout connect 5s", "    timeout client 1h", "    timeout server 1h"]
    out += [f"    {o}" for o in options]
    for n in sorted(nodes):
        front, broker = nodes[n]
        out += [f"frontend node{n}", f"    bind {front}", f"    default_backend broker{n}",
                f"backend broker{n}", f"    server node{n} {broker}"]
    return "\n".join(out) + "\n"


def kroxylicious_config(target_bootstrap, first_node, last_node):
    """One virtual cluster, port per node id, no filters (the configuration schema of Kroxylicious
    0.11 and later: `virtualClusters` a list, `gateways` with `portIdentifiesNode`)."""
    return f"""# written by benches/e2e/peers.py for one benchmark round
virtualClusters:
  - name: bench
    targetCluster:
      bootstrapServers: {target_bootstrap}
    gateways:
      - name: plain
        portIdentifiesNode:
          bootstrapAddress: {bl.LISTEN_HOST}:{KROXYLICIOUS_BOOTSTRAP}
          nodeIdRanges:
            - name: brokers
              start: {first_node}
              end: {last_node}
    logNetwork: false
    logFrames: false
"""
