#!/usr/bin/env python3
"""Sandbox requests/s with execution + access logging at INFO against OFF.

Run with the project's venv (moto, boto3): `.venv/bin/python
scripts/measure-sandbox-logging.py [path/to/stagecheck-sandbox]`.

A bounded loop of N GETs per mode over keep-alive connections (C threads), the
same sandbox and moto, stage `test`; then the log events per request counted in
moto. Not a timed test: numbers for the report.
"""
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(TARGET, "debug", "stagecheck-sandbox")
N = 2000
C = 8
env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDSANDBOXTEST", AWS_SECRET_ACCESS_KEY="sandbox-test-secret",
           AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="us-east-1")
env.pop("AWS_ENDPOINT_URL", None)
env.pop("AWS_PROFILE", None)

moto = subprocess.Popen([f"{ROOT}/.venv/bin/moto_server", "-H", "127.0.0.1", "-p", "0"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
port = None
for line in moto.stderr:
    m = re.search(r"Running on http://127.0.0.1:(\d+)", line)
    if m:
        port = int(m.group(1))
        break
threading.Thread(target=lambda: [None for _ in moto.stderr], daemon=True).start()
endpoint = f"http://127.0.0.1:{port}"
sandbox = subprocess.Popen([BIN, "--aws-endpoint", endpoint, "--listen", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
first = sandbox.stdout.readline().strip()
while not first.startswith("sandbox listening on "):
    first = sandbox.stdout.readline().strip()
base = first.split("sandbox listening on ")[1]
host, sport = base.replace("http://", "").split(":")
threading.Thread(target=lambda: [None for _ in sandbox.stdout], daemon=True).start()

s = boto3.session.Session(region_name="us-east-1", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
ag = s.client("apigateway", endpoint_url=endpoint)
logs = s.client("logs", endpoint_url=endpoint)
api = [a["id"] for a in ag.get_rest_apis()["items"] if a["name"] == "users"][0]


def reload():
    c = http.client.HTTPConnection(host, int(sport))
    c.request("POST", "/_sandbox/reload")
    r = c.getresponse()
    r.read()
    assert r.status == 200


def cpu():
    f = open(f"/proc/{sandbox.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def run(label):
    c0 = cpu()
    per = N // C
    errors = []

    def worker():
        c = http.client.HTTPConnection(host, int(sport))
        for _ in range(per):
            c.request("GET", "/test/user/nobody")
            r = c.getresponse()
            r.read()
            if r.status != 404:
                errors.append(r.status)

    threads = [threading.Thread(target=worker) for _ in range(C)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    used = cpu() - c0
    print(f"{label}: {per * C} requests in {dt:.2f} s = {per * C / dt:.0f} req/s; non-404: {len(errors)}; "
          f"sandbox CPU {used:.2f} s = {1000 * used / (per * C):.2f} ms/request")
    return per * C


def count(group):
    n = 0
    token = None
    while True:
        kw = {"logGroupName": group}
        if token:
            kw["nextToken"] = token
        try:
            page = logs.filter_log_events(**kw)
        except logs.exceptions.ResourceNotFoundException:
            return 0
        n += len(page["events"])
        nxt = page.get("nextToken")
        if not nxt or nxt == token:
            return n
        token = nxt


# Warm up: environments started, caches filled.
run("warm-up (OFF)")
time.sleep(1.5)
lambda_before = count("/aws/lambda/test-user-service")
off = run("logging OFF")
time.sleep(1.5)
lambda_off = count("/aws/lambda/test-user-service") - lambda_before

logs.create_log_group(logGroupName="users-access")
fmt = json.dumps({"requestId": "$context.requestId", "extendedRequestId": "$context.extendedRequestId",
                  "status": "$context.status", "integrationRequestId": "$context.integration.requestId",
                  "responseLatency": "$context.responseLatency", "ip": "$context.identity.sourceIp",
                  "requestTime": "$context.requestTime", "path": "$context.path"}, separators=(",", ":"))
ag.update_stage(restApiId=api, stageName="test", patchOperations=[
    {"op": "replace", "path": "/*/*/logging/loglevel", "value": "INFO"},
    {"op": "replace", "path": "/accessLogSettings/destinationArn",
     "value": "arn:aws:logs:us-east-1:123456789012:log-group:users-access"},
    {"op": "replace", "path": "/accessLogSettings/format", "value": fmt},
])
reload()
before = count("/aws/lambda/test-user-service")
info = run("logging INFO (execution + access)")
time.sleep(3)
exec_events = count(f"API-Gateway-Execution-Logs_{api}/test")
access_events = count("users-access")
lambda_info = count("/aws/lambda/test-user-service") - before
print(f"per request at INFO: execution-log events {exec_events / info:.2f}, access-log events "
      f"{access_events / info:.2f}, Lambda events {lambda_info / info:.2f} (OFF: Lambda {lambda_off / off:.2f})")

ag.update_stage(restApiId=api, stageName="test", patchOperations=[
    {"op": "replace", "path": "/*/*/logging/loglevel", "value": "OFF"},
    {"op": "remove", "path": "/accessLogSettings"},
])
reload()
run("logging OFF again")
sandbox.terminate()
sandbox.wait(timeout=20)
moto.terminate()
moto.wait(timeout=10)
