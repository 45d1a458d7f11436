//! A bounded XML tree builder on top of quick-xml: the shared first half of the XML-RPC
//! and NET-RPC decoders.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::DecodeError;

/// Bounds on XML input, checked while it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// Deepest element nesting accepted (the root is at depth 1).
    pub max_depth: usize,
    /// Most elements accepted in one document.
    pub max_elements: usize,
}

impl XmlLimits {
    /// 200 levels (a value nested 64 deep in XML-RPC takes about 190), 1,000,000 elements.
    pub const DEFAULT: Self = Self {
        max_depth: 200,
        max_elements: 1_000_000,
    };
}

impl Default for XmlLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One element: its name, attributes, text (all text children joined) and child elements.
#[derive(Debug, Default)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) text: String,
    pub(crate) children: Vec<Self>,
}

impl Element {
    pub(crate) fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn child(&self, name: &str) -> Option<&Self> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// Whether the document may start with an `<?xml …?>` declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prolog {
    Allowed,
    Rejected,
}

/// Parses `body` into its root element, bounded by `limits`. Comments and processing
/// instructions are skipped; a DOCTYPE is rejected (no entity definitions, so no entity
/// expansion attacks).
pub(crate) fn parse(
    body: &[u8],
    limits: XmlLimits,
    prolog: Prolog,
) -> Result<Element, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| DecodeError::NotUtf8)?;
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    let mut stack: Vec<Element> = Vec::new();
    let mut elements = 0usize;
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| DecodeError::Xml(e.to_string()))?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                drop(start);
                return Err(DecodeError::Xml("content after the root element".into()));
            }
            Event::Start(start) => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(DecodeError::TooManyElements(limits.max_elements));
                }
                if stack.len() >= limits.max_depth {
                    return Err(DecodeError::TooDeep(limits.max_depth));
                }
                stack.push(element(&start)?);
            }
            Event::Empty(start) => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(DecodeError::TooManyElements(limits.max_elements));
                }
                let done = element(&start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::End(_) => {
                let done = stack
                    .pop()
                    .ok_or_else(|| DecodeError::Xml("unmatched end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(DecodeError::Xml("text outside the root element".into())),
                }
            }
            Event::CData(t) => match stack.last_mut() {
                Some(open) => open.text.push_str(&t.xml10_content()),
                None => return Err(DecodeError::Xml("CDATA outside the root element".into())),
            },
            Event::GeneralRef(r) => {
                let resolved = match r
                    .resolve_char_ref()
                    .map_err(|e| DecodeError::Xml(e.to_string()))?
                {
                    Some(c) => c,
                    None => match &*r {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "quot" => '"',
                        "apos" => '\'',
                        other => {
                            return Err(DecodeError::Xml(format!(
                                "unknown entity &{};",
                                other.chars().take(32).collect::<String>()
                            )));
                        }
                    },
                };
                match stack.last_mut() {
                    Some(open) => open.text.push(resolved),
                    None => {
                        return Err(DecodeError::Xml(
                            "reference outside the root element".into(),
                        ));
                    }
                }
            }
            Event::Decl(_) => {
                if prolog == Prolog::Rejected {
                    return Err(DecodeError::Xml(
                        "an XML declaration is not accepted here".into(),
                    ));
                }
                if elements > 0 {
                    return Err(DecodeError::Xml("misplaced XML declaration".into()));
                }
            }
            Event::DocType(_) => return Err(DecodeError::Xml("a DOCTYPE is not accepted".into())),
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => {
                if !stack.is_empty() {
                    return Err(DecodeError::Xml("document ended inside an element".into()));
                }
                return root.ok_or_else(|| DecodeError::Xml("no root element".into()));
            }
        }
    }
}

fn element(start: &BytesStart<'_>) -> Result<Element, DecodeError> {
    let name = start.name().as_ref().to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| DecodeError::Xml(e.to_string()))?;
        let key = attr.key.as_ref().to_owned();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| DecodeError::Xml(e.to_string()))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        text: String::new(),
        children: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_and_count_are_bounded() {
        let deep = "<a>".repeat(300) + &"</a>".repeat(300);
        let limits = XmlLimits::DEFAULT;
        assert_eq!(
            parse(deep.as_bytes(), limits, Prolog::Allowed).unwrap_err(),
            DecodeError::TooDeep(200)
        );
        let many = format!("<a>{}</a>", "<b/>".repeat(20));
        let small = XmlLimits {
            max_depth: 5,
            max_elements: 10,
        };
        assert_eq!(
            parse(many.as_bytes(), small, Prolog::Allowed).unwrap_err(),
            DecodeError::TooManyElements(10)
        );
    }

    #[test]
    fn entities_and_references_resolve() {
        let e = parse(
            b"<a k='x&amp;y'>&lt;&#65;&#x42;</a>",
            XmlLimits::DEFAULT,
            Prolog::Allowed,
        )
        .unwrap();
        assert_eq!(e.text, "<AB");
        assert_eq!(e.attr("k"), Some("x&y"));
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &b"<a>"[..],
            b"<a></b>",
            b"",
            b"text",
            b"<a/><b/>",
            b"<!DOCTYPE a><a/>",
            b"<a>&foo;</a>",
            b"\xff",
        ] {
            assert!(
                parse(bad, XmlLimits::DEFAULT, Prolog::Allowed).is_err(),
                "{bad:?}"
            );
        }
        assert!(
            parse(
                b"<?xml version=\"1.0\"?><a/>",
                XmlLimits::DEFAULT,
                Prolog::Rejected
            )
            .is_err()
        );
    }
}
