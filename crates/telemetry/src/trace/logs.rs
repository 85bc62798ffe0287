//! Access-log lines as OTLP log records, to the tracing collector: the JSON line as the
//! body, the connection's trace and span ids on the record, so a log backend links each
//! line to its trace. Queued and batched like spans, off the connection path.

use super::export::{self, Exporter, Message, Signal, nanos};
use super::otlp::Transport;
use super::{ExportStats, SpanContext};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
use opentelemetry_proto::tonic::logs::v1 as proto;
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Where the access log sends its lines as OTLP log records.
#[derive(Clone, Debug)]
pub struct LogSink {
    queue: mpsc::Sender<Message<Line>>,
    stats: Arc<ExportStats>,
}

pub(super) struct Line {
    at: SystemTime,
    body: String,
    trace: Option<SpanContext>,
}

impl LogSink {
    /// Starts the export task to `config`'s collector; call inside a tokio runtime.
    pub fn start(config: &config::Tracing) -> Result<LogSink, String> {
        let transport = Transport::new(&config.exporter)?;
        let (queue, receiver) = mpsc::channel(config.batch.max_queue_size);
        let stats = Arc::new(ExportStats::default());
        let exporter = Exporter::<Records>::new(config, transport, stats.clone());
        tokio::spawn(exporter.run(receiver));
        Ok(LogSink { queue, stats })
    }

    /// Queues a line (with the trace it belongs to); a full queue drops it (counted).
    pub fn emit(&self, body: String, trace: Option<SpanContext>) {
        let line = Line {
            at: SystemTime::now(),
            body,
            trace,
        };
        if self.queue.try_send(Message::Item(line)).is_err() {
            self.stats.dropped_queue_full.fetch_add(1, Relaxed);
        }
    }

    pub fn stats(&self) -> &ExportStats {
        &self.stats
    }
}

/// Log records.
pub(super) struct Records;

impl Signal for Records {
    type Item = Line;
    type Record = proto::LogRecord;
    const WHAT: &'static str = "log records";

    fn record(line: Line) -> proto::LogRecord {
        let (trace_id, span_id, flags) = match &line.trace {
            Some(c) => (
                c.trace_id.to_vec(),
                c.span_id.to_vec(),
                u32::from(c.sampled),
            ),
            None => (Vec::new(), Vec::new(), 0),
        };
        proto::LogRecord {
            time_unix_nano: nanos(line.at),
            observed_time_unix_nano: nanos(line.at),
            severity_number: proto::SeverityNumber::Info as i32,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(line.body)),
            }),
            attributes: vec![export::key_value("log.type", "access".into())],
            trace_id,
            span_id,
            flags,
            ..Default::default()
        }
    }

    async fn send(
        transport: &mut Transport,
        resource: Resource,
        scope: InstrumentationScope,
        log_records: Vec<proto::LogRecord>,
    ) -> Result<(), String> {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![proto::ResourceLogs {
                resource: Some(resource),
                scope_logs: vec![proto::ScopeLogs {
                    scope: Some(scope),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        transport.export(request).await
    }
}
