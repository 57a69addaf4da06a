//! Reading a relay's answer for what the gateway acts on (its model, usage, whether it is
//! an error, its choices' finish reasons, how many results) without building a
//! `serde_json::Value` of it. Parsing the whole answer into a `Value` (a `String` per
//! text, a `BTreeMap` per object, a `Value` per vector component) was ~10% of a miss's
//! instructions on a short chat answer (callgrind, bench/RESULTS.md), and far more on an
//! embeddings answer. Everything is still read as strictly as a `Value` would be (text
//! decoded, numbers in range, the input ending after the value): an answer this reads is
//! an answer `serde_json::from_slice::<Value>` takes, and the facts are the same, down to
//! a repeated key counting as its last occurrence, as in a `Value`'s map.

use std::borrow::Cow;
use std::fmt;

// Not `serde::de::IgnoredAny`: it skips text without decoding it and numbers without
// checking their range, so it would take answers a `Value` parse refuses.
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// What an answer says, read in one pass.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Outline {
    /// `model`, when it is a string.
    pub model: Option<String>,
    /// `error`, when present and not null.
    pub error: bool,
    /// `choices`, when it is a list: whether each choice finished by itself (`stop` or
    /// `tool_calls`).
    pub choices: Option<Vec<bool>>,
    /// `data`, when it is a list: its length.
    pub data: Option<usize>,
    /// `usage`, when it is an object.
    pub usage: Option<UsageFields>,
}

/// The token counts of `usage` that are whole non-negative numbers.
#[derive(Debug, Default, PartialEq)]
pub(super) struct UsageFields {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

impl UsageFields {
    /// The count named `name`, as `Value::as_u64` would read it.
    pub fn count(&self, name: &str) -> Option<u64> {
        match name {
            "prompt_tokens" => self.prompt_tokens,
            "completion_tokens" => self.completion_tokens,
            "input_tokens" => self.input_tokens,
            "output_tokens" => self.output_tokens,
            _ => None,
        }
    }
}

/// Reads `body`; `Err` exactly when `serde_json` would not parse it as a `Value`.
pub(super) fn read(body: &[u8]) -> serde_json::Result<Outline> {
    serde_json::from_slice::<Top>(body).map(|top| top.0)
}

/// How a field's reader takes a JSON value: the kinds it wants, each other kind checked
/// (as a `Value` parse would check it) and dropped, giving `NONE`.
trait Take<'de>: Sized {
    const NONE: Self;

    fn text(_: &str) -> Self {
        Self::NONE
    }

    fn count(_: u64) -> Self {
        Self::NONE
    }

    fn null() -> Self {
        Self::NONE
    }

    fn list<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Self::NONE)
    }

    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Self::NONE)
    }
}

struct Visit<T>(std::marker::PhantomData<T>);

impl<'de, T: Take<'de>> Visitor<'de> for Visit<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok(T::NONE)
    }

    fn visit_i64<E>(self, _: i64) -> Result<T, E> {
        Ok(T::NONE)
    }

    fn visit_u64<E>(self, n: u64) -> Result<T, E> {
        Ok(T::count(n))
    }

    fn visit_f64<E>(self, _: f64) -> Result<T, E> {
        Ok(T::NONE)
    }

    fn visit_str<E>(self, s: &str) -> Result<T, E> {
        Ok(T::text(s))
    }

    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::null())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::list(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::object(map)
    }
}

macro_rules! deserialize_by_take {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(Visit::<Self>(std::marker::PhantomData))
            }
        }
    )*};
}

deserialize_by_take!(
    Checked, Text, Count, NotNull, Length, Reason, Finished, Choices, UsageValue, Top
);

/// Any JSON value, checked, and dropped.
struct Checked;

impl Take<'_> for Checked {
    const NONE: Self = Checked;
}

/// A map key, borrowed when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Not `Cow::deserialize`, which always allocates an owned string.
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A string (`Value::as_str`), or `None` for any other value.
struct Text(Option<String>);

impl Take<'_> for Text {
    const NONE: Self = Text(None);

    fn text(s: &str) -> Self {
        Text(Some(s.to_owned()))
    }
}

/// A whole non-negative number (`Value::as_u64`), or `None` for any other value.
struct Count(Option<u64>);

impl Take<'_> for Count {
    const NONE: Self = Count(None);

    fn count(n: u64) -> Self {
        Count(Some(n))
    }
}

/// Whether a value is anything but null.
struct NotNull(bool);

impl Take<'_> for NotNull {
    const NONE: Self = NotNull(true);

    fn null() -> Self {
        NotNull(false)
    }
}

/// A list's length, or `None` for any other value.
struct Length(Option<usize>);

impl<'de> Take<'de> for Length {
    const NONE: Self = Length(None);

    fn list<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut n = 0;
        while seq.next_element::<Checked>()?.is_some() {
            n += 1;
        }
        Ok(Length(Some(n)))
    }
}

/// A choice: whether it is an object whose `finish_reason` is `stop` or `tool_calls`.
struct Finished(bool);

impl<'de> Take<'de> for Finished {
    const NONE: Self = Finished(false);

    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut finished = false;
        while let Some(Key(key)) = map.next_key::<Key<'_>>()? {
            if key == "finish_reason" {
                finished = map.next_value::<Reason>()?.0;
            } else {
                map.next_value::<Checked>()?;
            }
        }
        Ok(Finished(finished))
    }
}

/// Whether a `finish_reason` says the model finished by itself.
struct Reason(bool);

impl Take<'_> for Reason {
    const NONE: Self = Reason(false);

    fn text(s: &str) -> Self {
        Reason(matches!(s, "stop" | "tool_calls"))
    }
}

/// The choices, or `None` when `choices` is not a list.
struct Choices(Option<Vec<bool>>);

impl<'de> Take<'de> for Choices {
    const NONE: Self = Choices(None);

    fn list<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut finished = Vec::new();
        while let Some(Finished(f)) = seq.next_element()? {
            finished.push(f);
        }
        Ok(Choices(Some(finished)))
    }
}

/// `usage`, or `None` when it is not an object.
struct UsageValue(Option<UsageFields>);

impl<'de> Take<'de> for UsageValue {
    const NONE: Self = UsageValue(None);

    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut usage = UsageFields::default();
        while let Some(Key(key)) = map.next_key::<Key<'_>>()? {
            let slot = match &*key {
                "prompt_tokens" => &mut usage.prompt_tokens,
                "completion_tokens" => &mut usage.completion_tokens,
                "input_tokens" => &mut usage.input_tokens,
                "output_tokens" => &mut usage.output_tokens,
                _ => {
                    map.next_value::<Checked>()?;
                    continue;
                }
            };
            *slot = map.next_value::<Count>()?.0;
        }
        Ok(UsageValue(Some(usage)))
    }
}

/// The answer itself: an object gives its fields (the last of a repeated key counts, as
/// in a `Value`'s map); anything else gives nothing.
struct Top(Outline);

impl<'de> Take<'de> for Top {
    const NONE: Self = Top(Outline {
        model: None,
        error: false,
        choices: None,
        data: None,
        usage: None,
    });

    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut outline = Outline::default();
        while let Some(Key(key)) = map.next_key::<Key<'_>>()? {
            match &*key {
                "model" => outline.model = map.next_value::<Text>()?.0,
                "error" => outline.error = map.next_value::<NotNull>()?.0,
                "choices" => outline.choices = map.next_value::<Choices>()?.0,
                "data" => outline.data = map.next_value::<Length>()?.0,
                "usage" => outline.usage = map.next_value::<UsageValue>()?.0,
                _ => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(Top(outline))
    }
}
