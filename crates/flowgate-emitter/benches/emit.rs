//! Emitter benchmarks (filled in below).
fn main() {}
