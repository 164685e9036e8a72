//! [`RawJson`]: a piece of JSON kept byte for byte as the sender sent it.

use std::fmt;

use serde_json::value::RawValue;

/// JSON text kept verbatim (no parse into a tree, no re-serialization), so the inbox
/// holds exactly what the sender sent and ingest does not pay to rebuild it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Wraps JSON text, checking that it is JSON.
    pub fn from_text(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text.into()).map(Self)
    }

    pub fn null() -> Self {
        Self::from_value(&serde_json::Value::Null)
    }

    pub fn from_value(value: &serde_json::Value) -> Self {
        Self(RawValue::from_string(value.to_string()).expect("a Value always serializes to JSON"))
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parses the text into a tree, for code that needs to look inside.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl From<Box<RawValue>> for RawJson {
    fn from(raw: Box<RawValue>) -> Self {
        Self(raw)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}
