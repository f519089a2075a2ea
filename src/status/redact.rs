//! Keeping secrets out of the status output. The views never serialize the
//! configuration, session keys or credentials; free text that comes from elsewhere
//! (hub error messages, faults, step outcomes, log lines) passes through
//! [`Redactor::text`], which masks the configured secrets, `session-key` values in
//! URLs and headers, and the user-info part of URLs.

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Shortest configured secret that is masked by value (shorter ones would mangle
/// ordinary text; a password that short is no secret anyway).
const MIN_SECRET: usize = 4;

/// Masks secrets in text.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these secret values (empty or short ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET)
            .collect();
        // longest first, so a secret containing another is masked whole
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `s` with every secret masked.
    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        let out = mask_after(&out, "session-key=", |c| {
            c == '&' || c == '"' || c == '\'' || c == ')' || c == '>' || c.is_whitespace()
        });
        let out = mask_after_ci(&out, "koji-session-key:");
        let out = mask_after_ci(&out, "authorization:");
        mask_userinfo(&out)
    }

    /// Same, for optional text.
    pub fn opt(&self, s: Option<&str>) -> Option<String> {
        s.map(|s| self.text(s))
    }
}

/// Mask what follows each `key` up to a character for which `end` holds.
fn mask_after(s: &str, key: &str, end: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(key) {
        let (head, tail) = rest.split_at(i + key.len());
        out.push_str(head);
        let stop = tail.find(&end).unwrap_or(tail.len());
        if stop > 0 && &tail[..stop] != MASK {
            out.push_str(MASK);
        } else {
            out.push_str(&tail[..stop]);
        }
        rest = &tail[stop..];
    }
    out.push_str(rest);
    out
}

/// Mask header values (`Name: value` up to the end of the line), any case.
fn mask_after_ci(s: &str, key: &str) -> String {
    let lower = s.to_ascii_lowercase();
    if !lower.contains(key) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(i) = lower[pos..].find(key) {
        let start = pos + i + key.len();
        out.push_str(&s[pos..start]);
        let stop = s[start..]
            .find(['\n', '\r', ',', '"'])
            .map_or(s.len(), |j| start + j);
        out.push(' ');
        out.push_str(MASK);
        pos = stop;
    }
    out.push_str(&s[pos..]);
    out
}

/// `scheme://user:password@host` → `scheme://***@host`.
fn mask_userinfo(s: &str) -> String {
    if !s.contains("://") {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // the authority ends at the first of / ? # or whitespace
        let auth_end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..auth_end];
        match authority.rfind('@') {
            Some(at) if &authority[..at] != MASK => {
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[auth_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets_keys_and_userinfo() {
        let r = Redactor::new(["hunter2-pw".to_string(), "".into(), "ab".into()]);
        assert_eq!(
            r.text("login failed for builder1 with hunter2-pw"),
            "login failed for builder1 with ***"
        );
        assert_eq!(
            r.text("cannot connect to http://hub/kojihub?session-id=3&session-key=3-0000&callnum=4: refused"),
            "cannot connect to http://hub/kojihub?session-id=3&session-key=***&callnum=4: refused"
        );
        assert_eq!(
            r.text("Koji-Session-Key: 5-abc\nnext"),
            "Koji-Session-Key: ***\nnext"
        );
        assert_eq!(
            r.text("GET https://alice:s3cret@registry.example/v2/ failed; see http://ok.example/x"),
            "GET https://***@registry.example/v2/ failed; see http://ok.example/x"
        );
        // short "secrets" do not mangle text; idempotent
        assert_eq!(r.text("abc"), "abc");
        let once = r.text("http://u:p@h/?session-key=k");
        assert_eq!(r.text(&once), once);
        assert!(!once.contains("u:p") && !once.contains("=k"), "{once}");
        // multibyte text survives
        assert_eq!(r.text("ünïcode → fine"), "ünïcode → fine");
    }
}
