//! Report content shared between every subscriber that receives it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use netsvc_proto::value::{self, Limits, Value, ValueError};

/// The content of a report, shared (not copied) between all the subscribers it reaches.
///
/// It holds the decoded [`Value`], the encoded bytes, or both: a report published in this
/// process starts as a value and is encoded only if it has to cross an exchange; a report
/// that arrived through an exchange starts as bytes and is decoded at most once, on first
/// access, however many local subscribers read it.
#[derive(Clone)]
pub struct Payload(Arc<Inner>);

/// The form a payload was made from, and the other form once it was needed. (Only the
/// derived form sits behind a `OnceLock`: making one costs no synchronisation.)
enum Inner {
    Value {
        value: Value,
        bytes: OnceLock<Result<Bytes, ValueError>>,
    },
    Bytes {
        bytes: Bytes,
        value: OnceLock<Result<Value, ValueError>>,
    },
}

impl Payload {
    /// Wraps a value after checking it against `limits` (nesting depth).
    pub(crate) fn from_value(value: Value, limits: &Limits) -> Result<Self, ValueError> {
        check_depth(&value, limits.max_depth)?;
        Ok(Self(Arc::new(Inner::Value {
            value,
            bytes: OnceLock::new(),
        })))
    }

    /// Wraps bytes received from an exchange; they are decoded on first access.
    pub(crate) fn from_bytes(bytes: Bytes) -> Self {
        Self(Arc::new(Inner::Bytes {
            bytes,
            value: OnceLock::new(),
        }))
    }

    /// The content as a value, decoding it on first use.
    pub fn value(&self) -> Result<&Value, ValueError> {
        match &*self.0 {
            Inner::Value { value, .. } => Ok(value),
            Inner::Bytes { bytes, value } => value
                .get_or_init(|| value::decode(bytes, &Limits::default()))
                .as_ref()
                .map_err(Clone::clone),
        }
    }

    /// The content in its wire encoding (MessagePack), encoding it on first use.
    pub(crate) fn bytes(&self) -> Result<Bytes, ValueError> {
        match &*self.0 {
            Inner::Value { value, bytes } => bytes
                .get_or_init(|| value::encode(value, &Limits::default()).map(Bytes::from))
                .clone(),
            Inner::Bytes { bytes, .. } => Ok(bytes.clone()),
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value() {
            Ok(v) => write!(f, "Payload({v:?})"),
            Err(e) => write!(f, "Payload(<{e}>)"),
        }
    }
}

/// Checks nesting depth without recursion, so a hostile value cannot overflow the stack.
pub(crate) fn check_depth(value: &Value, limit: usize) -> Result<(), ValueError> {
    if !matches!(value, Value::List(_) | Value::Map(_)) {
        return Ok(()); // a scalar: nothing to walk (and no stack to allocate)
    }
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::List(items) => Box::new(items.iter()),
            Value::Map(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth >= limit {
            return Err(ValueError::TooDeep { limit });
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Value {
        (0..depth).fold(Value::None, |v, _| Value::List(vec![v]))
    }

    #[test]
    fn depth_limit_is_enforced() {
        let limits = Limits::default();
        assert!(Payload::from_value(nested(limits.max_depth), &limits).is_ok());
        assert!(matches!(
            Payload::from_value(nested(limits.max_depth + 1), &limits),
            Err(ValueError::TooDeep { .. })
        ));
    }

    #[test]
    fn bytes_and_value_agree() {
        let p = Payload::from_value(Value::from("hi"), &Limits::default()).unwrap();
        let q = Payload::from_bytes(p.bytes().unwrap());
        assert_eq!(q.value().unwrap(), &Value::from("hi"));
    }
}
