//! Trigger payloads → the objects to process, and (in [`keys`]) the key policy. One binary serves
//! four triggers (S3 → Lambda, S3 → SQS → Lambda, S3 → EventBridge → Lambda, and S3 Batch
//! Operations jobs for backfills), so the payload arrives as raw JSON and its shape is detected
//! here; object keys are decoded from S3's form-style URL encoding (Batch sends them encoded the
//! same way: docs/backfill.md).
//!
//! Parsing never fails on a single bad record: it becomes [`Entry::Malformed`] and the handler
//! decides what that means for the invocation (see `handler`).

pub mod keys;

use serde_json::Value;

/// Which trigger delivered the payload; decides how failures are reported back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An S3 event notification invoking the function directly (asynchronous invoke).
    S3,
    /// An SQS batch whose message bodies are S3 notifications (partial batch responses).
    Sqs,
    /// An EventBridge event from S3 ("Object Created").
    EventBridge,
    /// The `s3:TestEvent` S3 sends when a notification is configured.
    TestEvent,
    /// An S3 Batch Operations `LambdaInvoke` task list (schema 1.0 or 2.0): answered per task.
    Batch,
}

impl Trigger {
    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::S3 => "s3",
            Trigger::Sqs => "sqs",
            Trigger::EventBridge => "eventbridge",
            Trigger::TestEvent => "s3-test-event",
            Trigger::Batch => "s3-batch",
        }
    }
}

/// One object the event announced as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The decoded key, as S3 APIs expect it.
    pub key: String,
    /// The version the event announced (versioned buckets only).
    pub version_id: Option<String>,
    /// The announced ETag, unquoted (e.g. `d41d8cd98f00b204e9800998ecf8427e`).
    pub etag: Option<String>,
    /// The announced size in bytes.
    pub size: Option<u64>,
    /// `ObjectCreated:Put`, `Object Created`, …
    pub event_name: String,
}

/// One record of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An object to render.
    Object(ObjectRef),
    /// An object that was deleted (`ObjectRemoved:*`, EventBridge "Object Deleted"): its
    /// renditions go too when `ON_SOURCE_DELETE=delete`.
    Removed(ObjectRef),
    /// Not for us (test event, deletion, …): acknowledged with an info log.
    Ignored(String),
    /// Could not be understood (missing bucket or key, bad JSON body, …).
    Malformed(String),
}

/// A unit of acknowledgement: one SQS message, one Batch task, or the whole event for the other
/// triggers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The SQS `messageId` (the `itemIdentifier` of a batch item failure), or the Batch
    /// `taskId`.
    pub id: Option<String>,
    pub entries: Vec<Entry>,
    /// SQS `ApproximateReceiveCount` > 1: the message was delivered before, so its objects may
    /// already be rendered (checked before rendering again).
    pub redelivered: bool,
}

/// What an S3 Batch Operations invocation says besides its tasks (echoed in the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchJob {
    /// `1.0` or `2.0`.
    pub schema_version: String,
    pub invocation_id: String,
    pub job_id: Option<String>,
    /// `userArguments.force` (schema 2.0): render even when the renditions are up to date.
    pub force: bool,
}

/// A parsed invocation payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    pub trigger: Trigger,
    pub messages: Vec<Message>,
    /// For [`Trigger::Batch`]: the job's invocation (one message per task).
    pub batch: Option<BatchJob>,
}

impl ParsedEvent {
    /// Every object, with the index of its message.
    pub fn objects(&self) -> impl Iterator<Item = (usize, &ObjectRef)> {
        self.messages.iter().enumerate().flat_map(|(i, m)| {
            m.entries.iter().filter_map(move |e| match e {
                Entry::Object(o) => Some((i, o)),
                _ => None,
            })
        })
    }
}

/// The payload matched none of the supported shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised event: {0}")]
pub struct EventError(pub String);

/// Detects the payload's shape and extracts its objects.
pub fn parse(event: &Value) -> Result<ParsedEvent, EventError> {
    if event.get("invocationSchemaVersion").is_some() && event.get("tasks").is_some() {
        return parse_batch(event);
    }
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        let is_sqs = |r: &Value| {
            r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs")
                || (r.get("messageId").is_some() && r.get("body").is_some())
        };
        if !records.is_empty() && records.iter().all(is_sqs) {
            let messages = records.iter().map(parse_sqs_record).collect();
            return Ok(ParsedEvent {
                trigger: Trigger::Sqs,
                messages,
                batch: None,
            });
        }
        if records.iter().any(is_sqs) {
            return Err(EventError(
                "a Records array mixing SQS and other records".into(),
            ));
        }
        return Ok(ParsedEvent {
            trigger: Trigger::S3,
            messages: vec![Message {
                id: None,
                entries: records.iter().map(parse_s3_record).collect(),
                redelivered: false,
            }],
            batch: None,
        });
    }
    if is_test_event(event) {
        return Ok(ParsedEvent {
            trigger: Trigger::TestEvent,
            messages: vec![Message {
                id: None,
                entries: vec![test_event_entry(event)],
                redelivered: false,
            }],
            batch: None,
        });
    }
    if is_eventbridge(event) {
        return Ok(ParsedEvent {
            trigger: Trigger::EventBridge,
            messages: vec![Message {
                id: None,
                entries: vec![parse_eventbridge(event)],
                redelivered: false,
            }],
            batch: None,
        });
    }
    Err(EventError(describe(event)))
}

fn describe(event: &Value) -> String {
    match event {
        Value::Object(map) => {
            let keys: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
            format!(
                "expected an S3 notification (Records[].s3), an SQS batch (Records[].body), an \
                 EventBridge event from aws.s3 or an S3 Batch Operations invocation \
                 (invocationSchemaVersion, tasks); got an object with keys [{}]",
                keys.join(", ")
            )
        }
        other => format!("expected a JSON object, got {}", json_type(other)),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
}

/// Sizes arrive as numbers, but some emulators and docs show strings.
fn u64_at(v: &Value, path: &[&str]) -> Option<u64> {
    let v = path.iter().try_fold(v, |v, k| v.get(*k))?;
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty() && *s != "null")
        .map(str::to_owned)
}

fn is_test_event(v: &Value) -> bool {
    v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent")
}

fn test_event_entry(v: &Value) -> Entry {
    let bucket = str_at(v, &["Bucket"]).unwrap_or("?");
    Entry::Ignored(format!("s3:TestEvent for bucket {bucket}"))
}

fn is_eventbridge(v: &Value) -> bool {
    v.get("detail-type").is_some() && v.get("detail").is_some()
}

/// One record of an S3 notification (`Records[]` with `s3.bucket.name` / `s3.object.key`).
fn parse_s3_record(r: &Value) -> Entry {
    let event_name = str_at(r, &["eventName"]).unwrap_or_default();
    if let Some(source) = str_at(r, &["eventSource"])
        && source != "aws:s3"
    {
        return Entry::Ignored(format!("record from {source}, not aws:s3"));
    }
    // MinIO and some emulators prefix the name with `s3:`.
    let name = event_name.strip_prefix("s3:").unwrap_or(event_name);
    let removed = name.starts_with("ObjectRemoved:");
    if !name.starts_with("ObjectCreated:") && !removed {
        return Entry::Ignored(format!(
            "event {event_name:?} is neither ObjectCreated nor ObjectRemoved"
        ));
    }
    let Some(bucket) = non_empty(str_at(r, &["s3", "bucket", "name"])) else {
        return Entry::Malformed(format!("{event_name} record without s3.bucket.name"));
    };
    let Some(raw_key) = str_at(r, &["s3", "object", "key"]) else {
        return Entry::Malformed(format!(
            "{event_name} record in {bucket} without s3.object.key"
        ));
    };
    let entry = object_entry(
        bucket,
        raw_key,
        non_empty(str_at(r, &["s3", "object", "versionId"])),
        non_empty(str_at(r, &["s3", "object", "eTag"])),
        u64_at(r, &["s3", "object", "size"]),
        name.to_owned(),
    );
    if removed { into_removed(entry) } else { entry }
}

fn into_removed(entry: Entry) -> Entry {
    match entry {
        Entry::Object(o) => Entry::Removed(o),
        other => other,
    }
}

fn object_entry(
    bucket: String,
    raw_key: &str,
    version_id: Option<String>,
    etag: Option<String>,
    size: Option<u64>,
    event_name: String,
) -> Entry {
    match keys::decode_key(raw_key) {
        Ok(key) if !key.is_empty() => Entry::Object(ObjectRef {
            bucket,
            key,
            version_id,
            etag: etag.map(|e| e.trim_matches('"').to_owned()),
            size,
            event_name,
        }),
        Ok(_) => Entry::Malformed(format!("{event_name} record in {bucket} with an empty key")),
        Err(e) => Entry::Malformed(format!("{event_name} record in {bucket}: {e}")),
    }
}

/// An EventBridge event; only `source = aws.s3`, `detail-type = Object Created` is work.
fn parse_eventbridge(v: &Value) -> Entry {
    let source = str_at(v, &["source"]).unwrap_or_default();
    let detail_type = str_at(v, &["detail-type"]).unwrap_or_default();
    if source != "aws.s3" {
        return Entry::Ignored(format!("EventBridge event from {source:?}, not aws.s3"));
    }
    let removed = detail_type == "Object Deleted";
    if detail_type != "Object Created" && !removed {
        return Entry::Ignored(format!(
            "EventBridge {detail_type:?} event is neither Object Created nor Object Deleted"
        ));
    }
    let detail = &v["detail"];
    let Some(bucket) = non_empty(str_at(detail, &["bucket", "name"])) else {
        return Entry::Malformed(format!("{detail_type} event without detail.bucket.name"));
    };
    let Some(raw_key) = str_at(detail, &["object", "key"]) else {
        return Entry::Malformed(format!(
            "{detail_type} event in {bucket} without detail.object.key"
        ));
    };
    let entry = object_entry(
        bucket,
        raw_key,
        non_empty(str_at(detail, &["object", "version-id"])),
        non_empty(str_at(detail, &["object", "etag"])),
        u64_at(detail, &["object", "size"]),
        detail_type.to_owned(),
    );
    if removed { into_removed(entry) } else { entry }
}

/// An S3 Batch Operations `LambdaInvoke` payload (schema 1.0: `s3BucketArn`; 2.0: `s3Bucket` and
/// `job.userArguments`). What the answer needs (schema, invocation id, task ids) must be there, or
/// the whole payload is refused; a task without a key or bucket is answered as a permanent
/// failure of that task.
fn parse_batch(event: &Value) -> Result<ParsedEvent, EventError> {
    let schema_version = str_at(event, &["invocationSchemaVersion"]).unwrap_or_default();
    if schema_version != "1.0" && schema_version != "2.0" {
        return Err(EventError(format!(
            "S3 Batch Operations invocation with invocationSchemaVersion {}: only 1.0 and 2.0 \
             are known",
            event["invocationSchemaVersion"]
        )));
    }
    let Some(invocation_id) = non_empty(str_at(event, &["invocationId"])) else {
        return Err(EventError(
            "S3 Batch Operations invocation without an invocationId".into(),
        ));
    };
    let Some(tasks) = event.get("tasks").and_then(Value::as_array) else {
        return Err(EventError(
            "S3 Batch Operations invocation whose tasks is not an array".into(),
        ));
    };
    let force = match event.pointer("/job/userArguments/force") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
        }
        _ => false,
    };
    let mut messages = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.iter().enumerate() {
        let Some(task_id) = non_empty(str_at(task, &["taskId"])) else {
            return Err(EventError(format!(
                "S3 Batch Operations task {i} has no taskId (its result could not be reported)"
            )));
        };
        messages.push(Message {
            id: Some(task_id),
            entries: vec![batch_task_entry(task)],
            redelivered: false,
        });
    }
    Ok(ParsedEvent {
        trigger: Trigger::Batch,
        messages,
        batch: Some(BatchJob {
            schema_version: schema_version.to_owned(),
            invocation_id,
            job_id: non_empty(str_at(event, &["job", "id"])),
            force,
        }),
    })
}

fn batch_task_entry(task: &Value) -> Entry {
    // 2.0 names the bucket; 1.0 gives its ARN, `arn:aws:s3:::b` or `arn:aws:s3:region:acct:b`
    // (bucket names have no `:`, so the name is what follows the last one).
    let bucket = non_empty(str_at(task, &["s3Bucket"])).or_else(|| {
        str_at(task, &["s3BucketArn"])
            .and_then(|arn| arn.rsplit(':').next())
            .and_then(|b| non_empty(Some(b)))
    });
    let Some(bucket) = bucket else {
        return Entry::Malformed("S3 Batch task without s3Bucket or s3BucketArn".into());
    };
    let Some(raw_key) = str_at(task, &["s3Key"]) else {
        return Entry::Malformed(format!("S3 Batch task in {bucket} without s3Key"));
    };
    object_entry(
        bucket,
        raw_key,
        non_empty(str_at(task, &["s3VersionId"])),
        None,
        None,
        "BatchTask".to_owned(),
    )
}

/// One SQS record: the body is an S3 notification (or a test event, an EventBridge event
/// delivered to SQS, or either of those inside an SNS envelope).
fn parse_sqs_record(r: &Value) -> Message {
    let id = non_empty(str_at(r, &["messageId"]));
    let redelivered = str_at(r, &["attributes", "ApproximateReceiveCount"])
        .and_then(|n| n.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 1);
    let entries = match str_at(r, &["body"]) {
        None => vec![Entry::Malformed("SQS message without a string body".into())],
        Some(body) => match serde_json::from_str::<Value>(body) {
            Err(e) => vec![Entry::Malformed(format!(
                "SQS message body is not JSON: {e}"
            ))],
            Ok(body) => parse_body(&body, true),
        },
    };
    Message {
        id,
        entries,
        redelivered,
    }
}

fn parse_body(body: &Value, allow_sns: bool) -> Vec<Entry> {
    if allow_sns
        && str_at(body, &["Type"]) == Some("Notification")
        && let Some(inner) = str_at(body, &["Message"])
    {
        return match serde_json::from_str::<Value>(inner) {
            Ok(inner) => parse_body(&inner, false),
            Err(e) => vec![Entry::Malformed(format!("SNS Message is not JSON: {e}"))],
        };
    }
    if let Some(records) = body.get("Records").and_then(Value::as_array) {
        return records.iter().map(parse_s3_record).collect();
    }
    if is_test_event(body) {
        return vec![test_event_entry(body)];
    }
    if is_eventbridge(body) {
        return vec![parse_eventbridge(body)];
    }
    vec![Entry::Malformed(format!(
        "SQS message body: {}",
        describe(body)
    ))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The record of AWS's documented example (S3 User Guide, "Event message structure").
    fn s3_record(name: &str, bucket: &str, key: &str) -> Value {
        json!({
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-west-2",
            "eventTime": "1970-01-01T00:00:00.000Z",
            "eventName": name,
            "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {
                "x-amz-request-id": "C3D13FE58DE4C810",
                "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "testConfigRule",
                "bucket": {
                    "name": bucket,
                    "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                    "arn": format!("arn:aws:s3:::{bucket}")
                },
                "object": {
                    "key": key,
                    "size": 1024,
                    "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                    "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
                    "sequencer": "0055AED6DCD90281E5"
                }
            }
        })
    }

    fn only_object(p: &ParsedEvent) -> &ObjectRef {
        let objects: Vec<_> = p.objects().collect();
        assert_eq!(objects.len(), 1, "{p:?}");
        objects[0].1
    }

    #[test]
    fn s3_notification_with_several_records() {
        let ev = json!({"Records": [
            s3_record("ObjectCreated:Put", "uploads", "inbox/2026/cat.png"),
            s3_record("ObjectCreated:CompleteMultipartUpload", "uploads", "red+flower.jpg"),
            s3_record("ObjectRemoved:Delete", "uploads", "gone.jpg"),
        ]});
        let p = parse(&ev).unwrap();
        assert_eq!(p.trigger, Trigger::S3);
        assert_eq!(p.messages.len(), 1);
        assert_eq!(p.messages[0].id, None);
        let objects: Vec<_> = p.objects().map(|(_, o)| o.clone()).collect();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].bucket, "uploads");
        assert_eq!(objects[0].key, "inbox/2026/cat.png");
        assert_eq!(
            objects[0].etag.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(
            objects[0].version_id.as_deref(),
            Some("096fKKXTRTtl3on89fVO.nfljtsv6qko")
        );
        assert_eq!(objects[0].size, Some(1024));
        assert_eq!(objects[0].event_name, "ObjectCreated:Put");
        assert_eq!(objects[1].key, "red flower.jpg");
        assert!(
            matches!(&p.messages[0].entries[2], Entry::Removed(o) if o.event_name == "ObjectRemoved:Delete")
        );
    }

    #[test]
    fn unversioned_record_has_no_version_and_size_may_be_a_string() {
        let mut r = s3_record("ObjectCreated:Post", "b", "k.jpg");
        r["s3"]["object"]["versionId"] = Value::Null;
        r["s3"]["object"]["size"] = json!("77");
        r["s3"]["object"]["eTag"] = json!("\"abc\"");
        let p = parse(&json!({"Records": [r]})).unwrap();
        let o = only_object(&p);
        assert_eq!(
            (o.version_id.clone(), o.size, o.etag.as_deref()),
            (None, Some(77), Some("abc"))
        );
    }

    #[test]
    fn record_without_key_is_malformed_not_fatal() {
        let mut r = s3_record("ObjectCreated:Put", "b", "k.jpg");
        r["s3"]["object"].as_object_mut().unwrap().remove("key");
        let ev = json!({"Records": [r, s3_record("ObjectCreated:Put", "b", "ok.jpg")]});
        let p = parse(&ev).unwrap();
        assert!(matches!(p.messages[0].entries[0], Entry::Malformed(_)));
        assert_eq!(only_object(&p).key, "ok.jpg");
    }

    #[test]
    fn sqs_batch_wraps_s3_notifications_and_test_events() {
        let body = json!({"Records": [s3_record("ObjectCreated:Put", "uploads", "a+b/c%2Bd.jpg")]})
            .to_string();
        let test = json!({
            "Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2014-10-13T15:57:02.089Z",
            "Bucket": "uploads", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"
        })
        .to_string();
        let sqs = |id: &str, body: &str| {
            json!({
                "messageId": id,
                "receiptHandle": "MessageReceiptHandle",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1523232000000",
                    "SenderId": "123456789012",
                    "ApproximateFirstReceiveTimestamp": "1523232000001"
                },
                "messageAttributes": {},
                "md5OfBody": "7b270e59b47ff90a553787216d55d91d",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:MyQueue",
                "awsRegion": "us-east-1"
            })
        };
        let ev = json!({"Records": [sqs("m1", &body), sqs("m2", &test), sqs("m3", "not json")]});
        let p = parse(&ev).unwrap();
        assert_eq!(p.trigger, Trigger::Sqs);
        assert_eq!(p.messages.len(), 3);
        assert_eq!(p.messages[0].id.as_deref(), Some("m1"));
        let (i, o) = p.objects().next().unwrap();
        assert_eq!((i, o.key.as_str()), (0, "a b/c+d.jpg"));
        assert!(
            matches!(&p.messages[1].entries[..], [Entry::Ignored(r)] if r.contains("TestEvent"))
        );
        assert!(
            matches!(&p.messages[2].entries[..], [Entry::Malformed(r)] if r.contains("not JSON"))
        );
    }

    #[test]
    fn sqs_body_in_sns_envelope() {
        let inner = json!({"Records": [s3_record("ObjectCreated:Put", "b", "x.jpg")]}).to_string();
        let sns = json!({"Type": "Notification", "MessageId": "n", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": inner}).to_string();
        let ev = json!({"Records": [{"messageId": "m", "body": sns, "eventSource": "aws:sqs"}]});
        assert_eq!(only_object(&parse(&ev).unwrap()).key, "x.jpg");
    }

    #[test]
    fn eventbridge_object_created() {
        // AWS's documented example (S3 User Guide, "EventBridge event message structure").
        let ev = json!({
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "111122223333",
            "time": "2021-11-12T00:00:00Z",
            "region": "ca-central-1",
            "resources": ["arn:aws:s3:::amzn-s3-demo-bucket1"],
            "detail": {
                "version": "0",
                "bucket": {"name": "amzn-s3-demo-bucket1"},
                "object": {
                    "key": "photos/summer+2026/beach.jpg",
                    "size": 5,
                    "etag": "b1946ac92492d2347c6235b4d2611184",
                    "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                    "sequencer": "617f08299329d189"
                },
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "source-ip-address": "1.2.3.4",
                "reason": "PutObject"
            }
        });
        let p = parse(&ev).unwrap();
        assert_eq!(p.trigger, Trigger::EventBridge);
        let o = only_object(&p);
        assert_eq!(o.bucket, "amzn-s3-demo-bucket1");
        assert_eq!(o.key, "photos/summer 2026/beach.jpg");
        assert_eq!(
            o.version_id.as_deref(),
            Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e")
        );
        assert_eq!(o.size, Some(5));

        let mut deleted = ev.clone();
        deleted["detail-type"] = json!("Object Deleted");
        let p = parse(&deleted).unwrap();
        assert_eq!(p.objects().count(), 0);
        assert!(
            matches!(&p.messages[0].entries[..], [Entry::Removed(o)] if o.key == "photos/summer 2026/beach.jpg")
        );
        let mut other = ev.clone();
        other["detail-type"] = json!("Object Restore Completed");
        let p = parse(&other).unwrap();
        assert!(matches!(&p.messages[0].entries[..], [Entry::Ignored(_)]));
    }

    #[test]
    fn test_event_is_ignored() {
        let ev = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2014-10-13T15:57:02.089Z", "Bucket": "uploads", "RequestId": "5582815E1AEA5ADF", "HostId": "x"});
        let p = parse(&ev).unwrap();
        assert_eq!(p.trigger, Trigger::TestEvent);
        assert_eq!(p.objects().count(), 0);
    }

    #[test]
    fn unknown_shapes_are_errors() {
        assert!(
            parse(&json!({"hello": "world"}))
                .unwrap_err()
                .0
                .contains("hello")
        );
        assert!(parse(&json!([1, 2])).is_err());
        assert!(parse(&json!("x")).is_err());
        let empty = parse(&json!({"Records": []})).unwrap();
        assert_eq!((empty.trigger, empty.objects().count()), (Trigger::S3, 0));
    }

    #[test]
    fn batch_invocations_schema_1_and_2() {
        let v2 = json!({
            "invocationSchemaVersion": "2.0",
            "invocationId": "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo",
            "job": {"id": "f3cc4f60", "userArguments": {"force": "true"}},
            "tasks": [
                {"taskId": "t1", "s3Key": "photos/sp%20ace+plus%2Bsign%C3%BC.jpg", "s3VersionId": null, "s3Bucket": "uploads"},
                {"taskId": "t2", "s3Key": "photos/x.jpg", "s3VersionId": "v9", "s3BucketArn": "arn:aws:s3:us-east-1:0123456788:uploads"},
                {"taskId": "t3", "s3Key": "y.jpg", "s3VersionId": null},
            ],
        });
        let p = parse(&v2).unwrap();
        assert_eq!(p.trigger, Trigger::Batch);
        let job = p.batch.as_ref().unwrap();
        assert_eq!(
            (
                job.schema_version.as_str(),
                job.job_id.as_deref(),
                job.force
            ),
            ("2.0", Some("f3cc4f60"), true)
        );
        let ids: Vec<_> = p.messages.iter().map(|m| m.id.as_deref()).collect();
        assert_eq!(ids, [Some("t1"), Some("t2"), Some("t3")]);
        let objects: Vec<_> = p.objects().map(|(i, o)| (i, o.clone())).collect();
        assert_eq!(objects[0].1.key, "photos/sp ace plus+signü.jpg");
        assert_eq!(objects[0].1.bucket, "uploads");
        assert_eq!((objects[1].0, objects[1].1.bucket.as_str()), (1, "uploads"));
        assert_eq!(objects[1].1.version_id.as_deref(), Some("v9"));
        assert!(
            matches!(&p.messages[2].entries[..], [Entry::Malformed(r)] if r.contains("s3Bucket"))
        );
        let mut v1 = v2.clone();
        v1["invocationSchemaVersion"] = json!("1.0");
        v1["job"] = json!({"id": "j"});
        let p = parse(&v1).unwrap();
        assert!(!p.batch.unwrap().force);
    }

    #[test]
    fn unusable_batch_invocations_are_errors_naming_the_problem() {
        let base = json!({"invocationSchemaVersion": "2.0", "invocationId": "i", "job": {}, "tasks": [{"taskId": "t", "s3Key": "k", "s3Bucket": "b"}]});
        let mut bad_version = base.clone();
        bad_version["invocationSchemaVersion"] = json!("3.0");
        let mut no_id = base.clone();
        no_id.as_object_mut().unwrap().remove("invocationId");
        let mut tasks_not_array = base.clone();
        tasks_not_array["tasks"] = json!({"taskId": "t"});
        let mut task_without_id = base.clone();
        task_without_id["tasks"][0]
            .as_object_mut()
            .unwrap()
            .remove("taskId");
        for (event, needle) in [
            (bad_version, "invocationSchemaVersion \"3.0\""),
            (no_id, "invocationId"),
            (tasks_not_array, "tasks is not an array"),
            (task_without_id, "task 0 has no taskId"),
        ] {
            let e = parse(&event).unwrap_err();
            assert!(e.0.contains(needle), "{e}");
        }
    }
}
