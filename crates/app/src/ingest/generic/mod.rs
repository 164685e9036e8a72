//! Generic signed-JSON senders (`/webhooks/generic/{name}`), authenticated with Standard
//! Webhooks signatures. The verifier is here; the endpoint comes with the generic source.

pub mod signature;
