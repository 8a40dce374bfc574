//! How many streams push at once, and what a proxy that does not ACK costs
//! the others.
//!
//! A change reaches every stream of a view at the same moment. Pushed all
//! together, every response would be in flight at once and every proxy's
//! turn would end late (docs/performance-notes.md, Push and fan-out: 4,096
//! slots made the fleet's p99 worse than 128, and its peak memory larger).
//! So a stream takes one of a bounded number of slots (`--push-slots`) to
//! push, and gives it back once its proxy has applied everything it was
//! sent; the fleet follows in turns.
//!
//! A proxy that does not ACK (paused, throttled, or gone quiet behind a live
//! connection) must not keep a slot the others wait for. A slot is held at
//! most `--push-ack-timeout`; a stream whose slot ran out then pushes without
//! one until its proxy has caught up. Stuck proxies cost the others at most
//! one timeout, once, however many changes follow. Each stream still keeps
//! only the latest state it owes its proxy, so going unpaced does not let
//! its memory grow.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore};
use tracing::debug;

use crate::metrics::XdsMetrics;

/// The slots shared by every stream of the server.
#[derive(Debug)]
pub struct PushSlots {
    slots: Arc<Semaphore>,
    ack_timeout: Duration,
    metrics: Arc<XdsMetrics>,
}

impl PushSlots {
    pub fn new(slots: usize, ack_timeout: Duration, metrics: Arc<XdsMetrics>) -> PushSlots {
        PushSlots {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            ack_timeout,
            metrics,
        }
    }

    /// Waits for a slot. It is given back when the returned sender fires or
    /// is dropped, or when the ACK timeout runs out (the sender then reports
    /// closed).
    async fn take(&self) -> Option<oneshot::Sender<()>> {
        let asked = tokio::time::Instant::now();
        let permit = self.slots.clone().acquire_owned().await.ok()?;
        self.metrics.queued(asked.elapsed());
        self.metrics.slot_taken();
        let (done, caught_up) = oneshot::channel::<()>();
        let (timeout, metrics) = (self.ack_timeout, self.metrics.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let timed_out = tokio::time::timeout(timeout, caught_up).await.is_err();
            metrics.slot_given_back(timed_out);
        });
        Some(done)
    }
}

/// One stream's place in the turns.
#[derive(Debug, Default)]
pub struct StreamSlot {
    /// The slot held; fires to give it back.
    slot: Option<oneshot::Sender<()>>,
    /// A slot ran out before the proxy caught up: push without one.
    unpaced: bool,
}

impl StreamSlot {
    /// Before pushing: waits for a slot, unless the stream holds one or its
    /// proxy is behind on a slot that ran out.
    pub async fn before_push(&mut self, slots: &PushSlots) {
        if self.slot.as_ref().is_some_and(|s| s.is_closed()) {
            self.slot = None;
            self.unpaced = true;
            debug!("no ACK within the push slot's time: pushing without a slot until the proxy catches up");
        }
        if self.slot.is_none() && !self.unpaced {
            self.slot = slots.take().await;
        }
    }

    /// The proxy has applied everything it was sent: the slot goes to the
    /// next stream, and the stream's next push waits its turn again.
    pub fn caught_up(&mut self) {
        if let Some(done) = self.slot.take() {
            let _ = done.send(());
        }
        self.unpaced = false;
    }

    /// Whether the stream holds a slot.
    #[cfg(test)]
    fn holds_slot(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| !s.is_closed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(n: usize, ack_timeout: Duration) -> (PushSlots, Arc<XdsMetrics>) {
        let metrics = Arc::new(XdsMetrics::unregistered());
        (PushSlots::new(n, ack_timeout, metrics.clone()), metrics)
    }

    fn timeouts(metrics: &XdsMetrics) -> u64 {
        metrics.push_ack_timeouts()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_caught_up_gives_its_slot_to_the_next() {
        let (slots, metrics) = slots(1, Duration::from_secs(5));
        let (mut a, mut b) = (StreamSlot::default(), StreamSlot::default());
        a.before_push(&slots).await;
        assert!(a.holds_slot());
        a.caught_up();
        assert!(!a.holds_slot());
        // The permit goes back when the slot's task sees the catch-up.
        tokio::time::timeout(Duration::from_millis(10), b.before_push(&slots))
            .await
            .expect("the slot is free");
        assert!(b.holds_slot());
        assert_eq!(timeouts(&metrics), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_stream_waits_out_one_timeout_then_pushes_without_a_slot() {
        let (slots, metrics) = slots(1, Duration::from_secs(5));
        let (mut stuck, mut other) = (StreamSlot::default(), StreamSlot::default());
        stuck.before_push(&slots).await;
        // The other stream waits for the slot until the stuck one's runs out.
        let start = tokio::time::Instant::now();
        other.before_push(&slots).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(timeouts(&metrics), 1);
        // The stuck stream's next push takes no slot: it does not wait, and
        // the other stream keeps the slot it holds.
        tokio::time::timeout(Duration::from_millis(10), stuck.before_push(&slots))
            .await
            .expect("no wait for a slot");
        assert!(!stuck.holds_slot());
        assert!(other.holds_slot());
        other.caught_up();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(timeouts(&metrics), 1);
        // Once its proxy has caught up, it waits its turn again.
        stuck.caught_up();
        stuck.before_push(&slots).await;
        assert!(stuck.holds_slot());
    }
}
