//! HubSpot's CRM API (read side). To be written: see `CrmReader`.
