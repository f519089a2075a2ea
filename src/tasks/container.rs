//! The buildroot seam ([`super::broot`]) implemented by the buildroot layer
//! (`crate::buildroot`): the image from the image policy (`resolve_config` on the build
//! config the task already fetched at the repo's event — no second hub call), the
//! request kojid would turn into a mock config (`BuildrootRequest::for_koji`), a
//! container made from it, and its steps.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{error, info};

use crate::buildroot::{
    BuildrootError, BuildrootRequest, Buildroots, KojiInputs, StepFailure, StepOutcome,
};
use crate::config::Config;
use crate::daemon::{BoxFuture, HandlerRegistry, TaskContext, TaskFailure};
use crate::registry::Registry;
use crate::xmlrpc::{FaultKind, Value};

use super::broot::{
    Buildroot, BuildrootFactory, BuildrootInfo, BuildrootSpec, Created, SharedFactory, StepStatus,
};

/// Buildroots in containers.
pub struct ContainerBuildroots {
    /// The buildroot layer.
    pub buildroots: Buildroots,
}

fn failure(e: BuildrootError) -> TaskFailure {
    TaskFailure::of(FaultKind::Buildroot, e.to_string())
}

fn status(f: StepFailure) -> StepStatus {
    StepStatus::Failed {
        status: format!("{} {}", f.step, f.status),
        log: f.log,
    }
}

fn outcome(r: Result<StepOutcome, BuildrootError>) -> Result<StepStatus, TaskFailure> {
    match r.map_err(failure)? {
        StepOutcome::Ok => Ok(StepStatus::Ok),
        StepOutcome::Failed(f) => Ok(status(f)),
    }
}

impl BuildrootFactory for ContainerBuildroots {
    fn create<'a>(
        &'a self,
        ctx: &'a TaskContext,
        spec: BuildrootSpec,
    ) -> BoxFuture<'a, Result<Created, TaskFailure>> {
        Box::pin(async move {
            let image = self
                .buildroots
                .policy()
                .resolve_config(&spec.tag, &spec.br_arch, &spec.method)
                .map_err(|e| failure(e.into()))?;
            let (img, rule) = (image.image.clone(), image.rule());
            ctx.registry.update_task(ctx.task_id, |t| {
                t.image = Some(img);
                t.policy_rule = Some(rule);
            });
            let req = BuildrootRequest::for_koji(
                &ctx.config,
                image,
                KojiInputs {
                    tag_config: &spec.tag,
                    repo: &spec.repo,
                    brootid: spec.brootid,
                    task_id: spec.task_id,
                    br_arch: &spec.br_arch,
                    target_arch: &spec.target_arch,
                    install_group: &spec.install_group,
                    network: spec.network,
                    binds: spec.bind_dirs.clone(),
                    logdir: spec.logdir.clone(),
                    workdir: spec.workdir.clone(),
                },
            )
            .map_err(failure)?;
            match self.buildroots.create(req).await {
                Ok(b) => {
                    let info = b.info();
                    info!(
                        image = info.image,
                        digest = info.image_digest,
                        rule = info.policy_rule,
                        container = info.container_id,
                        cache_hit = info.cache_hit,
                        "buildroot ready"
                    );
                    Ok(Created::Ready(Box::new(ContainerBuildroot { b })))
                }
                Err(BuildrootError::InitFailed { failure: f, .. }) => {
                    Ok(Created::InitFailed(status(*f)))
                }
                Err(e) => Err(failure(e)),
            }
        })
    }
}

/// One container buildroot.
pub struct ContainerBuildroot {
    b: crate::buildroot::Buildroot,
}

impl Buildroot for ContainerBuildroot {
    fn package_list(&mut self) -> BoxFuture<'_, Result<Vec<Value>, TaskFailure>> {
        Box::pin(async move { self.b.hub_package_list().await.map_err(failure) })
    }

    fn rebuild<'a>(
        &'a mut self,
        srpm: &'a Path,
        target_arch: Option<&'a str>,
    ) -> BoxFuture<'a, Result<StepStatus, TaskFailure>> {
        Box::pin(async move { outcome(self.b.rebuild(srpm, target_arch).await) })
    }

    fn rebuild_srpm<'a>(
        &'a mut self,
        srpm: &'a Path,
    ) -> BoxFuture<'a, Result<StepStatus, TaskFailure>> {
        Box::pin(async move { outcome(self.b.rebuild_srpm(srpm).await) })
    }

    fn source_cmd<'a>(
        &'a mut self,
        sourcedir: &'a Path,
        cmd: &'a [String],
    ) -> BoxFuture<'a, Result<StepStatus, TaskFailure>> {
        Box::pin(async move { outcome(self.b.source_cmd(sourcedir, cmd).await) })
    }

    fn build_srpm<'a>(
        &'a mut self,
        spec: &'a Path,
        sources: &'a Path,
    ) -> BoxFuture<'a, Result<StepStatus, TaskFailure>> {
        Box::pin(async move { outcome(self.b.build_srpm(spec, sources).await) })
    }

    fn scm_dir(&self) -> PathBuf {
        self.b.scm_dir()
    }

    fn hand_over<'a>(&'a mut self, dir: &'a Path) -> BoxFuture<'a, Result<(), TaskFailure>> {
        Box::pin(async move { self.b.hand_over(dir).await.map_err(failure) })
    }

    fn resultdir(&self) -> PathBuf {
        self.b.resultdir().to_owned()
    }

    fn info(&self) -> BuildrootInfo {
        let i = self.b.info();
        let some = |s: String| (!s.is_empty()).then_some(s);
        BuildrootInfo {
            image: some(if i.image_digest.is_empty() {
                i.image
            } else {
                format!("{}@{}", i.image, i.image_digest)
            }),
            policy_rule: some(i.policy_rule),
            container_id: some(i.container_id),
        }
    }

    fn destroy(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.b.destroy().await })
    }
}

/// The daemon's handlers: the built-in ones, the repo and build parents, and — when
/// the buildroot layer opens (store, runtime, image policy) — the buildroot tasks. A
/// host whose buildroots cannot open logs why and refuses those tasks ("no handler
/// for method"), so they go to other hosts.
pub fn daemon_handlers(cfg: &Config, registry: &Registry) -> HandlerRegistry {
    let mut reg = crate::daemon::default_handlers();
    match Buildroots::open(cfg, Some(registry.clone())) {
        Ok(b) => {
            let tool: Arc<dyn crate::repo::RepoTool> = Arc::new(
                crate::repo::ContainerRepoTool::new(b.clone(), cfg.adjutant.default_image.clone()),
            );
            reg.register(Arc::new(super::createrepo::Createrepo {
                container: Some(tool),
            }));
            let f: SharedFactory = Arc::new(ContainerBuildroots { buildroots: b });
            super::register_buildroot_tasks(&mut reg, f);
        }
        Err(e) => error!(
            "buildroots unavailable, buildArch/rebuildSRPM/buildSRPMFromSCM will be refused: {e}"
        ),
    }
    reg
}
