#!/usr/bin/env python3
"""Smoke check of driver.py against a running cluster (or a proxy in front of one).

  <repo>/.cache/venv/bin/python tests/testbed/python/smoke.py --bootstrap 127.0.0.1:19092 \\
      [--clients confluent,kafka-python] [--rate 200] [--seconds 15] [--group] [--keep]

For each client library: creates a fresh topic pydriver-dev-smoke-<client>-<time> (6 partitions,
replication factor 3 or the broker count if smaller), starts `driver.py consume` and
`driver.py produce` together, stops the producer by closing its stdin after --seconds, then the
consumer the same way (drain), and checks: producer exit 0 and acked > 0, consumer exit 0,
drained, no duplicates, no order violation, and every acked record present in the consumed file
at the same partition and offset. Prints one JSON line per client; exit 0 when all pass.
The topics are deleted afterwards unless --keep.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "driver.py")


def create_topic(bootstrap, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    brokers = len(admin.list_topics(timeout=10).brokers)
    rf = max(1, min(3, brokers))
    admin.create_topics([NewTopic(topic, partitions, rf)])[topic].result(30)
    # Wait until every partition has a leader.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t = admin.list_topics(topic, timeout=10).topics.get(topic)
        if t and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.3)
    raise RuntimeError(f"topic {topic} has no leaders after 30 s")


def delete_topic(bootstrap, topic):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        admin.delete_topics([topic])[topic].result(30)
    except Exception as e:
        print(f"smoke: cannot delete {topic}: {e}", file=sys.stderr)


def run_one(args, client, workdir):
    topic = f"pydriver-dev-smoke-{client}-{int(time.time())}"
    run_id = f"smoke-{client}-{os.getpid()}"
    create_topic(args.bootstrap, topic, 6)
    f = {n: os.path.join(workdir, f"{client}-{n}") for n in ("acked", "psum", "consumed", "csum")}
    common = [sys.executable, DRIVER]
    ccmd = common + ["consume", "--client", client, "--bootstrap", args.bootstrap, "--topic", topic,
                     "--consumed", f["consumed"], "--summary", f["csum"]]
    if args.group:
        ccmd += ["--group", f"pydriver-dev-smoke-{client}-{os.getpid()}"]
    pcmd = common + ["produce", "--client", client, "--bootstrap", args.bootstrap, "--topic", topic,
                     "--run-id", run_id, "--acked", f["acked"], "--summary", f["psum"],
                     "--rate", str(args.rate)]
    cons = subprocess.Popen(ccmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    prod = subprocess.Popen(pcmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    time.sleep(args.seconds)
    prod.stdin.close()
    pout = prod.stdout.read()
    prod.wait(timeout=120)
    cons.stdin.close()
    cout = cons.stdout.read()
    cons.wait(timeout=180)
    problems = []
    if prod.returncode != 0:
        problems.append(f"produce exited {prod.returncode}")
    if cons.returncode != 0:
        problems.append(f"consume exited {cons.returncode}")
    psum = json.loads(pout.decode().strip().splitlines()[-1]) if pout.strip() else {}
    csum = json.loads(cout.decode().strip().splitlines()[-1]) if cout.strip() else {}
    if psum != (json.load(open(f["psum"])) if os.path.exists(f["psum"]) else None):
        problems.append("produce summary file differs from its stdout line")
    if csum != (json.load(open(f["csum"])) if os.path.exists(f["csum"]) else None):
        problems.append("consume summary file differs from its stdout line")
    if psum.get("acked", 0) <= 0:
        problems.append("nothing acked")
    if psum.get("sent") != psum.get("acked", 0) + psum.get("failed", 0):
        problems.append("sent != acked + failed")
    for k in ("duplicates", "order_violations"):
        if csum.get(k) != 0:
            problems.append(f"{k} = {csum.get(k)}")
    if csum.get("drained") is not True:
        problems.append("consumer did not drain")
    consumed = {}
    with open(f["consumed"]) as fh:
        for line in fh:
            t, p, o, key = line.split()
            consumed[(int(p), int(o))] = key
    missing = 0
    acked_lines = 0
    with open(f["acked"]) as fh:
        for line in fh:
            p, seq, o = (int(x) for x in line.split())
            acked_lines += 1
            if consumed.get((p, o)) != f"{run_id}:{seq}":
                missing += 1
    if acked_lines != psum.get("acked"):
        problems.append(f"acked file has {acked_lines} lines, summary says {psum.get('acked')}")
    if missing:
        problems.append(f"{missing} acked records not consumed at their partition/offset")
    if not args.keep:
        delete_topic(args.bootstrap, topic)
    return {"client": client, "topic": topic, "ok": not problems, "problems": problems,
            "produce": psum, "consume": csum}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--clients", default="confluent,kafka-python")
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--group", action="store_true", help="consume with a consumer group")
    ap.add_argument("--keep", action="store_true", help="keep the topics and the output files")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="pydriver-smoke-")
    ok = True
    for client in [c.strip() for c in args.clients.split(",") if c.strip()]:
        res = run_one(args, client, workdir)
        ok &= res["ok"]
        print(json.dumps(res, separators=(",", ":")), flush=True)
    if args.keep:
        print(f"smoke: files in {workdir}", file=sys.stderr)
    else:
        for n in os.listdir(workdir):
            os.unlink(os.path.join(workdir, n))
        os.rmdir(workdir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
