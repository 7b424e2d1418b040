//! `--credential` for commands that send to an Event Hub with an Azure identity.
//!
//! The kinds and their help live with the producer ([`CredentialKind`]); this newtype
//! only teaches clap to parse them, so the handler library carries no clap.

use clap::builder::PossibleValue;
use clap::ValueEnum;
use hub2lake::eventhub::CredentialKind;

/// A [`CredentialKind`] as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CredentialArg(pub CredentialKind);

impl ValueEnum for CredentialArg {
    fn value_variants<'a>() -> &'a [Self] {
        const ALL: [CredentialArg; 5] = [
            CredentialArg(CredentialKind::ALL[0]),
            CredentialArg(CredentialKind::ALL[1]),
            CredentialArg(CredentialKind::ALL[2]),
            CredentialArg(CredentialKind::ALL[3]),
            CredentialArg(CredentialKind::ALL[4]),
        ];
        &ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.name()).help(self.0.help()))
    }
}

impl std::fmt::Display for CredentialArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_by_its_name() {
        for kind in CredentialKind::ALL {
            assert_eq!(CredentialArg::from_str(kind.name(), false), Ok(CredentialArg(kind)));
        }
        assert_eq!(CredentialArg::value_variants().len(), CredentialKind::ALL.len());
    }
}
