//! Go execution traces (`runtime/trace`, `go tool trace`): a streaming parser for the v2 format
//! that Go 1.22 to 1.27 write, ported from Go's own reader (`src/internal/trace` of Go 1.27).
//!
//! Framing is kept apart from ordering, as in Go's reader:
//! - framing: [`version`] (the header), [`spec`] (the table-driven event spec, per version),
//!   [`batch`] (batches), [`base`] (raw events, string and stack tables), [`generation`]
//!   (one generation at a time, so memory is bounded by the current generation), [`cursor`];
//! - ordering: [`order`] (the state machine that orders events across Ms, as
//!   `internal/trace/order.go` does), [`event`] (the public, resolved events) and [`reader`].

pub mod base;
pub mod batch;
pub mod cursor;
pub mod event;
mod event_fmt;
pub mod generation;
pub mod gofmt;
pub mod gosort;
pub mod order;
mod order_go;
mod order_misc;
#[cfg(test)]
mod order_tests;
pub mod reader;
#[cfg(test)]
mod reader_tests;
pub mod resources;
pub mod spec;
pub mod version;
