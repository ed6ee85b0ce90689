//! The Spine-like protocol (in progress).
