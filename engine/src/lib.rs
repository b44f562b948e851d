//! `kappa`: the embeddable streaming SQL engine.
//!
//! The engine (issue 3) will own the `Engine` API (`open`, `execute`, `append`, `query`,
//! `subscribe`, `close`), the job runtime, the operators, connectors and checkpoints. It sits on
//! [`kappa_storage`], the durable log, and on `kappa_sql`, the planner. See `docs/ARCHITECTURE.md`.
//!
//! Until the engine lands, the storage layer is re-exported so that embedders can already write
//! and read durable Arrow logs.

pub use kappa_storage as storage;
