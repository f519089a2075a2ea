//! Progress display for image commands: indicatif bars when stderr is a terminal,
//! plain lines otherwise (logs, CI, pipes).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use adjutant_runtime::progress::{BlobKind, Event, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Pick the display for this process: bars on a terminal, lines otherwise, nothing
/// with `quiet`.
pub fn for_terminal(quiet: bool) -> std::sync::Arc<dyn Progress> {
    if quiet {
        adjutant_runtime::progress::silent()
    } else if std::io::stderr().is_terminal() {
        std::sync::Arc::new(Bars::new())
    } else {
        std::sync::Arc::new(Lines::default())
    }
}

fn kind(k: BlobKind) -> &'static str {
    match k {
        BlobKind::Manifest => "manifest",
        BlobKind::Config => "config",
        BlobKind::Layer => "blob",
    }
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

/// One line per event that matters.
#[derive(Default)]
pub struct Lines {
    sizes: Mutex<HashMap<String, u64>>,
}

impl Progress for Lines {
    fn event(&self, e: &Event<'_>) {
        let line = match e {
            Event::BlobStart {
                digest,
                size,
                kind: k,
            } => {
                self.sizes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(digest.to_string(), *size);
                format!("Copying {} {} ({})", kind(*k), digest.short(), mb(*size))
            }
            Event::BlobBytes { .. } => return,
            Event::BlobDone { digest, fetched } => {
                if *fetched {
                    format!("Copied {}", digest.short())
                } else {
                    format!("Skipping {} (already present)", digest.short())
                }
            }
            Event::Retry {
                what,
                attempt,
                delay_ms,
                error,
            } => format!(
                "Retrying {what} (attempt {attempt} failed: {error}; waiting {delay_ms} ms)"
            ),
            Event::LayerStart { diff_id, size } => {
                format!("Unpacking layer {} ({})", diff_id.short(), mb(*size))
            }
            Event::LayerDone { diff_id, unpacked } => {
                if *unpacked {
                    format!("Unpacked layer {}", diff_id.short())
                } else {
                    format!("Layer {} already unpacked", diff_id.short())
                }
            }
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// A bar per blob and per layer being unpacked.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Bars {
    pub fn new() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, key: &str) -> Option<ProgressBar> {
        self.bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        for pb in bars.values() {
            if !pb.is_finished() {
                pb.abandon();
            }
        }
        if !bars.is_empty() {
            // indicatif leaves the cursor at the end of the last bar.
            eprintln!();
        }
    }
}

impl Progress for Bars {
    fn event(&self, e: &Event<'_>) {
        match e {
            Event::BlobStart {
                digest,
                size,
                kind: k,
            } => {
                let style = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                let pb = self.multi.add(ProgressBar::new(*size).with_style(style));
                pb.set_prefix(format!("Copying {} {}", kind(*k), digest.short()));
                self.bars
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(digest.to_string(), pb);
            }
            Event::BlobBytes { digest, bytes } => {
                if let Some(pb) = self.bar(&digest.to_string()) {
                    pb.inc(*bytes);
                }
            }
            Event::BlobDone { digest, fetched } => match self.bar(&digest.to_string()) {
                Some(pb) => pb.finish_with_message("done"),
                None if !*fetched => {
                    let _ = self
                        .multi
                        .println(format!("Skipping {} (already present)", digest.short()));
                }
                None => {}
            },
            Event::Retry {
                what,
                attempt,
                error,
                ..
            } => {
                let _ = self
                    .multi
                    .println(format!("Retrying {what} (attempt {attempt}: {error})"));
            }
            Event::LayerStart { diff_id, .. } => {
                let pb = self.multi.add(ProgressBar::new_spinner());
                pb.set_message(format!("Unpacking layer {}", diff_id.short()));
                pb.enable_steady_tick(std::time::Duration::from_millis(120));
                self.bars
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(format!("layer-{diff_id}"), pb);
            }
            Event::LayerDone { diff_id, unpacked } => {
                if let Some(pb) = self.bar(&format!("layer-{diff_id}")) {
                    pb.finish_with_message(format!("Unpacked layer {}", diff_id.short()));
                } else if !*unpacked {
                    let _ = self
                        .multi
                        .println(format!("Layer {} already unpacked", diff_id.short()));
                }
            }
        }
    }
}
