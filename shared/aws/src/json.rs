//! Reading a request body in the AWS API's JSON shape into SDK builders, field by field. The
//! SDK's input types cannot be deserialised, so each adapter names the fields it sends; a field
//! it does not know is refused with its path rather than silently dropped.

use std::cell::RefCell;

use serde_json::{Map, Value};
use sluice_infra::InfraError;

pub(crate) struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
    seen: RefCell<Vec<&'a str>>,
}

pub(crate) fn invalid(path: &str, message: &str) -> InfraError {
    InfraError::Rejected(format!("job configuration {path}: {message}"))
}

impl<'a> Obj<'a> {
    pub(crate) fn of_map(path: &str, map: &'a Map<String, Value>) -> Obj<'a> {
        Obj {
            path: path.to_owned(),
            map,
            seen: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn of(path: &str, value: &'a Value) -> Result<Obj<'a>, InfraError> {
        value
            .as_object()
            .map(|m| Obj::of_map(path, m))
            .ok_or_else(|| invalid(path, "must be an object"))
    }

    fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &'a str) -> Option<&'a Value> {
        self.seen.borrow_mut().push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn str(&self, key: &'a str) -> Result<Option<String>, InfraError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(invalid(&self.at(key), "must be a string")),
        }
    }

    pub(crate) fn int(&self, key: &'a str) -> Result<Option<i32>, InfraError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let n = match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                n.and_then(|n| i32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| invalid(&self.at(key), "must be a whole number"))
            }
        }
    }

    pub(crate) fn bool(&self, key: &'a str) -> Result<Option<bool>, InfraError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(invalid(&self.at(key), "must be true or false")),
        }
    }

    pub(crate) fn strs(&self, key: &'a str) -> Result<Option<Vec<String>>, InfraError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| invalid(&self.at(key), "must be a list of strings")),
            Some(_) => Err(invalid(&self.at(key), "must be a list of strings")),
        }
    }

    pub(crate) fn obj(&self, key: &'a str) -> Result<Option<Obj<'a>>, InfraError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Obj::of(&self.at(key), v).map(Some),
        }
    }

    /// A map of string to string (e.g. log options, Batch tags).
    pub(crate) fn string_map(
        &self,
        key: &'a str,
    ) -> Result<Option<Vec<(String, String)>>, InfraError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Some((k.clone(), s.clone())),
                    Value::Number(_) | Value::Bool(_) => Some((k.clone(), v.to_string())),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| invalid(&self.at(key), "must map names to strings")),
            Some(_) => Err(invalid(&self.at(key), "must be an object")),
        }
    }

    pub(crate) fn list(&self, key: &'a str) -> Result<Vec<Obj<'a>>, InfraError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| Obj::of(&format!("{}[{i}]", self.at(key)), v))
                .collect(),
            Some(_) => Err(invalid(&self.at(key), "must be a list")),
        }
    }

    /// Refuses keys nobody read: a field Sluice does not send must not vanish unnoticed.
    pub(crate) fn done(self) -> Result<(), InfraError> {
        let seen = self.seen.borrow();
        if let Some(extra) = self.map.keys().find(|k| !seen.contains(&k.as_str())) {
            return Err(invalid(
                &self.at(extra),
                "is not a field Sluice can send; remove it from the job template",
            ));
        }
        Ok(())
    }
}
