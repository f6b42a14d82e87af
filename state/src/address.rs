//! Resource addresses (`host.ID`, `backend.ID@HOST`, `model.ID@HOST`) and the target patterns
//! `--target`/`--replace` accept, parsed once into types. The only place that builds or takes
//! apart an address string; holds no config and does no I/O.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use miette::Diagnostic;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::record::ResourceKind;

/// The longest id berth accepts.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not an address or a target.
#[derive(Debug, Clone, PartialEq, Eq, Error, Diagnostic)]
#[error("`{text}` is not {expected}: {reason}")]
#[diagnostic(
    code(berth::address::invalid),
    help(
        "write host.ID, backend.ID@HOST or model.ID@HOST (a target may leave out @HOST); ids are 1-64 of letters, digits, `-`, `_` and `.`"
    )
)]
pub struct AddressError {
    /// The text that was given.
    pub text: String,
    /// What was expected (`a resource address`, `a target`).
    pub expected: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Whether `id` is a valid host, backend or model id.
pub fn is_valid_id(id: &str) -> bool {
    id_problem(id).is_none()
}

fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("the id is empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Some(format!(
            "the id is {} characters long, more than {MAX_ID_LEN}",
            id.len()
        ));
    }
    id.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .map(|c| {
            format!("the id `{id}` holds `{c}`, which is not a letter, digit, `-`, `_` or `.`")
        })
}

impl ResourceKind {
    /// The address prefix without its dot (`host`, `backend`, `model`).
    pub fn prefix(self) -> &'static str {
        match self {
            ResourceKind::Host => "host",
            ResourceKind::Backend => "backend",
            ResourceKind::Model => "model",
        }
    }
}

/// The kind, id and host a string names, with `host` None when it leaves `@HOST` out.
struct Parts<'a> {
    kind: ResourceKind,
    id: &'a str,
    host: Option<&'a str>,
}

fn parse_parts<'a>(text: &'a str, expected: &'static str) -> Result<Parts<'a>, AddressError> {
    let fail = |reason: String| AddressError {
        text: text.to_string(),
        expected,
        reason,
    };
    let (prefix, rest) = text
        .split_once('.')
        .ok_or_else(|| fail("it does not start with `host.`, `backend.` or `model.`".into()))?;
    let kind = match prefix {
        "host" => ResourceKind::Host,
        "backend" => ResourceKind::Backend,
        "model" => ResourceKind::Model,
        other => {
            return Err(fail(format!(
                "`{other}` is not a kind of resource (host, backend or model)"
            )));
        }
    };
    let (id, host) = match rest.split_once('@') {
        Some((id, host)) => (id, Some(host)),
        None => (rest, None),
    };
    if let Some(problem) = id_problem(id) {
        return Err(fail(problem));
    }
    if let Some(host) = host {
        if kind == ResourceKind::Host {
            return Err(fail(
                "a host address has no `@HOST` part (write host.ID)".into(),
            ));
        }
        if let Some(problem) = id_problem(host) {
            return Err(fail(format!("after `@`: {problem}")));
        }
    }
    Ok(Parts { kind, id, host })
}

/// The full address of one resource: `host.ID`, `backend.ID@HOST` or `model.ID@HOST`.
///
/// Holds its canonical text, so it compares, hashes and sorts exactly as that string does, and
/// serializes as it (state keys and JSON are the plain address).
#[derive(Clone)]
pub struct Address {
    text: String,
    kind: ResourceKind,
    /// Byte range of the id in `text`; the host follows the `@` after it (or is the id).
    id_start: usize,
    id_end: usize,
}

impl Address {
    fn build(kind: ResourceKind, id: &str, host: Option<&str>) -> Address {
        debug_assert!(is_valid_id(id), "invalid id {id:?}");
        debug_assert!(host.is_none_or(is_valid_id), "invalid host id {host:?}");
        let prefix = kind.prefix();
        let text = match host {
            Some(host) => format!("{prefix}.{id}@{host}"),
            None => format!("{prefix}.{id}"),
        };
        let id_start = prefix.len() + 1;
        Address {
            text,
            kind,
            id_start,
            id_end: id_start + id.len(),
        }
    }

    /// `host.ID`; `id` is a validated host id.
    pub fn host(id: &str) -> Address {
        Address::build(ResourceKind::Host, id, None)
    }

    /// `backend.ID@HOST`; both are validated ids.
    pub fn backend(id: &str, host: &str) -> Address {
        Address::build(ResourceKind::Backend, id, Some(host))
    }

    /// `model.ID@HOST`; both are validated ids.
    pub fn model(id: &str, host: &str) -> Address {
        Address::build(ResourceKind::Model, id, Some(host))
    }

    /// What the address names.
    pub fn kind(&self) -> ResourceKind {
        self.kind
    }

    /// The host, backend or model id.
    pub fn id(&self) -> &str {
        &self.text[self.id_start..self.id_end]
    }

    /// The host the resource lives on (a host's own id for `host.ID`).
    pub fn host_id(&self) -> &str {
        match self.kind {
            ResourceKind::Host => self.id(),
            _ => &self.text[self.id_end + 1..],
        }
    }

    /// The address as text, e.g. `model.qwen2.5-7b@gpu-a`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Address, AddressError> {
        const EXPECTED: &str = "a resource address";
        let parts = parse_parts(text, EXPECTED)?;
        match (parts.kind, parts.host) {
            (ResourceKind::Host, _) => Ok(Address::host(parts.id)),
            (kind, Some(host)) => Ok(Address::build(kind, parts.id, Some(host))),
            (kind, None) => Err(AddressError {
                text: text.to_string(),
                expected: EXPECTED,
                reason: format!(
                    "a {} address ends in `@HOST` (write {}.{}@HOST)",
                    kind.prefix(),
                    kind.prefix(),
                    parts.id
                ),
            }),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.text)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl PartialEq for Address {
    fn eq(&self, other: &Address) -> bool {
        self.text == other.text
    }
}

impl Eq for Address {}

impl Hash for Address {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state)
    }
}

impl PartialOrd for Address {
    fn partial_cmp(&self, other: &Address) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// Sorted by text, so every listing keeps the order it had when addresses were strings.
impl Ord for Address {
    fn cmp(&self, other: &Address) -> Ordering {
        self.text.cmp(&other.text)
    }
}

// Eq, Hash and Ord all follow the text, so maps keyed by address can be looked up by `&str`.
impl Borrow<str> for Address {
    fn borrow(&self) -> &str {
        &self.text
    }
}

// An address reads as its text wherever a `&str` is wanted (messages, store keys, markers).
impl std::ops::Deref for Address {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl AsRef<str> for Address {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl PartialEq<str> for Address {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for Address {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl PartialEq<String> for Address {
    fn eq(&self, other: &String) -> bool {
        &self.text == other
    }
}

impl PartialEq<Address> for &str {
    fn eq(&self, other: &Address) -> bool {
        *self == other.text
    }
}

impl PartialEq<Address> for String {
    fn eq(&self, other: &Address) -> bool {
        *self == other.text
    }
}

impl From<Address> for String {
    fn from(address: Address) -> String {
        address.text
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Address, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What `--target` and `--replace` accept: a full address, or `host.ID`, `backend.ID`,
/// `model.ID` for that resource on every host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Exactly this resource.
    Address(Address),
    /// Everything on this host.
    Host(String),
    /// This backend on every host.
    Backend(String),
    /// This model on every host.
    Model(String),
}

impl Target {
    /// Whether the target selects `address`.
    pub fn matches(&self, address: &Address) -> bool {
        match self {
            Target::Address(a) => a == address,
            Target::Host(host) => address.host_id() == host,
            Target::Backend(id) => address.kind() == ResourceKind::Backend && address.id() == id,
            Target::Model(id) => address.kind() == ResourceKind::Model && address.id() == id,
        }
    }
}

impl FromStr for Target {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Target, AddressError> {
        let parts = parse_parts(text, "a target")?;
        let id = parts.id.to_string();
        Ok(match (parts.kind, parts.host) {
            (ResourceKind::Host, _) => Target::Host(id),
            (kind, Some(host)) => Target::Address(Address::build(kind, parts.id, Some(host))),
            (ResourceKind::Backend, None) => Target::Backend(id),
            (ResourceKind::Model, None) => Target::Model(id),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Address(a) => fmt::Display::fmt(a, f),
            Target::Host(id) => write!(f, "host.{id}"),
            Target::Backend(id) => write!(f, "backend.{id}"),
            Target::Model(id) => write!(f, "model.{id}"),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Target, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Address {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn each_kind_parses_into_its_parts_and_displays_as_given() {
        let host = parse("host.gpu-a");
        assert_eq!(
            (host.kind(), host.id(), host.host_id()),
            (ResourceKind::Host, "gpu-a", "gpu-a")
        );
        let backend = parse("backend.cuda@gpu-a");
        assert_eq!(
            (backend.kind(), backend.id(), backend.host_id()),
            (ResourceKind::Backend, "cuda", "gpu-a")
        );
        let model = parse("model.qwen2.5-7b@gpu.a_1");
        assert_eq!(
            (model.kind(), model.id(), model.host_id()),
            (ResourceKind::Model, "qwen2.5-7b", "gpu.a_1")
        );
        for a in [&host, &backend, &model] {
            assert_eq!(parse(a.as_ref()), *a);
        }
        assert_eq!(model, Address::model("qwen2.5-7b", "gpu.a_1"));
        assert_eq!(backend, Address::backend("cuda", "gpu-a"));
        assert_eq!(host, Address::host("gpu-a"));
    }

    #[test]
    fn rejected_addresses_say_what_is_wrong() {
        let cases = [
            ("", "does not start with `host.`, `backend.` or `model.`"),
            (
                "gpu-a",
                "does not start with `host.`, `backend.` or `model.`",
            ),
            ("node.a@h", "`node` is not a kind of resource"),
            ("model.@h", "the id is empty"),
            ("model.a@", "after `@`: the id is empty"),
            (
                "model.a",
                "a model address ends in `@HOST` (write model.a@HOST)",
            ),
            ("backend.cuda", "a backend address ends in `@HOST`"),
            ("host.a@b", "a host address has no `@HOST` part"),
            ("model.a b@h", "holds ` `, which is not a letter, digit"),
            ("model.a@h@i", "after `@`: the id `h@i` holds `@`"),
        ];
        for (text, wanted) in cases {
            let err = text.parse::<Address>().unwrap_err();
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("`{text}` is not a resource address: ")),
                "{shown}"
            );
            assert!(shown.contains(wanted), "{text}: {shown}");
        }
        let long = format!("host.{}", "a".repeat(65));
        let err = long.parse::<Address>().unwrap_err().to_string();
        assert!(err.contains("65 characters long, more than 64"), "{err}");
        assert!(
            format!("host.{}", "a".repeat(64))
                .parse::<Address>()
                .is_ok()
        );
    }

    #[test]
    fn serde_form_is_the_old_address_string() {
        let a = parse("model.qwen2.5-7b@gpu-a");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"model.qwen2.5-7b@gpu-a\"");
        assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), a);
        let err = serde_json::from_str::<Address>("\"model.x\"").unwrap_err();
        assert!(err.to_string().contains("ends in `@HOST`"), "{err}");
        let t: Target = serde_json::from_str("\"backend.cpu\"").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"backend.cpu\"");
    }

    #[test]
    fn addresses_sort_as_their_strings_do() {
        // `.` sorts before `@`: a field-by-field order would put `model.a@x` first.
        let mut addresses = [
            parse("model.a@x"),
            parse("model.a.b@x"),
            parse("backend.z@a"),
            parse("host.b"),
        ];
        addresses.sort();
        let mut texts: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        let sorted = texts.clone();
        texts.sort();
        assert_eq!(sorted, texts);
    }

    #[test]
    fn targets_select_addresses() {
        let t = |s: &str| s.parse::<Target>().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(t("model.a@h").matches(&parse("model.a@h")));
        assert!(t("model.a").matches(&parse("model.a@h")));
        assert!(!t("model.a").matches(&parse("model.ab@h")));
        assert!(!t("model.a").matches(&parse("backend.a@h")));
        assert!(t("backend.cpu").matches(&parse("backend.cpu@h")));
        assert!(t("host.h").matches(&parse("model.a@h")));
        assert!(t("host.h").matches(&parse("backend.cpu@h")));
        assert!(t("host.h").matches(&parse("host.h")));
        assert!(!t("host.h").matches(&parse("model.a@h2")));
        assert!(!t("model.a@h2").matches(&parse("model.a@h")));
        for text in ["model.a", "backend.b", "host.h", "model.a@h"] {
            assert_eq!(t(text).to_string(), text);
        }
        let err = "model".parse::<Target>().unwrap_err().to_string();
        assert!(err.starts_with("`model` is not a target: "), "{err}");
    }

    proptest! {
        #[test]
        fn valid_addresses_round_trip(
            id in "[A-Za-z0-9._-]{1,64}",
            host in "[A-Za-z0-9._-]{1,64}",
            kind in 0..3u8,
        ) {
            let a = match kind {
                0 => Address::host(&id),
                1 => Address::backend(&id, &host),
                _ => Address::model(&id, &host),
            };
            let back: Address = a.to_string().parse().unwrap();
            prop_assert_eq!(&back, &a);
            prop_assert_eq!(back.id(), id.as_str());
            let json = serde_json::to_string(&a).unwrap();
            prop_assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), a.clone());
            let target: Target = a.to_string().parse().unwrap();
            prop_assert!(target.matches(&a));
        }
    }
}
