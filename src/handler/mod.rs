//! One invocation, independent of the Lambda runtime: payload → objects → per object download,
//! render (blocking pool), upload → the answer. Records run concurrently within the limits in
//! [`LambdaSettings`], and each record's [`Outcome`] decides how the invocation answers (success,
//! SQS partial batch failure, or an error Lambda retries).
//!
//! The function ([`crate::function::App`]) and the demo call [`Handler::process`] the same way;
//! the store is generic so unit tests run it against the in-memory fake.

mod freshness;
mod manifest;
mod object;
mod outcome;
mod rejection;
mod removal;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Semaphore;
use tracing::field::Empty;
use tracing::{Instrument, error, info, warn};

use crate::cancel::Cancel;
use crate::event::{self, Entry, EventError, ObjectRef, ParsedEvent};
pub use crate::manifest::rfc3339;
use crate::pipeline::Pipeline;
use crate::settings::LambdaSettings;
use crate::store::ObjectStore;
use crate::telemetry::Metrics;
pub use outcome::{InvocationError, ObjectReport, Outcome, Rendered, Report, Written};

/// Time kept back from the deadline so the answer (and batch failures) still gets out when
/// in-flight records are cut off.
const ANSWER_RESERVE: Duration = Duration::from_millis(500);

/// The shared, cheap-to-clone handler: store, pipeline, settings and the render slots.
pub struct Handler<S> {
    store: Arc<S>,
    pipeline: Arc<Pipeline>,
    settings: Arc<LambdaSettings>,
    renders: Arc<Semaphore>,
    /// The rendering configuration's digest, written on every object (skip-unchanged).
    digest: Arc<str>,
}

/// What to do with one object of the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Render it; first check whether that was already done (`check_fresh`: Batch tasks
    /// without `force`, SQS messages delivered before).
    Render { check_fresh: bool },
    /// Its source was deleted: delete its renditions (`ON_SOURCE_DELETE=delete`).
    Remove,
}

impl<S> Clone for Handler<S> {
    fn clone(&self) -> Self {
        Handler {
            store: Arc::clone(&self.store),
            pipeline: Arc::clone(&self.pipeline),
            settings: Arc::clone(&self.settings),
            renders: Arc::clone(&self.renders),
            digest: Arc::clone(&self.digest),
        }
    }
}

impl<S: ObjectStore> Handler<S> {
    pub fn new(store: Arc<S>, pipeline: Arc<Pipeline>, settings: Arc<LambdaSettings>) -> Self {
        let renders = Arc::new(Semaphore::new(settings.concurrency.renders.max(1)));
        let digest = pipeline.digest().into();
        Handler {
            store,
            pipeline,
            settings,
            renders,
            digest,
        }
    }

    /// The digest of the rendering configuration, as written in every object's
    /// `x-amz-meta-config-digest`.
    pub fn config_digest(&self) -> &str {
        &self.digest
    }

    pub fn settings(&self) -> &LambdaSettings {
        &self.settings
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Processes one invocation payload. Records run concurrently (up to
    /// `concurrency.records`); none is started with less than `deadline_margin` left, and
    /// records still running `ANSWER_RESERVE` before the deadline are cut off as failed.
    pub async fn process(
        &self,
        payload: &Value,
        deadline: Option<Instant>,
        metrics: &Metrics,
    ) -> Result<Report, EventError> {
        let parsed = event::parse(payload)?;
        Ok(self.process_parsed(parsed, deadline, metrics).await)
    }

    /// [`Handler::process`] for an already parsed event.
    pub async fn process_parsed(
        &self,
        parsed: ParsedEvent,
        deadline: Option<Instant>,
        metrics: &Metrics,
    ) -> Report {
        let mut report = Report {
            trigger: parsed.trigger,
            message_ids: parsed.messages.iter().map(|m| m.id.clone()).collect(),
            objects: Vec::new(),
            malformed: Vec::new(),
            ignored: 0,
            batch: parsed.batch.clone(),
        };
        let force = parsed.batch.as_ref().is_some_and(|b| b.force);
        let batch = parsed.batch.is_some();
        let mut jobs = Vec::new();
        for (i, message) in parsed.messages.into_iter().enumerate() {
            let check_fresh = (batch && !force) || message.redelivered;
            for entry in message.entries {
                match entry {
                    Entry::Object(o) => jobs.push((i, o, Work::Render { check_fresh })),
                    Entry::Removed(o) if self.settings.delete_renditions => {
                        jobs.push((i, o, Work::Remove));
                    }
                    Entry::Removed(o) => {
                        info!(trigger = parsed.trigger.as_str(), bucket = %o.bucket, key = %o.key, reason = "ON_SOURCE_DELETE=keep", "ignoring a deletion");
                        report.ignored += 1;
                    }
                    Entry::Ignored(reason) => {
                        info!(trigger = parsed.trigger.as_str(), message_id = message.id.as_deref(), reason = %reason, "ignoring record");
                        report.ignored += 1;
                    }
                    Entry::Malformed(reason) => {
                        error!(trigger = parsed.trigger.as_str(), message_id = message.id.as_deref(), reason = %reason, "malformed record");
                        report.malformed.push((i, reason));
                    }
                }
            }
        }
        let limit = self.settings.concurrency.records.max(1);
        let mut done: Vec<(usize, ObjectReport)> =
            futures_util::stream::iter(jobs.into_iter().enumerate())
                .map(|(order, (message, object, work))| async move {
                    (
                        order,
                        self.process_record(message, object, work, deadline, metrics)
                            .await,
                    )
                })
                .buffer_unordered(limit)
                .collect()
                .await;
        done.sort_by_key(|(order, _)| *order);
        report.objects = done.into_iter().map(|(_, r)| r).collect();
        report
    }

    async fn process_record(
        &self,
        message: usize,
        object: ObjectRef,
        work: Work,
        deadline: Option<Instant>,
        metrics: &Metrics,
    ) -> ObjectReport {
        let started = Instant::now();
        let outcome = self.record_outcome(&object, work, deadline, metrics).await;
        ObjectReport {
            message,
            object,
            outcome,
            elapsed: started.elapsed(),
        }
    }

    async fn record_outcome(
        &self,
        object: &ObjectRef,
        work: Work,
        deadline: Option<Instant>,
        metrics: &Metrics,
    ) -> Outcome {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < self.settings.deadline_margin {
                let reason = format!(
                    "not started: {} ms left before the deadline (margin {} ms)",
                    left.as_millis(),
                    self.settings.deadline_margin.as_millis()
                );
                warn!(bucket = %object.bucket, key = %object.key, reason = %reason, "record failed as transient");
                return Outcome::Failed(reason);
            }
        }
        if let Some(reason) = self.settings.recursion_skip(&object.bucket, &object.key) {
            info!(bucket = %object.bucket, key = %object.key, reason = %reason, "skipping object");
            return Outcome::Guarded(reason);
        }
        let check_fresh = match work {
            Work::Remove => return self.remove(object, metrics).await,
            Work::Render { check_fresh } => check_fresh,
        };
        if object.key.ends_with('/') {
            let reason = "a folder marker, not an image".to_owned();
            info!(bucket = %object.bucket, key = %object.key, reason = %reason, "skipping object");
            return Outcome::Skipped(reason);
        }
        let span = tracing::info_span!(
            target: "renditions::xray",
            "object",
            aws.s3.bucket = %object.bucket,
            aws.s3.key = %object.key,
            outcome = Empty,
            format = Empty,
            width = Empty,
            height = Empty,
            renditions = Empty,
            bytes_in = Empty,
            bytes_out = Empty,
            error = Empty,
            fault = Empty,
            exception.message = Empty,
        );
        // The render stops itself at the cut-off (and when cancelled), so a record cut off here
        // does not keep its render slot, memory and CPU into the next invocation.
        let cutoff = deadline.map(|d| d.checked_sub(ANSWER_RESERVE).unwrap_or(d));
        let cancel = Cancel::at(cutoff);
        let work = self
            .object_work(object, check_fresh, metrics, span.clone(), cancel.clone())
            .instrument(span.clone());
        let outcome = match cutoff {
            Some(cutoff) => {
                match tokio::time::timeout_at(tokio::time::Instant::from_std(cutoff), work).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        cancel.cancel();
                        let reason =
                            "cut off: did not finish before the invocation deadline".to_owned();
                        let _g = span.enter();
                        warn!(bucket = %object.bucket, key = %object.key, reason = %reason, "record failed as transient");
                        Outcome::Failed(reason)
                    }
                }
            }
            None => work.await,
        };
        span.record("outcome", outcome.name());
        match &outcome {
            Outcome::Failed(reason) | Outcome::Internal(reason) => {
                span.record("fault", true);
                span.record("exception.message", reason.as_str());
            }
            Outcome::Rejected { reason, .. } | Outcome::Unreadable { reason, .. } => {
                span.record("error", true);
                span.record("exception.message", reason.as_str());
            }
            _ => {}
        }
        outcome
    }
}

#[cfg(test)]
mod tests;
