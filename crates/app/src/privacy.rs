//! Keeping personal data out of the journal and the logs.
//!
//! Two layers. Values of personal-data properties (`privacy.redact_properties`: email,
//! phone...) are replaced by name wherever the engine journals a property or a guard
//! input ([`crate::journal::Redactor`]). And free text is scrubbed by pattern
//! ([`scrub_text`]): an email address or a written phone number in a note, a task body
//! quoted back by an API error, or a log line becomes `[email]` / `[phone]`, whatever
//! property or message carried it.
//!
//! Written by hand rather than with `regex`: two small patterns, and the phone number's
//! rules (what must NOT match: ids, epoch milliseconds, dates, times) read more plainly
//! as code than as one expression.

use std::borrow::Cow;
use std::io::Write;

use serde_json::Value;

pub const EMAIL: &str = "[email]";
pub const PHONE: &str = "[phone]";

/// `text` with every email address and written phone number replaced. Borrows when
/// there is nothing to replace (the common case: no `@`, no digit run to look at).
pub fn scrub_text(text: &str) -> Cow<'_, str> {
    let emails = scrub_emails(text);
    match scrub_phones(&emails) {
        Cow::Borrowed(_) => emails,
        Cow::Owned(owned) => Cow::Owned(owned),
    }
}

/// Scrubs every string in a JSON value, in place (keys are left alone: they are
/// property names and field names, not data).
pub fn scrub_value(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Cow::Owned(scrubbed) = scrub_text(text) {
                *text = scrubbed;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        Value::Object(map) => map.values_mut().for_each(scrub_value),
        _ => {}
    }
}

fn is_local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-'".contains(&c)
}

fn is_domain_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

fn scrub_emails(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    if !bytes.contains(&b'@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while let Some(offset) = bytes[at..].iter().position(|&c| c == b'@') {
        let sign = at + offset;
        let mut start = sign;
        while start > copied && is_local_char(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = sign + 1;
        while end < bytes.len() && is_domain_char(bytes[end]) {
            end += 1;
        }
        // A sentence's full stop after the address is not part of the domain.
        while end > sign + 1 && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &text[sign + 1..end];
        let tld_ok = domain
            .rsplit_once('.')
            .is_some_and(|(name, tld)| !name.is_empty() && tld.len() >= 2);
        if start < sign && tld_ok {
            out.push_str(&text[copied..start]);
            out.push_str(EMAIL);
            copied = end;
            at = end;
        } else {
            at = sign + 1;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// A written phone number: `+` and 8 to 15 digits (`+15550104477`, `+1 (555) 010-4477`),
/// or 7 to 15 digits in two groups or more (`555-010-4477`, `(555) 010 4477`). Not a
/// bare digit run without `+` (CRM ids, owner ids, epoch milliseconds), not a date
/// (`2026-11-28`), and not part of a word or a time (`run_01J...`, `15:08:36.701`).
fn scrub_phones(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let starts = c.is_ascii_digit()
            || ((c == b'+' || c == b'(') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
        let free_before =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || b":_/".contains(&bytes[i - 1]));
        if !(starts && free_before) {
            i += 1;
            continue;
        }
        let candidate = PhoneCandidate::read(bytes, i);
        if candidate.is_phone(bytes) {
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..i]);
            out.push_str(PHONE);
            copied = candidate.end;
        }
        i = candidate.end.max(i + 1);
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

/// A run of digit groups, described without allocating (this runs on every journal
/// string the engine writes).
struct PhoneCandidate {
    end: usize,
    digits: usize,
    groups: usize,
    /// The first three groups' lengths (for the date shape).
    lengths: [usize; 3],
    /// The first separator, and whether every separator was that one character.
    separator: u8,
    one_separator_kind: bool,
    plus: bool,
}

impl PhoneCandidate {
    /// Digit groups joined by at most two separators (`) `, ` - `...), from `start`.
    fn read(bytes: &[u8], start: usize) -> Self {
        let plus = bytes[start] == b'+';
        let mut i = start + usize::from(plus || bytes[start] == b'(');
        let mut candidate = Self {
            end: i,
            digits: 0,
            groups: 0,
            lengths: [0; 3],
            separator: 0,
            one_separator_kind: true,
            plus,
        };
        loop {
            let group_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == group_start {
                break;
            }
            if let Some(length) = candidate.lengths.get_mut(candidate.groups) {
                *length = i - group_start;
            }
            candidate.groups += 1;
            candidate.digits += i - group_start;
            candidate.end = i;
            let separator_start = i;
            while i < bytes.len() && i - separator_start < 2 && b" -.()".contains(&bytes[i]) {
                i += 1;
            }
            if i == separator_start || !bytes.get(i).is_some_and(u8::is_ascii_digit) {
                break;
            }
            let separator = bytes[separator_start];
            if candidate.separator == 0 {
                candidate.separator = separator;
            } else if candidate.separator != separator || i - separator_start > 1 {
                candidate.one_separator_kind = false;
            }
        }
        // A closing parenthesis right after the only group belongs to it: `(555)`.
        if bytes.get(candidate.end) == Some(&b')') && bytes[start] == b'(' && candidate.groups == 1
        {
            candidate.end += 1;
        }
        candidate
    }

    fn is_phone(&self, bytes: &[u8]) -> bool {
        let free_after = self.end >= bytes.len()
            || !(bytes[self.end].is_ascii_alphanumeric() || b":_/".contains(&bytes[self.end]));
        if !free_after || self.digits > 15 {
            return false;
        }
        if self.plus {
            return self.digits >= 8;
        }
        let [first, second, third] = self.lengths;
        let looks_like_date = self.groups == 3 && first == 4 && second <= 2 && third <= 2;
        // A decimal number (`1234567.89`) is two groups joined by one dot.
        let decimal = self.groups == 2 && self.separator == b'.' && self.one_separator_kind;
        self.digits >= 7 && self.groups >= 2 && !looks_like_date && !decimal
    }
}

/// A log writer that scrubs each line before it reaches stderr, so no code path (ours or
/// a library's) can log an email address or a phone number. Lines are written whole.
pub struct ScrubbingWriter<W: Write> {
    inner: W,
    buffer: Vec<u8>,
}

impl<W: Write> ScrubbingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buffer: Vec::new(),
        }
    }
}

impl<W: Write> Write for ScrubbingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return self.inner.flush();
        }
        let text = String::from_utf8_lossy(&self.buffer);
        self.inner.write_all(scrub_text(&text).as_bytes())?;
        self.buffer.clear();
        self.inner.flush()
    }
}

impl<W: Write> Drop for ScrubbingWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_replaced_wherever_they_stand() {
        assert_eq!(
            scrub_text("mail Ada.Lovelace+crm@example.co.uk, then"),
            "mail [email], then"
        );
        assert_eq!(scrub_text("\"jo@x.io\"."), "\"[email]\".");
        assert_eq!(scrub_text("<a@b.cd><e@f.gh>"), "<[email]><[email]>");
        assert_eq!(
            scrub_text("a@b and @handle and x@localhost"),
            "a@b and @handle and x@localhost"
        );
    }

    #[test]
    fn written_phone_numbers_are_replaced() {
        for phone in [
            "+1 (555) 010-4477",
            "+15550104477",
            "+44 20 7946 0958",
            "(555) 010-4477",
            "555-010-4477",
            "555.010.4477",
            "06 12 34 56 78",
        ] {
            assert_eq!(
                scrub_text(&format!("call {phone} now")),
                "call [phone] now",
                "{phone}"
            );
        }
    }

    #[test]
    fn ids_times_dates_and_numbers_are_kept() {
        for text in [
            "hubspot:contact:501",
            "owner 882761034 took it",
            "occurred at 1764324000000",
            "2026-11-28T15:08:36.701Z",
            "due 2026-11-28",
            "run_01JDQ8Z3 1234567 steps[0]",
            "score 1234567.89",
            "error 404 after 3 tries",
            "req_01KB2 12:30:45",
        ] {
            assert_eq!(scrub_text(text), text);
        }
        assert!(matches!(scrub_text("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_strings_are_scrubbed_at_any_depth() {
        let mut value = serde_json::json!({
            "email": "ada@example.com",
            "nested": [{ "note": "call +1 555 010 4477" }, 42],
            "id": "501"
        });
        scrub_value(&mut value);
        assert_eq!(
            value,
            serde_json::json!({
                "email": "[email]",
                "nested": [{ "note": "call [phone]" }, 42],
                "id": "501"
            })
        );
    }

    #[test]
    fn log_lines_are_scrubbed_whole() {
        let mut sink = Vec::new();
        {
            let mut writer = ScrubbingWriter::new(&mut sink);
            writer.write_all(b"{\"msg\":\"sent to ada@").unwrap();
            writer.write_all(b"example.com\"}\n").unwrap();
        }
        assert_eq!(
            String::from_utf8(sink).unwrap(),
            "{\"msg\":\"sent to [email]\"}\n"
        );
    }
}
