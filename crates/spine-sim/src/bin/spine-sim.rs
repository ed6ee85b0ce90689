//! `spine-sim`: the Spine-like endpoint (in progress).
fn main() {}
