//! The export task: ended spans (or log records) gathered into batches (full, or after the
//! schedule delay), turned into OTLP and sent; a failed batch is counted as dropped, never
//! retried (a collector that is down must not grow our memory).

use super::ExportStats;
use super::otlp::Transport;
use super::span::{Recording, SpanContext, SpanKind, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as proto;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

pub(super) struct Ended {
    pub context: SpanContext,
    pub recording: Box<Recording>,
    pub end: SystemTime,
}

pub(super) enum Message<T> {
    Item(T),
    /// Export what is gathered now, then say so.
    Flush(oneshot::Sender<()>),
}

/// One kind of telemetry the export task carries: spans, or log records.
pub(super) trait Signal: Send + 'static {
    /// What is queued (cheap to make on a connection's path).
    type Item: Send + 'static;
    /// Its OTLP form, made by the export task.
    type Record: Send + 'static;
    const WHAT: &'static str;
    fn record(item: Self::Item) -> Self::Record;
    fn send(
        transport: &mut Transport,
        resource: Resource,
        scope: InstrumentationScope,
        records: Vec<Self::Record>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Spans.
pub(super) struct Spans;

impl Signal for Spans {
    type Item = Ended;
    type Record = proto::Span;
    const WHAT: &'static str = "spans";

    fn record(item: Ended) -> proto::Span {
        to_proto(item)
    }

    async fn send(
        transport: &mut Transport,
        resource: Resource,
        scope: InstrumentationScope,
        spans: Vec<proto::Span>,
    ) -> Result<(), String> {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![proto::ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![proto::ScopeSpans {
                    scope: Some(scope),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        transport.export(request).await
    }
}

pub(super) struct Exporter<S: Signal> {
    transport: Transport,
    resource: Resource,
    max_batch: usize,
    delay: Duration,
    stats: Arc<ExportStats>,
    signal: PhantomData<S>,
}

impl<S: Signal> Exporter<S> {
    pub fn new(config: &config::Tracing, transport: Transport, stats: Arc<ExportStats>) -> Self {
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
            signal: PhantomData,
        }
    }

    /// Until every sender is gone: wait for an item, gather a batch, export it.
    pub async fn run(mut self, mut queue: mpsc::Receiver<Message<S::Item>>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = queue.recv().await {
            let mut flushed = Self::take(first, &mut batch);
            if flushed.is_none() && batch.len() < self.max_batch {
                let deadline = tokio::time::sleep(self.delay);
                tokio::pin!(deadline);
                while batch.len() < self.max_batch && flushed.is_none() {
                    tokio::select! {
                        () = &mut deadline => break,
                        next = queue.recv() => match next {
                            Some(m) => flushed = Self::take(m, &mut batch),
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

    fn take(message: Message<S::Item>, batch: &mut Vec<S::Record>) -> Option<oneshot::Sender<()>> {
        match message {
            Message::Item(item) => {
                batch.push(S::record(item));
                None
            }
            Message::Flush(done) => Some(done),
        }
    }

    async fn export(&mut self, batch: &mut Vec<S::Record>) {
        if batch.is_empty() {
            return;
        }
        let records = std::mem::take(batch);
        let count = records.len() as u64;
        let scope = InstrumentationScope {
            name: "causeway".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        };
        let resource = self.resource.clone();
        match S::send(&mut self.transport, resource, scope, records).await {
            Ok(()) => self.stats.exported.fetch_add(count, Relaxed),
            Err(error) => {
                tracing::debug!(%error, count, "export of {} failed", S::WHAT);
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

pub(super) fn nanos(at: SystemTime) -> u64 {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

pub(super) fn key_value(key: &'static str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(any(value)),
        ..Default::default()
    }
}

pub(super) fn any(value: Value) -> AnyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s.into_owned()),
        Value::Int(i) => any_value::Value::IntValue(i),
        Value::Bool(b) => any_value::Value::BoolValue(b),
    };
    AnyValue { value: Some(value) }
}
