//! Cost (being written).
