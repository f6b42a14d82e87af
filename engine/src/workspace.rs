//! A loaded workspace: the checked config, its placements and its resource graph, built in
//! that order. Everything a command needs before it looks at state or hosts.

use std::path::Path;

use crate::config::{self, Config, Findings, VarInputs};
use crate::error::{Error, Result};
use crate::graph::ResourceGraph;
use crate::placement::{self, Placement, Previous};

/// The config with placements and graph.
#[derive(Debug)]
pub struct Workspace {
    pub config: Config,
    pub placements: Vec<Placement>,
    pub graph: ResourceGraph,
    pub warnings: Findings,
}

impl Workspace {
    /// Loads and validates `dir`, places every model (keeping `previous` placements where still
    /// valid) and builds the graph.
    pub fn open(dir: &Path, vars: &VarInputs, previous: &Previous) -> Result<Workspace> {
        let loaded =
            config::load(dir, vars).map_err(|invalid| Error::InvalidConfig(Box::new(invalid)))?;
        Self::from_loaded(loaded, previous)
    }

    /// Places the models of an already loaded config and builds its graph.
    pub fn from_loaded(loaded: config::Loaded, previous: &Previous) -> Result<Workspace> {
        let config = loaded.config;
        let placements = match placement::place(&config, previous) {
            Ok(p) => p,
            Err(findings) => {
                let mut all = Findings::default();
                for f in findings {
                    all.push(f);
                }
                all.sort();
                return Err(Error::InvalidConfig(Box::new(config::Invalid {
                    sources: config.sources,
                    findings: all,
                })));
            }
        };
        let graph = ResourceGraph::build(&config, &placements).map_err(Error::Cycle)?;
        let mut warnings = loaded.warnings;
        for finding in config::long_start_commands(&config, &placements) {
            warnings.push(finding);
        }
        warnings.sort();
        Ok(Workspace {
            config,
            placements,
            graph,
            warnings,
        })
    }

    /// The placements of one model.
    pub fn placements_of<'a>(&'a self, model: &'a str) -> impl Iterator<Item = &'a Placement> + 'a {
        self.placements.iter().filter(move |p| p.model == model)
    }

    /// The placements on one host.
    pub fn placements_on<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Placement> + 'a {
        self.placements.iter().filter(move |p| p.host == host)
    }
}
