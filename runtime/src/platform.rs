//! Platforms: which manifest of an image index to use for a build architecture.
//!
//! Build systems name architectures the RPM way (`x86_64`, `aarch64`, `i686`...); OCI
//! indexes name them the Go way (`amd64`, `arm64`, `386`...). `noarch` means "whatever
//! this host runs".

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown architecture {0:?} (known: x86_64, aarch64, ppc64le, s390x, i686, noarch, or an OCI name such as amd64)")]
pub struct UnknownArch(pub String);

impl Platform {
    /// The platform of the running host.
    pub fn host() -> Platform {
        Platform::for_arch(std::env::consts::ARCH).unwrap_or(Platform {
            os: "linux".into(),
            architecture: std::env::consts::ARCH.into(),
            variant: None,
        })
    }

    /// The platform for an RPM/Koji architecture name (or an OCI architecture name).
    pub fn for_arch(arch: &str) -> Result<Platform, UnknownArch> {
        let (architecture, variant) = match arch {
            "noarch" => return Ok(Platform::host()),
            "x86_64" | "amd64" => ("amd64", None),
            "aarch64" | "arm64" => ("arm64", Some("v8")),
            "ppc64le" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "i386" | "i486" | "i586" | "i686" | "386" => ("386", None),
            "armv7hl" | "armhfp" | "armv7l" | "arm" => ("arm", Some("v7")),
            "riscv64" => ("riscv64", None),
            other => return Err(UnknownArch(other.to_owned())),
        };
        Ok(Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        })
    }

    /// Whether an index entry's platform serves this platform. A missing variant on
    /// either side matches (arm64 images rarely say `v8`).
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        os == self.os
            && architecture == self.architecture
            && match (self.variant.as_deref(), variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn koji_arches_map_to_oci() {
        let p = |a| Platform::for_arch(a).unwrap().to_string();
        assert_eq!(p("x86_64"), "linux/amd64");
        assert_eq!(p("aarch64"), "linux/arm64/v8");
        assert_eq!(p("ppc64le"), "linux/ppc64le");
        assert_eq!(p("s390x"), "linux/s390x");
        assert_eq!(p("i686"), "linux/386");
        assert_eq!(Platform::for_arch("noarch").unwrap(), Platform::host());
        assert!(Platform::for_arch("sparc").is_err());
    }

    #[test]
    fn variant_matching() {
        let arm = Platform::for_arch("aarch64").unwrap();
        assert!(arm.matches("linux", "arm64", None));
        assert!(arm.matches("linux", "arm64", Some("v8")));
        assert!(!arm.matches("linux", "arm64", Some("v9")));
        assert!(!arm.matches("windows", "arm64", None));
        let x = Platform::for_arch("x86_64").unwrap();
        assert!(x.matches("linux", "amd64", Some("v3")));
        assert!(!x.matches("linux", "arm64", None));
    }
}
