//! A CRM user who owns records: what rules read as `owner` and what connectors resolve
//! (a Slack user by email, a task's assignee).

/// The owner of an object, as the CRM knows them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub id: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub teams: Vec<String>,
}
