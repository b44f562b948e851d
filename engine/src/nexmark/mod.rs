//! Nexmark: the online-auction benchmark's data (`../shared/NEXMARK.md`).
//!
//! [`generator`] makes the three streams' events deterministically: event `n`'s values depend
//! only on `n` and the event rate (its random draws are seeded from `n`), so any split of the
//! event range, at any parallelism, yields the same rows. The connector that fills streams
//! from it, and the queries, arrive with the rest of issue 5.

pub mod generator;

pub use generator::{Events, Generator, NexmarkConfig, auction_schema, bid_schema, person_schema};
