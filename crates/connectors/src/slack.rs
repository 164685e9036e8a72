//! slack (being built)
