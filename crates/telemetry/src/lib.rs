//! Metrics, below the pipeline: this crate knows no stage. The gateway counts in plain
//! atomics on its hot paths (no registry lookups, no string formatting per connection or per
//! byte); each stage reports its own counts as series through [`Out`] when asked (a
//! [`Source`]), and this crate publishes them through the `metrics` facade to a fan-out of
//! Prometheus (served by the admin API at `/metrics`) and statsd (pushed every flush
//! interval), so both always agree. Names and labels: docs/metrics.md.

mod help;
pub mod histogram;
pub mod trace;

use metrics::{Counter, Gauge, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct Telemetry {
    /// Prometheus, and statsd when configured: every metric is registered with each.
    recorders: Vec<Box<dyn Recorder + Send + Sync>>,
    prometheus: PrometheusHandle,
    published: Mutex<HashMap<Key, Published>>,
    /// The histograms and fractional counters of the last publish, rendered by us (the
    /// exporter has neither).
    histograms: Mutex<(Vec<histogram::Series>, Vec<histogram::Fractional>)>,
    help: HashMap<String, String>,
}

enum Published {
    /// A handle per recorder, and the highest total published so far.
    Counter(Vec<Counter>, u64),
    Gauge(Vec<Gauge>),
}

static METADATA: Metadata<'static> = Metadata::new("causeway", Level::INFO, Some("causeway"));

impl Telemetry {
    pub fn new(config: &config::Metrics) -> Result<Telemetry, String> {
        let prometheus = PrometheusBuilder::new().build_recorder();
        let handle = prometheus.handle();
        let mut recorders: Vec<Box<dyn Recorder + Send + Sync>> = vec![Box::new(prometheus)];
        if let Some(statsd) = &config.statsd {
            let (host, port) = statsd
                .address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse().ok()?)))
                .ok_or_else(|| format!("statsd address `{}`", statsd.address))?;
            let recorder = metrics_exporter_statsd::StatsdBuilder::from(host, port)
                .with_buffer_size(512)
                .build(Some(&statsd.prefix))
                .map_err(|e| format!("statsd: {e}"))?;
            recorders.push(Box::new(recorder));
        }
        // HELP for every family, counter or gauge alike (the text exposition needs no type
        // for it; the type comes from how the family is registered).
        let help = help::families();
        for (family, text) in &help {
            for recorder in &recorders {
                recorder.describe_counter(family.clone().into(), None, text.clone().into());
                recorder.describe_gauge(family.clone().into(), None, text.clone().into());
            }
        }
        Ok(Telemetry {
            recorders,
            prometheus: handle,
            published: Mutex::new(HashMap::new()),
            histograms: Mutex::default(),
            help: help.into_iter().collect(),
        })
    }

    /// Publishes what `source` reports now, then renders the Prometheus text.
    pub fn render(&self, source: &dyn Source) -> String {
        self.publish(source);
        let mut text = self.prometheus.render();
        let (histograms, fractional) = &*self.histograms.lock().unwrap();
        let help = |name: &str| self.help.get(name).cloned();
        text.push_str(&histogram::render(histograms, help));
        text.push_str(&histogram::render_fractional(fractional, help));
        text
    }

    /// Publishes what changed since the last time.
    pub fn publish(&self, source: &dyn Source) {
        let mut published = self.published.lock().unwrap();
        let (mut histograms, mut fractional) = (Vec::new(), Vec::new());
        let mut out = Out {
            recorders: &self.recorders,
            published: &mut published,
            histograms: &mut histograms,
            fractional: &mut fractional,
        };
        source.report(&mut out);
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
    /// Prometheus first, then statsd when configured.
    recorders: &'a [Box<dyn Recorder + Send + Sync>],
    published: &'a mut HashMap<Key, Published>,
    histograms: &'a mut Vec<histogram::Series>,
    fractional: &'a mut Vec<histogram::Fractional>,
}

impl Out<'_> {
    /// A counter of a fractional total (`process_cpu_seconds_total`): to statsd, a gauge.
    pub fn fractional_counter(&mut self, name: &'static str, total: f64) {
        if self.recorders.len() > 1 {
            let statsd = &self.recorders[1..];
            self.publish_gauge(statsd, key(name, vec![]), total);
        }
        self.fractional.push(histogram::Fractional { name, total });
    }

    /// A histogram as it is now: rendered as one for Prometheus; to statsd, its bucket
    /// series (`le` label), `_sum` and `_count`.
    pub fn histogram(&mut self, name: &'static str, labels: Labels, h: &histogram::Histogram) {
        let snapshot = h.snapshot();
        if self.recorders.len() > 1 {
            let statsd = &self.recorders[1..];
            for (i, n) in snapshot.cumulative.iter().enumerate() {
                let mut labels = labels.clone();
                labels.push(("le", snapshot.le(i)));
                let key = key(&format!("{name}_bucket"), labels);
                self.publish_counter(statsd, key, *n);
            }
            let count = key(&format!("{name}_count"), labels.clone());
            self.publish_counter(statsd, count, snapshot.count());
            let sum = key(&format!("{name}_sum"), labels.clone());
            self.publish_gauge(statsd, sum, snapshot.sum);
        }
        self.histograms.push(histogram::Series {
            name,
            labels,
            snapshot,
        });
    }

    /// Publishes the growth of a total kept by the gateway. A total can dip for a moment
    /// (a counter carried over a reload); only growth past the highest value is published,
    /// so the exported counter never goes back.
    pub fn counter(&mut self, name: &'static str, labels: Labels, total: u64) {
        let recorders = self.recorders;
        self.publish_counter(recorders, key(name, labels), total);
    }

    /// Sets a gauge to what the source says it is now.
    pub fn gauge(&mut self, name: &'static str, labels: Labels, value: f64) {
        let recorders = self.recorders;
        self.publish_gauge(recorders, key(name, labels), value);
    }

    fn publish_counter(
        &mut self,
        recorders: &[Box<dyn Recorder + Send + Sync>],
        key: Key,
        total: u64,
    ) {
        let entry = self.published.entry(key.clone()).or_insert_with(|| {
            let handles = recorders
                .iter()
                .map(|r| r.register_counter(&key, &METADATA))
                .collect();
            Published::Counter(handles, 0)
        });
        if let Published::Counter(handles, highest) = entry
            && total > *highest
        {
            for handle in handles.iter() {
                handle.increment(total - *highest);
            }
            *highest = total;
        }
    }

    fn publish_gauge(
        &mut self,
        recorders: &[Box<dyn Recorder + Send + Sync>],
        key: Key,
        value: f64,
    ) {
        let entry = self.published.entry(key.clone()).or_insert_with(|| {
            Published::Gauge(
                recorders
                    .iter()
                    .map(|r| r.register_gauge(&key, &METADATA))
                    .collect(),
            )
        });
        if let Published::Gauge(handles) = entry {
            for handle in handles.iter() {
                handle.set(value);
            }
        }
    }
}

fn key(name: &str, labels: Labels) -> Key {
    Key::from_parts(
        name.to_string(),
        labels
            .into_iter()
            .map(|(k, v)| Label::new(k, v))
            .collect::<Vec<_>>(),
    )
}
