//! HubSpot's CRM object types as the fake knows them: the names a request may use
//! (singular, plural, `0-n` type ids) and what HubSpot returns by default for each.

/// A standard CRM object type the fake can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ObjectType {
    Contact,
    Company,
    Deal,
    Call,
    Email,
    Meeting,
    Note,
    Task,
}

const ALL: [ObjectType; 8] = [
    ObjectType::Contact,
    ObjectType::Company,
    ObjectType::Deal,
    ObjectType::Call,
    ObjectType::Email,
    ObjectType::Meeting,
    ObjectType::Note,
    ObjectType::Task,
];

impl ObjectType {
    /// Any name HubSpot accepts in a path: `contact`, `contacts`, `0-1` (case-insensitive).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        ALL.into_iter()
            .find(|kind| name == kind.singular() || name == kind.plural() || name == kind.type_id())
    }

    pub(crate) fn singular(self) -> &'static str {
        match self {
            Self::Contact => "contact",
            Self::Company => "company",
            Self::Deal => "deal",
            Self::Call => "call",
            Self::Email => "email",
            Self::Meeting => "meeting",
            Self::Note => "note",
            Self::Task => "task",
        }
    }

    pub(crate) fn plural(self) -> &'static str {
        match self {
            Self::Contact => "contacts",
            Self::Company => "companies",
            Self::Deal => "deals",
            Self::Call => "calls",
            Self::Email => "emails",
            Self::Meeting => "meetings",
            Self::Note => "notes",
            Self::Task => "tasks",
        }
    }

    fn type_id(self) -> &'static str {
        match self {
            Self::Contact => "0-1",
            Self::Company => "0-2",
            Self::Deal => "0-3",
            Self::Task => "0-27",
            Self::Note => "0-46",
            Self::Meeting => "0-47",
            Self::Call => "0-48",
            Self::Email => "0-49",
        }
    }

    /// The property holding the creation time: activities use `hs_createdate`.
    pub(crate) fn created_property(self) -> &'static str {
        match self {
            Self::Contact | Self::Company | Self::Deal => "createdate",
            _ => "hs_createdate",
        }
    }

    /// The property holding the last change: only contacts use `lastmodifieddate`.
    pub(crate) fn modified_property(self) -> &'static str {
        match self {
            Self::Contact => "lastmodifieddate",
            _ => "hs_lastmodifieddate",
        }
    }

    /// What HubSpot returns when the request names no `properties` (besides the id and
    /// the two timestamps, which it always returns).
    pub(crate) fn default_properties(self) -> &'static [&'static str] {
        match self {
            Self::Contact => &["email", "firstname", "lastname"],
            Self::Company => &["domain", "name"],
            Self::Deal => &["amount", "closedate", "dealname", "dealstage", "pipeline"],
            _ => &[],
        }
    }
}

/// The type a HUBSPOT_DEFINED association type id from `from` leads to (204 from a
/// task: contact).
pub(crate) fn association_target(from: ObjectType, type_id: u64) -> Option<ObjectType> {
    ALL.into_iter()
        .find(|to| association_type_id(from, *to).is_some_and(|id| u64::from(id) == type_id))
}

/// The HUBSPOT_DEFINED (unlabeled) association type id from one type to another, as
/// listed in HubSpot's association type table; `None` where HubSpot defines none.
pub(crate) fn association_type_id(from: ObjectType, to: ObjectType) -> Option<u32> {
    use ObjectType::*;
    let id = match (from, to) {
        (Contact, Company) => 279,
        (Company, Contact) => 280,
        (Deal, Contact) => 3,
        (Contact, Deal) => 4,
        (Deal, Company) => 341,
        (Company, Deal) => 342,
        (Company, Call) => 181,
        (Call, Company) => 182,
        (Company, Email) => 185,
        (Email, Company) => 186,
        (Company, Meeting) => 187,
        (Meeting, Company) => 188,
        (Company, Note) => 189,
        (Note, Company) => 190,
        (Company, Task) => 191,
        (Task, Company) => 192,
        (Contact, Call) => 193,
        (Call, Contact) => 194,
        (Contact, Email) => 197,
        (Email, Contact) => 198,
        (Contact, Meeting) => 199,
        (Meeting, Contact) => 200,
        (Contact, Note) => 201,
        (Note, Contact) => 202,
        (Contact, Task) => 203,
        (Task, Contact) => 204,
        (Deal, Call) => 205,
        (Call, Deal) => 206,
        (Deal, Email) => 209,
        (Email, Deal) => 210,
        (Deal, Meeting) => 211,
        (Meeting, Deal) => 212,
        (Deal, Note) => 213,
        (Note, Deal) => 214,
        (Deal, Task) => 215,
        (Task, Deal) => 216,
        _ => return None,
    };
    Some(id)
}
