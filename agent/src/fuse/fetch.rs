//! Fetching an execution trace from a target's `net/http/pprof` endpoint
//! (`/debug/pprof/trace?seconds=N`, src/net/http/pprof/pprof.go, Trace), while the probes run.
//! The body streams into a file: a trace can be hundreds of megabytes, and the parser reads it
//! one generation at a time.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "--trace-from wants an http:// URL (e.g. http://127.0.0.1:6060/debug/pprof/trace?seconds=5), got {0:?}"
    )]
    BadUrl(String),
    #[error("fetching the trace from {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("fetching the trace from {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("writing the fetched trace to {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What was fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: u64,
    /// When the request was sent and when the body ended (CLOCK_MONOTONIC ns).
    pub started_mono_ns: u64,
    pub ended_mono_ns: u64,
}

/// The `seconds=` of a pprof trace URL (Go's default is 1).
pub fn seconds(url: &str) -> f64 {
    url.split_once('?')
        .map(|(_, q)| q)
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("seconds="))
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0)
}

/// Checks the URL before anything is attached.
pub fn check_url(url: &str) -> Result<(), FetchError> {
    if !url.starts_with("http://") || url.len() <= "http://".len() {
        return Err(FetchError::BadUrl(url.to_string()));
    }
    Ok(())
}

/// GETs `url` into `out`. The request may take the `seconds=` the URL asks for, plus a margin.
pub fn fetch(url: &str, out: &Path) -> Result<Fetched, FetchError> {
    check_url(url)?;
    let http = |source: ureq::Error| FetchError::Http {
        url: url.to_string(),
        source: Box::new(source),
    };
    let write = |source: std::io::Error| FetchError::Write {
        path: out.display().to_string(),
        source,
    };
    let timeout = Duration::from_secs_f64(seconds(url) + 30.0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let started_mono_ns = crate::session::monotonic_ns();
    let t0 = Instant::now();
    let resp = agent.get(url).call().map_err(http)?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    if status != 200 {
        // net/http/pprof answers errors (tracing already enabled, bad seconds) in plain text.
        let text = body
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        return Err(FetchError::Status {
            url: url.to_string(),
            status,
            body: text.trim().to_string(),
        });
    }
    let file = std::fs::File::create(out).map_err(write)?;
    let mut w = std::io::BufWriter::new(file);
    let mut reader = body.into_reader();
    // Copied by hand rather than with io::copy, so that a failed read (the connection) and a
    // failed write (the disk) are told apart in the error.
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(http(ureq::Error::Io(e))),
        };
        w.write_all(&buf[..n]).map_err(write)?;
        bytes += n as u64;
    }
    w.flush().map_err(write)?;
    tracing::debug!(bytes, secs = t0.elapsed().as_secs_f64(), "trace fetched");
    Ok(Fetched {
        bytes,
        started_mono_ns,
        ended_mono_ns: crate::session::monotonic_ns(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_urls() {
        assert_eq!(seconds("http://h:1/debug/pprof/trace?seconds=5"), 5.0);
        assert_eq!(
            seconds("http://h:1/debug/pprof/trace?debug=1&seconds=0.5"),
            0.5
        );
        assert_eq!(seconds("http://h:1/debug/pprof/trace"), 1.0);
        assert_eq!(seconds("http://h:1/x?seconds=-3"), 1.0);
        assert!(check_url("http://127.0.0.1:6060/debug/pprof/trace").is_ok());
        assert!(check_url("https://example.com/").is_err());
        assert!(check_url("127.0.0.1:6060").is_err());
    }
}
