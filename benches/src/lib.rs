//! Shared helpers for Quiver benchmarks.
