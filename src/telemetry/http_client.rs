//! The OTLP exporter's HTTP client: `opentelemetry-http`'s `HttpClient`
//! trait implemented over a blocking ureq agent, so no async runtime is needed.
//!
//! The trait is `async`, but the exporter only ever runs on our own
//! `otlp-export` thread under `futures_executor::block_on`; doing the
//! blocking call inside the `async fn` is therefore fine and simplest.

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

use crate::http::{self, Timeouts, TrustRoots};

/// Connect and total timeouts for one export request: a collector that
/// hangs costs at most this much of the export thread's time per attempt.
pub const EXPORT_TIMEOUTS: Timeouts = Timeouts::new(Duration::from_secs(2), Duration::from_secs(5));

/// Largest collector answer read (an `ExportTraceServiceResponse` is tiny).
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// Sends OTLP requests with ureq; HTTP error statuses come back as
/// responses so the exporter can classify them (retry on 429/5xx).
#[derive(Debug, Clone)]
pub struct UreqHttpClient {
    agent: ureq::Agent,
}

impl UreqHttpClient {
    /// A client with [`EXPORT_TIMEOUTS`] and the bundled web PKI roots.
    pub fn new() -> Self {
        Self::with_timeouts(EXPORT_TIMEOUTS)
    }

    /// A client with the given timeouts (tests use short ones).
    pub fn with_timeouts(timeouts: Timeouts) -> Self {
        UreqHttpClient {
            agent: http::agent(timeouts, &TrustRoots::Bundled),
        }
    }

    fn send_blocking(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = request.map(|body| body.to_vec());
        let response = self.agent.run(request)?;
        let (parts, mut body) = response.into_parts();
        let bytes = body.with_config().limit(MAX_RESPONSE_BYTES).read_to_vec()?;
        Ok(Response::from_parts(parts, Bytes::from(bytes)))
    }
}

impl Default for UreqHttpClient {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl HttpClient for UreqHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.send_blocking(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-shot server that answers `status` and returns what it received.
    fn serve_once(status: u16) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers plus the 5-byte body used below.
            while !seen.windows(5).any(|w| w == b"hello") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: 2\r\ncontent-type: application/x-protobuf\r\nconnection: close\r\n\r\nok"
            );
            stream.write_all(answer.as_bytes()).unwrap();
            seen
        });
        (url, handle)
    }

    fn post(url: &str) -> Request<Bytes> {
        Request::builder()
            .method("POST")
            .uri(url)
            .header("content-type", "application/x-protobuf")
            .body(Bytes::from_static(b"hello"))
            .unwrap()
    }

    #[test]
    fn sends_the_body_and_returns_error_statuses_as_responses() {
        for status in [200u16, 503] {
            let (url, server) = serve_once(status);
            let client = UreqHttpClient::new();
            let response = futures_executor::block_on(client.send_bytes(post(&url))).unwrap();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.body().as_ref(), b"ok");
            let seen = String::from_utf8_lossy(&server.join().unwrap()).to_string();
            assert!(seen.starts_with("POST /v1/traces HTTP/1.1"), "{seen}");
            assert!(
                seen.to_ascii_lowercase()
                    .contains("content-type: application/x-protobuf")
            );
        }
    }

    #[test]
    fn refused_connection_is_an_error_not_a_panic() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = UreqHttpClient::new();
        let url = format!("http://127.0.0.1:{port}/v1/traces");
        assert!(futures_executor::block_on(client.send_bytes(post(&url))).is_err());
    }
}
