//! A small FIX engine, by the session layer of the spec: Logon, Heartbeat, TestRequest,
//! Logout, MsgSeqNum checked on every message, every message framed (BodyLength, CheckSum)
//! on receipt. [`accept`] plays a venue; [`Session::initiate`] a client. For tests, the demo
//! and the examples (`causeway fix-acceptor`); not a production engine.

use protocols::fix;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A received message: its fields as text, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub fields: Vec<(u32, String)>,
}

impl Received {
    pub fn get(&self, tag: u32) -> Option<&str> {
        self.fields
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }

    pub fn msg_type(&self) -> &str {
        self.get(35).unwrap_or("")
    }
}

/// Every byte one side of a session sent and received, for byte-exact comparisons.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    pub sent: Vec<u8>,
    pub received: Vec<u8>,
}

/// What a venue saw: sessions logged on, and the transcript of each finished one.
#[derive(Debug, Default)]
pub struct Venue {
    pub logons: AtomicU64,
    pub transcripts: Mutex<Vec<Transcript>>,
    /// Sent as Text (58) in the Logon answer: tells a client which of several acceptors
    /// with the same CompID answered (the HA test's active and standby venues).
    pub name: Option<String>,
}

impl Venue {
    pub fn logons(&self) -> u64 {
        self.logons.load(Relaxed)
    }
}

pub struct Session<S> {
    stream: S,
    buf: Vec<u8>,
    begin_string: String,
    sender: String,
    target: String,
    next_out: u32,
    next_in: u32,
    pub transcript: Transcript,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(stream: S, begin_string: &str, sender: &str, target: &str) -> Self {
        Session {
            stream,
            buf: Vec::new(),
            begin_string: begin_string.into(),
            sender: sender.into(),
            target: target.into(),
            next_out: 1,
            next_in: 1,
            transcript: Transcript::default(),
        }
    }

    /// Sends `msg_type` with the standard header and `body`.
    pub async fn send(&mut self, msg_type: &str, body: &[(u32, &str)]) -> io::Result<()> {
        let seq = self.next_out.to_string();
        let mut fields = vec![
            (35, msg_type),
            (49, self.sender.as_str()),
            (56, self.target.as_str()),
            (34, seq.as_str()),
            (52, "20261128-12:00:00.000"),
        ];
        fields.extend_from_slice(body);
        let bytes = fix::encode(&self.begin_string, &fields);
        self.next_out += 1;
        self.send_raw(&bytes).await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.transcript.sent.extend_from_slice(bytes);
        self.stream.write_all(bytes).await
    }

    /// The next message, checked: framed, from the counterparty, in sequence. `None` at EOF.
    pub async fn receive(&mut self) -> io::Result<Option<Received>> {
        let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        loop {
            match fix::frame(&self.buf, 1 << 20) {
                Ok(message) => {
                    let fields = message
                        .fields
                        .iter()
                        .map(|(t, v)| (*t, String::from_utf8_lossy(v).into_owned()))
                        .collect();
                    let length = message.length;
                    let received = Received { fields };
                    self.transcript
                        .received
                        .extend_from_slice(&self.buf[..length]);
                    self.buf.drain(..length);
                    let seq: u32 = received.get(34).and_then(|s| s.parse().ok()).unwrap_or(0);
                    if seq != self.next_in {
                        return Err(invalid(format!(
                            "MsgSeqNum {seq}, expected {}",
                            self.next_in
                        )));
                    }
                    if received.get(49) != Some(&self.target)
                        || received.get(56) != Some(&self.sender)
                    {
                        return Err(invalid(format!("CompIDs of {:?}", received.fields)));
                    }
                    self.next_in += 1;
                    return Ok(Some(received));
                }
                Err(fix::Error::Incomplete { .. }) => {}
                Err(e) => return Err(invalid(e.to_string())),
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await? {
                0 if self.buf.is_empty() => return Ok(None),
                0 => return Err(invalid("EOF inside a message".into())),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl Session<TcpStream> {
    /// Connects to `address` as `sender` and sends a Logon to `target` (with `extra`
    /// fields); the answer is for the caller to read.
    pub async fn initiate(
        address: std::net::SocketAddr,
        sender: &str,
        target: &str,
        extra: &[(u32, &str)],
    ) -> io::Result<Session<TcpStream>> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let mut session = Session::new(stream, "FIX.4.4", sender, target);
        let mut body = vec![(98, "0"), (108, "30")];
        body.extend_from_slice(extra);
        session.send("A", &body).await?;
        Ok(session)
    }
}

/// The acceptor's side of one session: Logon answered with a Logon, TestRequest with a
/// Heartbeat carrying its TestReqID, NewOrderSingle (35=D) with an ExecutionReport (35=8)
/// carrying its ClOrdID, Logout with a Logout. Anything out of order ends the session.
pub async fn accept(stream: TcpStream, comp_id: String, venue: Arc<Venue>) {
    let _ = stream.set_nodelay(true);
    let mut session = Session::new(stream, "FIX.4.4", &comp_id, "");
    let mut logged_on = false;
    let result: io::Result<()> = async {
        // The counterparty is whoever logs on.
        let mut first = Vec::new();
        let logon = loop {
            let mut chunk = [0u8; 4096];
            let n = session.stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            first.extend_from_slice(&chunk[..n]);
            match fix::logon(&first, 1 << 20) {
                Ok(logon) => break logon,
                Err(fix::Error::Incomplete { .. }) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
        };
        session.target = logon.sender_comp_id.clone();
        session.begin_string = logon.begin_string.clone();
        session.buf = first;
        session.receive().await?;
        // Counted before the answer goes out: whoever reads the answer sees the count.
        logged_on = true;
        venue.logons.fetch_add(1, Relaxed);
        match &venue.name {
            Some(name) => {
                session
                    .send("A", &[(98, "0"), (108, "30"), (58, name)])
                    .await?
            }
            None => session.send("A", &[(98, "0"), (108, "30")]).await?,
        }
        while let Some(message) = session.receive().await? {
            match message.msg_type() {
                "1" => {
                    let id = message.get(112).unwrap_or("").to_string();
                    session.send("0", &[(112, &id)]).await?;
                }
                "D" => {
                    let id = message.get(11).unwrap_or("").to_string();
                    session
                        .send("8", &[(11, &id), (150, "0"), (39, "0")])
                        .await?;
                }
                "5" => {
                    session.send("5", &[]).await?;
                    break;
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "test FIX acceptor: session ended");
    }
    if logged_on {
        venue
            .transcripts
            .lock()
            .unwrap()
            .push(session.transcript.clone());
    }
    let _ = session.stream.shutdown().await;
}

/// Serves sessions as `comp_id` on `listener` until the task is dropped; `name`, when
/// given, goes into each Logon answer's Text (58).
pub async fn run_acceptor(
    listener: tokio::net::TcpListener,
    comp_id: String,
    name: Option<String>,
) {
    let venue = Arc::new(Venue {
        name,
        ..Venue::default()
    });
    while let Ok((stream, _)) = listener.accept().await {
        let (comp_id, venue) = (comp_id.clone(), venue.clone());
        tokio::spawn(async move {
            accept(stream, comp_id, venue.clone()).await;
            // Keep nothing: a long-running acceptor must not grow.
            venue.transcripts.lock().unwrap().clear();
        });
    }
}
