//! Retries with exponential backoff for transient registry errors: connection
//! failures, timeouts, streams cut short, 408/429/5xx. `Retry-After` is honoured
//! (capped at the policy's longest delay).

use std::time::Duration;

use reqwest::StatusCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retries).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1` (attempt counts from 1), ±20% jitter, or the
    /// server's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let d = exp.min(self.max_delay);
        let jitter = 0.8 + 0.4 * rand::random::<f64>();
        d.mul_f64(jitter)
    }
}

/// Whether an HTTP status is worth retrying.
pub fn retryable_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// Whether a transport error is worth retrying.
pub fn retryable_error(e: &reqwest::Error) -> bool {
    if e.is_builder() || e.is_redirect() || e.is_status() {
        return false;
    }
    if e.is_connect() && is_tls_error(e) {
        // A TLS failure (bad certificate, plain-HTTP server) will not heal by itself.
        return false;
    }
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode()
}

/// Whether the error chain mentions a TLS problem.
pub fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string().to_ascii_lowercase();
        if s.contains("certificate")
            || s.contains("tls")
            || s.contains("handshake")
            || s.contains("invalidcontenttype")
            || s.contains("corrupt message")
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Parse `Retry-After` (seconds; HTTP dates are not worth the dependency).
pub fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let d1 = p.delay(1, None);
        assert!(d1 >= Duration::from_millis(80) && d1 <= Duration::from_millis(120));
        let d3 = p.delay(3, None);
        assert!(d3 >= Duration::from_millis(320) && d3 <= Duration::from_millis(480));
        assert!(p.delay(30, None) <= Duration::from_millis(1200));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn statuses() {
        assert!(retryable_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(!retryable_status(StatusCode::NOT_FOUND));
        assert!(!retryable_status(StatusCode::UNAUTHORIZED));
    }
}
