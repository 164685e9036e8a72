//! limit (being built)
