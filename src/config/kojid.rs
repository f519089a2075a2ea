//! A reader for kojid.conf that behaves like the `RawConfigParser` kojid uses
//! (`koji.read_config_files(path, raw=True)` on Python 3):
//!
//! - `[section]` headers (the name is everything between the first `[` and the last
//!   `]`), a `[DEFAULT]` section whose keys every other section inherits;
//! - `key = value` or `key: value` (the first `=` or `:` splits), keys lower-cased,
//!   surrounding whitespace stripped;
//! - full-line comments starting with `#` or `;` (after indentation); no inline
//!   comments: `a = b ; c` has the value `b ; c`, as in kojid;
//! - continuation lines indented deeper than their key line, blank lines kept inside
//!   a multi-line value, trailing blank lines dropped;
//! - no interpolation (`raw=True`): `%(x)s` stays as written;
//! - a duplicate section or key inside one file is an error (`strict=True`), a line
//!   with no delimiter is an error, and so is a key before any section;
//! - the path may be a directory: its `*.conf` files are read in sorted order, later
//!   files overriding earlier ones (`config_directory_contents`).

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

/// One `key = value` as read, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value, continuation lines joined with `\n`.
    pub value: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// The 1-based line of the key.
    pub line: usize,
}

/// What was read: sections in file order, each an ordered map of lower-cased keys.
#[derive(Debug, Clone, Default)]
pub struct IniFile {
    /// The `[DEFAULT]` section.
    pub defaults: IndexMap<String, Entry>,
    /// Every other section, by name (case-sensitive, like ConfigParser).
    pub sections: IndexMap<String, IndexMap<String, Entry>>,
    /// Where each section header was first seen.
    pub section_lines: IndexMap<String, (PathBuf, usize)>,
    /// The files actually read.
    pub files: Vec<PathBuf>,
}

/// A syntax error, naming the file and line.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{}:{line}: {msg}", file.display())]
pub struct IniError {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl IniFile {
    /// The entries of `section` merged over `[DEFAULT]`, as `config.items(section)`.
    pub fn items(&self, section: &str) -> IndexMap<String, Entry> {
        let mut out = self.defaults.clone();
        if let Some(s) = self.sections.get(section) {
            for (k, v) in s {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }

    /// Read a file, or every `*.conf` file of a directory. A missing path reads as
    /// empty (ConfigParser ignores unreadable files); [`IniFile::files`] tells.
    pub fn read_path(path: &Path) -> Result<IniFile, IniError> {
        let mut ini = IniFile::default();
        let io_err = |e: std::io::Error, p: &Path| IniError {
            file: p.to_owned(),
            line: 0,
            msg: format!("cannot read: {e}"),
        };
        if path.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| io_err(e, path))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "conf"))
                .collect();
            names.sort();
            for p in names {
                let text = std::fs::read_to_string(&p).map_err(|e| io_err(e, &p))?;
                ini.read_str(&text, &p)?;
            }
        } else if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| io_err(e, path))?;
            ini.read_str(&text, path)?;
        }
        Ok(ini)
    }

    /// Parse one file's text into this collection (ConfigParser's `_read`).
    pub fn read_str(&mut self, text: &str, file: &Path) -> Result<(), IniError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let err = |line: usize, msg: String| IniError {
            file: file.to_owned(),
            line,
            msg,
        };
        // (section or None for DEFAULT) we are in; key being read; its indent
        let mut cursect: Option<Option<String>> = None;
        let mut optname: Option<String> = None;
        let mut indent_level = 0usize;
        let mut added_sections: Vec<String> = Vec::new();
        let mut added_keys: Vec<(Option<String>, String)> = Vec::new();
        // pending multi-line values: pieces per (section, key)
        let mut pieces: IndexMap<(Option<String>, String), Vec<String>> = IndexMap::new();
        let mut first_error: Option<IniError> = None;

        for (idx, raw) in text.split('\n').enumerate() {
            let lineno = idx + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let stripped = line.trim();
            let is_comment = stripped.starts_with('#') || stripped.starts_with(';');
            let value = if is_comment { "" } else { stripped };
            if value.is_empty() {
                // blank line (not a comment): part of a multi-line value
                if !is_comment {
                    if let (Some(sect), Some(opt)) = (&cursect, &optname) {
                        if let Some(p) = pieces.get_mut(&(sect.clone(), opt.clone())) {
                            p.push(String::new());
                        }
                    }
                }
                continue;
            }
            let cur_indent = line.len() - line.trim_start().len();
            if cursect.is_some() && optname.is_some() && cur_indent > indent_level {
                if let (Some(sect), Some(opt)) = (&cursect, &optname) {
                    if let Some(p) = pieces.get_mut(&(sect.clone(), opt.clone())) {
                        p.push(value.to_owned());
                    }
                }
                continue;
            }
            indent_level = cur_indent;
            if let Some(rest) = value.strip_prefix('[') {
                if let Some(end) = rest.rfind(']') {
                    if end > 0 {
                        let name = rest[..end].to_owned();
                        if name == "DEFAULT" {
                            cursect = Some(None);
                        } else {
                            if added_sections.contains(&name) {
                                return Err(err(lineno, format!("section [{name}] appears twice")));
                            }
                            added_sections.push(name.clone());
                            self.sections.entry(name.clone()).or_default();
                            self.section_lines
                                .entry(name.clone())
                                .or_insert_with(|| (file.to_owned(), lineno));
                            cursect = Some(Some(name));
                        }
                        optname = None;
                        continue;
                    }
                }
            }
            let Some(sect) = cursect.clone() else {
                return Err(err(
                    lineno,
                    format!("file contains no section headers; first line is {line:?}"),
                ));
            };
            // option line: the first '=' or ':' splits
            match value.find(['=', ':']) {
                Some(pos) if !value[..pos].trim_end().is_empty() => {
                    let key = value[..pos].trim_end().to_lowercase();
                    let val = value[pos + 1..].trim().to_owned();
                    let k = (sect.clone(), key.clone());
                    if added_keys.contains(&k) {
                        let where_ = sect.as_deref().unwrap_or("DEFAULT");
                        return Err(err(
                            lineno,
                            format!("option {key:?} in section [{where_}] appears twice"),
                        ));
                    }
                    added_keys.push(k.clone());
                    pieces.insert(k, vec![val]);
                    let entry = Entry {
                        value: String::new(),
                        file: file.to_owned(),
                        line: lineno,
                    };
                    match &sect {
                        None => self.defaults.insert(key.clone(), entry),
                        Some(s) => self
                            .sections
                            .entry(s.clone())
                            .or_default()
                            .insert(key.clone(), entry),
                    };
                    optname = Some(key);
                }
                _ => {
                    if first_error.is_none() {
                        first_error =
                            Some(err(lineno, format!("not a `key = value` line: {line:?}")));
                    }
                    // ConfigParser keeps going and raises at the end
                    optname = None;
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        for ((sect, key), p) in pieces {
            let joined = p.join("\n");
            let joined = joined.trim_end().to_owned();
            let target = match &sect {
                None => self.defaults.get_mut(&key),
                Some(s) => self.sections.get_mut(s).and_then(|m| m.get_mut(&key)),
            };
            if let Some(e) = target {
                e.value = joined;
            }
        }
        self.files.push(file.to_owned());
        Ok(())
    }
}

/// ConfigParser's `getboolean`: 1/yes/true/on and 0/no/false/off, any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Python's `int()` on a config string: surrounding whitespace, an optional sign,
/// digits with single underscores between them.
pub fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    let digits: String = body.chars().filter(|c| *c != '_').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<IniFile, IniError> {
        let mut ini = IniFile::default();
        ini.read_str(text, Path::new("/etc/kojid/kojid.conf"))?;
        Ok(ini)
    }

    #[test]
    fn configparser_semantics() {
        let ini = parse(
            "# comment\n; another\n[DEFAULT]\nshared = yes\n\n[kojid]\nServer = http://hub/kojihub\n\
             topurl: http://a  \n  http://b\n\n  http://c\n\nnote = a ; not a comment\n\
             interp = %(server)s/x\n   # indented comment\nempty =\n[kojid ] trailing\nx=1\n",
        )
        .unwrap();
        let items = ini.items("kojid");
        assert_eq!(items["server"].value, "http://hub/kojihub");
        assert_eq!(items["server"].line, 7);
        assert_eq!(items["topurl"].value, "http://a\nhttp://b\n\nhttp://c");
        assert_eq!(items["note"].value, "a ; not a comment");
        assert_eq!(items["interp"].value, "%(server)s/x");
        assert_eq!(items["empty"].value, "");
        assert_eq!(items["shared"].value, "yes");
        assert!(ini.sections.contains_key("kojid "));
        assert_eq!(ini.items("kojid ")["x"].value, "1");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("server = x\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.to_string().starts_with("/etc/kojid/kojid.conf:1:"), "{e}");
        let e = parse("[kojid]\na = 1\nA = 2\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.msg.contains("appears twice"));
        let e = parse("[kojid]\n[kojid]\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("[kojid]\njust words\nb = 2\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("[kojid]\n= value\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn later_files_override_and_dirs_read_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("10-a.conf"),
            "[kojid]\nsleeptime = 1\nmaxjobs = 2\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("20-b.conf"), "[kojid]\nsleeptime = 3\n").unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "[kojid]\nsleeptime = 9\n").unwrap();
        let ini = IniFile::read_path(dir.path()).unwrap();
        let items = ini.items("kojid");
        assert_eq!(items["sleeptime"].value, "3");
        assert_eq!(items["maxjobs"].value, "2");
        assert_eq!(ini.files.len(), 2);
        let missing = IniFile::read_path(&dir.path().join("nope.conf")).unwrap();
        assert!(missing.files.is_empty());
    }

    #[test]
    fn bools_and_ints_like_python() {
        for t in ["1", "yes", "TRUE", "On"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["0", "no", "False", "OFF"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_int(" 15 "), Some(15));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("1_000"), Some(1000));
        assert_eq!(parse_int("1.5"), None);
        assert_eq!(parse_int("0x10"), None);
        assert_eq!(parse_int(""), None);
    }
}
