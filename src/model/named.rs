//! The one way a model enum gets its names: [`named_enum!`] writes the
//! list of known values, `as_str`, `from_name`, `Display` and serde from
//! one table of variants and names.
//!
//! An *open* enum (`keep unknown names in Other(T);` after its variants)
//! has one more variant, `Other(T)`: a name this version does not know
//! (from a newer pipeline's state file, a newer server) is kept, shown as
//! it is and written back unchanged; `T` is built `From<&str>` and gives
//! the name back with `as_str()`. A *closed* enum refuses an unknown name
//! when it is read.

/// See the [module documentation](self).
macro_rules! named_enum {
    // An open enum: unknown names are kept in `Other`.
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)*, )+
        }
        keep unknown names in Other($other:ty);
    ) => {
        $(#[$meta])*
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A name this version does not know, kept as it was written.
            Other($other),
        }

        impl $name {
            /// Every value this version knows, in the order declared.
            pub const KNOWN: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The name, as in JSON and shown to people.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )+
                    $name::Other(other) => other.as_str(),
                }
            }

            /// The value named `name`; one this version does not know is
            /// kept as `Other`.
            pub fn from_name(name: &str) -> $name {
                match name {
                    $( $text $(| $alias)* => $name::$variant, )+
                    other => $name::Other(<$other>::from(other)),
                }
            }
        }

        $crate::model::named::named_enum!(@common $name);

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
                Ok($name::from_name(&name))
            }
        }
    };
    // A closed enum: an unknown name is an error.
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in the order declared.
            pub const KNOWN: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The name, as in JSON and in alert files.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// The value named `name`, if there is one.
            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        $crate::model::named::named_enum!(@common $name);

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
                $name::from_name(&name)
                    .ok_or_else(|| serde::de::Error::unknown_variant(&name, &[$($text),+]))
            }
        }
    };
    (@common $name:ident) => {
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

pub(crate) use named_enum;

#[cfg(test)]
// The macro writes `pub` enums, as the model's are.
#[allow(unreachable_pub)]
mod tests {
    named_enum! {
        /// An open test enum.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Open {
            /// One.
            One = "one" | "",
            /// Two words.
            TwoWords = "two-words",
        }
        keep unknown names in Other(String);
    }

    named_enum! {
        /// A closed test enum.
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub enum Closed {
            /// Low.
            Low = "low",
            /// High.
            High = "high",
        }
    }

    #[test]
    fn an_open_enum_keeps_unknown_names_and_writes_them_back() {
        assert_eq!(Open::KNOWN, [Open::One, Open::TwoWords]);
        for value in [Open::One, Open::TwoWords, Open::Other("three".into())] {
            let json = serde_json::to_string(&value).unwrap();
            assert_eq!(json, format!("\"{value}\""));
            assert_eq!(serde_json::from_str::<Open>(&json).unwrap(), value);
        }
        assert_eq!(
            Open::from_name(""),
            Open::One,
            "an alias reads as its variant"
        );
        assert_eq!(Open::One.as_str(), "one", "and is never written");
    }

    #[test]
    fn a_closed_enum_refuses_an_unknown_name_and_says_which_it_knows() {
        assert_eq!(Closed::from_name("high"), Some(Closed::High));
        assert_eq!(Closed::from_name("medium"), None);
        let err = serde_json::from_str::<Closed>("\"medium\"").unwrap_err();
        assert!(
            err.to_string().contains("expected `low` or `high`"),
            "{err}"
        );
        assert_eq!(
            serde_json::to_string(&Closed::KNOWN).unwrap(),
            r#"["low","high"]"#
        );
    }
}
