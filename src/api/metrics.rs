//! `/metrics` over plain HTTP/1.1 (`serve --metrics-listen`), what a Prometheus server
//! scrapes: one GET, one response, the connection closed. Anything else is answered
//! 404 or 405; a request that does not arrive whole within a few seconds is dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::engine::Service;

const MAX_REQUEST: usize = 8192;
const REQUEST_TIME: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves.
pub async fn serve_metrics(
    svc: Arc<Service>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(answer(svc.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn answer(svc: Arc<Service>, mut stream: TcpStream) {
    let Ok(Some(head)) = tokio::time::timeout(REQUEST_TIME, read_head(&mut stream)).await else {
        return;
    };
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => {
            match tokio::task::spawn_blocking(move || svc.metrics_text()).await {
                Ok(Ok(text)) => ("200 OK", text),
                Ok(Err(e)) => ("500 Internal Server Error", format!("{e}\n")),
                Err(_) => ("500 Internal Server Error", "internal error\n".to_string()),
            }
        }
        ("GET", _) => (
            "404 Not Found",
            "only /metrics is served here\n".to_string(),
        ),
        _ => ("405 Method Not Allowed", "GET /metrics\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The request line and headers, up to the blank line (`None`: closed or too long).
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}
