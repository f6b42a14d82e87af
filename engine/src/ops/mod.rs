//! The engine as a library: async operations (plan, apply, destroy, drift, select, health, watch) that take plain
//! request structs, an event sink and a stop token, and return typed results. They never own a
//! runtime, call `block_on`, touch process signals or print: the CLI is one caller, a daemon or
//! a test another.

mod apply;
mod drift;
mod health;
mod plan;
mod request;
mod saved_vars;
mod select;
mod snapshot;
mod stop;
mod watch;

pub use apply::{Applied, Review, apply, destroy};
pub use drift::{DriftReport, DriftStatus, drift};
pub use health::{EndpointsRequest, HealthRequest, MAX_SCAN_PORTS, endpoints, health, parse_ports};
pub use plan::{load_saved, plan};
pub use request::{
    ApplyRequest, DestroyRequest, DriftRequest, Inputs, Notice, Notices, PlanRequest, PlanScope,
    PlanSource,
};
pub use saved_vars::{missing_secrets, secrets_needed};
pub use select::{
    GroupStatus, HostSwitch, SelectRequest, SelectStatus, Selected, SwitchOutcome, select,
    select_status,
};
pub use stop::{Obeying, Stop, StopLevel};
pub use watch::{
    Cycle, Heal, HealResult, HostSeen, ModelSeen, SelectionSeen, WatchRequest, Watcher,
};
