#!/usr/bin/env python3
# bench/registry/ab.py: owns the rounds of bench/registry/ab.sh (which starts the servers and
# cleans up): per round, a 512 MiB upload to A, B and distribution, then a manifest GET load on
# each, each round starting one server further on (A B dist, B dist A, dist A B, ...); the load
# average, CPU seconds and minor page faults per upload are printed with every round, the
# medians at the end.
# Uses driver.py's clients (curl for uploads, wrk for manifests), so numbers are comparable;
# with LOADGEN set, every upload is made a second time by berth-loadgen's sendfile client
# (labelled "sf"). Each upload's client CPU seconds are printed too.
import json
import os
import statistics
import sys

os.environ.setdefault("BERTH_URL", os.environ["A_URL"])
os.environ.setdefault("NGINX_URL", "")
os.environ.setdefault("BIG_MIB", "0")
os.environ.setdefault("DURATION", "5s")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import driver  # noqa: E402

SERVERS = {"A": os.environ["A_URL"], "B": os.environ["B_URL"], "dist": os.environ["DIST_URL"]}
PIDS = {"A": os.environ["A_PID"], "B": os.environ["B_PID"], "dist": os.environ["DIST_PID"]}
ROUNDS = int(os.environ.get("ROUNDS", "5"))
MB = driver.BLOB_MIB * 1024 * 1024 / 1e6


def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def stat_fields(name):
    """A server's /proc/PID/stat from field 3 (state) on: field N is at index N - 3."""
    with open(f"/proc/{PIDS[name]}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(name):
    """User + system CPU time of a server so far."""
    fields = stat_fields(name)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def minor_faults(name):
    """Minor page faults of a server so far: memory the allocator handed back and took again
    is faulted in anew, so this counts what trimming costs."""
    return int(stat_fields(name)[7])


def main():
    for base in (SERVERS["A"], SERVERS["B"]):
        driver.BERTH = base
        driver.create_repository(driver.REPO)
    if not os.environ.get("SKIP_MANIFEST"):
        for base in SERVERS.values():
            driver.push_manifest(base)
    up = {k: [] for k in SERVERS}
    cpu = {k: [] for k in SERVERS}
    faults = {k: [] for k in SERVERS}
    client_cpu = {k: [] for k in SERVERS}
    up_sf = {k: [] for k in SERVERS}
    cpu_sf = {k: [] for k in SERVERS}
    client_cpu_sf = {k: [] for k in SERVERS}
    rps = {k: [] for k in SERVERS}
    p99 = {k: [] for k in SERVERS}
    for i in range(ROUNDS):
        line = [f"round {i + 1} load {load()}:"]
        # Each round starts with the next server, so none is always the one after another's
        # upload or load.
        names = list(SERVERS)
        order = names[i % len(names):] + names[:i % len(names)]
        if not os.environ.get("SKIP_UPLOAD"):
            for client in driver.CLIENTS:
                for name in order:
                    base = SERVERS[name]
                    before, faults_before = cpu_seconds(name), minor_faults(name)
                    secs, client_s = driver.upload_by(client, base, driver.BLOB)
                    if client == "curl":
                        up[name].append(MB / secs)
                        cpu[name].append(cpu_seconds(name) - before)
                        faults[name].append(minor_faults(name) - faults_before)
                        client_cpu[name].append(client_s)
                    else:
                        up_sf[name].append(MB / secs)
                        cpu_sf[name].append(cpu_seconds(name) - before)
                        client_cpu_sf[name].append(client_s)
            line.append("upload MB/s " + " ".join(f"{k}={v[-1]:.0f}" for k, v in up.items()))
            line.append("CPU s " + " ".join(f"{k}={v[-1]:.2f}" for k, v in cpu.items()))
            line.append("faults " + " ".join(f"{k}={v[-1]}" for k, v in faults.items()))
            line.append("curl CPU s " + " ".join(f"{k}={v[-1]:.2f}" for k, v in client_cpu.items()))
            if "sendfile" in driver.CLIENTS:
                line.append("sf MB/s " + " ".join(f"{k}={v[-1]:.0f}" for k, v in up_sf.items()))
                line.append("sf CPU s " + " ".join(f"{k}={v[-1]:.2f}" for k, v in cpu_sf.items()))
                line.append("sf client CPU s " + " ".join(
                    f"{k}={v[-1]:.2f}" for k, v in client_cpu_sf.items()))
        if not os.environ.get("SKIP_MANIFEST"):
            for name in order:
                base = SERVERS[name]
                url = f"{base}/v2/{driver.REPO}/manifests/v1"
                driver.wrk(url, "1s", latency=False)
                r = driver.wrk(url, driver.DURATION)
                if r["non_2xx"] or r["socket_errors"]:
                    print(f"  {name}: {r['non_2xx']} non-2xx {r['socket_errors']}", file=sys.stderr)
                rps[name].append(r["rps"])
                p99[name].append(r.get("p99_ms", float("nan")))
            line.append("manifest req/s " + " ".join(f"{k}={v[-1]:.0f}" for k, v in rps.items()))
            line.append("p99 ms " + " ".join(f"{k}={v[-1]:.2f}" for k, v in p99.items()))
        print(" | ".join(line), flush=True)
    med = {}
    for label, series in (("upload_MBps", up), ("upload_cpu_s", cpu), ("upload_faults", faults),
                          ("curl_cpu_s", client_cpu), ("sf_upload_MBps", up_sf),
                          ("sf_upload_cpu_s", cpu_sf), ("sf_client_cpu_s", client_cpu_sf),
                          ("manifest_rps", rps), ("manifest_p99_ms", p99)):
        if all(series.values()):
            med[label] = {k: round(statistics.median(v), 2) for k, v in series.items()}
    for label, m in med.items():
        ratios = ""
        if label in ("upload_MBps", "sf_upload_MBps", "manifest_rps"):
            ratios = f"  A/dist {m['A'] / m['dist']:.2f}x  B/dist {m['B'] / m['dist']:.2f}x"
        print(f"median {label}: {json.dumps(m)}{ratios}")


if __name__ == "__main__":
    main()
