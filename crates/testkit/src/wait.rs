use std::future::Future;
use std::time::Duration;

/// Upper bound for one whole test; a hung test fails instead of blocking CI.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a test body, failing it if it takes longer than [`TEST_TIMEOUT`].
pub async fn bounded<T>(body: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TEST_TIMEOUT, body).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {TEST_TIMEOUT:?}"),
    }
}

/// Waits until `condition` holds, checking every few milliseconds, for at most 10 s.
/// For state that has no change signal of its own (counters).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until a server started as a process accepts connections on `address` (trying
/// every 20 ms, for at most `within`): a process has no readiness signal of its own.
pub async fn accepting(address: std::net::SocketAddr, within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
