//! The Event Hubs destination of `--to-eventhub`, shared by `replay` and `bridge`:
//! `--connection-string`, or `--namespace` + `--eventhub` with an Azure identity.

use azure_core::credentials::Secret;
use hub2lake::eventhub::{self, ConnectionString, CredentialKind, Destination, SinkError};

/// The destination flags as given.
#[derive(Debug, Clone, Copy)]
pub struct DestinationFlags<'a> {
    pub connection_string: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub eventhub: Option<&'a str>,
    pub credential: CredentialKind,
    /// The environment variable that can hold the connection string (for messages).
    pub connection_string_env: &'a str,
    /// The flag that asked for an Event Hub (`--to-eventhub`), for messages.
    pub wanted_by: &'a str,
}

/// Why the flags name no usable destination.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// A missing or malformed flag.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Validates the flags into a [`Destination`] before anything is read or sent.
pub fn destination(flags: DestinationFlags<'_>) -> Result<Destination, DestinationError> {
    if let Some(raw) = flags.connection_string {
        let parsed = ConnectionString::parse(raw).map_err(SinkError::from)?;
        let eventhub = parsed.eventhub(flags.eventhub)?;
        return Ok(Destination::ConnectionString {
            parsed,
            raw: Secret::new(raw.to_string()),
            eventhub,
        });
    }
    let Some(ns) = flags.namespace else {
        return Err(DestinationError::Usage(format!(
            "{} needs --connection-string (or {}), or --namespace and --eventhub with an Azure identity",
            flags.wanted_by, flags.connection_string_env
        )));
    };
    let eventhub = flags
        .eventhub
        .ok_or_else(|| DestinationError::Usage("--namespace needs --eventhub (the Event Hub to send to)".into()))?;
    if !eventhub::valid_eventhub_name(eventhub) {
        return Err(DestinationError::Usage(format!(
            "--eventhub {eventhub:?} is not an Event Hub name"
        )));
    }
    Ok(Destination::Identity {
        namespace: eventhub::qualify_namespace(ns)?,
        eventhub: eventhub.to_string(),
        credential: flags.credential,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags<'a>(cs: Option<&'a str>, ns: Option<&'a str>, hub: Option<&'a str>) -> DestinationFlags<'a> {
        DestinationFlags {
            connection_string: cs,
            namespace: ns,
            eventhub: hub,
            credential: CredentialKind::Auto,
            connection_string_env: "HUB2LAKE_X_CONNECTION_STRING",
            wanted_by: "--to-eventhub",
        }
    }

    #[test]
    fn each_way_of_naming_a_hub_is_checked() {
        let cs = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b;EntityPath=h";
        let d = destination(flags(Some(cs), None, None)).unwrap();
        assert_eq!(d.describe(), "eventhub://ns.servicebus.windows.net/h");
        let d = destination(flags(None, Some("contoso"), Some("changes"))).unwrap();
        assert_eq!(d.describe(), "eventhub://contoso.servicebus.windows.net/changes");
        let e = destination(flags(None, None, None)).unwrap_err();
        assert!(e.to_string().contains("HUB2LAKE_X_CONNECTION_STRING"), "{e}");
        assert!(destination(flags(None, Some("contoso"), None)).is_err());
        assert!(destination(flags(None, Some("contoso"), Some("a/b"))).is_err());
    }
}
