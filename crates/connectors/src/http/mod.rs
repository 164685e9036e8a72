//! http (being built)
