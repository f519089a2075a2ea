//! What several build tasks share, each as kojid does it: `koji.canonArch`, the host
//! check of buildroot tasks (`BaseBuildTask.checkHostArch`), the buildroot arch of a
//! noarch task (`find_arch`), the arch list of a build (`getArchList`) and of its
//! subtasks (`choose_taskarch`), reading an SRPM's header, and fetching files from
//! `<topurl>/work/…` (`localPath`/`koji.downloadFile`).

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::io::AsyncWriteExt;
use tracing::{debug, info};

use crate::config::Config;
use crate::daemon::{HostCheckContext, TaskFailure, TaskParams};
use crate::fnmatch::{fnmatch, multi_fnmatch};
use crate::hub::{HostInfo, HubSession};
use crate::rpmfile::{tag, RpmHeaders};
use crate::xmlrpc::Value;

/// `koji.canonArch`.
pub fn canon_arch(arch: &str) -> String {
    let m = |p: &str| fnmatch(arch, p);
    if m("i?86") || arch == "athlon" {
        "i386"
    } else if arch == "ia32e" {
        "x86_64"
    } else if m("ppc64le") {
        "ppc64le"
    } else if m("ppc64*") {
        "ppc64"
    } else if m("sparc64*") {
        "sparc64"
    } else if m("sparc*") {
        "sparc"
    } else if m("alpha*") {
        "alpha"
    } else if m("arm*h*") {
        "armhfp"
    } else if m("arm*") {
        "arm"
    } else {
        arch
    }
    .to_owned()
}

/// The `arches` of a build config (tag) as a word list.
pub fn tag_arches(cfg: &Value) -> Vec<String> {
    cfg.get("arches")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// A tag reference as kojid passes it to `getBuildConfig`: an id, a name, or the id
/// or name of a tag dict.
pub fn tag_ref(tag: &Value) -> Value {
    match tag {
        Value::Struct(s) => s
            .get("id")
            .filter(|v| v.truthy())
            .or_else(|| s.get("name"))
            .cloned()
            .unwrap_or(Value::Nil),
        other => other.clone(),
    }
}

/// The host check of the SRPM tasks (`rebuildSRPM`, `buildSRPMFromSCM`):
/// [`check_host_arch`] on their `build_tag` (second argument or keyword); true without one.
pub async fn check_build_tag_arch(
    ctx: &HostCheckContext,
    params: &TaskParams,
) -> Result<bool, String> {
    match params
        .args
        .get(1)
        .or_else(|| params.kwargs.get("build_tag"))
    {
        Some(tag) => check_host_arch(&ctx.session, tag, ctx.host.as_ref()).await,
        None => Ok(true),
    }
}

/// `BaseBuildTask.checkHostArch`: false when the tag has arches and none is the
/// host's.
pub async fn check_host_arch(
    session: &HubSession,
    tag: &Value,
    host: Option<&HostInfo>,
) -> Result<bool, String> {
    let cfg = session
        .get_build_config(tag_ref(tag), None)
        .await
        .map_err(|e| e.to_string())?;
    let Some(cfg) = cfg else { return Ok(true) };
    let arches = tag_arches(&cfg);
    if arches.is_empty() {
        return Ok(true);
    }
    let Some(host) = host else { return Ok(true) };
    let ok = arches
        .iter()
        .map(|a| canon_arch(a))
        .any(|a| host.arches.contains(&a));
    if !ok {
        info!(
            tag_arches = arches.join(", "),
            host_arches = host.arches.join(", "),
            "tag arches and host arches are disjoint"
        );
    }
    Ok(ok)
}

/// `BaseTaskHandler.find_arch`: a concrete buildroot arch for `arch` (for noarch: a
/// canonical arch both the host and the tag support, `preferred` if possible).
pub fn find_arch(
    arch: &str,
    host: &HostInfo,
    tag: &Value,
    preferred: Option<&str>,
) -> Result<String, TaskFailure> {
    if arch != "noarch" {
        return Ok(arch.to_owned());
    }
    if host.arches.is_empty() {
        return Err(TaskFailure::build(format!(
            "No arch list for this host: {}",
            host.name
        )));
    }
    let tag_name = tag.get("name").and_then(Value::as_str).unwrap_or_default();
    let tarches = tag_arches(tag);
    if tarches.is_empty() {
        return Err(TaskFailure::build(format!(
            "No arch list for tag: {tag_name}"
        )));
    }
    let mut h: Vec<String> = host.arches.iter().map(|a| canon_arch(a)).collect();
    h.sort();
    h.dedup();
    let mut t: Vec<String> = tarches.iter().map(|a| canon_arch(a)).collect();
    t.sort();
    t.dedup();
    let common: Vec<String> = h.iter().filter(|a| t.contains(a)).cloned().collect();
    if common.is_empty() {
        return Err(TaskFailure::build(format!(
            "host {} ({}) does not support any arches of tag {} ({})",
            host.name,
            h.join(", "),
            tag_name,
            t.join(", ")
        )));
    }
    if let Some(p) = preferred.filter(|p| common.iter().any(|c| c == p)) {
        info!(
            valid = common.join(" "),
            using = p,
            "using the preferred arch"
        );
        return Ok(p.to_owned());
    }
    let pick = common
        .choose(&mut rand::thread_rng())
        .cloned()
        .unwrap_or_default();
    info!(
        valid = common.join(" "),
        using = pick,
        "picked a buildroot arch"
    );
    Ok(pick)
}

/// What the build tasks read from an SRPM header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrpmInfo {
    /// `name`.
    pub name: String,
    /// `version`.
    pub version: String,
    /// `release`.
    pub release: String,
    /// `epoch`.
    pub epoch: Option<i64>,
    /// `BuildArch` (`buildarchs`).
    pub buildarchs: Vec<String>,
    /// `ExclusiveArch`.
    pub exclusivearch: Vec<String>,
    /// `ExcludeArch`.
    pub excludearch: Vec<String>,
}

impl SrpmInfo {
    /// From the headers; a binary package is a BuildError (`not a source package`),
    /// with `what` as kojid words it.
    pub fn from_headers(h: &RpmHeaders, what: &str) -> Result<SrpmInfo, TaskFailure> {
        if !h.is_source() {
            return Err(TaskFailure::build(what.to_owned()));
        }
        Ok(SrpmInfo {
            name: h.name(),
            version: h.version(),
            release: h.release(),
            epoch: h.epoch(),
            buildarchs: h.main.strings(tag::BUILDARCHS),
            exclusivearch: h.main.strings(tag::EXCLUSIVEARCH),
            excludearch: h.main.strings(tag::EXCLUDEARCH),
        })
    }

    /// Read `path` (in a blocking thread).
    pub async fn read(path: &Path, what: &str) -> Result<SrpmInfo, TaskFailure> {
        let h = read_headers(path).await?;
        SrpmInfo::from_headers(&h, what)
    }
}

/// Read an rpm's headers in a blocking thread.
pub async fn read_headers(path: &Path) -> Result<RpmHeaders, TaskFailure> {
    let p = path.to_owned();
    tokio::task::spawn_blocking(move || RpmHeaders::open(&p))
        .await
        .map_err(|e| TaskFailure::internal(format!("reading {}: {e}", path.display())))?
        .map_err(|e| TaskFailure::generic(e.to_string()))
}

/// `BuildTask.getArchList`: the arches to build `srpm` for in `build_config`.
pub fn arch_list(
    build_config: &Value,
    srpm: &SrpmInfo,
    extra_arches: Option<&str>,
    scratch: bool,
    arch_override: Option<&str>,
) -> Result<Vec<String>, TaskFailure> {
    let tag_words = tag_arches(build_config);
    if tag_words.is_empty() {
        return Err(TaskFailure::build(format!(
            "No arches for tag {} [{}]",
            build_config
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            build_config.get("id").and_then(Value::as_i64).unwrap_or(0)
        )));
    }
    let tag_archlist: Vec<String> = tag_words.iter().map(|a| canon_arch(a)).collect();
    let mut archlist: Vec<String> = tag_words.clone();
    if let Some(x) = extra_arches.filter(|x| !x.trim().is_empty()) {
        archlist.extend(x.split_whitespace().map(str::to_owned));
    }
    if !srpm.buildarchs.is_empty() {
        archlist = srpm.buildarchs.clone();
    }
    if !srpm.exclusivearch.is_empty() {
        archlist.retain(|a| srpm.exclusivearch.contains(a));
    }
    if !srpm.excludearch.is_empty() {
        archlist.retain(|a| !srpm.excludearch.contains(a));
    }
    let noarch = "noarch".to_string();
    if !srpm.excludearch.contains(&noarch)
        && (srpm.buildarchs.contains(&noarch) || srpm.exclusivearch.contains(&noarch))
    {
        archlist.push(noarch);
    }
    if let Some(o) = arch_override.filter(|o| scratch && !o.is_empty()) {
        debug!(arch_override = o, "arch override");
        archlist = o.split_whitespace().map(str::to_owned).collect();
    }
    let mut out: Vec<String> = Vec::new();
    for a in archlist {
        if (a == "noarch" || tag_archlist.contains(&canon_arch(&a))) && !out.contains(&a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        return Err(TaskFailure::build("No matching arches were found"));
    }
    Ok(out)
}

/// `BuildTask.choose_taskarch`: the arch of a subtask building `arch`.
pub fn choose_taskarch(
    arch: &str,
    srpm: Option<&SrpmInfo>,
    build_config: &Value,
    literal_task_arches: &str,
) -> Result<String, TaskFailure> {
    if multi_fnmatch(arch, literal_task_arches) {
        return Ok(arch.to_owned());
    }
    if arch != "noarch" {
        return Ok(canon_arch(arch));
    }
    let (exclusive, exclude) = match srpm {
        Some(s) => (s.exclusivearch.clone(), s.excludearch.clone()),
        None => (vec![], vec![]),
    };
    let noarch_arches = build_config
        .get("extra")
        .and_then(|e| e.get("noarch_arches"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if exclusive.is_empty() && exclude.is_empty() && noarch_arches.is_none() {
        return Ok("noarch".into());
    }
    let tag: Vec<String> = tag_arches(build_config)
        .iter()
        .map(|a| canon_arch(a))
        .collect();
    let exclusive: Vec<String> = exclusive.iter().map(|a| canon_arch(a)).collect();
    let exclude: Vec<String> = exclude.iter().map(|a| canon_arch(a)).collect();
    let mut archlist: Vec<String> = match noarch_arches {
        Some(n) => n
            .split_whitespace()
            .map(canon_arch)
            .filter(|a| tag.contains(a))
            .collect(),
        None => tag.clone(),
    };
    if !exclusive.is_empty() {
        archlist.retain(|a| exclusive.contains(a));
    }
    if !exclude.is_empty() {
        archlist.retain(|a| !exclude.contains(a));
    }
    info!(choices = ?archlist, "filtering arches for noarch subtask");
    if archlist.is_empty() {
        return Err(TaskFailure::build(format!(
            "No valid arches were found. tag {tag:?}, extra {noarch_arches:?},exclusive {exclusive:?}, exclude {exclude:?}"
        )));
    }
    let mut a = archlist.clone();
    a.sort();
    a.dedup();
    let mut t = tag.clone();
    t.sort();
    t.dedup();
    if a != t {
        Ok(archlist
            .choose(&mut rand::thread_rng())
            .cloned()
            .unwrap_or_default())
    } else {
        Ok("noarch".into())
    }
}

/// A path the hub sent (relative to `<topdir>`), checked: relative, no `..`.
pub fn safe_relpath(rel: &str) -> Result<PathBuf, TaskFailure> {
    let p = Path::new(rel);
    let ok = !rel.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(p.to_owned())
    } else {
        Err(TaskFailure::generic(format!(
            "refusing the path {rel:?}: not a relative path below the Koji top directory"
        )))
    }
}

/// `BaseTaskHandler.localPath(relpath)`: a local copy of `<topurl>/<relpath>` under
/// `<workdir>/local/`, downloaded once (or `<topdir>/<relpath>` without a topurl).
/// Downloads are retried 3 times, checked against Content-Length, and an `.rpm` must
/// be a readable rpm (`koji.downloadFile`).
pub async fn local_path(
    config: &Config,
    workdir: &Path,
    relpath: &str,
) -> Result<PathBuf, TaskFailure> {
    let rel = safe_relpath(relpath)?;
    let Some(topurl) = config
        .kojid
        .topurl
        .as_ref()
        .and_then(|w| w.0.first())
        .cloned()
    else {
        return Ok(config.kojid.topdir.join(rel));
    };
    let dest = workdir.join("local").join(&rel);
    if dest.exists() {
        return Ok(dest);
    }
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|e| {
            TaskFailure::generic(format!("create directory {}: {e}", parent.display()))
        })?;
    }
    let url = format!("{}/{}", topurl.trim_end_matches('/'), relpath);
    debug!(url, "downloading");
    download(config, &url, &dest).await?;
    if relpath.ends_with(".rpm") {
        if let Err(e) = read_headers(&dest).await {
            let _ = tokio::fs::remove_file(&dest).await;
            let msg = match e {
                TaskFailure::Fault(f) => f.string,
                other => format!("{other:?}"),
            };
            return Err(TaskFailure::generic(format!(
                "Downloaded rpm {url} is corrupted:\n{msg}"
            )));
        }
    }
    Ok(dest)
}

fn http_client(config: &Config) -> Result<reqwest::Client, TaskFailure> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(60))
        .read_timeout(Duration::from_secs(300));
    if let Some(ca) = config.kojid.serverca.as_ref().filter(|p| p.is_file()) {
        let pem = std::fs::read(ca)
            .map_err(|e| TaskFailure::generic(format!("read {}: {e}", ca.display())))?;
        for c in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| TaskFailure::generic(format!("{}: {e}", ca.display())))?
        {
            b = b.add_root_certificate(c);
        }
    }
    if config.kojid.no_ssl_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| TaskFailure::generic(format!("HTTP client: {e}")))
}

/// GET `url` into `dest` (a temporary name renamed into place when complete).
pub async fn download(config: &Config, url: &str, dest: &Path) -> Result<u64, TaskFailure> {
    let client = http_client(config)?;
    let tmp = dest.with_extension("part");
    let mut last = String::new();
    for attempt in 0..4u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        }
        match download_once(&client, url, &tmp).await {
            Ok(n) => {
                tokio::fs::rename(&tmp, dest)
                    .await
                    .map_err(|e| TaskFailure::generic(format!("rename {}: {e}", tmp.display())))?;
                return Ok(n);
            }
            Err((retry, msg)) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                if !retry {
                    return Err(TaskFailure::generic(msg));
                }
                last = msg;
            }
        }
    }
    Err(TaskFailure::generic(last))
}

async fn download_once(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
) -> Result<u64, (bool, String)> {
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| (true, format!("GET {url}: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        // requests' raise_for_status; 5xx are retried by koji's request_with_retry
        return Err((
            status.is_server_error(),
            format!("{} Error: for url: {url}", status),
        ));
    }
    let expected = resp.content_length();
    let mut f = tokio::fs::File::create(dest)
        .await
        .map_err(|e| (false, format!("create {}: {e}", dest.display())))?;
    let mut n: u64 = 0;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| (true, format!("GET {url}: {e}")))?
    {
        f.write_all(&chunk)
            .await
            .map_err(|e| (false, format!("write {}: {e}", dest.display())))?;
        n += chunk.len() as u64;
    }
    f.flush()
        .await
        .map_err(|e| (false, format!("write {}: {e}", dest.display())))?;
    if let Some(len) = expected {
        if len != n {
            return Err((
                true,
                format!("Downloaded file {url} doesn't match expected size ({n} vs {len})"),
            ));
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(arches: &str, extra: &[(&str, Value)]) -> Value {
        Value::struct_from([
            ("id", Value::Int(7)),
            ("name", Value::from("dist-build")),
            ("arches", Value::from(arches)),
            (
                "extra",
                Value::struct_from(extra.iter().map(|(k, v)| (*k, v.clone()))),
            ),
        ])
    }

    fn srpm(ba: &[&str], excl: &[&str], exclude: &[&str]) -> SrpmInfo {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        SrpmInfo {
            name: "p".into(),
            version: "1".into(),
            release: "1".into(),
            epoch: None,
            buildarchs: v(ba),
            exclusivearch: v(excl),
            excludearch: v(exclude),
        }
    }

    #[test]
    fn canon_arch_like_koji() {
        for (a, c) in [
            ("i686", "i386"),
            ("athlon", "i386"),
            ("ia32e", "x86_64"),
            ("amd64", "amd64"),
            ("ppc64le", "ppc64le"),
            ("ppc64p7", "ppc64"),
            ("armv7hl", "armhfp"),
            ("armv7l", "arm"),
            ("aarch64", "aarch64"),
            ("x86_64", "x86_64"),
            ("noarch", "noarch"),
        ] {
            assert_eq!(canon_arch(a), c, "{a}");
        }
    }

    #[test]
    fn arch_list_like_get_arch_list() {
        let c = cfg("x86_64 aarch64", &[]);
        assert_eq!(
            arch_list(&c, &srpm(&[], &[], &[]), None, false, None).unwrap(),
            ["x86_64", "aarch64"]
        );
        // noarch package: BuildArch noarch → only noarch
        assert_eq!(
            arch_list(&c, &srpm(&["noarch"], &[], &[]), None, false, None).unwrap(),
            ["noarch"]
        );
        assert_eq!(
            arch_list(&c, &srpm(&[], &["aarch64"], &[]), None, false, None).unwrap(),
            ["aarch64"]
        );
        assert_eq!(
            arch_list(&c, &srpm(&[], &[], &["aarch64"]), None, false, None).unwrap(),
            ["x86_64"]
        );
        // extra arches from the package config, filtered to the tag's
        assert_eq!(
            arch_list(&c, &srpm(&[], &[], &[]), Some("i686 s390x"), false, None).unwrap(),
            ["x86_64", "aarch64"]
        );
        // override only for scratch
        assert_eq!(
            arch_list(&c, &srpm(&[], &[], &[]), None, true, Some("aarch64")).unwrap(),
            ["aarch64"]
        );
        assert_eq!(
            arch_list(&c, &srpm(&[], &[], &[]), None, false, Some("aarch64")).unwrap(),
            ["x86_64", "aarch64"]
        );
        let e = arch_list(&c, &srpm(&[], &["ppc64le"], &[]), None, false, None).unwrap_err();
        assert_eq!(e, TaskFailure::build("No matching arches were found"));
        let e = arch_list(&cfg("", &[]), &srpm(&[], &[], &[]), None, false, None).unwrap_err();
        assert_eq!(e, TaskFailure::build("No arches for tag dist-build [7]"));
    }

    #[test]
    fn choose_taskarch_like_koji() {
        let c = cfg("x86_64 aarch64", &[]);
        assert_eq!(choose_taskarch("i686", None, &c, "").unwrap(), "i386");
        assert_eq!(choose_taskarch("i686", None, &c, "i?86").unwrap(), "i686");
        assert_eq!(choose_taskarch("noarch", None, &c, "").unwrap(), "noarch");
        let s = srpm(&["noarch"], &["aarch64"], &[]);
        assert_eq!(
            choose_taskarch("noarch", Some(&s), &c, "").unwrap(),
            "aarch64"
        );
        let s = srpm(&["noarch"], &["x86_64", "aarch64"], &[]);
        assert_eq!(
            choose_taskarch("noarch", Some(&s), &c, "").unwrap(),
            "noarch"
        );
        let c2 = cfg(
            "x86_64 aarch64",
            &[("noarch_arches", Value::from("x86_64"))],
        );
        assert_eq!(choose_taskarch("noarch", None, &c2, "").unwrap(), "x86_64");
        let s = srpm(&["noarch"], &[], &["x86_64", "aarch64"]);
        assert!(choose_taskarch("noarch", Some(&s), &c, "").is_err());
    }

    #[test]
    fn find_arch_like_koji() {
        let host = HostInfo {
            id: 1,
            name: "b1".into(),
            enabled: true,
            capacity: 4.0,
            arches: vec!["x86_64".into(), "i686".into()],
            ready: true,
            task_load: 0.0,
        };
        let c = cfg("x86_64", &[]);
        assert_eq!(find_arch("aarch64", &host, &c, None).unwrap(), "aarch64");
        assert_eq!(find_arch("noarch", &host, &c, None).unwrap(), "x86_64");
        assert_eq!(
            find_arch("noarch", &host, &c, Some("s390x")).unwrap(),
            "x86_64"
        );
        let e = find_arch("noarch", &host, &cfg("s390x", &[]), None).unwrap_err();
        assert_eq!(
            e,
            TaskFailure::build(
                "host b1 (i386, x86_64) does not support any arches of tag dist-build (s390x)"
            )
        );
    }

    #[test]
    fn relpaths_stay_below_topdir() {
        assert!(safe_relpath("work/cli-build/1/x.src.rpm").is_ok());
        for bad in ["", "/etc/passwd", "work/../../etc", "../x"] {
            assert!(safe_relpath(bad).is_err(), "{bad}");
        }
    }
}
