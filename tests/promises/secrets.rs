//! Tests of this subject; see the module list in `tests/promises.rs`.
