//! `WWW-Authenticate` challenges and Docker token auth
//! (distribution/distribution `docs/spec/auth/token.md`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-cased: `bearer`, `basic`...
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parse a `WWW-Authenticate` value: `Scheme k=v, k="v", Scheme2 ...`.
pub fn parse_challenges(h: &str) -> Vec<Challenge> {
    let b = h.as_bytes();
    let mut i = 0;
    let mut out: Vec<Challenge> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && !matches!(b[*i], b' ' | b'\t' | b',' | b'=' | b'"') {
            *i += 1;
        }
        h[s..*i].to_owned()
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let word = token(&mut i);
        if word.is_empty() {
            i += 1;
            continue;
        }
        // `word=` is a parameter of the current challenge; a bare word starts a new one.
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    // Multi-byte UTF-8 is copied through char by char.
                    let ch = h[i..].chars().next().unwrap_or('\u{fffd}');
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1; // closing quote
                v
            } else {
                token(&mut i)
            };
            if let Some(c) = out.last_mut() {
                c.params.insert(word.to_ascii_lowercase(), value);
            }
        } else {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

/// A token from the token endpoint.
#[derive(Clone, Debug)]
pub struct Token {
    pub value: String,
    pub expires: Instant,
}

impl Token {
    pub fn valid(&self) -> bool {
        Instant::now() < self.expires
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Parse a token endpoint response body.
pub fn parse_token_response(body: &[u8]) -> Result<Token, String> {
    let r: TokenResponse =
        serde_json::from_slice(body).map_err(|e| format!("token response is not JSON: {e}"))?;
    let value = r
        .token
        .filter(|t| !t.is_empty())
        .or(r.access_token.filter(|t| !t.is_empty()))
        .ok_or("token response has neither \"token\" nor \"access_token\"")?;
    // The spec's default lifetime is 60 s; renew a little early.
    let secs = r.expires_in.unwrap_or(60).max(10);
    Ok(Token {
        value,
        expires: Instant::now() + Duration::from_secs(secs - 5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["scope"], "repository:library/busybox:pull");
        let c =
            parse_challenges(r#"Basic realm="fixture realm", Bearer realm=http://x/t, service=y"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].params["realm"], "fixture realm");
        assert_eq!(c[1].params["realm"], "http://x/t");
        assert_eq!(c[1].params["service"], "y");
        let c = parse_challenges(r#"Bearer realm="a\"b",error="insufficient_scope""#);
        assert_eq!(c[0].params["realm"], "a\"b");
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn token_responses() {
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.value, "abc");
        assert!(t.valid());
        let t = parse_token_response(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(t.value, "xyz");
        assert!(parse_token_response(br#"{"token":""}"#).is_err());
        assert!(parse_token_response(b"<html>").is_err());
    }
}
