// The function app: hosting plan, the site (Flex Consumption or Elastic Premium),
// and the app settings the Functions host and the hub2lake handler read.
//
// Plan choice (planSku, default FC1 = Flex Consumption)
// -----------------------------------------------------
// * Flex Consumption accepts custom handlers: the platform's function-app stack
//   data lists the "custom" stack for SKU FC1 with
//   functionAppConfig.runtime = { name: 'custom', version: '1.0' } (Az.Functions
//   FunctionsStackFlexData/*/custom.json, from the stacks API), and the VS Code
//   Functions extension added "custom" to its Flex runtime list after creating and
//   running such an app (microsoft/vscode-azurefunctions#4596, July 2025). The same
//   mechanism hosts the "self-hosted MCP server" custom handlers on Flex.
// * Why FC1 is the default: it scales to zero and bills per execution, its code
//   package lives in a blob container read with the managed identity (no Azure
//   Files, so the host storage account can keep shared keys disabled), and Linux
//   Consumption (Y1), its predecessor, is being retired (30 September 2028) and is
//   not offered here. The Event Hubs trigger scales per partition on Flex.
// * Elastic Premium (EP1-EP3) is the fallback for regions without Flex or for
//   always-warm instances: FUNCTIONS_WORKER_RUNTIME=custom, linuxFxVersion '' (the
//   custom stack's Linux settings). Without Azure Files (it needs shared keys), the
//   app runs from a package URL in the deployment container, fetched with the
//   identity (WEBSITE_RUN_FROM_PACKAGE + WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID);
//   deploying means uploading that blob and restarting (docs/deploy.md).
// * On Flex the runtime is declared in functionAppConfig.runtime and the
//   FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION app settings are not
//   accepted, so they are set only on the Elastic Premium path.
//
// The site itself lives in function-site-flex.bicep / function-site-premium.bicep
// (exactly one is deployed) because functionAppConfig is only valid on Flex.

param appName string
param planName string
param location string
param tags object = {}

@description('azd service name (tag azd-service-name); must match azure.yaml.')
param serviceName string = 'hub2lake'

@allowed([
  'FC1'
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'FC1'

@minValue(40)
@maxValue(1000)
param flexMaximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
param flexInstanceMemoryMB int = 2048

@minValue(1)
@maxValue(100)
param premiumMaximumElasticWorkerCount int = 4

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

param hostBlobEndpoint string
param hostQueueEndpoint string
param hostTableEndpoint string

@description('URL of the deployment package container, e.g. https://<acct>.blob.core.windows.net/app-package.')
param deploymentContainerUrl string

@description('Blob name of the package the Elastic Premium app runs from.')
param premiumPackageBlobName string = 'hub2lake-app.zip'

param applicationInsightsConnectionString string
param eventHubNamespaceFqdn string
param eventHubName string
param eventHubConsumerGroup string

@description('Event Hub the handler streams its JSON logs to (same namespace as the trigger); empty = no log stream.')
param logEventHubName string = ''

@description('abfss://<container>@<account>.dfs.core.windows.net')
param lakeUrl string

param sealSchedule string = '0 */5 * * * *'

@allowed([
  'gzip'
  'zstd'
  'none'
])
param compression string = 'gzip'

var isFlex = planSku == 'FC1'

// Settings for every plan. Connection settings are identity-based: the
// <connection>__credential = managedidentity and __clientId pair selects the
// user-assigned identity; no secret appears anywhere.
var commonAppSettings = {
  // Host storage (checkpoints, leases, timer locks, keys) through the identity.
  AzureWebJobsStorage__blobServiceUri: hostBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: hostQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: hostTableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId

  // Event Hubs trigger: functions/ingest/function.json says connection: EventHubConnection.
  EventHubConnection__fullyQualifiedNamespace: eventHubNamespaceFqdn
  EventHubConnection__credential: 'managedidentity'
  EventHubConnection__clientId: identityClientId
  EVENTHUB_NAME: eventHubName
  EVENTHUB_CONSUMER_GROUP: eventHubConsumerGroup

  // Application Insights with Entra ingestion (local auth is disabled on the component).
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'

  // The handler: object_store uses AZURE_CLIENT_ID to pick the user-assigned identity.
  AZURE_CLIENT_ID: identityClientId
  HUB2LAKE_LAKE_URL: lakeUrl
  HUB2LAKE_SEAL_SCHEDULE: sealSchedule
  HUB2LAKE_COMPRESSION: compression
  HUB2LAKE_LOG_FORMAT: 'json'
}

// The log stream (issue 17): namespace + the app identity (AZURE_CLIENT_ID), which has
// Azure Event Hubs Data Sender on that hub (event-hubs.bicep). Set
// HUB2LAKE_LOG_EVENTHUB_ENABLED=false on the app to roll it back without a deployment.
var logStreamAppSettings = empty(logEventHubName)
  ? {}
  : {
      HUB2LAKE_LOG_EVENTHUB_NAMESPACE: eventHubNamespaceFqdn
      HUB2LAKE_LOG_EVENTHUB_NAME: logEventHubName
    }

// Flex Consumption: the runtime is functionAppConfig.runtime (function-site-flex.bicep).
var flexOnlyAppSettings = {}

// Elastic Premium: classic runtime settings and run-from-package with the identity.
var premiumOnlyAppSettings = {
  FUNCTIONS_WORKER_RUNTIME: 'custom'
  FUNCTIONS_EXTENSION_VERSION: '~4'
  WEBSITE_RUN_FROM_PACKAGE: '${deploymentContainerUrl}/${premiumPackageBlobName}'
  WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: identityId
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex
    ? {
        name: 'FC1'
        tier: 'FlexConsumption'
      }
    : {
        name: planSku
        tier: 'ElasticPremium'
      }
  properties: isFlex
    ? {
        reserved: true
      }
    : {
        reserved: true
        maximumElasticWorkerCount: premiumMaximumElasticWorkerCount
      }
}

module flexSite 'function-site-flex.bicep' = if (isFlex) {
  name: 'function-site-flex'
  params: {
    name: appName
    location: location
    tags: union(tags, { 'azd-service-name': serviceName })
    planId: plan.id
    identityId: identityId
    deploymentContainerUrl: deploymentContainerUrl
    maximumInstanceCount: flexMaximumInstanceCount
    instanceMemoryMB: flexInstanceMemoryMB
  }
}

module premiumSite 'function-site-premium.bicep' = if (!isFlex) {
  name: 'function-site-premium'
  params: {
    name: appName
    location: location
    tags: union(tags, { 'azd-service-name': serviceName })
    planId: plan.id
    identityId: identityId
    maximumElasticWorkerCount: premiumMaximumElasticWorkerCount
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: appName
}

// The complete app settings collection (this replaces whatever was there).
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(commonAppSettings, logStreamAppSettings, isFlex ? flexOnlyAppSettings : premiumOnlyAppSettings)
  dependsOn: [
    flexSite
    premiumSite
  ]
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
