//! The dashboard's HTTP server: `GET /` (the page), `GET /live` (the part the page's script refreshes) and
//! `GET /state.json` (the same state as JSON), one request per connection.
//!
//! Hand-written on tokio rather than on hyper or axum: three read-only GET routes need no more than a request line,
//! and enabling hyper's server feature would rebuild the whole AWS SDK stack (every crate that depends on hyper)
//! in a second feature configuration. The same approach serves `/metrics` in the `prometheus` example.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::render;
use super::state::Dashboard;

/// The longest request head read; the routes need only the request line.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The state the sampler updates and the server renders.
pub type Shared = Arc<Mutex<Dashboard>>;

/// Serves requests until the task is dropped.
pub async fn serve(listener: TcpListener, state: Shared) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            // A client that talks nonsense or hangs up only loses its own answer.
            let _ = answer(stream, &state).await;
        });
    }
}

/// The routes: (status, content type, body) for a request line's method and path.
pub fn route(method: &str, path: &str, state: &Dashboard) -> (&'static str, &'static str, String) {
    const HTML: &str = "text/html; charset=utf-8";
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET and HEAD\n".to_owned());
    }
    // The query string (a cache buster, say) does not pick a route.
    match path.split('?').next().unwrap_or_default() {
        "/" | "/index.html" => ("200 OK", HTML, render::page(state)),
        "/live" => ("200 OK", HTML, render::live(state)),
        "/state.json" => match serde_json::to_string(state) {
            Ok(json) => ("200 OK", "application/json", json),
            Err(error) => ("500 Internal Server Error", "text/plain; charset=utf-8", format!("{error}\n")),
        },
        _ => ("404 Not Found", "text/plain; charset=utf-8", "try / , /live or /state.json\n".to_owned()),
    }
}

async fn answer(mut stream: TcpStream, state: &Shared) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let read = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await??;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buf[..read]);
    }
    let line = head.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let (status, content_type, body) = {
        // A poisoned lock only means a sampler panicked mid-update; the last state is still worth showing.
        let view = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        route(method, path, &view)
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::route;
    use crate::dashboard::state::Dashboard;

    #[test]
    fn routes_by_method_and_path() {
        let state = Dashboard { table: "app".into(), stream: "s".into(), ..Dashboard::default() };
        let cases = [
            ("GET", "/", "200 OK", "text/html; charset=utf-8"),
            ("GET", "/?x=1", "200 OK", "text/html; charset=utf-8"),
            ("HEAD", "/live", "200 OK", "text/html; charset=utf-8"),
            ("GET", "/state.json", "200 OK", "application/json"),
            ("GET", "/nope", "404 Not Found", "text/plain; charset=utf-8"),
            ("POST", "/", "405 Method Not Allowed", "text/plain; charset=utf-8"),
            ("", "", "405 Method Not Allowed", "text/plain; charset=utf-8"),
        ];
        for (method, path, status, content_type) in cases {
            let (got_status, got_type, _) = route(method, path, &state);
            assert_eq!((got_status, got_type), (status, content_type), "{method} {path}");
        }
    }
}
