//! The registry: which runtime implementation serves a runtime name written in config. It is
//! the one place that names concrete runtimes; everything else looks them up here by the name
//! a backend's config or a resource's record gives.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::runtime::{ContainerRuntime, ProcessRuntime, Runtime, SystemdRuntime};

/// Runtime implementations by name.
#[derive(Clone)]
pub struct Registry {
    runtimes: BTreeMap<&'static str, Arc<dyn Runtime>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.runtimes.keys()).finish()
    }
}

impl Registry {
    /// Every runtime this berth can run.
    pub fn builtin() -> Self {
        Registry::empty()
            .with(Arc::new(ProcessRuntime::new()))
            .with(Arc::new(SystemdRuntime::new()))
            .with(Arc::new(ContainerRuntime::docker()))
            .with(Arc::new(ContainerRuntime::podman()))
    }

    /// A registry with no runtime.
    pub fn empty() -> Self {
        Registry {
            runtimes: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) the runtime of `runtime.name()`.
    pub fn with(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtimes.insert(runtime.name(), runtime);
        self
    }

    /// The runtime called `name`, if this berth has it.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Runtime>> {
        self.runtimes.get(name).cloned()
    }

    /// Every runtime, by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Runtime>> {
        self.runtimes.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_runtimes_answer_to_their_names() {
        let registry = Registry::builtin();
        for name in ["process", "systemd", "docker", "podman"] {
            assert_eq!(registry.get(name).map(|r| r.name()), Some(name));
        }
    }
}
