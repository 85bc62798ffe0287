//! OpenTelemetry traces, exported over OTLP (gRPC or HTTP/protobuf). A span ends into a
//! bounded queue; one task batches and exports off the connection path. A full queue or a
//! collector that is down costs a dropped-span count, never a connection's time.
//!
//! Our own small span model rather than the OpenTelemetry SDK: a connection's span lives
//! for hours on the connection record, is ended and continued (`span_max_duration`), and an
//! unsampled span must cost no more than its two ids.

mod export;
mod logs;
mod otlp;
mod span;

pub use logs::LogSink;

pub use span::{Attributes, Span, SpanContext, SpanKind, Value};

use span::Recording;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// Spans (or log records) by fate, for `causeway_trace_spans_*` and
/// `causeway_access_log_otlp_*`.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub exported: AtomicU64,
    /// The queue was full (the collector slow or down for long).
    pub dropped_queue_full: AtomicU64,
    /// The collector refused or did not answer an export in time.
    pub dropped_export_failed: AtomicU64,
}

#[derive(Clone, Debug)]
pub struct Tracer(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    sampler: config::Sampler,
    span_max_duration: Duration,
    queue: mpsc::Sender<export::Message<export::Ended>>,
    stats: Arc<ExportStats>,
}

impl Tracer {
    /// Starts the exporter task; call inside a tokio runtime. Fails on unreadable TLS files
    /// or an unusable endpoint; a collector that is down is not a failure.
    pub fn start(config: &config::Tracing) -> Result<Tracer, String> {
        let transport = otlp::Transport::new(&config.exporter)?;
        let (queue, receiver) = mpsc::channel(config.batch.max_queue_size);
        let stats = Arc::new(ExportStats::default());
        let exporter = export::Exporter::<export::Spans>::new(config, transport, stats.clone());
        tokio::spawn(exporter.run(receiver));
        Ok(Tracer(Arc::new(Inner {
            sampler: config.sampler,
            span_max_duration: config.span_max_duration,
            queue,
            stats,
        })))
    }

    pub fn stats(&self) -> &ExportStats {
        &self.0.stats
    }

    /// How long a connection's span runs before it is ended and continued.
    pub fn span_max_duration(&self) -> Duration {
        self.0.span_max_duration
    }

    /// A span that starts a trace, or continues `parent`'s (a trusted caller's): sampled as
    /// the caller decided when the sampler is parent-based, else by the trace id's ratio.
    pub fn start_span(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<&SpanContext>,
    ) -> Span {
        let trace_id = parent.map_or_else(trace_id, |p| p.trace_id);
        let sampled = match parent {
            Some(p) if self.0.sampler.parent_based => p.sampled,
            _ => ratio_says(self.0.sampler.ratio, &trace_id),
        };
        let context = SpanContext {
            trace_id,
            span_id: span_id(),
            sampled,
            state: parent.and_then(|p| p.state.clone()),
        };
        let recording = sampled.then(|| {
            let parent = parent.map(|p| p.span_id);
            Box::new(Recording::new(self.clone(), parent, name.into(), kind))
        });
        Span::new(context, recording)
    }

    /// Queues an ended span for export; a full queue drops it (counted).
    fn finish(self, context: SpanContext, recording: Box<Recording>) {
        let ended = export::Ended {
            context,
            recording,
            end: SystemTime::now(),
        };
        if self.0.queue.try_send(export::Message::Item(ended)).is_err() {
            self.0.stats.dropped_queue_full.fetch_add(1, Relaxed);
        }
    }

    /// Exports what is queued now, waiting at most `timeout` (at shutdown: the spans of
    /// the connections the drain just ended).
    pub async fn flush(&self, timeout: Duration) {
        let (done, flushed) = oneshot::channel();
        let queued = self.0.queue.send(export::Message::Flush(done));
        let _ = tokio::time::timeout(timeout, async {
            if queued.await.is_ok() {
                let _ = flushed.await;
            }
        })
        .await;
    }
}

/// The TraceIdRatioBased decision: the trace id's last 8 bytes below `ratio` of their range,
/// so every hop with the same ratio decides alike.
fn ratio_says(ratio: f64, trace_id: &[u8; 16]) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let low = u64::from_be_bytes(trace_id[8..].try_into().unwrap_or_default());
    (low as f64) < ratio * (u64::MAX as f64)
}

fn trace_id() -> [u8; 16] {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

pub(crate) fn span_id() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_keeps_about_its_share_and_the_ends_are_exact() {
        let kept = (0..10_000).filter(|_| ratio_says(0.1, &trace_id())).count();
        assert!((700..1300).contains(&kept), "{kept}");
        assert!(!ratio_says(0.0, &trace_id()));
        assert!(ratio_says(1.0, &trace_id()));
    }
}
