#!/usr/bin/env python3
"""Patient pages benchmark (issue 7): the invitation page a patient opens.

Measures, against a release build on SQLite (or PostgreSQL), on a database seeded with
`seed-demo --patients N --study` plus one invited patient enrolled in two studies (four data
types each, two devices):
  - time to first byte of the invitation page, one request after another (median, p99), and
    its throughput with wrk (4 connections);
  - page weight: the HTML and everything it loads (stylesheet, icon, QR code image), in bytes
    and requests, before and after the patient answered; and whether any request leaves the
    server's own origin.
Target: under 50 KB, no third-party requests.

Usage: bench/portal.py [--patients 10000] [--backend sqlite|postgres] [--seconds 10]
"""
import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

sys.path.insert(0, os.path.dirname(__file__))
from foundation import free_port, get_status, wrk  # noqa: E402


def run(binary, env, args, **kw):
    return subprocess.run([binary] + args, env=env, capture_output=True, text=True, check=True, **kw)


def api(base, token, method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def ttfb(port, path, n):
    """Milliseconds to the first byte of the response, for n requests one after another."""
    out = []
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        out.append((time.perf_counter() - t0) * 1000)
        r.read()
    conn.close()
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.99) - 1]


def weight(base, path, opener):
    """(bytes, requests, [foreign urls], [(url, bytes)]) of a page and what it loads."""
    html = opener.open(base + path).read()
    parts = [(path, len(html))]
    refs = re.findall(rb'<(?:link|img|script)[^>]+(?:href|src)="([^"]+)"', html)
    foreign = []
    for ref in refs:
        url = urllib.parse.urljoin(base + path, ref.decode().replace("&amp;", "&"))
        if not url.startswith(base):
            foreign.append(url)
            continue
        parts.append((url[len(base):], len(opener.open(url).read())))
    return sum(b for _, b in parts), len(parts), foreign, parts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10000)
    ap.add_argument("--backend", default="sqlite")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--binary", default="target/release/cohort")
    args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    data = tempfile.mkdtemp(prefix="cohort-bench-portal-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"PATH": os.environ.get("PATH", ""), "COHORT_ADDR": f"127.0.0.1:{port}",
           "COHORT_DATA_DIR": data, "COHORT_PUBLIC_URL": base, "RUST_LOG": "warn"}
    if args.backend == "postgres":
        for sql in ["DROP DATABASE IF EXISTS cohort_bench_portal", "CREATE DATABASE cohort_bench_portal"]:
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc", sql], check=True)
        env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/cohort_bench_portal"
    out = run(args.binary, env, ["seed-demo", "--patients", str(args.patients), "--study"], cwd=data).stdout.strip()
    print(f"[{args.backend}] seed: {out}")
    proc = subprocess.Popen([args.binary, "serve"], env=env, cwd=data, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while get_status(base + "/healthz") != 200:
            time.sleep(0.05)
        token = run(args.binary, env, ["token", "create", "--email", "admin@localhost"], cwd=data).stdout.strip().splitlines()[-1]
        org = api(base, token, "POST", "/api/v1/organizations", {"name": "Bench Clinic", "type": "prov", "partOf": 0})["id"]
        patient = api(base, token, "POST", "/api/v1/patients", {
            "organizationId": org, "telecomEmail": "bench.patient@example.org", "nameFamily": "Mensah",
            "nameGiven": "Ama", "birthDate": "1980-04-23"})["id"]
        sources = [api(base, token, "POST", "/api/v1/data_sources", {"name": n, "type": "personal_device"})["id"]
                   for n in ("Bench Watch", "Bench Cuff")]
        for name, scopes in (("Sleep and Heart", [4, 2, 13, 12]), ("Activity", [11, 12, 1, 8])):
            study = api(base, token, "POST", "/api/v1/studies", {
                "name": name, "description": "A bench study that asks for four kinds of data.", "organization": org})["id"]
            for s in scopes:
                api(base, token, "POST", f"/api/v1/studies/{study}/scope_requests", {"scopeCodeId": s})
            for d in sources:
                api(base, token, "POST", f"/api/v1/studies/{study}/data_sources", {"dataSourceId": d})
            api(base, token, "POST", f"/api/v1/studies/{study}/patients", {"patientIds": [patient]})
        link = api(base, token, "POST", "/api/v1/invitation", {"patient_id": patient})["invitationLink"]
        path = link[len(base):]

        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        before = weight(base, path, opener)
        median, p99 = ttfb(port, path, 500)
        rps, wrk_p99, bad = wrk(base + path, args.seconds, [])
        # Answer yes to everything in both studies, then weigh the page with its app section.
        page = opener.open(base + path).read().decode()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        answers = [(name, "yes") for name in sorted(set(re.findall(r'name="(a-\d+-\d+)"', page)))]
        opener.open(urllib.request.Request(base + path, data=urllib.parse.urlencode(
            [("csrf_token", csrf)] + answers).encode())).read()
        after = weight(base, path, opener)

        print(f"[{args.backend}] invitation page TTFB, one at a time: median {median:.2f} ms, p99 {p99:.2f} ms")
        print(f"[{args.backend}] invitation page, 4 connections: {rps:,.0f} req/s, p99 {wrk_p99:.2f} ms, non-2xx {bad}")
        for label, (total, n, foreign, parts) in (("before answering", before), ("after answering", after)):
            detail = ", ".join(f"{'page' if i == 0 else p.split('?')[0].rsplit('/', 1)[-1]} {b:,}"
                               for i, (p, b) in enumerate(parts))
            print(f"[{args.backend}] page weight {label}: {total:,} bytes in {n} requests ({detail}); "
                  f"third-party requests: {len(foreign)}")
            if total >= 50_000 or foreign:
                print(f"[{args.backend}] OVER TARGET: {total} bytes, foreign {foreign}")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
