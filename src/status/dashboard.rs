//! The HTML dashboard: server-rendered pages that refresh themselves with
//! `<meta http-equiv=refresh>`, need no JavaScript and load nothing from elsewhere
//! (inline CSS only; the server's Content-Security-Policy forbids the rest). Every
//! value is HTML-escaped ([`esc`]).

use std::borrow::Cow;
use std::fmt::Write as _;

use super::api::{self, container_status, iso, task_status, ViewCtx};
use crate::registry::{ContainerRecord, ContainerState, SessionState, TaskPhase, TaskRecord};

/// Seconds between refreshes of a live page.
pub const REFRESH_SECS: u32 = 5;
/// Finished tasks shown on the dashboard.
const RECENT_TASKS: usize = 50;
/// Containers shown on the dashboard.
const CONTAINERS: usize = 50;

/// HTML-escape text for element content and quoted attribute values.
pub fn esc(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `1h 02m`, `3m 05s`, `4.2 s`.
pub fn duration(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let s = secs.round() as u64;
    if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else if s < 86400 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d {:02}h", s / 86400, (s % 86400) / 3600)
    }
}

/// `512 B`, `1.5 MiB`…
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn opt(s: Option<&str>) -> Cow<'_, str> {
    match s {
        Some(s) => esc(s),
        None => Cow::Borrowed("—"),
    }
}

/// Cut long text (results, faults) for table cells.
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

const STYLE: &str = "\
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#b42318;--warn:#9a6700;--mute:#6b7280;--line:#d0d7de}\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1400px;padding:1rem 1.5rem}\
header{display:flex;align-items:center;gap:1rem;flex-wrap:wrap;border-bottom:1px solid var(--line);padding-bottom:.5rem}\
h1{font-size:1.4rem;margin:0}h2{font-size:1.1rem;margin:1.4rem 0 .4rem}\
a{color:inherit}.mute{color:var(--mute)}\
.badge{display:inline-block;padding:.1rem .6rem;border-radius:1rem;font-weight:600;font-size:.85rem;color:#fff}\
.b-healthy,.b-completed,.b-running,.b-ready{background:var(--ok)}.b-degraded,.b-failed,.b-not-ready{background:var(--bad)}\
.b-canceled,.b-refused,.b-freed,.b-exited,.b-removed,.b-waiting{background:var(--mute)}\
tr.running td:first-child{border-left:3px solid var(--ok)}tr.failed td:first-child{border-left:3px solid var(--bad)}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.6rem 0}dt{color:var(--mute)}dd{margin:0}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}\
th{font-weight:600;font-size:.85rem;color:var(--mute)}td.num{text-align:right;font-variant-numeric:tabular-nums}\
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}pre{overflow:auto;max-height:40rem;padding:.6rem;border:1px solid var(--line)}\
ul.reasons{margin:.3rem 0;color:var(--bad)}footer{margin-top:2rem;color:var(--mute);font-size:.85rem}\
.empty{color:var(--mute);font-style:italic}";

fn head(out: &mut String, title: &str, refresh: bool) {
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    if refresh {
        let _ = writeln!(
            out,
            "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">"
        );
    }
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(out, "<title>{}</title>", esc(title));
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
}

fn foot(out: &mut String, ctx: &ViewCtx<'_>, refresh: bool) {
    let _ = write!(
        out,
        "<footer>Rendered <time datetime=\"{t}\">{t}</time>",
        t = iso(ctx.now)
    );
    if refresh {
        let _ = write!(out, " · refreshes every {REFRESH_SECS} s");
    }
    out.push_str(
        " · <a href=\"/\">dashboard</a> · <a href=\"/api/v1/status\">status JSON</a> · \
         <a href=\"/api/v1/tasks\">tasks JSON</a> · <a href=\"/api/v1/containers\">containers JSON</a> · \
         <a href=\"/metrics\">metrics</a></footer>\n</body>\n</html>\n",
    );
}

fn host_name(ctx: &ViewCtx<'_>) -> String {
    ctx.snap
        .host
        .host_name
        .clone()
        .or_else(|| ctx.info.system_hostname.clone())
        .unwrap_or_else(|| "build host".into())
}

fn task_link(id: i64) -> String {
    format!("<a href=\"/tasks/{id}\">{id}</a>")
}

fn container_link(id: &str) -> String {
    format!("<a href=\"/containers/{0}\"><code>{0}</code></a>", esc(id))
}

fn badge(class: &str, text: &str) -> String {
    format!(
        "<span class=\"badge b-{}\">{}</span>",
        esc(class),
        esc(text)
    )
}

fn task_badge(t: &TaskRecord) -> String {
    if t.phase == TaskPhase::Running && t.waiting {
        return badge("waiting", "waiting");
    }
    let s = task_status(t.phase);
    badge(s, s)
}

/// `GET /`: host state, running and recent tasks, containers.
pub fn dashboard(ctx: &ViewCtx<'_>) -> String {
    let snap = ctx.snap;
    let h = &snap.host;
    let r = &ctx.info.redactor;
    let name = host_name(ctx);
    let reasons = api::health(ctx);
    let mut out = String::with_capacity(16 * 1024);
    head(&mut out, &format!("{name} — koji-adjutant"), true);
    let _ = writeln!(
        out,
        "<header><h1>koji-adjutant <span class=\"mute\">{}</span></h1>{}{}</header>",
        esc(&name),
        if reasons.is_empty() {
            badge("healthy", "healthy")
        } else {
            badge("degraded", "degraded")
        },
        if h.ready {
            badge("ready", "ready for tasks")
        } else {
            badge("not-ready", "not ready")
        }
    );
    // host
    out.push_str("<section id=\"host\">\n");
    if !reasons.is_empty() {
        out.push_str("<ul class=\"reasons\">");
        for why in &reasons {
            let _ = write!(out, "<li>{}</li>", esc(why));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<dl>");
    let session = match h.session {
        SessionState::Exclusive => "exclusive host session",
        SessionState::LoggedIn => "logged in (not exclusive)",
        SessionState::LoggedOut => "not logged in",
    };
    let rows: Vec<(&str, String)> = vec![
        (
            "Host",
            format!(
                "{} (id {})",
                esc(&name),
                h.host_id.map_or("—".into(), |i| i.to_string())
            ),
        ),
        (
            "Hub",
            format!(
                "<code>{}</code> {}",
                esc(&r.text(&h.hub_url)),
                h.hub_version
                    .as_deref()
                    .map(|v| format!("(Koji {})", esc(v)))
                    .unwrap_or_default()
            ),
        ),
        (
            "Session",
            format!(
                "{}{}",
                session,
                h.session_id.map(|i| format!(" #{i}")).unwrap_or_default()
            ),
        ),
        (
            "Last check-in",
            h.last_poll
                .map_or("never".into(), |t| format!("{} ago", duration(ctx.now - t))),
        ),
        (
            "Ready",
            if h.ready {
                "yes".into()
            } else {
                format!(
                    "no: {}",
                    opt(r.opt(h.not_ready_reason.as_deref()).as_deref())
                )
            },
        ),
        (
            "Load",
            format!(
                "{:.2} of capacity {:.2} · {} running (maxjobs {})",
                h.task_load, h.capacity, h.running, h.maxjobs
            ),
        ),
        (
            "Last hub error",
            h.last_hub_error.as_ref().map_or("none".into(), |(t, m)| {
                format!(
                    "{} ago: {}",
                    duration(ctx.now - t),
                    esc(&short(&r.text(m), 300))
                )
            }),
        ),
        (
            "Uptime",
            format!(
                "{} (since {})",
                duration(ctx.now - h.start_time),
                iso(h.start_time)
            ),
        ),
        (
            "Versions",
            format!(
                "koji-adjutant {} · kernel {}",
                env!("CARGO_PKG_VERSION"),
                opt(ctx.info.kernel.as_deref())
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = write!(out, "<dt>{k}</dt><dd>{v}</dd>");
    }
    out.push_str("</dl>\n</section>\n");

    // running tasks
    let mut running: Vec<&TaskRecord> = snap
        .tasks
        .values()
        .filter(|t| t.phase == TaskPhase::Running)
        .collect();
    running.sort_by(|a, b| a.started.total_cmp(&b.started));
    let _ = writeln!(
        out,
        "<section id=\"running\"><h2>Running tasks ({})</h2>",
        running.len()
    );
    if running.is_empty() {
        out.push_str("<p class=\"empty\">No task is running.</p>\n");
    } else {
        out.push_str(
            "<table><thead><tr><th>Task</th><th>Method</th><th>State</th><th>Arch</th><th>Tag</th>\
             <th>Step</th><th>Image</th><th>Rule</th><th>Container</th><th>Started</th><th>Running for</th></tr></thead><tbody>\n",
        );
        for t in running {
            let step = t.steps.iter().rev().find(|s| s.end.is_none());
            let _ = writeln!(
                out,
                "<tr id=\"task-{id}\" class=\"task running\"><td>{link}</td><td>{method}</td><td>{badge}</td><td>{arch}</td><td>{tag}</td>\
                 <td>{step}</td><td><code>{image}</code></td><td>{rule}</td><td>{ctr}</td><td>{started}</td><td class=\"num\">{dur}</td></tr>",
                id = t.id,
                link = task_link(t.id),
                method = esc(&t.method),
                badge = task_badge(t),
                arch = esc(&t.arch),
                tag = opt(t.tag.as_deref()),
                step = step.map_or("—".into(), |s| format!(
                    "{} ({})",
                    esc(&s.name),
                    duration(ctx.now - s.start)
                )),
                image = opt(t.image.as_deref()),
                rule = opt(t.policy_rule.as_deref()),
                ctr = t.container_id.as_deref().map_or("—".into(), container_link),
                started = iso(t.started),
                dur = duration(ctx.now - t.started),
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n");

    // recent tasks
    let mut recent: Vec<&TaskRecord> = snap
        .tasks
        .values()
        .filter(|t| t.phase != TaskPhase::Running)
        .collect();
    recent.sort_by(|a, b| {
        b.finished
            .unwrap_or(0.0)
            .total_cmp(&a.finished.unwrap_or(0.0))
            .then(b.id.cmp(&a.id))
    });
    let _ = writeln!(
        out,
        "<section id=\"recent\"><h2>Recent tasks ({} kept)</h2>",
        recent.len()
    );
    if recent.is_empty() {
        out.push_str("<p class=\"empty\">No task has finished yet.</p>\n");
    } else {
        out.push_str(
            "<table><thead><tr><th>Task</th><th>Method</th><th>Outcome</th><th>Arch</th><th>Image</th>\
             <th>Finished</th><th>Took</th><th>Result or fault</th></tr></thead><tbody>\n",
        );
        for t in recent.into_iter().take(RECENT_TASKS) {
            let detail = match (&t.fault, &t.summary) {
                (Some(f), _) => format!("{}: {}", f.name, r.text(&f.message)),
                (None, Some(s)) => r.text(s),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                out,
                "<tr id=\"task-{id}\" class=\"task {status}\"><td>{link}</td><td>{method}</td><td>{badge}</td><td>{arch}</td>\
                 <td><code>{image}</code></td><td>{fin}</td><td class=\"num\">{took}</td><td>{detail}</td></tr>",
                id = t.id,
                status = task_status(t.phase),
                link = task_link(t.id),
                method = esc(&t.method),
                badge = task_badge(t),
                arch = esc(&t.arch),
                image = opt(t.image.as_deref()),
                fin = t.finished.map_or("—".into(), iso),
                took = duration(t.finished.unwrap_or(ctx.now) - t.started),
                detail = esc(&short(&detail, 200)),
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n");

    // containers
    let mut ctrs: Vec<&ContainerRecord> = snap.containers.values().collect();
    ctrs.sort_by(|a, b| {
        (b.state == ContainerState::Running)
            .cmp(&(a.state == ContainerState::Running))
            .then(b.started.total_cmp(&a.started))
    });
    let live = ctrs
        .iter()
        .filter(|c| c.state == ContainerState::Running)
        .count();
    let _ = writeln!(
        out,
        "<section id=\"containers\"><h2>Containers ({live} running, {} kept)</h2>",
        ctrs.len()
    );
    if ctrs.is_empty() {
        out.push_str("<p class=\"empty\">No container.</p>\n");
    } else {
        out.push_str(
            "<table><thead><tr><th>Container</th><th>Task</th><th>State</th><th>Image</th><th>Pid</th><th>Network</th>\
             <th>CPU</th><th>Peak memory</th><th>OOM kills</th><th>Limits</th></tr></thead><tbody>\n",
        );
        for c in ctrs.into_iter().take(CONTAINERS) {
            container_row(&mut out, ctx, c);
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n");
    foot(&mut out, ctx, true);
    out
}

fn limits_text(c: &ContainerRecord) -> String {
    let mut parts = Vec::new();
    if let Some(m) = c.limits.memory_bytes {
        parts.push(format!("mem {}", bytes(m)));
    }
    if let Some(cpu) = c.limits.cpus {
        parts.push(format!("{cpu} CPU"));
    }
    if let Some(p) = c.limits.pids {
        parts.push(format!("{p} pids"));
    }
    let mut s = if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    };
    if !c.limits_available {
        s.push_str(" (not enforced: no writable cgroup)");
    }
    s
}

fn container_row(out: &mut String, ctx: &ViewCtx<'_>, c: &ContainerRecord) {
    let r = &ctx.info.redactor;
    let u = c.usage.unwrap_or_default();
    let status = container_status(c.state);
    let _ = writeln!(
        out,
        "<tr id=\"container-{idattr}\" class=\"container {status}\"><td>{link}</td><td>{task}</td><td>{badge}</td>\
         <td><code>{image}</code>{digest}</td><td class=\"num\">{pid}</td><td>{net}</td><td class=\"num\">{cpu}</td>\
         <td class=\"num\">{peak}</td><td class=\"num\">{oom}</td><td>{limits}</td></tr>",
        idattr = esc(&c.id),
        link = container_link(&c.id),
        task = c.task_id.map_or("—".into(), task_link),
        badge = badge(status, status),
        image = esc(&r.text(&c.image)),
        digest = c
            .image_digest
            .as_deref()
            .map(|d| format!("<br><code class=\"mute\">{}</code>", esc(&short(d, 19))))
            .unwrap_or_default(),
        pid = c.pid.map_or("—".into(), |p| p.to_string()),
        net = esc(&c.network),
        cpu = c
            .usage
            .map_or("—".into(), |_| duration(u.cpu_seconds)),
        peak = c.usage.map_or("—".into(), |_| bytes(u.peak_memory)),
        oom = c.usage.map_or("—".into(), |_| u.oom_kills.to_string()),
        limits = esc(&limits_text(c)),
    );
}

/// `GET /tasks/<id>`: one task with its steps and the end of its main log.
pub fn task_page(ctx: &ViewCtx<'_>, t: &TaskRecord, log_tail: Option<&str>) -> String {
    let r = &ctx.info.redactor;
    let live = t.phase == TaskPhase::Running;
    let mut out = String::with_capacity(16 * 1024);
    head(
        &mut out,
        &format!("Task {} ({}) — {}", t.id, t.method, host_name(ctx)),
        live,
    );
    let _ = writeln!(
        out,
        "<header><h1>Task {} <span class=\"mute\">{}</span></h1>{}</header>",
        t.id,
        esc(&t.method),
        task_badge(t)
    );
    out.push_str("<section id=\"task\"><dl>");
    let end = t.finished.unwrap_or(ctx.now);
    let rows: Vec<(&str, String)> = vec![
        ("Arch", esc(&t.arch).into_owned()),
        ("Tag", opt(t.tag.as_deref()).into_owned()),
        ("Source", opt(t.srpm.as_deref()).into_owned()),
        ("Weight", format!("{:.2}", t.weight)),
        ("Started", iso(t.started)),
        ("Finished", t.finished.map_or("—".into(), iso)),
        ("Duration", duration(end - t.started)),
        ("Image", format!("<code>{}</code>", opt(t.image.as_deref()))),
        ("Policy rule", opt(t.policy_rule.as_deref()).into_owned()),
        (
            "Buildroot",
            t.buildroot_id.map_or("—".into(), |b| b.to_string()),
        ),
        (
            "Container",
            t.container_id.as_deref().map_or("—".into(), container_link),
        ),
        (
            "Usage",
            t.usage.map_or("—".into(), |u| {
                format!(
                    "CPU {} · peak memory {}{}",
                    duration(u.cpu_seconds),
                    bytes(u.peak_memory),
                    if u.oom_killed { " · OOM killed" } else { "" }
                )
            }),
        ),
    ];
    for (k, v) in rows {
        let _ = write!(out, "<dt>{k}</dt><dd>{v}</dd>");
    }
    if let Some(f) = &t.fault {
        let _ = write!(
            out,
            "<dt>Fault</dt><dd><pre>{} ({}): {}</pre></dd>",
            esc(&f.name),
            f.code,
            esc(&r.text(&f.message))
        );
    } else if let Some(s) = &t.summary {
        let label = if t.phase == TaskPhase::Closed {
            "Result"
        } else {
            "Message"
        };
        let _ = write!(
            out,
            "<dt>{label}</dt><dd><pre>{}</pre></dd>",
            esc(&r.text(s))
        );
    }
    out.push_str("</dl></section>\n<section id=\"steps\"><h2>Steps</h2>\n");
    if t.steps.is_empty() {
        out.push_str("<p class=\"empty\">No step recorded.</p>\n");
    } else {
        out.push_str(
            "<table><thead><tr><th>Step</th><th>Started</th><th>Finished</th><th>Took</th><th>Outcome</th></tr></thead><tbody>\n",
        );
        for s in &t.steps {
            let _ = writeln!(
                out,
                "<tr class=\"step\"><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&s.name),
                iso(s.start),
                s.end.map_or("running".into(), iso),
                duration(s.end.unwrap_or(ctx.now) - s.start),
                opt(r.opt(s.status.as_deref()).as_deref())
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n<section id=\"logs\"><h2>Logs</h2>\n");
    if t.logs.is_empty() {
        out.push_str("<p class=\"empty\">No log.</p>\n");
    } else {
        out.push_str("<ul>");
        for name in t.logs.keys() {
            let _ = write!(
                out,
                "<li><a href=\"/api/v1/tasks/{}/logs?name={}&amp;tail=1000\">{}</a>",
                t.id,
                esc(&url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()),
                esc(name)
            );
            if let Some(u) = ctx.info.log_url(t.id, name) {
                let u = r.text(&u);
                let _ = write!(out, " · <a href=\"{}\">on the hub</a>", esc(&u));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>\n");
        if let (Some((name, _)), Some(text)) = (api::main_log(t), log_tail) {
            let _ = writeln!(
                out,
                "<h3>End of {}</h3><pre id=\"log\">{}</pre>",
                esc(name),
                esc(text)
            );
        }
    }
    out.push_str("</section>\n");
    foot(&mut out, ctx, live);
    out
}

/// `GET /containers/<id>`.
pub fn container_page(ctx: &ViewCtx<'_>, c: &ContainerRecord) -> String {
    let r = &ctx.info.redactor;
    let live = c.state == ContainerState::Running;
    let mut out = String::with_capacity(8 * 1024);
    head(
        &mut out,
        &format!("Container {} — {}", c.id, host_name(ctx)),
        live,
    );
    let status = container_status(c.state);
    let _ = writeln!(
        out,
        "<header><h1>Container <code>{}</code></h1>{}</header>",
        esc(&c.id),
        badge(status, status)
    );
    out.push_str("<section id=\"container\"><dl>");
    let u = c.usage;
    let rows: Vec<(&str, String)> = vec![
        ("Task", c.task_id.map_or("—".into(), task_link)),
        ("Image", format!("<code>{}</code>", esc(&r.text(&c.image)))),
        (
            "Digest",
            format!("<code>{}</code>", opt(c.image_digest.as_deref())),
        ),
        ("Pid", c.pid.map_or("—".into(), |p| p.to_string())),
        ("Network", esc(&c.network).into_owned()),
        ("Limits", esc(&limits_text(c)).into_owned()),
        (
            "Command",
            if c.command.is_empty() {
                "—".into()
            } else {
                format!("<code>{}</code>", esc(&r.text(&c.command.join(" "))))
            },
        ),
        ("Workdir", opt(c.workdir.as_deref()).into_owned()),
        ("User", opt(c.user.as_deref()).into_owned()),
        ("Started", iso(c.started)),
        ("Finished", c.finished.map_or("—".into(), iso)),
        ("Removed", c.removed.map_or("—".into(), iso)),
        (
            "Exit code",
            c.exit_code.map_or("—".into(), |e| e.to_string()),
        ),
        (
            "CPU time",
            u.map_or("—".into(), |u| duration(u.cpu_seconds)),
        ),
        (
            "Memory",
            u.map_or("—".into(), |u| {
                format!(
                    "{} now, {} peak",
                    bytes(u.memory_bytes),
                    bytes(u.peak_memory)
                )
            }),
        ),
        ("Processes", u.map_or("—".into(), |u| u.pids.to_string())),
        (
            "OOM kills",
            u.map_or("—".into(), |u| u.oom_kills.to_string()),
        ),
    ];
    for (k, v) in rows {
        let _ = write!(out, "<dt>{k}</dt><dd>{v}</dd>");
    }
    out.push_str("</dl></section>\n<section id=\"mounts\"><h2>Mounts</h2>\n");
    if c.mounts.is_empty() {
        out.push_str("<p class=\"empty\">No bind mount.</p>\n");
    } else {
        out.push_str(
            "<table><thead><tr><th>Source</th><th>Target</th><th>Mode</th></tr></thead><tbody>\n",
        );
        for m in &c.mounts {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&m.source),
                esc(&m.target),
                if m.read_only { "ro" } else { "rw" }
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n");
    foot(&mut out, ctx, live);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_formatting() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert!(matches!(esc("plain"), Cow::Borrowed(_)));
        assert_eq!(duration(4.24), "4.2 s");
        assert_eq!(duration(185.0), "3m 05s");
        assert_eq!(duration(3720.0), "1h 02m");
        assert_eq!(duration(90000.0), "1d 01h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(short("abcdef", 3), "abc…");
    }
}
