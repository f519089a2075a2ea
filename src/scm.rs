//! Source control checkouts for `buildSRPMFromSCM`, as kojid's `koji.daemon.SCM` does
//! them: Koji's SCM URL grammar `scheme://[user@]host/path/to/repo?module#revision`,
//! the `allowed_scms` list (`host:repo[:use_common[:source_cmd]]`, `!host:repo` blocks,
//! fnmatch globs, first match wins) and the hub's `build_from_scm` policy, the checkout
//! commands (`git clone -n` + `git fetch origin <rev>:KOJI_FETCH_HEAD` + `git reset
//! --hard KOJI_FETCH_HEAD`, falling back to `git reset --hard <rev>`; `common/`), each
//! logged to `checkout.log` behind a `$ command` line, and the `source` koji records
//! (the URL with the fragment replaced by the commit hash).
//!
//! Checkouts run on the host, as kojid runs them (the buildroot image need not have
//! git), with a scrubbed environment: no system or user git config, no terminal
//! prompts, only the network transports of the URL's scheme.
//!
//! One addition: `git+file:///path/repo.git?module#rev` (no host) for repositories on
//! the builder's filesystem, accepted only when `[adjutant] allow_file_scm` is on (off
//! by default) and then still checked against `allowed_scms` with an empty host
//! (`:/srv/git/*:no`).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::fnmatch::fnmatch;
use crate::xmlrpc::{Struct, Value};

/// SCM types and the URL schemes of each (`SCM.types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScmType {
    /// `cvs://`
    Cvs,
    /// `cvs+ssh://`
    CvsSsh,
    /// `git://`, `git+http://`, `git+https://`, `git+rsync://` (and `git+file://` when
    /// allowed)
    Git,
    /// `git+ssh://`
    GitSsh,
    /// `svn://`, `svn+http://`, `svn+https://`
    Svn,
    /// `svn+ssh://`
    SvnSsh,
}

impl ScmType {
    /// koji's name (`GIT`, `GIT+SSH`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ScmType::Cvs => "CVS",
            ScmType::CvsSsh => "CVS+SSH",
            ScmType::Git => "GIT",
            ScmType::GitSsh => "GIT+SSH",
            ScmType::Svn => "SVN",
            ScmType::SvnSsh => "SVN+SSH",
        }
    }
}

const SCHEMES: &[(&str, ScmType)] = &[
    ("cvs://", ScmType::Cvs),
    ("cvs+ssh://", ScmType::CvsSsh),
    ("git://", ScmType::Git),
    ("git+http://", ScmType::Git),
    ("git+https://", ScmType::Git),
    ("git+rsync://", ScmType::Git),
    ("git+ssh://", ScmType::GitSsh),
    ("svn://", ScmType::Svn),
    ("svn+http://", ScmType::Svn),
    ("svn+https://", ScmType::Svn),
    ("svn+ssh://", ScmType::SvnSsh),
];

/// The adjutant-only local scheme (see the module doc).
pub const FILE_SCHEME: &str = "git+file://";

/// Why an SCM URL is refused or a checkout failed; the messages are kojid's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScmError {
    /// kojid raises `GenericError` (bad URL).
    #[error("{0}")]
    Generic(String),
    /// kojid raises `BuildError` (not allowed, checkout failed).
    #[error("{0}")]
    Build(String),
}

/// `SCM.is_scm_url`: does `url` start with a known SCM scheme?
pub fn is_scm_url(url: &str) -> bool {
    SCHEMES.iter().any(|(s, _)| url.starts_with(s))
}

/// A parsed SCM URL and the options the allow checks applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scm {
    /// The URL as given.
    pub url: String,
    /// e.g. `git+https://`.
    pub scheme: String,
    /// `user` (or `user:password` when passwords are allowed).
    pub user: Option<String>,
    /// `host[:port]`.
    pub host: String,
    /// The normalised path, starting with `/`.
    pub repository: String,
    /// The query part (for git: a subdirectory holding the spec); may be empty.
    pub module: String,
    /// The fragment: a commit, tag or branch.
    pub revision: String,
    /// Check out `common/` too (default on; `allowed_scms` or policy may turn it off).
    pub use_common: bool,
    /// Command run in the checkout before building the SRPM (default `make sources`;
    /// None: no command).
    pub source_cmd: Option<Vec<String>>,
    /// The type.
    pub scmtype: ScmType,
}

/// Python's `os.path.normpath` for a POSIX path.
fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let initial = if path.starts_with('/') {
        if path.starts_with("//") && !path.starts_with("///") {
            2
        } else {
            1
        }
    } else {
        0
    };
    let mut comps: Vec<&str> = Vec::new();
    for c in path.split('/') {
        if c.is_empty() || c == "." {
            continue;
        }
        if c != ".." || (initial == 0 && comps.is_empty()) || comps.last() == Some(&"..") {
            comps.push(c);
        } else if !comps.is_empty() {
            comps.pop();
        }
    }
    let mut out = "/".repeat(initial);
    out.push_str(&comps.join("/"));
    if out.is_empty() {
        ".".into()
    } else {
        out
    }
}

impl Scm {
    /// Parse `url` (`SCM.__init__`). `allow_file` enables `git+file://`.
    pub fn parse(url: &str, allow_password: bool, allow_file: bool) -> Result<Scm, ScmError> {
        let generic = |m: String| ScmError::Generic(m);
        let file = allow_file && url.starts_with(FILE_SCHEME);
        let Some((scheme, scmtype)) = SCHEMES
            .iter()
            .find(|(s, _)| url.starts_with(s))
            .map(|(s, t)| (s.to_string(), *t))
            .or_else(|| file.then(|| (FILE_SCHEME.to_string(), ScmType::Git)))
        else {
            let mut all: Vec<&str> = SCHEMES.iter().map(|(s, _)| *s).collect();
            all.sort();
            return Err(generic(format!(
                "Invalid scheme in scm url. Valid schemes are: {}",
                all.join(" ")
            )));
        };
        // Python's urlsplit drops tabs and newlines and strips spaces; a URL holding
        // them is not one a user meant: refuse it.
        if url.chars().any(|c| c.is_control() || c == ' ') {
            return Err(generic(format!(
                "Unable to parse SCM URL: {url} . It contains whitespace or control characters."
            )));
        }
        // urlsplit of "http://" + the rest
        let rest = &url[scheme.len()..];
        let (rest, fragment) = match rest.split_once('#') {
            Some((a, b)) => (a, b.to_owned()),
            None => (rest, String::new()),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((a, b)) => (a, b.to_owned()),
            None => (rest, String::new()),
        };
        let (netloc, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, String::new()),
        };
        // urlparse: params after ';' in the last path segment
        let (path, params) = {
            let last = path.rfind('/').unwrap_or(0);
            match path[last..].find(';') {
                Some(i) => (path[..last + i].to_owned(), path[last + i + 1..].to_owned()),
                None => (path.clone(), String::new()),
            }
        };
        let userhost: Vec<&str> = netloc.split('@').collect();
        if userhost.len() > 2 {
            return Err(generic(format!(
                "Invalid username@hostname specified: {userhost:?}"
            )));
        }
        let (mut user, mut password) = (None, None);
        if let Some((userinfo, _)) = netloc.rsplit_once('@') {
            let (u, p) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !u.is_empty() {
                user = Some(u.to_owned());
            }
            if let Some(p) = p.filter(|p| !p.is_empty()) {
                password = Some(p.to_owned());
            }
        }
        if let Some(p) = &password {
            if !allow_password {
                return Err(generic(format!(
                    "username:password format not supported: {}:{p}",
                    user.as_deref().unwrap_or("None")
                )));
            }
        }
        let host = userhost.last().copied().unwrap_or_default().to_owned();
        if file && !host.is_empty() {
            return Err(generic(format!(
                "Unable to parse SCM URL: {url} . A {FILE_SCHEME} URL names no host."
            )));
        }
        if path.is_empty() {
            return Err(generic(format!(
                "Unable to parse SCM URL: {url} . Could not find the path element."
            )));
        }
        let mut path = normpath(&path).trim_end_matches('/').to_owned();
        let query = query.trim_end_matches('/').to_owned();
        if path.starts_with("//") {
            path = format!("/{}", path.trim_matches('/'));
        }
        if !path.starts_with('/') {
            return Err(generic(format!(
                "Invalid SCM URL. Path should begin with /: {url}"
            )));
        }
        if !params.is_empty() {
            return Err(generic(format!(
                "Unable to parse SCM URL: {url} . Params element {params} should be empty."
            )));
        }
        if fragment.is_empty() {
            return Err(generic(format!(
                "Unable to parse SCM URL: {url} . Could not find the fragment element."
            )));
        }
        Ok(Scm {
            url: url.to_owned(),
            scheme,
            user: match (user, password) {
                (Some(u), Some(p)) => Some(format!("{u}:{p}")),
                (None, Some(p)) => Some(format!("None:{p}")),
                (u, None) => u,
            },
            host,
            repository: path,
            module: query,
            revision: fragment,
            use_common: true,
            source_cmd: Some(vec!["make".into(), "sources".into()]),
            scmtype,
        })
    }

    /// `assert_allowed_by_config(allowed)`: check `allowed_scms` and apply its options.
    pub fn assert_allowed_by_config(&mut self, allowed: &str) -> Result<(), ScmError> {
        let mut is_allowed = false;
        for entry in allowed.split_whitespace() {
            let parts: Vec<&str> = entry.split(':').collect();
            if parts.len() < 2 {
                tracing::warn!(entry, "Ignoring incorrectly formatted SCM host:repository");
                continue;
            }
            let (mut host_pat, repo_pat) = (parts[0], parts[1]);
            let invert = host_pat.starts_with('!');
            if invert {
                host_pat = &host_pat[1..];
            }
            if fnmatch(&self.host, host_pat) && fnmatch(&self.repository, repo_pat) {
                if invert {
                    break;
                }
                is_allowed = true;
                if parts.len() >= 3
                    && ["no", "off", "false", "0"].contains(&parts[2].to_lowercase().as_str())
                {
                    self.use_common = false;
                }
                if parts.len() >= 4 {
                    self.source_cmd = if parts[3].is_empty() {
                        None
                    } else {
                        Some(parts[3].split(',').map(str::to_owned).collect())
                    };
                }
                break;
            }
        }
        if is_allowed {
            Ok(())
        } else {
            Err(ScmError::Build(format!(
                "{}:{} is not in the list of allowed SCMs",
                self.host, self.repository
            )))
        }
    }

    /// The `scm_*` policy data of `assert_allowed_by_policy` (`get_info()` keys with the
    /// `scm_` prefix); the caller adds `user_id`, `channel` and `scratch`.
    pub fn policy_data(&self) -> Struct {
        let s = |v: &str| Value::from(v);
        let mut d = Struct::new();
        d.insert("scm_url".into(), s(&self.url));
        d.insert("scm_scheme".into(), s(&self.scheme));
        d.insert(
            "scm_user".into(),
            self.user.as_deref().map_or(Value::Nil, Value::from),
        );
        d.insert("scm_host".into(), s(&self.host));
        d.insert("scm_repository".into(), s(&self.repository));
        d.insert("scm_module".into(), s(&self.module));
        d.insert("scm_revision".into(), s(&self.revision));
        d.insert("scm_type".into(), s(self.scmtype.name()));
        d
    }

    /// Apply the result of `evalPolicy('build_from_scm', …)`: `allow [use_common]
    /// [cmd…]` or `deny [reason]` (`assert_allowed_by_policy`).
    pub fn apply_policy_result(&mut self, result: &str) -> Result<(), ScmError> {
        let words: Vec<&str> = result.split_whitespace().collect();
        let allowed = words.first().is_some_and(|w| {
            ["yes", "true", "allow", "allowed"].contains(&w.to_lowercase().as_str())
        });
        if !allowed {
            let reason = if words.len() > 1 {
                words[1..].join(" ")
            } else {
                "None".into()
            };
            return Err(ScmError::Build(format!(
                "SCM: {}:{} is not allowed, reason: {reason}",
                self.host, self.repository
            )));
        }
        let applied = &words[1..];
        self.use_common = applied
            .first()
            .is_some_and(|w| w.to_lowercase() == "use_common");
        let idx = usize::from(self.use_common);
        if applied.len() > idx {
            self.source_cmd = Some(applied[idx..].iter().map(|s| s.to_string()).collect());
        }
        if self
            .source_cmd
            .as_ref()
            .is_some_and(|c| c.first().is_some_and(|w| w.to_lowercase() == "none"))
        {
            self.source_cmd = None;
        }
        Ok(())
    }

    /// The commands of a checkout into `scmdir`, and where the sources end up.
    pub fn plan(&self, scmdir: &Path) -> Result<CheckoutPlan, ScmError> {
        let need_user = || {
            if self.user.is_none() {
                Err(ScmError::Build(format!(
                    "No user specified for repository access scheme: {}",
                    self.scheme
                )))
            } else {
                Ok(())
            }
        };
        let user = self.user.clone().unwrap_or_default();
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        match self.scmtype {
            ScmType::Cvs | ScmType::CvsSsh => {
                let server = if self.scmtype == ScmType::Cvs {
                    let u = self.user.as_deref().unwrap_or("anonymous");
                    format!(":pserver:{u}@{}:{}", self.host, self.repository)
                } else {
                    need_user()?;
                    format!(":ext:{user}@{}:{}", self.host, self.repository)
                };
                Ok(CheckoutPlan {
                    checkout: vec![argv(&[
                        "cvs",
                        "-d",
                        &server,
                        "checkout",
                        "-r",
                        &self.revision,
                        &self.module,
                    ])],
                    update: vec![],
                    recovery: None,
                    update_dir: scmdir.to_owned(),
                    common: argv(&["cvs", "-d", &server, "checkout", "common"]),
                    sourcedir: scmdir.join(&self.module),
                    env: if self.scmtype == ScmType::CvsSsh {
                        vec![("CVS_RSH".into(), "ssh".into())]
                    } else {
                        vec![]
                    },
                })
            }
            ScmType::Git | ScmType::GitSsh => {
                let gitrepo = if self.scmtype == ScmType::GitSsh {
                    need_user()?;
                    format!("git+ssh://{user}@{}{}", self.host, self.repository)
                } else {
                    let scheme = match self.scheme.split_once('+') {
                        Some((_, s)) => s.to_owned(),
                        None => self.scheme.clone(),
                    };
                    match &self.user {
                        Some(u) => format!("{scheme}{u}@{}{}", self.host, self.repository),
                        None => format!("{scheme}{}{}", self.host, self.repository),
                    }
                };
                let dirname = |s: &str| s.rsplit_once('/').map_or("", |x| x.0).to_owned();
                let basename = |s: &str| s.rsplit_once('/').map_or(s, |x| x.1).to_owned();
                let repo = &self.repository;
                let (checkout_path, commonrepo) = if let Some(r) = repo.strip_suffix("/.git") {
                    (
                        basename(r),
                        format!("{}/common/.git", dirname(&gitrepo[..gitrepo.len() - 5])),
                    )
                } else if let Some(r) = repo.strip_suffix(".git") {
                    (
                        basename(r),
                        format!("{}/common.git", dirname(&gitrepo[..gitrepo.len() - 4])),
                    )
                } else {
                    (basename(repo), format!("{}/common", dirname(&gitrepo)))
                };
                let rev = self
                    .revision
                    .strip_prefix("origin/")
                    .unwrap_or(&self.revision);
                let checkout_dir = scmdir.join(&checkout_path);
                let sourcedir = if self.module.is_empty() {
                    checkout_dir.clone()
                } else {
                    checkout_dir.join(&self.module)
                };
                Ok(CheckoutPlan {
                    checkout: vec![vec![
                        "git".into(),
                        "clone".into(),
                        "-n".into(),
                        gitrepo.clone(),
                        checkout_dir.display().to_string(),
                    ]],
                    update: vec![
                        argv(&["git", "fetch", "origin", &format!("{rev}:KOJI_FETCH_HEAD")]),
                        argv(&["git", "reset", "--hard", "KOJI_FETCH_HEAD"]),
                    ],
                    recovery: Some(argv(&["git", "reset", "--hard", &self.revision])),
                    update_dir: checkout_dir,
                    common: argv(&["git", "clone", &commonrepo, "common"]),
                    sourcedir,
                    env: vec![],
                })
            }
            ScmType::Svn | ScmType::SvnSsh => {
                let server = if self.scmtype == ScmType::SvnSsh {
                    need_user()?;
                    format!("svn+ssh://{user}@{}{}", self.host, self.repository)
                } else {
                    let scheme = match self.scheme.split_once('+') {
                        Some((_, s)) => s.to_owned(),
                        None => self.scheme.clone(),
                    };
                    format!("{scheme}{}{}", self.host, self.repository)
                };
                Ok(CheckoutPlan {
                    checkout: vec![argv(&[
                        "svn",
                        "checkout",
                        "-r",
                        &self.revision,
                        &format!("{server}/{}", self.module),
                        &self.module,
                    ])],
                    update: vec![],
                    recovery: None,
                    update_dir: scmdir.to_owned(),
                    common: argv(&["svn", "checkout", &format!("{server}/common")]),
                    sourcedir: scmdir.join(&self.module),
                    env: vec![],
                })
            }
        }
    }

    /// The git transports a checkout of this URL may use (`GIT_ALLOW_PROTOCOL`).
    fn git_protocols(&self) -> &'static str {
        match self.scheme.as_str() {
            "git://" => "git",
            "git+http://" => "http",
            "git+https://" => "https",
            "git+rsync://" => "rsync",
            "git+ssh://" => "ssh",
            FILE_SCHEME => "file",
            _ => "",
        }
    }

    /// Check out into `scmdir` (which must exist), logging every command to `logfile`
    /// (kojid's `SCM.checkout`). Returns the directory holding the sources.
    pub async fn checkout(&self, scmdir: &Path, logfile: &Path) -> Result<PathBuf, ScmError> {
        let plan = self.plan(scmdir)?;
        let mut log = CommandLog::new(logfile, self.scmtype.name());
        let mut env = plan.env.clone();
        env.push(("GIT_ALLOW_PROTOCOL".into(), self.git_protocols().into()));
        log.run(&plan.checkout[0], scmdir, &env).await?;
        if !plan.update.is_empty() {
            let mut failed = false;
            for cmd in &plan.update {
                if log.run(cmd, &plan.update_dir, &env).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if failed {
                if let Some(r) = &plan.recovery {
                    log.run(r, &plan.update_dir, &env).await?;
                }
            }
        }
        if self.use_common {
            log.run(&plan.common, scmdir, &env).await?;
            let parent = plan.sourcedir.parent().unwrap_or(scmdir);
            if !parent.join("common").exists() {
                let rel_comps = parent
                    .strip_prefix(scmdir)
                    .map(|p| p.components().count())
                    .unwrap_or(0);
                let target = format!("{}common", "../".repeat(rel_comps));
                std::os::unix::fs::symlink(&target, parent.join("common")).map_err(|e| {
                    ScmError::Build(format!(
                        "symlink {} -> {target}: {e}",
                        parent.join("common").display()
                    ))
                })?;
            }
        }
        Ok(plan.sourcedir)
    }

    /// `get_source()`: `{url, source}`; for git, `source` is the URL with the commit the
    /// checkout resolved to as its fragment.
    pub async fn get_source(&self, sourcedir: &Path) -> Result<(String, String), ScmError> {
        if !matches!(self.scmtype, ScmType::Git | ScmType::GitSsh) {
            return Ok((self.url.clone(), self.url.clone()));
        }
        let out = git_command(&["rev-parse", "HEAD"], sourcedir, &[])
            .stderr(Stdio::null())
            .output()
            .await
            .map_err(|e| {
                ScmError::Generic(format!(
                    "Error getting commit hash for git: {}: {e}",
                    sourcedir.display()
                ))
            })?;
        if !out.status.success() {
            return Err(ScmError::Generic(
                "Error getting commit hash for git".into(),
            ));
        }
        let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let scheme = &self.scheme[..self.scheme.len() - 3];
        let mut s = if self.host.is_empty() && self.scheme == FILE_SCHEME {
            format!("{scheme}://{}", self.repository)
        } else {
            format!("{scheme}://{}{}", self.host, self.repository)
        };
        if !self.module.is_empty() {
            s.push('?');
            s.push_str(&self.module);
        }
        s.push('#');
        s.push_str(&hash);
        Ok((self.url.clone(), s))
    }
}

/// The commands of a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutPlan {
    /// The module checkout (run in scmdir).
    pub checkout: Vec<Vec<String>>,
    /// Run in `update_dir` after the checkout (git: fetch + reset).
    pub update: Vec<Vec<String>>,
    /// Run when an update command fails (git: `reset --hard <revision>`).
    pub recovery: Option<Vec<String>>,
    /// Where `update` runs.
    pub update_dir: PathBuf,
    /// The `common` checkout (run in scmdir).
    pub common: Vec<String>,
    /// Where the sources (the spec) are.
    pub sourcedir: PathBuf,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

fn git_command(args: &[&str], cwd: &Path, env: &[(String, String)]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("git");
    c.args(args);
    scrub_env(&mut c, cwd, env);
    c
}

fn scrub_env(c: &mut tokio::process::Command, cwd: &Path, env: &[(String, String)]) {
    c.current_dir(cwd)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", cwd)
        .env("LANG", "C.UTF-8")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_ASKPASS", "/bin/false")
        .env("SSH_ASKPASS", "/bin/false")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
}

/// kojid's `log_output`: commands appended to one log, each behind `$ argv`.
struct CommandLog {
    path: PathBuf,
    scmtype: &'static str,
}

impl CommandLog {
    fn new(path: &Path, scmtype: &'static str) -> CommandLog {
        CommandLog {
            path: path.to_owned(),
            scmtype,
        }
    }

    async fn run(
        &mut self,
        argv: &[String],
        cwd: &Path,
        env: &[(String, String)],
    ) -> Result<(), ScmError> {
        let fail = |detail: String| {
            ScmError::Build(format!(
                "Error running {} command \"{}\", see {} for details{detail}",
                self.scmtype,
                argv.join(" "),
                self.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ))
        };
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| fail(format!(" ({}: {e})", self.path.display())))?;
        // kojid does not quote: ' '.join(args)
        let _ = writeln!(f, "$ {}", argv.join(" "));
        let out = f
            .try_clone()
            .map_err(|e| fail(format!(" ({}: {e})", self.path.display())))?;
        let mut c = tokio::process::Command::new(&argv[0]);
        c.args(&argv[1..]);
        scrub_env(&mut c, cwd, env);
        c.stdout(Stdio::from(out)).stderr(Stdio::from(f));
        let status = c
            .status()
            .await
            .map_err(|e| fail(format!(" ({}: {e})", argv[0])))?;
        if status.success() {
            Ok(())
        } else {
            Err(fail(String::new()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(url: &str) -> Result<Scm, ScmError> {
        Scm::parse(url, false, false)
    }

    #[test]
    fn parses_like_koji() {
        let s = p("git+https://src.example.com/rpms/foo.git?sub/dir#abc123").unwrap();
        assert_eq!(s.scheme, "git+https://");
        assert_eq!(s.host, "src.example.com");
        assert_eq!(s.repository, "/rpms/foo.git");
        assert_eq!(s.module, "sub/dir");
        assert_eq!(s.revision, "abc123");
        assert_eq!(s.user, None);
        assert_eq!(s.scmtype, ScmType::Git);
        assert!(s.use_common);
        assert_eq!(s.source_cmd, Some(vec!["make".into(), "sources".into()]));
        // normalisation: // . .. and trailing slashes, query trailing slash
        let s = p("git://h//a/./b/../c/?m/#r").unwrap();
        assert_eq!(s.repository, "/a/c");
        assert_eq!(s.module, "m");
        let s = p("git+ssh://jdoe@h:2222/r#r").unwrap();
        assert_eq!(
            (s.user.as_deref(), s.host.as_str()),
            (Some("jdoe"), "h:2222")
        );
        assert_eq!(s.scmtype, ScmType::GitSsh);
    }

    #[test]
    fn refuses_like_koji() {
        let e = |u: &str| p(u).unwrap_err().to_string();
        assert!(e("https://h/r#x").starts_with(
            "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http://"
        ));
        assert!(e("git://h/r").contains("Could not find the fragment element"));
        assert!(e("git://h#x").contains("Could not find the path element"));
        assert!(e("git://h/r;p=1#x").contains("Params element p=1 should be empty"));
        assert_eq!(
            e("git://u:secret@h/r#x"),
            "username:password format not supported: u:secret"
        );
        assert!(e("git://a@b@h/r#x").starts_with("Invalid username@hostname specified"));
        assert!(e("git://h/a/../..#x").contains("Path should begin with /"));
        assert!(e("git://h/r\n#x").contains("whitespace or control"));
        assert!(e("git+file:///srv/r#x").starts_with("Invalid scheme"));
        let s = Scm::parse("git://u:secret@h/r#x", true, false).unwrap();
        assert_eq!(s.user.as_deref(), Some("u:secret"));
        let f = Scm::parse("git+file:///srv/git/r.git#main", false, true).unwrap();
        assert_eq!(
            (f.host.as_str(), f.repository.as_str()),
            ("", "/srv/git/r.git")
        );
        assert!(Scm::parse("git+file://h/srv/r#x", false, true).is_err());
        assert!(is_scm_url("git+https://x") && !is_scm_url("cli-build/1/x.src.rpm"));
    }

    #[test]
    fn allowed_scms_like_koji() {
        let allowed = "!git.example.com:/rpms/blocked* git.example.com:/rpms/*:no \
             *.example.org:/pkgs/*:yes:fedpkg,sources other.example.net:/x/*::  bogus";
        let mut s = p("git://git.example.com/rpms/foo#1").unwrap();
        s.assert_allowed_by_config(allowed).unwrap();
        assert!(!s.use_common);
        assert_eq!(s.source_cmd, Some(vec!["make".into(), "sources".into()]));
        let mut s = p("git://src.example.org/pkgs/bar#1").unwrap();
        s.assert_allowed_by_config(allowed).unwrap();
        assert!(s.use_common);
        assert_eq!(s.source_cmd, Some(vec!["fedpkg".into(), "sources".into()]));
        let mut s = p("git://other.example.net/x/y#1").unwrap();
        s.assert_allowed_by_config(allowed).unwrap();
        assert_eq!(s.source_cmd, None, "an empty source_cmd means none");
        // a block matches first
        let mut s = p("git://git.example.com/rpms/blocked-pkg#1").unwrap();
        assert_eq!(
            s.assert_allowed_by_config(allowed).unwrap_err(),
            ScmError::Build(
                "git.example.com:/rpms/blocked-pkg is not in the list of allowed SCMs".into()
            )
        );
        let mut s = p("git://evil.example.com/rpms/foo#1").unwrap();
        assert!(s.assert_allowed_by_config(allowed).is_err());
        let mut s = p("git://git.example.com/rpms/foo#1").unwrap();
        assert!(
            s.assert_allowed_by_config("").is_err(),
            "nothing allowed by default"
        );
    }

    #[test]
    fn policy_results_like_koji() {
        let mut s = p("git://h/r#1").unwrap();
        s.apply_policy_result("allow use_common make srpm").unwrap();
        assert!(s.use_common);
        assert_eq!(s.source_cmd, Some(vec!["make".into(), "srpm".into()]));
        let mut s = p("git://h/r#1").unwrap();
        s.apply_policy_result("allow").unwrap();
        assert!(!s.use_common);
        assert_eq!(s.source_cmd, Some(vec!["make".into(), "sources".into()]));
        s.apply_policy_result("allow none").unwrap();
        assert_eq!(s.source_cmd, None);
        assert_eq!(
            s.apply_policy_result("deny not from here").unwrap_err(),
            ScmError::Build("SCM: h:/r is not allowed, reason: not from here".into())
        );
        assert_eq!(
            s.apply_policy_result("").unwrap_err(),
            ScmError::Build("SCM: h:/r is not allowed, reason: None".into())
        );
        let d = s.policy_data();
        assert_eq!(d["scm_type"], Value::from("GIT"));
        assert_eq!(d["scm_user"], Value::Nil);
    }

    #[test]
    fn git_plan_like_koji() {
        let s = p("git+https://h/rpms/foo.git?sub#origin/main").unwrap();
        let plan = s.plan(Path::new("/scm")).unwrap();
        assert_eq!(
            plan.checkout[0],
            ["git", "clone", "-n", "https://h/rpms/foo.git", "/scm/foo"]
        );
        assert_eq!(
            plan.update[0],
            ["git", "fetch", "origin", "main:KOJI_FETCH_HEAD"]
        );
        assert_eq!(
            plan.recovery.as_deref().unwrap(),
            ["git", "reset", "--hard", "origin/main"]
        );
        assert_eq!(
            plan.common,
            ["git", "clone", "https://h/rpms/common.git", "common"]
        );
        assert_eq!(plan.sourcedir, Path::new("/scm/foo/sub"));
        let s = p("git://h/a/b/.git#x").unwrap();
        let plan = s.plan(Path::new("/scm")).unwrap();
        assert_eq!(
            plan.common,
            ["git", "clone", "git://h/a/common/.git", "common"]
        );
        assert_eq!(plan.sourcedir, Path::new("/scm/b"));
        assert!(p("git+ssh://h/r#x").unwrap().plan(Path::new("/s")).is_err());
    }

    #[test]
    fn normpath_like_python() {
        for (i, o) in [
            ("/a/b/../c", "/a/c"),
            ("//a", "//a"),
            ("///a", "/a"),
            ("/../x", "/x"),
            ("/a/./b/", "/a/b"),
            ("/", "/"),
        ] {
            assert_eq!(normpath(i), o, "{i}");
        }
    }
}
