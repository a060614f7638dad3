//! Stopping a render that nobody waits for any more. The handler gives each render a [`Cancel`]
//! with the invocation's deadline; the pipeline checks it between stages and renditions, and the
//! codecs inside their long loops (per batch of JPEG scanlines, per progressive scan), so a render
//! cut off at the deadline gives back its render slot, its memory and its CPU within
//! milliseconds instead of running on into the next invocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A cancellation flag plus an optional deadline; cheap to clone and to check.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl Cancel {
    /// Never cancelled (the CLI, benches, tests).
    pub fn never() -> Self {
        Cancel::default()
    }

    /// Cancelled at `deadline`, or earlier by [`Cancel::cancel`].
    pub fn at(deadline: Option<Instant>) -> Self {
        Cancel {
            flag: Arc::default(),
            deadline,
        }
    }

    /// Cancels every clone of this token.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// Whether the work should stop now.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The deadline, if any.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cancelled_by_flag_or_deadline() {
        let c = Cancel::never();
        assert!(!c.is_cancelled());
        let clone = c.clone();
        c.cancel();
        assert!(clone.is_cancelled());
        let past = Cancel::at(Some(Instant::now() - Duration::from_millis(1)));
        assert!(past.is_cancelled());
        let future = Cancel::at(Some(Instant::now() + Duration::from_secs(60)));
        assert!(!future.is_cancelled());
    }
}
