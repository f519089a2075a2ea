//! Python's `fnmatch.fnmatchcase`: shell-style patterns as kojid uses them for
//! `allowed_scms` (host and repository globs) and `literal_task_arches`.
//!
//! `*` matches any run of characters (`/` included, unlike a path glob), `?` one
//! character, `[seq]` one character in `seq` (ranges `a-z`), `[!seq]` one not in it.
//! A `[` without a closing `]` is a literal `[`, as in Python. Matching is
//! case-sensitive (POSIX `fnmatch` does not fold case).

/// Does `name` match the shell pattern `pat`?
pub fn fnmatch(name: &str, pat: &str) -> bool {
    let n: Vec<char> = name.chars().collect();
    let p: Vec<char> = pat.chars().collect();
    matches(&n, &p)
}

/// Does `name` match any of the whitespace-separated patterns in `patterns`
/// (`koji.util.multi_fnmatch`)?
pub fn multi_fnmatch(name: &str, patterns: &str) -> bool {
    patterns.split_whitespace().any(|p| fnmatch(name, p))
}

/// One pattern element.
enum Tok {
    Star,
    Any,
    Lit(char),
    Class {
        negate: bool,
        items: Vec<(char, char)>,
    },
}

fn tokenize(p: &[char]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => {
                if !matches!(out.last(), Some(Tok::Star)) {
                    out.push(Tok::Star);
                }
                i += 1;
            }
            '?' => {
                out.push(Tok::Any);
                i += 1;
            }
            '[' => {
                // Python: j = i+1; skip '!'; skip a leading ']'; find the next ']'.
                let mut j = i + 1;
                if j < p.len() && p[j] == '!' {
                    j += 1;
                }
                if j < p.len() && p[j] == ']' {
                    j += 1;
                }
                while j < p.len() && p[j] != ']' {
                    j += 1;
                }
                if j >= p.len() {
                    out.push(Tok::Lit('['));
                    i += 1;
                    continue;
                }
                let mut k = i + 1;
                let negate = p[k] == '!';
                if negate {
                    k += 1;
                }
                let mut items = Vec::new();
                while k < j {
                    if k + 2 < j && p[k + 1] == '-' {
                        items.push((p[k], p[k + 2]));
                        k += 3;
                    } else {
                        items.push((p[k], p[k]));
                        k += 1;
                    }
                }
                out.push(Tok::Class { negate, items });
                i = j + 1;
            }
            c => {
                out.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    out
}

fn one(t: &Tok, c: char) -> bool {
    match t {
        Tok::Any => true,
        Tok::Lit(l) => *l == c,
        Tok::Class { negate, items } => {
            items.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negate
        }
        Tok::Star => unreachable!("handled by the matcher"),
    }
}

fn matches(name: &[char], pat: &[char]) -> bool {
    let toks = tokenize(pat);
    // Iterative wildcard matching with backtracking to the last star: linear in
    // practice, no recursion on hostile patterns.
    let (mut ni, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < name.len() {
        if ti < toks.len() {
            if let Tok::Star = toks[ti] {
                star = Some((ti, ni));
                ti += 1;
                continue;
            }
            if one(&toks[ti], name[ni]) {
                ni += 1;
                ti += 1;
                continue;
            }
        }
        match star {
            Some((st, sn)) => {
                ti = st + 1;
                ni = sn + 1;
                star = Some((st, sn + 1));
            }
            None => return false,
        }
    }
    toks[ti..].iter().all(|t| matches!(t, Tok::Star))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_python() {
        // each expectation checked with python3's fnmatch.fnmatchcase
        let cases = [
            ("git.example.com", "*.example.com", true),
            ("git.example.com", "git.example.com", true),
            ("git.example.org", "*.example.com", false),
            ("/rpms/foo", "/rpms/*", true),
            ("/rpms/a/b", "/rpms/*", true),
            ("/rpms", "/rpms/*", false),
            ("", "", true),
            ("", "*", true),
            ("x", "", false),
            ("abc", "a?c", true),
            ("ac", "a?c", false),
            ("i686", "i?86", true),
            ("b", "[abc]", true),
            ("d", "[abc]", false),
            ("d", "[!abc]", true),
            ("m", "[a-z]", true),
            ("M", "[a-z]", false),
            ("[", "[", true),
            ("[a", "[a", true),
            ("]", "[]]", true),
            ("-", "[a-]", true),
            ("!", "[!]", false),
            ("aXbXc", "a*b*c", true),
            ("aXbX", "a*b*c", false),
            ("x86_64", "x86_64", true),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaab", "*a*a*a*a*a*a*a*a*c", false),
        ];
        for (name, pat, want) in cases {
            assert_eq!(fnmatch(name, pat), want, "fnmatch({name:?}, {pat:?})");
        }
    }

    #[test]
    fn multi() {
        assert!(multi_fnmatch("armv7hl", "noarch arm*"));
        assert!(!multi_fnmatch("x86_64", "noarch arm*"));
        assert!(!multi_fnmatch("x86_64", ""));
    }
}
