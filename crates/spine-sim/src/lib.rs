//! The Spine-like endpoint (in progress).
