//! A span: its place in a trace (always known, so it can be passed on even when not
//! recorded) and, when sampled, what it records. Dropping a recorded span ends it.

use super::Tracer;
use protocols::trace_context::{self, TraceParent};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

/// Where a span sits in its trace, as W3C Trace Context carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
    /// The `tracestate` a caller sent, passed on unchanged.
    pub state: Option<Arc<str>>,
}

impl SpanContext {
    /// A caller's context from its `traceparent` (and `tracestate`); `None` when invalid.
    pub fn from_headers(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
        let parent = TraceParent::parse(traceparent)?;
        Some(SpanContext {
            trace_id: parent.trace_id,
            span_id: parent.span_id,
            sampled: parent.sampled(),
            state: tracestate
                .and_then(trace_context::tracestate)
                .map(Arc::from),
        })
    }

    pub fn traceparent(&self) -> String {
        let flags = u8::from(self.sampled);
        let parent = TraceParent {
            trace_id: self.trace_id,
            span_id: self.span_id,
            flags,
        };
        parent.to_header()
    }

    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        trace_context::hex(&mut out, &self.trace_id);
        out
    }

    pub fn span_id_hex(&self) -> String {
        let mut out = String::with_capacity(16);
        trace_context::hex(&mut out, &self.span_id);
        out
    }
}

/// OpenTelemetry's span kinds, as the gateway uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    /// A connection or tunnel the gateway serves.
    Server,
    /// A call the gateway makes: the authorizer, a CONNECT to another proxy, a dial.
    Client,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Cow<'static, str>),
    Int(i64),
    Bool(bool),
}

impl From<&'static str> for Value {
    fn from(v: &'static str) -> Self {
        Value::Str(Cow::Borrowed(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(Cow::Owned(v))
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

pub type Attributes = Vec<(&'static str, Value)>;

#[derive(Debug)]
pub(super) struct Event {
    pub name: &'static str,
    pub at: SystemTime,
    pub attributes: Attributes,
}

/// What a sampled span records until it ends.
#[derive(Debug)]
pub(super) struct Recording {
    pub tracer: Tracer,
    pub parent: Option<[u8; 8]>,
    pub name: Cow<'static, str>,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub attributes: Attributes,
    pub events: Vec<Event>,
    pub links: Vec<SpanContext>,
    /// Set when the span ended in failure: the status message.
    pub error: Option<String>,
}

/// One span. Not recorded (and costing only its ids) when its trace is not sampled.
#[derive(Debug)]
pub struct Span {
    context: SpanContext,
    recording: Option<Box<Recording>>,
}

impl Span {
    pub(super) fn new(context: SpanContext, recording: Option<Box<Recording>>) -> Span {
        Span { context, recording }
    }

    pub fn context(&self) -> &SpanContext {
        &self.context
    }

    /// Whether what is set on it is kept; callers skip building costly attributes if not.
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(r) = &mut self.recording {
            let value = value.into();
            match r.attributes.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => r.attributes.push((key, value)),
            }
        }
    }

    pub fn event(&mut self, name: &'static str, attributes: Attributes) {
        if let Some(r) = &mut self.recording {
            let at = SystemTime::now();
            r.events.push(Event {
                name,
                at,
                attributes,
            });
        }
    }

    pub fn link(&mut self, to: SpanContext) {
        if let Some(r) = &mut self.recording {
            r.links.push(to);
        }
    }

    /// Ends in failure: status error with `message`, and `error.type` (a stable label).
    pub fn fail(&mut self, error_type: impl Into<Value>, message: String) {
        self.set("error.type", error_type);
        if let Some(r) = &mut self.recording {
            r.error = Some(message);
        }
    }

    /// A span within this one (same trace; recorded when this one is).
    pub fn child(&self, name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Span {
        let context = SpanContext {
            trace_id: self.context.trace_id,
            span_id: super::span_id(),
            sampled: self.context.sampled,
            state: self.context.state.clone(),
        };
        let recording = self.recording.as_ref().map(|r| {
            Box::new(Recording::new(
                r.tracer.clone(),
                Some(self.context.span_id),
                name.into(),
                kind,
            ))
        });
        Span::new(context, recording)
    }

    /// Ends it now (dropping it does the same).
    pub fn end(self) {}

    /// How long its tracer lets a connection's span run before it is continued; `None`
    /// when not recorded.
    pub fn max_duration(&self) -> Option<std::time::Duration> {
        Some(self.recording.as_ref()?.tracer.span_max_duration())
    }

    /// Ends this stretch of a long-lived span and goes on in a new one: same trace, parent,
    /// name, kind and attributes, linked to the one ended (`causeway.span.continued` on it),
    /// so a session of days shows while it lives.
    pub fn continue_in_new(&mut self) {
        let Some(r) = &mut self.recording else {
            return;
        };
        let mut next = Recording::new(r.tracer.clone(), r.parent, r.name.clone(), r.kind);
        next.attributes = r.attributes.clone();
        next.links.push(self.context.clone());
        r.attributes
            .push(("causeway.span.continued", Value::Bool(true)));
        let context = SpanContext {
            span_id: super::span_id(),
            ..self.context.clone()
        };
        drop(std::mem::replace(
            self,
            Span::new(context, Some(Box::new(next))),
        ));
    }
}

impl Recording {
    pub(super) fn new(
        tracer: Tracer,
        parent: Option<[u8; 8]>,
        name: Cow<'static, str>,
        kind: SpanKind,
    ) -> Recording {
        Recording {
            tracer,
            parent,
            name,
            kind,
            start: SystemTime::now(),
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            error: None,
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(recording) = self.recording.take() {
            let context = self.context.clone();
            recording.tracer.clone().finish(context, recording);
        }
    }
}
