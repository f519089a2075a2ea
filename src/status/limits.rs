//! Bounds of the status server: it must never let a client (or many) slow the
//! daemon down or hold its resources.

use std::time::Duration;

/// Limits of the status server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are answered `503` and closed at once.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (also between keep-alive
    /// requests); then the connection is closed.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), bytes; larger → `431`.
    pub max_header_bytes: usize,
    /// Longest time one connection is kept, whatever it does.
    pub connection_lifetime: Duration,
    /// Most log lines `…/logs?tail=N` returns.
    pub max_tail_lines: usize,
    /// Most bytes of a log `…/logs` reads from its end.
    pub max_tail_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            connection_lifetime: Duration::from_secs(120),
            max_tail_lines: 10_000,
            max_tail_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The answer to a client over [`Limits::max_connections`], written without
/// waiting (the socket's buffer is empty) and then the connection is dropped.
pub const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: application/json; charset=utf-8\r\n\
Content-Length: 89\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\
\r\n\
{\"error\": \"Service Unavailable\", \"error_code\": \"BUSY\", \"message\": \"too many connections\"}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_response_length_is_right() {
        let text = std::str::from_utf8(BUSY_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error_code"], "BUSY");
    }
}
