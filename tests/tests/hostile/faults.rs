//! Faults: a damaged data dir, a full disk, a dead Raft core, too few file descriptors.
