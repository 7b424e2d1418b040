// hub2lake: everything one deployment needs, with managed identity and no keys.
//
// Scope: subscription. The template creates (or adopts) one resource group per
// environment, which is what `azd up` / `azd down --purge` expect: tearing down an
// environment is deleting its resource group. Reused resources (an existing lake
// account, an existing Event Hubs namespace) may live in other resource groups; the
// template only adds a container / consumer group and role assignments there and
// never deletes them.
//
// What it provisions (modules/):
//   identity.bicep             user-assigned identity the function app runs as
//   monitoring.bicep           Log Analytics + Application Insights (Entra-only ingestion)
//   host-storage.bicep         storage for the Functions host (AzureWebJobsStorage) + deployment package container
//   lake-storage.bicep         ADLS Gen2 lake account + container (or an existing account)
//   event-hubs.bicep           Event Hubs namespace + hub + consumer group (or an existing namespace),
//                              and the application-logs hub + adx consumer group of the log stream
//   function-app.bicep         app settings, plan and the function app (Flex Consumption or Elastic Premium)
//
// Plan default: Flex Consumption (FC1). Evidence and trade-offs are in
// modules/function-app.bicep and docs/deploy.md ("Choosing the plan").
targetScope = 'subscription'

// ---------------------------------------------------------------------------
// azd environment
// ---------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to name the resource group and to derive a unique token for resource names.')
param environmentName string

@minLength(1)
@description('Azure region for every resource. For the default Flex Consumption plan, pick a region that offers it (az functionapp list-flexconsumption-locations).')
param location string

@description('Object id of the person (or CI service principal) deploying. When set, it may read the lake (Storage Blob Data Reader on the lake container), send test events (Azure Event Hubs Data Sender on the hub) and upload the package blob (Storage Blob Data Contributor on the package container, used by Elastic Premium). azd fills it from AZURE_PRINCIPAL_ID.')
param principalId string = ''

@description('Resource group name; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('Extra tags for every resource.')
param tags object = {}

// ---------------------------------------------------------------------------
// Function app hosting
// ---------------------------------------------------------------------------

@description('Hosting plan. FC1 = Flex Consumption (default: scale to zero, per-second billing, identity-only deployment storage). EP1-EP3 = Elastic Premium (always-warm instances, fixed monthly floor).')
@allowed([
  'FC1'
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'FC1'

@description('Flex Consumption only: upper bound of instances (40-1000).')
@minValue(40)
@maxValue(1000)
param flexMaximumInstanceCount int = 40

@description('Flex Consumption only: memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param flexInstanceMemoryMB int = 2048

@description('Elastic Premium only: upper bound of instances the plan may scale out to.')
@minValue(1)
@maxValue(100)
param premiumMaximumElasticWorkerCount int = 4

// ---------------------------------------------------------------------------
// Lake (ADLS Gen2)
// ---------------------------------------------------------------------------

@description('Container (file system) of the lake.')
@minLength(3)
@maxLength(63)
param lakeContainerName string = 'lake'

@description('Redundancy of a newly created lake account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param lakeStorageSku string = 'Standard_LRS'

@description('Move lake objects to the Cool tier this many days after their last modification; 0 turns the lifecycle rule off. Only applied to a lake account this template creates.')
@minValue(0)
param lakeCoolAfterDays int = 0

@description('Days a deleted lake object (and container) can be restored; 0 turns soft delete off. Only applied to a lake account this template creates.')
@minValue(0)
@maxValue(365)
param lakeSoftDeleteDays int = 7

@description('Reuse an existing ADLS Gen2 (hierarchical namespace) account as the lake instead of creating one. The template then only creates the container and the role assignment.')
param existingLakeStorageAccountName string = ''

@description('Resource group of existingLakeStorageAccountName; default: the deployment resource group.')
param existingLakeResourceGroupName string = ''

// ---------------------------------------------------------------------------
// Event Hubs
// ---------------------------------------------------------------------------

@description('Event Hubs namespace tier (Basic is not offered: it allows only the $Default consumer group).')
@allowed([
  'Standard'
  'Premium'
])
param eventHubSku string = 'Standard'

// ARM's limits differ by tier, and a parameter's decorators cannot depend on another
// parameter: so each tier has its own capacity and retention parameters, each bounded
// by what ARM accepts for that tier (Event Hubs quotas: Standard 1-40 throughput
// units and at most 7 days retention; Premium 1, 2, 4, 8 or 16 processing units and
// at most 90 days). tests/infra-check (check_parameter_limits) holds them to that.

@description('Standard only: throughput units (1-40).')
@minValue(1)
@maxValue(40)
param eventHubCapacity int = 1

@description('Premium only: processing units (1, 2, 4, 8 or 16).')
@allowed([
  1
  2
  4
  8
  16
])
param eventHubPremiumProcessingUnits int = 1

@description('Event hub (topic) name.')
@minLength(1)
@maxLength(256)
param eventHubName string = 'events'

@description('Partitions of a newly created hub; fixed after creation on Standard.')
@minValue(1)
@maxValue(32)
param eventHubPartitionCount int = 4

@description('Standard only: days events are retained in a newly created hub (1-7).')
@minValue(1)
@maxValue(7)
param eventHubMessageRetentionInDays int = 7

@description('Premium only: days events are retained in a newly created hub (1-90).')
@minValue(1)
@maxValue(90)
param eventHubPremiumMessageRetentionInDays int = 7

@description('Dedicated consumer group that hub2lake reads with.')
@minLength(1)
@maxLength(50)
param eventHubConsumerGroup string = 'hub2lake'

@description('Reuse an existing Event Hubs namespace (it must already hold eventHubName). The template then only adds the consumer group and the role assignment.')
param existingEventHubNamespaceName string = ''

@description('Resource group of existingEventHubNamespaceName; default: the deployment resource group.')
param existingEventHubResourceGroupName string = ''

// ---------------------------------------------------------------------------
// Log stream to Azure Data Explorer (optional, off by default: ADX costs)
// ---------------------------------------------------------------------------

@description('Existing ADX cluster whose database ingests the application-logs hub into PipelineLogs (infra/adx/); empty = no data connection.')
param adxClusterName string = ''

@description('Database of adxClusterName that gets the PipelineLogs table and the data connection.')
param adxDatabaseName string = ''

@description('Resource group of adxClusterName; default: the deployment resource group.')
param adxResourceGroupName string = ''

// ---------------------------------------------------------------------------
// Product settings (HUB2LAKE_*; every other setting keeps its default, see README)
// ---------------------------------------------------------------------------

@description('NCRONTAB (with seconds) of the seal timer.')
param sealSchedule string = '0 */5 * * * *'

@description('Compression of lake objects.')
@allowed([
  'gzip'
  'zstd'
  'none'
])
param compression string = 'gzip'

@description('Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var allTags = union(tags, { 'azd-env-name': environmentName })
var reuseLake = !empty(existingLakeStorageAccountName)
var reuseEventHubs = !empty(existingEventHubNamespaceName)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: allTags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}hub2lake-${resourceToken}'
    location: location
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: allTags
    retentionInDays: logRetentionInDays
    identityPrincipalId: identity.outputs.principalId
  }
}

module hostStorage 'modules/host-storage.bicep' = {
  name: 'host-storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}fn${resourceToken}'
    location: location
    tags: allTags
    deploymentContainerName: 'app-package'
    identityPrincipalId: identity.outputs.principalId
    deployerPrincipalId: principalId
  }
}

module lake 'modules/lake-storage.bicep' = {
  name: 'lake-storage'
  scope: resourceGroup(reuseLake && !empty(existingLakeResourceGroupName) ? existingLakeResourceGroupName : rg.name)
  params: {
    name: reuseLake ? existingLakeStorageAccountName : '${abbrs.storageStorageAccounts}lake${resourceToken}'
    createAccount: !reuseLake
    location: location
    tags: allTags
    skuName: lakeStorageSku
    containerName: lakeContainerName
    coolAfterDays: lakeCoolAfterDays
    softDeleteDays: lakeSoftDeleteDays
    identityPrincipalId: identity.outputs.principalId
    readerPrincipalId: principalId
  }
  dependsOn: [
    rg
  ]
}

module eventHubs 'modules/event-hubs.bicep' = {
  name: 'event-hubs'
  scope: resourceGroup(reuseEventHubs && !empty(existingEventHubResourceGroupName) ? existingEventHubResourceGroupName : rg.name)
  params: {
    namespaceName: reuseEventHubs ? existingEventHubNamespaceName : '${abbrs.eventHubNamespaces}${resourceToken}'
    createNamespace: !reuseEventHubs
    location: location
    tags: allTags
    skuName: eventHubSku
    capacity: eventHubSku == 'Premium' ? eventHubPremiumProcessingUnits : eventHubCapacity
    eventHubName: eventHubName
    partitionCount: eventHubPartitionCount
    messageRetentionInDays: eventHubSku == 'Premium' ? eventHubPremiumMessageRetentionInDays : eventHubMessageRetentionInDays
    consumerGroupName: eventHubConsumerGroup
    identityPrincipalId: identity.outputs.principalId
    senderPrincipalId: principalId
  }
  dependsOn: [
    rg
  ]
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    appName: '${abbrs.webSitesFunctions}${resourceToken}'
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: allTags
    planSku: planSku
    flexMaximumInstanceCount: flexMaximumInstanceCount
    flexInstanceMemoryMB: flexInstanceMemoryMB
    premiumMaximumElasticWorkerCount: premiumMaximumElasticWorkerCount
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostBlobEndpoint: hostStorage.outputs.blobEndpoint
    hostQueueEndpoint: hostStorage.outputs.queueEndpoint
    hostTableEndpoint: hostStorage.outputs.tableEndpoint
    deploymentContainerUrl: hostStorage.outputs.deploymentContainerUrl
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    eventHubNamespaceFqdn: eventHubs.outputs.namespaceFqdn
    eventHubName: eventHubs.outputs.eventHubName
    eventHubConsumerGroup: eventHubs.outputs.consumerGroupName
    logEventHubName: eventHubs.outputs.logEventHubName
    lakeUrl: lake.outputs.lakeUrl
    sealSchedule: sealSchedule
    compression: compression
  }
}

module adxLogs 'adx/adx-data-connection.bicep' = if (!empty(adxClusterName)) {
  name: 'adx-pipeline-logs'
  scope: resourceGroup(!empty(adxResourceGroupName) ? adxResourceGroupName : rg.name)
  params: {
    clusterName: adxClusterName
    databaseName: adxDatabaseName
    logEventHubId: eventHubs.outputs.logEventHubId
  }
}

// ---------------------------------------------------------------------------
// Outputs (azd stores them in .azure/<env>/.env; docs/deploy.md uses them)
// ---------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_PLAN_SKU string = planSku
output HUB2LAKE_LAKE_URL string = lake.outputs.lakeUrl
output LAKE_STORAGE_ACCOUNT_NAME string = lake.outputs.accountName
output LAKE_CONTAINER_NAME string = lake.outputs.containerName
output HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output DEPLOYMENT_CONTAINER_URL string = hostStorage.outputs.deploymentContainerUrl
output EVENTHUB_NAMESPACE_FQDN string = eventHubs.outputs.namespaceFqdn
output EVENTHUB_NAME string = eventHubs.outputs.eventHubName
output EVENTHUB_CONSUMER_GROUP string = eventHubs.outputs.consumerGroupName
output LOG_EVENTHUB_NAME string = eventHubs.outputs.logEventHubName
output LOG_EVENTHUB_CONSUMER_GROUP string = eventHubs.outputs.logConsumerGroupName
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
