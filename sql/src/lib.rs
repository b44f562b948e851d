//! `kappa-sql`: the SQL front end of kappa.
//!
//! This crate will hold kappa's sqlparser dialect (the statements DataFusion does not know:
//! `CREATE STREAM ... WATERMARK FOR`, `SEAL STREAM`, `COPY`, `EMIT ...`), the token-level rewrite
//! of Flink's window table functions, planning through DataFusion's `SqlToRel`, and the rewrite of
//! a `LogicalPlan` into streaming plan nodes. See `docs/ARCHITECTURE.md`, section Planning.
//!
//! It is built by issue 3; today it only fixes the dependency pins (DataFusion 55.2 with the
//! sqlparser 0.62 it uses) and its place in the dependency graph (`engine -> sql`). It exports
//! nothing yet, so nothing can call a half-built planner.
