//! What a buildroot is made from: [`BuildrootRequest`], and its construction from Koji
//! data ([`BuildrootRequest::for_koji`]: `getBuildConfig` + `repoInfo` + kojid.conf, as
//! kojid's `BuildRoot._writeMockConfig` and `koji.genMockConfig` use them).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use adjutant_runtime::container::{BindMount, Limits};

use crate::config::Config;
use crate::policy::Resolution;
use crate::xmlrpc::Value;

use super::BuildrootError;

/// Tag extra that lets build steps (rpmbuild, `source_cmd`) use the host network
/// (kojid/mock: `rpmbuild_networking`, which kojid only turns on for SCM SRPM builds).
/// A boolean; without it, `[adjutant] network_default` (default `none`: build steps get
/// a private network namespace with only `lo`).
pub const BUILD_NETWORK_KEY: &str = "adjutant.build_network";

/// The build user inside every buildroot: mock's `mockbuild` (uid 1000) in group
/// `mock` (gid 135), home `/builddir`. Created in the buildroot if the image lacks it.
pub const MOCKBUILD_UID: u32 = 1000;
/// Group of the build user (`mock`).
pub const MOCK_GID: u32 = 135;
/// Home of the build user; a host directory bind-mounted per buildroot.
pub const BUILDDIR: &str = "/builddir";
/// `%_topdir` of builds (kojid: `<chroothome>/build`).
pub const TOPDIR: &str = "/builddir/build";

/// One package repository the buildroot installs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSource {
    /// Section name in the dnf configuration (`build` for the Koji repo, as
    /// genMockConfig names it).
    pub name: String,
    /// Base URLs (mirrors of the same content): `http(s)://` or `file://`.
    pub baseurls: Vec<String>,
}

/// What ties a buildroot to the hub (absent for local rebuilds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KojiLink {
    /// `host.newBuildRoot` id.
    pub brootid: i64,
    /// Repo id.
    pub repo_id: i64,
    /// Build tag name.
    pub tag_name: String,
    /// The task.
    pub task_id: Option<i64>,
    /// URL (or `file://` path) of the repo's `<arch>/rpmlist.jsonl`, which gives the
    /// hub's rpm ids of the installed packages ([`super::Buildroot::hub_package_list`]).
    pub rpmlist_url: String,
}

/// dnf settings of the buildroot (genMockConfig's `yum.conf` and `mock.*` extras).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnfOptions {
    /// The package manager binary in the image (`mock.package_manager`; default `dnf`).
    pub package_manager: Option<String>,
    /// `--releasever` (`mock.releasever`); None: dnf detects it from the image.
    pub releasever: Option<String>,
    /// `proxy=` (kojid.conf `yum_proxy`).
    pub proxy: Option<String>,
    /// `module_hotfixes=1` in the repo sections (`mock.yum.module_hotfixes`).
    pub module_hotfixes: bool,
    /// `best=` in the repo sections (`mock.yum.best`).
    pub best: Option<i64>,
}

/// Everything a buildroot is made from. Build one with [`BuildrootRequest::for_koji`]
/// (tasks) or by hand (the local `rebuild` command, tests), then pass it to
/// [`super::Buildroots::create`].
#[derive(Debug, Clone)]
pub struct BuildrootRequest {
    /// The buildroot's name: kojid's `<tag>-<brootid>-<repo_id>`, or `rebuild-<nvr>`.
    pub name: String,
    /// The image and the policy rule that chose it.
    pub image: Resolution,
    /// Repositories (none: nothing is installed; the image must already hold the
    /// build group and the BuildRequires, which rpmbuild then checks itself).
    pub repos: Vec<RepoSource>,
    /// The Koji buildroot this is (for `mock_config.log` and the hub package list).
    pub koji: Option<KojiLink>,
    /// The buildroot's arch (`canonArch`; the repo arch; picks the image platform).
    pub arch: String,
    /// `%_host_cpu` / the default `--target` (kojid's `target_arch`: `armhfp` →
    /// `armv7hl`).
    pub target_arch: String,
    /// The comps group installed first (`build`, `srpm-build`); None: no group.
    pub install_group: Option<String>,
    /// More packages installed with the group (sorted into the cache key).
    pub packages: Vec<String>,
    /// rpm macros, without the leading `%` (`_topdir` → `/builddir/build`), written
    /// to `/etc/rpm/macros.koji`.
    pub macros: BTreeMap<String, String>,
    /// Environment of build steps (`rpm.env.*`), on top of the defaults (`HOME`,
    /// `PATH`, `LANG`, `TERM`).
    pub env: BTreeMap<String, String>,
    /// dnf settings.
    pub dnf: DnfOptions,
    /// Build steps use the host network (install steps always do).
    pub build_network: bool,
    /// Steps get the runtime's default seccomp filter (`[adjutant] seccomp`).
    pub seccomp: bool,
    /// Extra bind mounts (kojid.conf `[adjutant] mounts`, `/credentials`).
    pub mounts: Vec<BindMount>,
    /// cgroup limits of the buildroot's containers.
    pub limits: Limits,
    /// Time allowed for one build step (kojid `rpmbuild_timeout`).
    pub build_timeout: Duration,
    /// Most bytes a log (`build.log`, `root.log`) may hold; the steps' output beyond
    /// it is discarded with a note (`[adjutant] max_log_size`; `None`: no limit).
    pub max_log_size: Option<u64>,
    /// Where the logs are written (`root.log`, `build.log`, `state.log`, …); the
    /// caller uploads them as they grow (tasks: `LogDir`; `rebuild`: the result dir).
    pub logdir: PathBuf,
    /// A host directory the buildroot may use for its own files (it makes a private
    /// subdirectory, removed by [`super::Buildroot::destroy`]).
    pub workdir: PathBuf,
    /// Where results (rpms, srpm) are copied; default `<workdir>/result`. Kept after
    /// destroy.
    pub resultdir: Option<PathBuf>,
    /// Hostname inside the buildroot (rpm's BUILDHOST); default: the host's name.
    pub hostname: Option<String>,
}

/// The Koji inputs of [`BuildrootRequest::for_koji`].
#[derive(Debug, Clone)]
pub struct KojiInputs<'a> {
    /// `getBuildConfig(tag, event=repo.create_event)`.
    pub tag_config: &'a Value,
    /// `repoInfo(repo_id)`.
    pub repo: &'a Value,
    /// `host.newBuildRoot` id.
    pub brootid: i64,
    /// The task.
    pub task_id: i64,
    /// Buildroot arch (`canonArch`).
    pub br_arch: &'a str,
    /// rpmbuild target arch.
    pub target_arch: &'a str,
    /// `build` or `srpm-build`.
    pub install_group: &'a str,
    /// Build steps get the host network (kojid's `setup_dns` for SCM builds); the tag
    /// extra [`BUILD_NETWORK_KEY`] can also turn it on.
    pub network: bool,
    /// Extra binds (host path, container path), e.g. `scm_credentials_dir` →
    /// `/credentials`.
    pub binds: Vec<(PathBuf, String)>,
    /// Log directory.
    pub logdir: PathBuf,
    /// The task's scratch directory.
    pub workdir: PathBuf,
}

/// Python's `str()` of a JSON-ish tag extra value (kojid stringifies macro and env
/// values this way).
pub fn py_str(v: &Value) -> String {
    match v {
        Value::Nil => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(i) => i.to_string(),
        Value::Double(d) => crate::xmlrpc::encode::python_float_repr(*d),
        Value::String(s) | Value::DateTime(s) => s.clone(),
        other => crate::policy::to_json(other).to_string(),
    }
}

impl BuildrootRequest {
    /// The request kojid would turn into a mock config for this buildroot:
    ///
    /// - repo `build` at `<topurl>/repos/<tag>/<repo_id>/<br_arch>` for each `topurl`
    ///   (`file://<topdir>/…` without one), `rpmlist.jsonl` next to it;
    /// - macros `%_rpmfilename` (flat `N-V-R.A.rpm`), `%vendor`, `%packager`,
    ///   `%distribution` from kojid.conf, then the tag's `rpm.macro.*`, then the fixed
    ///   `%_topdir /builddir/build`, `%_host_cpu <target>`, `%_host
    ///   <target>-<mockhost>` (which tags cannot override);
    /// - environment from `rpm.env.*`;
    /// - `mock.package_manager`, `mock.releasever`, `mock.yum.module_hotfixes`,
    ///   `mock.yum.best`, kojid.conf `yum_proxy`;
    /// - build network from `inputs.network`, else the [`BUILD_NETWORK_KEY`] extra, else
    ///   `[adjutant] network_default`;
    /// - limits from `[adjutant] memory_limit`, `pids_limit`, `cpu_limit`; binds from
    ///   `[adjutant] mounts` plus `inputs.binds`; `rpmbuild_timeout`.
    pub fn for_koji(
        cfg: &Config,
        image: Resolution,
        inputs: KojiInputs<'_>,
    ) -> Result<BuildrootRequest, BuildrootError> {
        let bad = |what: String| BuildrootError::Config(what);
        let tag_name = inputs
            .tag_config
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("the build config has no tag name".into()))?
            .to_owned();
        let repo_id = inputs
            .repo
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("the repo info has no id".into()))?;
        let empty = crate::xmlrpc::Struct::new();
        let extra = inputs
            .tag_config
            .get("extra")
            .and_then(Value::as_struct)
            .unwrap_or(&empty);
        let arch = inputs.br_arch;
        let rel = format!("repos/{tag_name}/{repo_id}/{arch}");
        let topurls = cfg.topurls();
        let baseurls: Vec<String> = if topurls.is_empty() {
            vec![format!(
                "file://{}/{rel}",
                cfg.kojid.topdir.display().to_string().trim_end_matches('/')
            )]
        } else {
            topurls
                .iter()
                .map(|u| format!("{}/{rel}", u.trim_end_matches('/')))
                .collect()
        };
        let rpmlist_url = format!("{}/rpmlist.jsonl", baseurls[0]);
        let topdir_bind = topurls.is_empty().then(|| cfg.kojid.topdir.clone());

        let k = &cfg.kojid;
        let mut macros = BTreeMap::new();
        macros.insert(
            "_rpmfilename".to_owned(),
            "%%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm".to_owned(),
        );
        macros.insert("vendor".into(), k.vendor.clone());
        macros.insert("packager".into(), k.packager.clone());
        macros.insert("distribution".into(), k.distribution.clone());
        let mut env = BTreeMap::new();
        for (key, v) in extra {
            if let Some(m) = key.strip_prefix("rpm.macro.") {
                check_macro_name(&tag_name, key, m)?;
                macros.insert(m.to_owned(), py_str(v));
            } else if let Some(e) = key.strip_prefix("rpm.env.") {
                check_env_name(&tag_name, key, e)?;
                env.insert(e.to_owned(), py_str(v));
            }
        }
        macros.insert("_topdir".into(), TOPDIR.into());
        macros.insert("_host_cpu".into(), inputs.target_arch.to_owned());
        macros.insert(
            "_host".into(),
            format!("{}-{}", inputs.target_arch, k.mockhost),
        );

        let get_str = |key: &str| extra.get(key).map(py_str).filter(|s| !s.is_empty());
        let best = match extra.get("mock.yum.best") {
            None => None,
            Some(v) => Some(
                v.as_i64()
                    .or_else(|| v.as_bool().map(i64::from))
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .ok_or_else(|| {
                        bad(format!(
                            "tag {tag_name}: extra mock.yum.best: {v} is not an integer"
                        ))
                    })?,
            ),
        };
        let dnf = DnfOptions {
            package_manager: get_str("mock.package_manager"),
            releasever: get_str("mock.releasever"),
            proxy: k.yum_proxy.clone().filter(|p| !p.is_empty()),
            module_hotfixes: extra
                .get("mock.yum.module_hotfixes")
                .is_some_and(Value::truthy),
            best,
        };
        if let Some(pm) = &dnf.package_manager {
            if !matches!(pm.as_str(), "dnf" | "dnf4" | "dnf5" | "yum") {
                return Err(bad(format!(
                    "tag {tag_name}: extra mock.package_manager: {pm:?} is not dnf, dnf4, dnf5 or yum"
                )));
            }
        }
        // The tag's setting wins over the host's `network_default`; SCM SRPM builds
        // (kojid's `setup_dns`) always get the network.
        let build_network = inputs.network
            || match extra.get(BUILD_NETWORK_KEY) {
                Some(v) => v.truthy(),
                None => cfg.adjutant.network_default == crate::config::NetworkDefault::Host,
            };

        let a = &cfg.adjutant;
        let limits = Limits {
            memory: a.memory_limit.map(|b| b.0),
            pids: a.pids_limit,
            cpus: a.cpu_limit,
        };
        let mut mounts: Vec<BindMount> = a
            .mounts
            .0
            .iter()
            .map(|m| BindMount::new(m.source.clone(), m.target.clone(), m.read_only))
            .collect();
        for (host, ctr) in inputs.binds {
            mounts.push(BindMount::new(host, ctr, false));
        }
        // Without topurl the repo is read from topdir, whose packages the repo reaches
        // through its `toplink` symlink: the whole tree, read-only, at the same path.
        if let Some(t) = topdir_bind {
            mounts.push(BindMount::new(t.clone(), t, true));
        }
        let timeout = u64::try_from(k.rpmbuild_timeout).unwrap_or(0);
        Ok(BuildrootRequest {
            name: format!("{tag_name}-{}-{repo_id}", inputs.brootid),
            image,
            repos: vec![RepoSource {
                name: "build".into(),
                baseurls,
            }],
            koji: Some(KojiLink {
                brootid: inputs.brootid,
                repo_id,
                tag_name,
                task_id: Some(inputs.task_id),
                rpmlist_url,
            }),
            arch: arch.to_owned(),
            target_arch: inputs.target_arch.to_owned(),
            install_group: Some(inputs.install_group.to_owned()),
            packages: Vec::new(),
            macros,
            env,
            dnf,
            build_network,
            seccomp: cfg.adjutant.seccomp,
            mounts,
            limits,
            build_timeout: if timeout == 0 {
                Duration::from_secs(86400)
            } else {
                Duration::from_secs(timeout)
            },
            max_log_size: match cfg.adjutant.max_log_size.0 {
                0 => None,
                n => Some(n),
            },
            logdir: inputs.logdir,
            workdir: inputs.workdir,
            resultdir: None,
            hostname: None,
        })
    }
}

/// Macro names become `%name` lines in a macros file: refuse anything that could
/// break out of that line.
fn check_macro_name(tag: &str, key: &str, name: &str) -> Result<(), BuildrootError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '(' || c == ')');
    if ok {
        Ok(())
    } else {
        Err(BuildrootError::Config(format!(
            "tag {tag}: extra {key}: {name:?} is not a macro name"
        )))
    }
}

fn check_env_name(tag: &str, key: &str, name: &str) -> Result<(), BuildrootError> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(BuildrootError::Config(format!(
            "tag {tag}: extra {key}: {name:?} is not an environment variable name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetworkDefault;
    use crate::policy::ImageSource;

    fn build_network(default: NetworkDefault, extra: Option<Value>, scm: bool) -> bool {
        let mut cfg = Config::defaults();
        cfg.adjutant.network_default = default;
        request(&cfg, extra, scm).build_network
    }

    /// The request for a tag with `extra` (the build network key), SCM or not.
    fn request(cfg: &Config, extra: Option<Value>, scm: bool) -> BuildrootRequest {
        let mut ex = Vec::new();
        if let Some(v) = extra {
            ex.push((BUILD_NETWORK_KEY, v));
        }
        let tag = Value::struct_from([
            ("name", Value::from("f40-build")),
            ("extra", Value::struct_from(ex)),
        ]);
        let repo = Value::struct_from([("id", Value::Int(9))]);
        BuildrootRequest::for_koji(
            cfg,
            Resolution {
                image: "img".into(),
                source: ImageSource::Default,
                tag: "f40-build".into(),
            },
            KojiInputs {
                tag_config: &tag,
                repo: &repo,
                brootid: 1,
                task_id: 2,
                br_arch: "x86_64",
                target_arch: "x86_64",
                install_group: "build",
                network: scm,
                binds: vec![],
                logdir: "/tmp/l".into(),
                workdir: "/tmp/w".into(),
            },
        )
        .unwrap()
    }

    #[test]
    fn seccomp_follows_the_host_setting() {
        let mut cfg = Config::defaults();
        assert!(request(&cfg, None, false).seccomp);
        cfg.adjutant.seccomp = false;
        assert!(!request(&cfg, None, false).seccomp);
    }

    #[test]
    fn build_network_tag_extra_over_the_host_default() {
        use NetworkDefault::{Host, None as NoNet};
        assert!(!build_network(NoNet, None, false));
        assert!(build_network(Host, None, false));
        assert!(build_network(NoNet, Some(Value::Bool(true)), false));
        assert!(!build_network(Host, Some(Value::Bool(false)), false));
        // SCM SRPM builds always get it (kojid's setup_dns).
        assert!(build_network(NoNet, Some(Value::Bool(false)), true));
    }
}
