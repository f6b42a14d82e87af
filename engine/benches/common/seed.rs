//! A state to plan against: a sled state in a fleet's directory that holds a ready record of
//! every active placement, as an apply of that fleet would have left it.

use std::path::Path;

use berth::launch;
use berth::workspace::Workspace;
use berth_state::{
    LockOptions, ResourceKind, ResourceRecord, ResourceStatus, SledBackend, Snapshot, StateBackend,
};

/// Writes a record of every active placement of `ws` into the sled state `dir/.berth`, with the
/// fingerprint the planner computes, so that a plan of the same config proposes no change;
/// returns the whole state, for a copy into another backend.
pub fn sled_state_of_every_placement(dir: &Path, ws: &Workspace) -> Snapshot {
    let guard = SledBackend::new(dir.join(".berth"))
        .lock("bench setup", &LockOptions::default())
        .unwrap();
    let store = guard.store().unwrap();
    let key = hex::decode(store.meta().unwrap().hmac_key).unwrap();
    for p in ws.placements.iter().filter(|p| p.active) {
        let r = launch::render(&ws.config, p).unwrap();
        store
            .put_resource(&ResourceRecord {
                address: r.address.clone(),
                kind: ResourceKind::Model,
                host: r.host.clone(),
                status: ResourceStatus::Ready,
                fingerprint: Some(r.fingerprint(&key)),
                attributes: r.attributes(),
                updated_at: 0,
            })
            .unwrap();
    }
    Snapshot::of(&*store).unwrap()
}
