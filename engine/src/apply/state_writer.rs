//! Writes what the executor reports into the state store: intents before a host changes,
//! records after, one write (and flush) per finished resource.

use std::sync::Arc;

use berth_state::{Intent, StateStore};

use super::events::{ApplyEvent, Subscriber};

/// The state store, as an apply subscriber.
pub struct StateWriter {
    store: Arc<dyn StateStore>,
}

impl StateWriter {
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        StateWriter { store }
    }
}

impl Subscriber for StateWriter {
    fn on_event(&self, event: &ApplyEvent) -> Result<(), String> {
        let result = match event {
            ApplyEvent::Intent { address, action } => self.store.put_intent(&Intent {
                address: address.clone(),
                action: action.as_str().to_string(),
                pid: std::process::id(),
                started_at: crate::now(),
            }),
            ApplyEvent::IntentDone { address } => self.store.clear_intent(address),
            ApplyEvent::Record(record) => self.store.put_resource(record),
            ApplyEvent::Forget { address } => self.store.remove_resource(address).map(|_| ()),
            _ => Ok(()),
        };
        result.map_err(|e| format!("cannot write the state: {e}"))
    }
}
