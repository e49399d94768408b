//! A small typed walker over YAML that knows where it is: every error names
//! the field path (`nodes[1].name`), unknown keys get suggestions.
//!
//! The YAML is first read into [`Node`], a plain tree that keeps mapping
//! entries as a list (so duplicate keys are reported with their path, not as
//! a parser error), then walked with [`Table`] and its typed getters.

use std::fmt;
use std::time::Duration;

use serde::de::{
    Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::duration::parse_duration;
use super::error::{ConfigError, ConfigErrorKind};
use super::suggest::suggest;

/// A YAML value as written, before any typing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order, duplicates kept.
    Map(Vec<(Node, Node)>),
    /// A value with an explicit `!tag`.
    Tagged(String),
}

/// Parses YAML text into a [`Node`]; empty text (or only comments) is `Null`.
pub(crate) fn parse(text: &str) -> Result<Node, ConfigError> {
    serde_yaml::from_str::<Node>(text).map_err(|e| {
        let loc = e.location();
        ConfigError::whole(
            ConfigErrorKind::Syntax {
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
            },
            format!("invalid YAML: {e}"),
        )
    })
}

impl Node {
    /// How the value reads in an error ("got ..."): strings quoted and cut
    /// short, containers by kind.
    fn describe(&self) -> String {
        match self {
            Node::Null => "null".into(),
            Node::Bool(b) => b.to_string(),
            Node::Int(i) => i.to_string(),
            Node::Float(f) => format!("{f:?}"),
            Node::Str(s) if s.chars().count() > 40 => {
                format!("{:?}…", s.chars().take(40).collect::<String>())
            }
            Node::Str(s) => format!("{s:?}"),
            Node::Seq(_) => "a list".into(),
            Node::Map(_) => "a mapping".into(),
            Node::Tagged(t) => format!("a value tagged {t}"),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node, Node>()? {
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Node, A::Error> {
        // serde_yaml hands `!tag value` over as an enum variant named by the tag.
        let (tag, variant) = data.variant::<String>()?;
        let _inner: Node = variant.newtype_variant()?;
        Ok(Node::Tagged(format!("!{}", tag.trim_start_matches('!'))))
    }
}

/// Error helpers used by the walker and by validation.
pub(crate) fn wrong_type(path: &str, expected: &str, got: &Node) -> ConfigError {
    let hint = match (got, expected.starts_with("a string")) {
        (Node::Int(_) | Node::Float(_) | Node::Bool(_), true) => " (put it in quotes)",
        _ => "",
    };
    ConfigError::at(
        path,
        ConfigErrorKind::WrongType,
        format!("expected {expected}, got {}{hint}", got.describe()),
    )
}

/// A YAML mapping being read as one config section: knows its path and
/// which keys are allowed there.
pub(crate) struct Table<'a> {
    path: String,
    entries: Vec<(&'a str, &'a Node)>,
}

impl<'a> Table<'a> {
    /// Opens `node` as a section at `path` with the allowed `known` keys.
    /// `Ok(None)` for `null` (an absent block). Rejects non-mappings,
    /// non-string keys, duplicate keys and unknown keys (with a suggestion).
    pub(crate) fn open(
        node: &'a Node,
        path: &str,
        known: &[&str],
    ) -> Result<Option<Table<'a>>, ConfigError> {
        let entries = match node {
            Node::Null => return Ok(None),
            Node::Map(entries) => entries,
            other if path.is_empty() => {
                let problem = format!(
                    "expected a mapping of settings at the top level, got {}",
                    other.describe()
                );
                return Err(ConfigError::whole(ConfigErrorKind::WrongType, problem));
            }
            other => return Err(wrong_type(path, "a mapping of settings", other)),
        };
        let mut out: Vec<(&str, &Node)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Node::Str(key) = k else {
                return Err(ConfigError::at(
                    path,
                    ConfigErrorKind::WrongType,
                    format!("keys must be strings, found {} as a key", k.describe()),
                ));
            };
            let here = join(path, key);
            if out.iter().any(|(seen, _)| seen == key) {
                return Err(ConfigError::at(
                    here,
                    ConfigErrorKind::DuplicateKey,
                    "duplicate key (it appears more than once)",
                ));
            }
            if !known.contains(&key.as_str()) {
                let problem = match suggest(key, known) {
                    Some(s) => format!("unknown key (did you mean `{s}`?)"),
                    None => format!("unknown key (known keys here: {})", known.join(", ")),
                };
                return Err(ConfigError::at(here, ConfigErrorKind::UnknownKey, problem));
            }
            out.push((key.as_str(), v));
        }
        Ok(Some(Table {
            path: path.to_string(),
            entries: out,
        }))
    }

    /// The path of `key` inside this section.
    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value of `key`; `None` when absent or `null`.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .filter(|v| !matches!(v, Node::Null))
    }

    /// A string value (numbers and booleans must be quoted).
    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Node::Str(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong_type(&self.path_of(key), "a string", other)),
        }
    }

    /// `true` or `false` (YAML 1.2: `yes`/`on` are strings, not booleans).
    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Node::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(&self.path_of(key), "true or false", other)),
        }
    }

    /// A non-negative integer that fits `T`.
    pub(crate) fn uint<T: TryFrom<i128> + Into<u64> + Copy>(
        &self,
        key: &str,
        max: T,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Node::Int(i)) if *i >= 0 => T::try_from(*i).map(Some).map_err(|_| {
                ConfigError::at(
                    self.path_of(key),
                    ConfigErrorKind::Invalid,
                    format!("{i} is too large (at most {})", max.into()),
                )
            }),
            Some(other) => Err(wrong_type(
                &self.path_of(key),
                "a non-negative integer",
                other,
            )),
        }
    }

    /// A Go-style duration string (`"30s"`); a bare number is rejected with
    /// a hint to add a unit, except `0`.
    pub(crate) fn duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let text = match self.get(key) {
            None => return Ok(None),
            Some(Node::Str(s)) => s.clone(),
            Some(Node::Int(i)) => i.to_string(),
            Some(Node::Float(f)) => format!("{f}"),
            Some(other) => {
                return Err(wrong_type(
                    &self.path_of(key),
                    "a duration such as \"30s\"",
                    other,
                ));
            }
        };
        parse_duration(&text).map(Some).map_err(|e| {
            ConfigError::at(self.path_of(key), ConfigErrorKind::Invalid, e.to_string())
        })
    }

    /// A list; yields each item with its path (`nodes[2]`).
    pub(crate) fn list(&self, key: &str) -> Result<Option<Vec<(String, &'a Node)>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Node::Seq(items)) => {
                let base = self.path_of(key);
                Ok(Some(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (format!("{base}[{i}]"), n))
                        .collect(),
                ))
            }
            Some(other) => Err(wrong_type(&self.path_of(key), "a list", other)),
        }
    }

    /// A nested section (see [`Table::open`]).
    pub(crate) fn table(
        &self,
        key: &str,
        known: &[&str],
    ) -> Result<Option<Table<'a>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(node) => Table::open(node, &self.path_of(key), known),
        }
    }
}

/// A string item of a list (for lists of URLs and the like).
pub(crate) fn list_string(path: &str, node: &Node) -> Result<String, ConfigError> {
    match node {
        Node::Str(s) => Ok(s.clone()),
        other => Err(wrong_type(path, "a string", other)),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_keeps_duplicates_and_types() {
        let n = parse("a: 1\na: x\nb: [true, 1.5, ~]\nc: !secret v\n").unwrap();
        let Node::Map(entries) = n else {
            panic!("not a map: {n:?}")
        };
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[1].1, Node::Str("x".into()));
        assert_eq!(
            entries[2].1,
            Node::Seq(vec![Node::Bool(true), Node::Float(1.5), Node::Null])
        );
        assert_eq!(entries[3].1, Node::Tagged("!secret".into()));
    }

    #[test]
    fn empty_and_comment_only_text_is_null() {
        assert_eq!(parse("").unwrap(), Node::Null);
        assert_eq!(parse("# nothing here\n").unwrap(), Node::Null);
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let e = parse("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(
            matches!(
                e.kind(),
                ConfigErrorKind::Syntax {
                    line: Some(_),
                    column: Some(_)
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn table_reports_paths() {
        let n = parse("outer:\n  inner: [1]\n  n: -3\n  t: yes\n").unwrap();
        let top = Table::open(&n, "", &["outer"]).unwrap().unwrap();
        let outer = top.table("outer", &["inner", "n", "t"]).unwrap().unwrap();
        let e = outer.string("inner").unwrap_err();
        assert_eq!(
            (e.field(), e.problem()),
            (Some("outer.inner"), "expected a string, got a list")
        );
        let e = outer.uint::<u32>("n", u32::MAX).unwrap_err();
        assert_eq!(
            (e.field(), e.problem()),
            (Some("outer.n"), "expected a non-negative integer, got -3")
        );
        let e = outer.boolean("t").unwrap_err();
        assert_eq!(e.problem(), "expected true or false, got \"yes\"");
    }

    #[test]
    fn long_strings_are_cut_in_messages() {
        let long = "x".repeat(500);
        assert!(Node::Str(long).describe().chars().count() < 50);
    }
}
