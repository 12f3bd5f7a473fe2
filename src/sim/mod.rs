//! The embedded relay simulator (being written).
