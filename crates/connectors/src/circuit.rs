//! circuit (being built)
