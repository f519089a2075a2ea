//! The buildroot's log files, named as mock names them, in the request's log dir:
//!
//! - `state.log`: `2024-01-01 12:00:00,123 - INFO: Start: <what>` / `Finish: <what>`
//!   lines, one pair per stage (mock's state log);
//! - `root.log`: the install steps (dnf) with `DEBUG` lines naming each command and its
//!   `Child return code was: N`, as mock's root log;
//! - `build.log`: the build steps (rpm, rpmbuild), same framing;
//! - `mock_output.log`: what koji-adjutant itself did for the buildroot (image,
//!   cache, containers, steps);
//! - `hw_info.log`, `mock_config.log`, `installed_pkgs.log`: written whole.
//!
//! Steps write straight into the files (their stdout and stderr are the open log
//! file), so a task's log uploader sees the output as it is produced.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::BuildrootError;

/// Local time is not needed: mock writes the host's local time, we write UTC and say
/// so in mock_output.log.
pub(crate) fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    match chrono::DateTime::from_timestamp(now.as_secs() as i64, now.subsec_nanos()) {
        Some(t) => format!(
            "{},{:03}",
            t.format("%Y-%m-%d %H:%M:%S"),
            now.subsec_millis()
        ),
        None => now.as_secs().to_string(),
    }
}

/// The log directory and the logs kept open.
pub(crate) struct Logs {
    dir: PathBuf,
    state: Mutex<File>,
    output: Mutex<File>,
}

fn open_append(p: &Path) -> Result<File, BuildrootError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(BuildrootError::io("opening log", p))
}

impl Logs {
    pub(crate) fn open(dir: &Path) -> Result<Logs, BuildrootError> {
        std::fs::create_dir_all(dir).map_err(BuildrootError::io("creating log dir", dir))?;
        Ok(Logs {
            dir: dir.to_owned(),
            state: Mutex::new(open_append(&dir.join("state.log"))?),
            output: Mutex::new(open_append(&dir.join("mock_output.log"))?),
        })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn line(f: &Mutex<File>, text: &str) {
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        // A log line that cannot be written is not worth failing a build for.
        let _ = f.write_all(text.as_bytes());
    }

    /// `state.log`: `Start: what`.
    pub(crate) fn start(&self, what: &str) {
        Self::line(
            &self.state,
            &format!("{} - INFO: Start: {what}\n", timestamp()),
        );
    }

    /// `state.log`: `Finish: what`.
    pub(crate) fn finish(&self, what: &str) {
        Self::line(
            &self.state,
            &format!("{} - INFO: Finish: {what}\n", timestamp()),
        );
    }

    /// `mock_output.log`: `INFO: text`.
    pub(crate) fn info(&self, text: &str) {
        Self::line(&self.output, &format!("INFO: {text}\n"));
    }

    /// `mock_output.log`: `WARNING: text`.
    pub(crate) fn warn(&self, text: &str) {
        Self::line(&self.output, &format!("WARNING: {text}\n"));
    }

    /// `mock_output.log`: `ERROR: text`.
    pub(crate) fn error(&self, text: &str) {
        Self::line(&self.output, &format!("ERROR: {text}\n"));
    }

    /// Append `text` to the log `name` (root.log, build.log).
    pub(crate) fn append(&self, name: &str, text: &str) -> Result<(), BuildrootError> {
        let p = self.path(name);
        let mut f = open_append(&p)?;
        f.write_all(text.as_bytes())
            .map_err(BuildrootError::io("writing log", &p))
    }

    /// mock's framing before a command: `DEBUG buildroot: Executing command: [...]`.
    pub(crate) fn command(&self, name: &str, argv: &[String], user: &str, network: &str) {
        let _ = self.append(
            name,
            &format!(
                "{} - DEBUG buildroot: Executing command: {argv:?} as {user}, network {network}\n",
                timestamp()
            ),
        );
    }

    /// mock's framing after a command.
    pub(crate) fn returned(&self, name: &str, code: i32) {
        let _ = self.append(
            name,
            &format!(
                "{} - DEBUG buildroot: Child return code was: {code}\n",
                timestamp()
            ),
        );
    }

    /// Write a whole log.
    pub(crate) fn write(&self, name: &str, text: &str) -> Result<(), BuildrootError> {
        let p = self.path(name);
        std::fs::write(&p, text).map_err(BuildrootError::io("writing log", &p))
    }

    /// The last `lines` lines of a log (at most 16 KiB of it).
    pub(crate) fn tail(&self, name: &str, lines: usize) -> String {
        tail_of(&self.path(name), lines)
    }
}

/// How much of a step's output a log keeps: `[adjutant] max_log_size` bytes in all
/// (the log's size when the step starts counts), then one note and nothing more. The
/// rest of the output is read and discarded, so the step is not blocked on a full pipe
/// and runs to its end (or its timeout) as it would otherwise.
pub(crate) struct CappedLog {
    file: tokio::fs::File,
    name: String,
    /// Bytes the log may still grow by (before the note).
    room: u64,
    cap: u64,
    /// The note, once the cap is reached, and how much of it was written.
    note: Option<(Vec<u8>, usize)>,
    discarded: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CappedLog {
    /// Open `path` for appending with at most `cap` bytes in all (`None`: no cap).
    /// The counter reports the bytes discarded.
    pub(crate) fn open(
        path: &Path,
        cap: Option<u64>,
    ) -> Result<(CappedLog, std::sync::Arc<std::sync::atomic::AtomicU64>), BuildrootError> {
        let f = open_append(path)?;
        let len = f
            .metadata()
            .map_err(BuildrootError::io("reading log size", path))?
            .len();
        let cap = cap.unwrap_or(u64::MAX);
        let discarded = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok((
            CappedLog {
                file: tokio::fs::File::from_std(f),
                name,
                room: cap.saturating_sub(len),
                cap,
                note: None,
                discarded: discarded.clone(),
            },
            discarded,
        ))
    }
}

impl tokio::io::AsyncWrite for CappedLog {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let me = self.get_mut();
        if me.room > 0 {
            let n = buf
                .len()
                .min(usize::try_from(me.room).unwrap_or(usize::MAX));
            return match std::pin::Pin::new(&mut me.file).poll_write(cx, &buf[..n]) {
                Poll::Ready(Ok(w)) => {
                    me.room -= w as u64;
                    Poll::Ready(Ok(w))
                }
                other => other,
            };
        }
        if me.note.is_none() {
            let text = format!(
                "\n{} - WARNING koji-adjutant: {} reached max_log_size ({} bytes); \
                 the rest of this step's output is discarded\n",
                timestamp(),
                me.name,
                me.cap
            );
            me.note = Some((text.into_bytes(), 0));
        }
        if let Some((note, done)) = &mut me.note {
            while *done < note.len() {
                match std::pin::Pin::new(&mut me.file).poll_write(cx, &note[*done..]) {
                    Poll::Ready(Ok(0)) => break,
                    Poll::Ready(Ok(w)) => *done += w,
                    // The log cannot be written: drop the rest as well.
                    Poll::Ready(Err(_)) => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
            *done = note.len();
        }
        me.discarded
            .fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().file).poll_shutdown(cx)
    }
}

/// The last `lines` lines of a file (reading at most its last 16 KiB).
pub fn tail_of(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(16384);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(16384).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    // A partial first line (we started mid-file) is dropped unless it is all we have.
    let skip = usize::from(start > 0 && all.len() > 1);
    let from = all.len().saturating_sub(lines).max(skip);
    all[from..].join("\n")
}

/// `hw_info.log` as mock's hw_info plugin writes it: CPU, memory and storage of the
/// host the buildroot runs on (read natively: builder hosts may lack `lscpu`).
pub(crate) fn hw_info(store_root: &Path, workdir: &Path) -> String {
    let mut s = String::from("CPU info:\n");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let uname = nix::sys::utsname::uname().ok();
    let arch = uname
        .as_ref()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_default();
    s.push_str(&format!("Architecture:                    {arch}\n"));
    s.push_str(&format!("CPU(s):                          {cpus}\n"));
    if let Some(m) = field("model name") {
        s.push_str(&format!("Model name:                      {m}\n"));
    }
    if let Some(v) = field("vendor_id") {
        s.push_str(&format!("Vendor ID:                       {v}\n"));
    }
    if let Some(f) = field("flags") {
        s.push_str(&format!("Flags:                           {f}\n"));
    }
    if let Some(u) = &uname {
        s.push_str(&format!(
            "Kernel:                          {} {}\n",
            u.sysname().to_string_lossy(),
            u.release().to_string_lossy()
        ));
    }
    s.push_str("\n\nMemory:\n");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |name: &str| -> u64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (total, free, avail) = (kib("MemTotal"), kib("MemFree"), kib("MemAvailable"));
    let cache = kib("Buffers") + kib("Cached") + kib("SReclaimable");
    let used = total.saturating_sub(free + cache);
    s.push_str(
        "               total        used        free      shared  buff/cache   available\n",
    );
    s.push_str(&format!(
        "Mem:      {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}\n",
        total,
        used,
        free,
        kib("Shmem"),
        cache,
        avail
    ));
    s.push_str(&format!(
        "Swap:     {:>10}  {:>10}  {:>10}\n",
        kib("SwapTotal"),
        kib("SwapTotal").saturating_sub(kib("SwapFree")),
        kib("SwapFree")
    ));
    s.push_str("\n\nStorage:\n");
    s.push_str("Filesystem                               Size     Used    Avail Use% Mounted on\n");
    for p in [store_root, workdir] {
        if let Ok(st) = nix::sys::statvfs::statvfs(p) {
            let bs = st.fragment_size();
            let size = st.blocks() * bs;
            let avail = st.blocks_available() * bs;
            let used = size.saturating_sub(st.blocks_free() * bs);
            let pct = (used * 100).checked_div(size).unwrap_or(0);
            s.push_str(&format!(
                "{:<40} {:>7} {:>8} {:>8} {:>3}% {}\n",
                "-",
                human(size),
                human(used),
                human(avail),
                pct,
                p.display()
            ));
        }
    }
    s
}

fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", U[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_lines_and_tail() {
        let d = tempfile::tempdir().unwrap();
        let l = Logs::open(d.path()).unwrap();
        l.start("dnf install");
        l.finish("dnf install");
        let s = std::fs::read_to_string(d.path().join("state.log")).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" - INFO: Start: dnf install"), "{s}");
        assert!(lines[1].ends_with(" - INFO: Finish: dnf install"), "{s}");
        // 2026-11-27 16:41:12,345
        let ts = &lines[0][..23];
        assert_eq!(ts.as_bytes()[4], b'-');
        assert_eq!(ts.as_bytes()[19], b',');
        for i in 1..=100 {
            l.append("build.log", &format!("line {i}\n")).unwrap();
        }
        assert_eq!(l.tail("build.log", 3), "line 98\nline 99\nline 100");
        assert_eq!(l.tail("missing.log", 3), "");
        // A long log: only its end is read, and the cut line is dropped.
        let long: String = (0..5000).map(|i| format!("row {i:05}\n")).collect();
        l.write("big.log", &long).unwrap();
        let t = l.tail("big.log", 5000);
        assert!(t.starts_with("row "), "{}", &t[..20]);
        assert!(t.ends_with("row 04999"));
        assert!(t.len() <= 16384);
    }

    #[tokio::test]
    async fn capped_log_keeps_the_cap_and_says_so() {
        use tokio::io::AsyncWriteExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("build.log");
        std::fs::write(&p, "framing line\n").unwrap();
        let (mut w, discarded) = CappedLog::open(&p, Some(100)).unwrap();
        for _ in 0..50 {
            w.write_all(b"0123456789").await.unwrap();
        }
        w.flush().await.unwrap();
        drop(w);
        let text = std::fs::read_to_string(&p).unwrap();
        let (kept, note) = text.split_at(100);
        assert!(kept.starts_with("framing line\n0123456789"), "{kept}");
        assert!(
            note.contains("build.log reached max_log_size (100 bytes)"),
            "{note}"
        );
        assert_eq!(note.matches("max_log_size").count(), 1, "{note}");
        assert_eq!(
            discarded.load(std::sync::atomic::Ordering::Relaxed),
            500 - (100 - 13)
        );
        // A log already over the cap takes nothing more.
        let (mut w, discarded) = CappedLog::open(&p, Some(10)).unwrap();
        w.write_all(b"more").await.unwrap();
        w.flush().await.unwrap();
        let again = std::fs::read_to_string(&p).unwrap();
        assert!(again.starts_with(&text) && !again.contains("more"));
        assert_eq!(discarded.load(std::sync::atomic::Ordering::Relaxed), 4);
        // No cap: everything is kept.
        let q = d.path().join("root.log");
        let (mut w, discarded) = CappedLog::open(&q, None).unwrap();
        w.write_all(&[b'x'; 10000]).await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(std::fs::metadata(&q).unwrap().len(), 10000);
        assert_eq!(discarded.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn hw_info_has_mock_sections() {
        let d = tempfile::tempdir().unwrap();
        let s = hw_info(d.path(), d.path());
        for h in ["CPU info:", "Memory:", "Storage:", "Mem:", "CPU(s):"] {
            assert!(s.contains(h), "{h} missing in {s}");
        }
        assert!(s.contains(&d.path().display().to_string()));
    }
}
