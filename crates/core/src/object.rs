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

    /// The name, `<source>:<type>:<id>` (what `to_string` gives, built in one allocation).
    pub fn name(&self) -> String {
        let mut name =
            String::with_capacity(self.source.len() + self.object_type.len() + self.id.len() + 2);
        name.push_str(&self.source);
        name.push(':');
        name.push_str(&self.object_type);
        name.push(':');
        name.push_str(&self.id);
        name
    }

    /// Whether `name` is this object's name, without building it.
    pub fn is_named(&self, name: &str) -> bool {
        let mut parts = name.splitn(3, ':');
        parts.next() == Some(self.source.as_str())
            && parts.next() == Some(self.object_type.as_str())
            && parts.next() == Some(self.id.as_str())
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Part by part: `write!(f, "{}:{}:{}", ..)` pads each part through the formatting
        // machinery, and names are formatted several times per event and per timer (a
        // profile of firing timers put it at 2.5% of the process).
        if f.width().is_some() || f.precision().is_some() {
            return f.pad(&self.name());
        }
        f.write_str(&self.source)?;
        f.write_str(":")?;
        f.write_str(&self.object_type)?;
        f.write_str(":")?;
        f.write_str(&self.id)
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
        assert_eq!(object.name(), "hubspot:contact:501");
        assert!(object.is_named("hubspot:contact:501"));
        for other in [
            "hubspot:contact:50",
            "hubspot:contact",
            "hubspot:deal:501",
            "hubspot:contact:501:x",
        ] {
            assert!(!object.is_named(other), "{other}");
        }
        assert_eq!(format!("[{object:>21}]"), "[  hubspot:contact:501]");
    }

    #[test]
    fn rejects_incomplete_names() {
        for bad in ["", "hubspot", "hubspot:contact", "hubspot::1", ":contact:1"] {
            assert!(bad.parse::<ObjectRef>().is_err(), "{bad} should not parse");
        }
    }
}
