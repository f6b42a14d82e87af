//! What the integration tests of berth's crates share: the `berth-model-server` stand-in and
//! its live processes ([`model_server`]), free ports ([`ports`]), polling ([`poll`]), /proc
//! and signals ([`procs`]), HTTP requests ([`http`]), a private PostgreSQL server ([`postgres`]),
//! docker engines and the stand-in image ([`docker`]), the SSH fleet testbed ([`fleet`]) and
//! systemd hosts in containers ([`systemd_host`]).
//! Real processes, real sockets and real sshd only, never mocks; for tests only.

pub mod docker;
pub mod fleet;
pub mod http;
pub mod model_server;
pub mod poll;
pub mod ports;
pub mod postgres;
pub mod procs;
pub mod systemd_host;

pub use model_server::{StandIn, all_stand_ins, model_server};
pub use poll::wait_until;
pub use ports::{free_port, free_ports};
