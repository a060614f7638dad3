"""Plays Lambda's SQS event-source mapping (ESM) for N execution environments.

One worker thread per environment, like one unit of ESM concurrency: it long-polls the
queue until it has `batch_size` messages or the batching window since the first message
has passed, invokes its environment synchronously with an SQS event, then deletes the
messages that succeeded. Failed items (batchItemFailures, or every item when the
invocation errors, times out or crashes) are left alone and reappear after the queue's
visibility timeout, exactly as with ReportBatchItemFailures on AWS.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from .runtime_api import Environment


def s3_keys_of(body: str) -> list[str]:
    """Object keys in an S3 notification message body (keys are URL-encoded in events)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return []
    out = []
    for rec in doc.get("Records") or []:
        key = ((rec.get("s3") or {}).get("object") or {}).get("key")
        if key is not None:
            out.append(unquote_plus(key))
    return out


@dataclass
class InvocationRecord:
    env: str
    started: float                     # wall clock, invoke requested
    ended: float
    duration_ms: float | None          # event handed to the process -> response posted
    batch: int
    failed: int
    outcome: str                       # response | error | timeout | crash | bad-response
    redelivered: int                   # messages in the batch with ApproximateReceiveCount > 1


@dataclass
class Tracker:
    """Which uploaded keys the ESM has seen succeed, and when (wall clock)."""
    expected: set[str]
    completed: dict[str, float] = field(default_factory=dict)
    unknown_keys: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    all_done: threading.Event = field(default_factory=threading.Event)

    def complete(self, key: str, t: float) -> None:
        with self.lock:
            if key not in self.expected:
                self.unknown_keys += 1
                return
            self.completed.setdefault(key, t)
            if len(self.completed) >= len(self.expected):
                self.all_done.set()


class EventSourceMapping:
    def __init__(self, make_sqs, queue_url: str, queue_arn: str, region: str, envs: list[Environment],
                 batch_size: int, window_s: float, tracker: Tracker, log):
        self.make_sqs, self.queue_url, self.queue_arn, self.region = make_sqs, queue_url, queue_arn, region
        self.envs, self.batch_size, self.window_s = envs, batch_size, window_s
        self.tracker, self.log = tracker, log
        self.stop_event = threading.Event()
        self.records: list[InvocationRecord] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for env in self.envs:
            t = threading.Thread(target=self._worker, args=(env,), name=f"esm-{env.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, join_timeout: float) -> None:
        self.stop_event.set()
        end = time.monotonic() + join_timeout
        for t in self._threads:
            t.join(max(0.1, end - time.monotonic()))

    # -----------------------------------------------------------------------------------
    def _receive_batch(self, sqs) -> list[dict]:
        msgs: list[dict] = []
        first_at = None
        while len(msgs) < self.batch_size and not self.stop_event.is_set():
            left = None if first_at is None else self.window_s - (time.monotonic() - first_at)
            if left is not None and left <= 0:
                break
            wait = 1 if left is None or left >= 1 else 0
            r = sqs.receive_message(QueueUrl=self.queue_url,
                                    MaxNumberOfMessages=min(10, self.batch_size - len(msgs)),
                                    WaitTimeSeconds=wait, AttributeNames=["All"],
                                    MessageAttributeNames=["All"])
            got = r.get("Messages") or []
            if got and first_at is None:
                first_at = time.monotonic()
            msgs.extend(got)
            if not got and wait == 0:
                time.sleep(min(0.05, max(left or 0, 0)))
        return msgs

    def _event(self, msgs: list[dict]) -> dict:
        recs = []
        for m in msgs:
            body = m["Body"]
            recs.append({
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": body,
                "attributes": m.get("Attributes") or {},
                "messageAttributes": {k: {"stringValue": v.get("StringValue"), "binaryValue": None,
                                          "stringListValues": [], "binaryListValues": [],
                                          "dataType": v.get("DataType")}
                                      for k, v in (m.get("MessageAttributes") or {}).items()},
                "md5OfBody": m.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": self.queue_arn,
                "awsRegion": self.region,
            })
        return {"Records": recs}

    @staticmethod
    def _failed_ids(inv, ids: set[str]) -> tuple[set[str], str]:
        if inv.kind != "response":
            return set(ids), inv.kind or "error"
        try:
            resp = json.loads(inv.body or b"null")
        except ValueError:
            return set(ids), "bad-response"
        if not isinstance(resp, dict) or not resp.get("batchItemFailures"):
            return set(), "response"
        failed = set()
        for item in resp["batchItemFailures"]:
            ident = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not ident or ident not in ids:     # AWS: an invalid identifier fails the whole batch
                return set(ids), "bad-response"
            failed.add(ident)
        return failed, "response"

    def _worker(self, env: Environment) -> None:
        sqs = self.make_sqs()
        while not self.stop_event.is_set():
            try:
                msgs = self._receive_batch(sqs)
                if not msgs:
                    continue
                if env.proc is None:              # lazy start: the cold start is part of latency
                    env.start()
                t0 = time.time()
                inv = env.invoke(self._event(msgs))
                t1 = time.time()
                ids = {m["MessageId"] for m in msgs}
                failed, outcome = self._failed_ids(inv, ids)
                ok = [m for m in msgs if m["MessageId"] not in failed]
                for i in range(0, len(ok), 10):
                    r = sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                        {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(ok[i:i + 10])])
                    if r.get("Failed"):
                        self.errors.append(f"delete failed: {r['Failed'][:2]}")
                for m in ok:
                    for key in s3_keys_of(m["Body"]):
                        self.tracker.complete(key, t1)
                redelivered = sum(1 for m in msgs
                                  if int((m.get("Attributes") or {}).get("ApproximateReceiveCount", "1")) > 1)
                with self._lock:
                    self.records.append(InvocationRecord(env.name, t0, t1, inv.duration_ms, len(msgs),
                                                         len(failed), outcome, redelivered))
                if outcome != "response" or failed:
                    detail = (inv.body or b"")[:300].decode("utf-8", "replace")
                    self.log(f"{env.name}: {outcome}, {len(failed)}/{len(msgs)} items failed {detail}")
            except Exception as e:                # keep polling; record what went wrong
                msg = f"{env.name}: {type(e).__name__}: {e}"
                with self._lock:
                    self.errors.append(msg)
                self.log(msg)
                if "init failed" in str(e):
                    if sum(1 for x in self.errors if "init failed" in x) >= 3:
                        self.log(f"{env.name}: giving up after 3 init failures")
                        return
                self.stop_event.wait(1.0)
