//! Metrics, below the pipeline: this crate knows no stage. The gateway counts in plain
//! atomics on its hot paths (no registry lookups, no string formatting per connection or per
//! byte); each stage reports its own counts as series through [`Out`] when asked (a
//! [`Source`]), and this crate publishes them to Prometheus (through the `metrics` facade's
//! exporter, served by the admin API at `/metrics`; histograms rendered here) and to statsd
//! (pushed every flush interval), so both always agree. Names and labels: docs/metrics.md.

mod help;
pub mod histogram;
mod statsd;
pub mod trace;

use metrics::{Counter, Gauge, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct Telemetry {
    prometheus: PrometheusRecorder,
    handle: PrometheusHandle,
    statsd: Option<statsd::Statsd>,
    published: Mutex<HashMap<Key, Published>>,
    /// The histograms and fractional counters of the last publish, rendered by us (the
    /// exporter has neither).
    histograms: Mutex<(Vec<histogram::Series>, Vec<histogram::Fractional>)>,
    help: HashMap<String, String>,
}

enum Published {
    /// The Prometheus handle (none for a series only statsd gets), and the highest total
    /// published so far.
    Counter(Option<Counter>, u64),
    Gauge(Gauge),
}

static METADATA: Metadata<'static> = Metadata::new("causeway", Level::INFO, Some("causeway"));

impl Telemetry {
    pub fn new(config: &config::Metrics) -> Result<Telemetry, String> {
        let prometheus = PrometheusBuilder::new().build_recorder();
        let handle = prometheus.handle();
        let statsd = config
            .statsd
            .as_ref()
            .map(statsd::Statsd::new)
            .transpose()?;
        // HELP for every family, counter or gauge alike (the text exposition needs no type
        // for it; the type comes from how the family is registered).
        let help = help::families();
        for (family, text) in &help {
            prometheus.describe_counter(family.clone().into(), None, text.clone().into());
            prometheus.describe_gauge(family.clone().into(), None, text.clone().into());
        }
        Ok(Telemetry {
            prometheus,
            handle,
            statsd,
            published: Mutex::new(HashMap::new()),
            histograms: Mutex::default(),
            help: help.into_iter().collect(),
        })
    }

    /// Publishes what `source` reports now, then renders the Prometheus text.
    pub fn render(&self, source: &dyn Source) -> String {
        self.publish(source);
        let mut text = self.handle.render();
        let (histograms, fractional) = &*self.histograms.lock().unwrap();
        let help = |name: &str| self.help.get(name).cloned();
        text.push_str(&histogram::render(histograms, help));
        text.push_str(&histogram::render_fractional(fractional, help));
        text
    }

    /// Publishes what changed since the last time (to statsd: sent now).
    pub fn publish(&self, source: &dyn Source) {
        let mut published = self.published.lock().unwrap();
        let (mut histograms, mut fractional, mut lines) = (Vec::new(), Vec::new(), Vec::new());
        let mut out = Out {
            prometheus: &self.prometheus,
            statsd: self.statsd.as_ref(),
            lines: &mut lines,
            published: &mut published,
            histograms: &mut histograms,
            fractional: &mut fractional,
        };
        source.report(&mut out);
        if let Some(statsd) = &self.statsd {
            let failed = statsd
                .send_errors
                .load(std::sync::atomic::Ordering::Relaxed);
            out.counter("causeway_statsd_send_errors_total", Vec::new(), failed);
            statsd.send(&lines);
        }
        // Families together, each with its HELP and TYPE once.
        histograms.sort_by_key(|s| s.name);
        *self.histograms.lock().unwrap() = (histograms, fractional);
    }

    /// Publishes every `interval` until the process ends (statsd needs pushing).
    pub fn spawn_flusher(
        self: std::sync::Arc<Self>,
        source: std::sync::Arc<dyn Source + Send + Sync>,
        interval: std::time::Duration,
    ) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                self.publish(&*source);
            }
        });
    }
}

/// What has metrics to report: the gateway, which asks each of its stages.
pub trait Source {
    fn report(&self, out: &mut Out<'_>);
}

/// Labels of a series: name → value.
pub type Labels = Vec<(&'static str, String)>;

/// Where a source reports its series.
pub struct Out<'a> {
    prometheus: &'a PrometheusRecorder,
    statsd: Option<&'a statsd::Statsd>,
    /// statsd lines of this publish.
    lines: &'a mut Vec<String>,
    published: &'a mut HashMap<Key, Published>,
    histograms: &'a mut Vec<histogram::Series>,
    fractional: &'a mut Vec<histogram::Fractional>,
}

impl Out<'_> {
    /// Publishes the growth of a total kept by the gateway. A total can dip for a moment
    /// (a counter carried over a reload); only growth past the highest value is published,
    /// so the exported counter never goes back.
    pub fn counter(&mut self, name: &'static str, labels: Labels, total: u64) {
        self.publish_counter(name, labels, total, true);
    }

    /// Sets a gauge to what the source says it is now.
    pub fn gauge(&mut self, name: &'static str, labels: Labels, value: f64) {
        let key = key(name, &labels);
        let prometheus = self.prometheus;
        let entry = (self.published.entry(key.clone()))
            .or_insert_with(|| Published::Gauge(prometheus.register_gauge(&key, &METADATA)));
        if let Published::Gauge(handle) = entry {
            handle.set(value);
        }
        if let Some(statsd) = self.statsd {
            statsd.line(
                self.lines,
                name,
                &pairs(&labels),
                statsd::Value::Gauge(value),
            );
        }
    }

    /// A counter of a fractional total (`process_cpu_seconds_total`): to statsd, a gauge.
    pub fn fractional_counter(&mut self, name: &'static str, total: f64) {
        if let Some(statsd) = self.statsd {
            statsd.line(self.lines, name, &[], statsd::Value::Gauge(total));
        }
        self.fractional.push(histogram::Fractional { name, total });
    }

    /// A histogram as it is now: rendered as one for Prometheus; to statsd, its count and
    /// sum (`NAME_count`, `NAME_sum`; statsd has no buckets).
    pub fn histogram(&mut self, name: &'static str, labels: Labels, h: &histogram::Histogram) {
        let snapshot = h.snapshot();
        if let Some(statsd) = self.statsd {
            let count = leak_suffix(name, "_count");
            self.publish_counter(count, labels.clone(), snapshot.count(), false);
            let sum = statsd::Value::Gauge(snapshot.sum);
            statsd.line(self.lines, leak_suffix(name, "_sum"), &pairs(&labels), sum);
        }
        self.histograms.push(histogram::Series {
            name,
            labels,
            snapshot,
        });
    }

    /// `to_prometheus`: false for a series only statsd gets (a histogram's count).
    fn publish_counter(&mut self, name: &str, labels: Labels, total: u64, to_prometheus: bool) {
        let key = key(name, &labels);
        let prometheus = self.prometheus;
        let entry = self.published.entry(key.clone()).or_insert_with(|| {
            let handle = to_prometheus.then(|| prometheus.register_counter(&key, &METADATA));
            Published::Counter(handle, 0)
        });
        let Published::Counter(handle, highest) = entry else {
            return;
        };
        if total <= *highest {
            return;
        }
        let growth = total - *highest;
        *highest = total;
        if let Some(handle) = handle {
            handle.increment(growth);
        }
        if let Some(statsd) = self.statsd {
            statsd.line(
                self.lines,
                name,
                &pairs(&labels),
                statsd::Value::Count(growth),
            );
        }
    }
}

fn pairs(labels: &Labels) -> Vec<(&str, &str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `NAME_count` of a histogram family: statsd series names are built once per family and
/// kept (a handful of families, for the process's life).
fn leak_suffix(name: &'static str, suffix: &str) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let wanted = format!("{name}{suffix}");
    let mut names = NAMES.lock().unwrap();
    if let Some(found) = names.iter().find(|n| **n == wanted) {
        return found;
    }
    let leaked: &'static str = Box::leak(wanted.into_boxed_str());
    names.push(leaked);
    leaked
}

fn key(name: &str, labels: &Labels) -> Key {
    Key::from_parts(
        name.to_string(),
        (labels.iter())
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect::<Vec<_>>(),
    )
}
