"""Shared pieces of the end-to-end benchmarks (benches/e2e/run and benches/e2e/scale).

Everything here is stdlib Python: the test bed (tests/testbed/testbed), fairlead as a child
process with its CPU and memory read from /proc, the Java testkit's admin shell (one long-lived
Admin client fed JSON lines), and a description of the machine for the report.
"""

import atexit
import json
import os
import re
import shutil
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TESTBED = os.path.join(ROOT, "tests", "testbed", "testbed")
CLUSTER_JSON = os.path.join(ROOT, "target", "testbed", "cluster.json")
BENCH_DIR = os.path.join(ROOT, "target", "bench")
FAIRLEAD_BIN = os.path.join(ROOT, "target", "release", "fairlead")
# Other builds of fairlead to compare (side `fairlead@NAME`, e.g. another global allocator):
# target/release/fairlead-NAME, copied there after building it (BENCHMARKS.md says how).
FAIRLEAD_BUILD_DIR = os.path.dirname(FAIRLEAD_BIN)

# Benchmark ports: clients bootstrap at 28092, broker node N is served on 28093 + N (28094-28096
# for the test bed's nodes 1-3), metrics on 28464. Kept apart from the tests' and the demo's.
# FAIRLEAD_TESTBED_PORT_OFFSET=K (which also moves the test bed's brokers, tests/testbed/testbed)
# adds K to each, so a benchmark in another checkout, beside its own cluster, keeps off these.
PORT_OFFSET = int(os.environ.get("FAIRLEAD_TESTBED_PORT_OFFSET") or 0)
LISTEN_HOST = "127.0.0.1"
LISTEN_PORT = 28092 + PORT_OFFSET
LISTEN = f"{LISTEN_HOST}:{LISTEN_PORT}"
ADMIN = f"127.0.0.1:{28464 + PORT_OFFSET}"

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Child processes to end if the benchmark stops early (Ctrl-C, SIGTERM, an error).
_CHILDREN = []


def _end_children():
    for p in _CHILDREN:
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_end_children)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def track(p):
    _CHILDREN.append(p)
    return p


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# /proc readers


def proc_cpu_seconds(pid):
    """utime + stime of a whole process (all its threads), in seconds; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu_ns(pid):
    """CPU time of a whole process in nanoseconds, summed over its threads' schedstat (exact,
    where utime + stime count 10-ms ticks); None if it is gone. A thread that ended is not
    counted: for processes whose threads live as long as they do (fairlead's runtime)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return total


def proc_status_kib(pid, key):
    """A kB line of /proc/<pid>/status (VmRSS, VmHWM, ...) in KiB; None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def system_busy_seconds():
    """CPU time the whole machine spent busy (all CPUs, everything but idle and iowait)."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def children_cpu_seconds():
    """CPU time of the children this process has waited for (ended clients)."""
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every `interval` seconds; keeps the maximum and the series."""

    def __init__(self, pid, interval=0.1, keep_series=False):
        super().__init__(daemon=True)
        self.pid, self.interval, self.keep = pid, interval, keep_series
        self.max_kib = 0
        self.series = []
        self._halt = threading.Event()

    def run(self):
        t0 = time.time()
        while not self._halt.is_set():
            v = proc_status_kib(self.pid, "VmRSS")
            if v is None:
                break
            self.max_kib = max(self.max_kib, v)
            if self.keep:
                self.series.append((round(time.time() - t0, 2), v))
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()
        return self.max_kib


# ---------------------------------------------------------------------------------------------
# the test bed


def testbed(*args, check=True):
    r = subprocess.run([TESTBED, *args], stdout=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        die(f"tests/testbed/testbed {' '.join(args)} failed ({r.returncode})")
    return r.stdout


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, TypeError, IndexError):
        return False


def cluster_state():
    try:
        with open(CLUSTER_JSON) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def broker_pids():
    st = cluster_state() or {}
    return {n: p for n, p in (st.get("pids") or {}).items() if p}


def brokers_cpu_seconds(pids):
    """Summed CPU seconds of the broker pids; None if any of them is gone (a restart)."""
    total = 0.0
    for pid in pids.values():
        v = proc_cpu_seconds(pid)
        if v is None:
            return None
        total += v
    return total


def ensure_cluster(wait_s=180, extra_listener=None, heap=None):
    """Returns (bootstrap, kafka version). Starts the test bed only when no broker of it runs:
    a cluster someone else is using (or restarting a broker of) is kept as it is. A cluster this
    starts gets `--extra-listener extra_listener` when that is given (HAProxy's side of `run`)
    and `--heap heap` (metadata-scale's big clusters)."""
    deadline = time.time() + wait_s
    while True:
        st = cluster_state()
        pids = (st or {}).get("pids") or {}
        up = [n for n, p in pids.items() if p and alive(p)]
        if st and len(up) == 3:
            break
        if not up:
            extra = ["--extra-listener", str(extra_listener)] if extra_listener else []
            extra += ["--heap", heap] if heap else []
            log(f"starting the 3-broker test bed (tests/testbed/testbed up {' '.join(extra)})")
            out = testbed("up", *extra)
            continue
        if time.time() > deadline:
            die(f"only brokers {up} of the test bed run (someone restarting one?); try again later")
        time.sleep(1)
    env = dict(l.split("=", 1) for l in testbed("env").split() if "=" in l)
    version = st.get("version", "?")
    # Broker settings the cluster was started with (`testbed up --set K=V`) go into every report.
    overrides = st.get("overrides") or {}
    if overrides:
        version += " with " + ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    if st.get("heap"):
        version += f", broker heap {st['heap']}"
    return env["BOOTSTRAP"], version


def extra_listener():
    """{node: (broker-side address, advertised address)} of the test bed's EXTERNAL listener
    (`testbed up --extra-listener BASE`), or {} when it was started without one."""
    env = dict(l.split("=", 1) for l in testbed("env").split() if "=" in l)
    out = {}
    for k, v in env.items():
        if k.startswith("EXTERNAL_") and not k.startswith("EXTERNAL_ADVERTISED_"):
            n = int(k.rsplit("_", 1)[1])
            out[n] = (v, env.get(f"EXTERNAL_ADVERTISED_{n}"))
    return out


def kafka_classpath():
    return testbed("classpath").strip().splitlines()[-1]


def testkit_classpath():
    return testbed("testkit-classpath").strip().splitlines()[-1]


def port_free(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return False
    except OSError:
        return True


def build_fairlead():
    log("building fairlead (cargo build --release --bin fairlead)")
    r = subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "fairlead"], cwd=ROOT)
    if r.returncode != 0:
        die("cargo build --release failed (use --no-build to benchmark the binary already built)")


# ---------------------------------------------------------------------------------------------
# fairlead


# fairlead variants a benchmark can run as sides of its own (`run --sides`, `latency --sides`):
# the runtime question of issue 20. `worker_threads` (src/config.rs): 1 is the current-thread
# runtime (the default), N >= 2 a multi-thread runtime of N workers, 0 one of a worker per CPU,
# whose count tokio also takes from TOKIO_WORKER_THREADS: the only way to a multi-thread runtime
# of one worker. A suffix `@LABEL` runs the binary target/release/fairlead-LABEL instead of
# target/release/fairlead: two builds in one run, alternating (copy the old binary there first).
FAIRLEAD_VARIANT = re.compile(r"^fairlead(?:-(ct|mt(\d+)))?(?:@([\w.-]+))?$")


def fairlead_variant(side):
    """(extra args, extra environment) of a fairlead side (`fairlead`, `fairlead-ct`,
    `fairlead-mtN`, each with an optional `@LABEL`), or None when `side` is not one. The
    binary of a labelled side travels in the environment (`FAIRLEAD_BENCH_BIN`, read by
    `Fairlead.start`), so every script that runs sides runs it."""
    m = FAIRLEAD_VARIANT.match(side)
    if not m:
        return None
    env = {"FAIRLEAD_BENCH_BIN": f"{FAIRLEAD_BIN}-{m.group(3)}"} if m.group(3) else {}
    if m.group(1) is None:
        return [], env
    if m.group(1) == "ct":
        return ["--worker-threads", "1"], env
    n = int(m.group(2))
    if n < 1:
        raise ValueError(f"{side}: a multi-thread runtime needs at least one worker")
    if n == 1:
        return ["--worker-threads", "0"], {"TOKIO_WORKER_THREADS": "1", **env}
    return ["--worker-threads", str(n)], env


def fairlead_binary(side):
    """The binary a fairlead side runs: target/release/fairlead, or fairlead-NAME beside it for
    `fairlead@NAME` (FAIRLEAD_BENCH_BIN, if set, replaces the plain one)."""
    m = FAIRLEAD_VARIANT.match(side)
    if m and m.group(3):
        return os.path.join(FAIRLEAD_BUILD_DIR, f"fairlead-{m.group(3)}")
    return os.environ.get("FAIRLEAD_BENCH_BIN") or FAIRLEAD_BIN


def is_fairlead(side):
    return FAIRLEAD_VARIANT.match(side) is not None


class CpuLimit:
    """A CPU quota for a child process (the pod CPU limit a sidecar runs under): a cgroup of its
    own with `cpu.max` (cgroup v2) or `cpu.cfs_quota_us` (v1) set to `cpus` CPUs per 100 ms
    period. `wrap(cmd)` puts the command in it before it execs, so every thread it starts is in
    it. Needs write access to the cgroup file system (root here)."""

    PERIOD_US = 100000

    def __init__(self, cpus):
        self.cpus = cpus
        name = f"fairlead-bench-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            self.version, self.dir = 2, os.path.join("/sys/fs/cgroup", name)
        else:
            self.version, self.dir = 1, os.path.join("/sys/fs/cgroup/cpu", name)
        quota = int(cpus * self.PERIOD_US)
        try:
            os.makedirs(self.dir)
            if self.version == 2:
                with open(os.path.join(self.dir, "cpu.max"), "w") as fh:
                    fh.write(f"{quota} {self.PERIOD_US}")
            else:
                with open(os.path.join(self.dir, "cpu.cfs_period_us"), "w") as fh:
                    fh.write(str(self.PERIOD_US))
                with open(os.path.join(self.dir, "cpu.cfs_quota_us"), "w") as fh:
                    fh.write(str(quota))
        except OSError as e:
            die(f"cannot make a cgroup with a CPU quota at {self.dir}: {e}")
        atexit.register(self.remove)

    def describe(self):
        return f"cgroup v{self.version} CPU quota {self.cpus:g} CPU ({int(self.cpus * self.PERIOD_US)} us per {self.PERIOD_US} us)"

    def wrap(self, cmd):
        procs = os.path.join(self.dir, "cgroup.procs")
        return ["sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh", procs, *cmd]

    def throttled(self):
        """(periods throttled, seconds throttled) so far."""
        try:
            with open(os.path.join(self.dir, "cpu.stat")) as fh:
                st = dict(line.split() for line in fh if line.strip())
        except OSError:
            return None, None
        if self.version == 2:
            return int(st.get("nr_throttled", 0)), int(st.get("throttled_usec", 0)) / 1e6
        return int(st.get("nr_throttled", 0)), int(st.get("throttled_time", 0)) / 1e9

    def remove(self):
        try:
            os.rmdir(self.dir)
        except OSError:
            pass


class Fairlead:
    """fairlead as a child process on the benchmark ports, logging to `log_path`. `env` adds to
    its environment; `cpu_limit` (a CpuLimit) runs it under a CPU quota."""

    def __init__(self, bootstrap, log_path, extra_args=(), env=None, cpu_limit=None, binary=None):
        self.bootstrap, self.log_path, self.extra = bootstrap, log_path, list(extra_args)
        self.env, self.cpu_limit = dict(env or {}), cpu_limit
        self.binary = binary or fairlead_binary("fairlead")
        self.p = None

    def start(self, timeout=60):
        for port in (LISTEN_PORT, int(ADMIN.rsplit(":", 1)[1])):
            if not port_free(port):
                die(f"port {port} is in use: is another benchmark (or a leftover fairlead) running?")
        binary = self.env.get("FAIRLEAD_BENCH_BIN") or self.binary
        if not os.path.exists(binary):
            die(f"{binary} does not exist: build it (cargo build --release)")
        self.logf = open(self.log_path, "ab")
        cmd = [binary, "--bootstrap", self.bootstrap, "--listen", LISTEN, "--admin", ADMIN, *self.extra]
        # FAIRLEAD_BENCH_WRAP="valgrind --tool=callgrind" (or "perf record -g --") runs fairlead under a
        # profiler; valgrind keeps the pid, so the CPU and RSS figures are then the profiler's.
        cmd = shlex.split(os.environ.get("FAIRLEAD_BENCH_WRAP", "")) + cmd
        if self.cpu_limit:
            cmd = self.cpu_limit.wrap(cmd)
        self.p = track(subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env={**os.environ, "NO_COLOR": "1", **self.env}, start_new_session=True))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.p.poll() is not None:
                die(f"fairlead exited ({self.p.returncode}) at start-up; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://{ADMIN}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        die(f"fairlead not ready within {timeout}s; see {self.log_path}")

    @property
    def pid(self):
        return self.p.pid

    def cpu(self):
        return proc_cpu_seconds(self.p.pid)

    def rss_kib(self):
        return proc_status_kib(self.p.pid, "VmRSS")

    def hwm_kib(self):
        return proc_status_kib(self.p.pid, "VmHWM")

    def metrics(self):
        try:
            with urllib.request.urlopen(f"http://{ADMIN}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return ""

    def stop(self):
        """SIGTERM (graceful drain), SIGKILL if it hangs. Returns the exit code."""
        if self.p is None or self.p.poll() is not None:
            return None if self.p is None else self.p.returncode
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log("fairlead did not stop within 30s of SIGTERM: killing it")
            self.p.kill()
            self.p.wait()
        self.logf.close()
        return self.p.returncode


def metric_sum(text, name, **labels):
    """Sum of a Prometheus series' samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        n, _, lbl = series.partition("{")
        if n != name:
            continue
        if all(f'{k}="{v}"' in lbl for k, v in labels.items()):
            try:
                total += float(value)
            except ValueError:
                pass
    return total


LOG_LEVEL = re.compile(rb"\s(WARN|ERROR)\s")


def log_problems(path, start_offset=0):
    """WARN and ERROR lines fairlead wrote after `start_offset` of its log."""
    out = []
    try:
        with open(path, "rb") as fh:
            fh.seek(start_offset)
            for line in fh:
                if LOG_LEVEL.search(line[:80]):
                    out.append(line.decode(errors="replace").rstrip())
    except OSError:
        pass
    return out


# ---------------------------------------------------------------------------------------------
# the Java testkit's admin shell


class AdminShell:
    """One long-lived Admin client: `{"op": ...}` JSON lines in, one JSON answer per line out."""

    def __init__(self, bootstrap, log_path):
        cmd = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", testkit_classpath(),
               "dev.fairlead.testkit.Main", "admin-shell", "--bootstrap", bootstrap]
        self.err = open(log_path, "ab")
        self.p = track(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                        text=True))
        self.lock = threading.Lock()
        self.call({"op": "describe-cluster"})

    def call(self, op, check=True):
        with self.lock:
            self.p.stdin.write(json.dumps(op) + "\n")
            self.p.stdin.flush()
            line = self.p.stdout.readline()
        if not line:
            die(f"the admin shell ended (op {op}); see its log")
        v = json.loads(line)
        if check and not v.get("ok"):
            die(f"admin op {op} failed: {v}")
        return v

    def cpu(self):
        return proc_cpu_seconds(self.p.pid)

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()
            self.p.wait()


class Mover(threading.Thread):
    """Moves the leadership of every partition of `topic` every `every` seconds (move-all)."""

    def __init__(self, admin, topic, every):
        super().__init__(daemon=True)
        self.admin, self.topic, self.every = admin, topic, every
        self.calls, self.failed, self.moves, self.elapsed_ms = 0, 0, 0, []
        self._halt = threading.Event()

    def run(self):
        next_at = time.time() + self.every
        while not self._halt.wait(max(0.0, next_at - time.time())):
            # start to start: a move-all slower than `every` is followed by the next at once
            next_at = time.time() + self.every
            v = self.admin.call({"op": "move-all", "topic": self.topic}, check=False)
            self.calls += 1
            if v.get("ok"):
                self.moves += len(v.get("moves", []))
                self.elapsed_ms.append(v.get("elapsed_ms"))
            else:
                self.failed += 1
                log(f"move-all failed: {v.get('error')}")

    def stop(self):
        self._halt.set()
        self.join()
        return {"move_all_calls": self.calls, "move_all_failed": self.failed, "partition_moves": self.moves,
                "move_all_ms": self.elapsed_ms}


# ---------------------------------------------------------------------------------------------
# the machine


def machine():
    def first(cmd, pat=None):
        try:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        except OSError:
            return "?"
        if pat:
            m = re.search(pat, out, re.M)
            return m.group(1).strip() if m else "?"
        return out.strip().splitlines()[0] if out.strip() else "?"

    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    commit = first(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           stdout=subprocess.PIPE, text=True).stdout.strip() != ""
    return {
        "cpu_model": first(["lscpu"], r"^Model name:\s*(.+)$"),
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": os.uname().release,
        "jdk": first(["java", "-version"]),
        "python": sys.version.split()[0],
        "fairlead_commit": commit + ("+uncommitted changes" if dirty else ""),
        "fairlead_binary_built": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(FAIRLEAD_BIN)))
        if os.path.exists(FAIRLEAD_BIN) else None,
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def timestamp():
    return time.strftime("%Y%m%d-%H%M%S")


def have(tool):
    return shutil.which(tool) is not None
