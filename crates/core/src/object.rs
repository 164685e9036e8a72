//! Names of CRM objects: `<source>:<type>:<id>`, e.g. `hubspot:contact:501`.

use std::fmt;
use std::str::FromStr;

/// A CRM object as followthrough names it. The three parts never contain `:`,
/// except the id, which may (the name splits on the first two colons).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ObjectRef {
    pub source: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an object name: expected <source>:<type>:<id>, e.g. hubspot:contact:501")]
pub struct ObjectRefError(pub String);

impl ObjectRef {
    pub fn new(
        source: impl Into<String>,
        object_type: impl Into<String>,
        id: impl Into<String>,
    ) -> Self {
        Self {
            source: source.into(),
            object_type: object_type.into(),
            id: id.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.object_type, self.id)
    }
}

impl fmt::Debug for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ObjectRef {
    type Err = ObjectRefError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(source), Some(kind), Some(id))
                if !source.is_empty() && !kind.is_empty() && !id.is_empty() =>
            {
                Ok(Self::new(source, kind, id))
            }
            _ => Err(ObjectRefError(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_name() {
        let object: ObjectRef = "hubspot:contact:501".parse().unwrap();
        assert_eq!(object, ObjectRef::new("hubspot", "contact", "501"));
        assert_eq!(object.to_string(), "hubspot:contact:501");
    }

    #[test]
    fn rejects_incomplete_names() {
        for bad in ["", "hubspot", "hubspot:contact", "hubspot::1", ":contact:1"] {
            assert!(bad.parse::<ObjectRef>().is_err(), "{bad} should not parse");
        }
    }
}
