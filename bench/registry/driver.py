#!/usr/bin/env python3
# bench/registry/driver.py: owns the measurements of the registry benchmark (bench/registry/run.sh
# starts berth, distribution and nginx, and cleans up). Phases, each a command-line argument:
#   phase1  blob upload (POST + PUT ?digest=, monolithic, streamed by curl from a file) berth vs
#           distribution; blob download (curl to /dev/null) berth vs nginx sendfile (and
#           distribution, for information); manifest GET by tag with wrk at CONNECTIONS for
#           DURATION, berth vs distribution;
#   rss     peak RSS of freshly started servers while a BIG_MIB blob is uploaded, minus idle RSS;
#   report  prints the Markdown table with ratios and the goals.
# Results go to $WORK/results.json between phases. Clients are curl (uploads, downloads) and wrk
# (manifest load), the same for every server.
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

WORK = os.environ["WORK"]
BERTH = os.environ["BERTH_URL"]
DIST = os.environ["DIST_URL"]
NGINX = os.environ["NGINX_URL"]
BLOB = os.path.join(WORK, "files", "blob")
BLOB_DIGEST = os.environ["BLOB_DIGEST"]
BLOB_MIB = int(os.environ["BLOB_MIB"])
BIG = os.path.join(WORK, "big")
BIG_DIGEST = os.environ.get("BIG_DIGEST", "")
BIG_MIB = int(os.environ["BIG_MIB"])
RUNS = int(os.environ.get("RUNS", "3"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "64"))
DURATION = os.environ.get("DURATION", "10s")
WRK_THREADS = int(os.environ.get("WRK_THREADS", "1"))
RESULTS = os.path.join(WORK, "results.json")
REPO = "bench/app"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def load():
    try:
        with open(RESULTS) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save(r):
    with open(RESULTS, "w") as f:
        json.dump(r, f, indent=1)


def curl(*args):
    out = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", *args], check=True, capture_output=True, text=True
    )
    return out.stdout


def create_repository(name):
    """berth has no create-on-push: CreateRepository through its ECR API (open auth: unsigned)."""
    req = urllib.request.Request(
        BERTH + "/",
        data=json.dumps({"repositoryName": name}).encode(),
        headers={
            "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.CreateRepository",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    try:
        urllib.request.urlopen(req).read()
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        if "RepositoryAlreadyExists" not in body:
            sys.exit(f"CreateRepository {name}: {e.code} {body}")


def start_upload(base):
    """POST /v2/<repo>/blobs/uploads/ -> (seconds, absolute upload URL)."""
    out = curl(
        "-X", "POST", "-D", "-", "-o", "/dev/null", "-w", "\\nTIME %{time_total} %{http_code}",
        f"{base}/v2/{REPO}/blobs/uploads/",
    )
    loc = None
    for line in out.splitlines():
        if line.lower().startswith("location:"):
            loc = line.split(":", 1)[1].strip()
    t, code = out.rsplit("TIME ", 1)[1].split()
    if code != "202" or not loc:
        sys.exit(f"POST upload at {base}: {code}\n{out}")
    if loc.startswith("/"):
        loc = base + loc
    return float(t), loc


def upload(base, path, digest):
    """POST + PUT ?digest= with the file as the body (curl streams it). Returns seconds.
    Dirty pages of earlier uploads are flushed first (untimed), so no upload starts while
    another server's 512 MiB are being written back."""
    os.sync()
    t0, loc = start_upload(base)
    sep = "&" if "?" in loc else "?"
    out = curl(
        "-X", "PUT", "-T", path, "-H", "Expect:", "-H", "Content-Type: application/octet-stream",
        "-o", "/dev/null", "-w", "%{time_total} %{http_code}", f"{loc}{sep}digest={digest}",
    )
    t1, code = out.split()
    if code != "201":
        sys.exit(f"PUT upload at {base}: {code}")
    return t0 + float(t1)


def download(url):
    """GET to /dev/null. Returns bytes/s."""
    out = curl("-o", "/dev/null", "-w", "%{speed_download} %{http_code} %{size_download}", url)
    speed, code, size = out.split()
    if code != "200" or int(size) != BLOB_MIB * 1024 * 1024:
        sys.exit(f"GET {url}: {code}, {size} bytes")
    return float(speed)


def put_blob(base, data, digest):
    # Monolithic POST ?digest= with the bytes from stdin.
    p = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-X", "POST", "--data-binary", "@-",
         "-H", "Content-Type: application/octet-stream", "-o", "/dev/null", "-w", "%{http_code}",
         f"{base}/v2/{REPO}/blobs/uploads/?digest={digest}"],
        input=data, capture_output=True, check=True,
    )
    if p.stdout.decode() not in ("201", "202"):
        sys.exit(f"blob push at {base}: {p.stdout.decode()} {p.stderr.decode()}")
    if p.stdout.decode() == "202":
        # Servers may ignore ?digest= on POST and open a session instead: finish it with PUT.
        _, loc = start_upload(base)
        sep = "&" if "?" in loc else "?"
        subprocess.run(
            ["curl", "-sS", "--noproxy", "*", "-X", "PUT", "--data-binary", "@-",
             "-H", "Content-Type: application/octet-stream", "-o", "/dev/null",
             f"{loc}{sep}digest={digest}"], input=data, check=True,
        )


def sha256(data):
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_manifest(base):
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    layer = b"layer bytes of the manifest benchmark\n" * 100
    put_blob(base, config, sha256(config))
    put_blob(base, layer, sha256(layer))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    p = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-X", "PUT", "--data-binary", "@-",
         "-H", f"Content-Type: {MANIFEST_TYPE}", "-o", "/dev/stderr", "-w", "%{http_code}",
         f"{base}/v2/{REPO}/manifests/v1"],
        input=manifest, capture_output=True, check=True,
    )
    if p.stdout.decode() != "201":
        sys.exit(f"manifest push at {base}: {p.stdout.decode()} {p.stderr.decode()}")
    got = curl("-H", f"Accept: {MANIFEST_TYPE}", f"{base}/v2/{REPO}/manifests/v1")
    if got.encode() != manifest:
        sys.exit(f"manifest GET at {base} does not give back what was pushed")


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def wrk(url, duration, latency=True):
    args = ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{duration}",
            "-H", f"Accept: {MANIFEST_TYPE}", url]
    if latency:
        args.insert(1, "--latency")
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    res = {"rps": rps, "non_2xx": int(bad.group(1)) if bad else 0,
           "socket_errors": errors.group(0) if errors else ""}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        if m:
            res[f"p{pct}_ms"] = float(m.group(1)) * UNITS[m.group(2)]
    return res


def phase1():
    r = load()
    create_repository(REPO)
    mb = BLOB_MIB * 1024 * 1024 / 1e6

    # Uploads, alternating servers; the best of RUNS (the machine is shared and noisy).
    up = {"berth": [], "distribution": []}
    for _ in range(RUNS):
        for name, base in (("berth", BERTH), ("distribution", DIST)):
            up[name].append(mb / upload(base, BLOB, BLOB_DIGEST))
    r["upload_MBps"] = {k: max(v) for k, v in up.items()}
    r["upload_runs"] = up
    print(f"upload MB/s: {json.dumps(up)}", file=sys.stderr)

    # Downloads of the same bytes: berth's and distribution's blob, nginx's file.
    urls = {
        "berth": f"{BERTH}/v2/{REPO}/blobs/{BLOB_DIGEST}",
        "nginx": f"{NGINX}/blob",
        "distribution": f"{DIST}/v2/{REPO}/blobs/{BLOB_DIGEST}",
    }
    down = {k: [] for k in urls}
    for _ in range(RUNS):
        for name, url in urls.items():
            down[name].append(download(url) / 1e6)
    r["download_MBps"] = {k: max(v) for k, v in down.items()}
    r["download_runs"] = down
    print(f"download MB/s: {json.dumps(down)}", file=sys.stderr)

    # Manifest GET by tag.
    man = {}
    for name, base in (("berth", BERTH), ("distribution", DIST)):
        push_manifest(base)
        url = f"{base}/v2/{REPO}/manifests/v1"
        wrk(url, "1s", latency=False)  # warm-up
        man[name] = wrk(url, DURATION)
        print(f"manifest GET {name}: {json.dumps(man[name])}", file=sys.stderr)
    r["manifest"] = man
    save(r)


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss():
    r = load()
    create_repository(REPO)
    out = {}
    for name, base, pid in (
        ("berth", BERTH, int(os.environ["BERTH_PID"])),
        ("distribution", DIST, int(os.environ["DIST_PID"])),
    ):
        time.sleep(1.0)
        idle = status_kib(pid, "VmRSS")
        peak = [idle]
        done = threading.Event()

        def poll():
            while not done.is_set():
                peak[0] = max(peak[0], status_kib(pid, "VmRSS"))
                time.sleep(0.01)

        th = threading.Thread(target=poll)
        th.start()
        secs = upload(base, BIG, BIG_DIGEST)
        done.set()
        th.join()
        hwm = status_kib(pid, "VmHWM")
        out[name] = {
            "idle_MiB": idle / 1024,
            "peak_MiB": max(hwm, peak[0]) / 1024,
            "above_idle_MiB": (max(hwm, peak[0]) - idle) / 1024,
            "upload_MBps": BIG_MIB * 1024 * 1024 / 1e6 / secs,
        }
        print(f"rss {name}: {json.dumps(out[name])}", file=sys.stderr)
    r["rss"] = out
    save(r)


def fmt(v, digits=1):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def report():
    r = load()
    up, down, man, mem = r["upload_MBps"], r["download_MBps"], r["manifest"], r.get("rss")
    rows = []
    goals = []

    def row(metric, berth, anchor, anchor_name, ratio_s, goal):
        rows.append((metric, berth, anchor, anchor_name, ratio_s, goal))

    row(f"blob upload {BLOB_MIB} MiB, MB/s", fmt(up["berth"]), fmt(up["distribution"]),
        "distribution", ratio(up["berth"], up["distribution"]), ">= 4x")
    goals.append(("upload >= 4x distribution", up["berth"] >= 4 * up["distribution"]))
    row(f"blob download {BLOB_MIB} MiB, MB/s", fmt(down["berth"]), fmt(down["nginx"]),
        "nginx sendfile", ratio(down["berth"], down["nginx"]), ">= 1.0x")
    goals.append(("download >= 1.0x nginx sendfile", down["berth"] >= down["nginx"]))
    row(f"  (download, distribution)", fmt(down["berth"]), fmt(down["distribution"]),
        "distribution", ratio(down["berth"], down["distribution"]), "info")
    b, d = man["berth"], man["distribution"]
    row(f"manifest GET req/s ({CONNECTIONS} conns)", fmt(b["rps"], 0), fmt(d["rps"], 0),
        "distribution", ratio(b["rps"], d["rps"]), ">= 30x")
    goals.append(("manifest GET req/s >= 30x distribution", b["rps"] >= 30 * d["rps"]))
    row("manifest GET p99 ms", fmt(b.get("p99_ms"), 3), fmt(d.get("p99_ms"), 3),
        "distribution", ratio(b.get("p99_ms"), d.get("p99_ms")), "< 5 ms")
    goals.append(("manifest GET p99 < 5 ms", (b.get("p99_ms") or 1e9) < 5.0))
    if mem:
        mb, md = mem["berth"], mem["distribution"]
        row(f"peak RSS above idle, {BIG_MIB} MiB upload, MiB", fmt(mb["above_idle_MiB"]),
            fmt(md["above_idle_MiB"]), "distribution",
            ratio(mb["above_idle_MiB"], md["above_idle_MiB"]), "< 64 MiB")
        goals.append(("peak RSS above idle < 64 MiB", mb["above_idle_MiB"] < 64))
        row("  (idle RSS MiB)", fmt(mb["idle_MiB"]), fmt(md["idle_MiB"]), "distribution",
            ratio(mb["idle_MiB"], md["idle_MiB"]), "info")
        row(f"  ({BIG_MIB} MiB upload MB/s)", fmt(mb["upload_MBps"]), fmt(md["upload_MBps"]),
            "distribution", ratio(mb["upload_MBps"], md["upload_MBps"]), "info")

    heads = ("metric", "berth", "anchor", "anchor is", "berth/anchor", "goal")
    widths = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(heads)]

    def line(cells):
        return "| " + " | ".join(
            c.ljust(w) if i in (0, 3, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ) + " |"

    print(f"load: manifest GET by tag with wrk, {CONNECTIONS} keep-alive connections, {DURATION} "
          f"after a 1s warm-up, {WRK_THREADS} wrk thread(s); uploads and downloads with curl, "
          f"best of {RUNS}; berth --auth open")
    print()
    print(line(heads))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for x in rows:
        print(line(x))
    print()
    print("goals:")
    for name, ok in goals:
        print(f"  {name:<45} {'met' if ok else 'MISSED'}")
    bad = [f"{k}: {v['non_2xx']} non-2xx {v['socket_errors']}".strip()
           for k, v in man.items() if v["non_2xx"] or v["socket_errors"]]
    if bad:
        print("manifest load errors: " + "; ".join(bad))
    print(f"runs (MB/s): upload {json.dumps(r['upload_runs'])}")
    print(f"             download {json.dumps(r['download_runs'])}")


if __name__ == "__main__":
    {"phase1": phase1, "rss": rss, "report": report}[sys.argv[1]]()
