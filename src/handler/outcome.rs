//! What one invocation did and how it answers: each object's [`Outcome`], the invocation's
//! [`Report`], and the response Lambda gets (the SQS partial batch response, the S3 Batch
//! Operations per-task results, a summary, or an [`InvocationError`] that makes Lambda retry).

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use serde_json::{Value, json};

use crate::event::{BatchJob, EventError, ObjectRef, Trigger};
use crate::pipeline::StageTimings;

/// One rendition as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub rendition: String,
    pub key: String,
    pub width: u32,
    pub height: u32,
    pub bytes: usize,
    pub content_type: &'static str,
}

/// What a rendered object produced, and how long each part took.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Source format (`jpeg`, `png`, …) and stored size.
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub orientation: u8,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub renditions: Vec<Written>,
    pub download: Duration,
    pub timings: StageTimings,
    pub upload: Duration,
}

/// The outcome of one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Renditions written.
    Rendered(Rendered),
    /// The image was refused (bad or too large): permanent, reported, not retried.
    Rejected {
        kind: String,
        reason: String,
        /// Key of the rejection report, when one was written.
        report: Option<String>,
    },
    /// The object could not be read (404/403): permanent for the event, reported; an SQS
    /// message is still handed back so it reaches the dead-letter queue for a redrive.
    Unreadable {
        kind: String,
        reason: String,
        report: Option<String>,
    },
    /// Deliberately not processed (a folder marker, object changed since the event, …).
    Skipped(String),
    /// Not processed: the recursion guard (destination bucket or prefix, a bucket outside
    /// `SOURCE_BUCKETS`). Counted as skipped; a Batch task gets a permanent failure.
    Guarded(String),
    /// Not rendered again: its renditions are there, from this source version and this
    /// configuration (skip-unchanged).
    Unchanged(String),
    /// The source was deleted; these destination keys were deleted with it.
    Removed(Vec<String>),
    /// Transient failure (S3 5xx, throttling, timeouts, deadline): retry.
    Failed(String),
    /// A fault of ours (or of a codec library) on an image we accepted: retried like a transient
    /// failure, never reported as a rejection, never blamed on the upload.
    Internal(String),
}

impl Outcome {
    /// Short name for logs and tables.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Rendered(_) => "rendered",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Unreadable { .. } => "unreadable",
            Outcome::Skipped(_) | Outcome::Guarded(_) => "skipped",
            Outcome::Unchanged(_) => "unchanged",
            Outcome::Removed(_) => "deleted",
            Outcome::Failed(_) => "failed",
            Outcome::Internal(_) => "internal",
        }
    }
}

/// One object of the invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectReport {
    /// Index of the message (SQS) the object came from; 0 otherwise.
    pub message: usize,
    pub object: ObjectRef,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// Everything one invocation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub trigger: Trigger,
    /// SQS message ids, by message index (`None` for other triggers).
    pub message_ids: Vec<Option<String>>,
    pub objects: Vec<ObjectReport>,
    /// Records that could not be understood, by message index.
    pub malformed: Vec<(usize, String)>,
    /// Records acknowledged without work (test events, deletions, …).
    pub ignored: usize,
    /// For S3 Batch Operations: what the answer echoes.
    pub batch: Option<BatchJob>,
}

/// Longest `resultString` we send: it lands in a CSV completion report.
const MAX_RESULT_STRING: usize = 1024;

impl Report {
    /// Whether message `i` must be retried.
    fn message_failed(&self, i: usize) -> bool {
        self.malformed.iter().any(|(m, _)| *m == i)
            || self.objects.iter().any(|o| {
                o.message == i
                    && match &o.outcome {
                        Outcome::Failed(_) | Outcome::Internal(_) => true,
                        Outcome::Unreadable { .. } => self.trigger == Trigger::Sqs,
                        _ => false,
                    }
            })
    }

    /// The SQS `itemIdentifier`s of the messages to retry.
    pub fn batch_item_failures(&self) -> Vec<String> {
        (0..self.message_ids.len())
            .filter(|&i| self.message_failed(i))
            .filter_map(|i| self.message_ids[i].clone())
            .collect()
    }

    /// Reasons the invocation (or a message) must be retried.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .malformed
            .iter()
            .map(|(_, r)| format!("malformed record: {r}"))
            .collect();
        out.extend(self.objects.iter().filter_map(|o| match &o.outcome {
            Outcome::Failed(r) => Some(format!("s3://{}/{}: {r}", o.object.bucket, o.object.key)),
            Outcome::Internal(r) => Some(format!(
                "s3://{}/{}: internal error: {r}",
                o.object.bucket, o.object.key
            )),
            _ => None,
        }));
        out
    }

    /// How many objects ended in each outcome.
    pub fn count(&self, outcome: &str) -> usize {
        self.objects
            .iter()
            .filter(|o| o.outcome.name() == outcome)
            .count()
    }

    /// A short JSON summary (the answer for non-SQS triggers).
    pub fn summary(&self) -> Value {
        json!({
            "trigger": self.trigger.as_str(),
            "rendered": self.count("rendered"),
            "rejected": self.count("rejected"),
            "unreadable": self.count("unreadable"),
            "skipped": self.count("skipped"),
            "unchanged": self.count("unchanged"),
            "deleted": self.count("deleted"),
            "failed": self.count("failed"),
            "internal": self.count("internal"),
            "ignored": self.ignored,
        })
    }

    /// The invocation's answer: the partial batch response for SQS; for the other triggers
    /// the summary, or an error (so Lambda retries the event) if anything must be retried.
    pub fn response(&self) -> Result<Value, InvocationError> {
        if let Some(job) = &self.batch {
            return Ok(self.batch_response(job));
        }
        if self.trigger == Trigger::Sqs {
            let mut response = SqsBatchResponse::default();
            for id in self.batch_item_failures() {
                response.add_failure(id);
            }
            return serde_json::to_value(&response).map_err(|e| InvocationError {
                error_type: "Renditions.InternalError",
                message: format!("cannot serialise the SQS batch response: {e}"),
            });
        }
        let failures = self.failures();
        if failures.is_empty() {
            Ok(self.summary())
        } else {
            Err(InvocationError::retryable(format!(
                "{} record(s) must be retried: {}",
                failures.len(),
                failures.join("; ")
            )))
        }
    }
}

impl Report {
    /// Each task's result code and string (`Succeeded`, `TemporaryFailure` so Batch retries it,
    /// `PermanentFailure` with the reason), in task order.
    pub fn batch_results(&self) -> Vec<(String, &'static str, String)> {
        (0..self.message_ids.len())
            .map(|i| {
                let id = self.message_ids[i].clone().unwrap_or_default();
                let (code, text) = self.task_result(i);
                (id, code, one_line(&text, MAX_RESULT_STRING))
            })
            .collect()
    }

    fn task_result(&self, i: usize) -> (&'static str, String) {
        if let Some((_, reason)) = self.malformed.iter().find(|(m, _)| *m == i) {
            return ("PermanentFailure", format!("malformed task: {reason}"));
        }
        let Some(o) = self.objects.iter().find(|o| o.message == i) else {
            return ("Succeeded", "ignored".into());
        };
        match &o.outcome {
            Outcome::Rendered(r) => (
                "Succeeded",
                format!(
                    "rendered: {}",
                    r.renditions
                        .iter()
                        .map(|w| w.key.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ),
            Outcome::Unchanged(reason) => ("Succeeded", format!("unchanged: {reason}")),
            Outcome::Skipped(reason) => ("Succeeded", format!("skipped: {reason}")),
            Outcome::Removed(keys) => ("Succeeded", format!("deleted {} keys", keys.len())),
            Outcome::Guarded(reason) => ("PermanentFailure", format!("recursion guard: {reason}")),
            Outcome::Rejected { kind, reason, .. } | Outcome::Unreadable { kind, reason, .. } => {
                ("PermanentFailure", format!("{kind}: {reason}"))
            }
            Outcome::Failed(reason) => ("TemporaryFailure", reason.clone()),
            Outcome::Internal(reason) => ("TemporaryFailure", format!("internal error: {reason}")),
        }
    }

    fn batch_response(&self, job: &BatchJob) -> Value {
        let results: Vec<Value> = self
            .batch_results()
            .into_iter()
            .map(|(id, code, text)| json!({"taskId": id, "resultCode": code, "resultString": text}))
            .collect();
        json!({
            "invocationSchemaVersion": job.schema_version,
            // Every task gets a result; one without would be our bug, which a retry would not fix.
            "treatMissingKeysAs": "PermanentFailure",
            "invocationId": job.invocation_id,
            "results": results,
        })
    }
}

/// `text` on one line, at most `max` bytes (cut on a character boundary, `…` appended).
fn one_line(text: &str, max: usize) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() > max {
        let mut cut = max.saturating_sub(3);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// An invocation that failed as a whole (Lambda retries asynchronous events).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvocationError {
    /// `errorType` reported to Lambda.
    pub error_type: &'static str,
    pub message: String,
}

impl InvocationError {
    pub fn retryable(message: String) -> Self {
        InvocationError {
            error_type: "Renditions.RetryableFailure",
            message,
        }
    }
}

impl From<EventError> for InvocationError {
    fn from(e: EventError) -> Self {
        InvocationError {
            error_type: "Renditions.UnrecognisedEvent",
            message: e.to_string(),
        }
    }
}

impl From<InvocationError> for lambda_runtime::Diagnostic {
    fn from(e: InvocationError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type.to_owned(),
            error_message: e.message,
        }
    }
}
