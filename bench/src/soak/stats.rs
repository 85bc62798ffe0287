//! What the drivers count per kind of connection, and how one connection ended.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// The kinds of connection the soak churns, in the order reports list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Tls,
    Tunnel,
    Fix,
    Ssh,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Plain, Kind::Tls, Kind::Tunnel, Kind::Fix, Kind::Ssh];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Tls => "tls",
            Kind::Tunnel => "tunnel",
            Kind::Fix => "fix",
            Kind::Ssh => "ssh",
        }
    }

    /// How long a kind may go without one success before the soak calls it stalled: longer
    /// than any authorizer flap (a fail-closed route refuses everyone for a few seconds).
    pub fn stall_limit_secs(self) -> u64 {
        match self {
            Kind::Ssh => 40,
            _ => 20,
        }
    }
}

/// How one connection ended, as the client saw it.
#[derive(Debug)]
pub enum Outcome {
    /// Every byte came back as sent; this many bytes each way.
    Ok(u64),
    /// Closed before any byte came back (an authorizer's no).
    Refused(String),
    /// A byte came back different, or a FIX message did not frame: the soak fails.
    Corrupted(String),
    /// Anything else: a timeout, a truncated echo, a failed handshake.
    Failed(String),
}

/// One kind's counters. Errors keep their first few messages for the summary.
pub struct KindStats {
    pub kind: Kind,
    pub ok: AtomicU64,
    pub bytes: AtomicU64,
    /// Refused while the authorizer said no (or was away on a fail-closed route).
    pub refused: AtomicU64,
    pub errors: AtomicU64,
    pub corrupted: AtomicU64,
    /// Idle connections held through the run, and those lost on the way.
    pub idle_held: AtomicU64,
    pub idle_lost: AtomicU64,
    last_ok: Mutex<Instant>,
    messages: Mutex<Vec<String>>,
}

impl KindStats {
    pub fn new(kind: Kind) -> KindStats {
        KindStats {
            kind,
            ok: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            corrupted: AtomicU64::new(0),
            idle_held: AtomicU64::new(0),
            idle_lost: AtomicU64::new(0),
            last_ok: Mutex::new(Instant::now()),
            messages: Mutex::new(Vec::new()),
        }
    }

    pub fn ok(&self, bytes: u64) {
        self.ok.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
        *self.last_ok.lock().unwrap() = Instant::now();
    }

    /// Restarts the stall clock (after a pause of the churn).
    pub fn touch(&self) {
        *self.last_ok.lock().unwrap() = Instant::now();
    }

    pub fn error(&self, what: String) {
        self.errors.fetch_add(1, Relaxed);
        self.note(what);
    }

    pub fn corrupted(&self, what: String) {
        self.corrupted.fetch_add(1, Relaxed);
        self.note(format!("CORRUPTED: {what}"));
    }

    pub fn idle_lost(&self, what: String) {
        self.idle_lost.fetch_add(1, Relaxed);
        self.note(format!("idle connection lost: {what}"));
    }

    fn note(&self, what: String) {
        let mut messages = self.messages.lock().unwrap();
        if messages.len() < 5 {
            messages.push(what);
        }
    }

    /// Seconds since the last success (since the start before the first).
    pub fn since_ok(&self) -> u64 {
        self.last_ok.lock().unwrap().elapsed().as_secs()
    }

    /// The connections tried and finished so far.
    pub fn attempts(&self) -> u64 {
        self.ok.load(Relaxed)
            + self.refused.load(Relaxed)
            + self.errors.load(Relaxed)
            + self.corrupted.load(Relaxed)
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

/// xorshift64*: payloads and sizes that differ per connection, reproducible from a seed,
/// without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        low + (self.next() % (high - low + 1) as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// `n` characters a FIX field value may hold (letters and digits).
    pub fn token(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}
