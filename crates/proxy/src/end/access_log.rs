//! The access log: one JSON line per connection when it closes, and optionally a line every
//! interval for each connection still open — a FIX session up for days is not invisible
//! until it ends. Lines are written by a thread of their own, so a slow disk never holds up
//! a connection: at most `max_queued_lines` wait, more are dropped and counted. The file is
//! opened again on request (SIGUSR1), so logrotate can move it away.

use crate::dial::cluster::Endpoint;
use crate::end::registry::{Live, Registry};
use crate::error::Error;
use crate::route::Route;
use serde_json::{Value, json};
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::SystemTime;

#[derive(Clone)]
pub struct AccessLog {
    lines: mpsc::SyncSender<String>,
    /// Each line also as an OTLP log record, when configured.
    pub otlp: Option<telemetry::trace::LogSink>,
    /// Lines dropped because the queue was full (the writer could not keep up).
    pub dropped: Arc<AtomicU64>,
    /// Lines lost because writing them failed (a full disk, a file gone read-only).
    pub failed: Arc<AtomicU64>,
    /// Set to have the writer open its file again before its next line.
    reopen: Arc<AtomicBool>,
}

/// The writer thread's side: the destination, and what it tells the rest.
struct Writer {
    path: Option<std::path::PathBuf>,
    out: Box<dyn Write + Send>,
    reopen: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    /// When a failed write was last logged (once a minute at most while it goes on).
    last_complaint: Option<std::time::Instant>,
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<String>) {
        while let Ok(line) = receiver.recv() {
            if self.reopen.swap(false, Relaxed) {
                match open(self.path.as_deref()) {
                    Ok(file) => self.out = file,
                    Err(e) => tracing::error!("cannot open the access log again: {e}"),
                }
            }
            // Write what is queued in one go, then flush so lines are never stuck.
            let batch: Vec<String> = std::iter::once(line)
                .chain(receiver.try_iter())
                .filter(|line| !line.is_empty())
                .collect();
            if let Err(e) = self.write(&batch) {
                self.failed.fetch_add(batch.len() as u64, Relaxed);
                self.complain(&e);
            }
        }
    }

    fn write(&mut self, batch: &[String]) -> io::Result<()> {
        let mut buffered = io::BufWriter::new(&mut self.out);
        for line in batch {
            writeln!(buffered, "{line}")?;
        }
        buffered.flush()
    }

    /// Logs a failed write: the first, then once a minute while they go on.
    fn complain(&mut self, e: &io::Error) {
        let now = std::time::Instant::now();
        let quiet = self
            .last_complaint
            .is_some_and(|t| now - t < COMPLAINT_INTERVAL);
        if !quiet {
            self.last_complaint = Some(now);
            let lost = self.failed.load(Relaxed);
            tracing::error!(
                lost,
                "cannot write the access log: {e}; its lines are lost, connections go on"
            );
        }
    }
}

const COMPLAINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl AccessLog {
    /// Opens the destination (appending to a file) and starts the writer thread.
    pub fn start(
        config: &config::AccessLog,
        otlp: Option<telemetry::trace::LogSink>,
    ) -> io::Result<AccessLog> {
        let out = open(config.path.as_deref())?;
        let (lines, receiver) = mpsc::sync_channel::<String>(config.max_queued_lines);
        let writer = Writer {
            path: config.path.clone(),
            out,
            reopen: Arc::new(AtomicBool::new(false)),
            failed: Arc::new(AtomicU64::new(0)),
            last_complaint: None,
        };
        let (reopen, failed) = (writer.reopen.clone(), writer.failed.clone());
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(receiver))?;
        Ok(AccessLog {
            lines,
            otlp,
            dropped: Arc::new(AtomicU64::new(0)),
            failed,
            reopen,
        })
    }

    /// Opens the file again before the next line (after logrotate moved it away).
    pub fn reopen(&self) {
        self.reopen.store(true, Relaxed);
        // Wakes the writer (an empty line is not written); when the queue is full, the
        // writer sees the request with its next line anyway.
        let _ = self.lines.try_send(String::new());
    }

    /// Queues a line (and, with OTLP, a log record in the connection's trace); drops it
    /// (counted) when the writer is that far behind.
    fn send(&self, line: String, live: &Live) {
        if let Some(otlp) = &self.otlp {
            otlp.emit(line.clone(), live.attributes.span.context());
        }
        if self.lines.try_send(line).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// The line for a connection that ended, however it ended.
    pub(crate) fn closed(
        &self,
        live: &Live,
        route: Option<&Route>,
        endpoint: Option<&Endpoint>,
        result: &Result<(), Error>,
    ) {
        let mut line = fields(live, "close", route, endpoint);
        let (reason, side) = match result {
            Ok(()) => ("closed".to_string(), Value::Null),
            Err(e) => (e.code(), json!(e.side.as_str())),
        };
        line["reason"] = json!(reason);
        line["side"] = side;
        if let Err(e) = result {
            line["detail"] = json!(e.to_string());
        }
        self.send(line.to_string(), live);
    }

    /// A line for every connection open now.
    pub fn still_open(&self, registry: &Registry) {
        for live in registry.snapshot() {
            let upstream = live.upstream();
            let line = fields(
                &live,
                "open",
                upstream.map(|u| &*u.route),
                upstream.map(|u| &*u.endpoint),
            );
            self.send(line.to_string(), &live);
        }
    }

    /// Writes the open-connection lines every `interval` until the process ends.
    pub fn spawn_periodic(&self, registry: Arc<Registry>, interval: std::time::Duration) {
        let log = self.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                tick.tick().await;
                log.still_open(&registry);
            }
        });
    }
}

/// The destination: a file appended to, or standard output.
fn open(path: Option<&std::path::Path>) -> io::Result<Box<dyn Write + Send>> {
    Ok(match path {
        None => Box::new(io::stdout()),
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    })
}

fn fields(live: &Live, event: &str, route: Option<&Route>, endpoint: Option<&Endpoint>) -> Value {
    let a = &live.attributes;
    let c = &live.counters;
    let age = c.started().elapsed();
    let started = SystemTime::now() - age;
    let mut line = json!({
        "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "event": event,
        "id": a.id,
        "start_time": humantime::format_rfc3339_millis(started).to_string(),
        "duration_ms": age.as_millis() as u64,
        "listener": &*a.listener,
        "source": a.source.to_string(),
        "destination": a.destination.to_string(),
        "route": route.map(|r| r.config.name.as_str()),
        "cluster": live.upstream().map(|u| u.cluster.name()).or(route.map(|r| r.cluster.name())),
        "endpoint": endpoint.map(|e| e.address.as_str()),
        "bytes_upstream": c.upstream_bytes.load(Relaxed),
        "bytes_downstream": c.downstream_bytes.load(Relaxed),
    });
    if let Some(proxy) = a.proxy.as_deref() {
        line["proxy_protocol_peer"] = json!(proxy.balancer.to_string());
    }
    if let Some(decision) = a.authz {
        line["authz"] = json!(decision.as_str());
    }
    // The line leads to its trace.
    if let Some(span) = a.span.context() {
        line["trace_id"] = json!(span.trace_id_hex());
        line["span_id"] = json!(span.span_id_hex());
        line["trace_sampled"] = json!(span.sampled);
    }
    protocol_fields(a, &mut line);
    tls_fields(a, &mut line);
    line
}

/// What the listener's protocol said: the FIX Logon's session fields (never its password),
/// the MQ channel, the SSH login, a tunnel's target.
fn protocol_fields(a: &crate::attributes::Attributes, line: &mut Value) {
    // The Logon's session fields; never its password.
    if let Some(logon) = a.fix() {
        line["fix_begin_string"] = json!(logon.begin_string);
        line["fix_sender_comp_id"] = json!(logon.sender_comp_id);
        line["fix_target_comp_id"] = json!(logon.target_comp_id);
        if let Some(sub) = &logon.sender_sub_id {
            line["fix_sender_sub_id"] = json!(sub);
        }
        if let Some(sub) = &logon.target_sub_id {
            line["fix_target_sub_id"] = json!(sub);
        }
        if let Some(user) = &logon.username {
            line["fix_username"] = json!(user);
        }
    }
    if let Some(mq) = a.mq() {
        line["mq_channel"] = json!(mq.channel);
        if let Some(qm) = &mq.queue_manager {
            line["mq_queue_manager"] = json!(qm);
        }
    }
    if let Some(login) = a.ssh() {
        line["ssh_user"] = json!(login.user);
        line["ssh_auth_method"] = json!(login.method);
        if let Some(target) = &login.target {
            line["ssh_target"] = json!(target);
        }
        if let Some(print) = &login.key_fingerprint {
            line["ssh_key_fingerprint"] = json!(print);
        }
        if let Some(channel) = &login.channel {
            line["ssh_channel"] = json!(channel.kind);
            line["ssh_session"] = json!(channel.session);
        }
    }
    if let Some(target) = a.tunnel() {
        line["tunnel_host"] = json!(target.host);
        line["tunnel_port"] = json!(target.port);
    }
}

/// TLS fields only where there is TLS: what the inspector saw, what was terminated, who
/// the client proved to be.
fn tls_fields(a: &crate::attributes::Attributes, line: &mut Value) {
    let session = a.session.as_deref();
    let peer = session.and_then(|s| s.peer.as_ref());
    if let Some(sni) = a.sni() {
        line["sni"] = json!(sni);
    }
    if let Some(hello) = a.tls.hello()
        && !hello.alpn.is_empty()
    {
        line["alpn_offered"] = json!(hello.alpn);
    }
    if let Some(s) = session {
        line["alpn"] = json!(s.alpn);
        line["tls_version"] = json!(s.version);
        line["tls_cipher"] = json!(s.cipher);
    }
    if let Some(p) = peer {
        line["peer_spiffe_id"] = json!(p.spiffe_id);
        line["peer_dns_names"] = json!(p.dns_names);
        line["peer_subject"] = json!(p.subject);
    }
}
