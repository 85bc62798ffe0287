//! The live connections: what each is (attributes, route, endpoint, bytes so far) for the
//! admin API and metrics, and a way to close any one of them — for failback, for a drain
//! that closes connections spread over time, and for shutdown.
//!
//! Closing is a flag plus a waker in the connection's own record: no token tree, no
//! allocation beyond the record, and a connection waits on one small future.

use crate::attributes::Attributes;
use crate::dial::cluster::Endpoint;
use crate::error::Kind;
use crate::relay::Counters;
use crate::route::Route;
use atomic_waker::AtomicWaker;
use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;

/// Why the gateway closes a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    Shutdown = 1,
    Failback = 2,
    /// An operator asked for it (`POST /connections/{id}/close`).
    Operator = 3,
}

impl CloseReason {
    fn from_u8(value: u8) -> Option<CloseReason> {
        match value {
            0 => None,
            1 => Some(CloseReason::Shutdown),
            2 => Some(CloseReason::Failback),
            _ => Some(CloseReason::Operator),
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            CloseReason::Shutdown => Kind::Shutdown,
            CloseReason::Failback => Kind::Failback,
            CloseReason::Operator => Kind::ClosedByOperator,
        }
    }
}

/// Where a connection went, once it was dialed.
#[derive(Debug)]
pub struct Upstream {
    pub route: Arc<Route>,
    /// The route's cluster, or the one the authorizer chose.
    pub cluster: Arc<crate::dial::cluster::Cluster>,
    pub endpoint: Arc<Endpoint>,
}

/// One live connection.
#[derive(Debug)]
pub struct Live {
    pub attributes: Attributes,
    pub counters: Counters,
    upstream: OnceLock<Upstream>,
    close: AtomicU8,
    waker: AtomicWaker,
    /// An SSH session: its bytes are its channels', each a connection of its own that
    /// counts them too; left out of the endpoint's totals, which see every byte once.
    sums_channels: bool,
}

impl Live {
    pub fn new(attributes: Attributes) -> Self {
        Live {
            attributes,
            counters: Counters::new(),
            upstream: OnceLock::new(),
            close: AtomicU8::new(0),
            waker: AtomicWaker::new(),
            sums_channels: false,
        }
    }

    /// An SSH session, whose channels are connections of their own.
    pub(crate) fn ssh_session(attributes: Attributes) -> Self {
        Live {
            sums_channels: true,
            ..Live::new(attributes)
        }
    }

    /// Where its bytes count in the endpoint's totals: the endpoint it reached, unless
    /// its channels count them.
    pub(crate) fn endpoint_for_bytes(&self) -> Option<&Arc<Endpoint>> {
        (self.upstream().filter(|_| !self.sums_channels)).map(|u| &u.endpoint)
    }

    pub fn upstream(&self) -> Option<&Upstream> {
        self.upstream.get()
    }

    pub(crate) fn set_upstream(&self, upstream: Upstream) {
        let _ = self.upstream.set(upstream);
    }

    /// Asks the connection to close; the first reason given wins.
    pub fn request_close(&self, reason: CloseReason) {
        let _ = self
            .close
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
        self.waker.wake();
    }

    /// Completes when the gateway asks this connection to close.
    pub(crate) async fn close_requested(&self) -> CloseReason {
        poll_fn(|cx| {
            if let Some(reason) = self.reason() {
                return Poll::Ready(reason);
            }
            self.waker.register(cx.waker());
            match self.reason() {
                Some(reason) => Poll::Ready(reason),
                None => Poll::Pending,
            }
        })
        .await
    }

    fn reason(&self) -> Option<CloseReason> {
        CloseReason::from_u8(self.close.load(Ordering::Acquire))
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    live: Mutex<HashMap<u64, Arc<Live>>>,
    /// Set by `close_all`: a connection registering afterwards is closed at once.
    closing: AtomicU8,
}

impl Registry {
    /// Records a connection until the returned guard is dropped.
    pub(crate) fn register(self: &Arc<Self>, live: Arc<Live>) -> Registration {
        let id = live.attributes.id;
        self.live.lock().unwrap().insert(id, live.clone());
        if let Some(reason) = CloseReason::from_u8(self.closing.load(Ordering::Acquire)) {
            live.request_close(reason);
        }
        Registration {
            registry: self.clone(),
            live,
        }
    }

    /// The live connections now, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<Live>> {
        let mut all: Vec<Arc<Live>> = self.live.lock().unwrap().values().cloned().collect();
        all.sort_by_key(|l| l.attributes.id);
        all
    }

    /// The `n` oldest live connections, oldest first: picked under the lock without copying
    /// the whole registry (the status page asks for ten of perhaps a hundred thousand).
    pub fn oldest(&self, n: usize) -> Vec<Arc<Live>> {
        let mut oldest: Vec<Arc<Live>> = Vec::with_capacity(n + 1);
        for live in self.live.lock().unwrap().values() {
            let id = live.attributes.id;
            if oldest.len() == n && oldest.last().is_none_or(|l| l.attributes.id < id) {
                continue;
            }
            let at = oldest.partition_point(|l| l.attributes.id < id);
            oldest.insert(at, live.clone());
            oldest.truncate(n);
        }
        oldest
    }

    /// Bytes so far of the live connections, by the endpoint each reached.
    pub fn bytes_by_endpoint(&self) -> crate::dial::cluster::LiveBytes {
        let mut bytes = crate::dial::cluster::LiveBytes::new();
        for live in self.snapshot() {
            if let Some(endpoint) = live.endpoint_for_bytes() {
                let entry = bytes.entry(Arc::as_ptr(endpoint)).or_default();
                entry.0 += live.counters.upstream_bytes.load(Ordering::Relaxed);
                entry.1 += live.counters.downstream_bytes.load(Ordering::Relaxed);
            }
        }
        bytes
    }

    pub fn len(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks every connection, now and from now on, to close.
    pub fn close_all(&self, reason: CloseReason) -> usize {
        self.closing.store(reason as u8, Ordering::Release);
        self.close_where(reason, |_| true)
    }

    /// Asks the connection `id` to close; false when no such connection is live.
    pub fn close(&self, id: u64, reason: CloseReason) -> bool {
        let live = self.live.lock().unwrap().get(&id).cloned();
        live.inspect(|l| l.request_close(reason)).is_some()
    }

    /// Asks every connection matching `which` to close; returns how many.
    pub fn close_where(&self, reason: CloseReason, which: impl Fn(&Live) -> bool) -> usize {
        let matching: Vec<Arc<Live>> = self
            .live
            .lock()
            .unwrap()
            .values()
            .filter(|l| which(l))
            .cloned()
            .collect();
        for live in &matching {
            live.request_close(reason);
        }
        matching.len()
    }
}

/// Removes a connection from the registry when it ends.
pub struct Registration {
    registry: Arc<Registry>,
    pub live: Arc<Live>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry
            .live
            .lock()
            .unwrap()
            .remove(&self.live.attributes.id);
    }
}
