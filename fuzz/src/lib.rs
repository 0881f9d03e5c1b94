//! The bodies of fairlead's fuzz targets and their seed corpus, shared with
//! `tests/proptest_codec.rs` (which includes these files by path and replays
//! `fuzz/regressions/` through the same functions on stable).

pub mod seeds;
pub mod targets;
