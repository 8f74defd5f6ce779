//! A tiny builder for DynamoDB expressions.
//!
//! Every attribute name goes through a `#placeholder` (several KCL names, like `checkpoint`, are close to DynamoDB's
//! long reserved-word list, and a future name may land on it), and DynamoDB rejects a request that defines a
//! placeholder its expressions do not use — so placeholders are registered only as the expressions use them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

#[derive(Debug, Default)]
pub(crate) struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// The placeholder for attribute `attribute` (one per attribute, however often it is used).
    pub(crate) fn name(&mut self, attribute: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, name)| name.as_str() == attribute) {
            return placeholder.clone();
        }
        let placeholder = format!("#a{}", self.names.len());
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    /// A placeholder for `value`.
    pub(crate) fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// The placeholder maps, each `None` when empty (DynamoDB rejects an empty map).
    #[allow(clippy::type_complexity)]
    pub(crate) fn finish(self) -> (Option<HashMap<String, String>>, Option<HashMap<String, AttributeValue>>) {
        let names = (!self.names.is_empty()).then_some(self.names);
        let values = (!self.values.is_empty()).then_some(self.values);
        (names, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shared_and_values_are_not() {
        let mut e = Expr::default();
        let a = e.name("leaseCounter");
        let b = e.name("leaseOwner");
        assert_eq!(e.name("leaseCounter"), a);
        assert_ne!(a, b);
        let one = e.value(AttributeValue::N("1".into()));
        let two = e.value(AttributeValue::N("1".into()));
        assert_ne!(one, two);
        let (names, values) = e.finish();
        assert_eq!(names.map(|m| m.len()), Some(2));
        assert_eq!(values.map(|m| m.len()), Some(2));
        assert_eq!(Expr::default().finish(), (None, None));
    }
}
