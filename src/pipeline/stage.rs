//! The pipeline's stages as a type: what the render records, what the JSON timings and the EMF
//! metrics are keyed by, and what X-Ray shows as subsegments. A stage added here shows up in
//! all three, and a `match` on [`Stage`] that misses one does not compile.

use std::time::{Duration, Instant};

/// One step of [`super::Pipeline::render`], in the order they run for one rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Decode,
    Colour,
    Resize,
    Orient,
    Watermark,
    Encode,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 6] = [
        Stage::Decode,
        Stage::Colour,
        Stage::Resize,
        Stage::Orient,
        Stage::Watermark,
        Stage::Encode,
    ];

    /// The stage's name in logs, JSON timings, metrics and X-Ray.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Colour => "colour",
            Stage::Resize => "resize",
            Stage::Orient => "orient",
            Stage::Watermark => "watermark",
            Stage::Encode => "encode",
        }
    }
}

/// Wall time spent in each stage for one image.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimings {
    pub decode: Duration,
    pub colour: Duration,
    pub resize: Duration,
    pub orient: Duration,
    pub watermark: Duration,
    pub encode: Duration,
}

impl StageTimings {
    /// Time spent in `stage`.
    pub fn get(&self, stage: Stage) -> Duration {
        match stage {
            Stage::Decode => self.decode,
            Stage::Colour => self.colour,
            Stage::Resize => self.resize,
            Stage::Orient => self.orient,
            Stage::Watermark => self.watermark,
            Stage::Encode => self.encode,
        }
    }

    pub fn total(&self) -> Duration {
        Stage::ALL.iter().map(|&s| self.get(s)).sum()
    }

    /// (stage, milliseconds) pairs in pipeline order.
    pub fn as_millis(&self) -> [(Stage, f64); 6] {
        Stage::ALL.map(|s| (s, self.get(s).as_secs_f64() * 1000.0))
    }
}

/// When one stage ran, relative to the start of [`super::Pipeline::render`]: what X-Ray shows as
/// the stage's subsegment. Stages run in this order: decode, colour, resize (every rendition,
/// largest first), then orient, watermark and encode for each rendition in turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpan {
    pub stage: Stage,
    /// Index into [`super::RenderOutput::renditions`] for per-rendition stages.
    pub rendition: Option<usize>,
    /// Offset from the start of the render.
    pub start: Duration,
    pub duration: Duration,
}

/// Records [`StageSpan`]s against one origin.
pub(super) struct StageClock {
    origin: Instant,
    pub(super) spans: Vec<StageSpan>,
}

impl StageClock {
    pub(super) fn new() -> Self {
        StageClock {
            origin: Instant::now(),
            spans: Vec::with_capacity(16),
        }
    }

    /// Records `stage` as having run from `started` until now; returns its duration.
    pub(super) fn record(
        &mut self,
        stage: Stage,
        rendition: Option<usize>,
        started: Instant,
    ) -> Duration {
        let duration = started.elapsed();
        self.spans.push(StageSpan {
            stage,
            rendition,
            start: started.saturating_duration_since(self.origin),
            duration,
        });
        duration
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_are_keyed_by_stage() {
        let t = StageTimings {
            decode: Duration::from_millis(3),
            encode: Duration::from_millis(2),
            ..StageTimings::default()
        };
        assert_eq!(t.total(), Duration::from_millis(5));
        let ms = t.as_millis();
        assert_eq!(ms[0], (Stage::Decode, 3.0));
        assert_eq!(ms[5], (Stage::Encode, 2.0));
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "decode",
                "colour",
                "resize",
                "orient",
                "watermark",
                "encode"
            ]
        );
    }
}
