//! A test client: connect, read a backend's greeting, check echoes.

use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct Client {
    pub stream: BufReader<TcpStream>,
}

impl Client {
    pub async fn connect(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address)
            .await
            .expect("connect to gateway");
        stream.set_nodelay(true).unwrap();
        Client {
            stream: BufReader::new(stream),
        }
    }

    /// Connects and returns the name the backend announced.
    pub async fn greeted(address: SocketAddr) -> (Client, String) {
        let mut client = Client::connect(address).await;
        let name = client.line().await.expect("backend greeting");
        (client, name)
    }

    /// The next line, without its newline; `None` at EOF or on error.
    pub async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.stream.read_line(&mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_string()),
        }
    }

    /// Sends a line and expects it back.
    pub async fn assert_echo(&mut self, text: &str) {
        self.stream
            .get_mut()
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("write to gateway");
        assert_eq!(self.line().await.as_deref(), Some(text), "echo of {text:?}");
    }

    /// True when the connection was closed (EOF or reset) by the other end.
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte).await, Ok(0) | Err(_))
    }
}

/// An address on 127.0.0.1 where nothing listens (connecting is refused).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}
