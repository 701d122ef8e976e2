//! The metrics endpoint: plain HTTP/1 (hyper), `GET /metrics`, on a thread of its own with its
//! own single-threaded runtime. The session's loop never waits for a scrape: it only swaps a
//! snapshot into the [`Hub`], and a scrape encodes outside the hub's lock.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::oneshot;

use super::{Hub, MetricsError};

/// A client that sends no complete request head in this long is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 64;

/// The running endpoint; dropping it stops the server.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Where it listens (the port the kernel chose, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(hub: &Hub, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |status, ctype: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = ctype.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            text(StatusCode::OK, super::encode::CONTENT_TYPE, hub.render())
        }
        (&Method::GET | &Method::HEAD, "/") => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "blockprobe: metrics at /metrics\n".to_string(),
        ),
        (&Method::GET | &Method::HEAD, _) => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics\n".to_string(),
        ),
        _ => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
    }
}

/// Binds `addr` now (so that a port in use is an error before any session starts) and serves
/// `hub` from a new thread.
pub fn serve(addr: SocketAddr, hub: Hub) -> Result<MetricsServer, MetricsError> {
    let bind = |source| MetricsError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(bind)?;
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("blockprobe-metrics".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!("metrics endpoint: {e}");
                        return;
                    }
                };
                let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
                loop {
                    let permit = tokio::select! {
                        _ = &mut stop_rx => return,
                        p = slots.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => return,
                        },
                    };
                    let stream = tokio::select! {
                        _ = &mut stop_rx => return,
                        a = listener.accept() => match a {
                            Ok((s, _)) => s,
                            Err(e) => {
                                tracing::debug!("metrics endpoint: accept: {e}");
                                // Out of fds and the like: do not spin.
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        },
                    };
                    let hub = hub.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let r = respond(&hub, &req);
                            async move { Ok::<_, Infallible>(r) }
                        });
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), svc);
                        if let Err(e) = conn.await {
                            tracing::debug!("metrics endpoint: {e}");
                        }
                        drop(permit);
                    });
                }
            });
        })
        .map_err(bind)?;
    Ok(MetricsServer {
        addr: local,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_on_loopback() {
        let hub = Hub::new();
        let server = serve(SocketAddr::from(([127, 0, 0, 1], 0)), hub.clone()).unwrap();
        let addr = server.local_addr();
        assert!(addr.ip().is_loopback() && addr.port() != 0);
        let r = get(addr, "/metrics");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("blockprobe_agent_targets 0"), "{r}");
        assert!(r.contains("blockprobe_agent_resident_memory_bytes "), "{r}");
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        // A second server on the same port is refused with the address in the message.
        let e = serve(addr, hub).err().unwrap().to_string();
        assert!(e.contains(&addr.to_string()), "{e}");
        drop(server);
        assert!(std::net::TcpStream::connect(addr).is_err());
    }
}
