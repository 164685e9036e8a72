//! retry (being built)
