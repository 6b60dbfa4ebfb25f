//! Integration tests of the core engine, through the public API only: one test binary with
//! a module per area.

mod barriers;
mod contract;
mod cord;
mod graphs;
mod ops;
mod oracle;
mod props;
mod reference;
mod rules;
