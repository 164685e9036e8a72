//! pipedrive (being built)
