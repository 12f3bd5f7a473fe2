//! Headless report (being written).
