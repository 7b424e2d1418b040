//! The Event Hubs destination flags (`--connection-string`, `--namespace`, `--eventhub`,
//! `--credential`, `--websockets`) as one struct a command flattens, and their
//! validation into a [`Destination`] before anything is read or sent.

use clap::Args;
use hub2lake::eventhub::{CredentialKind, Destination};

use super::credential_arg::CredentialArg;
use super::destination::{destination, DestinationError, DestinationFlags};
use crate::ops::OpsError;

/// Where to send events: a connection string, or a namespace with an Azure identity.
#[derive(Debug, Clone, Args)]
pub struct EventHubArgs {
    /// Event Hubs connection string (Endpoint, SharedAccessKeyName, SharedAccessKey[, EntityPath]).
    #[arg(
        long,
        value_name = "CS",
        env = "HUB2LAKE_REPLAY_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub connection_string: Option<String>,
    /// Event Hubs namespace (contoso or contoso.servicebus.windows.net), with an Azure identity.
    #[arg(long, value_name = "NS", conflicts_with = "connection_string")]
    pub namespace: Option<String>,
    /// Event Hub name (required unless the connection string has EntityPath).
    #[arg(long, value_name = "NAME")]
    pub eventhub: Option<String>,
    /// Identity for --namespace.
    #[arg(long, value_enum, default_value_t = CredentialArg(CredentialKind::Auto))]
    pub credential: CredentialArg,
    /// AMQP over WebSockets (port 443) instead of AMQP (port 5671).
    #[arg(long)]
    pub websockets: bool,
}

impl EventHubArgs {
    /// The destination these flags name. `wanted_by` is the flag that asked for an Event
    /// Hub (replay: `--to-eventhub`); usage errors name it.
    pub fn destination(&self, wanted_by: &str) -> Result<Destination, OpsError> {
        let flags = DestinationFlags {
            connection_string: self.connection_string.as_deref(),
            namespace: self.namespace.as_deref(),
            eventhub: self.eventhub.as_deref(),
            credential: self.credential.0,
            connection_string_env: "HUB2LAKE_REPLAY_CONNECTION_STRING",
            wanted_by,
        };
        destination(flags).map_err(|e| match e {
            DestinationError::Usage(m) => OpsError::Usage(m),
            DestinationError::Sink(e) => e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        hub: EventHubArgs,
    }

    /// The flags as given, without a connection string from the environment.
    fn parse(args: &[&str]) -> EventHubArgs {
        let mut hub = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .expect("flags parse")
            .hub;
        hub.connection_string = None;
        hub
    }

    #[test]
    fn no_destination_names_the_flag_that_wanted_one() {
        let hub = parse(&[]);
        let e = hub.destination("--to-eventhub").unwrap_err();
        assert!(matches!(e, OpsError::Usage(ref m) if m.starts_with("--to-eventhub needs --connection-string")));
    }

    #[test]
    fn namespace_without_eventhub_is_a_usage_error() {
        let hub = parse(&["--namespace", "contoso"]);
        let e = hub.destination("--to-eventhub").unwrap_err();
        assert!(matches!(e, OpsError::Usage(ref m) if m.contains("--namespace needs --eventhub")));
    }

    #[test]
    fn namespace_and_eventhub_name_an_identity_destination() {
        let hub = parse(&["--namespace", "contoso", "--eventhub", "refeed", "--credential", "auto"]);
        let d = hub.destination("--to-eventhub").unwrap();
        assert!(matches!(d, Destination::Identity { ref eventhub, .. } if eventhub == "refeed"));
    }
}
