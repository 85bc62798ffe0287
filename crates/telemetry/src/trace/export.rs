//! The export task: ended spans gathered into batches (full, or after the schedule delay),
//! turned into OTLP and sent; a failed batch is counted as dropped, never retried (a
//! collector that is down must not grow our memory).

use super::TraceStats;
use super::otlp::Transport;
use super::span::{Recording, SpanContext, SpanKind, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as proto;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

pub(super) struct Ended {
    pub context: SpanContext,
    pub recording: Box<Recording>,
    pub end: SystemTime,
}

pub(super) enum Message {
    Span(Ended),
    /// Export what is gathered now, then say so.
    Flush(oneshot::Sender<()>),
}

pub(super) struct Exporter {
    transport: Transport,
    resource: Resource,
    max_batch: usize,
    delay: Duration,
    stats: Arc<TraceStats>,
}

impl Exporter {
    pub fn new(config: &config::Tracing, transport: Transport, stats: Arc<TraceStats>) -> Self {
        let mut attributes = vec![
            key_value(
                "service.name",
                Value::Str(config.service_name.clone().into()),
            ),
            key_value(
                "service.version",
                Value::Str(env!("CARGO_PKG_VERSION").into()),
            ),
            key_value("telemetry.sdk.name", Value::Str("causeway".into())),
            key_value("telemetry.sdk.language", Value::Str("rust".into())),
        ];
        for (k, v) in &config.resource {
            attributes.push(KeyValue {
                key: k.clone(),
                value: Some(any(Value::Str(v.clone().into()))),
                ..Default::default()
            });
        }
        Exporter {
            transport,
            resource: Resource {
                attributes,
                ..Default::default()
            },
            max_batch: config.batch.max_export_batch_size,
            delay: config.batch.schedule_delay,
            stats,
        }
    }

    /// Until every sender is gone: wait for a span, gather a batch, export it.
    pub async fn run(mut self, mut queue: mpsc::Receiver<Message>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = queue.recv().await {
            let mut flushed = self.take(first, &mut batch);
            if flushed.is_none() && batch.len() < self.max_batch {
                let deadline = tokio::time::sleep(self.delay);
                tokio::pin!(deadline);
                while batch.len() < self.max_batch && flushed.is_none() {
                    tokio::select! {
                        () = &mut deadline => break,
                        next = queue.recv() => match next {
                            Some(m) => flushed = self.take(m, &mut batch),
                            None => break,
                        },
                    }
                }
            }
            self.export(&mut batch).await;
            if let Some(done) = flushed {
                let _ = done.send(());
            }
        }
        self.export(&mut batch).await;
    }

    fn take(&self, message: Message, batch: &mut Vec<proto::Span>) -> Option<oneshot::Sender<()>> {
        match message {
            Message::Span(ended) => {
                batch.push(to_proto(ended));
                None
            }
            Message::Flush(done) => Some(done),
        }
    }

    async fn export(&mut self, batch: &mut Vec<proto::Span>) {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::take(batch);
        let count = spans.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![proto::ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![proto::ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "causeway".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        match self.transport.export(request).await {
            Ok(()) => self.stats.exported.fetch_add(count, Relaxed),
            Err(error) => {
                tracing::debug!(%error, spans = count, "span export failed");
                self.stats.dropped_export_failed.fetch_add(count, Relaxed)
            }
        };
    }
}

fn to_proto(ended: Ended) -> proto::Span {
    let Ended {
        context,
        recording: r,
        end,
    } = ended;
    let r = *r;
    let kind = match r.kind {
        SpanKind::Internal => proto::span::SpanKind::Internal,
        SpanKind::Server => proto::span::SpanKind::Server,
        SpanKind::Client => proto::span::SpanKind::Client,
    };
    let status = r.error.map(|message| proto::Status {
        message,
        code: proto::status::StatusCode::Error as i32,
    });
    proto::Span {
        trace_id: context.trace_id.to_vec(),
        span_id: context.span_id.to_vec(),
        trace_state: context.state.as_deref().unwrap_or_default().to_string(),
        parent_span_id: r.parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags: 0x101,
        name: r.name.into_owned(),
        kind: kind as i32,
        start_time_unix_nano: nanos(r.start),
        end_time_unix_nano: nanos(end),
        attributes: r
            .attributes
            .into_iter()
            .map(|(k, v)| key_value(k, v))
            .collect(),
        events: (r.events.into_iter())
            .map(|e| proto::span::Event {
                time_unix_nano: nanos(e.at),
                name: e.name.into(),
                attributes: e
                    .attributes
                    .into_iter()
                    .map(|(k, v)| key_value(k, v))
                    .collect(),
                dropped_attributes_count: 0,
            })
            .collect(),
        links: (r.links.into_iter())
            .map(|l| proto::span::Link {
                trace_id: l.trace_id.to_vec(),
                span_id: l.span_id.to_vec(),
                trace_state: l.state.as_deref().unwrap_or_default().to_string(),
                flags: 0x100 | u32::from(l.sampled),
                ..Default::default()
            })
            .collect(),
        status,
        ..Default::default()
    }
}

fn nanos(at: SystemTime) -> u64 {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

fn key_value(key: &'static str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(any(value)),
        ..Default::default()
    }
}

fn any(value: Value) -> AnyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s.into_owned()),
        Value::Int(i) => any_value::Value::IntValue(i),
        Value::Bool(b) => any_value::Value::BoolValue(b),
    };
    AnyValue { value: Some(value) }
}
