//! Koji faults: `{faultCode, faultString}` and the exception class behind each code
//! (koji/__init__.py `convertFault`).

use std::fmt;

use super::value::{Struct, Value};

/// An XML-RPC fault as the hub sends it (and as we send it in `host.failTask`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `faultCode`.
    pub code: i32,
    /// `faultString`.
    pub string: String,
}

impl Fault {
    /// A fault with this code and message.
    pub fn new(code: i32, string: impl Into<String>) -> Fault {
        Fault {
            code,
            string: string.into(),
        }
    }

    /// A fault of a known Koji class.
    pub fn of(kind: FaultKind, string: impl Into<String>) -> Fault {
        Fault::new(kind.code(), string)
    }

    /// The Koji class of this fault.
    pub fn kind(&self) -> FaultKind {
        FaultKind::from_code(self.code)
    }

    /// The fault as the struct XML-RPC carries (`faultCode`, `faultString`).
    pub fn to_value(&self) -> Value {
        let mut s = Struct::new();
        s.insert("faultCode".into(), Value::Int(self.code.into()));
        s.insert("faultString".into(), Value::String(self.string.clone()));
        Value::Struct(s)
    }

    /// A fault from a `{faultCode, faultString}` struct (as in multiCall results).
    pub fn from_value(v: &Value) -> Option<Fault> {
        let code = v.get("faultCode")?.as_i64()?;
        let string = match v.get("faultString")? {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some(Fault::new(i32::try_from(code).ok()?, string))
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.kind().name(), self.code, self.string)
    }
}

impl std::error::Error for Fault {}

macro_rules! fault_kinds {
    ($( $variant:ident = $code:literal, $name:literal, $parent:expr; )*) => {
        /// Koji's exception classes, by `faultCode`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum FaultKind {
            $( #[doc = concat!("`", $name, "` (", stringify!($code), ")")] $variant, )*
            /// Code 1: any non-Koji exception on the hub (or in a task).
            Unknown,
            /// A code Koji does not define.
            Other(i32),
        }

        impl FaultKind {
            /// The kind for a faultCode.
            pub fn from_code(code: i32) -> FaultKind {
                match code {
                    $( $code => FaultKind::$variant, )*
                    1 => FaultKind::Unknown,
                    c => FaultKind::Other(c),
                }
            }

            /// The faultCode.
            pub fn code(self) -> i32 {
                match self {
                    $( FaultKind::$variant => $code, )*
                    FaultKind::Unknown => 1,
                    FaultKind::Other(c) => c,
                }
            }

            /// Koji's class name.
            pub fn name(self) -> &'static str {
                match self {
                    $( FaultKind::$variant => $name, )*
                    FaultKind::Unknown => "Fault",
                    FaultKind::Other(_) => "Fault",
                }
            }

            /// The parent class (None for GenericError and unknown codes).
            pub fn parent(self) -> Option<FaultKind> {
                match self {
                    $( FaultKind::$variant => $parent, )*
                    FaultKind::Unknown | FaultKind::Other(_) => None,
                }
            }
        }
    };
}

fault_kinds! {
    Generic = 1000, "GenericError", None;
    Lock = 1001, "LockError", Some(FaultKind::Generic);
    Auth = 1002, "AuthError", Some(FaultKind::Generic);
    Tag = 1003, "TagError", Some(FaultKind::Generic);
    ActionNotAllowed = 1004, "ActionNotAllowed", Some(FaultKind::Generic);
    Build = 1005, "BuildError", Some(FaultKind::Generic);
    AuthLock = 1006, "AuthLockError", Some(FaultKind::Auth);
    AuthExpired = 1007, "AuthExpired", Some(FaultKind::Auth);
    Sequence = 1008, "SequenceError", Some(FaultKind::Auth);
    Retry = 1009, "RetryError", Some(FaultKind::Auth);
    PreBuild = 1010, "PreBuildError", Some(FaultKind::Build);
    PostBuild = 1011, "PostBuildError", Some(FaultKind::Build);
    Buildroot = 1012, "BuildrootError", Some(FaultKind::Build);
    FunctionDeprecated = 1013, "FunctionDeprecated", Some(FaultKind::Generic);
    ServerOffline = 1014, "ServerOffline", Some(FaultKind::Generic);
    LiveCD = 1015, "LiveCDError", Some(FaultKind::Generic);
    Plugin = 1016, "PluginError", Some(FaultKind::Generic);
    Callback = 1017, "CallbackError", Some(FaultKind::Plugin);
    Appliance = 1018, "ApplianceError", Some(FaultKind::Generic);
    Parameter = 1019, "ParameterError", Some(FaultKind::Generic);
    Import = 1020, "ImportError", Some(FaultKind::Generic);
    Configuration = 1021, "ConfigurationError", Some(FaultKind::Generic);
    LiveMedia = 1022, "LiveMediaError", Some(FaultKind::Generic);
    GssapiAuth = 1023, "GSSAPIAuthError", Some(FaultKind::Auth);
    NameValidation = 1024, "NameValidationError", Some(FaultKind::Generic);
}

impl FaultKind {
    /// `isinstance(e, other)` in Koji's hierarchy: this kind is `other` or a subclass.
    pub fn is_a(self, other: FaultKind) -> bool {
        let mut k = Some(self);
        while let Some(cur) = k {
            if cur == other {
                return true;
            }
            k = cur.parent();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_hierarchy() {
        for code in 1000..=1024 {
            let k = FaultKind::from_code(code);
            assert_eq!(k.code(), code);
            assert!(!matches!(k, FaultKind::Other(_)), "{code}");
            assert!(k.is_a(FaultKind::Generic) || k == FaultKind::Generic);
        }
        assert!(FaultKind::AuthExpired.is_a(FaultKind::Auth));
        assert!(FaultKind::Retry.is_a(FaultKind::Auth));
        assert!(FaultKind::Buildroot.is_a(FaultKind::Build));
        assert!(!FaultKind::Build.is_a(FaultKind::Auth));
        assert_eq!(FaultKind::from_code(1), FaultKind::Unknown);
        assert_eq!(FaultKind::from_code(77), FaultKind::Other(77));
        assert!(!FaultKind::Unknown.is_a(FaultKind::Generic));
    }

    #[test]
    fn value_round_trip() {
        let f = Fault::of(FaultKind::Build, "boom");
        assert_eq!(Fault::from_value(&f.to_value()), Some(f));
    }
}
