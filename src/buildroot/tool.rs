//! Tool containers: a program of an image run against host directories bound at the
//! same paths inside (`createrepo_c`, `mergerepo_c` on a host that does not have
//! them). No buildroot setup (no repos, no install, no `/builddir`): the image as it
//! is, no network, the binds, and the container removed afterwards.

use std::path::Path;

use adjutant_runtime::container::{BindMount, Container, ContainerSpec, Network, Rootfs};
use adjutant_runtime::store::LayerLease;
use tracing::warn;

use super::logs::Logs;
use super::setup::ensure_image_named;
use super::{BuildrootError, Buildroots};

/// A running tool container (see the module docs). [`ToolContainer::destroy`] it; a
/// dropped one is destroyed in the background.
pub struct ToolContainer {
    container: Option<Container>,
    _lease: LayerLease,
}

impl std::fmt::Debug for ToolContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolContainer")
            .field("id", &self.container.as_ref().map(|c| c.id().to_owned()))
            .finish()
    }
}

impl ToolContainer {
    /// The container (run steps with [`Container::run`]).
    pub fn container(&self) -> &Container {
        self.container
            .as_ref()
            .expect("a ToolContainer holds its container until destroyed")
    }

    /// Kill and remove the container.
    pub async fn destroy(mut self) {
        if let Some(c) = self.container.take() {
            if let Err(e) = c.destroy().await {
                warn!(container = c.id(), "removing tool container: {e}");
            }
        }
    }
}

impl Drop for ToolContainer {
    fn drop(&mut self) {
        if let Some(c) = self.container.take() {
            std::thread::spawn(move || {
                if let Err(e) = c.destroy_blocking() {
                    warn!(container = c.id(), "removing tool container: {e}");
                }
            });
        }
    }
}

impl Buildroots {
    /// Start a container of `image` (for `arch`; pulled per `pull_policy`) with no
    /// network and `mounts`. Pull and unpack messages go to `mock_output.log` in
    /// `logdir`.
    pub async fn tool_container(
        &self,
        image: &str,
        arch: &str,
        mounts: Vec<BindMount>,
        logdir: &Path,
    ) -> Result<ToolContainer, BuildrootError> {
        let logs = Logs::open(logdir)?;
        let (_info, lowers, lease) = ensure_image_named(self, image, arch, &logs).await?;
        let mut spec = ContainerSpec::new(Rootfs::Overlay { lowers });
        spec.network = Network::None;
        spec.mounts = mounts;
        let container = self.runtime().create(spec).await?;
        Ok(ToolContainer {
            container: Some(container),
            _lease: lease,
        })
    }
}
