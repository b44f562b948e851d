//! Nexmark: the online-auction benchmark's data (`../shared/NEXMARK.md`).
//!
//! [`generator`] makes the three streams' events deterministically: event `n`'s values depend
//! only on `n` and the event rate (its random draws are seeded from `n`), so any split of the
//! event range, at any parallelism, yields the same rows. [`source`] is the `nexmark`
//! connector: it fills a stream from the generator, resumes from the stream's row count after
//! a restart, and seals the stream after the last event. The queries are in `queries/nexmark/`.

pub mod generator;
pub mod source;

pub use generator::{
    Events, Generator, Kind, NexmarkConfig, auction_schema, bid_schema, person_schema,
};
pub use source::NexmarkSource;
