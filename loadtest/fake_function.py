#!/usr/bin/env python3
"""A tiny stand-in for renditions-lambda that speaks the same Lambda Runtime API and the
same contract (SQS event of S3 notifications -> renditions or a rejection report,
batchItemFailures for transient errors, one EMF line per invocation). It exists to develop
and self-test the load-test harness without the real binary: `run.py --bin fake`.
Its numbers say nothing about the real function."""
import io
import json
import os
import sys
import time
import traceback
import urllib.request
from urllib.parse import unquote_plus

import boto3
from botocore.config import Config
from PIL import Image

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime"
DEST = os.environ["DEST_BUCKET"]
RENDITIONS = [(n, int(px)) for n, px in (r.split(":") for r in
              os.environ.get("RENDITIONS", "large:1600,medium:800,thumb:320").split(","))]
# Self-test knobs: FAKE_LOSE_EVERY=k acknowledges every k-th object without writing anything
# (the lost-check must catch it); FAKE_FAIL_EVERY=k reports every k-th message of a first
# delivery in batchItemFailures (it must come back after the visibility timeout).
LOSE_EVERY = int(os.environ.get("FAKE_LOSE_EVERY") or 0)
FAIL_EVERY = int(os.environ.get("FAKE_FAIL_EVERY") or 0)
_n = {"obj": 0, "msg": 0}
s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))


def call(method, path, body=None, headers=None):
    req = urllib.request.Request(API + path, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=None) as r:
        return r.read(), r.headers


def process(bucket, key):
    _n["obj"] += 1
    if LOSE_EVERY and _n["obj"] % LOSE_EVERY == 0:
        return "ok"
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    stem = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
    try:
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", (1600, 1600))
        im.load()
    except Exception as e:               # bad image -> rejection report, not a failure
        s3.put_object(Bucket=DEST, Key=f"_rejected/{key}.json", ContentType="application/json",
                      Body=json.dumps({"key": key, "bucket": bucket, "reason": str(e), "bytes": len(data)}).encode())
        return "rejected"
    alpha = im.mode in ("RGBA", "LA", "PA") and im.getchannel("A").getextrema()[0] < 255
    for name, px in RENDITIONS:
        r = im.copy()
        r.thumbnail((px, px))
        buf = io.BytesIO()
        if alpha:
            r.save(buf, "PNG")
            ext, ct = "png", "image/png"
        else:
            r.convert("RGB").save(buf, "JPEG", quality=82)
            ext, ct = "jpg", "image/jpeg"
        s3.put_object(Bucket=DEST, Key=f"{name}/{stem}.{ext}", Body=buf.getvalue(), ContentType=ct)
    return "ok"


def main():
    while True:
        body, h = call("GET", "/invocation/next")
        rid = h["Lambda-Runtime-Aws-Request-Id"]
        t0 = time.time()
        try:
            event = json.loads(body)
            failures, counts = [], {"ok": 0, "rejected": 0}
            for rec in event.get("Records", []):
                try:
                    _n["msg"] += 1
                    if FAIL_EVERY and _n["msg"] % FAIL_EVERY == 0 and \
                            rec.get("attributes", {}).get("ApproximateReceiveCount") == "1":
                        raise RuntimeError("FAKE_FAIL_EVERY: transient failure")
                    s3ev = json.loads(rec["body"])
                    for r in s3ev.get("Records", []):
                        counts[process(r["s3"]["bucket"]["name"], unquote_plus(r["s3"]["object"]["key"]))] += 1
                except Exception:
                    traceback.print_exc()
                    failures.append({"itemIdentifier": rec["messageId"]})
            print(json.dumps({"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
                "Namespace": "RenditionsFake", "Dimensions": [["FunctionName"]],
                "Metrics": [{"Name": "Images", "Unit": "Count"}, {"Name": "Rejected", "Unit": "Count"},
                            {"Name": "Duration", "Unit": "Milliseconds"}]}]},
                "FunctionName": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"), "Images": counts["ok"],
                "Rejected": counts["rejected"], "Duration": (time.time() - t0) * 1000}), flush=True)
            call("POST", f"/invocation/{rid}/response", json.dumps({"batchItemFailures": failures}).encode(),
                 {"Content-Type": "application/json"})
        except Exception as e:
            call("POST", f"/invocation/{rid}/error",
                 json.dumps({"errorType": type(e).__name__, "errorMessage": str(e)}).encode(),
                 {"Lambda-Runtime-Function-Error-Type": "Unhandled"})


if __name__ == "__main__":
    sys.exit(main())
