use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS: usize = 64;

/// Recent run times of one model, per input size class (powers of two of
/// the input bytes). The NIF reads it to decide whether a run is short
/// enough for a normal scheduler or belongs on a dirty one.
#[derive(Debug)]
pub struct RunTimer {
    ewma_ns: [AtomicU64; BUCKETS],
}

impl Default for RunTimer {
    fn default() -> Self {
        Self {
            ewma_ns: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl RunTimer {
    fn bucket(input_bytes: usize) -> usize {
        (usize::BITS - input_bytes.leading_zeros()) as usize % BUCKETS
    }

    /// Folds one measurement into the moving average (weight 1/8). A sample
    /// counts for at most twice the current estimate, so one run that the OS
    /// preempted for milliseconds cannot send the next runs to a dirty
    /// scheduler, while a model that really got slower still moves the
    /// estimate up within a few runs.
    pub fn record(&self, input_bytes: usize, nanos: u64) {
        let slot = &self.ewma_ns[Self::bucket(input_bytes)];
        let old = slot.load(Ordering::Relaxed);
        let new = if old == 0 {
            nanos
        } else {
            (old * 7 + nanos.min(old * 2)) / 8
        };
        slot.store(new.max(1), Ordering::Relaxed);
    }

    /// The expected run time for inputs of this size, once measured.
    pub fn estimate(&self, input_bytes: usize) -> Option<u64> {
        match self.ewma_ns[Self::bucket(input_bytes)].load(Ordering::Relaxed) {
            0 => None,
            ns => Some(ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_until_measured_then_averaged() {
        let timer = RunTimer::default();
        assert_eq!(timer.estimate(320), None);
        timer.record(320, 8_000);
        assert_eq!(timer.estimate(320), Some(8_000));
        timer.record(300, 16_000);
        assert_eq!(timer.estimate(320), Some(9_000));
        assert_eq!(timer.estimate(10_240), None, "other sizes are separate");
    }

    #[test]
    fn one_outlier_moves_the_estimate_a_little_a_trend_moves_it_all_the_way() {
        let timer = RunTimer::default();
        timer.record(320, 10_000);
        timer.record(320, 5_000_000);
        assert_eq!(timer.estimate(320), Some(11_250));
        for _ in 0..40 {
            timer.record(320, 400_000);
        }
        assert!(timer.estimate(320).unwrap() > 300_000);
    }
}
