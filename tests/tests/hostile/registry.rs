//! The registry's names: go-micro's key layout must never let two distinct services or nodes share a key.
