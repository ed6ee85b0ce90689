//! The PC/SC lab (in progress).
