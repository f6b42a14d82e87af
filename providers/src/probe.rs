//! Readiness probes and the probe gate.
