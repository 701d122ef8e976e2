//! Native (C) frames: unwinding with DWARF CFI and symbolization, for goroutines inside cgo
//! calls; and their stitching to the goroutine's Go frames.
pub mod bench;
pub mod modules;
pub mod stitch;
pub mod symbolize;
pub mod taskregs;
pub mod unwind;
