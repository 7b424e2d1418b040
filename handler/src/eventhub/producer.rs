//! The Event Hubs producer: connection strings, identities, and the sender built on
//! the `azure_messaging_eventhubs` crate (AMQP, or AMQP over WebSockets on port 443).
//!
//! Connection strings are parsed here first, so a malformed one gets a message naming
//! the part that is wrong — without ever echoing a key.

use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_messaging_eventhubs::models::{AmqpSimpleValue, AmqpTransport, EventData};
use azure_messaging_eventhubs::{EventDataBatchOptions, ProducerClient};
use serde_json::Value;

use super::error::{ConnectionStringError, SinkError};
use super::sink::{EventSink, OutEvent, Target};

/// Keys a connection string may carry (any case). Others are ignored, as the service's
/// own clients do.
const KNOWN_KEYS: [&str; 5] = [
    "Endpoint",
    "SharedAccessKeyName",
    "SharedAccessKey",
    "SharedAccessSignature",
    "EntityPath",
];

/// A parsed Event Hubs connection string. `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `sb://<namespace>.servicebus.windows.net/` as given.
    pub endpoint: String,
    /// `<namespace>.servicebus.windows.net` (with `:port` when the endpoint has one).
    pub namespace: String,
    pub key_name: Option<String>,
    key: Option<String>,
    signature: Option<String>,
    pub entity_path: Option<String>,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint)
            .field("namespace", &self.namespace)
            .field("key_name", &self.key_name)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("signature", &self.signature.as_ref().map(|_| "<redacted>"))
            .field("entity_path", &self.entity_path)
            .finish()
    }
}

impl ConnectionString {
    /// Parses `Endpoint=…;SharedAccessKeyName=…;SharedAccessKey=…[;EntityPath=…]`.
    pub fn parse(raw: &str) -> Result<Self, ConnectionStringError> {
        let mut values: [Option<String>; 5] = Default::default();
        let mut unknown: Vec<String> = Vec::new();
        let parts: Vec<&str> = raw.split(';').map(str::trim).collect();
        if parts.iter().all(|p| p.is_empty()) {
            return Err(ConnectionStringError::Empty);
        }
        for (i, part) in parts.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            let index = i + 1;
            let (key, value) = part
                .split_once('=')
                .ok_or(ConnectionStringError::NotKeyValue { index })?;
            let key = key.trim();
            if key.is_empty() {
                return Err(ConnectionStringError::EmptyKey { index });
            }
            let Some(k) = KNOWN_KEYS.iter().position(|known| known.eq_ignore_ascii_case(key)) else {
                unknown.push(key.chars().take(40).collect());
                continue;
            };
            let value = value.trim();
            if value.is_empty() {
                return Err(ConnectionStringError::EmptyValue { key: KNOWN_KEYS[k] });
            }
            if values[k].replace(value.to_string()).is_some() {
                return Err(ConnectionStringError::Duplicate { key: KNOWN_KEYS[k] });
            }
        }
        let hint = if unknown.is_empty() {
            String::new()
        } else {
            format!(" (ignored unknown parts: {}; check their spelling)", unknown.join(", "))
        };
        let [endpoint, key_name, key, signature, entity_path] = values;
        let endpoint = endpoint.ok_or(ConnectionStringError::MissingEndpoint { hint: hint.clone() })?;
        let namespace = endpoint_namespace(&endpoint)?;
        match (&key_name, &key, &signature) {
            (Some(_), Some(_), _) | (None, None, Some(_)) => {}
            (None, Some(_), _) => return Err(ConnectionStringError::MissingKeyName { hint }),
            (Some(_), None, _) => return Err(ConnectionStringError::MissingKey { hint }),
            (None, None, None) => return Err(ConnectionStringError::MissingCredentials { hint }),
        }
        if let Some(path) = &entity_path {
            if !valid_eventhub_name(path) {
                return Err(ConnectionStringError::BadEntityPath { value: path.clone() });
            }
        }
        Ok(Self {
            endpoint,
            namespace,
            key_name,
            key,
            signature,
            entity_path,
        })
    }

    /// The Event Hub to send to: `EntityPath`, or `explicit` (`--eventhub`); both must agree.
    pub fn eventhub(&self, explicit: Option<&str>) -> Result<String, SinkError> {
        match (explicit, self.entity_path.as_deref()) {
            (Some(e), Some(p)) if e != p => Err(SinkError::Config(format!(
                "--eventhub {e} differs from the connection string's EntityPath {p}"
            ))),
            (Some(e), _) | (None, Some(e)) => Ok(e.to_string()),
            (None, None) => Err(SinkError::Config(
                "the connection string has no EntityPath: name the Event Hub with --eventhub".into(),
            )),
        }
    }

    /// Whether the string carries a pre-made signature rather than a key.
    pub fn uses_signature(&self) -> bool {
        self.key.is_none() && self.signature.is_some()
    }
}

fn endpoint_namespace(endpoint: &str) -> Result<String, ConnectionStringError> {
    let bad = |problem: &str| ConnectionStringError::BadEndpoint {
        value: endpoint.to_string(),
        problem: problem.to_string(),
    };
    let url = url::Url::parse(endpoint).map_err(|e| bad(&format!("not a URL ({e})")))?;
    if url.scheme() != "sb" {
        return Err(bad(&format!("the scheme is {:?}, not sb", url.scheme())));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it holds a user name or password"));
    }
    if !matches!(url.path(), "" | "/") {
        return Err(bad("it has a path; put the Event Hub in EntityPath"));
    }
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// Event Hub names: 1-256 letters, digits, periods, hyphens and underscores.
pub fn valid_eventhub_name(name: &str) -> bool {
    (1..=256).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// `contoso` → `contoso.servicebus.windows.net`; a fully qualified name is kept.
pub fn qualify_namespace(raw: &str) -> Result<String, SinkError> {
    let ns = raw
        .trim()
        .trim_start_matches("sb://")
        .trim_start_matches("amqps://")
        .trim_end_matches('/');
    let valid = !ns.is_empty()
        && ns
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if !valid {
        return Err(SinkError::Config(format!(
            "--namespace {raw:?} is not an Event Hubs namespace (e.g. contoso or contoso.servicebus.windows.net)"
        )));
    }
    Ok(if ns.contains('.') {
        ns.to_string()
    } else {
        format!("{ns}.servicebus.windows.net")
    })
}

/// Which identity `--namespace` mode authenticates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CredentialKind {
    /// Workload identity when AZURE_FEDERATED_TOKEN_FILE is set, a service principal
    /// when AZURE_CLIENT_SECRET is, managed identity inside Azure (IDENTITY_ENDPOINT or
    /// MSI_ENDPOINT), else the Azure CLI / Azure Developer CLI login.
    #[default]
    Auto,
    /// Managed identity (AZURE_CLIENT_ID selects a user-assigned one).
    ManagedIdentity,
    /// Workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE).
    WorkloadIdentity,
    /// Service principal (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET).
    ClientSecret,
    /// `az login` or `azd auth login`.
    Developer,
}

impl CredentialKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [Self; 5] = [
        Self::Auto,
        Self::ManagedIdentity,
        Self::WorkloadIdentity,
        Self::ClientSecret,
        Self::Developer,
    ];

    /// The name operators write (`--credential managed-identity`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::ManagedIdentity => "managed-identity",
            Self::WorkloadIdentity => "workload-identity",
            Self::ClientSecret => "client-secret",
            Self::Developer => "developer",
        }
    }

    /// One line on what the kind uses, for `--help`.
    pub fn help(self) -> &'static str {
        match self {
            Self::Auto => {
                "Workload identity when AZURE_FEDERATED_TOKEN_FILE is set, a service principal when \
                 AZURE_CLIENT_SECRET is, managed identity inside Azure (IDENTITY_ENDPOINT or MSI_ENDPOINT), \
                 else the Azure CLI / Azure Developer CLI login"
            }
            Self::ManagedIdentity => "Managed identity (AZURE_CLIENT_ID selects a user-assigned one)",
            Self::WorkloadIdentity => {
                "Workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE)"
            }
            Self::ClientSecret => "Service principal (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET)",
            Self::Developer => "`az login` or `azd auth login`",
        }
    }

    /// What `Auto` becomes in this environment.
    pub fn resolve(self, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
        match self {
            Self::Auto if set("AZURE_FEDERATED_TOKEN_FILE") => Self::WorkloadIdentity,
            Self::Auto if set("AZURE_CLIENT_SECRET") => Self::ClientSecret,
            Self::Auto if set("IDENTITY_ENDPOINT") || set("MSI_ENDPOINT") => Self::ManagedIdentity,
            Self::Auto => Self::Developer,
            other => other,
        }
    }
}

/// Builds the credential for `kind` from the environment.
pub fn credential(
    kind: CredentialKind,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn TokenCredential>, SinkError> {
    let config = |what: &str, e: azure_core::Error| SinkError::Config(format!("{what}: {e}"));
    let required = |k: &str| {
        env(k)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| SinkError::Config(format!("{k} is not set (needed by --credential {kind:?})")))
    };
    let credential: Arc<dyn TokenCredential> = match kind.resolve(env) {
        CredentialKind::WorkloadIdentity => {
            azure_identity::WorkloadIdentityCredential::new(None).map_err(|e| config("workload identity", e))?
        }
        CredentialKind::ClientSecret => azure_identity::ClientSecretCredential::new(
            &required("AZURE_TENANT_ID")?,
            required("AZURE_CLIENT_ID")?,
            Secret::new(required("AZURE_CLIENT_SECRET")?),
            None,
        )
        .map_err(|e| config("service principal", e))?,
        CredentialKind::ManagedIdentity => {
            let options = azure_identity::ManagedIdentityCredentialOptions {
                user_assigned_id: env("AZURE_CLIENT_ID")
                    .filter(|v| !v.trim().is_empty())
                    .map(azure_identity::UserAssignedId::ClientId),
                ..Default::default()
            };
            azure_identity::ManagedIdentityCredential::new(Some(options)).map_err(|e| config("managed identity", e))?
        }
        CredentialKind::Developer | CredentialKind::Auto => {
            azure_identity::DeveloperToolsCredential::new(None).map_err(|e| config("Azure CLI login", e))?
        }
    };
    Ok(credential)
}

/// Where `replay --to-eventhub` sends.
#[derive(Debug, Clone)]
pub enum Destination {
    ConnectionString {
        parsed: ConnectionString,
        raw: Secret,
        eventhub: String,
    },
    Identity {
        namespace: String,
        eventhub: String,
        credential: CredentialKind,
    },
}

/// Two destinations are equal when they send to the same hub the same way (the raw
/// connection string compared as a secret, never printed).
impl PartialEq for Destination {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::ConnectionString { parsed, raw, eventhub },
                Self::ConnectionString {
                    parsed: p2,
                    raw: r2,
                    eventhub: e2,
                },
            ) => parsed == p2 && raw.secret() == r2.secret() && eventhub == e2,
            (
                Self::Identity {
                    namespace,
                    eventhub,
                    credential,
                },
                Self::Identity {
                    namespace: n2,
                    eventhub: e2,
                    credential: c2,
                },
            ) => namespace == n2 && eventhub == e2 && credential == c2,
            _ => false,
        }
    }
}

impl Eq for Destination {}

impl Destination {
    /// `namespace/eventhub`, for logs and the position file.
    pub fn describe(&self) -> String {
        match self {
            Self::ConnectionString { parsed, eventhub, .. } => format!("eventhub://{}/{eventhub}", parsed.namespace),
            Self::Identity {
                namespace, eventhub, ..
            } => format!("eventhub://{namespace}/{eventhub}"),
        }
    }
}

/// Sends batches to an Event Hub.
pub struct EventHubSink {
    producer: ProducerClient,
    /// The batch size asked for; lowered once to the link's own limit when the service
    /// allows less (256 KB on the Basic tier).
    max_batch_bytes: std::sync::atomic::AtomicU64,
    description: String,
}

impl EventHubSink {
    /// Connects (AMQP on 5671, or AMQP over WebSockets on 443 with `websockets`);
    /// `application` (`replay`, `bridge`, `logs`) names the client to the service.
    pub async fn connect(
        destination: &Destination,
        websockets: bool,
        max_batch_bytes: u64,
        application: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SinkError> {
        let transport = if websockets {
            AmqpTransport::WebSocket
        } else {
            AmqpTransport::Tcp
        };
        let builder = ProducerClient::builder()
            .with_application_id(format!("hub2lake-{application}/{}", env!("CARGO_PKG_VERSION")))
            .with_transport(transport);
        let description = destination.describe();
        let connect_err = |e: azure_messaging_eventhubs::EventHubsError| SinkError::Connect {
            destination: description.clone(),
            message: e.to_string(),
        };
        let producer = match destination {
            Destination::ConnectionString { raw, eventhub, .. } => builder
                .open_with_connection_string(raw.secret(), Some(eventhub.as_str()))
                .await
                .map_err(connect_err)?,
            Destination::Identity {
                namespace,
                eventhub,
                credential: kind,
            } => builder
                .open(namespace, eventhub, credential(*kind, env)?)
                .await
                .map_err(connect_err)?,
        };
        Ok(Self {
            producer,
            max_batch_bytes: max_batch_bytes.into(),
            description,
        })
    }

    /// Closes the connection.
    pub async fn close(self) -> Result<(), SinkError> {
        let description = self.description.clone();
        self.producer.close().await.map_err(|e| SinkError::Send {
            target: description,
            message: format!("closing: {e}"),
        })
    }

    fn max_batch_bytes(&self) -> u64 {
        self.max_batch_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn batch_options(&self, target: &Target) -> EventDataBatchOptions {
        let (partition_key, partition_id) = match target {
            Target::Key(k) => (Some(k.clone()), None),
            Target::Partition(p) => (None, Some(p.clone())),
            Target::Any => (None, None),
        };
        EventDataBatchOptions {
            max_size_in_bytes: Some(self.max_batch_bytes()),
            partition_key,
            partition_id,
        }
    }

    /// An empty batch for `target`. When the link allows less than was asked for (the
    /// Basic tier's 256 KB), the link's limit is used from then on: asking again would
    /// fail the same way forever.
    async fn create_batch(
        &self,
        target: &Target,
    ) -> Result<azure_messaging_eventhubs::EventDataBatch<'_>, azure_messaging_eventhubs::EventHubsError> {
        match self.producer.create_batch(Some(self.batch_options(target))).await {
            Err(e) => match e.kind {
                azure_messaging_eventhubs::error::ErrorKind::InvalidBatchSize { requested, max_allowed }
                    if max_allowed > 0 && max_allowed < requested =>
                {
                    tracing::warn!(
                        requested,
                        max_allowed,
                        destination = %self.description,
                        "the Event Hub allows smaller batches than asked for; using its limit"
                    );
                    self.max_batch_bytes
                        .store(max_allowed, std::sync::atomic::Ordering::Relaxed);
                    self.producer.create_batch(Some(self.batch_options(target))).await
                }
                _ => Err(e),
            },
            batch => batch,
        }
    }

    async fn send_events(&self, target: &Target, events: &[OutEvent]) -> Result<(), SinkError> {
        let fail = |e: azure_messaging_eventhubs::EventHubsError| SinkError::Send {
            target: target.to_string(),
            message: e.to_string(),
        };
        let mut batch = self.create_batch(target).await.map_err(fail)?;
        let mut in_batch = 0usize;
        for event in events {
            if batch.try_add_event_data(to_event_data(event), None).map_err(fail)? {
                in_batch += 1;
                continue;
            }
            if in_batch == 0 {
                return Err(SinkError::TooLarge {
                    partition: event.source_partition.clone(),
                    sequence_number: event.source_sequence_number,
                    bytes: event.body.len() as u64,
                    limit: self.max_batch_bytes(),
                });
            }
            // Our size estimate was low: send what fits, in order, and go on.
            self.producer.send_batch(batch, None).await.map_err(fail)?;
            batch = self.create_batch(target).await.map_err(fail)?;
            if !batch.try_add_event_data(to_event_data(event), None).map_err(fail)? {
                return Err(SinkError::TooLarge {
                    partition: event.source_partition.clone(),
                    sequence_number: event.source_sequence_number,
                    bytes: event.body.len() as u64,
                    limit: self.max_batch_bytes(),
                });
            }
            in_batch = 1;
        }
        if in_batch > 0 {
            self.producer.send_batch(batch, None).await.map_err(fail)?;
        }
        Ok(())
    }
}

/// Batches to different targets sent at once by [`EventHubSink::send_batches`]: enough to
/// hide the round trip when every event has its own partition key.
const CONCURRENT_BATCHES: usize = 16;

impl EventSink for EventHubSink {
    async fn send_batch(&self, target: &Target, events: &[OutEvent]) -> Result<(), SinkError> {
        self.send_events(target, events).await
    }

    async fn send_batches(&self, batches: &[(Target, Vec<OutEvent>)]) -> Vec<Result<(), SinkError>> {
        use futures::StreamExt as _;
        futures::stream::iter(batches)
            .map(|(target, events)| self.send_events(target, events))
            .buffered(CONCURRENT_BATCHES)
            .collect()
            .await
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// The AMQP message of a recorded event: its body and application properties.
fn to_event_data(event: &OutEvent) -> EventData {
    let mut builder = EventData::builder().with_body(event.body.clone());
    for (key, value) in &event.properties {
        if let Some(v) = amqp_value(value) {
            builder = builder.add_property(key.clone(), v);
        }
    }
    builder.build()
}

/// JSON property values as AMQP simple values; nested values travel as JSON text.
fn amqp_value(v: &Value) -> Option<AmqpSimpleValue> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => AmqpSimpleValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => AmqpSimpleValue::Long(i),
            (None, Some(u), _) => AmqpSimpleValue::ULong(u),
            (_, _, Some(f)) => AmqpSimpleValue::Double(f),
            _ => AmqpSimpleValue::String(n.to_string()),
        },
        Value::String(s) => AmqpSimpleValue::String(s.clone()),
        Value::Array(_) | Value::Object(_) => AmqpSimpleValue::String(v.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=send;\
                        SharedAccessKey=c2VjcmV0a2V5PQ==;EntityPath=mongo-changes";

    #[test]
    fn a_portal_connection_string_parses() {
        let cs = ConnectionString::parse(GOOD).unwrap();
        assert_eq!(cs.namespace, "contoso.servicebus.windows.net");
        assert_eq!(cs.key_name.as_deref(), Some("send"));
        assert_eq!(cs.key.as_deref(), Some("c2VjcmV0a2V5PQ=="));
        assert_eq!(cs.entity_path.as_deref(), Some("mongo-changes"));
        assert_eq!(cs.eventhub(None).unwrap(), "mongo-changes");
        assert_eq!(cs.eventhub(Some("mongo-changes")).unwrap(), "mongo-changes");
        assert!(cs.eventhub(Some("other")).is_err());
        let debug = format!("{cs:?}");
        assert!(!debug.contains("c2VjcmV0"), "{debug}");
    }

    #[test]
    fn keys_are_case_insensitive_and_spacing_and_trailing_separators_are_fine() {
        let cs = ConnectionString::parse(
            " endpoint = sb://ns.servicebus.windows.net ; sharedaccesskeyname=a ;SHAREDACCESSKEY=b=;;",
        )
        .unwrap();
        assert_eq!(cs.namespace, "ns.servicebus.windows.net");
        assert_eq!(cs.key.as_deref(), Some("b="));
        assert!(cs.entity_path.is_none());
        assert!(cs.eventhub(None).unwrap_err().to_string().contains("--eventhub"));
        let cs = ConnectionString::parse(
            "Endpoint=sb://localhost:5672;SharedAccessSignature=SharedAccessSignature sr=x&sig=y",
        )
        .unwrap();
        assert_eq!(cs.namespace, "localhost:5672");
        assert!(cs.uses_signature());
    }

    fn refused(raw: &str, check: impl Fn(&ConnectionStringError) -> bool) {
        let e = ConnectionString::parse(raw).unwrap_err();
        assert!(check(&e), "{raw:?} gave {e:?}");
        assert!(!e.to_string().is_empty());
    }

    #[test]
    fn each_malformed_part_is_named() {
        use ConnectionStringError as E;
        refused("", |e| matches!(e, E::Empty));
        refused(" ; ;", |e| matches!(e, E::Empty));
        refused("Endpoint=sb://a.b/;garbage", |e| {
            matches!(e, E::NotKeyValue { index: 2 })
        });
        refused("=x;Endpoint=sb://a.b/", |e| matches!(e, E::EmptyKey { index: 1 }));
        refused("Endpoint=;SharedAccessKeyName=a;SharedAccessKey=b", |e| {
            matches!(e, E::EmptyValue { key: "Endpoint" })
        });
        refused("SharedAccessKeyName=a;SharedAccessKey=b", |e| {
            matches!(e, E::MissingEndpoint { .. })
        });
        refused("Endpoint=https://a.b/;SharedAccessKeyName=a;SharedAccessKey=b", |e| {
            matches!(e, E::BadEndpoint { .. })
        });
        refused("Endpoint=not a url;SharedAccessKeyName=a;SharedAccessKey=b", |e| {
            matches!(e, E::BadEndpoint { .. })
        });
        refused("Endpoint=sb://a.b/hub;SharedAccessKeyName=a;SharedAccessKey=b", |e| {
            matches!(e, E::BadEndpoint { .. })
        });
        refused("Endpoint=sb://a.b/;SharedAccessKey=b", |e| {
            matches!(e, E::MissingKeyName { .. })
        });
        refused("Endpoint=sb://a.b/;SharedAccessKeyName=a", |e| {
            matches!(e, E::MissingKey { .. })
        });
        refused("Endpoint=sb://a.b/", |e| matches!(e, E::MissingCredentials { .. }));
        refused(
            "Endpoint=sb://a.b/;Endpoint=sb://c.d/;SharedAccessKeyName=a;SharedAccessKey=b",
            |e| matches!(e, E::Duplicate { key: "Endpoint" }),
        );
        refused(
            "Endpoint=sb://a.b/;SharedAccessKeyName=a;SharedAccessKey=b;EntityPath=a/b",
            |e| matches!(e, E::BadEntityPath { .. }),
        );
        let e = ConnectionString::parse("Endpoint=sb://a.b/;SharedAccessKeyName=a;SharedAccesKey=secret").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("SharedAccesKey") && text.contains("spelling"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn namespaces_are_qualified() {
        assert_eq!(qualify_namespace("contoso").unwrap(), "contoso.servicebus.windows.net");
        assert_eq!(
            qualify_namespace("sb://contoso.servicebus.windows.net/").unwrap(),
            "contoso.servicebus.windows.net"
        );
        assert!(qualify_namespace("").is_err());
        assert!(qualify_namespace("a b").is_err());
    }

    #[test]
    fn auto_credentials_follow_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let resolve = |pairs: &'static [(&'static str, &'static str)]| CredentialKind::Auto.resolve(&env(pairs));
        assert_eq!(resolve(&[]), CredentialKind::Developer);
        assert_eq!(
            resolve(&[("IDENTITY_ENDPOINT", "http://x")]),
            CredentialKind::ManagedIdentity
        );
        assert_eq!(resolve(&[("AZURE_CLIENT_SECRET", "s")]), CredentialKind::ClientSecret);
        assert_eq!(
            resolve(&[("AZURE_FEDERATED_TOKEN_FILE", "/t"), ("AZURE_CLIENT_SECRET", "s")]),
            CredentialKind::WorkloadIdentity
        );
        assert_eq!(
            CredentialKind::ManagedIdentity.resolve(&env(&[])),
            CredentialKind::ManagedIdentity
        );
        let e = credential(CredentialKind::ClientSecret, &env(&[])).err().unwrap();
        assert!(e.to_string().contains("AZURE_TENANT_ID"), "{e}");
    }

    #[test]
    fn property_values_map_to_amqp() {
        assert_eq!(amqp_value(&serde_json::json!(5)), Some(AmqpSimpleValue::Long(5)));
        assert_eq!(
            amqp_value(&serde_json::json!(u64::MAX)),
            Some(AmqpSimpleValue::ULong(u64::MAX))
        );
        assert_eq!(amqp_value(&serde_json::json!(1.5)), Some(AmqpSimpleValue::Double(1.5)));
        assert_eq!(
            amqp_value(&serde_json::json!("x")),
            Some(AmqpSimpleValue::String("x".into()))
        );
        assert_eq!(
            amqp_value(&serde_json::json!(true)),
            Some(AmqpSimpleValue::Boolean(true))
        );
        assert_eq!(amqp_value(&serde_json::json!(null)), None);
        assert_eq!(
            amqp_value(&serde_json::json!({"a": [1]})),
            Some(AmqpSimpleValue::String("{\"a\":[1]}".into()))
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(raw in ".{0,200}") {
            let _ = ConnectionString::parse(&raw);
        }

        #[test]
        fn parsing_structured_garbage_never_panics(
            parts in proptest::collection::vec(
                (prop_oneof![Just("Endpoint"), Just("SharedAccessKeyName"), Just("SharedAccessKey"),
                             Just("EntityPath"), Just("SharedAccessSignature"), Just("x"), Just("")],
                 prop_oneof![Just("="), Just(""), Just("=="), Just(" = ")],
                 ".{0,30}"),
                0..8)
        ) {
            let raw: String = parts.iter().map(|(k, eq, v)| format!("{k}{eq}{v}")).collect::<Vec<_>>().join(";");
            if let Err(e) = ConnectionString::parse(&raw) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn well_formed_strings_round_trip(
            ns in "[a-z][a-z0-9-]{2,20}",
            policy in "[A-Za-z0-9_-]{1,20}",
            key in "[A-Za-z0-9+/]{10,44}={0,2}",
            hub in proptest::option::of("[a-z0-9][a-z0-9._-]{0,30}"),
        ) {
            let mut raw = format!("Endpoint=sb://{ns}.servicebus.windows.net/;SharedAccessKeyName={policy};SharedAccessKey={key}");
            if let Some(h) = &hub {
                raw.push_str(&format!(";EntityPath={h}"));
            }
            let cs = ConnectionString::parse(&raw).unwrap();
            prop_assert_eq!(cs.namespace, format!("{ns}.servicebus.windows.net"));
            prop_assert_eq!(cs.key_name.as_deref(), Some(policy.as_str()));
            prop_assert_eq!(cs.key.as_deref(), Some(key.as_str()));
            prop_assert_eq!(cs.entity_path, hub);
        }
    }
}
