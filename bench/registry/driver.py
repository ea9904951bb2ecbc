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
# (manifest load), the same for every server. With LOADGEN set (a berth-loadgen binary), every
# upload is also made by its `upload` mode, which sends the file with sendfile(2) instead of
# copying it through user space as curl does; both clients' numbers are printed, side by side,
# with each client's CPU seconds per upload.
# Every upload sends a blob its server has not seen (`fresh_blob`): a repeated upload of one blob
# is a duplicate, which a registry may answer by dropping its copy instead of storing it.
import hashlib
import json
import os
import re
import resource
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
LOADGEN = os.environ.get("LOADGEN", "")
CLIENTS = ["curl", "sendfile"] if LOADGEN else ["curl"]
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


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def upload_sendfile(base, path, digest):
    """The same POST + PUT by berth-loadgen, the body sent with sendfile(2).
    Returns (seconds, the client's CPU seconds)."""
    os.sync()
    out = subprocess.run(
        [LOADGEN, "upload", "--addr", base.split("://", 1)[1].rstrip("/"), "--repo", REPO,
         "--file", path, "--digest", digest],
        check=True, capture_output=True, text=True,
    ).stdout
    got = dict(kv.split("=", 1) for kv in out.split())
    if got["status"] != "201":
        sys.exit(f"PUT upload (sendfile) at {base}: {got['status']}")
    return float(got["seconds"]), float(got["client_cpu_s"])


# The digest of the blob each server holds from its last upload (the downloads fetch it).
UPLOADED = {}


def fresh_blob(path):
    """Gives the blob file new content (new random first 32 bytes; the rest stays in the page
    cache) and returns its digest."""
    with open(path, "r+b") as f:
        f.write(os.urandom(32))
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def drop_stored(digest):
    """Removes the content files of a blob from every server's directory under WORK, to keep
    the disk bounded (RUNS x clients x servers uploads of BLOB_MIB each); no server is asked for
    that blob again. berth keeps `blobs/sha256/xx/<hex>`, distribution `.../<hex>/data`."""
    hexd = digest.split(":", 1)[1]
    for root, _dirs, files in os.walk(WORK):
        for f in files:
            full = os.path.join(root, f)
            if hexd in full and not full.startswith(os.path.join(WORK, "files")):
                os.remove(full)


def upload_by(client, base, path):
    """One upload of a fresh blob by `client` ("curl" or "sendfile"); the blob the server got
    from its previous upload is dropped afterwards (untimed). Returns (seconds, client CPU
    seconds: for curl, both curl processes' user + system time)."""
    digest = fresh_blob(path)
    if client == "sendfile":
        result = upload_sendfile(base, path, digest)
    else:
        before = children_cpu()
        secs = upload(base, path, digest)
        result = (secs, children_cpu() - before)
    if base in UPLOADED:
        drop_stored(UPLOADED[base])
    UPLOADED[base] = digest
    return result


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

    # Uploads, alternating servers (and clients); the best of RUNS (the machine is shared and
    # noisy).
    up = {c: {"berth": [], "distribution": []} for c in CLIENTS}
    client_cpu = {c: [] for c in CLIENTS}
    for _ in range(RUNS):
        for client in CLIENTS:
            for name, base in (("berth", BERTH), ("distribution", DIST)):
                secs, cpu = upload_by(client, base, BLOB)
                up[client][name].append(mb / secs)
                client_cpu[client].append(cpu)
    r["upload_MBps"] = {k: max(v) for k, v in up["curl"].items()}
    r["upload_runs"] = up["curl"]
    r["client_cpu_s"] = {c: sorted(v)[len(v) // 2] for c, v in client_cpu.items()}
    if LOADGEN:
        r["upload_sendfile_MBps"] = {k: max(v) for k, v in up["sendfile"].items()}
        r["upload_sendfile_runs"] = up["sendfile"]
    print(f"upload MB/s: {json.dumps(up)}; client CPU s per upload (median): "
          f"{json.dumps(r['client_cpu_s'])}", file=sys.stderr)

    # Downloads of as many bytes: the blob berth and distribution got last, nginx's file.
    urls = {
        "berth": f"{BERTH}/v2/{REPO}/blobs/{UPLOADED.get(BERTH, BLOB_DIGEST)}",
        "nginx": f"{NGINX}/blob",
        "distribution": f"{DIST}/v2/{REPO}/blobs/{UPLOADED.get(DIST, BLOB_DIGEST)}",
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
    goals.append(("upload >= 4x distribution (curl)", up["berth"] >= 4 * up["distribution"]))
    sf = r.get("upload_sendfile_MBps")
    if sf:
        row(f"blob upload {BLOB_MIB} MiB, sendfile client", fmt(sf["berth"]),
            fmt(sf["distribution"]), "distribution", ratio(sf["berth"], sf["distribution"]),
            ">= 4x")
        goals.append(("upload >= 4x distribution (sendfile client)",
                      sf["berth"] >= 4 * sf["distribution"]))
    for client, cpu in r.get("client_cpu_s", {}).items():
        row(f"  ({client} client CPU s per upload)", fmt(cpu, 2), "", "median", "", "info")
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
          f"best of {RUNS}{'; uploads also by berth-loadgen (sendfile)' if sf else ''}; "
          f"berth --auth open")
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
    def runs(d):
        return json.dumps({k: [round(x, 1) for x in v] for k, v in d.items()})

    print(f"runs (MB/s): upload {runs(r['upload_runs'])}")
    if sf:
        print(f"             upload, sendfile client {runs(r['upload_sendfile_runs'])}")
    print(f"             download {runs(r['download_runs'])}")


if __name__ == "__main__":
    {"phase1": phase1, "rss": rss, "report": report}[sys.argv[1]]()
