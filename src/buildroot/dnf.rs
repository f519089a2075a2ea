//! The files and commands of the install steps: the package manager's configuration
//! as `koji.genMockConfig` writes its `yum.conf`, the rpm macros file, and the dnf
//! command lines.

use std::collections::BTreeMap;

use super::request::{BuildrootRequest, DnfOptions, RepoSource};

/// Where downloaded packages and metadata go inside the buildroot: the container's
/// `/tmp` (a tmpfs that dies with the container), so they never reach a cached layer.
pub(crate) const DNF_CACHEDIR: &str = "/tmp/koji-adjutant-dnf/cache";
/// dnf's own logs (`dnf.log`, `dnf.rpm.log`, …), copied to the log dir after installs.
pub(crate) const DNF_LOGDIR: &str = "/tmp/koji-adjutant-dnf/log";

/// The package manager binary.
pub(crate) fn package_manager(o: &DnfOptions) -> &str {
    match o.package_manager.as_deref() {
        Some("dnf4") => "dnf-3",
        Some(pm) => pm,
        None => "dnf",
    }
}

/// Where the configuration goes in the buildroot.
pub(crate) fn conf_path(o: &DnfOptions) -> &'static str {
    match o.package_manager.as_deref() {
        Some("yum") => "/etc/yum.conf",
        _ => "/etc/dnf/dnf.conf",
    }
}

/// A value must stay on its line of the ini file.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The package manager configuration (genMockConfig's `yum.conf`, plus
/// `skip_if_unavailable=False`): only the buildroot's repos (`reposdir=/dev/null`, so
/// the image's own `.repo` files are not used), no GPG checks, no weak deps, strict.
pub(crate) fn dnf_conf(o: &DnfOptions, repos: &[RepoSource]) -> String {
    let mut s = String::from("[main]\n");
    if let Some(p) = &o.proxy {
        s.push_str(&format!("proxy={}\n", one_line(p)));
    }
    s.push_str(&format!(
        "cachedir={DNF_CACHEDIR}\nlogdir={DNF_LOGDIR}\ndebuglevel=2\nreposdir=/dev/null\n\
         retries=20\nobsoletes=1\ngpgcheck=0\nassumeyes=1\nkeepcache=1\n\
         install_weak_deps=0\nstrict=1\nskip_if_unavailable=False\n\n# repos\n"
    ));
    for r in repos {
        s.push_str(&format!(
            "\n[{}]\nname={}\n",
            one_line(&r.name),
            one_line(&r.name)
        ));
        for (i, u) in r.baseurls.iter().enumerate() {
            if i == 0 {
                s.push_str(&format!("baseurl={}\n", one_line(u)));
            } else {
                s.push_str(&format!("        {}\n", one_line(u)));
            }
        }
        if o.module_hotfixes {
            s.push_str("module_hotfixes=1\n");
        }
        if let Some(b) = o.best {
            s.push_str(&format!("best={b}\n"));
        }
    }
    s
}

/// `/etc/rpm/macros.koji`: `%name value` lines (newlines in values continued with `\`,
/// as rpm macro files allow).
pub(crate) fn macros_file(macros: &BTreeMap<String, String>) -> String {
    let mut s = String::from("# Written by koji-adjutant (kojid's mock config macros)\n");
    for (k, v) in macros {
        let v = v.replace('\n', "\\\n");
        s.push_str(&format!("%{k} {v}\n"));
    }
    s
}

/// Common leading arguments of every package manager call.
fn base(req: &BuildrootRequest) -> Vec<String> {
    let mut a = vec![
        package_manager(&req.dnf).to_owned(),
        "-y".to_owned(),
        format!("--config={}", conf_path(&req.dnf)),
    ];
    if let Some(r) = &req.dnf.releasever {
        a.push(format!("--releasever={r}"));
    }
    // mock's dnf_disable_plugins and dnf_common_opts (dnf 4 only: dnf5 and yum
    // know neither).
    if matches!(package_manager(&req.dnf), "dnf" | "dnf-3") {
        a.extend(
            [
                "--disableplugin=local",
                "--disableplugin=versionlock",
                "--setopt=deltarpm=False",
                "--allowerasing",
            ]
            .map(String::from),
        );
    }
    a
}

/// `dnf -y install @<group> <packages…>` (kojid: `chroot_setup_cmd = install @build`).
pub(crate) fn install_cmd(req: &BuildrootRequest) -> Vec<String> {
    let mut a = base(req);
    a.push("install".into());
    if let Some(g) = &req.install_group {
        a.push(format!("@{g}"));
    }
    let mut pk = req.packages.clone();
    pk.sort();
    pk.dedup();
    a.extend(pk);
    a
}

/// `dnf -y builddep <srpm>`.
pub(crate) fn builddep_cmd(req: &BuildrootRequest, srpm: &str) -> Vec<String> {
    let mut a = base(req);
    a.push("builddep".into());
    a.push(srpm.to_owned());
    a
}

/// `dnf -y install <requirements…>` (when `builddep` is not available).
pub(crate) fn install_reqs_cmd(req: &BuildrootRequest, reqs: &[String]) -> Vec<String> {
    let mut a = base(req);
    a.push("install".into());
    a.extend(reqs.iter().cloned());
    a
}

/// A shell test that succeeds when the package manager has a `builddep` command.
pub(crate) fn has_builddep_cmd(req: &BuildrootRequest) -> Vec<String> {
    let mut a = base(req);
    a.push("builddep".into());
    a.push("--help".into());
    a
}

/// The BuildRequires of an SRPM as `rpm -qpR` prints them, without `rpmlib(…)`
/// (rpm's own features), sorted and deduplicated.
pub(crate) fn parse_requires(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("rpmlib("))
        .map(str::to_owned)
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_like_gen_mock_config() {
        let o = DnfOptions {
            proxy: Some("http://proxy:3128".into()),
            module_hotfixes: true,
            best: Some(1),
            ..Default::default()
        };
        let repos = vec![RepoSource {
            name: "build".into(),
            baseurls: vec![
                "http://a/repos/f40-build/5/x86_64".into(),
                "http://b/x\nevil=1".into(),
            ],
        }];
        let c = dnf_conf(&o, &repos);
        for l in [
            "proxy=http://proxy:3128",
            "reposdir=/dev/null",
            "gpgcheck=0",
            "install_weak_deps=0",
            "strict=1",
            "keepcache=1",
            "retries=20",
            "skip_if_unavailable=False",
            "[build]",
            "baseurl=http://a/repos/f40-build/5/x86_64",
            "        http://b/x evil=1",
            "module_hotfixes=1",
            "best=1",
        ] {
            assert!(c.lines().any(|x| x == l), "{l:?} missing in\n{c}");
        }
        assert!(!c.lines().any(|x| x.starts_with("evil")));
    }

    #[test]
    fn macros_and_requires() {
        let mut m = BTreeMap::new();
        m.insert("dist".into(), ".fc40".into());
        m.insert("multi".into(), "a\nb".into());
        let f = macros_file(&m);
        assert!(f.contains("%dist .fc40\n"));
        assert!(f.contains("%multi a\\\nb\n"));
        let r = parse_requires(
            "gcc\nmake\nrpmlib(CompressedFileNames) <= 3.0.4-1\nmake\npkgconfig(x) >= 1.2\n\n",
        );
        assert_eq!(r, vec!["gcc", "make", "pkgconfig(x) >= 1.2"]);
    }
}
